"""A float64 numpy forward of a ModelSpec one step at a time (the recurrent, Dense and front-end steps of
tests/naive.py): the reference the ONNX importer's tests compare with onnxruntime, step by step."""
import numpy as np

from naive import _dense64, _gru_step64, _lstm_step64, _rnn_step64, ref_front_end_f64


def front_end_step(layer, x):
    """One frame through a front-end layer (no context), as tests/naive.py defines it."""
    return ref_front_end_f64(layer, layer.directions[0], x, None)[0]


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
