"""edgelstm's int8 GRU and RNN: one direction of a quantized layer as an int16 graph of TFLite builtin ops.

TFLite has no fused GRU / RNN op, so the contract for them IS a graph of builtin ops (LiteRT's 16x8 kernels:
int16 activations, int8 weights), and this module is its one definition: ``program.prepare`` lowers every int8
GRU / RNN direction to it and runs it with the op-graph kernels (the same ones that run converter-made Keras
cells), and ``to_tflite`` writes the same graph, so LiteRT computes the same integers. Every op here was
measured to give identical results on LiteRT's reference, builtin and default (XNNPACK) resolvers (int16 ops
are not delegated, and the optimized int16 kernels agree with the reference ones for these operand kinds);
the int16 FULLY_CONNECTED is NOT used because it rescales in double precision, so the matmuls are 1x1
CONV_2D ops (integer requantization). See docs/contract.md.

Per direction, with x8 the int8 layer input (act[k]) and the state h16 (int16):
  x16 = CAST(x8)                                   the raw int8 values, scale s_in, zero point 0 (the input
                                                   zero point is folded into the x biases)
  GRU  fx_g = CONV(x16; W_x,g, b_x,g)  fh_g = CONV(h16; W_h,g, b_h,g)   g in r, z (n: see below)
       r = LOGISTIC(ADD(fx_r, fh_r))   z = LOGISTIC(ADD(fx_z, fh_z))      (int16, scale 2^-15)
       reset after:  n = TANH(ADD(fx_n, MUL(r, fh_n)))
       reset before: n = TANH(ADD(fx_n, CONV(MUL(r, h16); W_h,n, b_h,n)))
       h' = ADD(n, MUL(z, SUB(h16, n)))            = (1 - z) n + z h; h16, n, h' at 2^-15, h - n and z (h - n)
                                                   at 2^-14 (they span [-2, 2])
  RNN  h' = TANH(ADD(CONV(x16; W_x, b), CONV(h16; W_h)))   h at 2^-15
       relu: h' = ADD(...) with fused RELU, h at its calibrated scale
  y8 = QUANTIZE(h')                                the layer output in act[k+1]
Weights are int8 symmetric per output row (CONV per-channel), biases int32 at s_input * w_scale[row] (int64
in the file), every other intermediate int16 symmetric at a calibrated scale (``graph_scale``), kept off powers of
two where it feeds LOGISTIC / TANH (LiteRT's optimized int16 LOGISTIC / TANH take another algorithm there).
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..ir.opgraph import OpGraph, validate_opgraph
from ..quant.cell_scales import D_SCALE, H_SCALE, rnn_h_scale
from ..quant.multiplier import fold_zero_point


class _Graph:
    def __init__(self):
        self.tensors, self.ops, self.w, self.ws, self.b = [], [], [], [], []

    def tensor(self, size, scale, zp=0, bits=16):
        self.tensors.append([int(size), float(np.float32(scale)), int(zp), None, bits])
        return len(self.tensors) - 1

    def op(self, name, a, b, out, act=0, params=(0, 0, 0)):
        self.ops.append([name, a, b, out, act, *params])
        return out

    def conv(self, src, W, w_scale, bias, scale):
        n_w, n_b, n_s = (sum(v.size for v in arr) for arr in (self.w, self.b, self.ws))
        out = self.tensor(W.shape[0], scale)
        self.w.append(np.ascontiguousarray(W, np.int8).ravel())
        self.ws.append(np.asarray(w_scale, np.float32))
        if bias is not None:
            self.b.append(np.asarray(bias, np.int32))
        return self.op("CONV_2D", src, -1, out, 0, (n_w, n_b if bias is not None else -1, n_s))

    def finish(self, layer, x, y, h_in, h_out):
        cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))
        params = {"w": cat(self.w, np.int8), "w_scale": cat(self.ws, np.float32), "b": cat(self.b, np.int32),
                  "c": np.zeros(0, np.int8)}
        g = OpGraph(input_size=layer.input_size, output_size=layer.hidden_size, quantized=True,
                    tensors=self.tensors, ops=self.ops, x=x, y=y, state=[[h_in, h_out]], n_w=params["w"].size,
                    n_b=params["b"].size, n_ws=params["w_scale"].size, n_c=0)
        validate_opgraph(g, f"{layer.kind} int16 cell graph")
        return g, params


def cell_graph(layer, q: dict, act_in: tuple, act_out: tuple) -> tuple[OpGraph, dict]:
    """The int16 op graph (edgelstm/ir/opgraph.py) and its constants for one direction ``q`` of an int8 GRU / RNN
    ``layer`` whose input is quantized ``act_in`` and output ``act_out`` (scale, zero point)."""
    (s_in, zp_in), (s_out, zp_out) = act_in, act_out
    H, I = layer.hidden_size, layer.input_size
    sc = [float(v) for v in q["graph_scale"]]
    g = _Graph()
    x8 = g.tensor(I, s_in, zp_in, bits=8)
    x16 = g.op("COPY", x8, -1, g.tensor(I, s_in))   # CAST keeps the raw int8 values: zp_in moves into the bias
    s_h = rnn_h_scale(layer, q)
    h = g.tensor(H, s_h)
    wx, wh, wxs, whs = q["w_x"], q["w_h"], q["w_x_scale"], q["w_h_scale"]
    if layer.kind == "rnn":
        fx = g.conv(x16, wx, wxs, fold_zero_point(q["b"], wx, zp_in), sc[0])
        fh = g.conv(h, wh, whs, None, sc[1])
        if layer.nonlinearity == "relu":
            h2 = g.op("ADD", fx, fh, g.tensor(H, s_h), act=1)
        else:
            h2 = g.op("TANH", g.op("ADD", fx, fh, g.tensor(H, sc[2])), -1, g.tensor(H, H_SCALE))
    else:
        rows = [slice(j * H, (j + 1) * H) for j in range(3)]
        bx = fold_zero_point(q["b_x"], wx, zp_in)
        fx = [g.conv(x16, wx[r], wxs[r], bx[r], sc[j]) for j, r in enumerate(rows)]
        fh = [g.conv(h, wh[r], whs[r], q["b_h"][r], sc[3 + j]) for j, r in enumerate(rows[:2])]
        gate = [g.op("LOGISTIC", g.op("ADD", fx[j], fh[j], g.tensor(H, sc[6 + j])), -1, g.tensor(H, H_SCALE))
                for j in range(2)]
        r, z = gate
        if layer.reset_after:
            fh_n = g.conv(h, wh[rows[2]], whs[rows[2]], q["b_h"][rows[2]], sc[5])
            hn = g.op("MUL", r, fh_n, g.tensor(H, sc[9]))
        else:
            rh = g.op("MUL", r, h, g.tensor(H, H_SCALE))
            hn = g.conv(rh, wh[rows[2]], whs[rows[2]], q["b_h"][rows[2]], sc[5])
        n = g.op("TANH", g.op("ADD", fx[2], hn, g.tensor(H, sc[8])), -1, g.tensor(H, H_SCALE))
        d = g.op("SUB", h, n, g.tensor(H, D_SCALE))
        h2 = g.op("ADD", n, g.op("MUL", z, d, g.tensor(H, D_SCALE)), g.tensor(H, H_SCALE))
    y8 = g.op("QUANTIZE", h2, -1, g.tensor(H, s_out, zp_out, bits=8))
    return g.finish(layer, x8, y8, h, h2)


def float_cell_graph(layer, direction: int = 0) -> tuple[OpGraph, dict]:
    """A float32 GRU (both variants) or RNN (tanh / relu) layer as an op graph of builtin ops (one step, state h),
    the form ``to_tflite(mode="step")`` writes for them (TFLite has no fused GRU/RNN op):
      GRU  r = LOGISTIC(FC_x,r(x) + FC_h,r(h)), z likewise, n = TANH(FC_x,n(x) + r * FC_h,n(h)) (reset after) or
           TANH(FC_x,n(x) + FC_h,n(r * h)) (reset before), h' = z * h + (1 - z) * n
      RNN  h' = TANH|RELU(FC_x(x) + FC_h(h))   (biases inside the FCs; one FC per gate block)"""
    if layer.kind not in ("gru", "rnn"):
        raise ModelError(f"no op graph for a {layer.kind} layer")
    w = layer.directions[direction]
    I, H = layer.input_size, layer.hidden_size
    tensors, ops, wblob, bblob = [], [], [], []

    def tensor(size, const=None):
        tensors.append([size, 1.0, 0, const])
        return len(tensors) - 1

    def fc(src, W, b):
        out = tensor(W.shape[0])
        ops.append(["FULLY_CONNECTED", src, -1, out, 0, sum(a.size for a in wblob), sum(a.size for a in bblob), 0])
        wblob.append(np.ascontiguousarray(W, np.float32).ravel())
        bblob.append(np.asarray(b, np.float32))
        return out

    def op(name, a, b=-1):
        out = tensor(H)
        ops.append([name, a, b, out, 0, 0, 0, 0])
        return out

    x, h = tensor(I), tensor(H)
    if layer.kind == "rnn":
        pre = op("ADD", fc(x, w["w_x"], w["b"]), fc(h, w["w_h"], np.zeros(H, np.float32)))
        y = op("TANH" if layer.nonlinearity == "tanh" else "RELU", pre)
        consts = np.zeros(0, np.float32)
    else:
        wx, wh, bx, bh = (np.split(w[n], 3) for n in ("w_x", "w_h", "b_x", "b_h"))
        r = op("LOGISTIC", op("ADD", fc(x, wx[0], bx[0]), fc(h, wh[0], bh[0])))
        z = op("LOGISTIC", op("ADD", fc(x, wx[1], bx[1]), fc(h, wh[1], bh[1])))
        if layer.reset_after:
            hn = op("MUL", r, fc(h, wh[2], bh[2]))
        else:
            hn = fc(op("MUL", r, h), wh[2], bh[2])
        n = op("TANH", op("ADD", fc(x, wx[2], bx[2]), hn))
        one = tensor(H, const=0)
        y = op("ADD", op("MUL", z, h), op("MUL", op("SUB", one, z), n))
        consts = np.ones(H, np.float32)
    wb, bb = np.concatenate(wblob), np.concatenate(bblob)
    g = OpGraph(input_size=I, output_size=H, quantized=False, tensors=tensors, ops=ops, x=x, y=y, state=[[h, y]],
                n_w=wb.size, n_b=bb.size, n_c=consts.size)
    validate_opgraph(g, f"{layer.kind} op graph")
    return g, {"w": wb, "b": bb, "c": consts}
