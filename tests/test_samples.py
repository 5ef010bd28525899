"""apps.samples (setup.sh's main job): the shipped RAVDESS clips classified by the bundled model, as a table whose
rows come from the model at run time (never hard-coded), plus the sentence under it."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # apps/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))
SAMPLES = REPO / "samples"


def _manifest() -> list[dict]:
    with open(SAMPLES / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_shipped_clips_are_small_16k_flac_one_per_class():
    import edgeser

    rows = _manifest()
    assert sorted(r["emotion"] for r in rows) == sorted(edgeser.load().labels)
    held_out = set(edgeser.load().info.training["validation"]["test_speakers"])
    for r in rows:
        p = SAMPLES / r["path"]
        info = sf.info(p)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "FLAC")
        assert 2.0 < info.duration < 6.0 and p.stat().st_size < 150_000
        assert r["speaker"] in held_out  # never heard by the bundled model in training
        assert p.name.endswith(f"-{r['speaker'][-2:]}.flac")  # RAVDESS names end with the actor's number
    readme = (SAMPLES / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in readme and "10.1371/journal.pone.0196391" in readme
    assert all(r["path"] in readme for r in rows)


def test_table_comes_from_the_model():
    import edgeser

    p = subprocess.run([sys.executable, "-m", "apps.samples"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("file"))
    assert lines[i].split("  ")[0] == "file" and "acted emotion" in lines[i] and "predicted label" in lines[i]
    assert "confidence" in lines[i] and set(lines[i + 1]) <= {"-", " "}
    body = [line.split() for line in lines[i + 2 : i + 6]]
    assert len(body) == 4 and lines[i + 6].startswith("What it shows:")
    model = edgeser.load()
    labels = set(model.labels) | {"uncertain"}
    rows = {r["path"]: r for r in _manifest()}
    for cells in body:
        name, speaker, acted, predicted, conf = cells
        assert rows[name]["speaker"] == speaker and rows[name]["emotion"] == acted
        assert predicted in labels and 0.0 <= float(conf) <= 1.0
        want = model.classify(SAMPLES / name)  # the same call `edgeser classify` makes
        assert (predicted, float(conf)) == (want.label, pytest.approx(want.confidence, abs=0.006))
    hits = sum(c[2] == c[3] for c in body)
    assert f"{hits} of 4 as acted" in lines[i + 6] and "never heard in training" in lines[i + 6]


def test_sentence_tells_when_speakers_were_not_held_out():
    from apps.samples import what_it_shows

    assert "never heard in training" in what_it_shows(["A", "B"], {"A", "B", "C"}, 1, 2)
    assert "no fair test" in what_it_shows(["A", "B"], {"A"}, 2, 2) and "B may be" in what_it_shows(["A", "B"], {"A"}, 2, 2)
    assert "does not say" in what_it_shows(["A"], None, 0, 1)


def test_missing_folder_is_one_line_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "apps.samples", "--dir", str(tmp_path)], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "manifest.csv" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
