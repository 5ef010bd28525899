"""apps.annotate: a folder of generated espeak clips (wav/flac/ogg, nested) plus a corrupt and an empty file, annotated
by the command line in parallel; outputs checked against edgeser.analyze; resume, --force, exit codes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import espeak_wav

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # apps/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))
GOOD = ["a.wav", "sub/b.flac", "sub/deeper/c.ogg"]
BAD = ["bad.wav", "empty.wav"]


@pytest.fixture(scope="module")
def labels():
    import edgeser

    return list(edgeser.load().labels)


@pytest.fixture
def corpus(tmp_path) -> Path:
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / ".hidden").mkdir()
    espeak_wav(src / "a.wav", "I am so happy to see you today, this is wonderful.")
    espeak_wav(tmp_path / "b.wav", "Leave me alone. I do not want to talk about it.", voice="en-us+f3", rate=130)
    b, rate = sf.read(tmp_path / "b.wav", dtype="float32")
    sf.write(src / "sub" / "b.flac", np.concatenate([b, np.zeros(rate, np.float32), b]), rate)
    espeak_wav(tmp_path / "c.wav", "The meeting is at ten o'clock in the small room.", voice="en-gb", rate=150)
    c, rate = sf.read(tmp_path / "c.wav", dtype="float32")
    sf.write(src / "sub" / "deeper" / "c.ogg", c, rate, format="OGG", subtype="VORBIS")
    (src / "bad.wav").write_bytes(b"RIFF\x00\x10\x00\x00WAVEfmt " + os.urandom(3000))  # corrupt
    sf.write(src / "empty.wav", np.zeros(0, np.float32), 16000)  # valid header, no samples
    (src / "notes.txt").write_text("not audio")
    sf.write(src / ".hidden" / "skip.wav", c, rate)  # hidden folders are left out
    return src


def annotate(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "apps.annotate", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and not p.name.startswith("summary.")}


def test_summarize_by_hand():
    from apps.annotate.core import summarize

    ev = [{"start": 1.0, "end": 3.0, "label": "x", "confidence": 0.5},
          {"start": 4.0, "end": 5.0, "label": "y", "confidence": 1.0},
          {"start": 6.0, "end": 6.5, "label": "x", "confidence": 0.8}]
    s = summarize(ev, 10.0, ["x", "y", "z"])
    assert s["duration"] == 10.0 and s["speech_seconds"] == 3.5 and s["segments"] == 3
    assert s["seconds"] == {"x": 2.5, "y": 1.0, "z": 0.0}
    assert s["dominant"] == "x" and s["dominant_share"] == pytest.approx(2.5 / 3.5, abs=1e-4)
    assert s["mean_confidence"] == pytest.approx((2 * 0.5 + 1.0 + 0.5 * 0.8) / 3.5, abs=1e-4)
    empty = summarize([], 2.0, ["x"])
    assert empty["dominant"] is None and empty["speech_seconds"] == 0 and empty["mean_confidence"] is None


def test_find_audio_recursive(corpus, tmp_path):
    from apps.annotate.core import find_audio

    out = corpus / "results"  # an output folder inside the input folder is never read as input
    out.mkdir()
    sf.write(out / "old.wav", np.zeros(100, np.float32), 16000)
    found = [p.relative_to(corpus.resolve()).as_posix() for p in find_audio(corpus, exclude=out)]
    assert found == sorted(GOOD + BAD)


def test_cli_annotates_folder_in_parallel_and_resumes(corpus, tmp_path, labels):
    from PIL import Image

    import edgeser
    from apps.common import hex_to_rgb, label_colors

    out = tmp_path / "out"
    p = annotate(corpus, "--out", out, "--jobs", 2, "--plot", "--format", "csv", "json")
    assert p.returncode == 1, p.stderr  # some files failed
    assert "bad.wav" in p.stderr and "empty.wav" in p.stderr and "Traceback" not in p.stderr
    assert "3 annotated, 0 up to date, 2 failed, 1 non-audio file skipped (notes.txt)" in p.stderr

    model = edgeser.load()
    colors = label_colors(labels)
    for rel in GOOD:
        src = corpus / rel
        want = [e for e in model.analyze(src) if e.final]
        assert want, f"no speech found in {rel}"
        rows = read_csv(out / f"{rel}.csv")
        doc = json.loads((out / f"{rel}.json").read_text())
        assert list(rows[0]) == ["start", "end", "duration", "segment", "label", "confidence"] + [
            f"score_{k}" for k in labels]
        assert len(rows) == len(doc["events"]) == len(want)
        for row, ev, w in zip(rows, doc["events"], want):
            assert row["label"] == ev["label"] == w.label
            assert float(row["start"]) == pytest.approx(w.start, abs=1e-4) and ev["start"] == w.start
            assert float(row["end"]) == pytest.approx(w.end, abs=1e-4) and ev["end"] == w.end
            assert float(row["confidence"]) == pytest.approx(w.confidence, abs=1e-6)
            for k in labels:
                assert float(row[f"score_{k}"]) == pytest.approx(w.scores[k], abs=1e-6)
                assert ev["scores"][k] == pytest.approx(w.scores[k], abs=1e-7)
        s = doc["summary"]
        info = sf.info(src)
        assert s["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert s["speech_seconds"] == pytest.approx(sum(w.end - w.start for w in want), abs=1e-3)
        assert sum(s["seconds"].values()) == pytest.approx(s["speech_seconds"], abs=1e-3)
        assert s["dominant"] == max(s["seconds"], key=s["seconds"].get) and s["segments"] == len(want)
        assert doc["model"]["labels"] == labels and doc["file"] == rel
        # the plot: a PNG whose pixels show each segment's label colour
        img = Image.open(out / f"{rel}.png")
        assert img.format == "PNG" and img.size == (1000, 340)
        px = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
        for lab in {w.label for w in want}:
            hit = np.all(np.abs(px - np.array(hex_to_rgb(colors[lab]))) <= 3, axis=1).sum()
            assert hit > 500, (rel, lab, hit)

    summary = read_csv(out / "summary.csv")
    by_file = {r["file"]: r for r in summary}
    assert sorted(by_file) == sorted(GOOD + BAD)
    for rel in GOOD:
        assert by_file[rel]["status"] == "ok" and by_file[rel]["dominant"] in labels and not by_file[rel]["error"]
    for rel in BAD:
        assert by_file[rel]["status"] == "error" and rel in by_file[rel]["error"] and not by_file[rel]["duration"]
    assert [c for c in summary[0] if c.startswith("seconds_")] == [f"seconds_{k}" for k in labels]
    sj = json.loads((out / "summary.json").read_text())
    assert sj["totals"]["files"] == 5 and sj["totals"]["annotated"] == 3 and sj["totals"]["failed"] == 2
    assert sj["totals"]["speech_seconds"] == pytest.approx(sum(float(by_file[r]["speech_seconds"]) for r in GOOD),
                                                           abs=1e-3)
    assert not (out / "notes.txt.csv").exists() and not list(out.rglob("skip.wav*"))

    # resume: nothing is redone (outputs untouched), the failed files are tried again
    before = mtimes(out)
    p = annotate(corpus, "--out", out, "--jobs", 2, "--plot", "-q")
    assert p.returncode == 1 and "0 annotated, 3 up to date, 2 failed" in p.stderr
    assert mtimes(out) == before
    assert {r["file"]: r["status"] for r in read_csv(out / "summary.csv")} == {
        **{r: "skipped" for r in GOOD}, **{r: "error" for r in BAD}}
    assert read_csv(out / "summary.csv")[1:] != [] and all(
        r["dominant"] for r in read_csv(out / "summary.csv") if r["status"] == "skipped")

    # a changed input is redone, and only it
    (corpus / "bad.wav").unlink()
    (corpus / "empty.wav").unlink()
    st = (corpus / "a.wav").stat()
    os.utime(corpus / "a.wav", ns=(st.st_atime_ns, max(before.values()) + 1000))
    p = annotate(corpus, "--out", out, "--jobs", 1, "--plot", "-q")
    assert p.returncode == 0, p.stderr
    after = mtimes(out)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"a.wav.csv", "a.wav.json", "a.wav.png"}

    # --force redoes everything; a missing output (here the plot) also makes a file due again
    (out / "sub" / "b.flac.png").unlink()
    p = annotate(corpus, "--out", out, "--jobs", 2, "--force", "--format", "json", "-q")
    assert p.returncode == 0, p.stderr
    assert {r["file"]: r["status"] for r in read_csv(out / "summary.csv")} == {r: "ok" for r in GOOD}
    p = annotate(corpus, "--out", out, "--jobs", 2, "--plot", "-q")  # the plot is missing: b.flac is done again
    assert p.returncode == 0
    statuses = {r["file"]: r["status"] for r in read_csv(out / "summary.csv")}
    assert statuses == {"a.wav": "skipped", "sub/b.flac": "ok", "sub/deeper/c.ogg": "skipped"}


def test_run_in_process_and_errors(corpus, tmp_path, labels):
    from apps.annotate import run
    from edgeser.errors import ModelError

    seen = []
    report = run(corpus, tmp_path / "o", formats=["csv"], jobs=1, on_result=seen.append)
    assert sorted(r["file"] for r in seen) == sorted(GOOD + BAD)
    assert report.count("ok") == 3 and len(report.failed) == 2 and report.aborted is None
    assert report.non_audio == ["notes.txt"]  # reported, not silently left out (hidden files are not counted)
    totals = json.loads((tmp_path / "o" / "summary.json").read_text())["totals"]
    assert totals["non_audio_skipped"] == 1
    assert (tmp_path / "o" / "a.wav.csv").is_file() and not (tmp_path / "o" / "a.wav.json").exists()
    # resume from CSV outputs alone: the summary is rebuilt from them
    again = run(corpus, tmp_path / "o", formats=["csv"], jobs=1)
    assert again.count("skipped") == 3
    assert [r["summary"] for r in again.results if r["status"] == "skipped"] == [
        r["summary"] for r in report.results if r["status"] == "ok"]

    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        run(corpus, tmp_path / "o2", model_path=bogus)
    p = annotate(corpus, "--out", tmp_path / "o2", "--model", bogus)
    assert p.returncode == 2 and "model" in p.stderr and "Traceback" not in p.stderr
    p = annotate(tmp_path / "nope", "--out", tmp_path / "o3")
    assert p.returncode == 2 and "not a folder" in p.stderr


def test_plot_without_matplotlib_is_a_clear_error(corpus, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from apps.annotate.cli import main\n"
            f"sys.exit(main([{str(corpus)!r}, '--out', {str(tmp_path / 'o')!r}, '--plot']))")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "--plot needs matplotlib" in p.stderr and "pip install matplotlib" in p.stderr
    assert not (tmp_path / "o").exists()


def test_plot_says_mostly_only_above_half():
    from apps.annotate.plot import dominant_phrase

    assert dominant_phrase({"dominant": "happy", "dominant_share": 0.62}) == "mostly happy"
    assert dominant_phrase({"dominant": "happy", "dominant_share": 0.30}) == "largest share: happy (30 %)"
    assert dominant_phrase({"dominant": "sad", "dominant_share": 0.5}) == "largest share: sad (50 %)"
    assert dominant_phrase({"dominant": None, "dominant_share": None}) == "no speech"


def test_find_inputs_separates_non_audio(corpus):
    from apps.annotate.core import find_inputs

    audio, other = find_inputs(corpus)
    assert [p.relative_to(corpus.resolve()).as_posix() for p in other] == ["notes.txt"]
    assert sorted(p.relative_to(corpus.resolve()).as_posix() for p in audio) == sorted(GOOD + BAD)
