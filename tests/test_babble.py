"""train.babble (training babble from espeak-ng voices, per-speaker session conditions) and the session copies'
place in train.student (the adaptation prior ignores them)."""

from __future__ import annotations

import numpy as np
import pytest

from train import augment as A
from train import babble as B
from train.data.synth import DEFAULT_ESPEAK_VOICES, SENTENCES


def test_babble_voices_and_sentences_are_not_the_tts_test_set():
    test_variants = {v.split("+")[1] for v in DEFAULT_ESPEAK_VOICES if "+" in v}
    for v in B.BABBLE_VOICES:
        assert v not in DEFAULT_ESPEAK_VOICES
        assert "+" not in v or v.split("+")[1] not in test_variants, v
    test_sentences = {t for ts in SENTENCES.values() for t in ts}
    assert not test_sentences & set(B.BABBLE_SENTENCES)


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    cache = tmp_path_factory.mktemp("babble")
    s = B.talker_streams(B.BABBLE_VOICES[:3], B.BABBLE_SENTENCES[:2], cache=cache)
    assert len(list(cache.glob("talkers-*.npz"))) == 1
    again = B.talker_streams(B.BABBLE_VOICES[:3], B.BABBLE_SENTENCES[:2], cache=cache)  # from the cache
    for a, b in zip(s, again):
        np.testing.assert_array_equal(a, b)
    return s


def test_talker_streams_are_unit_rms_speech(streams):
    assert len(streams) == 3
    for x in streams:
        assert x.dtype == np.float32 and x.size > 2 * 16000
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


def test_babble_is_deterministic_unit_rms_and_mixes_talkers(streams):
    a = B.babble(20000, np.random.default_rng(3), streams, talkers=3)
    b = B.babble(20000, np.random.default_rng(3), streams, talkers=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20000,) and np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert not np.allclose(a, B.babble(20000, np.random.default_rng(4), streams, talkers=3))


def test_session_conditions_cover_the_kinds_and_snr_range():
    conds = [B.session_condition(np.random.default_rng(i)) for i in range(300)]
    kinds = {c["kind"] for c in conds}
    assert {"babble", "cafe"} <= kinds and kinds <= {"babble", "cafe", "white", "pink", "brown"}
    assert all(0.0 <= c["snr_db"] <= 15.0 for c in conds)
    assert 0.15 < np.mean([c["rt60"] is not None for c in conds]) < 0.45


@pytest.mark.parametrize("kind", ["babble", "cafe", "pink"])
def test_apply_session_keeps_length_and_sets_the_snr(streams, kind):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    cond = {"kind": kind, "snr_db": 5.0, "rt60": None}
    y = B.apply_session(x, cond, np.random.default_rng(1), streams)
    assert y.shape == x.shape and y.dtype == np.float32 and np.abs(y).max() <= 1.0
    noise = y.astype(np.float64) - x
    assert 10 * np.log10(A.active_power(x) / np.mean(noise**2)) == pytest.approx(5.0, abs=0.3)
    # fresh noise per clip, the same condition
    z = B.apply_session(x, cond, np.random.default_rng(2), streams)
    assert not np.allclose(y, z)


def test_adapt_sampler_prior_ignores_session_copies():
    from train.student import AdaptSampler

    class C:
        def __init__(self, s):
            self.speaker = s

    clips = [C("a"), C("a"), C("b")]
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((6, 2, 3, 4)).astype(np.float16), np.array([0, 0, 1, 1, 2, 2])) for _ in range(3)]
    data[2] = (data[2][0] + np.float16(10), data[2][1])  # a "session copy" far from the others
    is_train = np.array([True, True, False])
    s = AdaptSampler(data, clips, is_train, prior=8.0, ref_copies=2)
    want = np.concatenate([d.astype(np.float32).mean(axis=2)[:4] for d, _ in data[:2]]).mean(axis=0)
    np.testing.assert_allclose(s.ref_mean, want, rtol=1e-5)
    assert not np.allclose(AdaptSampler(data, clips, is_train, prior=8.0).ref_mean, want)


def test_adapt_sampler_mix_draws_a_random_neutral_share():
    from train.student import AdaptSampler

    class C:
        def __init__(self, s):
            self.speaker = s

    # one speaker, 1 neutral clip in 7 (as RAVDESS's 4 classes); neutral windows are +1, the others -1, so with no
    # prior mu = 2 * (neutral share of the drawn windows) - 1
    clips = [C("a") for _ in range(7)]
    y_clip = np.array([0, 1, 1, 2, 2, 3, 3])
    owner = np.repeat(np.arange(7), 4)
    emb = np.where(y_clip[owner] == 0, 1.0, -1.0)[:, None, None, None] * np.ones((1, 1, 2, 3))
    data = [(emb.astype(np.float16), owner)]
    is_train = np.ones(7, bool)

    def shares(mix):
        s = AdaptSampler(data, clips, is_train, prior=0.0, seed=1, y_clip=y_clip, mix=mix)
        return np.asarray([(s.mu(0, 0, n=40)[0, 0] + 1) / 2 for _ in range(400)])

    plain = shares(0.0)
    assert abs(plain.mean() - 1 / 7) < 0.03 and plain.max() < 0.5  # the speaker's training mix
    mixed = shares(1.0)
    assert abs(mixed.mean() - 0.5) < 0.06  # uniform neutral share
    assert (mixed > 0.9).mean() > 0.05 and (mixed < 0.1).mean() > 0.05
    half = shares(0.5)
    assert plain.mean() < half.mean() < mixed.mean()
    # a speaker without neutral-labelled clips keeps their own mix (no neutral share to draw), without an error
    no_neutral = AdaptSampler(data, clips, is_train, prior=0.0, seed=1, y_clip=np.where(y_clip == 0, 1, y_clip), mix=1.0)
    kept = np.asarray([(no_neutral.mu(0, 0, n=40)[0, 0] + 1) / 2 for _ in range(400)])
    assert abs(kept.mean() - 1 / 7) < 0.03
    with pytest.raises(ValueError):
        AdaptSampler(data, clips, is_train, prior=0.0, mix=0.5)  # no labels
    with pytest.raises(ValueError):
        AdaptSampler(data, clips, is_train, prior=0.0, y_clip=y_clip, mix=1.5)


def test_embed_copy_writes_each_clip_s_windows_once(tmp_path, espeak_speech):
    import soundfile as sf
    import torch

    from train.student import _embed_copy, runtime_windows

    class Clip:
        def __init__(self, path, speaker):
            self.path, self.speaker = str(path), speaker

    class Encoder:  # stand-in for the Whisper encoder: one number per window
        def embed(self, wins):
            return wins.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)

    clips = []
    for i, n in enumerate((24000, 40000)):  # speech (the runtime classifies no window of a clip without speech)
        p = tmp_path / f"c{i}.wav"
        sf.write(p, 0.5 * espeak_speech[0][:n], 16000, subtype="FLOAT")
        clips.append(Clip(p, f"s{i}"))
    seen = []

    def louder(x, clip):
        seen.append(clip.speaker)
        return 2 * x

    out = tmp_path / "cache" / "copy.npz"
    _embed_copy(Encoder(), clips, out, "test", louder, extra=lambda: {"conditions": np.asarray("{}")})
    z = np.load(out)
    from edgeser.audio import load

    want = [runtime_windows(2 * load(c.path)) for c in clips]
    assert seen == ["s0", "s1"] and z["emb"].shape == (sum(len(w) for w in want), 1, 1, 1)
    np.testing.assert_array_equal(z["clip"], np.repeat([0, 1], [len(w) for w in want]))
    np.testing.assert_allclose(z["emb"][:, 0, 0, 0].astype(np.float32),
                               torch.from_numpy(np.concatenate(want)).mean(dim=(1, 2)).numpy(), rtol=2e-3, atol=1e-3)
    assert list(z["paths"]) == [c.path for c in clips] and str(z["conditions"]) == "{}"
    before = out.stat().st_mtime_ns
    _embed_copy(Encoder(), clips, out, "test", louder)  # cached: not recomputed
    assert out.stat().st_mtime_ns == before and seen == ["s0", "s1"]
