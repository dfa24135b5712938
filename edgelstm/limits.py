"""The limits a model's integer program must respect, in one list shared by Python and C.

The Python loader checks them (quant/params.py, quant/multiplier.py, program/records.py, quant/ops_prepare.py,
ir/opgraph.py), and the C
runtime's elstm_init checks the same values: ``c_macros()`` writes them into every build's generated
elstm_records.h (export/to_c.records_header) as ELSTM_LIM_* macros, so no number is written twice. A model
the JIT accepts is accepted by the native backend and by to_c, and a program elstm_init accepts stays inside
these ranges. Imports nothing.
"""

# sizes (elements): any layer's input / hidden / output size, the frame width, the per-stream state and the
# scratch (gate rows, op-graph arena); the C runtime's index arithmetic stays far from int32 overflow
MAX_ELEMENTS = 1 << 24
# op graphs (opgraph.validate_opgraph): tensors, ops, elements of one tensor, arena elements
MAX_TENSORS, MAX_OPS, MAX_SIZE, MAX_ARENA = 4096, 4096, 1 << 20, 1 << 24

# (multiplier, shift) pairs: QuantizeMultiplier's multipliers are 0 or 2^30 .. 2^31 - 1 (never negative)
MULTIPLIER_RANGE = (0, 2**31 - 1)
MBQM_SHIFT_RANGE = (-31, 31)     # MultiplyByQuantizedMultiplier (double rounding): LSTM, int8 / int16 ops
FC_SHIFT_RANGE = (-31, 30)       # LiteRT's single-rounding FULLY_CONNECTED: right shift 31 - shift in 1..62
CONV16_SHIFT_RANGE = (-31, 7)    # LiteRT's 16x8 CONV_2D (int64 MultiplyByQuantizedMultiplier)
ACT16_MULT_RANGE = (0, 32767)    # LiteRT's int16 LOGISTIC / TANH Prepare: input multiplier ...
ACT16_SHIFT_RANGE = (0, 30)      # ... and left shift (quant/ops_prepare.prepare_act16)
LEFT_SHIFT_RANGE = (0, 31)       # ADD / SUB input left shift (prepare_add: 20 for int8, 15 for int16)

ZERO_POINT_RANGE = (-128, 127)   # int8 zero points
INT16_RANGE = (-32768, 32767)    # int16 tensors (output ranges of int16 ops)
CELL_EXP_RANGE = (-15, -9)       # LSTM cell state scale 2^cell_exp: tanh on the cell has 15 + cell_exp bits
CELL_CLIP_RANGE = (0, 32767)     # quantized LSTM cell clip (0: none)
PROJ_CLIP_RANGE = (0, 127)       # quantized LSTM projection clip (0: none)
# Scales outside this range cannot be represented by QuantizeMultiplier without flushing to zero or
# overflowing; a file carrying one is corrupt or was made by a broken tool.
SCALE_RANGE = (1e-12, 1e6)


def _f32_bits(v: float, *, inside: int) -> int:
    """The int32 bits of the float32 nearest ``v`` on the side of the range (inside = +1 for a lower end, -1 for
    an upper end): Python compares a float32 scale, widened to double, with the double ends."""
    import struct
    bits = struct.unpack("<i", struct.pack("<f", v))[0]
    f = struct.unpack("<f", struct.pack("<i", bits))[0]
    return bits + inside if (f < v if inside > 0 else f > v) else bits


def c_macros() -> list[str]:
    """#define lines of every limit for the C runtime (pairs as _MIN / _MAX; the scale range as the int32 bit
    patterns of its float32 ends: positive floats order as their bits, so the check is an integer compare)."""
    pairs = {"MULT": MULTIPLIER_RANGE, "SHIFT": MBQM_SHIFT_RANGE, "FC_SHIFT": FC_SHIFT_RANGE,
             "CONV16_SHIFT": CONV16_SHIFT_RANGE, "ACT16_MULT": ACT16_MULT_RANGE, "ACT16_SHIFT": ACT16_SHIFT_RANGE,
             "LSHIFT": LEFT_SHIFT_RANGE, "ZP": ZERO_POINT_RANGE, "INT16": INT16_RANGE, "CELL_EXP": CELL_EXP_RANGE,
             "CELL_CLIP": CELL_CLIP_RANGE, "PROJ_CLIP": PROJ_CLIP_RANGE,
             "SCALE_BITS": (_f32_bits(SCALE_RANGE[0], inside=1), _f32_bits(SCALE_RANGE[1], inside=-1))}
    out = [f"#define ELSTM_LIM_MAX_ELEMENTS {MAX_ELEMENTS}"]
    for name, (lo, hi) in pairs.items():
        out += [f"#define ELSTM_LIM_{name}_MIN ({lo})", f"#define ELSTM_LIM_{name}_MAX ({hi})"]
    return out
