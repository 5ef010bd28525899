"""Timeline plot of one file (PNG bytes), with matplotlib's object API (no pyplot state; safe in worker processes)."""

from __future__ import annotations

import io

MATPLOTLIB_MISSING = ("--plot needs matplotlib, which is not installed: pip install matplotlib "
                      "(or leave out --plot)")


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def dominant_phrase(summary: dict) -> str:
    """"mostly X" only when X holds more than half of the speech, else "largest share: X (30 %)"."""
    dom, share = summary.get("dominant"), summary.get("dominant_share")
    if not dom:
        return "no speech"
    if share is not None and share > 0.5:
        return f"mostly {dom}"
    return f"largest share: {dom} ({share * 100:.0f} %)" if share is not None else f"largest share: {dom}"


def timeline_png(events, duration: float, labels, colors: dict, *, title: str = "", summary: dict | None = None,
                 dpi: int = 100) -> bytes:
    """Two rows over the file's time axis: the label of each speech segment (bar height = confidence) and its
    per-class scores stacked; a legend in the labels' colours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(10, 3.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6], "hspace": 0.18})
    end = max(float(duration), max((e["end"] for e in events), default=0.0), 1e-3)
    for e in events:
        x, w = e["start"], max(e["end"] - e["start"], end * 1e-3)
        ax1.bar(x, max(0.15, e["confidence"]), width=w, align="edge", color=colors[e["label"]], linewidth=0)
        bottom = 0.0
        for k in labels:
            v = float(e["scores"].get(k, 0.0))
            if v > 0:
                ax2.bar(x, v, width=w, bottom=bottom, align="edge", color=colors[k], linewidth=0)
                bottom += v
    ax1.set_ylim(0, 1)
    ax1.set_yticks([0, 0.5, 1])
    ax1.set_ylabel("confidence", fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_yticks([0, 0.5, 1])
    ax2.set_ylabel("scores", fontsize=8)
    ax2.set_xlim(0, end)
    ax2.set_xlabel("time (s)")
    for ax in (ax1, ax2):
        ax.tick_params(labelsize=8)
        ax.set_facecolor("#f3f4f6")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    head = title
    if summary is not None:
        head += (f"   ({summary['duration']:.1f} s, {summary['speech_seconds']:.1f} s speech, "
                 f"{summary['segments']} segments, {dominant_phrase(summary)})")
    ax1.set_title(head, fontsize=9, loc="left")
    fig.legend(handles=[Patch(color=colors[k], label=k) for k in labels], loc="upper right", ncol=len(labels),
               fontsize=8, frameon=False)
    if not events:
        ax1.text(0.5, 0.5, "no speech found", transform=ax1.transAxes, ha="center", va="center", color="#6b7280")
    fig.subplots_adjust(left=0.07, right=0.99, top=0.84, bottom=0.14)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
