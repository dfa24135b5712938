"""The fixed scales of edgelstm's int8 GRU / RNN cell graphs (a part of the numerics contract; the graph itself is
edgelstm/program/cellgraph.py) and the names of the calibrated int16 intermediate scales, in their order in a
direction's ``graph_scale`` quantized parameter."""
from __future__ import annotations

H_SCALE = 2.0 ** -15        # h, r, z, n and h'
D_SCALE = 2.0 ** -14        # h - n and z * (h - n)
GRU_SCALES = ("fx_r", "fx_z", "fx_n", "fh_r", "fh_z", "fh_n", "pre_r", "pre_z", "pre_n", "r_fh_n")
RNN_SCALES = ("fx", "fh", "pre")          # relu: "pre" is also the scale of h


def rnn_h_scale(layer, q: dict) -> float:
    """The int16 state's scale of one direction of an int8 GRU / RNN layer."""
    if layer.kind == "rnn" and layer.nonlinearity == "relu":
        return float(q["graph_scale"][2])
    return H_SCALE
