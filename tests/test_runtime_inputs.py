"""Bad inputs get a clear edgelstm exception, never a crash, and nothing is lost on error."""

import numpy as np
import pytest

import edgelstm as el
from conftest import bytes_allocated_by

F = 5


@pytest.fixture(scope="module")
def models():
    spec = el.random_model([{"kind": "lstm", "hidden_size": 8}, {"kind": "dense", "output_size": 3}],
                           input_size=F, seed=3)
    fm = el.Model(spec)
    calib = np.random.default_rng(0).standard_normal((2, 40, F)).astype(np.float32)
    return {"f32": fm, "int8": el.quantize(fm, calibration=calib)}


@pytest.fixture(params=["f32", "int8"])
def model(request, models):
    return models[request.param]


def test_wrong_feature_size(model):
    with pytest.raises(el.InputError, match="features"):
        model.run(np.zeros((4, F + 1), np.float32))
    with pytest.raises(el.InputError, match="features"):
        model.stream().step(np.zeros(F - 1, np.float32))


@pytest.mark.parametrize("bad", [np.zeros((4, F), np.int32), np.zeros((4, F), object),
                                 np.zeros((4, F), complex), np.array([["a"] * F] * 4)])
def test_wrong_dtype(model, bad):
    with pytest.raises(el.InputError, match="float"):
        model.run(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected_everywhere(model, value):
    X = np.zeros((6, F), np.float32)
    X[3, 2] = value
    with pytest.raises(el.InputError, match="NaN or inf"):
        model.run(X)
    s = model.stream()
    with pytest.raises(el.InputError, match="NaN or inf"):
        s.step_many(X)
    with pytest.raises(el.InputError, match="NaN or inf"):
        s.step(X[3])
    with pytest.raises(el.InputError, match="NaN or inf"):
        s.step(X[3].astype(np.float64))  # the slow path checks too


def test_nothing_lost_on_error(model):
    """A rejected frame leaves the stream's state untouched."""
    rng = np.random.default_rng(1)
    s = model.stream()
    s.step_many(rng.standard_normal((10, F)).astype(np.float32))
    before = s.state
    bad = np.full(F, np.nan, np.float32)
    with pytest.raises(el.InputError):
        s.step(bad)
    after = s.state
    for a, b in zip(before, after):
        for da, db in zip(a, b):
            for name in da:
                assert np.array_equal(da[name], db[name])


@pytest.mark.parametrize("shape", [(0, F), (2, 0, F), (0, 3, F)])
def test_empty_sequence(model, shape):
    with pytest.raises(el.InputError, match="empty"):
        model.run(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(F,), (1, 2, 3, F)])
def test_bad_rank(model, shape):
    with pytest.raises(el.InputError, match=rf"expected \(T, {F}\) or \(B, T, {F}\)"):
        model.run(np.zeros(shape, np.float32))


@pytest.mark.parametrize("lengths,match", [([0, 3], r"\[1, 4\]"), ([5, 1], r"\[1, 4\]"), ([-1, 2], r"\[1, 4\]"),
                                           ([1, 2, 3], "2 integers"), ([1.5, 2.0], "2 integers")])
def test_lengths_out_of_range(model, lengths, match):
    with pytest.raises(el.InputError, match=match):
        model.run(np.zeros((2, 4, F), np.float32), lengths=np.array(lengths))


def test_lengths_need_batched_input(model):
    with pytest.raises(el.InputError, match="batched"):
        model.run(np.zeros((4, F), np.float32), lengths=np.array([4]))


def test_bad_state(model):
    s = model.stream()
    good = s.state
    with pytest.raises(el.InputError, match="one entry per layer"):
        s.state = good[:1]
    wrong = good.copy()
    wrong[0][0]["h"] = wrong[0][0]["h"][:-1]
    with pytest.raises(el.InputError, match="shape"):
        s.state = wrong
    wrong = good.copy()
    wrong[0][0]["c"] = wrong[0][0]["c"].astype(np.float64)
    with pytest.raises(el.InputError, match="dtype"):
        s.state = wrong
    wrong = good.copy()
    del wrong[0][0]["h"]
    with pytest.raises(el.InputError, match="lacks"):
        s.state = wrong


def test_float_state_nan_rejected(models):
    m = models["f32"]
    st = m.zero_state()
    st[0][0]["c"][0] = np.nan
    with pytest.raises(el.InputError, match="NaN"):
        m.run(np.zeros((3, F), np.float32), initial_state=st)


def test_bidirectional_refuses_streaming():
    m = el.Model(el.random_model([{"kind": "gru", "hidden_size": 4, "bidirectional": True}], input_size=F))
    with pytest.raises(el.StreamingError, match="bidirectional"):
        m.stream()


def test_calibration_rejects_nan(models):
    X = np.zeros((10, F), np.float32)
    X[0, 0] = np.nan
    with pytest.raises(el.InputError):
        el.quantize(models["f32"], calibration=X)


def test_every_error_is_one_tree(model):
    with pytest.raises(el.EdgeLSTMError):
        model.run(np.zeros((4, F + 2), np.float32))


def test_step_reuses_its_buffer_and_allocates_nothing(model):
    s = model.stream()
    x = np.random.default_rng(2).standard_normal(F).astype(np.float32)
    y1 = s.step(x)
    y2 = s.step(x)
    assert y1 is y2  # documented: the output buffer is reused
    grown = bytes_allocated_by(lambda: s.step(x), 2000)
    assert grown < 2048, f"step allocated {grown} bytes over 2000 calls"


def test_quantize_explains_a_diverging_float_model():
    spec = el.random_model([{"kind": "rnn", "hidden_size": 16, "nonlinearity": "relu"}], input_size=F, seed=0,
                           scale=30.0)
    X = np.random.default_rng(0).standard_normal((1, 200, F)).astype(np.float32)
    with pytest.raises(el.ModelError, match="diverges"):
        el.quantize(el.Model(spec), calibration=X)


_NRT_PROBE = r'''
import numpy as np
from numba import njit
from numba.core.runtime import rtsys
import edgelstm as el
from edgelstm.kernels import program as P

spec = el.random_model([{"kind": "lstm", "hidden_size": 8}, {"kind": "dense", "output_size": 3}], input_size=5)
f32 = el.Model(spec)
int8 = el.quantize(f32, calibration=np.random.default_rng(0).standard_normal((1, 20, 5)).astype(np.float32))

@njit
def steps_int8(n, x, model, work):
    for _ in range(n):
        P.step_int8(x, model, work)

@njit
def steps_f32(n, x, model, work):
    for _ in range(n):
        P.step_f32(x, model, work)

x = np.ones(5, np.float32)
for model in (int8, f32):
    s = model.stream()
    args = (x, s._model_blob, s._work)
    steps = steps_int8 if model.is_quantized else steps_f32
    steps(1, *args)
    a0 = rtsys.get_allocation_stats().alloc
    steps(1000, *args)
    # the outer call unboxes its 3 array arguments (3 NRT records); the 1000 steps inside add nothing
    print(rtsys.get_allocation_stats().alloc - a0)
'''


def test_step_kernel_body_allocates_nothing():
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    out = subprocess.run([sys.executable, "-c", _NRT_PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "3"], out.stdout


def test_fast_step_path_and_every_other_input_form_give_the_same_outputs(model):
    """After its first call the fast path calls the kernel's compiled entry point (no type dispatch); frames in
    any other form (float64, strided, read-only, a list) still go through the dispatcher. Mixed in any order,
    every output equals a stream fed plain float32 frames."""
    from numba.core.registry import CPUDispatcher
    X = np.random.default_rng(5).standard_normal((24, F)).astype(np.float32)
    ref = model.stream()
    want = np.stack([ref.step(x).copy() for x in X])
    s = model.stream()
    strided = np.zeros((24, 2 * F), np.float32)
    strided[:, ::2] = X
    forms = [lambda k: X[k], lambda k: X[k].astype(np.float64), lambda k: strided[k, ::2],
             lambda k: np.frombuffer(X[k].tobytes(), np.float32), lambda k: X[k].tolist()]
    got = np.stack([s.step(forms[k % len(forms)](k)).copy() for k in range(len(X))])
    np.testing.assert_array_equal(got, want)
    if isinstance(s._step_kernel, CPUDispatcher):       # the JIT backend: the entry point is in use
        assert s._call is not s._step_kernel and s._call is not s._first_call
    s._step_kernel = s._step_kernel                      # switching backend resets the fast path
    assert s._call == s._first_call
    s.step(X[0])
