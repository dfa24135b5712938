"""Keras files to a runnable float32 ``edgelstm.Model``, read with ``h5py`` + ``zipfile``/``json`` (no TensorFlow).

Files: ``.keras`` (zip: config.json + model.weights.h5) and legacy ``.h5`` (model_config + model_weights).
Models: Sequential or a linear Functional chain of ``InputLayer``, ``Masking`` (first; pass ``lengths=`` to
``run``), ``LSTM``, ``GRU`` (reset_after True and False), ``SimpleRNN`` (tanh, relu), ``Bidirectional``
(merge_mode concat), ``Dropout`` (identity at inference) and ``Dense`` (linear, sigmoid, tanh, relu, softmax).
Recurrent layers must return sequences. Anything else (go_backwards, other merge modes, hard_sigmoid,
stateful/time_major layers, other layers) raises ``ImportModelError`` naming it.

Only bytes stored in the model file are read: a file with an HDF5 external link, a dataset in external storage
(raw bytes in another file, found by absolute path or relative to the working directory) or a virtual dataset
(mapped from other files) is refused before any weight is read (``_check_self_contained``).
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from edgelstm.errors import EdgeLSTMError, ImportModelError, ModelError
from edgelstm.ir.model import GRU, LSTM, RNN, Dense, ModelSpec
from edgelstm.runtime import Model

from ._files import read_model_file, run_isolated
from .gate_order import KERAS_GRU, KERAS_LSTM, reorder_gates

_RECURRENT = {"LSTM", "GRU", "SimpleRNN"}
_DENSE_ACTS = {"linear": "none", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "softmax": "softmax"}
# libhdf5 can loop forever (or crash) on some corrupt files (found by fuzzing): the file is read in a forked
# child that is killed after this many seconds
H5_TIMEOUT = 30.0
# 256 MiB of float32 over all weights read: more is a corrupt header (HDF5 returns the fill value for storage a
# dataset declares but lacks, so a tiny file can claim any size), not an edge model
_MAX_WEIGHT_ELEMENTS = 1 << 26
_MAX_H5_BYTES = 4 * _MAX_WEIGHT_ELEMENTS + (16 << 20)   # a .keras zip's weights file, inflated
_MAX_CONFIG_BYTES = 16 << 20                            # its config.json


def from_keras(path) -> Model:
    """Import a ``.keras`` or legacy ``.h5`` Keras model (see the module docstring)."""
    try:
        import h5py  # noqa: F401 - fail early, in this process, if the extra is missing
    except ImportError:
        raise ImportModelError("from_keras needs h5py: pip install 'edgelstm[keras]'") from None
    data, where = read_model_file(path)
    spec = run_isolated(_read_spec, (data, where), timeout=H5_TIMEOUT, where=where)
    try:
        return Model(spec)
    except ModelError as e:
        raise ImportModelError(f"{where}: {e}") from None


def _read_spec(data: bytes, where: str) -> ModelSpec:
    """The file's ModelSpec (runs in the isolated child)."""
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                config = json.loads(_zip_member(z, "config.json", _MAX_CONFIG_BYTES, where))
                h5 = _open_h5(_zip_member(z, "model.weights.h5", _MAX_H5_BYTES, where), where)
                weights = _KerasV3Weights(h5, where)
        else:
            f = _open_h5(data, where)
            if "model_config" not in f.attrs or "model_weights" not in f:
                raise ImportModelError(f"{where}: not a Keras model file (no model_config / model_weights)")
            mc = f.attrs["model_config"]
            config = json.loads(mc.decode() if isinstance(mc, bytes) else mc)
            weights = _LegacyWeights(f["model_weights"], where)
        return _build(config, weights, where)
    except EdgeLSTMError:
        raise
    except Exception as e:  # noqa: BLE001 - zip, HDF5 and JSON parse errors of a damaged file
        raise ImportModelError(f"{where}: not a readable Keras file ({type(e).__name__}: {e})") from None


def _zip_member(z, name: str, limit: int, where: str) -> bytes:
    """A member of the .keras zip, its declared size bounded before it is inflated (zipfile then stops at the
    declared size, so a member cannot inflate past it either)."""
    size = z.getinfo(name).file_size
    if size > limit:
        raise ImportModelError(f"{where}: {name} inflates to {size} bytes, more than the {limit} an importable "
                               f"model may have: a corrupt file")
    return z.read(name)


def _open_h5(data: bytes, where: str):
    import h5py
    f = h5py.File(io.BytesIO(data), "r")
    _check_self_contained(f, where)
    return f


def _check_self_contained(f, where: str) -> None:
    """Refuse a file that stores weights outside itself: every link is visited without being followed (an
    external link or a user-defined one is refused; soft links stay inside the file once no link leaves it),
    and every dataset must keep its bytes in the file (no external storage, no virtual layout)."""
    from h5py import h5d, h5l, h5o
    problems = []

    def visit(name: bytes, info):
        what = name.decode(errors="replace")
        if info.type == h5l.TYPE_SOFT:
            return None
        if info.type != h5l.TYPE_HARD:
            kind = "an external link" if info.type == h5l.TYPE_EXTERNAL else f"a link of type {info.type}"
            problems.append(f"{what!r} is {kind} to another file")
            return None
        obj = h5o.open(f.id, name)
        if isinstance(obj, h5d.DatasetID):
            plist = obj.get_create_plist()
            if plist.get_layout() == h5d.VIRTUAL:
                problems.append(f"dataset {what!r} is a virtual dataset mapped from other files")
            elif plist.get_external_count():
                problems.append(f"dataset {what!r} keeps its bytes in an external file "
                                f"({plist.get_external(0)[0].decode(errors='replace')!r})")
        return None

    f.id.links.visit(visit, info=True)
    if problems:
        raise ImportModelError(f"{where}: refused: the HDF5 weights point outside the model file ("
                               f"{'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''}); edgelstm reads "
                               f"only data stored in the file itself")


class _Budget:
    """Weight elements read so far, bounded by ``_MAX_WEIGHT_ELEMENTS`` before each read."""

    def __init__(self, where: str):
        self.left = _MAX_WEIGHT_ELEMENTS
        self.where = where

    def array(self, ds) -> np.ndarray:
        if ds.size > self.left:
            raise ImportModelError(f"{self.where}: weight {ds.name!r} claims {ds.size} elements, beyond the {_MAX_WEIGHT_ELEMENTS} "
                                   f"an importable model may hold in all: a corrupt file")
        self.left -= ds.size
        return np.asarray(ds, dtype=np.float32)


class _LegacyWeights:
    """Legacy .h5: model_weights/<layer>/ with an ordered 'weight_names' attribute."""

    def __init__(self, group, where: str):
        self.g = group
        self.budget = _Budget(where)

    def get(self, name: str, sub: str | None = None) -> list:
        grp = self.g[name]
        names = [n.decode() if isinstance(n, bytes) else n for n in grp.attrs["weight_names"]]
        if sub is not None:  # Bidirectional: forward_* / backward_* weights
            names = [n for n in names if f"/{sub}_" in n]
        return [self.budget.array(grp[n]) for n in names]


class _KerasV3Weights:
    """.keras: layers/<key>/[cell/]vars/<i>, Bidirectional under forward_layer / backward_layer.  The keys are
    not the layers' config names but the class name in snake case, numbered per class in model order
    (dense, dense_1, ...); ``key_of`` maps config names to them."""

    def __init__(self, f, where: str):
        self.f = f
        self.key_of: dict[str, str] = {}
        self.budget = _Budget(where)

    def index(self, layers_cfg: list) -> None:
        seen: dict[str, int] = {}
        for layer in layers_cfg:
            cls = layer["class_name"]
            base = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(cls))
            base = {"input_layer": "input_layer", "simple_r_n_n": "simple_rnn", "l_s_t_m": "lstm",
                    "g_r_u": "gru"}.get(base, base)
            n = seen.get(base, 0)
            seen[base] = n + 1
            self.key_of[layer["config"]["name"]] = base if n == 0 else f"{base}_{n}"

    def get(self, name: str, sub: str | None = None) -> list:
        grp = self.f["layers"][self.key_of.get(name, name)]
        if sub is not None:
            grp = grp[f"{sub}_layer"]
        if "cell" in grp:
            grp = grp["cell"]
        v = grp["vars"]
        return [self.budget.array(v[str(i)]) for i in range(len(v))]


def _layers(config: dict, where: str) -> list:
    cls = config.get("class_name")
    cfg = config.get("config", {})
    if cls == "Sequential":
        return cfg["layers"] if isinstance(cfg, dict) else cfg
    if cls in ("Functional", "Model"):
        layers = cfg["layers"]
        prev = None
        for layer in layers:  # a linear chain: each layer reads the one before it
            inbound = layer.get("inbound_nodes") or []
            sources = _inbound_names(inbound)
            if layer["class_name"] != "InputLayer" and sources != [prev]:
                raise ImportModelError(f"{where}: only a linear chain of layers is supported; {layer['config']['name']!r} "
                                       f"reads {sources}")
            prev = layer["config"]["name"]
        return layers
    raise ImportModelError(f"{where}: unsupported Keras model class {cls!r} (Sequential or Functional)")


def _inbound_names(inbound) -> list:
    names = []
    for node in inbound:
        if isinstance(node, list):  # legacy: [[name, node_index, tensor_index, kwargs], ...]
            names += [item[0] for item in node if isinstance(item, list)]
        elif isinstance(node, dict):  # Keras 3: {"args": [{"config": {"keras_history": [name, ...]}}]}
            for arg in node.get("args", []):
                hist = arg.get("config", {}).get("keras_history") if isinstance(arg, dict) else None
                if hist:
                    names.append(hist[0])
    return names


def _cell(kind: str, cfg: dict, w: list, n_in: int, what: str) -> dict:
    """Keras (kernel (I, G*H), recurrent_kernel (H, G*H), bias) to canonical edgelstm weights."""
    if cfg.get("go_backwards"):
        raise ImportModelError(f"{what}: go_backwards=True is not supported (Keras returns its outputs reversed)")
    for flag in ("stateful", "time_major", "unroll"):
        if cfg.get(flag):
            raise ImportModelError(f"{what}: {flag}=True is not supported")
    if not cfg.get("return_sequences", False):
        raise ImportModelError(f"{what}: return_sequences=False is not supported; return sequences and take the "
                               f"last valid step (edgelstm.topologies.many_to_one)")
    H = int(cfg["units"])
    act = cfg.get("activation", "tanh")
    rec_act = cfg.get("recurrent_activation", "sigmoid")
    if kind != "SimpleRNN" and rec_act != "sigmoid":
        raise ImportModelError(f"{what}: recurrent_activation {rec_act!r} is not supported (sigmoid only; "
                               f"old files' hard_sigmoid is refused rather than approximated)")
    if (kind != "SimpleRNN" and act != "tanh") or (kind == "SimpleRNN" and act not in ("tanh", "relu")):
        raise ImportModelError(f"{what}: activation {act!r} is not supported")
    kernel, rec = w[0], w[1]
    bias = w[2] if len(w) > 2 else None
    G = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    if kernel.shape != (n_in, G * H) or rec.shape != (H, G * H):
        raise ImportModelError(f"{what}: weight shapes {kernel.shape}, {rec.shape} do not fit units={H}, "
                               f"input {n_in}")
    if kind == "LSTM":
        b = np.zeros(4 * H, np.float32) if bias is None else bias.reshape(-1)
        return {"w_x": reorder_gates(kernel, KERAS_LSTM, "lstm", axis=-1).T,
                "w_h": reorder_gates(rec, KERAS_LSTM, "lstm", axis=-1).T,
                "b": reorder_gates(b, KERAS_LSTM, "lstm")}
    if kind == "GRU":
        reset_after = bool(cfg.get("reset_after", True))
        if bias is None:
            b_x = b_h = np.zeros(3 * H, np.float32)
        elif reset_after:
            b_x, b_h = bias.reshape(2, 3 * H)
        else:
            b_x, b_h = bias.reshape(-1), np.zeros(3 * H, np.float32)
        return {"w_x": reorder_gates(kernel, KERAS_GRU, "gru", axis=-1).T,
                "w_h": reorder_gates(rec, KERAS_GRU, "gru", axis=-1).T,
                "b_x": reorder_gates(b_x, KERAS_GRU, "gru"), "b_h": reorder_gates(b_h, KERAS_GRU, "gru")}
    b = np.zeros(H, np.float32) if bias is None else bias.reshape(-1)
    return {"w_x": kernel.T, "w_h": rec.T, "b": b}


def _recurrent_layer(kind, cfg, dirs, n_in, bidirectional):
    common = dict(input_size=n_in, hidden_size=int(cfg["units"]), bidirectional=bidirectional,
                  directions=[{k: np.ascontiguousarray(v, np.float32) for k, v in d.items()} for d in dirs])
    if kind == "LSTM":
        return LSTM(**common)
    if kind == "GRU":
        return GRU(reset_after=bool(cfg.get("reset_after", True)), **common)
    return RNN(nonlinearity=cfg.get("activation", "tanh"), **common)


def _input_size(layers: list, where: str) -> int:
    for layer in layers:
        cfg = layer["config"]
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or \
            (layer.get("build_config") or {}).get("input_shape")
        if shape:
            return int(shape[-1])
    raise ImportModelError(f"{where}: the model's input feature size is not recorded")


def _build(config: dict, weights, where: str) -> ModelSpec:
    layers_cfg = _layers(config, where)
    if hasattr(weights, "index"):
        weights.index(layers_cfg)
    n_in = _input_size(layers_cfg, where)
    out = []
    for pos, layer in enumerate(layers_cfg):
        cls, cfg = layer["class_name"], layer["config"]
        name = cfg["name"]
        what = f"{where}: layer {name!r} ({cls})"
        if cls in ("InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise"):
            continue
        if cls == "Masking":
            if out:
                raise ImportModelError(f"{what}: Masking is supported only before the first layer (it maps to "
                                       f"run(..., lengths=))")
            continue
        if cls in _RECURRENT:
            dirs = [_cell(cls, cfg, weights.get(name), n_in, what)]
            layer_obj = _recurrent_layer(cls, cfg, dirs, n_in, False)
        elif cls == "Bidirectional":
            inner = cfg["layer"]
            kind = inner["class_name"]
            if kind not in _RECURRENT:
                raise ImportModelError(f"{what}: wraps {kind}, not a recurrent layer")
            if cfg.get("merge_mode", "concat") != "concat":
                raise ImportModelError(f"{what}: merge_mode {cfg.get('merge_mode')!r} is not supported (concat only: "
                                       f"edgelstm's bidirectional layers concatenate [forward, backward])")
            dirs = [_cell(kind, inner["config"], weights.get(name, sub), n_in, what)
                    for sub in ("forward", "backward")]
            layer_obj = _recurrent_layer(kind, inner["config"], dirs, n_in, True)
        elif cls == "Dense":
            act = cfg.get("activation", "linear")
            if act not in _DENSE_ACTS:
                raise ImportModelError(f"{what}: activation {act!r} is not supported")
            w = weights.get(name)
            kernel = w[0]
            bias = w[1] if len(w) > 1 else np.zeros(kernel.shape[1], np.float32)
            if kernel.shape[0] != n_in:
                raise ImportModelError(f"{what}: kernel {kernel.shape} does not fit {n_in} inputs")
            layer_obj = Dense(input_size=n_in, output_size=kernel.shape[1], activation=_DENSE_ACTS[act],
                              directions=[{"w": np.ascontiguousarray(kernel.T), "b": bias.reshape(-1)}])
        else:
            raise ImportModelError(f"{what}: unsupported layer; edgelstm imports InputLayer, Masking, LSTM, GRU, "
                                   f"SimpleRNN, Bidirectional (concat), Dropout and Dense")
        out.append(layer_obj)
        n_in = layer_obj.output_size
    if not out:
        raise ImportModelError(f"{where}: the model has no layers edgelstm runs")
    try:
        return ModelSpec(layers=out)
    except ModelError as e:
        raise ImportModelError(f"{where}: {e}") from None
