"""int8 fidelity on the bundled TRAINED taggers (tests/fixtures/make_trained.py): quantize the float GRU and
LSTM with the bundled calibration set, then compare int8 with float32 over long streams.

Run with ``-s`` to see the measured numbers."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
from edgelstm.ir.model import ModelSpec
from edgelstm.quant.params import QuantParams

DATA = Path(el.__file__).resolve().parent / "data"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "make_trained.py"

MIN_COSINE = 0.99
MIN_AGREEMENT = 0.99


def _generator():
    spec = importlib.util.spec_from_file_location("make_trained", FIXTURE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cosine(a, b) -> float:
    """Written out independently of edgelstm.quant.ptq."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


@pytest.fixture(scope="module")
def calibration():
    X = np.load(DATA / "calibration.npy")
    assert X.dtype == np.float32 and X.ndim == 3 and X.shape[-1] == 40
    return X


@pytest.fixture(scope="module")
def sequences():
    """The 1000-frame demo sequence and a longer fresh one from the same generator (unseen seed)."""
    gen = _generator()
    demo = np.load(DATA / "demo_features.npy")
    assert demo.shape == (1000, 40) and demo.dtype == np.float32
    fresh, _ = gen.synth_clip(2000, np.random.default_rng(12345))
    return {"demo": demo, "fresh2000": fresh}


@pytest.fixture(scope="module", params=["gru", "lstm"])
def pair(request, calibration):
    f = el.load(DATA / f"tagger_{request.param}.elstm")
    assert not f.is_quantized and f.input_size == 40 and f.output_size == 4
    q = el.quantize(f, calibration=calibration, progress=False)
    return request.param, f, q


def _measure(f, q, X):
    yf, yq = f.run(X), q.run(X)
    df, dq = yf >= 0.5, yq >= 0.5
    return {"cosine": cosine(yf, yq), "agreement": float(np.mean(df == dq)),
            "max_abs_error": float(np.max(np.abs(yf - yq))), "flips": int(np.sum(df != dq)),
            "decisions": int(df.size), "on_rate": float(df.mean())}


@pytest.mark.parametrize("seq", ["demo", "fresh2000"])
def test_int8_tracks_float(pair, sequences, seq):
    kind, f, q = pair
    m = _measure(f, q, sequences[seq])
    print(f"\n[fidelity] {kind:>4} {seq:>9}: cosine {m['cosine']:.6f}  agreement {100 * m['agreement']:.2f}% "
          f"({m['flips']} of {m['decisions']} frame x tag decisions differ)  max |err| {m['max_abs_error']:.4f}  "
          f"on-rate {m['on_rate']:.3f}")
    assert m["on_rate"] > 0.1  # the sequence really exercises the tags
    assert m["cosine"] >= MIN_COSINE
    assert m["agreement"] >= MIN_AGREEMENT


def test_int8_stream_equals_int8_run(pair, sequences):
    """What the demo shows (frame-by-frame) is exactly what run() measures above."""
    _, _, q = pair
    X = sequences["demo"]
    s = q.stream()
    Y = np.stack([s.step(x).copy() for x in X])
    np.testing.assert_array_equal(Y, q.run(X))


def test_fidelity_report_is_consistent(pair, calibration):
    """The report attached by quantize() matches an independent recomputation on the calibration set."""
    kind, f, q = pair
    rep = q.fidelity
    d = rep.to_dict()
    print(f"\n[report] {kind}:\n{rep}")
    assert d["frames"] == calibration.shape[0] * calibration.shape[1]
    assert d["decision_rule"] == "threshold 0.5"
    assert [l["kind"] for l in d["layers"]] == [kind, "dense"]

    yf, yq = f.run(calibration), q.run(calibration)
    assert d["cosine"] == pytest.approx(cosine(yf, yq), abs=1e-9)
    assert d["max_abs_error"] == pytest.approx(float(np.abs(yf - yq).max()), abs=1e-7)
    assert d["decision_agreement"] == pytest.approx(float(np.mean((yf >= 0.5) == (yq >= 0.5))), abs=1e-12)
    assert d["layers"][-1]["cosine"] == d["cosine"]

    # the recurrent layer's own entry: run float and int8 truncated after layer 0
    sub = ModelSpec(layers=f.spec.layers[:1])
    hf = el.Model(sub).run(calibration)
    hq = el.Model(sub, QuantParams(act=q.quant.act[:2], layers=q.quant.layers[:1])).run(calibration)
    assert d["layers"][0]["cosine"] == pytest.approx(cosine(hf, hq), abs=1e-9)
    assert d["layers"][0]["max_abs_error"] == pytest.approx(float(np.abs(hf - hq).max()), abs=1e-7)
    assert d["cosine"] >= MIN_COSINE and d["decision_agreement"] >= MIN_AGREEMENT
    assert str(rep).count("\n") >= 3 and f"{d['cosine']:.5f}" in str(rep)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_bundled_int8_taggers(sequences, kind):
    """The shipped int8 artifacts (the GRU is what ``edgelstm demo`` runs) meet the same bar against their
    float sources."""
    f = el.load(DATA / f"tagger_{kind}.elstm")
    q = el.load(DATA / f"tagger_{kind}_int8.elstm")
    assert q.is_quantized and q.spec.describe() == f.spec.describe()
    for name, X in sequences.items():
        m = _measure(f, q, X)
        print(f"\n[bundled int8 {kind}] {name:>9}: cosine {m['cosine']:.6f} agreement {100 * m['agreement']:.2f}%")
        assert m["cosine"] >= MIN_COSINE and m["agreement"] >= MIN_AGREEMENT


def test_taggers_are_trained():
    """The float taggers really solve the synthetic task on the demo sequence (ground truth bundled)."""
    X, Y = np.load(DATA / "demo_features.npy"), np.load(DATA / "demo_labels.npy").astype(bool)
    for kind in ("gru", "lstm"):
        acc = float(np.mean((el.load(DATA / f"tagger_{kind}.elstm").run(X) >= 0.5) == Y))
        print(f"\n[trained] {kind} demo accuracy {100 * acc:.2f}%")
        assert acc >= 0.97


def test_bundled_files_small():
    for name in ("tagger_gru.elstm", "tagger_lstm.elstm", "tagger_gru_int8.elstm", "tagger_lstm_int8.elstm",
                 "demo_features.npy",
                 "calibration.npy", "demo_labels.npy"):
        assert (DATA / name).stat().st_size < 200 * 1024, name
