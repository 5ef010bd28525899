"""Pooled corpora (RAVDESS / nEMO / ASED readers, folds), the level-normalised front end, the statistics head and
the pooled training recipes, on generated look-alike corpora and random caches."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from edgeser.features import log_mel, whisper_normalize
from train.data.corpora import (
    EMOTIONS,
    SPECS,
    load_corpora,
    load_corpus,
    pooled_speaker_folds,
)
from train.data.ravdess import LABELS4, Clip, speaker_folds
from train.models.cta_rnn import CTARNN, CTARNNConfig
from train.models.cta_rnn import whisper_normalize as torch_whisper_normalize
from train.pooled import RECIPES, Pool, clip_stats, predict_clips, probe, protocol_splits, sample_weights, train_head


def _lookalike(root, corpus: str, speakers: int, emotions, per: int = 2):
    """A folder laid out like ../shared/data/<corpus>: manifest.csv + short noise clips."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in range(speakers):
        for e in emotions:
            for k in range(per):
                p = f"{e}/{s:02d}-{k}.ogg" if corpus != "ravdess" else f"Actor_{s + 1:02d}/{e}-{k}.flac"
                (root / p).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / p, np.zeros(1600, np.float32), 16000)
                spk = f"Actor_{s + 1:02d}" if corpus == "ravdess" else f"S{s}"
                rows.append({"path": p, "speaker": spk, "gender": "m" if s % 2 else "f", "emotion": e,
                             "duration_s": "0.1"})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def lookalikes(tmp_path, monkeypatch):
    _lookalike(tmp_path / "ravdess", "ravdess", 10, ["neutral", "calm", "happy", "sad", "angry", "fearful"])
    _lookalike(tmp_path / "nemo", "nemo", 5, ["neutral", "happiness", "sadness", "anger", "fear", "surprised"])
    _lookalike(tmp_path / "ased", "ased", 7, ["neutral", "happy", "sad", "angry", "fearful"])
    for c in SPECS:
        monkeypatch.setenv(f"EDGESER_{c.upper()}", str(tmp_path / c))
    return tmp_path


def test_readers_map_labels_and_prefix_speakers(lookalikes):
    nemo = load_corpus("nemo")
    assert {c.label for c in nemo} == set(LABELS4)  # happiness -> happy, anger -> angry, sadness -> sad
    assert all(c.speaker.startswith("nemo:") and c.meta["corpus"] == "nemo" for c in nemo)
    assert {c.meta["emotion"] for c in nemo if c.label == "happy"} == {"happiness"}
    every = load_corpus("nemo", EMOTIONS)
    assert {c.label for c in every} == {"neutral", "happy", "sad", "angry", "fearful", "surprised"}
    ased = load_corpus("ased", EMOTIONS)
    assert {c.gender for c in ased} == {"male", "female"}
    pooled = load_corpora(["ravdess", "nemo", "ased"])
    assert len({c.speaker for c in pooled}) == 22  # ids are unique once prefixed


def test_reader_errors(lookalikes, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("iemocapx")
    with pytest.raises(ValueError, match="unknown label"):
        load_corpus("nemo", ["boredom"])
    monkeypatch.setenv("EDGESER_ASED", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="EDGESER_ASED"):
        load_corpus("ased")
    bad = tmp_path / "bad"
    _lookalike(bad, "nemo", 1, ["boredom"])
    monkeypatch.setenv("EDGESER_NEMO", str(bad))
    with pytest.raises(ValueError, match="no mapping"):
        load_corpus("nemo")


def test_pooled_folds_hold_out_every_corpus_and_keep_ravdess_folds(lookalikes):
    clips = load_corpora(["ravdess", "nemo", "ased"])
    folds = pooled_speaker_folds(clips)
    flat = [s for f in folds for s in f]
    assert len(flat) == len(set(flat)) == 22
    assert all({s.split(":")[0] for s in f} == {"ravdess", "nemo", "ased"} for f in folds)
    rav = speaker_folds([Clip(c.path, c.speaker.split(":")[1], c.label, c.gender) for c in clips
                         if c.speaker.startswith("ravdess:")])
    assert [[s for s in f if s.startswith("ravdess:")] for f in folds] == [[f"ravdess:{s}" for s in f] for f in rav]


def test_level_normalisation_cancels_gain():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(32000) * 0.05).astype(np.float32)
    a = log_mel(x)
    for g in (0.03, 0.3, 3.0):
        b = log_mel(x * g)
        np.testing.assert_allclose(whisper_normalize(b, level_norm=True), whisper_normalize(a, level_norm=True),
                                   atol=2e-3)
    assert np.abs(whisper_normalize(log_mel(x * 0.03)) - whisper_normalize(a)).max() > 0.5  # Whisper's own does not
    t = torch.from_numpy(np.stack([a, log_mel(x * 0.1)]))
    np.testing.assert_allclose(torch_whisper_normalize(t, level_norm=True).numpy()[0],
                               whisper_normalize(a, level_norm=True), atol=1e-6)


def test_stats_head_matches_its_statistics_path_and_adapts_means_only():
    cfg = CTARNNConfig(n_channels=3, d_in=8, pooling="stats", n_heads=2, d_head=4, d_hidden=6, dropout=0.0,
                       time_pool=1, adapt=True, n_aux=2)
    head = CTARNN(cfg).eval()
    torch.nn.init.normal_(head.ref_mean)
    e = torch.randn(5, 3, 20, 8)
    mean, std = e.mean(2), torch.sqrt(e.var(2, unbiased=False) + 1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(head(e, pooled=True).numpy(), head.from_stats(mean, std).numpy(), atol=1e-5)
        mu = torch.randn(5, 3, 8)
        shifted = head(e + mu.unsqueeze(2), pooled=True, mu=mu + head.ref_mean)
        np.testing.assert_allclose(shifted.numpy(), head(e, pooled=True, mu=head.ref_mean.expand(5, 3, 8)).numpy(),
                                   atol=1e-4)
        logits, aux = head(e, pooled=True, with_aux=True)
    assert logits.shape == (5, 4) and aux.shape == (5, 2)
    with pytest.raises(ValueError, match="pooling"):
        CTARNN(CTARNNConfig(pooling="max"))


def _synthetic_pool(n_per=12, windows=3, d=8, n=3, seed=0):
    """Two corpora whose classes raise one feature each: separable, with a corpus offset."""
    rng = np.random.default_rng(seed)
    clips, mean, std, owner = [], [], [], []
    for corpus, offset in (("ravdess", 0.0), ("nemo", 2.0)):
        for spk in range(4):
            for lab in LABELS4 + ("fearful",):
                for k in range(n_per // 4):
                    i = len(clips)
                    clips.append(Clip(f"/x/{corpus}/{spk}/{lab}{k}", f"{corpus}:{spk}", lab, "male" if spk % 2 else "female",
                                      {"corpus": corpus}))
                    centre = np.full(d, offset)
                    centre[LABELS4.index(lab) if lab in LABELS4 else 4] += 3.0  # one feature per class
                    for _ in range(windows):
                        mean.append(centre + 0.3 * rng.standard_normal((n, d)))
                        std.append(1.0 + 0.1 * rng.standard_normal((n, d)))
                        owner.append(i)
    cp = {"mean": np.asarray(mean, np.float16), "std": np.abs(np.asarray(std, np.float16)), "seq": None,
          "clip": np.asarray(owner, np.int32)}
    return Pool(clips, [cp])


def test_sample_weights_balance_corpora_classes_and_speakers():
    pool = _synthetic_pool()
    train = np.ones(len(pool.clips), bool)
    train[:5] = False  # a few held out: weights must be zero there
    owner = pool.copies[0]["clip"]
    w = sample_weights(pool, train, owner, use_other=False)
    assert np.isclose(w.sum(), 1.0) and np.all(w[np.isin(owner, np.arange(5))] == 0)
    assert np.all(w[pool.y4[owner] < 0] == 0)  # the other emotion is not a class here
    for c in ("ravdess", "nemo"):
        assert np.isclose(w[pool.corpus[owner] == c].sum(), 0.5)
    w2 = sample_weights(pool, train, owner, use_other=True)
    assert w2[pool.y4[owner] < 0].sum() > 0


def test_recipes_learn_separable_data_and_protocols_hold_out(monkeypatch):
    pool = _synthetic_pool()
    monkeypatch.setitem(RECIPES, "tiny", {**RECIPES["stats"], "epochs": 120,
                                          "head": {**RECIPES["stats"]["head"], "n_heads": 2, "d_head": 8,
                                                   "d_hidden": 16}})
    splits = list(protocol_splits(pool, ["loco"], ["ravdess", "nemo"]))
    assert [s[2] for s in splits] == ["ravdess", "nemo"]
    for _, train_c, test_c, train_m, test, _ in splits:
        assert not train_m[test].any() and set(pool.corpus[test]) == {test_c} and test_c not in train_c
    train_m = np.asarray([s.endswith(("0", "1", "2")) for s in pool.speaker])
    test = np.nonzero(~train_m & (pool.y4 >= 0))[0]
    head = train_head(pool, train_m, "tiny", log=lambda *_: None)
    probs = predict_clips(head, pool, test)
    assert probs.shape == (len(test), 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == pool.y4[test]).mean() > 0.9
    sess = predict_clips(head, pool, test, session=True)
    assert not np.allclose(sess, probs)  # the adaptation statistics carry over from clip to clip
    p = probe(pool, train_m, test)
    assert (p.argmax(1) == pool.y4[test]).mean() > 0.9
    stats = clip_stats(pool)
    assert stats.shape == (len(pool.clips), 3 * 2 * 8)
