"""PyTorch modules to the edgelstm IR.  torch is imported inside ``from_torch`` only, so the core
package never needs it."""
from __future__ import annotations

import numpy as np

from edgelstm.errors import ImportModelError, ModelError
from edgelstm.ir.model import GRU, LSTM, RNN, Dense, ModelSpec
from edgelstm.runtime import Model

from .gate_order import TORCH_GRU, TORCH_LSTM, direction_weights

_ACTIVATION_NAMES = {"Sigmoid": "sigmoid", "Softmax": "softmax", "Tanh": "tanh", "ReLU": "relu",
                     "Identity": "none"}


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _flatten(module, nn) -> list:
    """Containers (Sequential, ModuleList, list, tuple, and a user's own nn.Module subclass) to a flat list
    of leaf torch.nn modules, in order.  A user's module is read as its children in registration order: its
    forward() is not traced, so the children must run one after another as a plain stack."""
    if isinstance(module, (list, tuple, nn.Sequential, nn.ModuleList)):
        children = list(module)
    elif not isinstance(module, nn.Module):
        raise ImportModelError(f"from_torch expects torch.nn modules, got {type(module).__name__}")
    elif type(module).__module__.startswith("torch.nn"):
        return [module]
    else:
        children = list(module.children())
        if not children:
            raise ImportModelError(
                f"{type(module).__name__}: a custom module is imported as its child modules in order, and it "
                f"has none (supported: nn.LSTM, nn.GRU, nn.RNN, nn.Linear + activation, nn.Dropout and "
                f"containers or modules whose children are these, run one after another)")
    out = []
    for child in children:
        out.extend(_flatten(child, nn))
    return out


def _recurrent_layers(m, nn, where: str) -> list:
    """One IR layer per torch layer of an nn.LSTM / nn.GRU / nn.RNN."""
    if isinstance(m, nn.LSTM):
        kind = "lstm"
    elif isinstance(m, nn.GRU):
        kind = "gru"
    elif isinstance(m, nn.RNN):
        kind = "rnn"
    else:  # pragma: no cover - caller dispatches
        raise ImportModelError(f"{where}: not a recurrent module")
    H = m.hidden_size
    P = getattr(m, "proj_size", 0) or 0
    n_dir = 2 if m.bidirectional else 1
    layers = []
    for k in range(m.num_layers):
        # Layers above the first see the concatenated directions of the one below.
        n_in = m.input_size if k == 0 else (P or H) * n_dir
        directions = []
        for d in range(n_dir):
            sfx = f"l{k}" + ("_reverse" if d else "")
            w_ih = _np(getattr(m, f"weight_ih_{sfx}"))
            w_hh = _np(getattr(m, f"weight_hh_{sfx}"))
            if m.bias:
                b_ih, b_hh = _np(getattr(m, f"bias_ih_{sfx}")), _np(getattr(m, f"bias_hh_{sfx}"))
            else:
                b_ih = b_hh = np.zeros(w_ih.shape[0], np.float32)
            p = direction_weights(kind, w_ih, w_hh, b_ih, b_hh, {"lstm": TORCH_LSTM, "gru": TORCH_GRU})
            if kind == "lstm" and P:
                p["w_proj"] = _np(getattr(m, f"weight_hr_{sfx}"))
                p["b_proj"] = np.zeros(P, np.float32)  # PyTorch's projection has no bias
            directions.append(p)
        common = dict(input_size=n_in, hidden_size=H, bidirectional=bool(m.bidirectional), directions=directions)
        if kind == "lstm":
            layers.append(LSTM(proj_size=P, **common))
        elif kind == "gru":
            layers.append(GRU(reset_after=True, **common))
        else:
            if m.nonlinearity not in ("tanh", "relu"):
                raise ImportModelError(f"{where}: unsupported RNN nonlinearity {m.nonlinearity!r}")
            layers.append(RNN(nonlinearity=m.nonlinearity, **common))
    return layers


def from_torch(module, *, input_size: int | None = None) -> Model:
    """Convert PyTorch modules to a runnable float32 ``edgelstm.Model``.

    ``module``: an nn.LSTM / nn.GRU / nn.RNN / nn.Linear, or an nn.Sequential, nn.ModuleList, list or tuple
    of them (run in order, each consuming the previous one's per-step output).  nn.Sigmoid, nn.Softmax(dim=-1),
    nn.Tanh, nn.ReLU and nn.Identity are accepted right after an nn.Linear and become its activation;
    nn.Dropout is skipped (identity at inference).  A user's own nn.Module subclass is read as its child
    modules in registration order (its forward() must apply them one after another; edgelstm does not trace
    it).  ``input_size``, if given, must match the first layer.
    Tensor layout options (batch_first) do not matter: the IR is layout-free.
    """
    try:
        import torch.nn as nn
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportModelError("from_torch needs PyTorch: pip install 'edgelstm[torch]'") from e

    modules = _flatten(module, nn)
    if not modules:
        raise ImportModelError("from_torch: no modules given")
    layers = []
    # The Dense layer an activation module may still merge into (only right after its nn.Linear).
    open_dense = None
    for idx, m in enumerate(modules):
        where = f"module {idx} ({type(m).__name__})"
        name = type(m).__name__
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            layers.extend(_recurrent_layers(m, nn, where))
            open_dense = None
        elif isinstance(m, nn.Linear):
            if isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params():
                raise ImportModelError(f"{where}: lazy module has no weights yet; run it once first")
            b = _np(m.bias) if m.bias is not None else np.zeros(m.out_features, np.float32)
            open_dense = Dense(input_size=m.in_features, output_size=m.out_features,
                               directions=[{"w": _np(m.weight), "b": b}])
            layers.append(open_dense)
        elif isinstance(m, (nn.Dropout, nn.AlphaDropout)):
            continue
        elif name in _ACTIVATION_NAMES and type(m).__module__.startswith("torch.nn"):
            if open_dense is None:
                raise ImportModelError(
                    f"{where}: an activation is only supported directly after an nn.Linear "
                    f"(it becomes that Dense layer's output activation)")
            if isinstance(m, nn.Softmax) and m.dim not in (-1,):
                raise ImportModelError(f"{where}: only Softmax(dim=-1) (over features) is supported, got "
                                       f"dim={m.dim}")
            act = _ACTIVATION_NAMES[name]
            if act == "none":
                continue
            if open_dense.activation != "none":
                raise ImportModelError(f"{where}: nn.Linear already has activation "
                                       f"{open_dense.activation!r}; two activations in a row are not supported")
            open_dense.activation = act
        else:
            raise ImportModelError(
                f"{where}: unsupported module; supported are nn.LSTM, nn.GRU, nn.RNN, nn.Linear (+ Sigmoid, "
                f"Softmax(dim=-1), Tanh, ReLU, Identity after it), nn.Dropout and containers of them")
    if not layers:
        raise ImportModelError("from_torch: the modules contain no layers")
    if input_size is not None and input_size != layers[0].input_size:
        raise ImportModelError(f"input_size={input_size} but the first layer expects {layers[0].input_size}")
    try:
        return Model(ModelSpec(layers=layers))
    except ModelError as e:
        raise ImportModelError(f"from_torch: {e}") from e
