"""Training-side tools (imported as ``edgelstm.export``): framework importers and exporters.

Heavy frameworks (torch, onnx, ...) are imported inside the functions that need them."""
from .from_torch import from_torch

__all__ = ["from_torch"]
