"""elstm_init validates every record field and config size before a kernel uses it (issue 16, "Hardening round 2",
finding 2): one minimal case per defect, each a valid C program (tests/c_fuzzing.py's base programs) with one to
three values changed, fed to elstm_init and, if accepted, elstm_step under ASan + UBSan without recovery
(harness/fuzz_runner.c, which allocates every array at exactly the length the config states). Every case must
be rejected with no sanitizer report. The runtime of commit c4d712d accepted or crashed on each of them
(EDGELSTM_TEST_RUNTIME=<a firmware_host copy> runs this file against another runtime).

Then the limits: every number elstm_init checks comes from edgelstm/limits.py (the generated elstm_records.h),
the Python loader refuses the same sizes, and a program at the edge of a range the loader accepts (LSTM shifts
of 31 with the largest multiplier) runs clean under UBSan, bit for bit with the JIT."""
import os
import re
import shutil

import numpy as np
import pytest

import c_fuzzing
from edgelstm import limits
from edgelstm.program import layout as L

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")

CFG = {n: i for i, n in enumerate(c_fuzzing.CFG_FIELDS)}
PROG = c_fuzzing.PROG
INT32_MAX, INT32_MIN = 2**31 - 1, -2**31


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    return c_fuzzing.build_fuzz_runner(tmp_path_factory.mktemp("fuzz"), src=os.environ.get("EDGELSTM_TEST_RUNTIME"))


def _base(name):
    return next(b for b in c_fuzzing.base_programs() if b["name"] == name)


def _rec(b, k=0):
    """(layer header offset, direction record offset) of layer k of a base program."""
    lo = int(b["prog"][L.G_LAYER0 + k])
    return lo, lo + L.L_HDR


LSTM, OPS, DENSES = "lstm-peep-proj-clip+dense-sigmoid", "gru-after+dense-tanh", "dense-relu+dense-softmax"


def _lstm(field, value):
    return lambda b: ([], [(PROG, _rec(b)[1] + field, value)])


def _dense_shift(value):
    def edit(b):
        _, rec = _rec(b, 1)
        return [], [(PROG, int(b["prog"][rec + L.DN_M]) + 1, value)]
    return edit


def _header(field, value, k=0):
    return lambda b: ([], [(PROG, _rec(b, k)[0] + field, value)])


def _truncated_record(k):
    """layer k's direction length 0 and prog cut right after its header: its record lies past prog"""
    def edit(b):
        lo, _ = _rec(b, k)
        return [(CFG["prog_len"], lo + L.L_HDR)], [(PROG, lo + L.L_DIRLEN, 0)]
    return edit


# name: (base program, edit maker -> (config edits, prog edits)); what c4d712d did with each, measured with this
# file (EDGELSTM_TEST_RUNTIME=<its firmware_host>), in the comment
DEFECTS = {
    # LSTM state offset: elstm_reset wrote h's zero point there (c4d712d: ASan heap-buffer-overflow WRITE in
    # elstm_reset); 2^28: far outside (SEGV)
    "lstm state offset past n_state": (LSTM, lambda b: ([], [(PROG, _rec(b)[1] + L.LS_STATE, int(b["cfg"][3]))])),
    "lstm state offset 2^28": (LSTM, _lstm(L.LS_STATE, 1 << 28)),
    # LSTM bias pointers: read by requant_acc16 (c4d712d: heap-buffer-overflow READ / SEGV in requant_acc16)
    "lstm input bias past prog": (LSTM, lambda b: ([], [(PROG, _rec(b)[1] + L.LS_BX, b["prog"].size - 3)])),
    "lstm recurrent bias negative": (LSTM, _lstm(L.LS_BH, -(1 << 28))),
    "lstm projection bias past prog": (LSTM, lambda b: ([], [(PROG, _rec(b)[1] + L.LS_BPROJ, b["prog"].size - 1)])),
    # n_state too small for h and c: lstm_step read c past the state (c4d712d: READ in lstm_step)
    "n_state smaller than the lstm state": (LSTM, lambda b: ([(CFG["n_state"], 5)], [])),
    # input / output wider than the frame buffers (2 * width; the header's sizes follow, as a consistent bundle
    # would have them): elstm_step wrote x / read y past the frames (c4d712d: WRITE / READ in elstm_step)
    "input_size larger than the frames": (LSTM, lambda b: ([(CFG["input_size"], 2 * int(b["cfg"][2]) + 1)],
                                                           [(PROG, L.G_IN, 2 * int(b["cfg"][2]) + 1)])),
    "output_size larger than the frames": (LSTM, lambda b: ([(CFG["output_size"], 2 * int(b["cfg"][2]) + 1)],
                                                            [(PROG, L.G_OUT, 2 * int(b["cfg"][2]) + 1)])),
    # record fields read before the record length was checked (c4d712d: READ in lstm_ok / dense_ok / opgraph_ok)
    "lstm record past prog": (LSTM, _truncated_record(0)),
    "dense record past prog": (LSTM, _truncated_record(1)),
    "op-graph record past prog": (OPS, _truncated_record(0)),
    # shifts outside the requantization's range (c4d712d: UBSan shift exponent in fixedpoint.h / dense)
    "lstm gate shift 40": (LSTM, _lstm(L.LS_MX + 1, 40)),
    "lstm recurrent shift -70": (LSTM, _lstm(L.LS_MH + 1, -70)),
    "lstm hidden shift INT32_MIN": (LSTM, _lstm(L.LS_MHID + 1, INT32_MIN)),
    "dense shift 31": (LSTM, _dense_shift(31)),      # single rounding: 1 << (31 - shift - 1) = 1 << -1
    "dense shift 70": (LSTM, _dense_shift(70)),
    "dense shift -40": (LSTM, _dense_shift(-40)),
    # hidden zero point 2^31 - 1: the int32 sum with it overflowed (c4d712d: UBSan signed integer overflow)
    "lstm hidden zero point INT32_MAX": (LSTM, _lstm(L.LS_HID_ZP, INT32_MAX)),
    "lstm cell exponent INT32_MAX": (LSTM, _lstm(L.LS_CELL_EXP, INT32_MAX)),   # 15 + cell_exp overflowed
    # negative hidden size: 4 * H overflowed in lstm_ok (c4d712d: UBSan signed integer overflow)
    "lstm hidden size -2^30": (LSTM, _header(L.L_HID, -(1 << 30))),
    # offset sums in elstm_init (c4d712d: UBSan signed integer overflow in elstm_init)
    "layer offset near INT32_MAX": (LSTM, lambda b: ([], [(PROG, L.G_LAYER0, INT32_MAX - 3)])),
    "layer count INT32_MAX": (LSTM, lambda b: ([], [(PROG, L.G_LAYERS, INT32_MAX)])),
    "direction length INT32_MAX": (LSTM, _header(L.L_DIRLEN, INT32_MAX)),
    # absurd sizes in the config (c4d712d: accepted; elstm_reset zeroed 2^28 state elements)
    "n_state 2^28": (LSTM, lambda b: ([(CFG["n_state"], 1 << 28)], [])),
    "scratch 2^28": (OPS, lambda b: ([(CFG["scratch"], 1 << 28)], [])),
    # a softmax table that is not exp(-s d): entry 0 (the largest logit's) inf makes the sum inf and that
    # probability inf * 0 = NaN, converted to an integer (c4d712d: UBSan signed integer overflow after it)
    "softmax table inf": (DENSES, lambda b: ([], [(PROG, int(b["prog"][_rec(b, 1)[1] + L.DN_LUT]), 0x7F800000)])),
    # a NaN input scale: elstm_quantize converted NaN to int8 (c4d712d: accepted)
    "input scale NaN": (LSTM, lambda b: ([(c_fuzzing.SCALE_FIELDS[0], 0x7FC00000)], [])),
}


@pytest.mark.parametrize("what", sorted(DEFECTS))
def test_defect_is_rejected_without_a_sanitizer_report(what, exe):
    base, make = DEFECTS[what]     # the intact program runs clean: test_every_base_program_is_accepted...
    assert c_fuzzing.outcome(exe, base, *make(_base(base))) == "rejected"


def test_every_base_program_is_accepted_and_runs_clean(exe):
    for b in c_fuzzing.base_programs():
        assert c_fuzzing.outcome(exe, b["name"]) == "accepted", b["name"]


# ---- one list of limits

def test_records_header_carries_every_limit_and_the_runtime_uses_them():
    """elstm_records.h is generated from edgelstm/limits.py; edgelstm.c checks with those macros (each one used)
    and writes no range of its own."""
    from edgelstm.export.to_c import records_header
    from edgelstm.firmware_host import __file__ as fh
    header = records_header()
    macros = dict(re.findall(r"#define (ELSTM_LIM_\w+) \(?(-?\d+)\)?", header))
    assert int(macros["ELSTM_LIM_MAX_ELEMENTS"]) == limits.MAX_ELEMENTS
    for name, pair in (("SHIFT", limits.MBQM_SHIFT_RANGE), ("FC_SHIFT", limits.FC_SHIFT_RANGE),
                       ("CONV16_SHIFT", limits.CONV16_SHIFT_RANGE), ("CELL_EXP", limits.CELL_EXP_RANGE),
                       ("ZP", limits.ZERO_POINT_RANGE), ("ACT16_SHIFT", limits.ACT16_SHIFT_RANGE)):
        assert (int(macros[f"ELSTM_LIM_{name}_MIN"]), int(macros[f"ELSTM_LIM_{name}_MAX"])) == pair, name
    src = (os.path.join(os.path.dirname(fh), "src", "edgelstm.c"))
    text = open(src).read()
    used = set(re.findall(r"ELSTM_LIM_\w+", text)) | {f"ELSTM_LIM_{n}_{e}" for n in re.findall(r"LIM\([^,]+, (\w+)\)",
                                                                                                   text)
                                                      for e in ("MIN", "MAX")}
    assert set(macros) <= used
    checks = re.sub(r"/\*.*?\*/", "", text.split("---- validation")[1].split("void elstm_reset")[0], flags=re.S)
    assert not re.findall(r"(?<![\w.])(-31|30|31|-128|127|32767|-32768|-15|-9)(?![\w.])", checks), \
        "a literal range in the validation: take it from edgelstm/limits.py"


def test_python_limits_are_the_ones_the_validators_use():
    from edgelstm.ir import opgraph
    from edgelstm.quant import multiplier, params
    assert params.CELL_EXP_RANGE is limits.CELL_EXP_RANGE and params.SCALE_RANGE is limits.SCALE_RANGE
    assert multiplier.MBQM_SHIFT_RANGE is limits.MBQM_SHIFT_RANGE and opgraph.MAX_ARENA == limits.MAX_ARENA


def test_prepare_refuses_a_model_the_c_runtime_refuses_for_its_size(monkeypatch):
    """Frame width, state and scratch over ELSTM_LIM_MAX_ELEMENTS: the C runtime refuses the program, so
    prepare() refuses the model (here with the limit lowered to fit a small model)."""
    import edgelstm as el
    from edgelstm.program import records as program_records
    spec = el.random_model([{"kind": "lstm", "hidden_size": 8}], input_size=3, seed=0)
    el.Model(spec)
    monkeypatch.setattr(program_records, "MAX_ELEMENTS", 16)
    with pytest.raises(el.ModelError, match="model too large"):
        el.Model(spec)


def _lstm_model():
    import edgelstm as el
    spec = el.random_model([{"kind": "lstm", "hidden_size": 8, "proj_size": 5, "peephole": True},
                            {"kind": "dense", "output_size": 3, "activation": "tanh"}], input_size=4, seed=5)
    rng = np.random.default_rng(5)
    return el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 40, 4)).astype(np.float32),
                       progress=False)


def test_lstm_at_the_edge_of_its_ranges_runs_clean_and_equals_the_jit(tmp_path):
    """Shifts of 31 with the largest multiplier (QuantizeMultiplier's range, which the loader accepts) on the
    LSTM's gate, peephole and hidden requantizations and the extreme hidden zero points: the int32 results plus a
    gate or a zero point leave int32, which the C runtime summed in int32 (c4d712d: UBSan signed integer
    overflow in requant_acc16 / lstm_step); now in int64 and saturated, as the Numba kernels do: bit for bit."""
    import edgelstm as el
    from edgelstm.firmware_host import build_runner, run_many
    q = _lstm_model()
    outs = []
    for zp in (127, -128):
        model = el.Model(q.spec, q.quant)               # a fresh prepare(): the JIT blob is made from prog below
        prog = model._prep.prog
        rec = int(prog[L.G_LAYER0]) + L.L_HDR
        for pair in (L.LS_MX, L.LS_MH + 2, L.LS_MP, L.LS_MHID):
            prog[rec + pair:rec + pair + 2] = [INT32_MAX, 31]
        prog[rec + L.LS_HID_ZP] = zp
        X = (3.0 * np.random.default_rng(zp + 128).standard_normal((300, 4))).astype(np.float32)
        exe = build_runner(tmp_path / str(zp), cc="cc", sanitize=True, src=os.environ.get("EDGELSTM_TEST_RUNTIME"))
        got = run_many(exe, [(model, X)])[0]
        want = model.stream().step_many(X)
        assert np.array_equal(got.view(np.int32), want.view(np.int32)), zp
        outs.append(got)
    assert np.ptp(np.concatenate(outs), axis=0).max() > 0       # not vacuous: the outputs move


def test_conv16_scale_flushed_to_zero_is_refused_by_every_backend():
    """Item 8 of issue 16: an int16 conv (int8 GRU / RNN cell graph) whose effective scale is so small that
    QuantizeMultiplier flushes it to (0, 0) (it would need a shift below -31: outside LiteRT's 16x8 conv range)
    ran on the JIT while the native backend and to_c refused it (c_program.conv16_rows). One validator now:
    prepare() refuses it, so no backend sees it."""
    import edgelstm as el
    from edgelstm.program.c_program import c_arrays
    rng = np.random.default_rng(3)
    spec = el.random_model([{"kind": "gru", "hidden_size": 4}], input_size=3, seed=3)
    q = el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 30, 3)).astype(np.float32), progress=False)
    c_arrays(q._prep, spec=q.spec)                      # the intact model: every backend takes it
    d = q.quant.layers[0][0]
    d["w_x_scale"] = d["w_x_scale"].copy()
    d["w_x_scale"][0] = np.nextafter(np.float32(1e-12), np.float32(1))   # the loader's smallest scale
    real = q.quant.act[0][0] * 1e-12 / float(d["graph_scale"][0])
    assert real < 2.0 ** -32                            # QuantizeMultiplier flushes it (shift < -31)
    with pytest.raises(el.ModelError, match="int16 conv effective scale"):
        el.Model(q.spec, q.quant)


# ---- the bindings: a model the runtime refuses is an edgelstm error, never a crash or a foreign exception

_STREAM = """
import sys
{prelude}
try:
    {make}
    ys = [list(s.step([0.5] * F)) for _ in range(300)]
    print("ran", ys[-1][:2])
except EdgeLSTMError as e:
    print("refused", type(e).__name__)
except Exception as e:
    print("foreign", type(e).__name__, e)
"""


def _outcome(code, *args, env=None):
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **(env or {})})
    return f"crash (exit {res.returncode})" if res.returncode else res.stdout.strip().splitlines()[-1]


def _tampered(field, value, past_prog=False):
    """c_program.c_arrays with one field of the first layer's direction record set to ``value`` (+ the program's
    length if ``past_prog``): the bundle's or the native backend's program."""
    def c_arrays(prep, *, _real=__import__("edgelstm.program.c_program", fromlist=["c_arrays"]).c_arrays, **kw):
        prog, w8, blob = _real(prep, **kw)
        prog = prog.copy()
        prog[int(prog[L.G_LAYER0]) + L.L_HDR + field] = value + (prog.size if past_prog else 0)
        return prog, w8, blob
    return c_arrays


DEPLOY_CASES = {   # name: (model_data.h #define edit, _tampered arguments); c4d712d's outcome in the comment
    "MODEL_SCRATCH -1": (("MODEL_SCRATCH", -1), None),               # foreign ValueError (the ctypes array)
    "MODEL_N_STATE 2^28": (("MODEL_N_STATE", 1 << 28), None),        # ran (512 MiB of state), not refused
    "lstm state offset out of range": (None, (L.LS_STATE, 50_000)),  # crash (SIGSEGV)
    "lstm bias outside prog": (None, (L.LS_BX, 64, True)),           # ran, silently wrong
}


@pytest.fixture(scope="module")
def lstm_model():
    return _lstm_model()


@pytest.mark.parametrize("what", sorted(DEPLOY_CASES))
def test_deploy_refuses_a_bad_bundle_with_an_edgelstm_error(what, lstm_model, tmp_path, monkeypatch):
    import subprocess
    import edgelstm.program.c_program as cm
    from edgelstm.export.to_c import to_c
    from edgelstm.firmware_host import STRICT_CFLAGS
    define, tamper = DEPLOY_CASES[what]
    if tamper:
        monkeypatch.setattr(cm, "c_arrays", _tampered(*tamper))
    b = to_c(lstm_model, tmp_path / "b")
    if define:
        h = (b / "model_data.h").read_text()
        (b / "model_data.h").write_text(re.sub(rf"#define {define[0]} \S+", f"#define {define[0]} ({define[1]})", h))
    lib = b / "libmodel.so"
    subprocess.run(["cc", *STRICT_CFLAGS, "-fPIC", "-shared", "-I", str(b), "-o", str(lib),
                    *[str(b / f) for f in ("model_data.c", "edgelstm.c", "elstm_io.c")], "-lm"], check=True)
    code = _STREAM.format(prelude="from edgelstm.deploy import CompiledModel\nfrom edgelstm.errors import "
                                  "EdgeLSTMError", make="s = CompiledModel(sys.argv[1]).stream(); F = s._F")
    assert _outcome(code, str(lib)) == "refused ArtifactError"


@pytest.fixture(scope="module")
def native_lib(tmp_path_factory):
    from edgelstm.backends import native
    from edgelstm.firmware_host import build_native
    return build_native(out=tmp_path_factory.mktemp("native") / native.LIB_NAME)


NATIVE_CASES = {"intact": None, **{k: v[1] for k, v in DEPLOY_CASES.items() if v[1]}}


@pytest.mark.parametrize("what", sorted(NATIVE_CASES))
def test_native_backend_refuses_a_bad_program_with_an_edgelstm_error(what, lstm_model, native_lib, tmp_path):
    """The ctypes backend's own copy of the program goes through elstm_init's checks before its first step
    (c4d712d never called it: both bad programs ran, silently wrong)."""
    import edgelstm as el
    path = tmp_path / "m.elstm"
    el.save(lstm_model, path)
    tamper = NATIVE_CASES[what]
    prelude = "import numpy as np\nimport edgelstm as el\nfrom edgelstm.errors import EdgeLSTMError"
    if tamper:
        prelude += ("\nimport edgelstm.program.c_program as cm\nfrom test_c_validation import _tampered\n"
                    f"cm.c_arrays = _tampered{tamper!r}")
    code = _STREAM.format(prelude=prelude, make="m = el.load(sys.argv[1]); s = m.stream(); F = m.input_size; "
                                                "assert type(s._step_kernel).__name__ == 'NativeStep'")
    env = {"EDGELSTM_BACKEND": "native", "EDGELSTM_NATIVE_LIB": str(native_lib),
           "PYTHONPATH": os.path.dirname(__file__) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    got = _outcome(code, str(path), env=env)
    assert got.startswith("ran") if tamper is None else got == "refused ModelError", got



def _c_config(model, prog, w8, blob, *, scratch):
    from edgelstm.backends import native
    (s_in, zp_in), (s_out, zp_out) = model.quant.act[0], model.quant.act[-1]
    cfg = native._Config(native.FORMAT_VERSION, model.input_size, model.output_size, model._prep.width,
                         model._prep.n_state, scratch, prog.size, w8.size, blob.size, s_in, zp_in, s_out, zp_out)
    return cfg, native._Weights(prog.ctypes.data, w8.ctypes.data, blob.ctypes.data)


@pytest.mark.slow
def test_every_mutated_file_the_jit_runs_the_c_runtime_accepts(native_lib):
    """One validator for all backends (item 8 of issue 16): 3,000 mutated .elstm files (tests/fuzzing.py); every
    int8 streamable model that loads and runs on the JIT is accepted by the C runtime's checks, in the native
    backend's copy of its program and in the compact copy a to_c bundle holds (c4d712d: case 2788, a CONV16
    multiplier flushed to zero, ran on the JIT and was refused by both)."""
    import tempfile
    import edgelstm as el
    from edgelstm.backends import native
    from edgelstm.program.c_program import c_arrays, c_work_buffers
    from fuzzing import base_files, mutate
    lib = native._load(native_lib)
    bases = base_files()
    X = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)
    checked = 0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "case.elstm")
        for case in range(3000):
            rng = np.random.default_rng([2026, case])
            _, data = bases[rng.integers(len(bases))]
            with open(path, "wb") as f:
                f.write(mutate(data, rng))
            try:
                m = el.load(path)
                if not m.is_quantized or m.spec.needs_whole_sequence:
                    continue
                m.run(X)
            except el.EdgeLSTMError:
                continue
            native.NativeStep(lib, m._prep)                             # raises ModelError if refused
            arrays = c_arrays(m._prep, spec=m.spec)
            cfg, w = _c_config(m, *arrays, scratch=c_work_buffers(m._prep, spec=m.spec)["scratch"])
            native.check_program(lib, cfg, w, f"case {case} (to_c's arrays)")
            checked += 1
    assert checked > 200
