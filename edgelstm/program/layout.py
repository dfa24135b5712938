"""Record layouts of the prepared program (pure Python, no Numba): shared by prepare(), the Numba kernels
and the C export, so a process that only loads a model and runs the native backend never imports Numba.
See cells_int8.py and program.py for what the records mean."""

# ---- record layouts in prog (named indices; Numba treats module globals as constants) ----
KIND_LSTM, KIND_GRU, KIND_RNN, KIND_DENSE, KIND_OPS, KIND_CONV, KIND_MAP = 0, 1, 2, 3, 4, 5, 6
KINDS = {"lstm": KIND_LSTM, "gru": KIND_GRU, "rnn": KIND_RNN, "dense": KIND_DENSE, "ops": KIND_OPS,
         "conv1d": KIND_CONV, "pad": KIND_MAP, "magnitude": KIND_MAP, "activation": KIND_MAP, "context": KIND_MAP}
ACT_NONE, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH, ACT_RELU = 0, 1, 2, 3, 4
ACTIVATIONS = {"none": ACT_NONE, "sigmoid": ACT_SIGMOID, "softmax": ACT_SOFTMAX, "tanh": ACT_TANH,
               "relu": ACT_RELU}

# layer header
L_KIND, L_IN, L_HID, L_OUT, L_NDIR, L_FLAGS = 0, 1, 2, 3, 4, 5   # index 6 reserved
L_DIRLEN = 7      # prog index holding the length of one direction record
L_HDR = 8         # direction d record starts at layer_off + L_HDR + d * prog[layer_off + L_DIRLEN]
FLAG_PEEP, FLAG_PROJ, FLAG_RESET_AFTER, FLAG_RELU, FLAG_REVERSE = 1, 2, 4, 8, 16

# LSTM direction record
LS_WX, LS_WH, LS_BX, LS_BH = 0, 1, 2, 3
LS_MX = 4          # 4 (mult, shift) pairs: 4..11
LS_MH = 12         # 12..19
LS_PEEP, LS_MP = 20, 21          # peephole weights (3, H) int16; 3 pairs 21..26
LS_PROJ, LS_BPROJ, LS_MPROJ = 27, 28, 29   # pair 29..30
LS_MHID, LS_HID_ZP, LS_OUT_ZP = 31, 33, 34  # pair 31..32
LS_CELL_EXP, LS_TANH_CELL, LS_STATE = 35, 36, 37
LS_SIG, LS_TANH3 = 38, 39
LS_CELL_CLIP, LS_PROJ_CLIP = 40, 41   # quantized clips, 0 = none (TFLite's quantized_cell/proj_clip)
LS_LEN = 42

# GRU direction record
GR_WX, GR_WH, GR_BX, GR_BH = 0, 1, 2, 3
GR_MX, GR_MH = 4, 10       # 3 pairs each
GR_M16TO8, GR_OUT_ZP, GR_STATE, GR_SIG, GR_TANH3 = 16, 18, 19, 20, 21
GR_LEN = 22

# RNN direction record
RN_WX, RN_WH, RN_BX, RN_BH, RN_MX, RN_MH, RN_MOUT, RN_OUT_ZP, RN_STATE, RN_TANH3 = 0, 1, 2, 3, 4, 6, 8, 10, 11, 12
RN_LEN = 13

# Dense record
DN_W, DN_B, DN_M, DN_PRE_ZP, DN_ACT, DN_LUT = 0, 1, 2, 4, 5, 6   # DN_M: offset of O (mult, shift) pairs
DN_LEN = 7


# Conv1D record (kind "conv1d", edgelstm/ir/frontend.py; kernels in kernels/frontend.py): the frame is (length,
# channels) channels-last. Per output position the K taps x Ig channels window is gathered (padding applied) into
# the aux scratch, then one dot product per output channel: a matrix (out_channels, K * Ig) (depthwise: (out_channels,
# K), Ig = 1). int8: bias folded with the input zero point (prog), per-channel (mult, shift) pairs (prog), output zero
# point, clamp range (the fused relu / relu6), and for a fused sigmoid / tanh a 256-entry table applied after.
CV_LEN_IN, CV_CIN, CV_COUT, CV_K, CV_STRIDE, CV_DIL, CV_PADL, CV_PADR, CV_REFLECT = 0, 1, 2, 3, 4, 5, 6, 7, 8
CV_MULT, CV_LOUT, CV_W, CV_B, CV_M, CV_ZP_IN, CV_ZP_OUT, CV_LO, CV_HI, CV_ACT, CV_LUT, CV_ROWS = range(9, 21)
CV_LEN = 21       # CV_MULT: depth multiplier (0 = a full conv, groups 1); CV_ROWS: rows of an int8 full conv's dot
# matrix, out_channels rounded up to whole pairwise blocks (zero rows), so every conv runs the block kernel

# Map record (kinds "pad", "magnitude", "activation", "context": one frame in, one frame out, no matmul)
MP_OP, MP_N_IN, MP_N_OUT = 0, 1, 2
MAP_PAD, MAP_MAGNITUDE, MAP_ACTIVATION, MAP_CONTEXT = 1, 2, 3, 4
#   pad         [3] length [4] channels [5] left [6] right [7] reflect [8] pad value (int8: the zero point)
#   magnitude   [3] length [4] channels; int8: [5] zp_in [6] s_in (float32 bits) [7] zp_out [8] s_out (bits)
#               [9] the JIT's (65536,) table of every int8 pair (kernel blob offset; the C runtime computes)
#   activation  float: [3] ACT_* code (ACT_RELU6 extra); int8: [3] prog offset of the 256-entry table
#   context     [3] context values K [4] state offset of the K values in the per-sequence state block
MP_TABLE = 9     # magnitude (int8): the JIT table's kernel-blob offset
MP_LEN = 10
ACT_RELU6 = 5     # float map activation only (int8 activations are tables)

# Op-graph direction record (kind "ops": a graph of TFLite builtin ops, edgelstm/ir/opgraph.py; kernels in
# ops_int8.py / ops_f32.py). Tensors live in an arena (the program's gates scratch) at the offsets below.
OG_NOPS, OG_OPS = 0, 1            # number of op records, prog offset of the first (OPK_REC int32 each)
OG_X, OG_NX, OG_Y, OG_NY = 2, 3, 4, 5   # arena offsets and sizes of the graph input and output tensors
OG_NSTATE, OG_STATES = 6, 7      # state entries: prog offset of (arena in, arena out, size, state offset, lut)
OG_STATE = 8                     # offset of this layer's state in the per-sequence state block
OG_NCONST, OG_CONSTS = 9, 10     # constant tensors: prog offset of (arena offset, size, weight blob offset)
OG_LEN = 11
OG_STATE_REC, OG_CONST_REC = 5, 3
# op kernel codes inside the records (OPK_REC int32 per op; fields per op in ops_int8.py / ops_f32.py)
OPK_FC, OPK_ADD, OPK_SUB, OPK_MUL, OPK_REQUANT, OPK_LUT, OPK_COPY, OPK_LOGISTIC, OPK_TANH, OPK_CLAMP = range(10)
OPK_CONV16, OPK_ACT16 = 10, 11   # int16 ops: 16x8 1x1 CONV_2D, int16 LOGISTIC / TANH (int8 programs only)
OPK_REC = 20

# Weight matrices are stored with their columns zero-padded to a multiple of PAD: LLVM vectorizes the dot
# loop 16 lanes x 4 interleaved, and a shorter row falls back to scalar code (256x40 took 5.4 us, 256x64
# 0.7 us here). Vectors are read PAD-padded too; buffers carry PAD elements of slack (finite ints times
# zero weights add nothing).
PAD = 64

# program.py: global prog header and work-buffer header
G_LAYERS, G_IN, G_OUT, G_WIDTH, G_IN_ZP, G_OUT_ZP, G_IN_SCALE, G_OUT_SCALE, G_LAYER0 = 0, 1, 2, 3, 4, 5, 6, 7, 16
W_LENGTHS, W_STATE, W_STATE_N, W_SEQ, W_SEQ_N, W_GATES, W_ACC, W_AUX, W_SCRATCH_N = 0, 1, 2, 3, 4, 5, 6, 7, 8
W_IX, W_CHUNK, W_BATCH = 9, 10, 11   # per-stream offset table, frames per chunk, sequences the buffer holds
W_Y = 12          # step output: B * O float32 (the Stream's output buffer is a numpy view of it)
# The JIT's model blob (``Prepared.kernel_blob``, uint8): a copy of prog, then the kernel weights at byte
# offset prog[G_KW_OFF] (set in that copy only; the C runtime's prog leaves slot 8 at 0), so a step passes
# three arrays: x, the model blob, the work buffer.
G_KW_OFF = 8
WORK_HEADER_BYTES = 64

# The per-stream offset table (int32, IXW per active sequence) the driver fills before each cell call, so
# one call steps many sequences and the dot products read each weight block once for all of them.
IX_SRC, IX_STATE, IX_OUT, IX_SCR, IXW = 0, 1, 2, 3, 4

# Pairwise block layout of the int8 dot-loop matrices (kernels/pairwise.py), JIT blob only: the C runtime
# reads the row-major blob.  A (rows, cp) column-padded matrix keeps its int16 region (same size, same offset,
# so every record offset is the same in both blobs) but holds dense int8 bytes in blocks of BLOCK_ROWS rows:
# block b at byte b * BLOCK_ROWS * cp of the region, column pair k at + k * 2 * BLOCK_ROWS:
# [W[r0, 2k], W[r0, 2k+1], W[r1, 2k], W[r1, 2k+1], ...]; the region's second half is zero.  A sub-matrix
# from row row0 (GRU's n rows, row0 = 2H) starts at byte row0 * cp (kernels pass row0, not an offset).
# Dense, so the kernel reads half the bytes of the int16 form and the weights share the cache evenly with
# the activation tables (a gap after every block left half the cache sets to the weights: H=256 ran 30%
# slower).
BLOCK_ROWS = 16


def uses_blocks(unit):
    """The one layout rule, shared by prepare() and the kernels: a matrix read as sub-matrices of ``unit``
    rows is stored in the pairwise block layout iff unit is a multiple of BLOCK_ROWS (else row-major)."""
    return unit % BLOCK_ROWS == 0


def pack_blocks(a):
    """(rows, cp) int8-valued matrix (rows a multiple of BLOCK_ROWS, cp even) -> its region in the JIT blob
    (rows * cp int16 holding the int8 block layout described above)."""
    import numpy as np
    rows, cp = a.shape
    blocks = a.reshape(rows // BLOCK_ROWS, BLOCK_ROWS, cp // 2, 2).transpose(0, 2, 1, 3)
    out = np.zeros(rows * cp, np.int16)
    out.view(np.int8)[:rows * cp] = blocks.astype(np.int8).ravel()
    return out

# float32 direction records (kernels/cells_f32.py)
FL_WX, FL_WH, FL_B, FL_B2, FL_PEEP, FL_PROJ, FL_BPROJ, FL_STATE = 0, 1, 2, 3, 4, 5, 6, 7
FL_CELL_CLIP, FL_PROJ_CLIP = 8, 9   # LSTM clip bounds as float32 bits (0.0 = none)
FL_LEN = 10
FD_W, FD_B, FD_ACT = 0, 1, 2
FD_LEN = 3
