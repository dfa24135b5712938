"""Fixed-point primitives, multiplier quantization and gemmlowp int16 activation tables.

Everything is checked against the independent scalar references in tests/naive.py (pure Python ints),
against math (sigmoid / tanh in float64), and against golden vectors published in TFLite's own C++ unit
tests (tensorflow/lite/kernels/internal/tensor_utils_test.cc), which were produced by the real C++ code.
"""
import math
import random

import numpy as np
import pytest
from numba import njit

import naive
from edgelstm.kernels.fixedpoint import mbqm, rdbpot, sat8, sat16, srdhm, wrap32
from edgelstm.quant.multiplier import quantize_multiplier
from edgelstm.quant.tables import sigmoid_table, tanh_table

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
ALL16 = range(-32768, 32768)


# ---------------------------------------------------------------------------------------------------
# activation tables
# ---------------------------------------------------------------------------------------------------

def test_table_shapes_dtypes_readonly_cached():
    s = sigmoid_table()
    assert s.dtype == np.int16 and s.shape == (65536,)
    assert not s.flags.writeable
    with pytest.raises(ValueError):
        s[0] = 1
    assert sigmoid_table() is s
    for k in range(7):
        t = tanh_table(k)
        assert t.dtype == np.int16 and t.shape == (65536,) and not t.flags.writeable
        assert tanh_table(k) is t
    with pytest.raises(ValueError):
        tanh_table(7)
    with pytest.raises(ValueError):
        tanh_table(-1)


def test_sigmoid_table_equals_scalar_gemmlowp_port_exhaustively():
    table = sigmoid_table().tolist()
    ref = naive.ref_gemmlowp_logistic_int16
    bad = [x for x in ALL16 if table[x + 32768] != ref(x, 3)]
    assert not bad, f"{len(bad)} mismatches, first inputs {bad[:5]}"


@pytest.mark.parametrize("k", range(7))
def test_tanh_table_equals_scalar_gemmlowp_port_exhaustively(k):
    table = tanh_table(k).tolist()
    ref = naive.ref_gemmlowp_tanh_int16
    bad = [x for x in ALL16 if table[x + 32768] != ref(x, k)]
    assert not bad, f"integer_bits={k}: {len(bad)} mismatches, first inputs {bad[:5]}"


def test_sigmoid_table_is_the_real_sigmoid():
    x = np.arange(-32768, 32768, dtype=np.float64)
    err = np.abs(sigmoid_table() / 32768.0 - 1.0 / (1.0 + np.exp(-x / 4096.0)))    # Q3.12 -> Q0.15
    assert err.max() < 2e-4                                     # measured 1.95e-4 (~6.4 LSB)
    s = sigmoid_table().astype(np.int64)
    # NOT monotone: gemmlowp's int16 logistic steps back by up to 8 LSB at ~1k inputs (exp barrel-shifter
    # boundaries); the exhaustive comparison with the scalar port above pins the exact values.
    assert np.diff(s).min() >= -8
    assert s[32768] == 16384                                    # logistic(0) == 1/2 exactly
    # logistic(-x) = 1 - logistic(x) with One() = 32767: s(-x) + s(x) == 32767 for x > 0
    assert np.all(s[32769:] + s[32767:0:-1] == 32767)


@pytest.mark.parametrize("k", range(7))
def test_tanh_table_is_the_real_tanh(k):
    x = np.arange(-32768, 32768, dtype=np.float64)
    t = tanh_table(k)
    err = np.abs(t / 32768.0 - np.tanh(x / 2.0 ** (15 - k)))
    # gemmlowp's int16 tanh computes (1-e)/(1+e) in Q2.13 and rescales to Q0.15, so outputs are multiples
    # of 4 (except the saturated +-32767) and the error reaches ~12 LSB (measured max 3.68e-4 over all k).
    assert err.max() < 4e-4
    ti = t.astype(np.int64)
    assert ti[32768] == 0
    assert np.all((ti % 4 == 0) | (np.abs(ti) == 32767))
    # NOT monotone either: backward steps of up to 16 LSB (measured) at exp barrel-shifter boundaries
    assert np.diff(ti).min() >= -16
    # odd symmetry: tanh(-x) == -tanh(x) for every x != -32768
    assert np.array_equal(ti[32769:], -ti[32767:0:-1])


# Golden vectors from TFLite tensor_utils_test.cc (uKernels.QuantSigmoidTest / QuantTanh{0,3,4}Test);
# these are outputs of the real C++ PortableApplySigmoid / PortableApplyTanh (first 30 of 60 values; the
# second half of each test repeats the first).
_TFL_SIG_IN = [-10500, 1398, -6963, -7404, 485, -5401, -1757, -7668, -19248, -9692, -24249, -17923, -15840,
               -10026, 5249, -89, 1787, -16178, -6691, -19524, -13439, -24048, -1123, 32767, -17267, -3378,
               823, 11482, -11139, 7508]
_TFL_SIG_OUT = [2339, 19152, 5063, 4617, 17350, 6917, 12921, 4371, 299, 2813, 89, 409, 673, 2605, 25646,
                16207, 19904, 615, 5353, 273, 1187, 91, 14153, 32756, 475, 9983, 18026, 30898, 2023, 28246]
_TFL_TANH_IN = [-145, 899, -176, -35, 264, 289, 8, 27, -37, -1310, -120, 127, -16, 106, 370, -583, -299, 93,
                -548, 548, 653, -29, -53, 1058, -52, -164, -149, -635, 201, -1297]
_TFL_TANH0_OUT = [-136, 904, -176, -40, 260, 292, 8, 28, -44, -1304, -120, 120, -24, 112, 376, -576, -308,
                  88, -544, 544, 652, -32, -60, 1056, -56, -156, -144, -636, 192, -1300]
_TFL_TANH3_OUT = [-1156, 7076, -1412, -276, 2104, 2308, 64, 220, -288, -10132, -964, 1016, -120, 844, 2944,
                  -4640, -2392, 736, -4352, 4352, 5180, -232, -428, 8276, -412, -1308, -1196, -5044, 1612,
                  -10044]
_TFL_TANH4_IN = [-5, 163, -31, -5, 54, 90, 1, 2, -4, -42, -8, 29, 0, 47, 150, -26, -36, 9, -73, 25, 14, -2,
                 -1, 29, -10, -12, -18, -29, 51, -92]
_TFL_TANH4_OUT = [-76, 2596, -496, -76, 856, 1436, 24, 36, -64, -672, -120, 456, 0, 752, 2400, -412, -576,
                  148, -1168, 400, 216, -36, -24, 456, -164, -192, -292, -456, 820, -1476]


@pytest.mark.parametrize("table_fn, inputs, expected", [
    (sigmoid_table, _TFL_SIG_IN, _TFL_SIG_OUT),
    (lambda: tanh_table(0), _TFL_TANH_IN, _TFL_TANH0_OUT),
    (lambda: tanh_table(3), _TFL_TANH_IN, _TFL_TANH3_OUT),
    (lambda: tanh_table(4), _TFL_TANH4_IN, _TFL_TANH4_OUT),
], ids=["sigmoid", "tanh0", "tanh3", "tanh4"])
def test_tables_match_tflite_golden_vectors(table_fn, inputs, expected):
    table = table_fn()
    assert [int(table[x + 32768]) for x in inputs] == expected


def test_int16_wraparound_corner_inputs():
    # -32768 has no positive counterpart in int16: gemmlowp's -a wraps back to -32768 and still works out
    s = sigmoid_table()
    assert s[0] == naive.ref_gemmlowp_logistic_int16(-32768)
    assert abs(int(s[0]) / 32768 - 1 / (1 + math.exp(8.0))) < 2e-4
    for k in range(7):
        t = tanh_table(k)
        assert t[0] == naive.ref_gemmlowp_tanh_int16(-32768, k)
        assert abs(int(t[0]) / 32768 - math.tanh(-(2.0 ** k))) < 4e-4


# ---------------------------------------------------------------------------------------------------
# scalar references are what they claim to be (closed forms, stated independently)
# ---------------------------------------------------------------------------------------------------

def test_ref_srdhm32_is_round_half_up_of_product():
    # SRDHM == floor((a*b + 2^30) / 2^31) (VQRDMULH: ties toward +inf), saturated.
    rng = random.Random(7)
    vals = [I32_MIN, I32_MIN + 1, -1, 0, 1, I32_MAX, 1 << 30, -(1 << 30)] + \
           [rng.randint(I32_MIN, I32_MAX) for _ in range(2000)]
    for a in vals[:40]:
        for b in vals[:40]:
            assert naive.ref_srdhm32(a, b) == min(I32_MAX, (a * b + (1 << 30)) >> 31)
    for a, b in zip(vals, reversed(vals)):
        assert naive.ref_srdhm32(a, b) == min(I32_MAX, (a * b + (1 << 30)) >> 31)


def test_ref_rdbpot_agrees_with_gemmlowp_literal_form():
    # naive.ref_rdbpot is the mathematical definition; naive._g_rdbpot is the mask/threshold port.
    rng = random.Random(11)
    for e in range(32):
        xs = [I32_MIN, I32_MAX, -1, 0, 1] + [rng.randint(I32_MIN, I32_MAX) for _ in range(200)]
        if e:
            ties = [(2 * k + 1) << (e - 1) for k in (0, 1, 2, 1000)]
            xs += [sign * v for v in ties if v <= I32_MAX for sign in (1, -1)]
        for x in xs:
            x = naive._fx_i32(x)
            assert naive._g_rdbpot(x, e, wrap=naive._fx_i32) == naive.ref_rdbpot(x, e), (x, e)


# ---------------------------------------------------------------------------------------------------
# Numba int32 primitives
# ---------------------------------------------------------------------------------------------------

EDGE32 = [I32_MIN, I32_MIN + 1, -(1 << 30), -65536, -3, -2, -1, 0, 1, 2, 3, 65535, 1 << 30, I32_MAX - 1,
          I32_MAX]


def test_srdhm_edge_cases():
    assert srdhm(I32_MIN, I32_MIN) == I32_MAX
    for a in EDGE32:
        for b in EDGE32 + [1 << 30, I32_MAX, 1518500250]:
            assert srdhm(a, b) == naive.ref_srdhm32(a, b), (a, b)
    # negative ties (a*b = -(2k+1) * 2^30) round toward +inf, positive ties away from zero
    assert srdhm(-(1 << 30), 1) == 0 and srdhm(-3, 1 << 30) == -1
    assert srdhm(1, 1 << 30) == 1 and srdhm(3, 1 << 30) == 2
    assert srdhm(-3, 1 << 30) == naive.ref_srdhm32(-3, 1 << 30)


def test_rdbpot_edge_cases_and_ties():
    for e in range(32):
        xs = list(EDGE32)
        if e:
            half = 1 << (e - 1)
            for k in (0, 1, 2, 7, 12345):
                v = (2 * k + 1) * half
                if v <= I32_MAX:
                    xs += [v, -v, v - 1, -v + 1, v + 1, -v - 1]
        for x in xs:
            x = naive._fx_i32(x)
            assert rdbpot(x, e) == naive.ref_rdbpot(x, e), (x, e)
    assert rdbpot(5, 1) == 3 and rdbpot(-5, 1) == -3 and rdbpot(-4, 1) == -2 and rdbpot(-6, 2) == -2
    assert rdbpot(I32_MIN, 31) == -1 and rdbpot(I32_MAX, 31) == 1 and rdbpot(-(1 << 30), 31) == -1
    assert rdbpot(7, 0) == 7 and rdbpot(I32_MIN, 0) == I32_MIN


def test_mbqm_edge_cases():
    mults = [0, 1, 1 << 30, I32_MAX, 1518500250, 1073741823, 1970324837]
    for s in range(-31, 8):
        for m in mults:
            for x in EDGE32 + [12345, -12345, 1 << 20, -(1 << 20)]:
                assert mbqm(x, m, s) == naive.ref_mbqm(x, m, s), (x, m, s)
    # left shift wraps like C on two's complement before the multiply
    assert mbqm(1 << 30, 1 << 30, 1) == naive.ref_mbqm(1 << 30, 1 << 30, 1) == -(1 << 30)
    # TFLite uKernels.QuantMul8bitArbitrarySclaeTest (LiteRT tflite/kernels/internal/tensor_utils_test.cc):
    # PortableCwiseMul int8 output = clamp(mbqm(a*b, 1970324837, -15) + output_zp), output_zp = 3.
    # (Older TensorFlow copies of this test expect mbqm(...) - 3: CwiseMul used to subtract the zp.)
    a = [2491, 32767, -32768, 32767, -32768, 32767, 32767, -32768, -32768, 2157,
         4545, 14835, 1285, 29498, 26788, 2907, 7877, 6331, 8775, 3001,
         1399, 4683, 1437, 1853, 12163, 4927, 7977, 3001, 16612, 4791]
    b = [-1156, 32767, -32768, -32768, 32767, 2308, 64, 220, -288, -10132,
         -964, 1016, -120, 844, 2944, -4640, -2392, 736, -4352, 4352,
         5180, -232, -428, 8276, -412, -1308, -1196, -5044, 1612, -10044]
    want = [-78, 127, 127, -128, -128, 127, 62, -128, 127, -128,
            -120, 127, -1, 127, 127, -128, -128, 127, -128, 127,
            127, -27, -14, 127, -128, -128, -128, -128, 127, -128]
    assert [sat8(mbqm(p * q, 1970324837, -15) + 3) for p, q in zip(a, b)] == want


def test_sat_and_wrap():
    assert [sat16(v) for v in (-10 ** 9, -32769, -32768, 0, 32767, 32768, 10 ** 9)] == \
           [-32768, -32768, -32768, 0, 32767, 32767, 32767]
    assert [sat8(v) for v in (-1000, -129, -128, 5, 127, 128, 1000)] == [-128, -128, -128, 5, 127, 127, 127]
    for v in (0, 1, -1, I32_MAX, I32_MIN, I32_MAX + 1, I32_MIN - 1, 1 << 40, -(1 << 40) - 5, 3 << 31):
        assert wrap32(v) == naive._fx_i32(v)


@njit(cache=False)
def _batch_srdhm(a, b, out):
    for i in range(a.size):
        out[i] = srdhm(a[i], b[i])


@njit(cache=False)
def _batch_rdbpot(x, e, out):
    for i in range(x.size):
        out[i] = rdbpot(x[i], e[i])


@njit(cache=False)
def _batch_mbqm(x, m, s, out):
    for i in range(x.size):
        out[i] = mbqm(x[i], m[i], s[i])


def test_int32_primitives_random_100k():
    n = 100_000
    rng = np.random.default_rng(20240601)
    a = rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True, dtype=np.int64).astype(np.int32)
    b = rng.integers(I32_MIN, I32_MAX, size=n, endpoint=True, dtype=np.int64).astype(np.int32)
    # mix in small magnitudes so rounding / ties are exercised, not just huge products
    a[::4] = rng.integers(-70000, 70000, size=a[::4].size)
    e = rng.integers(0, 32, size=n).astype(np.int32)
    s = rng.integers(-31, 8, size=n).astype(np.int32)
    m = rng.integers(0, I32_MAX, size=n, endpoint=True, dtype=np.int64).astype(np.int32)
    m[::3] = rng.integers(1 << 30, I32_MAX, size=m[::3].size, endpoint=True)

    out = np.empty(n, dtype=np.int64)
    _batch_srdhm(a, b, out)
    assert out.tolist() == [naive.ref_srdhm32(p, q) for p, q in zip(a.tolist(), b.tolist())]
    _batch_rdbpot(a, e, out)
    assert out.tolist() == [naive.ref_rdbpot(p, q) for p, q in zip(a.tolist(), e.tolist())]
    _batch_mbqm(a, m, s, out)
    assert out.tolist() == [naive.ref_mbqm(p, q, r) for p, q, r in zip(a.tolist(), m.tolist(), s.tolist())]


def test_primitives_inline_into_njit_with_int32_args():
    @njit(cache=False)
    def k(x, m, sh):
        return mbqm(np.int32(x), np.int32(m), np.int32(sh)) + rdbpot(np.int32(x), np.int32(3)) + \
            srdhm(np.int32(x), np.int32(m))
    assert k(123456, 1 << 30, -2) == (naive.ref_mbqm(123456, 1 << 30, -2) + naive.ref_rdbpot(123456, 3) +
                                      naive.ref_srdhm32(123456, 1 << 30))


# ---------------------------------------------------------------------------------------------------
# quantize_multiplier
# ---------------------------------------------------------------------------------------------------

def test_quantize_multiplier_hand_checked():
    # 0.75 = 0.75 * 2^0 -> q_fixed = 0.75 * 2^31 = 3 * 2^29 = 1610612736, shift 0
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    # 1.0 = 0.5 * 2^1 -> (2^30, 1);  0.5 = 0.5 * 2^0 -> (2^30, 0);  2^10 = 0.5 * 2^11 -> (2^30, 11)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(2.0 ** 10) == (1 << 30, 11)
    assert quantize_multiplier(0.0) == (0, 0)


EDGE_REALS = [0.0, 1.0, 0.5, 0.75, 1 - 2.0 ** -33, 1 - 2.0 ** -32, 1 - 2.0 ** -31, 0.5 - 2.0 ** -34,
              2.0 ** -31, 2.0 ** -32, 2.0 ** -32 * 0.99, 2.0 ** -33, 1e-12, 5e-324,
              2.0 ** -32 * (1 - 2.0 ** -33),
              2.0 ** 10, 2.0 ** 10 * 1.2345, 1234.5678, 3.0, 0.1, 1.0 / 3.0, 2.0 ** -31 * 0.75,
              float(np.float32(0.00390625 * 0.0078125 / 0.02))]


@pytest.mark.parametrize("real", EDGE_REALS)
def test_quantize_multiplier_edge_cases(real):
    got = quantize_multiplier(real)
    assert got == naive.ref_quantize_multiplier(real)
    assert all(type(v) is int for v in got)


def test_quantize_multiplier_rounding_corner_cases():
    # q * 2^31 rounds up to exactly 2^31 -> halved, shift + 1
    assert quantize_multiplier(1 - 2.0 ** -33) == (1 << 30, 1)
    # below 2^-32 the shift drops under -31 -> flushed to (0, 0)
    assert quantize_multiplier(2.0 ** -33) == (0, 0)
    assert quantize_multiplier(2.0 ** -32 * 0.99) == (0, 0)
    assert quantize_multiplier(2.0 ** -32) == (1 << 30, -31)
    # exact tie at the half: q*2^31 = 2^30 + 0.5 rounds away from zero
    tie = (2.0 ** 30 + 0.5) / 2.0 ** 31
    assert quantize_multiplier(tie) == ((1 << 30) + 1, 0)


def test_quantize_multiplier_random_float32():
    rng = np.random.default_rng(5)
    vals = np.concatenate([rng.uniform(0, 1, 3000), 10.0 ** rng.uniform(-12, 4, 3000)]).astype(np.float32)
    for v in vals.tolist():
        assert quantize_multiplier(v) == naive.ref_quantize_multiplier(v), v
        q, sh = quantize_multiplier(v)
        if q:
            assert (1 << 30) <= q < (1 << 31)
            assert abs(q * 2.0 ** (sh - 31) - v) <= v * 2.0 ** -30


def test_quantize_multiplier_rejects_negative_and_nonfinite():
    for bad in (-0.5, -1e-30, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)
