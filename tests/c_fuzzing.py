"""Mutation fuzzing of the C runtime's program data, shared by tests/test_c_fuzz.py (CI) and
bench/fuzz_c_program.py (the long run).

The programs are the C copies of small valid int8 models (``c_program.c_arrays`` and the config a bundle would
write): LSTM (peephole, projection, clips), int8 GRU / RNN layers (their int16 cell graphs: CONV16, ACT16 and
int16 ADD / SUB / MUL / QUANTIZE records), Dense with every activation, converter-made op graphs
(tests/fixtures/tflite_cells: FC, LUT, int8 state, constants) and a stack of several kinds. A case takes one
and changes 1..4 things, mostly where the runtime looks: a record field (layer headers, LSTM / Dense / op-graph
direction records, op, state and constant records, the multiplier / shift arrays) set to an edge value
(0, -1, INT32_MAX, 2^28, a length +- 1, shift-like 31 / 32 / 40 / 70 ...), nudged, copied from another field or
random; a config field (sizes, array lengths: a shorter prog / w8 / blob is a truncated array); any prog
element; w8 / blob values.

The driver (firmware_host/harness/fuzz_runner.c) allocates every array at exactly the length the mutated config
states and runs elstm_init, then, if it accepts, three elstm_step calls on random frames. It is built with
-fsanitize=address,undefined -fno-sanitize-recover=all: the first report ends the process; the parent records
its signature (the sanitizer's error kind, source line and function) and restarts after that case. Outcomes:
rejected / accepted (ran clean), or a report counted by signature.

Replay one case: ``python tests/c_fuzzing.py --seed SEED --case N`` prints its report (or its outcome).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CAP = 1 << 26           # fuzz_runner.c: larger (or negative) lengths get a one-element allocation
FRAMES = 3
CFG_FIELDS = ("input_size", "output_size", "width", "n_state", "scratch", "prog_len", "w8_len", "blob_len",
              "input_zp", "output_zp")
PROG, W8, BLOB = 0, 1, 2
SCALE_FIELDS = (11, 12)   # fuzz_runner.c: the bits of input_scale / output_scale
SCALE_EDGES = np.array([0.0, -0.0, -1.0, np.nan, np.inf, -np.inf, 1e-45, 1e-13, 1e-12, 1e6, 1.1e6, 3.4e38, 0.5],
                       np.float32)

# (name, layer descriptions, activation tables) of the random models; tables=True only once (128 KiB tables)
MODELS = [
    ("lstm-peep-proj-clip+dense-sigmoid", [{"kind": "lstm", "hidden_size": 6, "proj_size": 4, "peephole": True,
                                            "cell_clip": 3.0, "proj_clip": 0.5},
                                           {"kind": "dense", "output_size": 3, "activation": "sigmoid"}], False),
    ("lstm+dense-softmax", [{"kind": "lstm", "hidden_size": 5},
                            {"kind": "dense", "output_size": 4, "activation": "softmax"}], False),
    ("lstm-tables+dense-relu", [{"kind": "lstm", "hidden_size": 4, "peephole": True},
                                {"kind": "dense", "output_size": 2, "activation": "relu"}], True),
    ("gru-after+dense-tanh", [{"kind": "gru", "hidden_size": 5, "reset_after": True},
                              {"kind": "dense", "output_size": 3, "activation": "tanh"}], False),
    ("gru-before+dense-none", [{"kind": "gru", "hidden_size": 4, "reset_after": False},
                               {"kind": "dense", "output_size": 2, "activation": "none"}], False),
    ("rnn-tanh+rnn-relu+dense", [{"kind": "rnn", "hidden_size": 5, "nonlinearity": "tanh"},
                                 {"kind": "rnn", "hidden_size": 4, "nonlinearity": "relu"},
                                 {"kind": "dense", "output_size": 2, "activation": "sigmoid"}], False),
    ("dense-relu+dense-softmax", [{"kind": "dense", "output_size": 6, "activation": "relu"},
                                  {"kind": "dense", "output_size": 3, "activation": "softmax"}], False),
    ("lstm+gru+dense", [{"kind": "lstm", "hidden_size": 4, "proj_size": 3},
                        {"kind": "gru", "hidden_size": 3},
                        {"kind": "dense", "output_size": 2, "activation": "tanh"}], False),
]
# converter-made int8 op graphs (FC, LUT, int8 state with requantization tables, constants)
TFLITE_CELLS = ("gru_after_a", "lstm_a_bias", "rnn_relu_b")
F_IN = 3


@functools.lru_cache(maxsize=1)
def base_programs() -> list[dict]:
    """name, cfg (11 int32: CFG_FIELDS + frames), scales, prog, w8, blob of every base program."""
    import edgelstm as el
    from edgelstm.program.c_program import c_arrays
    models = []
    rng = np.random.default_rng(0)
    for k, (name, layers, tables) in enumerate(MODELS):
        spec = el.random_model(layers, input_size=F_IN, seed=k, scale=1.0)
        q = el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 30, F_IN)).astype(np.float32),
                        progress=False)
        models.append((name, q, tables))
    cells = HERE / "fixtures" / "tflite_cells"
    from edgelstm.export import from_tflite
    for n in TFLITE_CELLS:
        if (cells / f"{n}_int8.tflite").exists():
            models.append((n, from_tflite(str(cells / f"{n}_int8.tflite")), True))
    out = []
    for name, q, tables in models:
        prep = q._prep
        prog, w8, blob = c_arrays(prep, tables=tables, spec=q.spec)
        (s_in, zp_in), (s_out, zp_out) = q.quant.act[0], q.quant.act[-1]
        scratch = _scratch(prog)
        cfg = [q.input_size, q.output_size, prep.width, prep.n_state, scratch, prog.size, w8.size, blob.size,
               zp_in, zp_out, FRAMES]
        out.append({"name": name, "cfg": np.array(cfg, np.int32), "scales": np.array([s_in, s_out], np.float32),
                    "prog": prog, "w8": w8, "blob": blob, "fields": record_fields(prog)})
    return out


def _scratch(prog) -> int:
    from edgelstm.program.c_program import c_buffers
    return c_buffers(prog)["scratch"]


def record_fields(prog: np.ndarray) -> list[int]:
    """prog indices the runtime reads as record fields: the header, layer headers, direction records, op /
    state / constant records, state zero points and the multiplier / shift arrays they name."""
    from edgelstm.program.c_program import L_ZPS, c_op_len
    from edgelstm.program import layout as L
    lens = c_op_len()
    out = list(range(L.G_LAYER0 + int(prog[L.G_LAYERS])))
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        kind, rec, dir_len = int(prog[lo + L.L_KIND]), lo + L.L_HDR, int(prog[lo + L.L_DIRLEN])
        out += range(lo, rec + dir_len)
        if kind == L.KIND_DENSE:
            n_out = int(prog[lo + L.L_OUT])
            out += range(int(prog[rec + L.DN_M]), int(prog[rec + L.DN_M]) + 2 * n_out)
            out += [int(prog[rec + L.DN_B]), int(prog[rec + L.DN_LUT])]
        elif kind == L.KIND_LSTM:
            out += [int(prog[rec + L.LS_BX]), int(prog[rec + L.LS_BH])]
        elif kind == L.KIND_OPS:
            r = int(prog[rec + L.OG_OPS])
            for _ in range(int(prog[rec + L.OG_NOPS])):
                code = int(prog[r])
                out += range(r, r + lens[code])
                if code in (L.OPK_FC, L.OPK_CONV16):
                    m, n = int(prog[r + 7]), int(prog[r + 5])
                    out += range(m, m + (2 * n if code == L.OPK_FC else (n + 1) // 2))
                r += lens[code]
            st, cs = int(prog[rec + L.OG_STATES]), int(prog[rec + L.OG_CONSTS])
            out += range(st, st + L.OG_STATE_REC * int(prog[rec + L.OG_NSTATE]))
            out += range(cs, cs + L.OG_CONST_REC * int(prog[rec + L.OG_NCONST]))
            if int(prog[lo + L_ZPS]):
                out += range(int(prog[lo + L_ZPS]), int(prog[lo + L_ZPS]) + int(prog[rec + L.OG_NSTATE]))
    return sorted({i for i in out if 0 <= i < prog.size})


EDGES = [0, 1, -1, 2, -2, 3, 7, 8, 9, 15, 16, 20, 30, 31, 32, 40, 43, 44, 46, 47, 62, 63, 64, 70, -9, -15, -16,
         -31, -32, -40, -70, 127, 128, -128, -129, 255, 256, 32767, 32768, -32768, -32769, 65535, 65536,
         0x4000, 0x7FFF, 1 << 24, (1 << 24) + 1, 1 << 28, 1 << 29, 1 << 30, 2**31 - 1, -2**31, -2**31 + 1,
         -(1 << 28)]


def _value(rng, old: int, lengths: list[int]) -> int:
    """An edge value, a length +- 1, the old value nudged or doubled, or random."""
    k = rng.integers(10)
    if k < 4:
        return int(EDGES[rng.integers(len(EDGES))])
    if k < 6:
        return int(lengths[rng.integers(len(lengths))]) + int(rng.integers(-2, 3))
    if k < 8:
        return int(np.clip(old + int(rng.choice([-1, 1, -2, 2, -4, 4, -16, 16, 64, -64])), -2**31, 2**31 - 1))
    if k < 9:
        return int(np.clip(2 * old if rng.random() < 0.5 else -old, -2**31, 2**31 - 1))
    return int(rng.integers(-2**31, 2**31))


def mutate(base: dict, rng: np.random.Generator) -> tuple[list, list]:
    """(config edits [(field, value)], array edits [(array, index, value)]) of one case."""
    cfg, prog, fields = base["cfg"], base["prog"], base["fields"]
    lengths = [int(v) for v in cfg[:8]] + [prog.size]
    cfg_edits, edits = [], []
    for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3, 4]))):
        k = rng.random()
        if k < 0.55:                 # a record field
            i = int(fields[rng.integers(len(fields))])
            if rng.random() < 0.15:  # another field's value (offsets, sizes of a neighbour)
                v = int(prog[fields[rng.integers(len(fields))]])
            else:
                v = _value(rng, int(prog[i]), lengths)
            edits.append((PROG, i, v))
        elif k < 0.68:               # a config field (a shorter array length truncates it)
            f = int(rng.integers(len(CFG_FIELDS)))
            cfg_edits.append((f, _value(rng, int(cfg[f]), lengths)))
        elif k < 0.72:               # a quantization scale of the float edges (as float32 bits)
            cfg_edits.append((SCALE_FIELDS[rng.integers(2)], int(SCALE_EDGES.view(np.int32)[rng.integers(
                len(SCALE_EDGES))])))
        elif k < 0.87:               # any prog element
            i = int(rng.integers(prog.size))
            edits.append((PROG, i, _value(rng, int(prog[i]), lengths)))
        else:                        # weight / table values
            a = W8 if rng.random() < 0.5 else BLOB
            n = base["w8" if a == W8 else "blob"].size
            for _ in range(int(rng.integers(1, 4))):
                edits.append((a, int(rng.integers(n)), int(rng.integers(-32768, 32768))))
    return cfg_edits, edits


def random_cases(seed: int, first: int, count: int):
    """(case, base index, config edits, array edits) of cases first .. first + count - 1 of a seed."""
    bases = base_programs()
    for case in range(first, first + count):
        rng = np.random.default_rng([seed, case])
        k = int(rng.integers(len(bases)))
        yield (case, k, *mutate(bases[k], rng))


def write_cases(path, cases) -> None:
    """The driver's input: every base program, then the cases (case, base index, config edits, array edits)."""
    bases = base_programs()
    parts = [np.array([len(bases)], np.int32).tobytes()]
    for b in bases:
        parts += [b["cfg"].tobytes(), b["scales"].tobytes(), b["prog"].tobytes(), b["w8"].tobytes(),
                  b["blob"].tobytes()]
    for case, k, cfg_edits, edits in cases:
        parts.append(np.array([case, k, len(cfg_edits), len(edits)], np.int32).tobytes())
        parts.append(np.array(cfg_edits, np.int64).reshape(-1, 2).astype(np.int32).tobytes())
        parts.append(np.array(edits, np.int64).reshape(-1, 3).astype(np.int32).tobytes())
    Path(path).write_bytes(b"".join(parts))


SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:allocator_may_return_null=1", "UBSAN_OPTIONS": "print_stacktrace=1"}


def outcome(exe, base: str, cfg_edits=(), edits=()) -> str:
    """One hand-made case on the base program named ``base``: "rejected", "accepted" (ran clean) or the
    signature of the sanitizer report it ends in."""
    k = [b["name"] for b in base_programs()].index(base)
    with tempfile.TemporaryDirectory() as tmp:
        write_cases(Path(tmp) / "c.bin", [(0, k, list(cfg_edits), list(edits))])
        res = subprocess.run([str(exe), str(Path(tmp) / "c.bin"), "0", str(Path(tmp) / "p")], capture_output=True,
                             text=True, env={**os.environ, **SANITIZER_ENV}, timeout=600)
    if res.returncode != 0:
        return signature(res.stderr)
    return "accepted" if "accepted 1 " in res.stdout else "rejected"


def build_fuzz_runner(builddir, cc: str = "cc", src=None) -> Path:
    """fuzz_runner.c with the runtime (every kind; from ``src``, a firmware_host copy, if given), -O1 under
    ASan + UBSan without recovery."""
    from edgelstm.firmware_host import SANITIZE_FLAGS, build_runner
    return build_runner(builddir, cc=cc, cflags=["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic",
                                                 *SANITIZE_FLAGS], driver="fuzz_runner.c", src=src)


_FRAME = re.compile(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S+?):(\d+)")


def signature(stderr: str) -> str:
    """A report's identity: sanitizer, error kind, file:line and function of the runtime frame."""
    m = re.search(r"(\S+?):(\d+):\d+: runtime error: (.*)", stderr)
    if m:
        what = re.sub(r"-?\b\d+\b", "N", m.group(3).strip())
        return f"UBSan {what} at {Path(m.group(1)).name}:{m.group(2)}"
    m = re.search(r"ERROR: AddressSanitizer: ([\w-]+)", stderr)
    if m:
        rw = re.search(r"\b(READ|WRITE) of size", stderr)
        frame = _FRAME.search(stderr)
        where = f" in {frame.group(1)} at {Path(frame.group(2)).name}:{frame.group(3)}" if frame else ""
        return f"ASan {m.group(1)}{' ' + rw.group(1) if rw else ''}{where}"
    tail = stderr.strip().splitlines()[-1:] or ["(no output)"]
    return f"crash without a sanitizer report: {tail[0][:120]}"


def run(count: int, *, seed: int, exe, first: int = 0, timeout: float = 600.0, workdir=None) -> dict:
    """``count`` cases from ``first``: {"cases", "seed", "accepted", "rejected", "reports": {signature: n},
    "examples": {signature: first case}}. The driver restarts after each report. "skipped": cases whose arrays
    would be longer than the driver allocates (CAP)."""
    reports, examples = Counter(), {}
    accepted = rejected = skipped = 0
    env = {**os.environ, **SANITIZER_ENV}
    with tempfile.TemporaryDirectory(prefix="edgelstm-cfuzz-", dir=workdir) as tmp:
        cases, prog = Path(tmp) / "cases.bin", Path(tmp) / "progress"
        write_cases(cases, random_cases(seed, first, count))
        start = first
        while start < first + count:
            prog.write_text("")
            try:
                res = subprocess.run([str(exe), str(cases), str(start), str(prog)], capture_output=True, text=True,
                                     env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                at = int((prog.read_text().split() or [start])[0])
                reports["hang"] += 1
                examples.setdefault("hang", at)
                start = at + 1
                continue
            if res.returncode == 0:
                m = re.search(r"accepted (\d+) rejected (\d+) skipped (\d+)", res.stdout)
                accepted, rejected, skipped = (a + int(v) for a, v in zip((accepted, rejected, skipped), m.groups()))
                break
            at, acc, rej, skip = (int(v) for v in (prog.read_text().split() or [start, 0, 0, 0]))
            sig = signature(res.stderr)
            reports[sig] += 1
            examples.setdefault(sig, at)
            # the cases before it in this process
            accepted, rejected, skipped = accepted + acc, rejected + rej, skipped + skip
            start = at + 1
    return {"cases": count, "seed": seed, "accepted": accepted, "rejected": rejected, "skipped": skipped,
            "reports": dict(reports.most_common()), "examples": examples}


def replay(seed: int, case: int, exe) -> str:
    """The driver's stderr (the sanitizer report) and stdout for one case."""
    with tempfile.TemporaryDirectory() as tmp:
        write_cases(Path(tmp) / "c.bin", random_cases(seed, case, 1))
        res = subprocess.run([str(exe), str(Path(tmp) / "c.bin"), str(case), str(Path(tmp) / "p")],
                             capture_output=True, text=True, env={**os.environ, **SANITIZER_ENV})
    return res.stderr + res.stdout


if __name__ == "__main__":
    import argparse
    sys.path.insert(0, str(HERE))
    ap = argparse.ArgumentParser(description="replay one C fuzz case")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--case", type=int, required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print(replay(a.seed, a.case, build_fuzz_runner(d)))
