"""`edgelstm bench`: the numbers it derives (MACs, peak, ratios), its report files, and its errors.

The quick sweep itself runs LiteRT, onnxruntime and PyTorch beside our runtime (~1 min with compiles), so it is
in the slow suite; the arithmetic and the error paths are fast.
"""
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
from edgelstm import benchmark
from edgelstm.benchmark import runner
from edgelstm.cli import main

DATA = Path(el.__file__).parent / "data"


def test_macs_per_step_counts_every_weight_matrix_once_per_direction():
    spec = el.random_model([{"kind": "lstm", "hidden_size": 16, "proj_size": 8, "peephole": True},
                            {"kind": "gru", "hidden_size": 12, "bidirectional": True},
                            {"kind": "dense", "output_size": 5}], input_size=10)
    lstm = 4 * 16 * 10 + 4 * 16 * 8 + 8 * 16          # w_x, w_h (recurrent width = proj), w_proj; no peepholes
    gru = 2 * (3 * 12 * 8 + 3 * 12 * 12)               # both directions
    dense = 5 * 24
    assert benchmark.macs_per_step(spec) == lstm + gru + dense


def test_int8_peak_is_lanes_times_issue_rate_times_clock(monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert benchmark.int8_peak({"flags": {"avx2"}, "mhz": 2000.0})["gmacs"] == pytest.approx(64.0)
    assert benchmark.int8_peak({"flags": {"sse2"}, "mhz": 2000.0})["gmacs"] == pytest.approx(16.0)
    assert benchmark.int8_peak({"flags": {"avx2"}, "mhz": None})["gmacs"] is None
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert benchmark.int8_peak({"flags": {"asimd"}, "mhz": 1800.0})["gmacs"] == pytest.approx(14.4)


def test_ratios_compare_steps_with_steps_and_sequences_with_step_many():
    rows = [{"model": "m", "runtime": "edgelstm int8", "api": "step", "steps_per_call": 1, "median_us": 2.0},
            {"model": "m", "runtime": "edgelstm int8", "api": "step_many", "steps_per_call": 100, "median_us": 1.0},
            {"model": "m", "runtime": "LiteRT int8", "api": "full step (state in/out)", "steps_per_call": 1,
             "median_us": 10.0},
            {"model": "m", "runtime": "LiteRT int8", "api": "sequence", "steps_per_call": 100, "median_us": 3.0},
            {"model": "m", "runtime": "onnxruntime f32", "api": "sequence", "steps_per_call": 100,
             "median_us": 3.0}]
    runner._ratios(rows)
    assert [r["x_vs_edgelstm"] for r in rows] == [1.0, 1.0, 5.0, 3.0, None]   # no f32 row of ours: no ratio
    h = benchmark.headline(rows)["m"]
    assert h["litert_int8_full_step / our int8 step"] == 5.0
    assert h["litert_int8_full_step / our int8 step_many"] == 10.0
    assert h["litert_int8_sequence / our int8 step_many"] == 3.0


@pytest.mark.parametrize("argv, message", [
    (["bench", "no/such/model.elstm"], "model file not found"),
    (["bench", "--peers", "litert,tensorrt"], "unknown peer"),
    (["bench", "--hidden-sizes", "64,big"], "comma-separated integers"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _refuse_to_measure(*_a, **_k):
    raise AssertionError("measured before the arguments and the output folder were checked")


@pytest.mark.parametrize("argv, message", [
    (["--hidden-sizes", "0"], "hidden sizes must be whole numbers from 1"),
    (["--hidden-sizes", "64,64"], "names a size twice"),
    (["--input-sizes", "-3"], "input sizes must be whole numbers from 1"),
    (["--hidden-sizes", "100000"], "from 1 to 4096"),
    (["--kinds", "lstm,transformer"], "kind must be one of lstm, gru, rnn, frontend"),
    (["--peak-gmacs", "-5"], "int8 peak must be a positive number"),
    ([str(DATA / "tagger_lstm_int8.elstm"), "--hidden-sizes", "32"], "do not apply to a model file"),
])
def test_bad_sweep_arguments_are_refused_before_any_work(argv, message, capsys, tmp_path, monkeypatch):
    """`edgelstm bench --quick --hidden-sizes 0` used to end in torch's ValueError traceback after building
    models; every argument is now checked first, with one line and status 2, and nothing is created."""
    monkeypatch.setattr(benchmark, "run_bench", _refuse_to_measure)
    out = tmp_path / "out"
    assert main(["bench", "--quick", "--no-progress", "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgelstm: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_run_bench_checks_its_arguments_before_building_models():
    with pytest.raises(el.errors.InputError, match="hidden sizes must be whole numbers"):
        benchmark.run_bench(sweep=True, quick=True, hidden_sizes=(0,), peers=())


@pytest.mark.parametrize("layout, message", [
    ("file", "is an existing file"),
    ("under_a_file", "cannot create the output folder"),
    ("report_name_is_a_folder", "bench.json: it is a folder"),
])
def test_an_unusable_output_folder_is_refused_before_measuring(layout, message, capsys, tmp_path, monkeypatch):
    """`edgelstm bench M --out EXISTING_FILE` used to measure for minutes, then fail and lose the results."""
    monkeypatch.setattr(benchmark, "run_bench", _refuse_to_measure)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    out = {"file": a_file, "under_a_file": a_file / "out", "report_name_is_a_folder": tmp_path / "out"}[layout]
    (tmp_path / "out" / "bench.json").mkdir(parents=True)
    assert main(["bench", "--quick", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgelstm: error: ") and message in err, err
    assert a_file.read_text() == "keep me"


def _result(hidden_sizes=(64,)):
    """A result as run_bench returns it (made up numbers): two models' worth of rows, no measuring."""
    rows, samples = [], {}
    spec = [("edgelstm int8", "step", 1, 2.4), ("edgelstm int8", "step_many", 200, 1.2),
            ("edgelstm int8", "streams(N=16)", 16, 1.0), ("LiteRT int8", "full step (state in/out)", 1, 22.0),
            ("LiteRT int8", "sequence", 200, 19.0), ("edgelstm f32", "step", 1, 3.0),
            ("edgelstm f32", "step_many", 200, 1.9), ("onnxruntime f32", "full step (state in/out)", 1, 15.0),
            ("PyTorch f32", "cell step (state in/out)", 1, 31.0), ("PyTorch f32", "sequence", 200, 1.6)]
    for H in hidden_sizes:
        for runtime, api, steps, us in spec:
            us *= H / 64
            rows.append({"model": f"lstm I=40 H={H}", "kind": "lstm", "input_size": 40, "hidden_size": H,
                         "runtime": runtime, "api": api, "steps_per_call": steps, "median_us": us,
                         "p99_us": 2 * us, "n": 100, "gmacs": 1.0, "agrees": True if "edgelstm" not in runtime
                         else None})
            if steps == 1:
                samples[(rows[-1]["model"], runtime, api)] = np.linspace(us, 3 * us, 100) * 1e3
    runner._ratios(rows)
    return {"machine": {"cpu": "test", "cores": 2, "python": "3", "load_average": [0.1]},
            "int8_peak": {"gmacs": None, "derivation": "test"}, "budget": {}, "rows": rows,
            "headline": runner.headline(rows), "skipped": [], "_samples": samples}


def test_every_report_file_is_written_atomically(tmp_path, monkeypatch):
    """Each file is complete in a temp file of the same folder before os.replace gives it its name, so a
    crash leaves the old report or the new one, never a torn file."""
    pytest.importorskip("matplotlib")
    replaced = []
    real_replace = os.replace

    def recording_replace(src, dst, *a, **k):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst, *a, **k)
    monkeypatch.setattr(os, "replace", recording_replace)
    written = benchmark.write_report(_result(), tmp_path)
    files = [Path(written["json"]), Path(written["markdown"]), *map(Path, written["plots"])]
    assert {dst for _, dst in replaced} == set(files) and len(files) == 4
    assert all(src.parent == dst.parent == tmp_path and src != dst for src, dst in replaced)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)   # no temp left


def test_charts_answer_one_question_each_and_the_table_has_a_legend(tmp_path):
    """One hidden size: the per-model bars, no latency-vs-H curve (it used to stack ~20 markers in one
    column); two sizes: the curve too.  bench.md explains every column it prints."""
    pytest.importorskip("matplotlib")
    one = benchmark.write_report(_result((64,)), tmp_path / "one")
    assert [Path(p).name for p in one["plots"]] == ["latency_per_model.png", "latency_distribution.png"]
    two = benchmark.write_report(_result((64, 256)), tmp_path / "two")
    assert [Path(p).name for p in two["plots"]] == ["latency_per_model.png", "latency_vs_hidden.png",
                                                    "latency_distribution.png"]
    md = Path(one["markdown"]).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| runtime | API |"))
    legend = {line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")}
    for column in ("runtime", "API", "GMAC/s", "% int8 peak", "× edgelstm", "agrees"):
        assert f"| {column} |" in header and column in legend, column
    assert "median, p99 µs/step" in legend


@pytest.mark.slow
def test_quick_sweep_measures_every_peer_and_writes_the_report(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["runtime"], r["api"].split(" ")[0]): r for r in result["rows"]}
    for key in [("edgelstm int8", "step"), ("edgelstm int8", "step_many"), ("edgelstm int8", "run"),
                ("edgelstm f32", "step"), ("LiteRT int8", "full"), ("LiteRT int8", "sequence"),
                ("LiteRT f32", "full"), ("onnxruntime f32", "full"), ("PyTorch f32", "cell"),
                ("PyTorch dyn-int8", "module")]:
        assert key in rows, key
    # Peers computed the same thing before they were timed: LiteRT int8 bit for bit, float peers within 1e-4.
    for key in [("LiteRT int8", "full"), ("LiteRT int8", "sequence"), ("LiteRT f32", "full"),
                ("onnxruntime f32", "full"), ("onnxruntime f32", "sequence"), ("PyTorch f32", "cell")]:
        assert rows[key]["agrees"] is True, key
    macs = 4 * 64 * 40 + 4 * 64 * 64 + 8 * 64
    for r in result["rows"]:
        assert 0 < r["median_us"] <= r["p99_us"]
        assert r["gmacs"] == pytest.approx(macs / (r["median_us"] * 1e3))
        assert f"| {r['runtime']} | {r['api']} | {r['median_us']:.2f} |" in printed
    ours = rows[("edgelstm int8", "step")]["median_us"]
    assert rows[("LiteRT int8", "full")]["x_vs_edgelstm"] == pytest.approx(rows[("LiteRT int8", "full")]["median_us"]
                                                                         / ours)
    assert result["machine"]["cores"] >= 1 and result["budget"]["streams"] == 16
    for png in ("latency_per_model.png", "latency_distribution.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "latency_vs_hidden.png").exists()      # one hidden size: no curve to draw
    assert (tmp_path / "bench.md").read_text().count("| edgelstm int8 |") >= 4


@pytest.mark.slow
def test_model_file_mode_measures_the_file_and_its_float_weights(tmp_path):
    assert main(["bench", str(DATA / "tagger_lstm_int8.elstm"), "--quick", "--peers", "", "--no-plots",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    runtimes = {r["runtime"] for r in result["rows"]}
    model = el.load(DATA / "tagger_lstm_int8.elstm")
    assert runtimes == ({"edgelstm int8", "edgelstm f32"} if model.spec.has_weights else {"edgelstm int8"})
    assert all(r["model"] == "tagger_lstm_int8.elstm" for r in result["rows"])
    assert np.isfinite([r["median_us"] for r in result["rows"]]).all()


@pytest.mark.slow
def test_a_users_tflite_step_model_is_timed_beside_ours(tmp_path):
    """The converter-made LSTM step graph of bench/fixtures (x, h, c in; y, h, c out) as a --tflite peer."""
    pytest.importorskip("ai_edge_litert")
    fixture = Path(__file__).resolve().parents[1] / "bench" / "fixtures" / "lstm_tagger_step_int8.tflite"
    assert main(["bench", "--quick", "--peers", "", "--tflite", str(fixture), "--no-plots", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    mine = [r for r in rows if r["runtime"] == "LiteRT int8 (lstm_tagger_step_int8.tflite)"]
    assert len(mine) == 1 and mine[0]["median_us"] > 0 and mine[0]["agrees"] is None
    ours = next(r for r in rows if r["runtime"] == "edgelstm int8" and r["api"] == "step")
    assert mine[0]["x_vs_edgelstm"] == pytest.approx(mine[0]["median_us"] / ours["median_us"])
    # beside a model of other shapes (H=32 against the file's 64-element states) it is skipped, not compared
    out = tmp_path / "h32"
    assert main(["bench", "--quick", "--peers", "", "--hidden-sizes", "32", "--tflite", str(fixture), "--no-plots",
                 "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert not [r for r in result["rows"] if "lstm_tagger_step_int8" in r["runtime"]]
    assert any("state sizes [64]" in s["reason"] and "hidden size 32" in s["reason"] for s in result["skipped"])
    # and beside a GRU of the same sizes (one state, not the LSTM's h and c)
    out = tmp_path / "gru"
    assert main(["bench", "--quick", "--peers", "", "--kinds", "gru", "--tflite", str(fixture), "--no-plots",
                 "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert not [r for r in result["rows"] if "lstm_tagger_step_int8" in r["runtime"]]
    assert any("2 state inputs" in s["reason"] for s in result["skipped"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gru_after_a_int8", "gru_after_a_f32"])
def test_an_imported_op_graph_file_is_measured(name, tmp_path):
    """A converter step graph has no hidden_size and no ONNX form; a float one is not quantized: the bench
    measures what applies and lists the rest as skipped (it used to crash on all three)."""
    path = Path(__file__).parent / "fixtures" / "tflite_cells" / f"{name}.tflite"
    assert main(["bench", str(path), "--quick", "--no-plots", "--out", str(tmp_path), "--no-progress"]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    ours = {r["api"] for r in result["rows"] if r["runtime"].startswith("edgelstm")}
    assert {"step", "step_many", "streams(N=16)", "run"} <= ours
    model = el.export.from_tflite(path)
    assert all(r["gmacs"] == pytest.approx(model.spec.layers[0].n_w / (r["median_us"] * 1e3))
               for r in result["rows"])
    assert any(s["peer"] == "onnxruntime f32" for s in result["skipped"]) == name.endswith("f32")
