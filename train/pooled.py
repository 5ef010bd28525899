"""The on-device model over pooled corpora (RAVDESS, nEMO, ASED): embedding caches, recipes and the two protocols.

    python -m train.pooled embed --copies 2                 # cache every corpus's runtime windows (level-normalised)
    python -m train.pooled embed --copies 1 --raw           # ... with Whisper's own normalisation (the baselines)
    python -m train.pooled eval --recipes probe stats cta bundled --protocols loco speaker
    python -m train.pooled fit --recipe stats --fold 0 --out runs/pooled_default   # the bundled model's head

Protocols: leave-one-corpus-out ("loco": train on two corpora, test on every clip of the third) and
speaker-independent folds over the pooled corpora ("speaker": :func:`~train.data.corpora.pooled_speaker_folds`).
Nothing is chosen on a test corpus: recipes are fixed before they are run (``RECIPES``), and the number of training
steps is fixed by the training set's size.

Windows come from edgeser's own runtime path (:func:`train.student.runtime_windows`), the encoder is frozen and its
hidden states are cached once per window: each channel's mean and std over the window's frames (the "stats" head)
and the frames averaged in fours (the "rnn" head). A clip's prediction pools its windows' logits as the runtime
does (``aggregate="mean_logits"``), with the running adaptation statistics a fresh stream would have.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.corpora import AROUSAL_VALENCE, CORPUS_NAMES, EMOTIONS, SPECS, corpus_of, load_corpus, pooled_speaker_folds
from .data.ravdess import LABELS4
from .metrics import classification_report
from .student import CACHE, FIRST_FRAMES, HOP_FRAMES, WINDOW_FRAMES

SEQ_POOL = 4  # frames averaged for the cached sequences (the "rnn" head's time_pool)


def cache_dir(corpus: str, encoder: str, level_norm: bool) -> Path:
    return CACHE / "emb" / "pooled" / f"{corpus}-{encoder.replace('/', '_')}-w{WINDOW_FRAMES}-{'lvl' if level_norm else 'raw'}"


def embed(corpora, encoder: str = "tiny.en", copies: int = 2, level_norm: bool = True, seed: int = 0,
          limit: int | None = None, seq: bool = True, labels=EMOTIONS, first_copy: int = 0) -> None:
    """Cache the clips of ``labels`` of each corpus: copy 0 clean, copies 1.. augmented (:class:`Augmenter`, seeded
    per corpus and copy). Per window: ``mean``/``std`` [N, D] over its frames, ``seq`` [N, T/4, D]."""
    import torch
    from tqdm import tqdm

    from edgeser.audio import load as load_audio

    from .augment import Augmenter
    from .models.cta_rnn import whisper_normalize
    from .student import build_encoder, runtime_windows

    model, _, _ = build_encoder(encoder)
    for corpus in corpora:
        clips = load_corpus(corpus, labels)[:limit]
        for c in range(first_copy, copies):
            out = cache_dir(corpus, encoder, level_norm) / f"copy{c}.npz"
            if out.is_file():
                print(f"cached: {out}")
                continue
            aug = Augmenter(p=0.9, seed=[seed, c, CORPUS_NAMES.index(corpus)]) if c else None
            means, stds, seqs, owner = [], [], [], []
            for i, clip in enumerate(tqdm(clips, desc=f"embed {corpus} copy {c}", mininterval=10)):
                x = load_audio(clip.path)
                if aug is not None:
                    x = aug(x)
                wins = runtime_windows(x)
                if not len(wins):  # no speech found: the clip has no windows (and counts as wrong when tested)
                    continue
                with torch.no_grad():
                    hs = model.encoder(whisper_normalize(torch.from_numpy(wins), level_norm=level_norm),
                                       output_hidden_states=True).hidden_states
                    h = torch.stack(list(hs), dim=1)  # [B, N, T, D]
                    means.append(h.mean(dim=2).numpy().astype(np.float16))
                    stds.append(torch.sqrt(h.var(dim=2, unbiased=False) + 1e-5).numpy().astype(np.float16))
                    if seq:
                        b, n, t, d = h.shape
                        t4 = t - t % SEQ_POOL
                        seqs.append(h[:, :, :t4].reshape(b, n, t4 // SEQ_POOL, SEQ_POOL, d).mean(3).numpy()
                                    .astype(np.float16))
                owner += [i] * len(wins)
            out.parent.mkdir(parents=True, exist_ok=True)
            more = {"seq": np.concatenate(seqs)} if seq else {}
            np.savez(out, mean=np.concatenate(means), std=np.concatenate(stds), clip=np.asarray(owner, np.int32),
                     paths=np.asarray([cl.path for cl in clips]), **more)
            print(f"wrote {out} ({len(owner)} windows)")


def first_channels(pool: "Pool", k: int | None) -> "Pool":
    """``pool`` restricted to the first ``k`` hidden states (views, no copy); ``None``: unchanged."""
    if k is None:
        return pool
    return Pool(pool.clips, [{n: (v[:, :k] if v is not None and n != "clip" else v) for n, v in cp.items()}
                             for cp in pool.copies])


@dataclass
class Pool:
    """The cached windows of some corpora and copies, with their clips (all emotions)."""

    clips: list  # every clip of the corpora, in corpus order
    copies: list = field(default_factory=list)  # per copy: dict(mean, std, seq|None, clip -> index into clips)

    @property
    def y4(self) -> np.ndarray:  # LABELS4 index per clip, -1 for the other emotions
        return np.asarray([LABELS4.index(c.label) if c.label in LABELS4 else -1 for c in self.clips])

    @property
    def corpus(self) -> np.ndarray:
        return np.asarray([corpus_of(c) for c in self.clips])

    @property
    def speaker(self) -> np.ndarray:
        return np.asarray([c.speaker for c in self.clips])


def load_pool(corpora, copies: int, encoder: str = "tiny.en", level_norm: bool = True, seq: bool = False) -> Pool:
    clips, parts = [], [[] for _ in range(copies)]
    for corpus in corpora:
        cs = load_corpus(corpus, EMOTIONS)
        for c in range(copies):
            z = np.load(cache_dir(corpus, encoder, level_norm) / f"copy{c}.npz")
            index = {cl.path: k for k, cl in enumerate(cs)}  # a cache may hold a subset of the emotions
            try:
                where = np.asarray([index[str(q)] for q in z["paths"]])
            except KeyError as e:
                raise ValueError(f"cache of {corpus} copy {c} names a clip not in the corpus ({e}); re-embed") from None
            parts[c].append({"mean": z["mean"], "std": z["std"], "seq": z["seq"] if seq else None,
                             "clip": where[z["clip"]] + len(clips)})
        clips += cs
    pool = Pool(clips)
    for p in parts:
        pool.copies.append({k: (np.concatenate([q[k] for q in p]) if p[0][k] is not None else None)
                            for k in ("mean", "std", "seq", "clip")})
    return pool


# --------------------------------------------------------------------------------------------------- recipes
#: Fixed before any held-out corpus was scored. "stats"/"cta": the deployable heads (level-normalised front end,
#: running adaptation, arousal/valence auxiliary targets from every emotion); "bundled": the RAVDESS-era head
#: (CTA-RNN, Whisper's own normalisation, no auxiliary targets); "probe": logistic regression on clip statistics.
#: "channels": k uses the first k hidden states only (the encoder's last layers are then not run at all).
RECIPES: dict[str, dict] = {
    "stats": {"head": {"pooling": "stats", "n_heads": 4, "d_head": 64, "d_hidden": 128, "dropout": 0.3,
                       "time_pool": 1, "adapt": True, "level_norm": True, "n_aux": 2},
              "level_norm": True, "aux_weight": 0.5, "epochs": 12},
    "stats-noaux": {"head": {"pooling": "stats", "n_heads": 4, "d_head": 64, "d_hidden": 128, "dropout": 0.3,
                             "time_pool": 1, "adapt": True, "level_norm": True},
                    "level_norm": True, "aux_weight": 0.0, "epochs": 12},
    "stats-raw": {"head": {"pooling": "stats", "n_heads": 4, "d_head": 64, "d_hidden": 128, "dropout": 0.3,
                           "time_pool": 1, "adapt": True, "level_norm": False, "n_aux": 2},
                  "level_norm": False, "aux_weight": 0.5, "epochs": 12},
    "stats-l3": {"head": {"pooling": "stats", "n_heads": 4, "d_head": 64, "d_hidden": 128, "dropout": 0.3,
                          "time_pool": 1, "adapt": True, "level_norm": True, "n_aux": 2},
                 "level_norm": True, "aux_weight": 0.5, "epochs": 12, "channels": 4},
    "cta": {"head": {"pooling": "rnn", "d_rnn": 32, "n_heads": 4, "d_head": 16, "dropout": 0.5,
                     "time_pool": SEQ_POOL, "adapt": True, "level_norm": True, "n_aux": 2},
            "level_norm": True, "aux_weight": 0.5, "epochs": 6},
    "bundled": {"head": {"pooling": "rnn", "d_rnn": 32, "n_heads": 4, "d_head": 16, "dropout": 0.5,
                         "time_pool": SEQ_POOL, "adapt": True, "level_norm": False},
                "level_norm": False, "aux_weight": 0.0, "epochs": 6},
    "probe": {"level_norm": False},
}


def sample_weights(pool: Pool, train_clip: np.ndarray, owner: np.ndarray, use_other: bool) -> np.ndarray:
    """Per training window: corpus, then class, then speaker, then clip uniform, so every corpus, emotion and speaker
    counts alike whatever its number of clips (``use_other``: the non-4-class emotions form one more class)."""
    y = pool.y4[owner]
    keep = train_clip[owner] & ((y >= 0) | use_other)
    corp, spk = pool.corpus[owner], pool.speaker[owner]
    w = np.zeros(len(owner))
    idx = np.nonzero(keep)[0]
    n_corp = len(set(corp[idx]))
    for c in set(corp[idx]):
        ic = idx[corp[idx] == c]
        classes = set(y[ic])
        for k in classes:
            ik = ic[y[ic] == k]
            speakers = set(spk[ik])
            for s in speakers:
                iss = ik[spk[ik] == s]
                clips_of, counts = np.unique(owner[iss], return_counts=True)
                per_clip = dict(zip(clips_of, counts))
                w[iss] = 1.0 / (n_corp * len(classes) * len(speakers) * len(clips_of)
                                * np.asarray([per_clip[o] for o in owner[iss]]))
    return w / w.sum()


def _clip_running_mu(ref, prior, decay, means):
    """The adaptation mean before each window of a clip, as a fresh stream computes it (``means``: [W, N, D])."""
    out, s, n = [], np.zeros_like(ref), 0.0
    for m in means:
        out.append((prior * ref + s) / (prior + n))
        s, n = decay * s + m, decay * n + 1.0
    return np.stack(out).astype(np.float32)


def train_head(pool: Pool, train_clip: np.ndarray, recipe: str, seed: int = 0, batch: int = 256, lr: float = 2e-3,
               log=print):
    """Train ``recipe``'s head on the windows of clips ``train_clip`` (every cached copy); returns the head."""
    import torch

    from .models.cta_rnn import CTARNN, CTARNNConfig
    from .student import AdaptSampler

    spec = RECIPES[recipe]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d = pool.copies[0]["mean"].shape
    cfg = CTARNNConfig(n_channels=d[1], d_in=d[2], n_classes=len(LABELS4), **spec["head"])
    head = CTARNN(cfg)
    aux_w = spec["aux_weight"] if cfg.n_aux else 0.0
    owners = [cp["clip"] for cp in pool.copies]
    ws = [sample_weights(pool, train_clip, o, use_other=aux_w > 0) for o in owners]
    flat = np.concatenate([[(c, j) for j in range(len(o))] for c, o in enumerate(owners)])
    p = np.concatenate(ws) / len(ws)
    sampler = None
    if cfg.adapt:  # AdaptSampler draws a speaker mean from window means (a [W, N, 1, D] "sequence" of one frame)
        data = [(cp["mean"][:, :, None, :], cp["clip"]) for cp in pool.copies]
        y4 = pool.y4
        sampler = AdaptSampler(data, pool.clips, train_clip & (y4 >= 0), cfg.adapt_prior, seed=seed,
                               ref_copies=1, y_clip=np.maximum(y4, 0), mix=0.5, neutral=LABELS4.index("neutral"))
        head.ref_mean.copy_(torch.from_numpy(sampler.ref_mean))
    av = np.asarray([AROUSAL_VALENCE[c.label] for c in pool.clips], np.float32)
    y4 = pool.y4
    n_train = int(train_clip.sum())
    steps = spec["epochs"] * max(1, n_train * 2 // batch)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    use_seq = cfg.pooling == "rnn"
    head.train()
    t0, tot = time.time(), 0.0
    for step in range(steps):
        pick = flat[rng.choice(len(flat), size=batch, p=p)]
        cps = [pool.copies[c] for c, _ in pick]
        own = np.asarray([cp["clip"][j] for cp, (_, j) in zip(cps, pick)])
        mu = None
        if sampler is not None:
            mu = torch.from_numpy(np.stack([sampler.mu(int(c), int(j)) for c, j in pick]))
        with torch.enable_grad():
            if use_seq:
                xb = torch.from_numpy(np.stack([cp["seq"][j] for cp, (_, j) in zip(cps, pick)]).astype(np.float32))
                logits, aux = head(xb, pooled=True, mu=mu, with_aux=True) if cfg.n_aux else (head(xb, pooled=True, mu=mu), None)
            else:
                m = torch.from_numpy(np.stack([cp["mean"][j] for cp, (_, j) in zip(cps, pick)]).astype(np.float32))
                s = torch.from_numpy(np.stack([cp["std"][j] for cp, (_, j) in zip(cps, pick)]).astype(np.float32))
                logits, aux = head.from_stats(m, s, mu, with_aux=True) if cfg.n_aux else (head.from_stats(m, s, mu), None)
            yb = torch.from_numpy(y4[own])
            lab = yb >= 0
            loss = torch.nn.functional.cross_entropy(logits[lab], yb[lab], label_smoothing=0.1) if lab.any() else 0.0
            if aux is not None:
                loss = loss + aux_w * torch.nn.functional.mse_loss(aux, torch.from_numpy(av[own]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
        sched.step()
        tot += float(loss.detach()) if torch.is_tensor(loss) else loss
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  {recipe} step {step + 1}/{steps}: loss {tot / max(1, steps // 5):.4f} ({time.time() - t0:.0f} s)")
            tot = 0.0
    head.eval()
    head.train_seconds = time.time() - t0
    return head


def window_logits(head, pool: Pool, clips: np.ndarray, copy: int = 0, session: bool = False) -> list[np.ndarray]:
    """Each clip's window logits [W, C] as a stream computes them: windows in order, the adaptation mean before
    each window from the prior and the windows before it (a fresh stream per clip). ``session``: each speaker's
    clips one after another through one stream (statistics carried from clip to clip, in the given order)."""
    import torch

    cp = pool.copies[copy]
    rows_of: dict[int, list[int]] = {}
    for r, o in enumerate(cp["clip"]):
        rows_of.setdefault(int(o), []).append(r)
    cfg = head.cfg
    ref = head.ref_mean.numpy().astype(np.float64) if cfg.adapt else None
    out = []
    state: dict[str, tuple] = {}
    with torch.no_grad():
        for i in clips:
            rows = np.asarray(rows_of.get(int(i), []), int)
            if not len(rows):
                out.append(np.zeros((0, cfg.n_classes), np.float32))
                continue
            mean = cp["mean"][rows].astype(np.float32)
            mu = None
            if cfg.adapt:
                spk = pool.clips[i].speaker
                s, n = state.get(spk, (np.zeros_like(ref), 0.0)) if session else (np.zeros_like(ref), 0.0)
                mus = []
                for m in mean:
                    mus.append((cfg.adapt_prior * ref + s) / (cfg.adapt_prior + n))
                    s, n = cfg.adapt_decay * s + m, cfg.adapt_decay * n + 1.0
                if session:
                    state[spk] = (s, n)
                mu = torch.from_numpy(np.stack(mus).astype(np.float32))
            if cfg.pooling == "rnn":
                logits = head(torch.from_numpy(cp["seq"][rows].astype(np.float32)), pooled=True, mu=mu)
            else:
                logits = head.from_stats(torch.from_numpy(mean), torch.from_numpy(cp["std"][rows].astype(np.float32)), mu)
            out.append(logits.numpy())
    return out


def pool_logits(logits: list[np.ndarray], n_classes: int, temperature: float = 1.0) -> np.ndarray:
    """Clip probabilities: softmax of the mean window logits / T (uniform for a clip without windows)."""
    out = np.full((len(logits), n_classes), 1.0 / n_classes, np.float32)
    for k, lg in enumerate(logits):
        if len(lg):
            z = lg.mean(0) / temperature
            e = np.exp(z - z.max())
            out[k] = e / e.sum()
    return out


def predict_clips(head, pool: Pool, clips: np.ndarray, copy: int = 0, session: bool = False) -> np.ndarray:
    """Pooled probabilities [len(clips), C] of each clip as ``edgeser.classify`` computes them (softmax of the mean
    window logits), see :func:`window_logits`."""
    return pool_logits(window_logits(head, pool, clips, copy, session), head.cfg.n_classes)


def clip_stats(pool: Pool, copy: int = 0) -> np.ndarray:
    """Clip-level mean and std of every hidden state over all the clip's window frames: [clips, N * 2D]."""
    cp = pool.copies[copy]
    owner, m, s = cp["clip"], cp["mean"].astype(np.float64), cp["std"].astype(np.float64)
    n = len(pool.clips)
    cnt = np.bincount(owner, minlength=n)[:, None, None]
    s1 = np.zeros((n,) + m.shape[1:])
    s2 = np.zeros_like(s1)
    np.add.at(s1, owner, m)
    np.add.at(s2, owner, s ** 2 + m ** 2)
    mean = s1 / np.maximum(cnt, 1)
    std = np.sqrt(np.maximum(s2 / np.maximum(cnt, 1) - mean ** 2, 0))
    return np.concatenate([mean, std], axis=-1).reshape(n, -1).astype(np.float32)


def probe(pool: Pool, train_clip: np.ndarray, test_clips: np.ndarray, seed: int = 0) -> np.ndarray:
    """Baseline: logistic regression (standardised features, class-balanced) on clip statistics."""
    import torch

    x = clip_stats(pool)
    y = pool.y4
    tr = np.nonzero(train_clip & (y >= 0))[0]
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    xt = torch.from_numpy((x[tr] - mu) / sd)
    yt = torch.from_numpy(y[tr])
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], len(LABELS4))
    cw = torch.from_numpy((len(tr) / (len(LABELS4) * np.bincount(y[tr], minlength=len(LABELS4)))).astype(np.float32))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt, weight=cw) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return torch.softmax(lin(torch.from_numpy((x[test_clips] - mu) / sd)), -1).numpy()


# --------------------------------------------------------------------------------------------------- protocols
def protocol_splits(pool: Pool, protocols, corpora):
    """(protocol, train corpora, test corpus or fold name, train mask, test clip indices, test speakers)."""
    corp = pool.corpus
    y = pool.y4
    for prot in protocols:
        if prot == "loco":
            for held in corpora:
                train = np.asarray([c != held for c in corp])
                test = np.nonzero((corp == held) & (y >= 0))[0]
                yield prot, [c for c in corpora if c != held], held, train, test, sorted(set(pool.speaker[test]))
        elif prot == "speaker":
            folds = pooled_speaker_folds(pool.clips)
            for k, f in enumerate(folds):
                held = set(f)
                spk = pool.speaker
                test_m = np.asarray([s in held for s in spk])
                yield prot, list(corpora), f"fold{k}", ~test_m, np.nonzero(test_m & (y >= 0))[0], sorted(held)
        else:
            raise ValueError(f"unknown protocol {prot!r}")


def _report(y_true, probs) -> dict:
    r = classification_report(y_true, probs.argmax(1), LABELS4)
    return {k: r[k] for k in ("uar", "wa", "recall", "confusion")}


def evaluate(recipes, protocols, corpora=CORPUS_NAMES, encoder: str = "tiny.en", copies: int = 2, seed: int = 0,
             results: Path | None = None, command: str = "") -> list[dict]:
    """Every (recipe, protocol, held-out corpus or fold) record; written to ``results`` as they finish."""
    records = []
    if results is not None and results.is_file():
        records = json.loads(results.read_text())["records"]
    pools = {}
    for recipe in recipes:
        spec = RECIPES[recipe]
        ln = spec["level_norm"]
        n_copies = 1 if recipe in ("probe", "bundled") else copies
        key = (ln, n_copies, recipe in ("cta", "bundled"))
        if key not in pools:
            pools.clear()
            pools[key] = load_pool(corpora, n_copies, encoder, ln, seq=key[2])
        pool = first_channels(pools[key], spec.get("channels"))
        for prot, train_c, test_c, train_m, test, spk in protocol_splits(pool, protocols, corpora):
            t0 = time.time()
            y_true = pool.y4[test]
            extra = {}
            if recipe == "probe":
                probs = probe(pool, train_m, test, seed)
            else:
                head = train_head(pool, train_m, recipe, seed)
                probs = predict_clips(head, pool, test)
                order = test[np.lexsort((test, pool.speaker[test]))]  # each speaker's clips in corpus order
                sess = predict_clips(head, pool, order, session=True)
                pos = {int(i): k for k, i in enumerate(order)}
                extra = {"session": _report(y_true, sess[[pos[int(i)] for i in test]]),
                         "train_seconds": round(head.train_seconds, 1)}
            rec = {"recipe": recipe, "protocol": prot, "train_corpora": train_c, "test_corpus": test_c,
                   "test_speakers": spk, "n": int(len(test)), **_report(y_true, probs), **extra,
                   "evaluation": "per clip: each clip alone, its runtime windows through the eager head on cached "
                                 "frozen-encoder states, softmax of the mean window logits (as edgeser.classify)",
                   "command": command, "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
                   "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "seconds": round(time.time() - t0, 1)}
            records = [r for r in records if not (r["recipe"] == recipe and r["protocol"] == prot
                                                   and r["test_corpus"] == test_c)] + [rec]
            print(f"{recipe:12s} {prot:8s} {test_c:8s} UAR {rec['uar']:.3f} neutral {rec['recall']['neutral']:.2f}"
                  + (f" | session {extra['session']['uar']:.3f}" if extra else ""), flush=True)
            if results is not None:
                results.parent.mkdir(parents=True, exist_ok=True)
                results.write_text(json.dumps({"records": records}, indent=1))
    return records


def fit(recipe: str, fold: int | None, out: Path, corpora=CORPUS_NAMES, encoder: str = "tiny.en", copies: int = 2,
        seed: int = 0) -> dict:
    """Train the shippable head on every corpus minus pooled speaker fold ``fold`` (None: everything); validate on
    that fold and save ``student.pt`` (the checkpoint ``python -m export`` reads)."""
    import torch

    spec = RECIPES[recipe]
    pool = first_channels(load_pool(corpora, copies, encoder, spec["level_norm"], seq=spec["head"]["pooling"] == "rnn"),
                          spec.get("channels"))
    spk = pool.speaker
    held = set(pooled_speaker_folds(pool.clips)[fold]) if fold is not None else set()
    test_m = np.asarray([s in held for s in spk])
    head = train_head(pool, ~test_m, recipe, seed)
    validation = {"fold": fold, "test_speakers": sorted(held), "per_corpus": {}}
    for corpus in corpora:
        test = np.nonzero(test_m & (pool.y4 >= 0) & (pool.corpus == corpus))[0]
        if len(test):
            validation["per_corpus"][corpus] = _report(pool.y4[test], predict_clips(head, pool, test))
    test = np.nonzero(test_m & (pool.y4 >= 0))[0]
    calibration = {"temperature": 1.0, "abstain_below": 0.0}
    if len(test):
        from .calibration import abstain_curve, choose_threshold, fit_temperature

        lg = window_logits(head, pool, test)
        r = classification_report(pool.y4[test], pool_logits(lg, len(LABELS4)).argmax(1), LABELS4)
        validation.update({k: r[k] for k in ("uar", "wa", "macro_f1", "recall", "confusion", "n")})
        keep = [k for k, x in enumerate(lg) if len(x)]
        t = fit_temperature([lg[k] for k in keep], pool.y4[test][keep], aggregate="mean_logits")
        probs = pool_logits([lg[k] for k in keep], len(LABELS4), t)
        calibration = {"temperature": round(float(t), 3),
                       "abstain_below": choose_threshold(abstain_curve(probs, pool.y4[test][keep])).threshold,
                       "fitted_on": "the held-out validation speakers (pooled speaker fold), mean window logits"}
    validation["calibration"] = calibration
    training = {
        "data": "; ".join(f"{SPECS[c].citation} ({SPECS[c].language}), licence: {SPECS[c].licence}" for c in corpora)
                + (f"; minus the speakers of pooled speaker fold {fold}" if fold is not None else ""),
        "corpora": [{"name": c, "language": SPECS[c].language, "licence": SPECS[c].licence,
                     "citation": SPECS[c].citation} for c in corpora],
        "licence": "CC BY-NC-SA 4.0 (inherited from RAVDESS and nEMO); ASED: research use, not for commercial use "
                   "without its authors' consent",
    }
    out.mkdir(parents=True, exist_ok=True)
    ck = {"config": head.cfg.to_dict(), "head": head.state_dict(), "encoder": encoder, "labels": list(LABELS4),
          "window_frames": WINDOW_FRAMES, "hop_frames": HOP_FRAMES, "first_frames": FIRST_FRAMES,
          "validation": validation, "training": training, "recipe": recipe,
          "command": " ".join(["python -m train.pooled"] + sys.argv[1:])}
    torch.save(ck, out / "student.pt")
    (out / "validation.json").write_text(json.dumps(validation, indent=1))
    print(json.dumps({"uar": validation.get("uar"), **{c: v["uar"] for c, v in validation["per_corpus"].items()}}))
    return validation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.pooled", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("embed", "eval", "fit"):
        p = sub.add_parser(name)
        p.add_argument("--encoder", default="tiny.en")
        p.add_argument("--corpora", default=",".join(CORPUS_NAMES))
        p.add_argument("--copies", type=int, default=2, help="1 clean + (copies-1) augmented copies per clip")
        p.add_argument("--seed", type=int, default=0)
        if name == "embed":
            p.add_argument("--raw", action="store_true", help="Whisper's own normalisation (no level normalisation)")
            p.add_argument("--limit", type=int, default=None)
            p.add_argument("--no-seq", action="store_true", help="cache only the per-window statistics")
            p.add_argument("--four-class", action="store_true", help="only the clips of the 4 classes")
            p.add_argument("--first-copy", type=int, default=0)
        elif name == "eval":
            p.add_argument("--recipes", nargs="+", default=["probe", "stats"], choices=sorted(RECIPES))
            p.add_argument("--protocols", nargs="+", default=["loco", "speaker"], choices=["loco", "speaker"])
            p.add_argument("--results", type=Path, default=Path("benchmarks/results/generalisation.json"))
        else:
            p.add_argument("--recipe", default="stats", choices=sorted(r for r in RECIPES if r != "probe"))
            p.add_argument("--fold", type=int, default=0, help="pooled speaker fold held out for validation (-1: none)")
            p.add_argument("--out", type=Path, default=Path("runs/pooled_default"))
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("EDGESER_THREADS", os.cpu_count() or 1)))
    corpora = a.corpora.split(",")
    if a.cmd == "embed":
        embed(corpora, a.encoder, a.copies, level_norm=not a.raw, seed=a.seed, limit=a.limit, seq=not a.no_seq,
              labels=LABELS4 if a.four_class else EMOTIONS, first_copy=a.first_copy)
    elif a.cmd == "eval":
        evaluate(a.recipes, a.protocols, corpora, a.encoder, a.copies, a.seed, a.results,
                 command="python -m train.pooled " + " ".join(sys.argv[1:] if argv is None else argv))
    else:
        fit(a.recipe, None if a.fold < 0 else a.fold, a.out, corpora, a.encoder, a.copies, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
