"""The bundled .onnx and .pte give the same answers (ExecuTorch runtime with the XNNPACK + portable kernels)."""

import numpy as np
import pytest

import edgeser
from edgeser.audio import load as load_audio


@pytest.fixture(scope="module")
def both():
    return edgeser.load(backend="onnx"), edgeser.load(backend="executorch")


def _held_out_clips(info, root, n=12):
    import csv

    rows = list(csv.DictReader(open(root / "manifest.csv")))
    keep = [r for r in rows if r["speaker"] in set(info.training["validation"]["test_speakers"])
            and r["emotion"] in info.labels]
    rng = np.random.default_rng(0)
    return [root / keep[i]["path"] for i in rng.choice(len(keep), size=n, replace=False)]


def test_same_metadata(both):
    onnx_m, pte_m = both
    assert onnx_m.info == pte_m.info
    assert onnx_m.backend.name == "onnx" and pte_m.backend.name == "executorch"


def test_same_labels_on_real_speech(ravdess_corpus, both, speech_in_silence):
    onnx_m, pte_m = both
    clips = [load_audio(p) for p in _held_out_clips(onnx_m.info, ravdess_corpus)] + [speech_in_silence[0]]
    for x in clips:
        a, b = onnx_m.classify(x, 16000), pte_m.classify(x, 16000)
        assert a.label == b.label
        assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 0.1


def test_same_events_streaming(both, speech_in_silence):
    onnx_m, pte_m = both
    audio = speech_in_silence[0]
    ea, eb = onnx_m.analyze(audio, 16000, partial=True), pte_m.analyze(audio, 16000, partial=True)
    assert [(e.start, e.end, e.final, e.label) for e in ea] == [(e.start, e.end, e.final, e.label) for e in eb]
