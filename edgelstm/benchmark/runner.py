"""``run_bench``: the cases, the engines that apply to each, the timed rows and the ratios between them."""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._progress import Progress
from ..errors import InputError
from .cases import EXTRA_KINDS, SWEEP_HIDDEN_SIZES, SWEEP_INPUT_SIZES, SWEEP_KINDS, Case, file_case, macs_per_step, sweep_cases
from .machine import int8_peak, machine_info
from .peers import Skip, litert_file_rows, litert_rows, onnxruntime_rows, torch_rows
from .timing import median_p99_us, time_calls, time_repeats

PEERS = ("litert", "onnxruntime", "torch")
MAX_SIZE = 4096            # sweep sizes beyond this would take minutes to build, and gigabytes


@dataclass(frozen=True)
class Budget:
    calls: int      # individually timed calls per step-like row
    repeats: int    # timed calls per sequence row
    T: int          # frames per sequence call
    streams: int    # N for the N-stream and batched rows


FULL = Budget(calls=20000, repeats=7, T=1000, streams=16)
QUICK = Budget(calls=1500, repeats=3, T=200, streams=16)


def edgelstm_rows(model, frames, budget: Budget, dtype: str):
    """edgelstm rows for one model form."""
    T, F = frames.shape
    N = budget.streams
    rt = f"edgelstm {dtype}"
    s = model.stream()
    yield rt, "step", s.step, list(frames[:256]), 1, None
    s2 = model.stream()
    yield rt, "step_many", (lambda: s2.step_many(frames)), None, T, None
    rng = np.random.default_rng(1)
    Xn = np.ascontiguousarray(frames[rng.integers(0, T, (256, N))])         # (256, N, F): N streams' frames
    streams = model.streams(N)
    yield rt, f"streams(N={N})", streams.step, list(Xn), N, None
    yield rt, "run", (lambda: model.run(frames)), None, T, None
    batch = np.ascontiguousarray(np.stack([np.roll(frames, k, axis=0) for k in range(N)]))
    yield rt, f"run_batch(B={N})", (lambda: model.run(batch)), None, T * N, None


def _engines(case: Case, budget: Budget, tmp: Path, tflite_files=()):
    """(peer key as in ``PEERS``, label, generator of rows) for every engine that applies to this case."""
    if case.int8_model is not None:
        yield "edgelstm", "edgelstm int8", edgelstm_rows(case.int8_model, case.frames, budget, "int8")
        yield "litert", "LiteRT int8", litert_rows(case.int8_model, case.frames, "int8", tmp)
    if case.float_model is not None:
        yield "edgelstm", "edgelstm f32", edgelstm_rows(case.float_model, case.frames, budget, "f32")
        yield "litert", "LiteRT f32", litert_rows(case.float_model, case.frames, "f32", tmp)
        yield "onnxruntime", "onnxruntime f32", onnxruntime_rows(case.float_model, case.frames, tmp)
    yield "torch", "PyTorch", torch_rows(case)
    for path in tflite_files:
        n_states = 2 if case.kind.split("+")[0] == "lstm" else 1      # LSTM h, c; GRU / RNN h
        yield "file", f"LiteRT ({path.name})", litert_file_rows(path, case.frames, case.hidden_size, n_states)


def _measure(fn, inputs, per_call_steps: int, budget: Budget):
    if inputs is None:
        fn()  # warm-up (compiles on first use)
        ns = time_repeats(fn, budget.repeats)
    else:
        time_calls(fn, inputs, min(500, budget.calls))
        ns = time_calls(fn, inputs, budget.calls)
    return ns / per_call_steps


def _row(case: Case, runtime: str, api: str, per_step_ns: np.ndarray, steps: int, agrees, peak) -> dict:
    macs = macs_per_step((case.int8_model or case.float_model).spec)
    med, p99 = median_p99_us(per_step_ns)
    row = {"model": case.name, "kind": case.kind, "input_size": case.input_size, "hidden_size": case.hidden_size,
           "runtime": runtime, "api": api, "steps_per_call": steps, "median_us": med,
           "p99_us": p99, "n": int(per_step_ns.size),
           "gmacs": macs / (med * 1e3), "agrees": agrees}
    if peak and "int8" in runtime:
        row["peak_fraction"] = row["gmacs"] / peak
    return row


_REF_FOR = {"int8": "edgelstm int8", "f32": "edgelstm f32"}


def _ratios(rows: list[dict]) -> None:
    """Each row's ``x_vs_edgelstm``: its median over edgelstm's matching row on the same model and dtype (step
    against ``step``, sequence against ``step_many``); above 1 means edgelstm is faster."""
    ours = {(r["model"], r["runtime"], r["api"]): r["median_us"] for r in rows if r["runtime"].startswith("edgelstm")}
    for r in rows:
        dtype = "int8" if "int8" in r["runtime"] else "f32"
        ref_api = "step_many" if r["steps_per_call"] > 1 and not r["api"].startswith("streams") else "step"
        ref = ours.get((r["model"], _REF_FOR[dtype], ref_api))
        r["x_vs_edgelstm"] = r["median_us"] / ref if ref else None


def headline(rows: list[dict]) -> dict:
    """The issue's target ratios, per model, where both sides were measured."""
    out = {}
    by = {(r["model"], r["runtime"], r["api"].split(" ")[0]): r["median_us"] for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        g = lambda rt, api: by.get((model, rt, api))  # noqa: E731
        lr_step = g("LiteRT int8", "full")
        h = {}
        if lr_step and g("edgelstm int8", "step"):
            h["litert_int8_full_step / our int8 step"] = lr_step / g("edgelstm int8", "step")
        if lr_step and g("edgelstm int8", "step_many"):
            h["litert_int8_full_step / our int8 step_many"] = lr_step / g("edgelstm int8", "step_many")
        for dt in ("int8", "f32"):
            if g(f"LiteRT {dt}", "sequence") and g(f"edgelstm {dt}", "step_many"):
                h[f"litert_{dt}_sequence / our {dt} step_many"] = \
                    g(f"LiteRT {dt}", "sequence") / g(f"edgelstm {dt}", "step_many")
        streams = next((r["median_us"] for r in rows if r["model"] == model and r["runtime"] == "edgelstm int8"
                        and r["api"].startswith("streams")), None)
        if streams and g("edgelstm int8", "step"):
            h["our int8 streams per stream / our int8 step"] = streams / g("edgelstm int8", "step")
        out[model] = h
    return out


def _sizes(what: str, values) -> tuple:
    """A sweep's sizes, checked: whole numbers in 1..MAX_SIZE, none twice."""
    values = tuple(values)
    if not values:
        raise InputError(f"bench: {what}: give at least one size")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= MAX_SIZE:
            raise InputError(f"bench: {what} must be whole numbers from 1 to {MAX_SIZE}, got {v!r}")
    if len(set(values)) != len(values):
        raise InputError(f"bench: {what}: {sorted(values)} names a size twice")
    return values


def check_arguments(*, model_path=None, sweep: bool = False, kinds=None, input_sizes=None, hidden_sizes=None,
                    peers=PEERS, tflite=(), peak_gmacs: float | None = None) -> None:
    """Every argument of ``run_bench`` checked before any work: InputError with a one-line message."""
    if (model_path is None) == (not sweep):
        raise InputError("bench: give a model file or sweep=True (not both)")
    if model_path is not None:
        if (kinds, input_sizes, hidden_sizes) != (None, None, None):
            raise InputError("bench: kinds, input sizes and hidden sizes choose the sweep's models; "
                             "they do not apply to a model file")
        if not Path(model_path).is_file():
            raise InputError(f"bench: model file not found: {model_path}")
    if kinds is not None:
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in SWEEP_KINDS + EXTRA_KINDS]
        if bad or not kinds:
            raise InputError(f"bench: kind must be one of {', '.join(SWEEP_KINDS + EXTRA_KINDS)}, got "
                             f"{bad or 'none'}")
        if len(set(kinds)) != len(kinds):
            raise InputError(f"bench: kinds {list(kinds)} name a kind twice")
    for what, sizes in (("input sizes", input_sizes), ("hidden sizes", hidden_sizes)):
        if sizes is not None:
            _sizes(what, sizes)
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise InputError(f"bench: unknown peer(s) {sorted(unknown)}; choose from {', '.join(PEERS)}")
    for p in tflite:
        if not Path(p).is_file():
            raise InputError(f"bench: .tflite file not found: {p}")
    if peak_gmacs is not None and not (math.isfinite(peak_gmacs) and peak_gmacs > 0):
        raise InputError(f"bench: the int8 peak must be a positive number of GMAC/s, got {peak_gmacs}")


def run_bench(*, model_path=None, sweep: bool = False, quick: bool = False, kinds=None, input_sizes=None,
              hidden_sizes=None, peers=PEERS, tflite=(), peak_gmacs: float | None = None,
              progress: bool | None = None) -> dict:
    """Measure and return the result dict (see the package docstring); ``write_report`` saves it.
    ``tflite``: your own .tflite step models (frame + state in, output + state out) to time beside ours."""
    check_arguments(model_path=model_path, sweep=sweep, kinds=kinds, input_sizes=input_sizes,
                    hidden_sizes=hidden_sizes, peers=peers, tflite=tflite, peak_gmacs=peak_gmacs)
    tflite_files = [Path(p) for p in tflite]
    budget = QUICK if quick else FULL
    if model_path is not None:
        cases = [file_case(model_path, T=budget.T)]
    else:
        if quick:
            kinds, input_sizes, hidden_sizes = (kinds or ("lstm",)), (input_sizes or (40,)), \
                (hidden_sizes or (64,))
        cases = sweep_cases(kinds=kinds or SWEEP_KINDS, input_sizes=input_sizes or SWEEP_INPUT_SIZES,
                            hidden_sizes=hidden_sizes or SWEEP_HIDDEN_SIZES, T=budget.T)
    wanted = {"edgelstm", "file", *peers}   # "file": the --tflite models, always timed when given
    peak = {"gmacs": peak_gmacs, "derivation": "given with --peak-gmacs"} if peak_gmacs else int8_peak()
    rows, skipped, samples = [], [], {}
    with tempfile.TemporaryDirectory(prefix="edgelstm-bench-") as d, \
            Progress(total=len(cases), desc="bench", enabled=progress) as bar:
        for case in cases:
            tmp = Path(d)
            for key, label, gen in _engines(case, budget, tmp, tflite_files):
                if key not in wanted:
                    continue
                try:
                    for runtime, api, fn, inputs, steps, agrees in gen:
                        ns = _measure(fn, inputs, steps, budget)
                        rows.append(_row(case, runtime, api, ns, steps, agrees, peak["gmacs"]))
                        if inputs is not None and steps == 1:
                            samples[(case.name, runtime, api)] = ns
                except Skip as e:
                    skipped.append({"model": case.name, "peer": label, "reason": str(e)})
            bar.advance()
    _ratios(rows)
    return {"machine": machine_info(), "int8_peak": peak, "budget": budget.__dict__, "rows": rows,
            "headline": headline(rows), "skipped": skipped, "_samples": samples}
