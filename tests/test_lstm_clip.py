"""LSTM cell_clip / proj_clip with TFLite's semantics (the numerics contract), each stage on its own and end to
end: int8 bit for bit against tests/naive.py, float32 against the float64 reference."""
import numpy as np
import pytest

import edgelstm as el
from edgelstm.quant.multiplier import quantized_clip
from naive import ref_forward_f64, ref_forward_int8, ref_quantized_clip


@pytest.mark.parametrize("clip, scale, limit, want", [
    (10.0, 2.0 ** -11, 32767, 20480),      # the TF converter's default cell_clip for a Keras LSTM
    (100.0, 2.0 ** -11, 32767, 32767),     # clamped: never -32768 / beyond int16
    (0.0013, 2.0 ** -15, 32767, 42),       # 42.598...: the int cast truncates, it does not round
    (1e-5, 2.0 ** -15, 32767, 0),          # rounds to 0: no clipping at all (LiteRT checks clip > 0)
    (0.0, 2.0 ** -12, 32767, 0),
    (0.5, 0.01, 127, 50),
    (3.0, 0.01, 127, 127),
])
def test_quantized_clip_matches_litert_prepare(clip, scale, limit, want):
    assert quantized_clip(clip, scale, limit) == want
    assert ref_quantized_clip(clip, scale, limit) == want


def _walk(rng, T, F, step=0.6):
    """A random walk that drives the cell state to large magnitudes (and so into the clip)."""
    return np.cumsum(rng.standard_normal((T, F)) * step, axis=0).clip(-8, 8).astype(np.float32)


def _clipped_model(cell_clip, proj_clip, *, proj_size=0, seed=0):
    spec = el.random_model([{"kind": "lstm", "hidden_size": 12, "proj_size": proj_size, "cell_clip": cell_clip,
                             "proj_clip": proj_clip}, {"kind": "dense", "output_size": 3}],
                           input_size=6, seed=seed, scale=1.5)
    return spec


@pytest.mark.parametrize("proj_size, proj_clip", [(0, 0.0), (5, 0.0), (5, 0.3)])
def test_int8_clipping_bites_and_matches_reference(proj_size, proj_clip):
    rng = np.random.default_rng(proj_size)
    spec = _clipped_model(0.5, proj_clip, proj_size=proj_size)
    X = _walk(rng, 400, 6)
    q = el.quantize(el.Model(spec), calibration=X[None], progress=False)
    Y, st = q.run(X, return_state=True)
    ref, ref_st = ref_forward_int8(q.spec, q.quant, X[None])
    np.testing.assert_array_equal(Y, ref[0])
    np.testing.assert_array_equal(st[0][0]["c"], ref_st[0][0]["c"][0])
    # the clip was hit: the stream's c sits exactly on +-q_clip at some step
    e = int(q.quant.layers[0][0]["cell_exp"][0])
    qc = quantized_clip(0.5, 2.0 ** e, 32767)
    s, seen = q.stream(), set()
    for x in X:
        s.step(x)
        c = s.state[0][0]["c"]
        assert np.all(np.abs(c.astype(np.int32)) <= qc)
        seen.update(np.abs(c[np.abs(c.astype(np.int32)) == qc]).tolist())
    assert seen == {qc}
    # and it matters: the same integers without the clip give other outputs
    spec.layers[0].cell_clip = 0.0
    spec.layers[0].proj_clip = 0.0
    unclipped = el.Model(spec, q.quant).run(X)
    assert not np.array_equal(unclipped, Y)


def test_float_clipping_matches_reference():
    rng = np.random.default_rng(7)
    spec = _clipped_model(0.5, 0.3, proj_size=5, seed=3)
    X = _walk(rng, 300, 6)[None]
    Y = el.Model(spec).run(X)
    ref, _ = ref_forward_f64(spec, X)
    # float32 kernel vs float64 reference over 300 steps: 1e-5 leaves room for float32 rounding only
    assert np.max(np.abs(Y - ref)) <= 1e-5
    spec.layers[0].cell_clip = 0.0
    spec.layers[0].proj_clip = 0.0
    assert np.max(np.abs(el.Model(spec).run(X) - Y)) > 1e-3


@pytest.mark.parametrize("bad", [{"cell_clip": -1.0}, {"cell_clip": float("nan")}, {"cell_clip": True},
                                 {"proj_clip": 0.5}])
def test_bad_clip_values_are_refused(bad):
    with pytest.raises(el.ModelError, match="clip"):
        el.random_model([{"kind": "lstm", "hidden_size": 4, **bad}], input_size=3)


def test_clip_survives_save_and_load(tmp_path):
    spec = _clipped_model(0.5, 0.3, proj_size=5)
    m = el.Model(spec)
    el.save(m, tmp_path / "m.elstm")
    back = el.load(tmp_path / "m.elstm")
    assert back.spec.layers[0].cell_clip == 0.5 and back.spec.layers[0].proj_clip == pytest.approx(0.3)
    X = _walk(np.random.default_rng(0), 50, 6)
    np.testing.assert_array_equal(back.run(X), m.run(X))
