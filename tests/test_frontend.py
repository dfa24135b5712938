"""Front-end layer kinds (conv1d, pad, magnitude, activation, context) in the Numba runtime.

Float32 against PyTorch's conv1d / pad in float64 (float32 rounding over a few hundred terms stays far below the
1e-5 tolerance), int8 bit for bit against the plain-loop references in tests/naive.py, streams against whole runs.
"""
import numpy as np
import pytest

import edgelstm as el
from edgelstm.errors import ModelError
from edgelstm.ir.model import layer_from_description

import naive

torch = pytest.importorskip("torch")
F = torch.nn.functional
ACTS = ("none", "relu", "relu6", "sigmoid", "tanh")


def random_front_end(rng, *, frame: int, recurrent: str = "gru") -> list[dict]:
    """A random conv front end over a (frame, 1) input: every option drawn, then a recurrent layer and a head."""
    layers = []
    length, ch = frame, 1
    if rng.random() < 0.5:
        k = int(rng.integers(1, 4))
        layers.append({"kind": "context", "context": k * ch})
        length += k
    if rng.random() < 0.4:
        left, right = (int(v) for v in rng.integers(0, min(3, length - 1) + 1, 2))
        layers.append({"kind": "pad", "length": length, "channels": ch, "left": left, "right": right,
                       "mode": str(rng.choice(["zeros", "reflect"]))})
        length += left + right
    for _ in range(int(rng.integers(1, 4))):
        depthwise = ch > 1 and rng.random() < 0.4
        out_ch = ch * int(rng.integers(1, 3)) if depthwise else int(rng.choice([3, 8, 16, 20]))
        dil = int(rng.integers(1, 3))
        k = int(rng.integers(1, 4))
        pl, pr = (int(v) for v in rng.integers(0, min(2, length - 1) + 1, 2))
        span = dil * (k - 1) + 1
        if length + pl + pr < span:
            k, dil = 1, 1
        layers.append({"kind": "conv1d", "length": length, "in_channels": ch, "out_channels": out_ch,
                       "kernel_size": k, "stride": int(rng.integers(1, 3)), "dilation": dil, "pad_left": pl,
                       "pad_right": pr, "pad_mode": str(rng.choice(["zeros", "reflect"])),
                       "groups": ch if depthwise else 1, "activation": str(rng.choice(ACTS))})
        length = (length + pl + pr - dil * (k - 1) - 1) // layers[-1]["stride"] + 1
        ch = out_ch
        if rng.random() < 0.3:
            layers.append({"kind": "activation", "activation": str(rng.choice(ACTS[1:]))})
    if ch % 2 == 0 and rng.random() < 0.5:
        layers.append({"kind": "magnitude", "length": length, "channels": ch // 2})
    layers.append({"kind": recurrent, "hidden_size": int(rng.choice([8, 16, 32]))})
    layers.append({"kind": "dense", "output_size": 3, "activation": str(rng.choice(["sigmoid", "none", "tanh"]))})
    return layers


def _torch_front_end(spec, X):
    """The front-end layers of ``spec`` (up to the first recurrent layer) over X (T, F) in float64 PyTorch."""
    h = torch.tensor(X, dtype=torch.float64)
    T = h.shape[0]
    act = {"none": lambda a: a, "relu": torch.relu, "relu6": lambda a: a.clamp(0, 6), "sigmoid": torch.sigmoid,
           "tanh": torch.tanh}
    for layer in spec.layers:
        if layer.kind == "context":
            stream = torch.cat([torch.zeros(layer.context, dtype=torch.float64), h.reshape(-1)])
            h = torch.stack([stream[t * layer.size:t * layer.size + layer.context + layer.size] for t in range(T)])
        elif layer.kind == "pad":
            v = h.reshape(T, layer.length, layer.channels).permute(0, 2, 1)
            v = F.pad(v, (layer.left, layer.right), mode="reflect" if layer.mode == "reflect" else "constant")
            h = v.permute(0, 2, 1).reshape(T, -1)
        elif layer.kind == "conv1d":
            v = h.reshape(T, layer.length, layer.in_channels).permute(0, 2, 1)
            v = F.pad(v, (layer.pad_left, layer.pad_right),
                      mode="reflect" if layer.pad_mode == "reflect" else "constant")
            w = torch.tensor(layer.directions[0]["w"], dtype=torch.float64).permute(0, 2, 1)   # (O, Ig, K)
            b = torch.tensor(layer.directions[0]["b"], dtype=torch.float64)
            v = F.conv1d(v, w, b, stride=layer.stride, dilation=layer.dilation, groups=layer.groups)
            h = act[layer.activation](v).permute(0, 2, 1).reshape(T, -1)
        elif layer.kind == "magnitude":
            v = h.reshape(T, layer.length, 2, layer.channels)
            h = torch.sqrt(v[:, :, 0] ** 2 + v[:, :, 1] ** 2).reshape(T, -1)
        elif layer.kind == "activation":
            h = act[layer.activation](h)
        else:
            break
    return h.numpy()


def _front_end_only(spec):
    n = next(k for k, layer in enumerate(spec.layers) if layer.kind in ("lstm", "gru", "rnn"))
    return el.ModelSpec(layers=spec.layers[:n])


@pytest.mark.parametrize("seed", range(12))
def test_float_front_end_matches_torch(seed):
    rng = np.random.default_rng(seed)
    frame = int(rng.integers(8, 40))
    spec = el.random_model(random_front_end(rng, frame=frame), input_size=frame, seed=seed)
    X = rng.standard_normal((25, frame)).astype(np.float32)
    front = el.Model(_front_end_only(spec))
    want = _torch_front_end(spec, X)
    np.testing.assert_allclose(front.run(X), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(front.run(X), naive.ref_forward_f64(front.spec, X[None])[0][0], rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
def test_hybrid_streams_equal_runs_float_and_int8(seed, recurrent):
    """Whole runs, step-by-step streams (the context carried across steps) and batched runs agree; the int8
    model equals the integer reference bit for bit."""
    rng = np.random.default_rng(100 + seed)
    frame = int(rng.integers(8, 40))
    spec = el.random_model(random_front_end(rng, frame=frame, recurrent=recurrent), input_size=frame, seed=seed)
    X = (rng.standard_normal((3, 40, frame)) * 2).astype(np.float32)
    f = el.Model(spec)
    np.testing.assert_allclose(f.run(X), naive.ref_forward_f64(spec, X)[0], rtol=1e-4, atol=1e-4)
    q = el.quantize(f, calibration=X[:2], progress=False)
    lengths = np.array([40, 17, 33])
    Yq, st = q.run(X, lengths=lengths, return_state=True)
    Yr, st_r = naive.ref_forward_int8(q.spec, q.quant, X, lengths=lengths)
    np.testing.assert_array_equal(Yq, Yr)
    for k, layer in enumerate(q.spec.layers):
        for name, a in st[k][0].items():
            np.testing.assert_array_equal(a, st_r[k][0][name])
    for m in (f, q):
        s = m.stream()
        Ys = np.stack([s.step(x).copy() for x in X[0]])
        np.testing.assert_array_equal(Ys, m.run(X[0]))


def test_context_state_round_trips_and_resets():
    spec = el.random_model([{"kind": "context", "context": 6}, {"kind": "conv1d", "out_channels": 4,
                                                                 "kernel_size": 3, "stride": 3},
                            {"kind": "gru", "hidden_size": 8}], input_size=3, seed=1)
    X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    for m in (el.Model(spec), el.quantize(el.Model(spec), calibration=X, progress=False)):
        s = m.stream()
        s.step_many(X[:20])
        st = s.state
        assert st[0][0]["ctx"].shape == (6,)
        assert st[0][0]["ctx"].dtype == (np.int8 if m.is_quantized else np.float32)
        tail = s.step_many(X[20:]).copy()
        s.state = st
        np.testing.assert_array_equal(s.step_many(X[20:]), tail)
        s.reset()
        np.testing.assert_array_equal(s.step_many(X), m.run(X))
        if m.is_quantized:    # the zero state is the input's zero point (real 0)
            assert np.all(m.zero_state()[0][0]["ctx"] == m.quant.act[0][1])


def test_front_end_models_save_and_load(tmp_path):
    rng = np.random.default_rng(7)
    spec = el.random_model(random_front_end(rng, frame=24), input_size=24, seed=3)
    X = rng.standard_normal((30, 24)).astype(np.float32)
    f = el.Model(spec)
    q = el.quantize(f, calibration=X, progress=False)
    for m in (f, q):
        el.save(m, tmp_path / "m.elstm")
        back = el.load(tmp_path / "m.elstm")
        assert back.spec.describe() == m.spec.describe()
        np.testing.assert_array_equal(back.run(X), m.run(X))


@pytest.mark.parametrize("layer, match", [
    ({"kind": "conv1d", "length": 10, "in_channels": 2, "out_channels": 4, "kernel_size": 3, "groups": 3},
     "groups"),
    ({"kind": "conv1d", "length": 4, "in_channels": 1, "out_channels": 2, "kernel_size": 6}, "longer"),
    ({"kind": "conv1d", "length": 4, "in_channels": 1, "out_channels": 2, "kernel_size": 1, "stride": 0}, "stride"),
    ({"kind": "conv1d", "length": 4, "in_channels": 1, "out_channels": 2, "kernel_size": 2, "pad_left": 4,
      "pad_mode": "reflect"}, "reflect"),
    ({"kind": "conv1d", "length": 4, "in_channels": 1, "out_channels": 2, "kernel_size": 2, "activation": "gelu"},
     "activation"),
    ({"kind": "pad", "length": 3, "channels": 1, "left": 1, "mode": "edge"}, "mode"),
    ({"kind": "activation", "size": 4, "activation": "none"}, "activation"),
    ({"kind": "context", "size": 4, "context": 0}, "context"),
    ({"kind": "conv1d", "length": 1 << 21, "in_channels": 4, "out_channels": 2, "kernel_size": 1}, "exceeds"),
])
def test_bad_front_end_layers_are_refused(layer, match):
    with pytest.raises(ModelError, match=match):
        el.ModelSpec(layers=[layer_from_description(layer, [])], has_weights=False)


def test_wrong_conv_weights_are_refused():
    spec = el.random_model([{"kind": "conv1d", "out_channels": 4, "kernel_size": 3}], input_size=8)
    layer = spec.layers[0]
    layer.directions[0]["w"] = layer.directions[0]["w"][:, :2]
    with pytest.raises(ModelError, match="shape"):
        el.ModelSpec(layers=[layer])
