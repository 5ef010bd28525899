"""Export trained models to ONNX and ExecuTorch (.pte), with int8 quantization and verification against eager."""

from .core import ExportMismatch, export_onnx, export_pte, verify

__all__ = ["export_onnx", "export_pte", "verify", "ExportMismatch"]
