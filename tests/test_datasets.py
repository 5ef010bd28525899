"""Readers for IEMOCAP, MSP-IMPROV, CREMA-D and CSV manifests, their protocols, and the synthetic TTS corpus.

The licence-gated corpora are never needed: every test builds a tiny look-alike folder in ``tmp_path`` with the
published layout (file names, label-file formats) and a few hundred ms of noise per WAV.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from train.data import (
    Clip,
    folds_for,
    load_cremad,
    load_iemocap,
    load_manifest,
    load_msp_improv,
    split,
)
from train.data import iemocap as IE
from train.data import msp_improv as MSP
from train.data import synth as SY
from train.data.cremad import SENTENCES as CREMA_SENTENCES
from train.data.protocols import (
    check_disjoint,
    group_folds,
    leave_one_speaker_out,
    session_folds,
)


def write_wav(path: Path, seconds: float = 0.2, sr: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32) * 0.05
    sf.write(path, x, sr, subtype="PCM_16")
    return path


def assert_speaker_independent(clips: list[Clip], folds: list[list[str]]) -> None:
    check_disjoint(folds)
    assert set().union(*map(set, folds)) == {c.speaker for c in clips}
    for k in range(len(folds)):
        train, test = split(clips, folds, k)
        assert test and train
        assert not {c.speaker for c in train} & {c.speaker for c in test}
        assert len(train) + len(test) == len(clips)


# ------------------------------------------------------------------ IEMOCAP

# (utterance id, code, transcript) per dialog; Ses01F dialogs hold utterances of both actors of the session.
IEMOCAP_DIALOGS = {
    1: {
        "Ses01F_impro01": [
            ("Ses01F_impro01_F000", "neu", "Excuse me."),
            ("Ses01F_impro01_M000", "exc", "Yeah, this is great."),
            ("Ses01F_impro01_F001", "xxx", "Do you have your forms?"),
            ("Ses01F_impro01_M001", "fru", "I filled them out already."),
            ("Ses01F_impro01_F002", "ang", "You need to go back to the line."),
        ],
        "Ses01M_script01_1": [
            ("Ses01M_script01_1_F000", "sad", "I don't know what to say."),
            ("Ses01M_script01_1_M000", "hap", "Oh, how lovely."),
            ("Ses01M_script01_1_M001", "sur", "Really?"),
        ],
    },
    2: {
        "Ses02F_impro02": [
            ("Ses02F_impro02_F000", "sad", "He's gone."),
            ("Ses02F_impro02_M000", "neu", "I'm sorry."),
            ("Ses02F_impro02_M001", "dis", "That's disgusting."),
            ("Ses02F_impro02_F001", "exc", "We did it!"),
        ],
    },
}


def make_iemocap(root: Path, skip_wav: str | None = None) -> Path:
    base = root / "IEMOCAP_full_release"
    for session, dialogs in IEMOCAP_DIALOGS.items():
        sdir = base / f"Session{session}"
        for dialog, utts in dialogs.items():
            ev = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            tr = []
            t = 1.0
            for i, (utt, code, text) in enumerate(utts):
                ev += [
                    f"[{t:.4f} - {t + 2:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 2.0000]",
                    "C-E1:\tNeutral;\t()",
                    "A-E2:\tval 3; act 2; dom  3;\t()",
                    "",
                ]
                tr.append(f"{utt} [{t:08.4f}-{t + 2:08.4f}]: {text}")
                if utt != skip_wav:
                    write_wav(sdir / "sentences" / "wav" / dialog / f"{utt}.wav", seed=i)
                t += 3
            tr.append(f"M: [{t:08.4f}-{t + 1:08.4f}]: breathing")  # unlabelled turn
            (sdir / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
            (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(ev) + "\n")
            (sdir / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (sdir / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(tr) + "\n")
        # per-evaluator sub-folders of the real release must not be read as consensus labels
        cat = sdir / "dialog" / "EmoEvaluation" / "Categorical"
        cat.mkdir(parents=True, exist_ok=True)
        (cat / "bogus_e1_cat.txt").write_text(f"[0.0 - 1.0]\tSes0{session}F_impro99_F000\tang\t[1, 1, 1]\n")
    return root


def test_iemocap_labels_speakers_transcripts(tmp_path):
    clips = load_iemocap(make_iemocap(tmp_path))  # parent folder of IEMOCAP_full_release is accepted
    by_utt = {c.meta["utterance"]: c for c in clips}
    assert set(by_utt) == {
        "Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses01F_impro01_F002",
        "Ses01M_script01_1_F000", "Ses01M_script01_1_M000",
        "Ses02F_impro02_F000", "Ses02F_impro02_M000", "Ses02F_impro02_F001",
    }  # fmt: skip
    # xxx, fru, sur, dis dropped; the Categorical/ sub-folder ignored
    assert by_utt["Ses01F_impro01_M000"].label == "happy" and by_utt["Ses01F_impro01_M000"].meta["emotion"] == "exc"
    assert by_utt["Ses01M_script01_1_M000"].label == "happy"
    assert by_utt["Ses01F_impro01_F000"].label == "neutral"
    assert by_utt["Ses01F_impro01_F002"].label == "angry"
    assert by_utt["Ses02F_impro02_F000"].label == "sad"
    # the speaker is the utterance's own gender letter, not the dialog prefix
    m = by_utt["Ses01F_impro01_M000"]
    assert (m.speaker, m.gender) == ("Ses01M", "male")
    f = by_utt["Ses01M_script01_1_F000"]
    assert (f.speaker, f.gender) == ("Ses01F", "female")
    assert {c.speaker for c in clips} == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"}
    assert f.meta["session"] == 1 and isinstance(f.meta["session"], int)
    assert f.meta["dialog"] == "Ses01M_script01_1"
    assert by_utt["Ses01F_impro01_F000"].meta["transcript"] == "Excuse me."
    assert by_utt["Ses02F_impro02_F001"].meta["transcript"] == "We did it!"
    assert by_utt["Ses01F_impro01_F000"].meta["vad"] == (2.5, 3.0, 2.0)
    assert all(Path(c.path).is_file() and c.path.endswith(c.meta["utterance"] + ".wav") for c in clips)
    assert IE.session_folds(clips) == [["Ses01F", "Ses01M"], ["Ses02F", "Ses02M"]]
    assert folds_for("iemocap", clips) == IE.session_folds(clips)
    assert_speaker_independent(clips, IE.session_folds(clips))
    assert_speaker_independent(clips, IE.speaker_folds_10(clips))


def test_iemocap_label_subset_and_extra_categories(tmp_path):
    root = make_iemocap(tmp_path) / "IEMOCAP_full_release"
    assert {c.label for c in load_iemocap(root, labels=("angry", "sad"))} == {"angry", "sad"}
    assert [c.meta["utterance"] for c in load_iemocap(root, labels=("frustrated",))] == ["Ses01F_impro01_M001"]
    with pytest.raises(ValueError, match="unknown IEMOCAP label"):
        load_iemocap(root, labels=("calm",))


def test_iemocap_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(IE.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="IEMOCAP not found.*licence-gated"):
        load_iemocap(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Session1"):
        load_iemocap(tmp_path / "empty")
    root = make_iemocap(tmp_path / "c", skip_wav="Ses02F_impro02_M000")
    with pytest.raises(FileNotFoundError, match="1 labelled IEMOCAP utterance.*allow_missing=True"):
        load_iemocap(root)
    assert len(load_iemocap(root, allow_missing=True)) == 7
    monkeypatch.setenv(IE.ENV_VAR, str(root))
    assert len(load_iemocap(allow_missing=True)) == 7


def test_iemocap_parse_utterance_id():
    assert IE.parse_utterance_id("Ses01F_impro01_M012") == (1, "Ses01M", "male", "Ses01F_impro01")
    assert IE.parse_utterance_id("Ses05M_script02_2_F021") == (5, "Ses05F", "female", "Ses05M_script02_2")
    with pytest.raises(ValueError, match="not an IEMOCAP utterance id"):
        IE.parse_utterance_id("Actor_01")


def fake_clips(sessions: int, prefix: str) -> list[Clip]:
    """Two clips per speaker, one male and one female speaker per session, speaker ids in the corpus' style."""
    clips = []
    for s in range(1, sessions + 1):
        for g in ("F", "M"):
            spk = f"Ses{s:02d}{g}" if prefix == "iemocap" else f"{g}{s:02d}"
            for i in range(2):
                clips.append(Clip(f"/x/{spk}_{i}.wav", spk, "neutral", "male" if g == "M" else "female", {"session": s}))
    return clips


def test_iemocap_five_session_protocol():
    clips = fake_clips(5, "iemocap")
    folds = IE.session_folds(clips)
    assert folds == [[f"Ses0{k + 1}F", f"Ses0{k + 1}M"] for k in range(5)]
    assert_speaker_independent(clips, folds)
    for k in range(5):
        _, test = split(clips, folds, k)
        assert {c.meta["session"] for c in test} == {k + 1}
    loso = IE.speaker_folds_10(clips)
    assert len(loso) == 10 and all(len(f) == 1 for f in loso) and loso[0] == ["Ses01F"] and loso[1] == ["Ses01M"]
    assert_speaker_independent(clips, loso)


# ------------------------------------------------------------------ MSP-IMPROV

# (video name in Evalution.txt, category, session folder, scenario, type)
MSP_ROWS = [
    ("UTD-IMPROV-S01A-F01-S-FM01.avi", "A", 1, "S01A", "S"),
    ("UTD-IMPROV-S01A-M01-R-MF01.avi", "N", 1, "S01A", "R"),
    ("UTD-IMPROV-S02H-F01-P-FM02.avi", "H", 1, "S02H", "P"),
    ("UTD-IMPROV-S02H-M01-T-MF02.avi", "O", 1, "S02H", "T"),
    ("UTD-IMPROV-S03S-F02-S-FM01.avi", "S", 2, "S03S", "S"),
    ("UTD-IMPROV-S03S-M02-P-MF01.avi", "X", 2, "S03S", "P"),
    ("UTD-IMPROV-S04N-M02-R-MF03.avi", "H", 2, "S04N", "R"),
]


def make_msp(root: Path, drop_audio: str | None = None, label_name: str = "Evalution.txt") -> Path:
    lines = []
    for i, (name, code, session, scen, typ) in enumerate(MSP_ROWS):
        lines += [
            f"{name}; {code}; A:2.6; V:{3.0 + i / 10:.1f}; D:3.0; N:0.0",
            "F1:Angry;Frustrated; A:2.0; V:3.0; D:3.0; N:0.0",
            "F2:Neutral; A:3.0; V:3.0; D:3.0; N:0.0",
            "",
        ]
        wav_name = name.replace("UTD-", "MSP-").replace(".avi", ".wav")
        if wav_name != drop_audio:
            write_wav(root / "Audio" / f"session{session}" / scen / typ / wav_name, seed=i)
    (root / label_name).write_text("\n".join(lines))
    return root


def test_msp_improv_labels_and_mapping(tmp_path):
    clips = load_msp_improv(make_msp(tmp_path))
    assert [c.meta["utterance"] for c in clips] == [
        "MSP-IMPROV-S01A-F01-S-FM01", "MSP-IMPROV-S01A-M01-R-MF01", "MSP-IMPROV-S02H-F01-P-FM02",
        "MSP-IMPROV-S03S-F02-S-FM01", "MSP-IMPROV-S04N-M02-R-MF03",
    ]  # fmt: skip
    # O and X dropped
    assert [c.label for c in clips] == ["angry", "neutral", "happy", "sad", "happy"]
    assert [c.speaker for c in clips] == ["F01", "M01", "F01", "F02", "M02"]
    assert [c.gender for c in clips] == ["female", "male", "female", "female", "male"]
    assert [c.meta["session"] for c in clips] == [1, 1, 1, 2, 2]
    c0 = clips[0]
    assert Path(c0.path).name == "MSP-IMPROV-S01A-F01-S-FM01.wav" and Path(c0.path).is_file()
    assert (c0.meta["sentence"], c0.meta["type"], c0.meta["dyad"]) == ("S01A", "S", "FM01")
    assert c0.meta["arousal"] == 2.6 and c0.meta["valence"] == 3.0
    assert MSP.session_folds(clips) == [["F01", "M01"], ["F02", "M02"]]
    assert folds_for("MSP-IMPROV", clips) == MSP.session_folds(clips)
    assert_speaker_independent(clips, MSP.session_folds(clips))
    assert MSP.speaker_folds_12(clips) == [["F01"], ["F02"], ["M01"], ["M02"]]
    assert {c.label for c in load_msp_improv(tmp_path, labels=("happy",))} == {"happy"}


def test_msp_improv_six_session_protocol():
    clips = fake_clips(6, "msp")
    folds = MSP.session_folds(clips)
    assert folds == [[f"F0{k + 1}", f"M0{k + 1}"] for k in range(6)]
    assert_speaker_independent(clips, folds)
    loso = MSP.speaker_folds_12(clips)
    assert len(loso) == 12
    assert_speaker_independent(clips, loso)


def test_msp_improv_errors_and_variants(tmp_path, monkeypatch):
    monkeypatch.delenv(MSP.ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="MSP-IMPROV not found.*licence-gated"):
        load_msp_improv(tmp_path / "nowhere")
    (tmp_path / "nolabels").mkdir()
    with pytest.raises(FileNotFoundError, match="Evalution.txt"):
        load_msp_improv(tmp_path / "nolabels")
    root = make_msp(tmp_path / "m", drop_audio="MSP-IMPROV-S03S-F02-S-FM01.wav")
    with pytest.raises(FileNotFoundError, match="1 rated MSP-IMPROV utterance.*allow_missing=True"):
        load_msp_improv(root)
    assert len(load_msp_improv(root, allow_missing=True)) == 4
    # the correctly spelled label file is accepted too
    assert len(load_msp_improv(make_msp(tmp_path / "e", label_name="Evaluation.txt"))) == 5
    with pytest.raises(ValueError, match="unknown MSP-IMPROV label"):
        load_msp_improv(root, labels=("fearful",))
    with pytest.raises(ValueError, match="not an MSP-IMPROV utterance name"):
        MSP.parse_name("Ses01F_impro01_F000.wav")


# ------------------------------------------------------------------ CREMA-D


CREMA_FILES = [("DFA", "ANG", "HI"), ("IEO", "HAP", "MD"), ("TSI", "NEU", "XX"), ("WSI", "SAD", "LO"),
               ("ITH", "DIS", "XX"), ("MTI", "FEA", "XX")]  # fmt: skip


def make_cremad(root: Path, with_demo: bool = True) -> Path:
    audio = root / "AudioWAV"
    rows = []
    for n, actor in enumerate(range(1001, 1011)):
        sex = "Male" if n % 2 == 0 else "Female"
        rows.append([str(actor), str(30 + n), sex, "Caucasian", "Not Hispanic"])
        for j, (sent, emo, level) in enumerate(CREMA_FILES):
            write_wav(audio / f"{actor}_{sent}_{emo}_{level}.wav", seconds=0.1, seed=j)
    if with_demo:
        with open(root / "VideoDemographics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
            w.writerows(rows)
    return root


def test_cremad(tmp_path, monkeypatch):
    clips = load_cremad(make_cremad(tmp_path))
    assert len(clips) == 40  # 10 actors x 4 kept emotions; DIS and FEA dropped
    assert {c.label for c in clips} == {"angry", "happy", "neutral", "sad"}
    c = next(c for c in clips if Path(c.path).name == "1001_DFA_ANG_HI.wav")
    assert (c.speaker, c.gender, c.label) == ("1001", "male", "angry")
    assert c.meta["transcript"] == "Don't forget a jacket" and c.meta["level"] == "HI" and c.meta["age"] == 30
    assert next(c for c in clips if c.speaker == "1002").gender == "female"
    assert next(c for c in clips if c.meta["sentence"] == "IEO").meta["transcript"] == "It's eleven o'clock"
    assert len(CREMA_SENTENCES) == 12
    folds = folds_for("crema-d", clips)
    assert len(folds) == 5
    assert_speaker_independent(clips, folds)
    gender = {c.speaker: c.gender for c in clips}
    assert all(sorted(gender[s] for s in f) == ["female", "male"] for f in folds)  # balanced by gender
    assert {c.label for c in load_cremad(tmp_path, labels=("disgust", "fearful"))} == {"disgust", "fearful"}

    monkeypatch.delenv("EDGESER_CREMAD", raising=False)
    with pytest.raises(FileNotFoundError, match="CREMA-D not found"):
        load_cremad(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="VideoDemographics.csv"):
        load_cremad(make_cremad(tmp_path / "nodemo", with_demo=False))
    write_wav(tmp_path / "AudioWAV" / "1099_DFA_ANG_XX.wav")
    with pytest.raises(ValueError, match="actor 1099"):
        load_cremad(tmp_path)
    with pytest.raises(ValueError, match="unknown CREMA-D label"):
        load_cremad(tmp_path, labels=("calm",))


# ------------------------------------------------------------------ manifest


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest(tmp_path):
    a = write_wav(tmp_path / "audio" / "a.wav")
    b = write_wav(tmp_path / "audio" / "b.wav")
    elsewhere = write_wav(tmp_path / "other" / "c.wav")
    (tmp_path / "set").mkdir()
    man = write_csv(
        tmp_path / "set" / "m.csv",
        ["path", "speaker", "label", "gender", "transcript", "session", "extra"],
        [
            ["../audio/a.wav", "s1", "Angry", "M", "Stop it!", "1", "x"],
            ["../audio/b.wav", "s2", "sad", "female", "", "2", "y"],
            [str(elsewhere), "s3", "neutral", "", "Hello.", "", "z"],
        ],
    )
    clips = load_manifest(man)
    assert [c.path for c in clips] == [str(a.resolve()), str(b.resolve()), str(elsewhere.resolve())]
    assert [c.label for c in clips] == ["angry", "sad", "neutral"]
    assert [c.gender for c in clips] == ["male", "female", "unknown"]
    assert clips[0].meta == {"transcript": "Stop it!", "session": 1, "extra": "x"}
    assert clips[2].meta["session"] == ""
    folds = folds_for("manifest", clips, n_folds=3)
    assert sorted(folds) == [["s1"], ["s2"], ["s3"]]
    assert_speaker_independent(clips, folds)
    # minimal columns
    m2 = write_csv(tmp_path / "min.csv", ["label", "speaker", "path"], [["happy", "x", "audio/a.wav"]])
    (c,) = load_manifest(m2)
    assert (c.gender, c.meta) == ("unknown", {"transcript": ""})


def test_manifest_errors(tmp_path):
    write_wav(tmp_path / "a.wav")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv")
    bad = write_csv(tmp_path / "cols.csv", ["file", "speaker"], [["a.wav", "s1"]])
    with pytest.raises(ValueError, match=r"lacks required column\(s\) \['path', 'label'\]"):
        load_manifest(bad)
    unk = write_csv(tmp_path / "unk.csv", ["path", "speaker", "label"],
                    [["a.wav", "s1", "angry"], ["a.wav", "s1", "fearful"], ["a.wav", "s2", "fearful"]])  # fmt: skip
    with pytest.raises(ValueError, match=r"label\(s\) outside .*'fearful': 2.*drop_unknown=True"):
        load_manifest(unk)
    assert len(load_manifest(unk, drop_unknown=True)) == 1
    assert len(load_manifest(unk, labels=("angry", "fearful"))) == 3
    miss = write_csv(tmp_path / "miss.csv", ["path", "speaker", "label"], [["a.wav", "s1", "sad"], ["b.wav", "s1", "sad"]])
    with pytest.raises(ValueError, match=r"1 audio file\(s\) .* do not exist.*b\.wav.*check_files=False"):
        load_manifest(miss)
    assert len(load_manifest(miss, check_files=False)) == 2
    empty = write_csv(tmp_path / "empty.csv", ["path", "speaker", "label"], [])
    with pytest.raises(ValueError, match="no rows"):
        load_manifest(empty)
    blank = write_csv(tmp_path / "blank.csv", ["path", "speaker", "label"], [["a.wav", "", "sad"]])
    with pytest.raises(ValueError, match="blank.csv:2: empty 'speaker'"):
        load_manifest(blank)
    two = write_csv(tmp_path / "two.csv", ["path", "speaker", "label", "gender"],
                    [["a.wav", "s1", "sad", "m"], ["a.wav", "s1", "sad", "f"]])  # fmt: skip
    with pytest.raises(ValueError, match="speaker 's1' is female here but male"):
        load_manifest(two)
    badg = write_csv(tmp_path / "badg.csv", ["path", "speaker", "label", "gender"], [["a.wav", "s1", "sad", "x"]])
    with pytest.raises(ValueError, match="gender must be"):
        load_manifest(badg)


# ------------------------------------------------------------------ protocols


def test_folds_for_names_and_errors():
    clips = fake_clips(5, "iemocap")
    assert len(folds_for("ravdess", clips)) == 5
    assert len(folds_for("cremad", clips, n_folds=2)) == 2
    with pytest.raises(ValueError, match="unknown corpus 'timit'"):
        folds_for("timit", clips)
    no_session = [Clip("/a.wav", "s1", "sad", "male"), Clip("/b.wav", "s2", "sad", "male")]
    with pytest.raises(ValueError, match="no 'session'"):
        session_folds(no_session)
    with pytest.raises(ValueError, match="at least 2 groups"):
        session_folds(fake_clips(1, "iemocap"))
    mixed = fake_clips(2, "iemocap") + [Clip("/z.wav", "Ses01F", "sad", "female", {"session": 2})]
    with pytest.raises(ValueError, match="two groups"):
        session_folds(mixed)
    assert group_folds(clips, lambda c: c.gender) == [[f"Ses0{s}F" for s in range(1, 6)], [f"Ses0{s}M" for s in range(1, 6)]]
    assert len(leave_one_speaker_out(clips)) == 10
    with pytest.raises(ValueError, match="folds 0 and 1"):
        check_disjoint([["a"], ["a"]])


# ------------------------------------------------------------------ synthetic TTS corpus


def rms(path: str) -> float:
    x, _ = sf.read(path, dtype="float32")
    return float(np.sqrt(np.mean(x**2)))


def test_synth_corpus(tmp_path):
    voices = ["en-us", "en-us+f2"]
    manifest = SY.make_corpus(tmp_path / "synth", n_per_label=1, voices=voices, seed=0)
    assert manifest == (tmp_path / "synth" / "manifest.csv").resolve()
    clips = load_manifest(manifest)
    assert len(clips) == 8
    assert {c.speaker for c in clips} == set(voices)
    assert {c.label for c in clips} == {"neutral", "happy", "angry", "sad"}
    assert {c.speaker: c.gender for c in clips} == {"en-us": "male", "en-us+f2": "female"}
    for c in clips:
        info = sf.info(c.path)
        assert (info.samplerate, info.channels) == (16000, 1)
        assert info.duration > 0.5
        assert rms(c.path) > 0.01  # not silent
        assert c.meta["transcript"] in SY.SENTENCES[c.label]
        assert c.meta["voice"] == c.speaker
    loud = {lab: np.mean([rms(c.path) for c in clips if c.label == lab]) for lab in ("angry", "sad")}
    assert loud["angry"] > 1.5 * loud["sad"]
    sad_dur = np.mean([sf.info(c.path).duration / len(c.meta["transcript"]) for c in clips if c.label == "sad"])
    angry_dur = np.mean([sf.info(c.path).duration / len(c.meta["transcript"]) for c in clips if c.label == "angry"])
    assert sad_dur > angry_dur  # slower per character
    # deterministic settings for the same seed; two voices say different sentences
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["rate"] and rows[0]["transcript"] != rows[4]["transcript"]


def test_synth_tts_and_validation(tmp_path):
    x = SY.tts("Good morning.", "en-gb", rate=180, pitch=40, amplitude=100)
    assert x.dtype == np.float32 and x.ndim == 1 and 4000 < x.size < 48000 and np.abs(x).max() <= 1.0
    assert np.abs(x).max() > 0.05
    with pytest.raises(RuntimeError, match="espeak-ng failed for voice 'xx-nope'"):
        SY.tts("hi", "xx-nope")
    with pytest.raises(ValueError, match="pitch must be"):
        SY.tts("hi", pitch=120)
    with pytest.raises(ValueError, match="non-empty"):
        SY.tts("  ")
    with pytest.raises(ValueError, match="unknown espeak-ng variant"):
        SY.make_corpus(tmp_path, n_per_label=1, voices=["en-us+zz9"])
    with pytest.raises(ValueError, match="n_per_label"):
        SY.make_corpus(tmp_path, n_per_label=0, voices=["en-us"])
    assert SY.voice_gender("en+f4") == "female" and SY.voice_gender("flite:slt") == "female"
    assert SY.voice_gender("en-gb") == "male" and SY.voice_gender("en-us+klatt") == "unknown"
    cmd = SY.flite_command("flite", "hi", "flite:slt", rate=350, pitch=50, out="o.wav")
    assert cmd[:3] == ["flite", "-voice", "slt"] and "duration_stretch=0.500" in cmd and "int_f0_target_mean=170.0" in cmd


def test_synth_cli(tmp_path):
    assert SY.main(["--out", str(tmp_path / "cli"), "--n-per-label", "1", "--voices", "en-us,en-gb+f3"]) == 0
    assert len(load_manifest(tmp_path / "cli" / "manifest.csv")) == 8
