"""Pretrained backbones. Weights come from installed packages or local paths only (no model hub)."""
