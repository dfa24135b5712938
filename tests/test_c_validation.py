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
from edgelstm.kernels import layout as L

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
    base, make = DEFECTS[what]
    assert c_fuzzing.outcome(exe, base) == "accepted"            # the intact program runs clean
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
    from edgelstm import opgraph, runtime
    from edgelstm.quant import params
    assert params.CELL_EXP_RANGE is limits.CELL_EXP_RANGE and params.SCALE_RANGE is limits.SCALE_RANGE
    assert runtime.MBQM_SHIFT_RANGE is limits.MBQM_SHIFT_RANGE and opgraph.MAX_ARENA == limits.MAX_ARENA


def test_prepare_refuses_a_model_the_c_runtime_refuses_for_its_size(monkeypatch):
    """Frame width, state and scratch over ELSTM_LIM_MAX_ELEMENTS: the C runtime refuses the program, so
    prepare() refuses the model (here with the limit lowered to fit a small model)."""
    import edgelstm as el
    from edgelstm import runtime
    spec = el.random_model([{"kind": "lstm", "hidden_size": 8}], input_size=3, seed=0)
    el.Model(spec)
    monkeypatch.setattr(runtime, "MAX_ELEMENTS", 16)
    with pytest.raises(el.ModelError, match="model too large"):
        el.Model(spec)
