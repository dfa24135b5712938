"""PyTorch modules to the edgelstm IR.  torch is imported inside ``from_torch`` only, so the core
package never needs it."""
from __future__ import annotations

import numpy as np

from edgelstm.errors import ImportModelError, ModelError
from edgelstm.ir.frontend import Activation, Conv1D, Pad
from edgelstm.ir.model import GRU, LSTM, RNN, Dense, ModelSpec
from edgelstm.runtime import Model

from .gate_order import TORCH_GRU, TORCH_LSTM, direction_weights

_ACTIVATION_NAMES = {"Sigmoid": "sigmoid", "Softmax": "softmax", "Tanh": "tanh", "ReLU": "relu", "ReLU6": "relu6",
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


def _first_frame(m, nn, layers, input_size, where) -> tuple[int, int]:
    """(length, channels) of the frame a conv front end starts on: the model input (``input_size`` = length *
    channels) or the previous layer's output."""
    channels = m.in_channels if isinstance(m, nn.Conv1d) else 1
    n = layers[-1].output_size if layers else input_size
    if n is None:
        raise ImportModelError(f"{where}: a model that starts with a conv needs input_size= (the frame's length * "
                               f"channels)")
    if n % channels:
        raise ImportModelError(f"{where}: {n} input features do not split into {channels} channels")
    return n // channels, channels


def _conv_layer(m, nn, frame, where) -> Conv1D:
    length, channels = frame
    if m.in_channels != channels:
        raise ImportModelError(f"{where}: expects {m.in_channels} channels, the frame has {channels}")
    if m.padding_mode not in ("zeros", "reflect"):
        raise ImportModelError(f"{where}: padding_mode {m.padding_mode!r} is not supported (zeros, reflect)")
    K, (stride,), (dil,) = m.kernel_size[0], m.stride, m.dilation
    if m.padding == "same":
        total = dil * (K - 1)
        pads = (total // 2, total - total // 2)
    elif m.padding == "valid":
        pads = (0, 0)
    else:
        pads = (m.padding[0], m.padding[0])
    w = _np(m.weight).transpose(0, 2, 1)                  # torch (O, I/g, K) -> (O, K, I/g)
    b = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, np.float32)
    try:
        return Conv1D(length=length, in_channels=channels, out_channels=m.out_channels, kernel_size=K, stride=stride,
                      dilation=dil, pad_left=pads[0], pad_right=pads[1], pad_mode=m.padding_mode, groups=m.groups,
                      directions=[{"w": np.ascontiguousarray(w), "b": b}])
    except ModelError as e:
        raise ImportModelError(f"{where}: {e}") from None


def _pad_layer(m, nn, frame, where) -> Pad:
    if isinstance(m, nn.ConstantPad1d) and not isinstance(m, nn.ZeroPad1d) and m.value != 0:
        raise ImportModelError(f"{where}: only zero padding is supported (value {m.value})")
    left, right = m.padding
    return Pad(length=frame[0], channels=frame[1], left=left, right=right,
               mode="reflect" if isinstance(m, nn.ReflectionPad1d) else "zeros")


def _channels_last_input(m, nn, frame, where):
    """A matmul layer after a conv front end reads PyTorch's flattened (channels, length) order; edgelstm's frame
    is (length, channels): a copy of the module whose input columns are permuted to match."""
    import copy

    import torch
    length, channels = frame
    if length == 1 or channels == 1:
        return m
    perm = torch.arange(length * channels).reshape(channels, length).T.reshape(-1)   # ours l*C+c <- torch c*L+l
    m = copy.deepcopy(m)
    with torch.no_grad():
        if isinstance(m, nn.Linear):
            m.weight.copy_(m.weight[:, perm])
        else:
            name = "weight_ih_l0"
            for sfx in ("", "_reverse") if m.bidirectional else ("",):
                w = getattr(m, name + sfx)
                w.copy_(w[:, perm])
    return m


def from_torch(module, *, input_size: int | None = None) -> Model:
    """Convert PyTorch modules to a runnable float32 ``edgelstm.Model``.

    ``module``: an nn.LSTM / nn.GRU / nn.RNN / nn.Linear, or an nn.Sequential, nn.ModuleList, list or tuple
    of them (run in order, each consuming the previous one's per-step output).  nn.Sigmoid, nn.Softmax(dim=-1),
    nn.Tanh, nn.ReLU, nn.ReLU6 and nn.Identity right after an nn.Linear or nn.Conv1d become its activation, and a
    layer of their own elsewhere; nn.Dropout is skipped (identity at inference).
    A conv front end (nn.Conv1d: stride, dilation, zeros / reflect padding, groups 1 or depthwise;
    nn.ReflectionPad1d, nn.ZeroPad1d) runs on each step's frame: PyTorch's (channels, length) per step, which
    edgelstm holds channels last, (length, channels) (the same vector when channels = 1, e.g. audio samples; a
    model starting with a conv needs ``input_size`` = length * channels). The first matmul after the front end
    (nn.Linear / LSTM / GRU / RNN) reads the conv output flattened as PyTorch flattens (channels, length): its
    input columns are permuted to edgelstm's order at import.  A user's own nn.Module subclass is read as its child
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
    # The Dense / Conv1D layer an activation module may still merge into (only right after its nn.Linear / Conv1d).
    open_layer = None
    frame = None       # (length, channels) of the running frame while it is still a conv-front-end frame
    for idx, m in enumerate(modules):
        where = f"module {idx} ({type(m).__name__})"
        name = type(m).__name__
        if isinstance(m, (nn.Conv1d, nn.ReflectionPad1d, nn.ZeroPad1d, nn.ConstantPad1d)):
            frame = frame or _first_frame(m, nn, layers, input_size, where)
            layer = _conv_layer(m, nn, frame, where) if isinstance(m, nn.Conv1d) else _pad_layer(m, nn, frame, where)
            layers.append(layer)
            frame = (layer.out_length, layer.out_channels) if layer.kind == "conv1d" else \
                (layer.output_size // layer.channels, layer.channels)
            open_layer = layer if layer.kind == "conv1d" else None
            continue
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN, nn.Linear)) and frame is not None:
            m = _channels_last_input(m, nn, frame, where)
            frame = None
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            layers.extend(_recurrent_layers(m, nn, where))
            open_layer = None
        elif isinstance(m, nn.Linear):
            if isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params():
                raise ImportModelError(f"{where}: lazy module has no weights yet; run it once first")
            b = _np(m.bias) if m.bias is not None else np.zeros(m.out_features, np.float32)
            open_layer = Dense(input_size=m.in_features, output_size=m.out_features,
                               directions=[{"w": _np(m.weight), "b": b}])
            layers.append(open_layer)
        elif isinstance(m, (nn.Dropout, nn.AlphaDropout, nn.Flatten)):
            continue      # Flatten: the frame is flat already (see the channel order in the docstring)
        elif name in _ACTIVATION_NAMES and type(m).__module__.startswith("torch.nn"):
            act = _ACTIVATION_NAMES[name]
            if isinstance(m, nn.Softmax) and (m.dim not in (-1,) or open_layer is None or open_layer.kind != "dense"):
                raise ImportModelError(f"{where}: only Softmax(dim=-1) (over features) right after an nn.Linear is "
                                       f"supported")
            if act == "none":
                continue
            if open_layer is not None and open_layer.activation == "none" and \
                    (open_layer.kind == "conv1d" or act != "relu6"):
                open_layer.activation = act           # the Linear's / Conv1d's fused output activation
            elif layers:
                layers.append(Activation(size=layers[-1].output_size, activation=act))
                open_layer = None
            else:
                if input_size is None:
                    raise ImportModelError(f"{where}: an activation first needs input_size=")
                layers.append(Activation(size=input_size, activation=act))
        else:
            raise ImportModelError(
                f"{where}: unsupported module; supported are nn.Conv1d, nn.ReflectionPad1d / ZeroPad1d / "
                f"ConstantPad1d(0), nn.LSTM, nn.GRU, nn.RNN, nn.Linear, ReLU, ReLU6, Sigmoid, Tanh, Identity, "
                f"Softmax(dim=-1) after an nn.Linear, nn.Flatten, nn.Dropout and containers of them")
    if not layers:
        raise ImportModelError("from_torch: the modules contain no layers")
    if input_size is not None and input_size != layers[0].input_size:
        raise ImportModelError(f"input_size={input_size} but the first layer expects {layers[0].input_size}")
    try:
        return Model(ModelSpec(layers=layers))
    except ModelError as e:
        raise ImportModelError(f"from_torch: {e}") from e
