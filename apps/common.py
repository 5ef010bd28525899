"""Small helpers shared by the apps: label colours, one-line error messages."""

from __future__ import annotations

# Colour-blind-friendly categorical palette (Tableau 10). Colours are assigned to labels by their position in the
# model's metadata, never by name, so any model's labels get stable, distinct colours.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)


def label_colors(labels) -> dict[str, str]:
    """``{label: "#rrggbb"}`` in the order of ``labels`` (the palette repeats after 10 labels)."""
    return {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
