"""Model definitions (PyTorch). Configs are frozen dataclasses saved inside checkpoints."""
