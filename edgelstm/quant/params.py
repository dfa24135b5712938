"""Quantized parameters of a model: what an int8 artifact stores, and their validation.

Like a TFLite flatbuffer, the file holds integer tensors plus float32 scales and int zero points; all
derived numbers (effective multipliers, zero-point-folded biases, activation tables) are computed once in
``program.prepare``.  Nothing here is trusted until ``validate_quant`` passed: the Numba kernels do no
bounds checks.

``act[k] = (scale, zero_point)`` quantizes the int8 activations entering layer k (``act[0]`` is the model
input, ``act[L]`` the model output).  Per layer, ``layers[k]`` is a list with one dict per direction:

LSTM  w_x int8 (4H, I)      w_x_scale f32 (4,)    per-tensor scale of each gate block i, f, g, o
      w_h int8 (4H, R)      w_h_scale f32 (4,)
      b int32 (4H,)         at act_in.scale * w_x_scale[gate]
      cell_exp int32 (1,)   cell state scale is 2**cell_exp, cell_exp in [-15, -9]
      w_peep int16 (3, H)   w_peep_scale f32 (3,)          (peephole only)
      w_proj int8 (P, H)    w_proj_scale f32 (1,)          (projection only)
      b_proj int32 (P,)     at hidden_scale * w_proj_scale (projection only)
      hidden_scale f32 (1,) hidden_zp int32 (1,)           (projection only: int8 o*tanh(c) before projection)
GRU   w_x int8 (3H, I) w_x_scale (3H,)  w_h int8 (3H, H) w_h_scale (3H,)   per output row (gates r, z, n)
      b_x int32 (3H,) at act_in.scale * w_x_scale[row];  b_h int32 (3H,) at 2^-15 * w_h_scale[row]
      graph_scale f32 (10,) int16 intermediates of the cell graph (edgelstm/program/cellgraph.py GRU_SCALES)
RNN   w_x int8 (H, I) w_x_scale (H,)  w_h int8 (H, H) w_h_scale (H,)  b int32 (H,) at act_in.scale * w_x_scale[row]
      graph_scale f32 (3,)  int16 intermediates (cellgraph.RNN_SCALES; relu: graph_scale[2] is also the scale of h)
Dense w int8 (O, I) w_scale (O,)  per output channel, as the TF converter writes FULLY_CONNECTED
      b int32 (O,) at act_in.scale * w_scale[o]
      pre_scale f32 (1,) pre_zp int32 (1,)   int8 logits before the activation
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from ..limits import CELL_EXP_RANGE, SCALE_RANGE, ZERO_POINT_RANGE   # the one list (limits.py)
# Output quantization fixed by an int8 output activation (TFLite's conventions for LOGISTIC / SOFTMAX / TANH).
FIXED_OUTPUT_QUANT = {"sigmoid": (1.0 / 256.0, -128), "softmax": (1.0 / 256.0, -128), "tanh": (1.0 / 128.0, 0)}


def quant_shapes(layer) -> dict[str, tuple[tuple[int, ...], type]]:
    """name -> (shape, dtype) of every quantized tensor of one direction of ``layer``."""
    k = layer.kind
    if k == "lstm":
        H, I, R, P = layer.hidden_size, layer.input_size, layer.recurrent_size, layer.proj_size
        s = {"w_x": ((4 * H, I), np.int8), "w_x_scale": ((4,), np.float32),
             "w_h": ((4 * H, R), np.int8), "w_h_scale": ((4,), np.float32),
             "b": ((4 * H,), np.int32), "cell_exp": ((1,), np.int32)}
        if layer.peephole:
            s.update(w_peep=((3, H), np.int16), w_peep_scale=((3,), np.float32))
        if P:
            s.update(w_proj=((P, H), np.int8), w_proj_scale=((1,), np.float32), b_proj=((P,), np.int32),
                     hidden_scale=((1,), np.float32), hidden_zp=((1,), np.int32))
        return s
    if k == "gru":
        H, I = layer.hidden_size, layer.input_size
        return {"w_x": ((3 * H, I), np.int8), "w_x_scale": ((3 * H,), np.float32),
                "w_h": ((3 * H, H), np.int8), "w_h_scale": ((3 * H,), np.float32),
                "b_x": ((3 * H,), np.int32), "b_h": ((3 * H,), np.int32), "graph_scale": ((10,), np.float32)}
    if k == "rnn":
        H, I = layer.hidden_size, layer.input_size
        return {"w_x": ((H, I), np.int8), "w_x_scale": ((H,), np.float32),
                "w_h": ((H, H), np.int8), "w_h_scale": ((H,), np.float32), "b": ((H,), np.int32),
                "graph_scale": ((3,), np.float32)}
    if k == "ops":
        return layer.quant_shapes()
    if k == "conv1d":
        O = layer.out_channels
        return {"w": ((O, layer.kernel_size, layer.in_channels // layer.groups), np.int8),
                "w_scale": ((O,), np.float32), "b": ((O,), np.int32),
                "pre_scale": ((1,), np.float32), "pre_zp": ((1,), np.int32)}   # pre_*: a fused sigmoid / tanh's input
    if k in ("pad", "magnitude", "activation", "context"):
        return {}
    if k == "dense":
        O, I = layer.output_size, layer.input_size
        return {"w": ((O, I), np.int8), "w_scale": ((O,), np.float32), "b": ((O,), np.int32),
                "pre_scale": ((1,), np.float32), "pre_zp": ((1,), np.int32)}
    raise ModelError(f"unknown layer kind {k!r}")


@dataclass(kw_only=True)
class QuantParams:
    act: list            # L+1 pairs (scale: float, zero_point: int)
    layers: list         # per layer: list of per-direction dicts name -> ndarray

    def to_plain(self) -> list:
        return [[float(s), int(z)] for s, z in self.act]


def _check_scale(where: str, arr) -> None:
    a = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < SCALE_RANGE[0]) or np.any(a > SCALE_RANGE[1]):
        raise ModelError(f"{where}: scale {a.tolist()} outside [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}]")


def _check_zp(where: str, arr, lo=ZERO_POINT_RANGE[0], hi=ZERO_POINT_RANGE[1]) -> None:
    a = np.asarray(arr)
    if np.any(a < lo) or np.any(a > hi):
        raise ModelError(f"{where}: zero point {a.tolist()} outside [{lo}, {hi}]")


def validate_quant(spec, q: QuantParams) -> QuantParams:
    """Check every dtype, shape, scale, zero point and exponent against the layer stack. Converts arrays to
    contiguous arrays of the exact dtype; returns ``q``."""
    L = len(spec.layers)
    if not isinstance(q.act, (list, tuple)) or len(q.act) != L + 1:
        raise ModelError(f"act: expected {L + 1} (scale, zero_point) pairs, got {len(q.act)}")
    act = []
    for k, pair in enumerate(q.act):
        if len(pair) != 2:
            raise ModelError(f"act[{k}]: expected (scale, zero_point)")
        s, z = float(pair[0]), pair[1]
        if float(z) != int(z):
            raise ModelError(f"act[{k}]: zero point must be an integer")
        _check_scale(f"act[{k}]", s)
        _check_zp(f"act[{k}]", int(z))
        act.append((float(np.float32(s)), int(z)))
    q.act = act
    if len(q.layers) != L:
        raise ModelError(f"quantized layers: expected {L}, got {len(q.layers)}")
    for k, layer in enumerate(spec.layers):
        n_dir = 2 if layer.bidirectional else 1
        dirs = q.layers[k]
        if len(dirs) != n_dir:
            raise ModelError(f"layer {k}: expected {n_dir} quantized direction(s), got {len(dirs)}")
        shapes = quant_shapes(layer)
        for d, params in enumerate(dirs):
            where = f"layer {k} ({layer.kind}) direction {d}"
            if set(params) != set(shapes):
                missing, extra = set(shapes) - set(params), set(params) - set(shapes)
                raise ModelError(f"{where}: missing {sorted(missing)}, unexpected {sorted(extra)}")
            for name, (shape, dtype) in shapes.items():
                a = np.asarray(params[name])
                if a.dtype != np.dtype(dtype):
                    raise ModelError(f"{where} {name}: dtype {a.dtype}, expected {np.dtype(dtype)}")
                if a.shape != shape:
                    raise ModelError(f"{where} {name}: shape {a.shape}, expected {shape}")
                params[name] = np.ascontiguousarray(a)
                if name.endswith("_scale"):
                    _check_scale(f"{where} {name}", a)
            if layer.kind == "ops":
                _check_opgraph_quant(layer, params, q.act[k], q.act[k + 1], where)
                continue
            for wname in ("w_x", "w_h", "w_proj", "w"):
                if wname in params and np.any(params[wname] == -128):
                    raise ModelError(f"{where} {wname}: weights must be narrow range [-127, 127]")
            if "w_peep" in params and np.any(params["w_peep"] == -32768):
                raise ModelError(f"{where} w_peep: weights must be narrow range [-32767, 32767]")
            if "cell_exp" in params:
                e = int(params["cell_exp"][0])
                if not CELL_EXP_RANGE[0] <= e <= CELL_EXP_RANGE[1]:
                    raise ModelError(f"{where} cell_exp {e} outside {list(CELL_EXP_RANGE)}")
            for zname in ("hidden_zp", "pre_zp"):
                if zname in params:
                    _check_zp(f"{where} {zname}", params[zname])
    return q


def _check_opgraph_quant(layer, params, act_in, act_out, where: str) -> None:
    """An int8 op graph carries its own tensor quantization: the layer's act entries must equal it."""
    from ..ir.opgraph import validate_constants
    validate_constants(layer, params, where)
    for what, t, (s, z) in (("input", layer.x, act_in), ("output", layer.y, act_out)):
        ts, tz = layer.tensors[t][1], layer.tensors[t][2]
        if np.float32(ts) != np.float32(s) or tz != z:
            raise ModelError(f"{where}: act {what} quantization {(s, z)} differs from the graph's {(ts, tz)}")
