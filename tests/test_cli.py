"""The ``edgelstm`` command line, in-process (``main([...])``) and once through ``python -m edgelstm``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
from edgelstm.cli import main
from edgelstm.data import DEMO_FEATURES, DEMO_MODEL

F, O = 5, 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small float GRU tagger on disk, calibration frames, and an int8 copy made through the CLI."""
    d = tmp_path_factory.mktemp("cli")
    spec = el.random_model([{"kind": "gru", "hidden_size": 8},
                            {"kind": "dense", "output_size": O, "activation": "sigmoid"}], input_size=F, seed=3)
    path = d / "tiny.elstm"
    el.save(el.Model(spec), path)
    calib = d / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((4, 30, F)).astype(np.float32))
    return {"dir": d, "model": path, "calib": calib}


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_clean_error(rc, out, err, *needles):
    assert rc == 2
    assert err.startswith("edgelstm: error: "), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)


# ------------------------------------------------------------------------------------------ info

def test_info_text(capsys, tiny):
    rc, out, err = _run(capsys, "info", tiny["model"])
    assert rc == 0, err
    assert "float32" in out and "gru" in out and "dense" in out and "parameters" in out
    assert "quantization  none" in out


def test_info_json(capsys, tiny):
    rc, out, _ = _run(capsys, "info", tiny["model"], "--json")
    assert rc == 0
    info = json.loads(out)
    m = el.load(tiny["model"])
    assert info["dtype"] == "float32" and info["quantization"] is None
    assert info["input_size"] == F and info["output_size"] == O
    assert info["parameters"] == m.describe()["parameters"]
    assert info["file_bytes"] == os.path.getsize(tiny["model"])
    assert [d["kind"] for d in info["layers"]] == ["gru", "dense"]


def test_info_bundled_int8(capsys):
    rc, out, _ = _run(capsys, "info", DEMO_MODEL, "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["dtype"] == "int8" and info["streamable"]
    q = info["quantization"]
    assert len(q["act"]) == 3 and q["act"][-1] == [1 / 256, -128]  # sigmoid output quantization
    assert q["layers"][0]["directions"][0]["int8_weight_bytes"] == 3 * 64 * (40 + 64)


# ------------------------------------------------------------------------------------------ quantize

def test_quantize_text_and_json(capsys, tiny):
    out_path = tiny["dir"] / "tiny_int8.elstm"
    rc, out, err = _run(capsys, "quantize", tiny["model"], "--calibration", tiny["calib"], "-o", out_path)
    assert rc == 0, err
    assert "cosine" in out and "agreement" in out and str(out_path) in out
    q = el.load(out_path)
    assert q.is_quantized and q.input_size == F

    out2 = tiny["dir"] / "tiny_int8_b.elstm"
    rc, out, err = _run(capsys, "quantize", tiny["model"], "--calibration", tiny["calib"], "-o", out2,
                        "--json", "--no-progress")
    assert rc == 0, err
    rep = json.loads(out)
    assert set(rep["fidelity"]) >= {"cosine", "max_abs_error", "decision_agreement", "frames", "layers"}
    assert rep["fidelity"]["frames"] == 4 * 30 and rep["calibration_shape"] == [4, 30, F]
    assert 0.9 < rep["fidelity"]["cosine"] <= 1.0 + 1e-9
    assert rep["output_bytes"] == os.path.getsize(out2)
    # the same calibration gives the same int8 model
    X = np.load(tiny["calib"])[0]
    np.testing.assert_array_equal(el.load(out2).run(X), q.run(X))


def test_quantize_progress_bar(capsys, tiny, monkeypatch):
    """On a terminal the calibration progress bar goes to stderr (stdout stays clean)."""
    import edgelstm._progress as progress
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    rc, out, err = _run(capsys, "quantize", tiny["model"], "--calibration", tiny["calib"],
                        "-o", tiny["dir"] / "bar.elstm", "--json")
    assert rc == 0
    json.loads(out)
    assert "calibrating" in err and "100%" in err


def test_quantize_already_int8(capsys, tiny):
    rc, out, err = _run(capsys, "quantize", DEMO_MODEL, "--calibration", DEMO_FEATURES,
                        "-o", tiny["dir"] / "x.elstm")
    _assert_clean_error(rc, out, err, "already quantized")


# ------------------------------------------------------------------------------------------ run

@pytest.mark.parametrize("shape", [(2, 20, F), (20, F)])
def test_run_batch_equals_model_run(capsys, tiny, shape):
    X = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    xin, yout = tiny["dir"] / "x.npy", tiny["dir"] / "y.npy"
    np.save(xin, X)
    rc, out, err = _run(capsys, "run", tiny["model"], "--input", xin, "--output", yout)
    assert rc == 0, err
    assert "batch" in out and str(shape[:-1] + (O,)) in out
    np.testing.assert_array_equal(np.load(yout), el.load(tiny["model"]).run(X))


@pytest.mark.parametrize("which", ["float", "int8"])
def test_run_stream_equals_model_run(capsys, tiny, which):
    model = tiny["model"] if which == "float" else DEMO_MODEL
    n_in = F if which == "float" else 40
    X = np.random.default_rng(2).standard_normal((40, n_in)).astype(np.float32)
    xin, yout = tiny["dir"] / f"xs_{which}.npy", tiny["dir"] / f"ys_{which}.npy"
    np.save(xin, X)
    rc, out, err = _run(capsys, "run", model, "--input", xin, "--output", yout, "--stream", "--json")
    assert rc == 0, err
    res = json.loads(out)
    assert res["mode"] == "stream" and res["output_shape"] == [40, O if which == "float" else 4]
    assert res["step_latency_us"]["median"] > 0 and res["frames"] == 40
    np.testing.assert_array_equal(np.load(yout), el.load(model).run(X))


def test_run_stream_rejects_batch(capsys, tiny):
    xin = tiny["dir"] / "xb.npy"
    np.save(xin, np.zeros((2, 5, F), np.float32))
    rc, out, err = _run(capsys, "run", tiny["model"], "--input", xin, "--output", tiny["dir"] / "o.npy",
                        "--stream")
    _assert_clean_error(rc, out, err, "(T, F)")


# ------------------------------------------------------------------------------------------ demo

def test_demo_json(capsys):
    rc, out, err = _run(capsys, "demo", "--json")
    assert rc == 0, err
    d = json.loads(out)
    for key in ("model", "dtype", "frames", "latency_us", "compile_s", "warmup_s", "load_s", "timeline",
                "blocks", "tag_on_fraction", "ground_truth_agreement"):
        assert key in d, key
    assert d["dtype"] == "int8" and d["frames"] == 1000 and d["tags"] == 4
    lat = d["latency_us"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert d["compile_s"] > 0 and d["warmup_s"] >= d["compile_s"]
    assert len(d["timeline"]) == 4 and all(len(t) == 50 for t in d["timeline"])
    assert len(d["blocks"]) == 10 and d["blocks"][1]["frames"] == [100, 200]
    assert d["ground_truth_agreement"] >= 0.97  # the bundled tagger really tags the demo sequence
    assert all(0.05 < f < 0.5 for f in d["tag_on_fraction"])


def test_demo_text(capsys):
    rc, out, err = _run(capsys, "demo")
    assert rc == 0, err
    assert "tag 3" in out and "truth" in out and "median" in out and "p99" in out
    assert "JIT compile" in out


def test_demo_other_model(capsys):
    rc, out, err = _run(capsys, "demo", "--model", DEMO_MODEL.parent / "tagger_lstm.elstm", "--json")
    assert rc == 0, err
    assert json.loads(out)["dtype"] == "float32"


# ------------------------------------------------------------------------------------------ errors

def test_error_missing_model(capsys, tmp_path):
    rc, out, err = _run(capsys, "info", tmp_path / "nope.elstm")
    _assert_clean_error(rc, out, err, "nope.elstm")
    rc, out, err = _run(capsys, "demo", "--model", tmp_path / "nope.elstm")
    _assert_clean_error(rc, out, err, "nope.elstm")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_error_corrupt_model(capsys, tiny, tmp_path, damage):
    data = Path(tiny["model"]).read_bytes()
    bad = tmp_path / "bad.elstm"
    if damage == "truncate":
        bad.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        bad.write_bytes(b"")
    for argv in (["info", bad], ["run", bad, "--input", tiny["calib"], "--output", tmp_path / "y.npy"]):
        rc, out, err = _run(capsys, *argv)
        _assert_clean_error(rc, out, err, "bad.elstm")


def test_error_wrong_feature_count(capsys, tiny, tmp_path):
    xin = tmp_path / "x6.npy"
    np.save(xin, np.zeros((10, F + 1), np.float32))
    for extra in ([], ["--stream"]):
        rc, out, err = _run(capsys, "run", tiny["model"], "--input", xin, "--output", tmp_path / "y.npy", *extra)
        _assert_clean_error(rc, out, err, f"{F} features")
    rc, out, err = _run(capsys, "quantize", tiny["model"], "--calibration", xin, "-o", tmp_path / "q.elstm")
    _assert_clean_error(rc, out, err, f"{F} features")
    assert not (tmp_path / "q.elstm").exists()


def test_error_bad_npy(capsys, tiny, tmp_path):
    text = tmp_path / "notes.npy"
    text.write_text("not an array\n")
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=np.zeros((3, F), np.float32))
    cases = [(tmp_path / "missing.npy", "no such file"), (text, "not a readable .npy"), (npz, ".npz"),
             (tmp_path, "directory")]
    for path, needle in cases:
        rc, out, err = _run(capsys, "run", tiny["model"], "--input", path, "--output", tmp_path / "y.npy")
        _assert_clean_error(rc, out, err, needle)
        rc, out, err = _run(capsys, "quantize", tiny["model"], "--calibration", path, "-o", tmp_path / "q.elstm")
        _assert_clean_error(rc, out, err, needle)


def test_error_bad_output_path(capsys, tiny, tmp_path):
    xin = tmp_path / "x.npy"
    np.save(xin, np.zeros((4, F), np.float32))
    rc, out, err = _run(capsys, "run", tiny["model"], "--input", xin, "--output", tmp_path / "no" / "y.npy")
    _assert_clean_error(rc, out, err, "y.npy")
    rc, out, err = _run(capsys, "quantize", tiny["model"], "--calibration", tiny["calib"],
                        "-o", tmp_path / "no" / "q.elstm")
    _assert_clean_error(rc, out, err)


def test_error_usage(capsys):
    rc, out, err = _run(capsys, "frobnicate")
    assert rc == 2 and "edgelstm: error:" in err and "Traceback" not in err
    rc, out, err = _run(capsys, "run", "model.elstm")  # missing --input/--output
    assert rc == 2 and "required" in err
    rc, out, err = _run(capsys)
    assert rc == 2 and "demo" in out
    rc, out, err = _run(capsys, "--version")
    assert rc == 0 and el.__version__ in out


# ------------------------------------------------------------------------------------------ for real

def test_python_m_edgelstm_subprocess(tmp_path):
    cmd = [sys.executable, "-m", "edgelstm"]
    r = subprocess.run(cmd + ["info", str(DEMO_MODEL), "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["dtype"] == "int8"
    r = subprocess.run(cmd + ["info", str(tmp_path / "missing.elstm")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("edgelstm: error: ") and "Traceback" not in r.stderr


def test_convert_refuses_unknown_format(tiny, capsys):
    src = tiny["dir"] / "model.pb"
    src.write_bytes(b"x")
    _assert_clean_error(*_run(capsys, "convert", src, "-o", tiny["dir"] / "out.elstm"), "unknown model format",
                        ".tflite")


def test_export_refuses_unknown_target(tiny, capsys):
    rc, out, err = _run(capsys, "export", tiny["model"], "--to", "coreml", "-o", tiny["dir"] / "x")
    assert rc == 2 and "edgelstm: error: argument --to: invalid choice: 'coreml'" in err, err
    assert not (tiny["dir"] / "x").exists()


def test_export_c_no_tables(capsys, tmp_path):
    model = Path(el.__file__).parent / "data" / "tagger_gru_int8.elstm"
    rc, out, err = _run(capsys, "export", model, "--to", "c", "--no-tables", "-o", tmp_path / "mcu")
    assert rc == 0, err
    header = (tmp_path / "mcu" / "model_data.h").read_text()
    assert int(header.split("MODEL_BLOB_LEN ")[1].split()[0]) < 65536      # no activation table in flash
    _assert_clean_error(*_run(capsys, "export", model, "--to", "tflite", "--no-tables", "-o", tmp_path / "x"),
                        "--no-tables")
