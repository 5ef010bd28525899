"""Check an edgeser ``.pte`` the way a mobile app will use it, through ExecuTorch's own runtime (not edgeser's):

    python apps/mobile/check_pte.py [--pte M.pte] [--onnx M.onnx] [--audio clip.wav] [--windows N] [--json]

1. the program loads in ``executorch.runtime`` and has the methods ``forward`` and ``edgeser_metadata``;
2. ``forward`` takes one float32 [1, 80, 200] tensor and returns one float32 [1, n_labels] tensor;
3. its delegates are XNNPACK only and every operator left outside them is an ATen operator that the runtime's
   portable kernels implement (what ExecuTorch's prebuilt Android AAR / iOS frameworks ship);
4. ``edgeser_metadata`` returns the UTF-8 JSON the sidecar ``.pte.json`` and the ONNX model carry (same labels,
   rates, window sizes);
5. ``forward`` on log-mel windows (computed exactly as the app must: edgeser.features.log_mel, frames before the
   stream = -10) agrees with the ONNX model (int8 both, so within a tolerance) on the label and the probabilities.

Exit code 0 when every check passes, 1 otherwise, 2 if ExecuTorch is not installed (``pip install
'edgeser[executorch]' && pip install --no-deps executorch==1.5.1``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a script from anywhere in the repository
    sys.path.insert(0, str(REPO))

DEFAULT_DIR = REPO / "edgeser" / "models" / "default"
ALLOWED_DELEGATES = {"XnnpackBackend"}
PROB_TOLERANCE = 0.15  # max |p_pte - p_onnx| per class: both are int8, quantized differently
MIN_AGREEMENT = 0.8  # share of windows where the two agree on the label
METADATA_KEYS = ("labels", "sample_rate", "n_fft", "hop_length", "n_mels", "window_frames", "hop_frames",
                 "first_frames", "input_name", "input_shape", "output_name", "name", "version", "schema",
                 "temperature")


class Report:
    def __init__(self):
        self.checks: list[dict] = []
        self.info: dict = {}

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        return bool(ok)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)


def synthetic_speechlike(seconds: float = 3.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like test signal (gliding harmonics with syllable-rate envelope + a little noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum((0.6 / k) * np.sin(k * phase) * (1.0 + 0.5 * np.sin(2 * np.pi * (0.9 + 0.3 * k) * t)) for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 0.5
    x = 0.25 * x * env + 0.003 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def windows_of(audio16k: np.ndarray, info, n: int) -> tuple[np.ndarray, list[int]]:
    """Log-mel windows as an app builds them: ``window_frames`` frames ending every ``hop_frames`` frames, from the
    first full window on (or from ``first_frames`` for a clip shorter than a window; frames before the stream began
    are digital silence)."""
    from edgeser.features import log_mel
    from edgeser.stream import SILENCE_LOGMEL

    mel = log_mel(audio16k)
    w = info["window_frames"]
    padded = np.concatenate([np.full((mel.shape[0], w), SILENCE_LOGMEL, np.float32), mel], axis=1)
    first = w if mel.shape[1] >= w else info["first_frames"]
    ends = list(range(first, mel.shape[1] + 1, info["hop_frames"]))[:n] or [mel.shape[1]]
    return np.stack([padded[None, :, e:e + w] for e in ends]), ends


def operators_of(pte: Path) -> tuple[list[str], list[str], str]:
    """(delegate ids, non-delegated operator names ``ns::name.overload``) of every method, read from the program's
    flatbuffer with ExecuTorch's serializer (needs executorch's ``exir``, i.e. torch); ("", "", why) if unavailable."""
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary
    except Exception as exc:  # pragma: no cover - exir missing
        return [], [], f"cannot read the program's operators ({type(exc).__name__}: {exc})"
    prog = deserialize_pte_binary(pte.read_bytes())
    prog = getattr(prog, "program", prog)
    delegates, ops = [], set()
    for plan in prog.execution_plan:
        delegates += [d.id for d in plan.delegates]
        ops |= {f"{o.name}.{o.overload}" if o.overload else o.name for o in plan.operators}
    return delegates, sorted(ops), ""


def run_checks(pte: Path, onnx: Path | None, audio: Path | None, n_windows: int) -> Report:
    rep = Report()
    from executorch.runtime import Runtime

    rt = Runtime.get()
    rep.info["pte"] = str(pte)
    rep.info["pte_bytes"] = pte.stat().st_size
    try:
        import importlib.metadata as md

        rep.info["executorch"] = md.version("executorch")
    except Exception:
        pass

    # 1. load, methods
    t0 = time.perf_counter()
    program = rt.load_program(str(pte))
    rep.info["load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    methods = set(program.method_names)
    rep.info["methods"] = sorted(methods)
    if not rep.check("methods", {"forward", "edgeser_metadata"} <= methods, f"methods {sorted(methods)}"):
        return rep

    # 4 (first: its labels are needed). metadata
    raw = program.load_method("edgeser_metadata").execute([])[0]
    meta = json.loads(bytes(np.asarray(raw.numpy(), dtype=np.uint8).tobytes()).decode("utf-8"))
    rep.info["metadata"] = {k: meta.get(k) for k in METADATA_KEYS}
    side = pte.with_name(pte.name + ".json")
    if side.is_file():
        side_meta = json.loads(side.read_text())
        rep.check("metadata = sidecar .pte.json", side_meta == meta,
                  "identical" if side_meta == meta else f"differs in {sorted(k for k in meta if meta.get(k) != side_meta.get(k))}")
    labels = list(meta["labels"])
    w = int(meta["window_frames"])

    # 2. signature
    mm = program.metadata("forward")
    ins = [tuple(mm.input_tensor_meta(i).sizes()) for i in range(mm.num_inputs())]
    outs = [tuple(mm.output_tensor_meta(i).sizes()) for i in range(mm.num_outputs())]
    rep.info["forward"] = {"inputs": ins, "outputs": outs}
    want_in, want_out = (1, int(meta["n_mels"]), w), (1, len(labels))
    state_shapes = [tuple(st["shape"]) for st in meta.get("state", [])]  # carried state: after the window / logits
    rep.check("forward signature", ins == [want_in] + state_shapes and outs == [want_out] + state_shapes
              and str(mm.input_tensor_meta(0).dtype()) in ("6", "ScalarType.FLOAT", "Float"),
              f"inputs {ins} (float32), outputs {outs}; expected {[want_in] + state_shapes} -> {[want_out] + state_shapes}")

    # 3. delegates and operators
    delegates, ops, why = operators_of(pte)
    if why:
        rep.check("delegates and operators", False, why)
    else:
        rep.info["delegates"] = {d: delegates.count(d) for d in sorted(set(delegates))}
        rep.info["operators"] = ops
        registered = set(rt.operator_registry.operator_names)
        foreign = sorted(set(delegates) - ALLOWED_DELEGATES)
        rep.check("delegates: XNNPACK only", bool(delegates) and not foreign,
                  f"{len(delegates)} delegate calls: {rep.info['delegates']}" + (f"; foreign {foreign}" if foreign else ""))
        non_aten = [o for o in ops if not o.startswith("aten::")]
        missing = [o for o in ops if o not in registered]
        rep.check("operators: ATen (portable kernels) only", not non_aten and not missing,
                  f"{len(ops)} operators outside delegates: {', '.join(ops)}"
                  + (f"; not ATen: {non_aten}" if non_aten else "") + (f"; not in this runtime: {missing}" if missing else ""))
        rep.check("XNNPACK backend available in this runtime", rt.backend_registry.is_available("XnnpackBackend"),
                  f"registered backends: {list(rt.backend_registry.registered_backend_names)}")

    # 5. forward vs ONNX
    import torch

    import edgeser
    from edgeser.audio import load as load_audio
    from edgeser.stream import softmax

    if audio is not None:
        x = load_audio(audio)
        rep.info["audio"] = str(audio)
    else:
        x = synthetic_speechlike()
        rep.info["audio"] = "synthetic speech-like signal (3 s)"
    wins, ends = windows_of(x, meta, n_windows)
    forward = program.load_method("forward")
    t0 = time.perf_counter()
    # stateful models (test-time adaptation: metadata "state"): the app carries the state from window to window,
    # starting from each entry's "init" fill
    state = [np.full(st["shape"], float(st.get("init", 0.0)), np.float32) for st in meta.get("state", [])]
    rep.info["state"] = [{"name": st["name"], "shape": st["shape"], "scope": st.get("scope", "segment")}
                         for st in meta.get("state", [])]
    pte_logits = []
    for win in wins:
        out = forward.execute([torch.from_numpy(np.ascontiguousarray(win))] + [torch.from_numpy(a) for a in state])
        pte_logits.append(out[0].numpy().reshape(-1))
        state = [o.numpy().astype(np.float32).reshape(st["shape"]) for o, st in zip(out[1:], meta.get("state", []))]
    pte_logits = np.stack(pte_logits)
    rep.info["pte_ms_per_window"] = round((time.perf_counter() - t0) * 1000 / len(wins), 2)
    rep.check("forward output finite", bool(np.all(np.isfinite(pte_logits))), f"{len(wins)} windows")

    onnx_model = edgeser.load(onnx) if onnx is not None else edgeser.load()
    rep.info["onnx"] = onnx_model.path
    onnx_labels = list(onnx_model.labels)
    rep.check("labels = ONNX model's", onnx_labels == labels, f"pte {labels}, onnx {onnx_labels}")
    oi = onnx_model.info
    same = all(meta[k] == getattr(oi, k) for k in ("sample_rate", "n_fft", "hop_length", "n_mels", "window_frames",
                                                    "hop_frames", "first_frames"))
    rep.check("front end = ONNX model's", same, "rates, FFT, hop, mels, window schedule")
    t0 = time.perf_counter()
    onnx_state, onnx_logits = onnx_model.info.initial_state(), []
    for win in wins:
        z, onnx_state = onnx_model.backend.step(win, onnx_state)
        onnx_logits.append(z)
    onnx_logits = np.stack(onnx_logits)
    rep.info["onnx_ms_per_window"] = round((time.perf_counter() - t0) * 1000 / len(wins), 2)
    temp = float(meta.get("temperature", 1.0))
    p_pte = np.stack([softmax(z, temp) for z in pte_logits])
    p_onnx = np.stack([softmax(z, temp) for z in onnx_logits])
    agree = float(np.mean(p_pte.argmax(1) == p_onnx.argmax(1)))
    max_dp = float(np.abs(p_pte - p_onnx).max())
    first = {"window_end_frame": ends[0], "pte": dict(zip(labels, np.round(p_pte[0], 4).tolist())),
             "onnx": dict(zip(labels, np.round(p_onnx[0], 4).tolist()))}
    rep.info["comparison"] = {"windows": len(wins), "label_agreement": agree, "max_prob_diff": round(max_dp, 4),
                              "max_logit_diff": round(float(np.abs(pte_logits - onnx_logits).max()), 4),
                              "first_window": first}
    rep.check("first window: same label as ONNX", p_pte[0].argmax() == p_onnx[0].argmax(),
              f"pte {labels[int(p_pte[0].argmax())]} {p_pte[0].max():.3f}, "
              f"onnx {labels[int(p_onnx[0].argmax())]} {p_onnx[0].max():.3f}")
    rep.check(f"probabilities within {PROB_TOLERANCE} of ONNX", max_dp <= PROB_TOLERANCE,
              f"max |dp| {max_dp:.4f} over {len(wins)} windows")
    rep.check(f"label agreement >= {MIN_AGREEMENT:.0%}", agree >= MIN_AGREEMENT, f"{agree:.0%} of {len(wins)} windows")
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python apps/mobile/check_pte.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pte", type=Path, default=DEFAULT_DIR / "edgeser-default.pte", help="the .pte to check")
    ap.add_argument("--onnx", type=Path, default=None, help="ONNX model to compare with (default: the bundled one)")
    ap.add_argument("--audio", type=Path, default=None, help="audio file for the windows (default: synthetic)")
    ap.add_argument("--windows", type=int, default=8, help="windows compared (default 8)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    if not args.pte.is_file():
        print(f"check_pte: error: no such file {args.pte}", file=sys.stderr)
        return 2
    try:
        import executorch.runtime  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        from edgeser.runtime.executorch import INSTALL

        print(f"check_pte: error: ExecuTorch is not installed ({exc}); {INSTALL}", file=sys.stderr)
        return 2
    try:
        rep = run_checks(args.pte, args.onnx, args.audio, max(1, args.windows))
    except Exception as exc:
        rep = Report()
        rep.check("load and run the program", False, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    if args.json:
        print(json.dumps({"ok": rep.ok, "checks": rep.checks, "info": rep.info}, indent=1))
    else:
        for c in rep.checks:
            print(f"[{'ok' if c['ok'] else 'FAIL':>4}] {c['check']}: {c['detail']}")
        i = rep.info
        if "comparison" in i:
            print(f"       load {i.get('load_ms')} ms; forward {i.get('pte_ms_per_window')} ms/window (ExecuTorch), "
                  f"{i.get('onnx_ms_per_window')} ms/window (ONNX Runtime); {i.get('pte_bytes', 0) / 1e6:.1f} MB")
        print("all checks passed" if rep.ok else "SOME CHECKS FAILED")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
