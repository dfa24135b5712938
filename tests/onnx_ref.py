"""A float64 numpy forward of a ModelSpec one step at a time, front-end kinds included (Conv1D, Pad, Magnitude,
Activation, written from CONV_IR's equations) plus the recurrent / Dense steps of tests/naive.py: the reference
the ONNX importer's tests compare with onnxruntime while the runtime's own front-end kernels are not there."""
import numpy as np

from naive import _dense64, _gru_step64, _lstm_step64, _rnn_step64, _sigmoid64


def _act(y, act):
    if act == "relu":
        return np.maximum(y, 0.0)
    if act == "relu6":
        return np.clip(y, 0.0, 6.0)
    if act == "sigmoid":
        return _sigmoid64(y)
    if act == "tanh":
        return np.tanh(y)
    return y


def _pad(x, left, right, mode):
    """x (length, channels) padded along length: zeros or a reflection without the edge."""
    if mode == "reflect":
        return np.pad(x, ((left, right), (0, 0)), mode="reflect")
    return np.pad(x, ((left, right), (0, 0)))


def front_end_step(layer, x):
    if layer.kind == "pad":
        return _pad(x.reshape(layer.length, layer.channels), layer.left, layer.right, layer.mode).ravel()
    if layer.kind == "magnitude":
        v = x.reshape(layer.length, 2 * layer.channels)
        return np.sqrt(v[:, :layer.channels] ** 2 + v[:, layer.channels:] ** 2).ravel()
    if layer.kind == "activation":
        return _act(x, layer.activation)
    if layer.kind == "conv1d":
        p = layer.directions[0]
        w, b = np.asarray(p["w"], np.float64), np.asarray(p["b"], np.float64)
        xp = _pad(x.reshape(layer.length, layer.in_channels), layer.pad_left, layer.pad_right, layer.pad_mode)
        O, K, Ig = w.shape
        G = layer.groups
        pos = np.arange(layer.out_length)[:, None] * layer.stride + np.arange(K)[None, :] * layer.dilation
        win = xp[pos].reshape(layer.out_length, K, G, Ig)                  # (L_out, K, groups, Ig)
        y = np.einsum("lkgi,gpki->lgp", win, w.reshape(G, O // G, K, Ig)).reshape(layer.out_length, O) + b
        return _act(y, layer.activation).ravel()
    raise ValueError(layer.kind)


def zero_state(spec):
    out = []
    for layer in spec.layers:
        n_dir = 2 if getattr(layer, "bidirectional", False) else 1
        out.append([{n: np.zeros(s) for n, s in layer.state_shapes().items()} for _ in range(n_dir)])
    return out


def step64(spec, x, state):
    """One step of a unidirectional model: x (input_size,), state as zero_state(spec) (updated in place)."""
    x = np.asarray(x, np.float64)
    for k, layer in enumerate(spec.layers):
        p = {n: np.asarray(a, np.float64) for n, a in layer.directions[0].items()} if layer.directions else {}
        st = state[k][0] if state[k] else None
        if layer.kind == "lstm":
            p.update(cell_clip=layer.cell_clip, proj_clip=layer.proj_clip)
            st["h"], st["c"] = _lstm_step64(p, x, st["h"], st["c"], H=layer.hidden_size)
            x = st["h"]
        elif layer.kind == "gru":
            st["h"] = _gru_step64(p, x, st["h"], H=layer.hidden_size, reset_after=layer.reset_after)
            x = st["h"]
        elif layer.kind == "rnn":
            st["h"] = _rnn_step64(p, x, st["h"], nonlinearity=layer.nonlinearity)
            x = st["h"]
        elif layer.kind == "dense":
            x = _dense64(p, x, activation=layer.activation)
        else:
            x = front_end_step(layer, x)
    return x
