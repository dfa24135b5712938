"""Chain (models in series) and quantize_tail (float front end + int8 tail): the Chain is its parts run in
order, bit for bit, in every API; quantize_tail's tail is exactly `quantize` of the tail on the front's output."""
import numpy as np
import pytest

import edgelstm as el
from edgelstm.errors import InputError, ModelError

LAYERS = [{"kind": "pad", "left": 4, "right": 4, "mode": "reflect"},
          {"kind": "conv1d", "out_channels": 6, "kernel_size": 8, "stride": 4},
          {"kind": "activation", "activation": "relu"},
          {"kind": "lstm", "hidden_size": 12},
          {"kind": "dense", "output_size": 2, "activation": "sigmoid"}]


def _hybrid(seed=0):
    return el.Model(el.random_model(LAYERS, input_size=32, seed=seed))


def _frames(T, seed):
    return np.random.default_rng(seed).standard_normal((T, 32)).astype(np.float32)


def test_quantize_tail_is_quantize_of_the_tail_on_the_front_output():
    m = _hybrid()
    calib, X = _frames(300, 1), _frames(200, 2)
    chain = el.quantize_tail(m, calibration=calib, progress=False)
    front, tail = chain.models
    assert not front.is_quantized and tail.is_quantized and chain.is_quantized
    assert [l.kind for l in front.spec.layers] == ["pad", "conv1d", "activation"]      # split before the LSTM
    np.testing.assert_array_equal(front.run(X), el.Model(el.ModelSpec(layers=m.spec.layers[:3])).run(X))
    want_tail = el.quantize(el.Model(el.ModelSpec(layers=m.spec.layers[3:])), calibration=front.run(calib),
                            progress=False)
    want = want_tail.run(front.run(X))
    np.testing.assert_array_equal(chain.run(X), want)
    assert chain.fidelity.decision_agreement is not None
    # against the float model: the int8 tail's error only (a loose bound: one int8 LSTM + sigmoid head)
    assert np.abs(chain.run(X) - m.run(X)).max() < 0.1


def test_chain_stream_equals_run_and_keeps_state():
    chain = el.quantize_tail(_hybrid(3), calibration=_frames(200, 4), progress=False)
    X = _frames(60, 5)
    s = chain.stream()
    stepped = np.stack([s.step(x).copy() for x in X[:30]])
    saved = s.state
    rest = s.step_many(X[30:])
    np.testing.assert_array_equal(np.concatenate([stepped, rest]), chain.run(X))
    s.state = saved                          # back to the middle: the same second half again
    np.testing.assert_array_equal(s.step_many(X[30:]), rest)
    s.reset()
    np.testing.assert_array_equal(s.step_many(X), chain.run(X))
    with pytest.raises(InputError, match="States"):
        s.state = saved[:1]


def test_chain_and_quantize_tail_refuse_bad_input():
    m = _hybrid()
    with pytest.raises(ModelError, match="returns 2 values per step"):
        el.Chain(m, m)
    with pytest.raises(ModelError, match="two models"):
        el.Chain(m)
    with pytest.raises(InputError, match="start"):
        el.quantize_tail(m, calibration=_frames(10, 0), start=0)
    with pytest.raises(ModelError, match="no recurrent layer"):
        el.quantize_tail(el.Model(el.random_model([{"kind": "dense", "output_size": 3}], input_size=32)),
                         calibration=_frames(10, 0))
    q = el.quantize(m, calibration=_frames(50, 0), progress=False)
    with pytest.raises(ModelError, match="already quantized"):
        el.quantize_tail(q, calibration=_frames(10, 0))
    with pytest.raises(InputError):
        el.quantize_tail(m, calibration=np.full((10, 32), np.nan, np.float32))
