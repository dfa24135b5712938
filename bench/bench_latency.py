#!/usr/bin/env python
"""Streaming latency of edgelstm (int8 and float32) side by side with PyTorch and ONNX Runtime.

    python bench/bench_latency.py [--quick] [--json OUT.json] [--plot OUT.png]

One run measures, for LSTM and GRU (I=40, H in 64/128/256, one recurrent layer, state kept between steps):
per-step latency of ``Stream.step`` (int8, f32), per-step cost inside ``Stream.step_many`` over T=1000,
PyTorch (step and one call over T=1000) and ONNX Runtime (step with state fed back), the ratios between
them, a few diagnostics that explain the int8 step time, and a cold start in a fresh subprocess.
See bench/README.md for what every column means.  Results are machine-specific.  The machine record, timers,
peer step wrappers and file writing are edgelstm.benchmark's (shared with ``edgelstm bench``); what is here is
this script's own: its engines' set-up, the kernel diagnostics, the cold start and its report.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from edgelstm import benchmark
from edgelstm.benchmark import (cpu_info, gc_paused, macs_per_step, ort_session, ort_step, save_figure, stats_us,
                                time_calls, time_repeats, timer_overhead_ns, torch_cell, torch_step,
                                torch_zero_state, write_json)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
I = 40
T_SEQ = 1000
GATES = {"lstm": 4, "gru": 3}
# Targets (int8 LSTM, I=40, H=64)
TARGET_STEP_US = 2.0
TARGET_MANY_US = 1.5
TARGET_SPEEDUP = 1.5


# ----------------------------------------------------------------------------------------------- machine
def _git(*args) -> str:
    """Read-only git queries (no index refresh, no lock)."""
    try:
        out = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.rstrip("\n")  # not strip(): porcelain lines start with a status column
    except Exception:  # noqa: BLE001 - informative only
        return ""


def _source_hash() -> str:
    """sha256 over the runtime sources, to tie numbers to the exact code measured (the tree is shared)."""
    h = hashlib.sha256()
    for p in sorted((REPO / "edgelstm").rglob("*.py")) + sorted((REPO / "export").rglob("*.py")):
        h.update(str(p.relative_to(REPO)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def machine_info() -> dict:
    """edgelstm.benchmark's machine record under this script's JSON names, + the exact code measured."""
    m = benchmark.machine_info(modules=("numba", "torch", "onnxruntime", "onnx"))
    vector = [f for f in cpu_info()["flags"] if f.startswith(("avx", "sse4", "fma", "f16c")) or "vnni" in f]
    info = {"cpu_model": m["cpu"], "cpu_flags": vector, "n_cpus": m["cores"], "load_average_start": m["load_average"],
            **{k: m[k] for k in ("platform", "python", "numpy", "numba", "torch", "onnxruntime", "onnx", "edgelstm")}}
    info["git_head"] = _git("rev-parse", "--short", "HEAD")
    info["git_dirty_files"] = [ln[3:] for ln in _git("status", "--porcelain", "--", "edgelstm", "export")
                               .splitlines() if ln.strip()]
    info["source_sha256_16"] = _source_hash()
    return info


# ----------------------------------------------------------------------------------------------- engines
def torch_cell_step(mod, kind, H):
    """nn.LSTMCell / nn.GRUCell with the same weights (informative: the lighter PyTorch per-step API)."""
    cell, state = torch_cell(mod, kind), [torch_zero_state(kind, H)]

    def step(x):
        state[0] = cell(x, state[0])
        return state[0]
    return step


def export_onnx(mod, kind, H) -> tuple[bytes, str]:
    import torch

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, h0, c0=None):
            if c0 is None:
                y, h = self.m(x, h0)
                return y, h
            y, (h, c) = self.m(x, (h0, c0))
            return y, h, c

    w = Wrap(mod).eval()
    args = (torch.zeros(1, 1, I), torch.zeros(1, 1, H))
    names_in, names_out = ["x", "h0"], ["y", "hn"]
    if kind == "lstm":
        args = args + (torch.zeros(1, 1, H),)
        names_in, names_out = names_in + ["c0"], names_out + ["cn"]
    errors = []
    for how in ("default", "legacy"):
        f = io.BytesIO()
        kw = {} if how == "default" else {"dynamo": False}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(w, args, f, opset_version=17, input_names=names_in, output_names=names_out,
                                  **kw)
            return f.getvalue(), how
        except Exception as e:  # noqa: BLE001 - try the legacy exporter next
            errors.append(f"{how}: {type(e).__name__}: {str(e)[:120]}")
    raise RuntimeError("ONNX export failed: " + " | ".join(errors))


def build_config(kind: str, H: int) -> dict:
    """Torch module (seed 0 default init) -> edgelstm f32 + int8, ONNX Runtime session, sanity checks."""
    import torch

    import edgelstm as el
    from edgelstm.export import from_torch

    torch.manual_seed(0)
    mod = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(I, H).eval()
    f32 = from_torch(mod)
    calib = np.random.default_rng(0).standard_normal((4, 200, I)).astype(np.float32)
    q = el.quantize(f32, calibration=calib, progress=False)
    onnx_bytes, exporter = export_onnx(mod, kind, H)
    sess = ort_session(onnx_bytes)      # 1 thread; sequential, all graph optimizations (the defaults)

    # sanity: the four engines compute the same function
    X = np.random.default_rng(7).standard_normal((200, I)).astype(np.float32)
    with torch.inference_mode():
        yt = mod(torch.from_numpy(X[:, None, :]))[0][:, 0].numpy()
    yf = f32.stream().step_many(X)
    yq = q.stream().step_many(X)
    o = ort_step(sess)
    yo = np.stack([np.asarray(o(X[t][None, None]))[0, 0] for t in range(X.shape[0])])
    checks = {"f32_vs_torch_max_abs": float(np.abs(yf - yt).max()),
              "ort_vs_torch_max_abs": float(np.abs(yo - yt).max()),
              "int8_vs_torch_max_abs": float(np.abs(yq - yt).max()),
              "onnx_exporter": exporter}
    try:
        checks["int8_fidelity_cosine"] = float(q.fidelity.cosine)
    except Exception:  # noqa: BLE001
        pass
    return {"mod": mod, "f32": f32, "q": q, "sess": sess, "checks": checks}


def direct_kernel(stream):
    """The jitted call that ``Stream.step`` makes, replayed without the Python wrapper (diagnostic).

    Found generically: every Numba dispatcher held by the stream is wrapped in a recorder, one step is run,
    and the recorded call is replayed with the frame argument substituted.  Returns None if nothing was
    recorded (the runtime's internals changed shape)."""
    try:
        from numba.core.dispatcher import Dispatcher
    except Exception:  # noqa: BLE001
        return None
    x0 = np.zeros(I, np.float32)
    for name, val in list(vars(stream).items()):
        if not isinstance(val, Dispatcher):
            continue
        calls = []

        def rec(*a, _f=val):
            calls.append((_f, a))
            return _f(*a)

        setattr(stream, name, rec)
        try:
            stream.step(x0)
        except Exception:  # noqa: BLE001
            calls = []
        finally:
            setattr(stream, name, val)
        if not calls:
            continue
        f, a = calls[0]
        pos = [i for i, v in enumerate(a) if v is x0]
        if pos == [0]:
            rest = a[1:]
            return lambda x: f(x, *rest)
        if not pos:  # the wrapper copied the frame into its own buffer: replay with that buffer
            return lambda _x: f(*a)
        lst = list(a)
        k = pos[0]

        def call(x):
            lst[k] = x
            return f(*lst)
        return call
    return None


# ----------------------------------------------------------------------------------------------- diagnostics
def dispatch_probe(n: int) -> dict:
    """Cost of calling an empty @njit function from Python (0 args, 5 small array args), ns per call."""
    from numba import njit

    @njit(cache=False)
    def empty0():
        return 0

    @njit(cache=False)
    def empty5(a, b, c, d, e):
        return 0

    arrs = [np.zeros((1, 1, I), np.float32), np.zeros((1, 1, 64), np.float32), np.zeros(8, np.int32),
            np.zeros(8, np.int16), np.zeros(64, np.uint8)]
    empty0()
    empty5(*arrs)

    def py_nop(_x):
        return 0

    res = {}
    for name, fn in (("python_call", py_nop), ("njit_0_args", lambda _x: empty0()),
                     ("njit_5_arrays", lambda _x: empty5(*arrs))):
        time_calls(fn, [None], 2000)
        res[name + "_ns"] = float(np.median(time_calls(fn, [None], n)))
    return res


def matvec_floor(kind: str, H: int) -> dict:
    """Best-case MAC time per step in Numba on this machine: the two gate matvecs of one step (W_x: gates*H x I
    and W_h: gates*H x H; kept apart because the int8 numerics requantize them separately), looped inside
    one jitted call (no dispatch, no epilogue).  int16 row dot (vectorizes to vpmaddwd), float32 row dot
    (fastmath=False keeps a strict serial reduction, so it does not vectorize) and float32 column axpy
    (W transposed: vectorizes across rows with no reassociation)."""
    from numba import njit
    opts = dict(cache=False, boundscheck=False, fastmath=False, error_model="numpy")

    @njit(**opts)
    def rowdot(W, v, out):
        R, C = W.shape
        for r in range(R):
            w = W[r]
            s = out.dtype.type(0)
            for c in range(C):
                s += w[c] * v[c]
            out[r] = s

    @njit(**opts)
    def i16_rowdot(W, v, acc):
        R, C = W.shape
        for r in range(R):
            w = W[r]
            s = np.int32(0)
            for c in range(C):
                s += np.int32(w[c]) * np.int32(v[c])
            acc[r] = s

    @njit(**opts)
    def colaxpy(WT, v, out):
        C, R = WT.shape
        for r in range(R):
            out[r] = 0
        for c in range(C):
            vc = v[c]
            w = WT[c]
            for r in range(R):
                out[r] += w[r] * vc

    @njit(**opts)
    def loop(k, n, Wx, Wh, x, h, out):
        for _ in range(n):
            if k == 0:
                i16_rowdot(Wx, x, out)
                i16_rowdot(Wh, h, out)
            elif k == 1:
                rowdot(Wx, x, out)
                rowdot(Wh, h, out)
            else:
                colaxpy(Wx, x, out)
                colaxpy(Wh, h, out)

    R = GATES[kind] * H
    rng = np.random.default_rng(0)
    Wx = rng.integers(-127, 128, (R, I)).astype(np.int16)
    Wh = rng.integers(-127, 128, (R, H)).astype(np.int16)
    x = rng.integers(-128, 128, I).astype(np.int16)
    h = rng.integers(-128, 128, H).astype(np.int16)
    f = np.float32
    cases = (("int16_rowdot", 0, Wx, Wh, x, h, np.zeros(R, np.int32)),
             ("f32_rowdot", 1, Wx.astype(f), Wh.astype(f), x.astype(f), h.astype(f), np.zeros(R, f)),
             ("f32_colaxpy", 2, np.ascontiguousarray(Wx.T, f), np.ascontiguousarray(Wh.T, f), x.astype(f),
              h.astype(f), np.zeros(R, f)))
    res = {}
    for name, k, *a in cases:
        loop(k, 1, *a)
        n = max(20, 2_000_000 // (R * (I + H)))
        ts = time_repeats(lambda: loop(k, n, *a), 11) / n  # noqa: B023 - called right here
        res[name + "_us"] = float(np.median(ts)) / 1e3
    return res


# ----------------------------------------------------------------------------------------------- cold start
_SCRIPT_PRELUDE = r"""
import json, resource, sys, time
def vmhwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1.0
"""

COLD_SCRIPT = _SCRIPT_PRELUDE + r"""
t0 = time.perf_counter()
import numpy as np
t_np = time.perf_counter()
import edgelstm as el
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
numba_after_import = "numba" in sys.modules
path = sys.argv[1]
if path.endswith(".elstm"):
    m = el.load(path)
else:
    m = el.Model(el.random_model([{"kind": "lstm", "hidden_size": 64}], input_size=40))
s = m.stream()
t2 = time.perf_counter()
x = np.random.default_rng(0).standard_normal(m.input_size).astype(np.float32)
s.step(x)
t3 = time.perf_counter()
s.step(x)
t4 = time.perf_counter()
print(json.dumps({"import_numpy_ms": (t_np - t0) * 1e3, "import_edgelstm_ms": (t1 - t_np) * 1e3,
                  "load_model_ms": (t2 - t1) * 1e3, "first_step_ms": (t3 - t2) * 1e3,
                  "second_step_us": (t4 - t3) * 1e6, "import_to_first_output_ms": (t3 - t0) * 1e3,
                  "rss_after_import_mib": rss_import / 1024,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "vmhwm_mib": vmhwm(), "model": repr(m), "numba_imported_by_import_edgelstm": numba_after_import,
                  "numba_loaded": "numba" in sys.modules}))
"""

BASELINE_SCRIPT = _SCRIPT_PRELUDE + r"""
t0 = time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
t1 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vmhwm_mib": vmhwm()}))
"""


def _run_py(script: str, *args) -> dict:
    # ru_maxrss survives fork+exec on Linux (a direct child would report this big process's peak), so the
    # child runs under /bin/sh, which forks it from a small process; VmHWM (reset at exec) cross-checks it.
    cmd = [sys.executable, "-c", script, *args]
    if os.path.exists("/bin/sh"):
        cmd = ["/bin/sh", "-c", '"$0" "$@"; exit $?', *cmd]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    wall = (time.perf_counter() - t0) * 1e3
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "subprocess failed")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_wall_ms"] = wall
    return res


def cold_start(reps: int) -> dict:
    """Fresh interpreter: import edgelstm + load bundled-or-random model + first step, Numba cache warm."""
    import edgelstm as el

    res: dict = {}
    data = Path(el.__file__).parent / "data"
    bundled = sorted(data.glob("*.elstm"), key=lambda p: ("int8" not in p.name, p.name)) if data.is_dir() else []
    tmp = None
    if bundled:
        path, res["model_source"] = str(bundled[0]), f"bundled {bundled[0].name}"
    else:
        # No bundled model: a random int8 LSTM 40->64 saved as a deployment artifact (the realistic path:
        # load a file, stream).  If saving fails, the subprocess builds a random float model instead.
        try:
            m = el.Model(el.random_model([{"kind": "lstm", "hidden_size": 64}], input_size=I))
            q = el.quantize(m, calibration=np.random.default_rng(0).standard_normal((2, 100, I))
                            .astype(np.float32), progress=False)
            fd, tmp = tempfile.mkstemp(suffix=".elstm")
            os.close(fd)
            el.save(q, tmp)
            path, res["model_source"] = tmp, "random int8 LSTM 40->64 (saved .elstm, loaded with el.load)"
        except Exception as e:  # noqa: BLE001
            path, res["model_source"] = "random", f"random float LSTM 40->64 in-process (save failed: {e})"
    try:
        _run_py(COLD_SCRIPT, path)  # warms Numba's on-disk cache (compiles if cold); not reported
        runs = [_run_py(COLD_SCRIPT, path) for _ in range(reps)]
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        res.update({k: float(np.median([r[k] for r in runs])) for k in keys})
        res["model"] = runs[0]["model"]
        res["numba_loaded"] = runs[0]["numba_loaded"]
        res["numba_imported_by_import_edgelstm"] = runs[0]["numba_imported_by_import_edgelstm"]
        res["reps"] = reps
        base = {"python": [], "python_numpy": ["numpy"], "python_numpy_numba": ["numpy", "numba"]}
        res["baselines"] = {}
        for name, mods in base.items():
            b = [_run_py(BASELINE_SCRIPT, *mods) for _ in range(reps)]
            res["baselines"][name] = {k: float(np.median([r[k] for r in b])) for k in b[0]}
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        if tmp:
            os.unlink(tmp)
    return res


# ----------------------------------------------------------------------------------------------- main bench
def bench_config(kind: str, H: int, *, rounds: int, per_round: int, warmup: int, many_reps: int) -> dict:
    import torch

    cfg = build_config(kind, H)
    mod, f32, q, sess = cfg["mod"], cfg["f32"], cfg["q"], cfg["sess"]
    rng = np.random.default_rng(1)
    frames = [np.ascontiguousarray(f) for f in rng.standard_normal((256, I)).astype(np.float32)]
    t_frames = [torch.from_numpy(f.reshape(1, 1, I).copy()) for f in frames]
    o_frames = [f.reshape(1, 1, I).copy() for f in frames]
    c_frames = [t.reshape(1, I) for t in t_frames]

    s_q, s_f = q.stream(), f32.stream()
    engines = {"int8_step": (s_q.step, frames), "f32_step": (s_f.step, frames),
               # nn.LSTM / nn.GRU, batch 1, seq 1, state fed back (timed inside torch.inference_mode())
               "torch_step": (torch_step(mod, torch_zero_state(kind, H, (1, 1)), no_grad=False), t_frames),
               "ort_step": (ort_step(sess), o_frames), "torch_cell_step": (torch_cell_step(mod, kind, H), c_frames)}
    k_q = direct_kernel(q.stream())
    k_f = direct_kernel(f32.stream())
    if k_q is not None:
        engines["int8_kernel_direct"] = (k_q, frames)
    if k_f is not None:
        engines["f32_kernel_direct"] = (k_f, frames)

    samples = {name: [] for name in engines}
    load_before = os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter_ns(), time.process_time_ns()
    round_medians = {name: [] for name in engines}
    names = list(engines)
    with torch.inference_mode():
        for name in names:
            fn, inp = engines[name]
            time_calls(fn, inp, warmup)
        for r in range(rounds):  # interleaved rounds: load drift hits every engine alike
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                fn, inp = engines[name]
                with gc_paused():
                    ns = time_calls(fn, inp, per_round)
                samples[name].append(ns)
                round_medians[name].append(float(np.median(ns)) / 1e3)

        # whole sequences: T = 1000 in one call, per step
        X = rng.standard_normal((T_SEQ, I)).astype(np.float32)
        Xt = torch.from_numpy(X[:, None, :].copy())
        z = torch.zeros(1, 1, H)
        st0 = (z, z.clone()) if kind == "lstm" else z
        s_qm, s_fm = q.stream(), f32.stream()
        many = {"int8_step_many": lambda: s_qm.step_many(X), "f32_step_many": lambda: s_fm.step_many(X),
                "torch_seq": lambda: mod(Xt, st0)}
        many_ns = {k: [] for k in many}
        for fn in many.values():
            for _ in range(3):
                fn()
        for r in range(many_reps):
            for name, fn in many.items():
                with gc_paused():
                    many_ns[name].append(time_repeats(fn, 1)[0] / T_SEQ)

    cpu_share = (time.process_time_ns() - cpu0) / max(1, time.perf_counter_ns() - wall0)
    res = {"kind": kind, "I": I, "H": H, "load_avg_1min": [load_before, os.getloadavg()[0]],
           "cpu_share_while_timing": cpu_share, "macs_per_step": macs_per_step(f32.spec), "checks": cfg["checks"],
           "per_call": {}, "per_step_in_sequence": {}, "round_medians_us": round_medians}
    for name, chunks in samples.items():
        res["per_call"][name] = stats_us(np.concatenate(chunks))
    for name, v in many_ns.items():
        st = stats_us(np.asarray(v))
        st["reps"] = st.pop("n")
        res["per_step_in_sequence"][name] = {**st, "T": T_SEQ}
    pc, ps = res["per_call"], res["per_step_in_sequence"]
    macs = res["macs_per_step"]
    i8, f = pc["int8_step"]["median_us"], pc["f32_step"]["median_us"]
    i8m, fm = ps["int8_step_many"]["median_us"], ps["f32_step_many"]["median_us"]
    res["gmacs"] = {"int8_step": macs / i8 / 1e3, "f32_step": macs / f / 1e3,
                    "int8_step_many": macs / i8m / 1e3, "f32_step_many": macs / fm / 1e3}
    res["ratios"] = {"f32_over_int8_step": f / i8, "f32_over_int8_step_many": fm / i8m,
                     "torch_over_int8_step": pc["torch_step"]["median_us"] / i8,
                     "ort_over_int8_step": pc["ort_step"]["median_us"] / i8,
                     "torch_seq_over_int8_step_many": ps["torch_seq"]["median_us"] / i8m}
    rm = round_medians
    res["ratios_paired_rounds"] = {
        k: float(np.median(np.asarray(rm[a]) / np.asarray(rm["int8_step"])))
        for k, a in (("f32_over_int8_step", "f32_step"), ("torch_over_int8_step", "torch_step"),
                     ("ort_over_int8_step", "ort_step"))}
    # rounds whose median is > 20 % above the best round of the same engine (a load burst on the host)
    res["slow_rounds"] = {k: int(np.sum(np.asarray(v) > 1.2 * min(v))) for k, v in rm.items()}
    if "int8_kernel_direct" in pc:
        res["int8_python_wrapper_us"] = i8 - pc["int8_kernel_direct"]["median_us"]
    if "f32_kernel_direct" in pc:
        res["f32_python_wrapper_us"] = f - pc["f32_kernel_direct"]["median_us"]
    return res


def targets(results: list[dict]) -> list[dict]:
    r = next((x for x in results if x["kind"] == "lstm" and x["H"] == 64), None)
    if r is None:
        return []
    pc, ps, ra = r["per_call"], r["per_step_in_sequence"], r["ratios"]
    rows = [("int8 LSTM H=64 step median (us)", pc["int8_step"]["median_us"], "<=", TARGET_STEP_US),
            ("int8 LSTM H=64 step_many per step (us)", ps["int8_step_many"]["median_us"], "<=", TARGET_MANY_US),
            ("f32/int8 step_many per step (x)", ra["f32_over_int8_step_many"], ">=", TARGET_SPEEDUP),
            ("f32/int8 step (x)", ra["f32_over_int8_step"], ">=", TARGET_SPEEDUP)]
    out = []
    for name, val, op, tgt in rows:
        ok = val <= tgt if op == "<=" else val >= tgt
        out.append({"target": name, "value": val, "op": op, "goal": tgt, "status": "PASS" if ok else "SHORT"})
    return out


# ----------------------------------------------------------------------------------------------- output
def print_report(doc: dict) -> None:
    m = doc["machine"]
    print(f"\nedgelstm latency  |  {m['cpu_model']} x{m['n_cpus']}  |  numpy {m['numpy']}  numba {m['numba']}  "
          f"torch {m['torch']}  onnxruntime {m['onnxruntime']}")
    print(f"load average start {tuple(round(v, 2) for v in m['load_average_start'])}  end "
          f"{tuple(round(v, 2) for v in doc['load_average_end'])}  |  git {m['git_head']} "
          f"(dirty: {len(m['git_dirty_files'])} files)  src {m['source_sha256_16']}  |  timer overhead "
          f"{doc['timer_overhead_ns']:.0f} ns (included in per-call numbers)  |  mode {doc['mode']}")
    print("\nPer step, microseconds. step: median [p10, p90] over individually timed calls; "
          f"many: per step inside one call over T={T_SEQ} (median of reps)")
    hdr = (f"{'model':<9}{'MAC/step':>9} | {'int8 step':>22} | {'f32 step':>22} | {'int8 many':>9} "
           f"{'f32 many':>9} | {'torch step':>10} {'torch T1k':>9} | {'ORT step':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in doc["results"]:
        pc, ps = r["per_call"], r["per_step_in_sequence"]

        def cell(k):
            s = pc[k]
            return f"{s['median_us']:7.2f} [{s['p10_us']:5.2f},{s['p90_us']:6.2f}]"
        print(f"{r['kind'].upper() + ' ' + str(r['H']):<9}{r['macs_per_step']:>9} | {cell('int8_step'):>22} | "
              f"{cell('f32_step'):>22} | {ps['int8_step_many']['median_us']:9.2f} "
              f"{ps['f32_step_many']['median_us']:9.2f} | {pc['torch_step']['median_us']:10.2f} "
              f"{ps['torch_seq']['median_us']:9.2f} | {pc['ort_step']['median_us']:9.2f}")
    print("  (PyTorch nn.LSTMCell/GRUCell, same weights, for reference: " + ", ".join(
        f"{r['kind'].upper()} {r['H']} {r['per_call']['torch_cell_step']['median_us']:.1f}" for r in doc["results"])
        + " us)")
    print("\nEffective GMAC/s and ratios (x = how many times slower the other engine is than int8; >1 is good)")
    hdr2 = (f"{'model':<9} | {'GMAC/s int8 step/many':>21} | {'f32 step/many':>14} | {'f32/int8 step':>13} "
            f"{'f32/int8 many':>13} | {'torch/int8':>10} {'ORT/int8':>8} {'torchT1k/int8many':>17}")
    print(hdr2)
    print("-" * len(hdr2))
    for r in doc["results"]:
        g, ra = r["gmacs"], r["ratios"]
        print(f"{r['kind'].upper() + ' ' + str(r['H']):<9} | {g['int8_step']:9.2f} / {g['int8_step_many']:8.2f} | "
              f"{g['f32_step']:5.2f} / {g['f32_step_many']:6.2f} | {ra['f32_over_int8_step']:12.2f}x "
              f"{ra['f32_over_int8_step_many']:12.2f}x | {ra['torch_over_int8_step']:9.2f}x "
              f"{ra['ort_over_int8_step']:7.2f}x {ra['torch_seq_over_int8_step_many']:16.2f}x")
    if doc["targets"]:
        print("\nTargets (int8 LSTM, I=40, H=64)")
        for t in doc["targets"]:
            print(f"  {t['status']:<5}  {t['target']:<40} {t['value']:7.2f}  (goal {t['op']} {t['goal']})")
    d = doc["diagnostics"]
    print("\nDiagnostics (what the int8 step is made of)")
    dp = d.get("dispatch", {})
    if dp:
        print(f"  call overhead: python function {dp['python_call_ns']:.0f} ns, empty @njit 0 args "
              f"{dp['njit_0_args_ns']:.0f} ns, empty @njit 5 arrays {dp['njit_5_arrays_ns']:.0f} ns "
              f"(timer included)")
    for r in doc["results"]:
        pc = r["per_call"]
        parts = [f"{r['kind'].upper()} {r['H']} (load {r['load_avg_1min'][0]:.1f}, CPU share while timing "
                 f"{100 * r['cpu_share_while_timing']:.0f}%):"]
        if "int8_kernel_direct" in pc:
            parts.append(f"int8 kernel called directly {pc['int8_kernel_direct']['median_us']:.2f} us "
                         f"(Stream.step wrapper {r['int8_python_wrapper_us']:+.2f} us)")
        if "f32_kernel_direct" in pc:
            parts.append(f"f32 direct {pc['f32_kernel_direct']['median_us']:.2f} us")
        mf = d.get("matvec_floor", {}).get(f"{r['kind']}{r['H']}")
        if mf and "error" not in mf:
            parts.append(f"| matvec alone in Numba: int16 row-dot {mf['int16_rowdot_us']:.2f} us, f32 row-dot "
                         f"{mf['f32_rowdot_us']:.2f} us, f32 col-axpy {mf['f32_colaxpy_us']:.2f} us")
        print("  " + " ".join(parts))
    slow = [f"{r['kind'].upper()} {r['H']} {k} {n}/{len(r['round_medians_us'][k])}" for r in doc["results"]
            for k, n in r["slow_rounds"].items() if n]
    if slow:
        print("  rounds > 20% slower than the best round of the same engine (host load bursts): " + ", ".join(slow))
    bad = [(r["kind"], r["H"], k, v) for r in doc["results"] for k, v in r["checks"].items()
           if k in ("f32_vs_torch_max_abs", "ort_vs_torch_max_abs") and v > 1e-4]
    c0 = doc["results"][0]["checks"]
    print(f"  checks: f32 vs torch max|err| <= {max(r['checks']['f32_vs_torch_max_abs'] for r in doc['results']):.1e},"
          f" ORT vs torch <= {max(r['checks']['ort_vs_torch_max_abs'] for r in doc['results']):.1e}, "
          f"int8 vs torch <= {max(r['checks']['int8_vs_torch_max_abs'] for r in doc['results']):.3f}; "
          f"ONNX exporter: {c0['onnx_exporter']}" + (f"  MISMATCH {bad}" if bad else ""))
    cs = doc.get("cold_start")
    if cs:
        print("\nCold start (fresh process, Numba on-disk cache warm; medians of "
              f"{cs.get('reps', '?')} runs; model: {cs.get('model_source')})")
        if "error" in cs:
            print(f"  error: {cs['error']}")
        else:
            b = cs["baselines"]
            print(f"  import edgelstm {cs['import_edgelstm_ms']:.0f} ms (+numpy {cs['import_numpy_ms']:.0f} ms), "
                  f"load model {cs['load_model_ms']:.1f} ms, first step {cs['first_step_ms']:.1f} ms, "
                  f"second step {cs['second_step_us']:.0f} us; import -> first output "
                  f"{cs['import_to_first_output_ms']:.0f} ms; whole process {cs['process_wall_ms']:.0f} ms")
            print(f"  peak RSS (ru_maxrss) {cs['peak_rss_mib']:.0f} MiB (VmHWM {cs['vmhwm_mib']:.0f}; after import "
                  f"edgelstm {cs['rss_after_import_mib']:.0f} MiB; numba imported by `import edgelstm`: "
                  f"{cs['numba_imported_by_import_edgelstm']}); baselines: bare python "
                  f"{b['python']['peak_rss_mib']:.0f} MiB, +numpy {b['python_numpy']['peak_rss_mib']:.0f} MiB, "
                  f"+numpy+numba {b['python_numpy_numba']['peak_rss_mib']:.0f} MiB "
                  f"(import numba {b['python_numpy_numba']['import_ms'] - b['python_numpy']['import_ms']:.0f} ms)")
    print(f"\nwall time {doc['wall_s']:.0f} s")


def plot(doc: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - optional
        return None
    res = doc["results"]
    labels = [f"{r['kind'].upper()} {r['H']}" for r in res]
    series = [("edgelstm int8 step", lambda r: r["per_call"]["int8_step"]["median_us"]),
              ("edgelstm f32 step", lambda r: r["per_call"]["f32_step"]["median_us"]),
              ("edgelstm int8 step_many/T", lambda r: r["per_step_in_sequence"]["int8_step_many"]["median_us"]),
              ("edgelstm f32 step_many/T", lambda r: r["per_step_in_sequence"]["f32_step_many"]["median_us"]),
              ("PyTorch step", lambda r: r["per_call"]["torch_step"]["median_us"]),
              ("PyTorch T=1000 /T", lambda r: r["per_step_in_sequence"]["torch_seq"]["median_us"]),
              ("ONNX Runtime step", lambda r: r["per_call"]["ort_step"]["median_us"])]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(res) + 3), 4.5))
    w = 0.8 / len(series)
    x = np.arange(len(res))
    for i, (name, f) in enumerate(series):
        ax.bar(x + (i - len(series) / 2 + 0.5) * w, [f(r) for r in res], w, label=name)
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("µs per step (median, log scale)")
    ax.set_title(f"edgelstm per-step latency, I={I} — {doc['machine']['cpu_model']}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke check: H=64 only, fewer repetitions (< 60 s)")
    ap.add_argument("--json", default=None,
                    help="output JSON (default bench/results/latency.json; latency-quick.json with --quick)")
    ap.add_argument("--plot", default=None, help="optional PNG bar chart (needs matplotlib; skipped if absent)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    import torch
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")

    if args.quick:
        hs, rounds, per_round, warmup, many_reps, cold_reps = (64,), 2, 1500, 500, 7, 1
    else:
        hs, rounds, per_round, warmup, many_reps, cold_reps = (64, 128, 256), 8, 3200, 3000, 25, 3
    doc = {"mode": "quick" if args.quick else "full", "machine": machine_info(),
           "settings": {"I": I, "H": list(hs), "kinds": list(GATES), "rounds": rounds,
                        "calls_per_engine": rounds * per_round, "warmup_calls": warmup, "T": T_SEQ,
                        "step_many_reps": many_reps, "torch_threads": torch.get_num_threads(),
                        "ort_intra_op_threads": 1},
            "timer_overhead_ns": timer_overhead_ns(), "results": [], "diagnostics": {}}
    for kind in GATES:
        for H in hs:
            print(f"[bench {time.perf_counter() - t_start:5.1f}s] {kind} H={H} ...", file=sys.stderr, flush=True)
            doc["results"].append(bench_config(kind, H, rounds=rounds, per_round=per_round, warmup=warmup,
                                               many_reps=many_reps))
    doc["targets"] = targets(doc["results"])
    print(f"[bench {time.perf_counter() - t_start:5.1f}s] diagnostics ...", file=sys.stderr, flush=True)
    try:
        doc["diagnostics"]["dispatch"] = dispatch_probe(20_000 if not args.quick else 5_000)
    except Exception as e:  # noqa: BLE001
        doc["diagnostics"]["dispatch_error"] = str(e)
    doc["diagnostics"]["matvec_floor"] = {}
    for kind in GATES:
        for H in hs:
            try:
                doc["diagnostics"]["matvec_floor"][f"{kind}{H}"] = matvec_floor(kind, H)
            except Exception as e:  # noqa: BLE001
                doc["diagnostics"]["matvec_floor"][f"{kind}{H}"] = {"error": str(e)}
    print(f"[bench {time.perf_counter() - t_start:5.1f}s] cold start ...", file=sys.stderr, flush=True)
    doc["cold_start"] = cold_start(cold_reps)
    doc["load_average_end"] = list(os.getloadavg())
    doc["wall_s"] = time.perf_counter() - t_start

    print_report(doc)
    out = Path(args.json or HERE / "results" / ("latency-quick.json" if args.quick else "latency.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, doc)
    print(f"JSON: {out}")
    if args.plot:
        p = plot(doc, args.plot)
        print(f"plot: {p}" if p else "plot: skipped (matplotlib not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
