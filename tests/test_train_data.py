"""RAVDESS reader and speaker-independent folds (reads the real manifest at ../shared/data/ravdess)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from train.data import ravdess as R
from train.data.ravdess import EMOTIONS8, LABELS4, Clip, load_ravdess, speaker_folds, split

needs_ravdess = pytest.mark.usefixtures("ravdess_corpus")  # skips without the corpus, fails in CI (conftest)
ACTORS = [f"Actor_{i:02d}" for i in range(1, 21)]


@pytest.fixture(scope="module")
def clips(ravdess_corpus):
    return load_ravdess(root=ravdess_corpus)


def test_label_order_is_declared():
    assert LABELS4 == ("neutral", "happy", "angry", "sad")
    assert set(LABELS4) <= set(EMOTIONS8)


def test_clip_is_frozen_and_hashable():
    c = Clip(path="/a.flac", speaker="Actor_01", label="sad", gender="male", meta={"intensity": "02"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.label = "happy"  # type: ignore[misc]
    assert len({c, c}) == 1


def test_gender_from_actor_number():
    assert R.gender_of("Actor_01") == "male"
    assert R.gender_of("Actor_20") == "female"
    with pytest.raises(ValueError):
        R.gender_of("nobody")


@needs_ravdess
def test_load_default_labels(clips):
    assert {c.label for c in clips} == set(LABELS4)
    assert {c.speaker for c in clips} == set(ACTORS)
    # 20 actors x (4 neutral + 8 happy + 8 angry + 8 sad)
    assert len(clips) == 20 * 28
    for c in clips[:20]:
        assert os.path.isabs(c.path) and c.path.endswith(".flac")
        assert c.gender == ("male" if int(c.speaker[-2:]) % 2 else "female")
        assert {"intensity", "statement", "repetition"} <= set(c.meta)
    assert Path(clips[0].path).is_file()


def test_label_filter(ravdess_corpus):
    two = load_ravdess(ravdess_corpus, labels=("sad", "angry"))
    assert {c.label for c in two} == {"sad", "angry"}
    assert len(two) == 20 * 16
    assert len(load_ravdess(ravdess_corpus, labels=EMOTIONS8)) == 1200
    with pytest.raises(ValueError):
        load_ravdess(ravdess_corpus, labels=("neutral", "bored"))


def test_missing_root_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="EDGESER_RAVDESS"):
        load_ravdess(root=tmp_path / "nope")
    monkeypatch.setenv("EDGESER_RAVDESS", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_ravdess()


def test_env_var_override(tmp_path, monkeypatch):
    (tmp_path / "manifest.csv").write_text(
        "path,speaker,emotion,duration_s,intensity,repetition,statement\n"
        "Actor_03/a.flac,Actor_03,happy,3.1,01,01,01\n"
        "Actor_04/b.flac,Actor_04,calm,3.2,01,01,01\n"
    )
    monkeypatch.setenv("EDGESER_RAVDESS", str(tmp_path))
    got = load_ravdess()
    assert len(got) == 1
    c = got[0]
    assert c.path == str((tmp_path / "Actor_03" / "a.flac").resolve())
    assert (c.speaker, c.label, c.gender) == ("Actor_03", "happy", "male")
    assert c.meta["duration_s"] == pytest.approx(3.1)


@needs_ravdess
def test_folds_speaker_independent_and_gender_balanced(clips):
    folds = speaker_folds(clips)
    assert len(folds) == 5
    flat = [s for f in folds for s in f]
    assert len(flat) == len(set(flat)) == 20  # disjoint
    assert set(flat) == set(ACTORS)  # cover all actors
    for f in folds:
        genders = [R.gender_of(s) for s in f]
        assert len(f) == 4 and genders.count("male") == 2 and genders.count("female") == 2


@needs_ravdess
def test_folds_deterministic_and_seeded(clips):
    assert speaker_folds(clips, seed=0) == speaker_folds(list(reversed(clips)), seed=0)
    assert speaker_folds(clips, seed=0) != speaker_folds(clips, seed=1)


@needs_ravdess
def test_split(clips):
    folds = speaker_folds(clips)
    seen_test = set()
    for k in range(len(folds)):
        train, test = split(clips, folds, k)
        assert len(train) + len(test) == len(clips)
        assert {c.speaker for c in test} == set(folds[k])
        assert not {c.speaker for c in train} & {c.speaker for c in test}
        seen_test |= {c.path for c in test}
    assert len(seen_test) == len(clips)
    with pytest.raises(ValueError):
        split(clips, folds, 5)


def test_folds_on_synthetic_speakers():
    clips = [Clip(f"/x/{i}.wav", f"spk_{i:02d}", "sad", "male" if i % 2 else "female", {}) for i in range(1, 11)]
    folds = speaker_folds(clips, n_folds=2, seed=3)
    assert sorted(s for f in folds for s in f) == sorted(c.speaker for c in clips)
    assert all(len(f) == 5 for f in folds)
    with pytest.raises(ValueError):
        speaker_folds(clips, n_folds=11)
