"""The model IR: a stack of layers with float32 weights in ONE canonical gate order.

Canonical gate orders (PyTorch's; every importer converts through ``edgelstm.export.gate_order``):
  LSTM rows of ``w_x``/``w_h``/``b``: i, f, g, o   (input, forget, cell candidate, output)
  GRU  rows of ``w_x``/``w_h``/``b_x``/``b_h``: r, z, n   (reset, update, new)
  LSTM peephole rows of ``w_peep``: i, f, o

Shapes use I = input size, H = hidden size, P = projection size (0 = none), R = recurrent width (P or H),
D = number of directions (1 or 2).  A recurrent layer emits D*R (LSTM) or D*H (GRU/RNN) features per step;
bidirectional outputs are [forward, backward] concatenated on the feature axis.  ``reverse=True`` (ONNX's
direction="reverse") runs a single direction backward over each sequence's valid steps; like a bidirectional
layer it needs the whole sequence (no streaming).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from .frontend import FRONT_END_CLASSES, FRONT_END_FIELDS
from .opgraph import OpGraph, validate_opgraph

LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES = ("r", "z", "n")
ACTIVATIONS = ("none", "sigmoid", "softmax", "tanh", "relu")
RNN_NONLINEARITIES = ("tanh", "relu")


def _as_f32(name: str, arr, shape: tuple[int, ...]) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
    if a.shape != shape:
        raise ModelError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ModelError(f"{name}: contains NaN or inf")
    return a


def _check_size(name: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or int(v) <= 0:
        raise ModelError(f"{name} must be a positive int, got {v!r}")
    return int(v)


class _Recurrent:
    """Shape rules shared by the recurrent layers (R = recurrent_size)."""

    @property
    def recurrent_size(self) -> int:
        return self.hidden_size

    @property
    def output_size(self) -> int:
        return self.recurrent_size * (2 if self.bidirectional else 1)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"h": (self.recurrent_size,)}


@dataclass(kw_only=True)
class LSTM(_Recurrent):
    """LSTM layer. ``directions[d]`` holds the weights of direction d (0 forward, 1 backward):

    w_x    (4H, I)  input weights, gates i,f,g,o
    w_h    (4H, R)  recurrent weights (R = P if proj_size else H)
    b      (4H,)    bias (PyTorch's b_ih + b_hh)
    w_peep (3, H)   peephole weights for i, f, o (only if peephole)
    w_proj (P, H)   projection (only if proj_size)
    b_proj (P,)     projection bias (only if proj_size; zeros for PyTorch)

    cell_clip / proj_clip: TFLite's LSTM clipping (0 = none): c is clipped to [-cell_clip, cell_clip] after
    every update, and the projection output to [-proj_clip, proj_clip] (projection only).  In int8 the
    bounds are quantized as LiteRT's Prepare does (see docs/contract.md).
    """

    input_size: int
    hidden_size: int
    proj_size: int = 0
    peephole: bool = False
    cell_clip: float = 0.0
    proj_clip: float = 0.0
    bidirectional: bool = False
    reverse: bool = False
    directions: list[dict] = field(default_factory=list)
    kind: str = field(default="lstm", init=False)

    @property
    def recurrent_size(self) -> int:
        return self.proj_size or self.hidden_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I, R, P = self.hidden_size, self.input_size, self.recurrent_size, self.proj_size
        s = {"w_x": (4 * H, I), "w_h": (4 * H, R), "b": (4 * H,)}
        if self.peephole:
            s["w_peep"] = (3, H)
        if P:
            s["w_proj"] = (P, H)
            s["b_proj"] = (P,)
        return s

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"h": (self.recurrent_size,), "c": (self.hidden_size,)}


@dataclass(kw_only=True)
class GRU(_Recurrent):
    """GRU layer. ``reset_after=True`` is PyTorch / ONNX linear_before_reset=1:
    n = tanh(W_n x + b_xn + r * (U_n h + b_hn)); ``False`` is Keras reset_after=False / ONNX default:
    n = tanh(W_n x + b_xn + U_n (r * h) + b_hn).  h' = (1 - z) * n + z * h.

    w_x (3H, I), w_h (3H, H), b_x (3H,), b_h (3H,)   gates r, z, n
    """

    input_size: int
    hidden_size: int
    reset_after: bool = True
    bidirectional: bool = False
    reverse: bool = False
    directions: list[dict] = field(default_factory=list)
    kind: str = field(default="gru", init=False)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I = self.hidden_size, self.input_size
        return {"w_x": (3 * H, I), "w_h": (3 * H, H), "b_x": (3 * H,), "b_h": (3 * H,)}


@dataclass(kw_only=True)
class RNN(_Recurrent):
    """Vanilla RNN: h' = act(W x + U h + b), act = tanh or relu.

    w_x (H, I), w_h (H, H), b (H,)  (b = PyTorch's b_ih + b_hh)
    """

    input_size: int
    hidden_size: int
    nonlinearity: str = "tanh"
    bidirectional: bool = False
    reverse: bool = False
    directions: list[dict] = field(default_factory=list)
    kind: str = field(default="rnn", init=False)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, I = self.hidden_size, self.input_size
        return {"w_x": (H, I), "w_h": (H, H), "b": (H,)}


@dataclass(kw_only=True)
class Dense:
    """Per-step affine layer with an output activation: y = act(w x + b).

    w (O, I), b (O,)
    """

    input_size: int
    output_size: int
    activation: str = "none"
    directions: list[dict] = field(default_factory=list)  # exactly one entry: {"w", "b"}
    kind: str = field(default="dense", init=False)
    bidirectional: bool = field(default=False, init=False)
    reverse: bool = field(default=False, init=False)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"w": (self.output_size, self.input_size), "b": (self.output_size,)}

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}


LAYER_CLASSES = {"lstm": LSTM, "gru": GRU, "rnn": RNN, "dense": Dense, "ops": OpGraph, **FRONT_END_CLASSES}


def validate_layer(layer, index: int, *, require_weights: bool = True) -> None:
    """Check sizes, options and every weight's shape; converts weights to contiguous float32 in place.
    ``require_weights=False`` accepts a layer with no float weights (an int8-only artifact)."""
    where = f"layer {index} ({layer.kind})"
    n_dir = 1
    if layer.kind in FRONT_END_CLASSES:
        layer.validate(where)
        if not layer.param_shapes() and not layer.directions:
            layer.directions = [{}]          # a weightless layer: one empty weight set, like its QuantParams
    else:
        _check_size(f"{where}: input_size", layer.input_size)
    if layer.kind in FRONT_END_CLASSES:
        pass
    elif layer.kind == "ops":
        validate_opgraph(layer, where)
    elif layer.kind == "dense":
        _check_size(f"{where}: output_size", layer.output_size)
        if layer.activation not in ACTIVATIONS:
            raise ModelError(f"{where}: activation must be one of {ACTIVATIONS}, got {layer.activation!r}")
        n_dir = 1
    else:
        _check_size(f"{where}: hidden_size", layer.hidden_size)
        if not isinstance(layer.bidirectional, (bool, np.bool_)):
            raise ModelError(f"{where}: bidirectional must be a bool")
        if not isinstance(layer.reverse, (bool, np.bool_)):
            raise ModelError(f"{where}: reverse must be a bool")
        if layer.reverse and layer.bidirectional:
            raise ModelError(f"{where}: reverse and bidirectional exclude each other")
        n_dir = 2 if layer.bidirectional else 1
    if layer.kind == "lstm":
        if layer.proj_size:
            _check_size(f"{where}: proj_size", layer.proj_size)
            if layer.proj_size >= layer.hidden_size:
                raise ModelError(f"{where}: proj_size must be smaller than hidden_size (PyTorch rule)")
        for name in ("cell_clip", "proj_clip"):
            v = getattr(layer, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v) or v < 0:
                raise ModelError(f"{where}: {name} must be a finite number >= 0 (0 = no clipping), got {v!r}")
            setattr(layer, name, float(v))
        if layer.proj_clip and not layer.proj_size:
            raise ModelError(f"{where}: proj_clip needs a projection (proj_size > 0), as in TFLite")
    if layer.kind == "rnn" and layer.nonlinearity not in RNN_NONLINEARITIES:
        raise ModelError(f"{where}: nonlinearity must be one of {RNN_NONLINEARITIES}")
    if not require_weights and not layer.directions:
        return
    if len(layer.directions) != n_dir:
        raise ModelError(f"{where}: expected {n_dir} weight set(s), got {len(layer.directions)}")
    shapes = layer.param_shapes()
    for d, params in enumerate(layer.directions):
        if set(params) != set(shapes):
            missing, extra = set(shapes) - set(params), set(params) - set(shapes)
            raise ModelError(f"{where} direction {d}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for name, shape in shapes.items():
            params[name] = _as_f32(f"{where} direction {d} {name}", params[name], shape)


@dataclass(kw_only=True)
class ModelSpec:
    """A validated stack of layers. Float weights live here; quantized parameters live in ``QuantModel``."""

    layers: list
    has_weights: bool = True  # False for an int8-only model loaded from a deployment artifact

    def __post_init__(self):
        if not self.layers:
            raise ModelError("a model needs at least one layer")
        for k, layer in enumerate(self.layers):
            if type(layer) not in LAYER_CLASSES.values():
                raise ModelError(f"layer {k}: unknown layer type {type(layer).__name__}")
            validate_layer(layer, k, require_weights=self.has_weights)
            if k and layer.input_size != self.layers[k - 1].output_size:
                raise ModelError(
                    f"layer {k} ({layer.kind}) expects {layer.input_size} input features but layer {k - 1} "
                    f"emits {self.layers[k - 1].output_size}")

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    @property
    def bidirectional(self) -> bool:
        return any(layer.bidirectional for layer in self.layers)

    @property
    def needs_whole_sequence(self) -> bool:
        """A bidirectional or reverse layer reads the sequence backward: no streaming."""
        return any(layer.bidirectional or layer.reverse for layer in self.layers)

    def describe(self) -> list[dict]:
        """JSON-friendly layer list (no arrays)."""
        out = []
        for layer in self.layers:
            if layer.kind == "ops":
                out.append(layer.describe())
                continue
            if layer.kind in FRONT_END_FIELDS:
                out.append({"kind": layer.kind, **{f: getattr(layer, f) for f in FRONT_END_FIELDS[layer.kind]}})
                continue
            d = {"kind": layer.kind, "input_size": layer.input_size, "output_size": layer.output_size}
            if layer.kind == "dense":
                d["activation"] = layer.activation
            else:
                d.update(hidden_size=layer.hidden_size, bidirectional=bool(layer.bidirectional))
                if layer.reverse:  # written only when set: older files stay readable
                    d["reverse"] = True
            if layer.kind == "lstm":
                d.update(proj_size=layer.proj_size, peephole=bool(layer.peephole))
                for name in ("cell_clip", "proj_clip"):  # written only when set: older files stay readable
                    if getattr(layer, name):
                        d[name] = float(getattr(layer, name))
            if layer.kind == "gru":
                d["reset_after"] = bool(layer.reset_after)
            if layer.kind == "rnn":
                d["nonlinearity"] = layer.nonlinearity
            out.append(d)
        return out


def layer_from_description(d: dict, directions: list[dict]):
    """Inverse of ``ModelSpec.describe`` for one layer (used by the artifact loader and importers)."""
    kind = d.get("kind")
    if kind not in LAYER_CLASSES:
        raise ModelError(f"unknown layer kind {kind!r}")
    if kind == "ops":
        return OpGraph.from_description(d, directions)
    if kind in FRONT_END_FIELDS:
        keys = set(FRONT_END_FIELDS[kind])
        given = set(d) - {"kind", "input_size", "output_size"}
        if not given <= keys:
            raise ModelError(f"{kind} layer description: unexpected keys {sorted(given - keys)}")
        try:
            return FRONT_END_CLASSES[kind](directions=directions, **{k: d[k] for k in given})
        except TypeError as e:      # a required field missing
            raise ModelError(f"{kind} layer description: {e}") from None
    common = dict(input_size=d["input_size"], directions=directions)
    if kind == "dense":
        return Dense(output_size=d["output_size"], activation=d.get("activation", "none"), **common)
    common.update(hidden_size=d["hidden_size"], bidirectional=bool(d.get("bidirectional", False)),
                  reverse=d.get("reverse", False))
    if kind == "lstm":
        return LSTM(proj_size=int(d.get("proj_size", 0)), peephole=bool(d.get("peephole", False)),
                    cell_clip=d.get("cell_clip", 0.0), proj_clip=d.get("proj_clip", 0.0), **common)
    if kind == "gru":
        return GRU(reset_after=bool(d.get("reset_after", True)), **common)
    return RNN(nonlinearity=d.get("nonlinearity", "tanh"), **common)


def random_model(layers: list[dict], *, input_size: int, seed: int = 0, scale: float = 0.3) -> ModelSpec:
    """Build a model with random weights from short layer descriptions, e.g.
    ``[{"kind": "lstm", "hidden_size": 64}, {"kind": "dense", "output_size": 10, "activation": "sigmoid"}]``.
    Used by tests, benchmarks and the demo."""
    rng = np.random.default_rng(seed)
    built, n_in = [], input_size
    for d in layers:
        d = dict(d)
        if d["kind"] in FRONT_END_FIELDS:      # sizes follow from the previous layer's output where not given
            _front_end_sizes(d, n_in)
            proto = layer_from_description(d, [])
            n_dir = 1
        elif d["kind"] != "dense":
            d["input_size"] = n_in
            d.setdefault("bidirectional", False)
            proto = layer_from_description({**d, "output_size": 0}, [])
            n_dir = 2 if proto.bidirectional else 1
        else:
            d["input_size"] = n_in
            proto = layer_from_description(d, [])
            n_dir = 1
        dirs = []
        for _ in range(n_dir):
            p = {}
            for name, shape in proto.param_shapes().items():
                fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                p[name] = (rng.standard_normal(shape) * scale / max(1.0, np.sqrt(fan) / 2)).astype(np.float32)
            dirs.append(p)
        proto.directions = dirs if proto.param_shapes() else [{}]
        built.append(proto)
        n_in = proto.output_size
    return ModelSpec(layers=built)


def _front_end_sizes(d: dict, n_in: int) -> None:
    """Fill a front-end layer description's frame sizes from the previous layer's output size ``n_in``."""
    kind = d["kind"]
    if kind in ("activation", "context"):
        d.setdefault("size", n_in)
    elif kind == "conv1d":
        d.setdefault("in_channels", 1)
        d.setdefault("length", n_in // d["in_channels"])
    elif kind == "pad":
        d.setdefault("channels", 1)
        d.setdefault("length", n_in // d["channels"])
    elif kind == "magnitude":
        d.setdefault("length", 1)
        d.setdefault("channels", n_in // (2 * d["length"]))
