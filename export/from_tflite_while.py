"""from_tflite for the TF converter's float32 sequence files of Keras ``GRU`` / ``SimpleRNN`` layers.

The converter fuses Keras LSTMs into UNIDIRECTIONAL_SEQUENCE_LSTM but writes a GRU or SimpleRNN layer as a
``WHILE`` loop over the frames: a cond subgraph (``counter < T``) and a body subgraph that is one cell step
(GATHER the frame at the counter, the cell's FULLY_CONNECTED / SPLIT / ADD / MUL / LOGISTIC / TANH ops, and a
write of the new state at the counter into the output array, lowered to SLICE / CONCATENATION). This module
reads such a file into a Model of real GRU / RNN layers (so it quantizes like any other), together with the
main graph around the loops: RESHAPE / TRANSPOSE between (1, T, F) and (T, 1, F), REVERSE_V2 on the time axis
(go_backwards), STRIDED_SLICE of the last step (return_sequences=False), and FULLY_CONNECTED heads with
LOGISTIC / TANH / SOFTMAX (through from_tflite's own Dense reader).

How a loop is recognized (nothing is taken from tensor names):
- its variables by role: int32 counters (a constant start, the body adds 1), the frame array (passed through
  unchanged, read by GATHER at a counter that starts at 0), one float state h, one output array;
- the trip count from the cond subgraph (LESS of counters against constants, LOGICAL_AND), which must equal
  the number of frames;
- the body's integer ops are evaluated as affine functions of the iteration number k and its array ops as
  row ranges, so the output array is proven to be written at row k by step k (return_sequences=True) or
  overwritten whole by a one-row array (return_sequences=False: it ends holding the last step);
- the cell ops are evaluated as affine forms over x, h and the cell's nonlinear nodes (LOGISTIC, TANH, RELU,
  products of two forms); the new state must be Keras's SimpleRNN ``act(W x + U h + b)`` (tanh or relu) or
  GRU ``z * h + (1 - z) * tanh(...)`` with the reset gate applied after (reset_after=True) or before the
  recurrent matmul, and the weights are read off the forms; the array must receive that same new state.
Anything else (IF, a WHILE that is not such a loop, a loop over an LSTM cell, int8 files) raises
``ImportModelError`` naming it.

Output relation: the Model maps (T, F) frames to per-step outputs aligned with the frames (edgelstm's
convention), starting from the zero state as each invoke of the file does. The file's output is that
sequence, or its last step where return_sequences=False (``edgelstm.topologies.many_to_one``). A
go_backwards layer becomes a ``reverse=True`` layer; Keras returns its outputs in processing order, so when
the data reach the file's output that way (the last recurrent layer sees time-reversed data) the file's
output is the Model's sequence reversed in time, ``Y[::-1]``, and for return_sequences=False ``Y[0]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgelstm.errors import ImportModelError, ModelError
from edgelstm.ir.model import GRU, RNN, ModelSpec
from edgelstm.runtime import Model

_F32, _I32, _BOOL = 0, 2, 6
# coefficients (float64 values) the body's affine forms may hold at once: a GRU of H=1024 needs ~7M
_MAX_COEFS = 1 << 25
_MAX_INDEX_VALUES = 64          # integer (index) tensors of a loop are a handful of values
_BODY_OPS = ("FULLY_CONNECTED", "ADD", "SUB", "MUL", "LOGISTIC", "TANH", "RELU", "SPLIT", "SPLIT_V", "RESHAPE",
             "GATHER", "SLICE", "CONCATENATION")
_MAIN_OPS = ("WHILE", "RESHAPE", "TRANSPOSE", "REVERSE_V2", "STRIDED_SLICE", "FULLY_CONNECTED")
_CONTROL = ("IF", "CALL", "CALL_ONCE", "STABLEHLO_WHILE", "STABLEHLO_CASE")


def _size(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _reshapes_to(want, n: int, out_shape) -> bool:
    """Does RESHAPE with the shape operand ``want`` (one -1 allowed) turn n values into ``out_shape``?"""
    want = [int(d) for d in want]
    if want.count(-1) == 1:
        rest = _size([d for d in want if d != -1])
        if rest <= 0 or n % rest:
            return False
        want[want.index(-1)] = n // rest
    return tuple(want) == tuple(out_shape) and _size(out_shape) == n


@dataclass
class _Data:
    """The data between layers of the main graph: per-step features of T frames, or only the last step."""
    layer: int          # how many layers precede it (every layer must read the one before it)
    T: int
    F: int
    last: bool          # only the file's last step (return_sequences=False, a final state)
    flipped: bool       # in reverse time order (what a go_backwards layer returns)


def import_while_graph(g, *, state=None, dense, activations) -> Model:
    """``g``: from_tflite's validated subgraph 0 of a file with several subgraphs. ``dense``: from_tflite's
    FULLY_CONNECTED (+ activation) reader; ``activations``: the activation op names it pairs with."""
    if state is not None:
        raise ImportModelError(f"{g.where}: state= applies to step graphs; this file is a sequence loop")
    return _Main(g, dense, activations).run()


class _Main:
    def __init__(self, g, dense, activations):
        self.g, self.dense, self.activations = g, dense, activations
        self.vals: dict[int, _Data] = {}
        self.layers: list = []

    def fail(self, msg):
        raise ImportModelError(f"{self.g.where}: {msg}")

    def run(self) -> Model:
        g = self.g
        for k, op in enumerate(g.ops):        # other control flow first, named whatever else is there
            if op["name"] in _CONTROL:
                self.fail(f"unsupported operator {op['name']} (operator {k}): control flow other than the WHILE "
                          f"loops of Keras GRU / SimpleRNN layers is not supported")
        if not any(op["name"] == "WHILE" for op in g.ops):
            self.fail(f"{g.model.SubgraphsLength()} subgraphs but no WHILE loop: edgelstm imports one "
                      f"subgraph, or the WHILE loops of Keras GRU / SimpleRNN layers")
        sg = g.g
        ins = [int(v) for v in sg.InputsAsNumpy()] if sg.InputsLength() else []
        outs = [int(v) for v in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
        if len(ins) != 1 or len(outs) != 1:
            self.fail(f"a sequence loop file needs one input (the frames) and one output, got {len(ins)} and "
                      f"{len(outs)}")
        x = g.tensor(ins[0], "model input")
        if x["type"] != _F32:
            self.fail(f"model input type {x['type']}: WHILE loop files are imported in float32 only")
        if len(x["shape"]) != 3 or x["shape"][0] != 1 or min(x["shape"]) < 1 or x["data"] is not None:
            self.fail(f"model input shape {x['shape']}: expected frames [1, T, F]")
        self.vals[ins[0]] = _Data(0, x["shape"][1], x["shape"][2], last=False, flipped=False)
        skip = set()
        for k, op in enumerate(g.ops):
            if k in skip:
                continue
            name, where = op["name"], f"operator {k} ({op['name']})"
            if name not in _MAIN_OPS:
                self.fail(f"unsupported operator {name} (operator {k}); around WHILE loops edgelstm imports "
                          f"{', '.join(_MAIN_OPS)}, and {', '.join(self.activations)} after a FULLY_CONNECTED")
            if not op["inputs"] or not op["outputs"]:
                self.fail(f"{where}: missing inputs or outputs")
            if name == "WHILE":
                self.loop(op, k, where)
            elif name == "FULLY_CONNECTED":
                nxt = g.ops[k + 1] if k + 1 < len(g.ops) else None
                act = nxt if nxt is not None and nxt["name"] in self.activations and \
                    nxt["inputs"][:1] == op["outputs"][:1] else None
                if act is not None:
                    skip.add(k + 1)
                self.fully_connected(op, k, where, act)
            else:
                self.layout_op(op, where)
        v = self.vals.get(outs[0])
        if v is None or v.layer != len(self.layers) or not self.layers:
            self.fail("the graph output is not the output of the layer chain")
        try:
            return Model(ModelSpec(layers=self.layers))
        except ModelError as e:
            raise ImportModelError(f"{g.where}: {e}") from None

    # ------------------------------------------------------------------ the data chain
    def data(self, i: int, where: str) -> _Data:
        v = self.vals.get(i)
        if v is None or v.layer != len(self.layers):
            self.fail(f"{where}: reads tensor {i}, which is not the current output of the layer chain (edgelstm "
                      f"imports a chain of layers)")
        return v

    def put(self, i: int, v: _Data, where: str) -> None:
        """Record v as tensor i after checking the file's declared shape holds it."""
        shape = self.g.tensor(i, f"{where} output")["shape"]
        lead = _size(shape[:-1]) if shape else 0
        if not shape or shape[-1] != v.F or lead != (1 if v.last else v.T) or sum(d != 1 for d in shape[:-1]) > 1:
            self.fail(f"{where}: output shape {shape} is not {'one step' if v.last else f'{v.T} steps'} of "
                      f"{v.F} features")
        self.vals[i] = v

    def const_ints(self, i: int, what: str) -> np.ndarray:
        t = self.g.tensor(i, what)
        if t["data"] is None or t["type"] != _I32 or t["data"].size > _MAX_INDEX_VALUES:
            self.fail(f"{what}: expected a small constant int32 tensor")
        return t["data"].ravel().astype(np.int64)

    def layout_op(self, op, where):
        """RESHAPE / TRANSPOSE between batch-1 layouts, REVERSE_V2 on the time axis, STRIDED_SLICE of the last
        step: each keeps the features of every step (or picks the last one)."""
        name, ins, out = op["name"], op["inputs"], op["outputs"][0]
        v = self.data(ins[0], where)
        shape = self.g.tensor(ins[0], f"{where} input")["shape"]
        if name == "RESHAPE":
            new = self.g.tensor(out, f"{where} output")["shape"]
            if len(ins) != 2 or not _reshapes_to(self.const_ints(ins[1], f"{where} shape"), _size(shape), new):
                self.fail(f"{where}: the shape operand does not give the output shape {new}")
            self.put(out, v, where)     # a reshape keeping the last axis: put() checks it
        elif name == "TRANSPOSE":
            perm = self.const_ints(ins[1], f"{where} perm") if len(ins) > 1 else np.zeros(0)
            if sorted(perm.tolist()) != list(range(len(shape))) or perm[-1] != len(shape) - 1:
                self.fail(f"{where}: permutation {perm.tolist()} moves the feature axis")
            if tuple(self.g.tensor(out, f"{where} output")["shape"]) != tuple(shape[p] for p in perm):
                self.fail(f"{where}: output shape does not follow the permutation")
            self.put(out, v, where)     # batch 1: moving the size-1 axes keeps the element order
        elif name == "REVERSE_V2":
            axes = self.const_ints(ins[1], f"{where} axis") if len(ins) > 1 else np.zeros(0)
            if axes.size != 1 or not -len(shape) <= axes[0] < len(shape):
                self.fail(f"{where}: expected one axis")
            ax = int(axes[0]) % len(shape)
            if ax == len(shape) - 1:
                self.fail(f"{where}: reverses the feature axis")
            flip = shape[ax] != 1      # (a single step has only size-1 axes besides the features)
            self.put(out, _Data(v.layer, v.T, v.F, v.last, v.flipped != flip), where)
        else:
            self.put(out, self.strided_slice(op, v, shape, where), where)

    def strided_slice(self, op, v: _Data, shape, where) -> _Data:
        ins = op["inputs"]
        if len(ins) != 4:
            self.fail(f"{where}: expected 4 inputs")
        begin, end, strides = (self.const_ints(ins[j], f"{where} {n}") for j, n in
                               ((1, "begin"), (2, "end"), (3, "strides")))
        o = self.g.options(op, self.g.tflite.StridedSliceOptions)
        if o.EllipsisMask() or o.NewAxisMask() or (hasattr(o, "Offset") and o.Offset()):
            self.fail(f"{where}: ellipsis, new-axis and offset slices are not supported")
        if not len(begin) == len(end) == len(strides) == len(shape):
            self.fail(f"{where}: begin / end / strides do not match the input rank")
        picked = []
        for ax, n in enumerate(shape):
            bit = 1 << ax
            if strides[ax] != 1:        # (LiteRT slices nothing for a shrunk axis with stride -1)
                self.fail(f"{where}: stride {strides[ax]}; only stride 1 is supported")
            if o.ShrinkAxisMask() & bit:
                i = int(begin[ax]) + (n if begin[ax] < 0 else 0)
                if not 0 <= i < n:
                    self.fail(f"{where}: index {begin[ax]} outside axis {ax} of size {n}")
                picked.append(range(i, i + 1))
            else:
                start = None if o.BeginMask() & bit else int(begin[ax])
                stop = None if o.EndMask() & bit else int(end[ax])
                picked.append(range(n)[slice(start, stop, int(strides[ax]))])
        lead = [(n, r) for n, r in zip(shape[:-1], picked[:-1]) if n != 1]
        if picked[-1] != range(shape[-1]) or any(r != range(1) for n, r in zip(shape[:-1], picked[:-1]) if n == 1):
            self.fail(f"{where}: only whole steps can be sliced")
        if not lead or lead[0][1] == range(lead[0][0]):
            return v                                   # every step (or a single one) kept
        if lead[0][1] == range(lead[0][0] - 1, lead[0][0]):
            return _Data(v.layer, v.T, v.F, True, v.flipped)
        self.fail(f"{where}: selects steps {lead[0][1]} of {lead[0][0]}; only the last step is supported")

    def fully_connected(self, op, k, where, act):
        v = self.data(op["inputs"][0], where)
        w = self.g.tensor(op["inputs"][1], f"{where} weights") if len(op["inputs"]) > 1 else {"shape": ()}
        if len(w["shape"]) != 2 or w["shape"][1] != v.F:
            self.fail(f"{where}: weights {w['shape']} do not apply to each step's {v.F} features")
        layer, _, _ = self.dense(self.g, op, k, False, act)
        out = act["outputs"][0] if act is not None else op["outputs"][0]
        self.layers.append(layer)
        self.put(out, _Data(len(self.layers), v.T, layer.output_size, v.last, v.flipped), where)

    def loop(self, op, k, where):
        loop = _Loop(self.g, op, where)
        v = self.data(op["inputs"][loop.frames_pos], where)
        if v.last:
            self.fail(f"{where}: loops over a single step")
        layer, seq_pos, state_pos = loop.build(v.T, v.F, reverse=v.flipped)
        self.layers.append(layer)
        outs = op["outputs"]
        H = layer.hidden_size
        if outs[seq_pos] >= 0:
            self.put(outs[seq_pos], _Data(len(self.layers), v.T, H, loop.last_only, v.flipped), where)
        if outs[state_pos] >= 0:
            self.put(outs[state_pos], _Data(len(self.layers), v.T, H, True, v.flipped), where)


# ---------------------------------------------------------------------- loop bodies
class _Int:
    """An int32 tensor whose values are affine in the iteration number k: a * k + c (elementwise)."""

    def __init__(self, a, c, shape):
        self.a, self.c, self.shape = np.asarray(a, np.int64).ravel(), np.asarray(c, np.int64).ravel(), tuple(shape)

    def scalar(self):
        return (int(self.a[0]), int(self.c[0])) if self.a.size == 1 else None


class _Lin:
    """A float tensor as an affine form: sum over symbols s of coef[s] @ value(s), plus const (flattened)."""

    def __init__(self, n: int, terms: dict, const):
        self.n, self.terms, self.const = n, terms, np.asarray(const, np.float64)


@dataclass
class _Rows:
    """A loop array (N, 1, W) as row pieces: ("old", start, length) rows of the array the body received (start
    and length are (a, c) affine in k), or ("new", form) one row written by this step."""
    pieces: list
    fresh: bool = False   # the body's array input itself (only that can be sliced)


class _Cond:
    """Trip-count constraints: k < bound for each entry."""

    def __init__(self, bounds):
        self.bounds = bounds


class _Loop:
    def __init__(self, g, op, where):
        self.g, self.op, self.where = g, op, where
        opts = g.options(op, g.tflite.WhileOptions)
        n_sub = g.model.SubgraphsLength()
        ci, bi = opts.CondSubgraphIndex(), opts.BodySubgraphIndex()
        if not (0 < ci < n_sub and 0 < bi < n_sub and ci != bi):
            self.fail(f"cond / body subgraphs {ci} / {bi} out of range")
        self.cond, self.body = g.subgraph(ci), g.subgraph(bi)
        n = len(op["inputs"])
        io = [len(op["outputs"])]
        for sub in (self.cond, self.body):
            io.append(sub.g.InputsLength())
        io.append(self.body.g.OutputsLength())
        if any(m != n for m in io) or self.cond.g.OutputsLength() != 1:
            self.fail("its inputs, outputs and the cond / body subgraph inputs and outputs do not match")
        self.b_in = [int(v) for v in self.body.g.InputsAsNumpy()]
        self.b_out = [int(v) for v in self.body.g.OutputsAsNumpy()]
        self.c_in = [int(v) for v in self.cond.g.InputsAsNumpy()]
        for t in self.b_in + self.b_out:
            self.body.tensor(t, "body input/output")
        # loop variables by role
        self.counters, self.floats = {}, []
        for j, (m, b) in enumerate(zip(op["inputs"], self.b_in)):
            mt = g.tensor(m, f"loop input {j}")
            bt = self.body.tensor(b, f"body input {j}")
            if mt["type"] != bt["type"] or tuple(mt["shape"]) != tuple(bt["shape"]):
                self.fail(f"loop input {j}: type or shape differs from the body's")
            if bt["type"] == _I32 and _size(bt["shape"]) == 1:
                if mt["data"] is None:
                    self.fail(f"loop counter {j} does not start at a constant")
                self.counters[j] = int(mt["data"].ravel()[0])
            elif bt["type"] == _F32:
                self.floats.append(j)
            else:
                self.fail(f"loop input {j}: type {bt['type']} shape {bt['shape']} is not a counter or a float "
                          f"tensor")
        invariant = [j for j in self.floats if self.b_out[j] == self.b_in[j]]
        if len(invariant) != 1:
            self.fail(f"expected one loop-invariant float input (the frames), got {len(invariant)}")
        self.frames_pos = invariant[0]
        carried = [j for j in self.floats if j != self.frames_pos]
        rank3 = [j for j in carried if len(self.body.tensor(self.b_in[j], "body input")["shape"]) == 3]
        states = [j for j in carried if j not in rank3]
        if len(states) == 2 and len(rank3) == 1:
            self.fail("it carries two states (an LSTM cell?): the converter fuses keras.layers.LSTM into "
                      "UNIDIRECTIONAL_SEQUENCE_LSTM, which from_tflite reads; RNN(LSTMCell) loops are not supported")
        if len(states) != 1 or len(rank3) != 1:
            self.fail(f"carries {len(states)} state tensor(s) and {len(rank3)} output array(s); edgelstm "
                      f"recognizes Keras GRU / SimpleRNN loops (one state, one output array)")
        self.state_pos, self.seq_pos = states[0], rank3[0]
        self.last_only = False

    def fail(self, msg):
        raise ImportModelError(f"{self.g.where}: {self.where}: not a Keras GRU / SimpleRNN loop: {msg}")

    # ------------------------------------------------------------------ build
    def build(self, T: int, F: int, *, reverse: bool):
        """(GRU or RNN layer, output position of the sequence array, of the final state)."""
        frames = self.g.tensor(self.op["inputs"][self.frames_pos], "loop frames")
        if tuple(frames["shape"]) != (T, 1, F):
            self.fail(f"frames of shape {frames['shape']}, expected ({T}, 1, {F})")
        trip = self.trip_count()
        if trip != T:
            self.fail(f"runs {trip} iterations over {T} frames")
        h0 = self.g.tensor(self.op["inputs"][self.state_pos], "initial state")
        if h0["data"] is None or np.any(h0["data"] != 0):
            self.fail("the initial state is not a constant zero (a non-zero or fed initial state is not "
                      "supported)")
        ev = _Body(self, F)
        h_new, rows, N = ev.run()
        H = ev.sym_size(ev.h)
        if N == T and [p[0] for p in rows] == ["old", "new", "old"] and rows[0][1:] == ((0, 0), (1, 0)) and \
                rows[2][1:] == ((1, 1), (-1, N - 1)):
            written = rows[1][1]
        elif N == 1 and [p[0] for p in rows] == ["new"]:
            written = rows[0][1]
            self.last_only = T > 1
        else:
            self.fail(f"the output array (rows {N}) is not written at the step's row (return_sequences=True) "
                      f"or overwritten whole (return_sequences=False): {ev.describe_rows(rows)}")
        if not ev.same(written, h_new):
            self.fail("the step writes something other than its new state into the output array")
        layer = _cell(ev, h_new, F, H, reverse, self.fail)
        return layer, self.seq_pos, self.state_pos

    def trip_count(self) -> int:
        vals = {t: _Int(1, self.counters[j], ()) for j, t in enumerate(self.c_in) if j in self.counters}
        ev = _IntEval(self.cond, vals, self.fail, "cond")
        for k, op in enumerate(self.cond.ops):
            ev.op(op, k)
        out = ev.vals.get(int(self.cond.g.OutputsAsNumpy()[0]))
        if not isinstance(out, _Cond):
            self.fail("the cond subgraph is not a comparison of counters with constants")
        return max(0, min(out.bounds))


class _IntEval:
    """Integer (index) ops, and the cond's comparisons, as affine functions of k."""

    def __init__(self, sub, vals, fail, what):
        self.sub, self.vals, self.fail, self.what = sub, vals, fail, what

    def get(self, i, where):
        if i in self.vals:
            return self.vals[i]
        t = self.sub.tensor(i, where)
        if t["data"] is not None and t["type"] == _I32:
            if t["data"].size > _MAX_INDEX_VALUES:
                self.fail(f"{where}: an integer constant of {t['data'].size} values")
            self.vals[i] = _Int(np.zeros(t["data"].size), t["data"], t["shape"])
            return self.vals[i]
        if t["data"] is not None and t["type"] == _F32:
            return t["data"]
        self.fail(f"{where}: tensor {i} is not computed before it is read, nor a constant")

    def op(self, op, k) -> bool:
        """Evaluate an integer / cond op; False if it is not one (a float op for the caller)."""
        name, ins, outs = op["name"], op["inputs"], op["outputs"]
        where = f"{self.what} operator {k} ({name})"
        if name in ("LESS", "LOGICAL_AND"):
            if len(ins) != 2 or len(outs) != 1:
                self.fail(f"{where}: expected 2 inputs and 1 output")
            a, b = (self.get(i, where) for i in ins)
            if name == "LESS" and isinstance(a, _Int) and isinstance(b, _Int) and a.scalar() and b.scalar() \
                    and a.scalar()[0] == 1 and b.scalar()[0] == 0:
                self.vals[outs[0]] = _Cond([b.scalar()[1] - a.scalar()[1]])
            elif name == "LOGICAL_AND" and isinstance(a, _Cond) and isinstance(b, _Cond):
                self.vals[outs[0]] = _Cond(a.bounds + b.bounds)
            else:
                self.fail(f"{where}: not a counter compared with a constant")
            return True
        if name not in ("ADD", "SUB", "RESHAPE", "CONCATENATION") or not ins or len(outs) != 1:
            return False
        t_out = self.sub.tensor(outs[0], f"{where} output")
        if t_out["type"] != _I32:
            return False
        vals = [self.get(i, where) for i in (ins[:1] if name == "RESHAPE" else ins)]
        if not all(isinstance(v, _Int) for v in vals):
            self.fail(f"{where}: integer operands expected")
        if name in ("ADD", "SUB"):
            a, b = vals
            if a.a.size != b.a.size and 1 not in (a.a.size, b.a.size):
                self.fail(f"{where}: operand sizes {a.a.size} and {b.a.size}")
            s = -1 if name == "SUB" else 1
            if self.fused(op, name):
                self.fail(f"{where}: a fused activation on an index")
            res = _Int(a.a + s * b.a, a.c + s * b.c, t_out["shape"])
        elif name == "RESHAPE":
            self.check_reshape(op, vals[0].a.size, where)
            res = _Int(vals[0].a, vals[0].c, t_out["shape"])
        else:
            if len({len(v.shape) for v in vals}) != 1 or len(vals[0].shape) != 1:
                self.fail(f"{where}: only 1-D index vectors are concatenated")
            res = _Int(np.concatenate([v.a for v in vals]), np.concatenate([v.c for v in vals]), t_out["shape"])
        if res.a.size != _size(t_out["shape"]) or res.a.size > _MAX_INDEX_VALUES:
            self.fail(f"{where}: computes {res.a.size} values for shape {t_out['shape']}")
        self.vals[outs[0]] = res
        return True

    def check_reshape(self, op, n: int, where) -> None:
        want = self.get(op["inputs"][1], where) if len(op["inputs"]) == 2 else None
        out_shape = self.sub.tensor(op["outputs"][0], f"{where} output")["shape"]
        if not isinstance(want, _Int) or np.any(want.a) or not _reshapes_to(want.c, n, out_shape):
            self.fail(f"{where}: the shape operand does not give the output shape {out_shape}")

    def fused(self, op, name) -> int:
        table = op["op"].BuiltinOptions()
        if table is None:
            return 0
        T = self.sub.tflite
        o = {"ADD": T.AddOptions, "SUB": T.SubOptions, "MUL": T.MulOptions,
             "FULLY_CONNECTED": T.FullyConnectedOptions}[name]()
        o.Init(table.Bytes, table.Pos)
        return int(o.FusedActivationFunction())


class _Body(_IntEval):
    """Evaluates one loop body: index ops as _Int, the frame read as symbol x, the state as symbol h, the cell
    ops as affine forms (_Lin) over symbols, the array ops as _Rows."""

    def __init__(self, loop: _Loop, F: int):
        self.loop = loop
        body = loop.body
        vals = {loop.b_in[j]: _Int(1, s, ()) for j, s in loop.counters.items()}
        super().__init__(body, vals, loop.fail, "body")
        self.F = F
        self.sym = []                       # [op, size, args]
        self.n_coefs = 0
        self.frames = loop.b_in[loop.frames_pos]
        self.x = None
        st = body.tensor(loop.b_in[loop.state_pos], "state")
        if len(st["shape"]) != 2 or st["shape"][0] != 1:
            self.fail(f"state of shape {st['shape']}, expected (1, H)")
        self.h = self.new_sym("h", st["shape"][1], [])
        self.vals[loop.b_in[loop.state_pos]] = self.ident(self.h)
        arr = body.tensor(loop.b_in[loop.seq_pos], "output array")
        N, one, W = arr["shape"]
        if one != 1 or W != self.sym_size(self.h):
            self.fail(f"output array of shape {arr['shape']}, expected (N, 1, {self.sym_size(self.h)})")
        self.N = N
        self.vals[loop.b_in[loop.seq_pos]] = _Rows([("old", (0, 0), (0, N))], fresh=True)

    # ------------------------------------------------------------------ symbols and forms
    def new_sym(self, op, size, args) -> int:
        self.sym.append([op, size, args])
        return len(self.sym) - 1

    def sym_size(self, s) -> int:
        return self.sym[s][1]

    def budget(self, *arrays, n: int = 0):
        self.n_coefs += n + sum(a.size for a in arrays)
        if self.n_coefs > _MAX_COEFS:
            self.fail(f"the loop body is too large to analyze (over {_MAX_COEFS} coefficients)")

    def ident(self, s) -> _Lin:
        n = self.sym_size(s)
        m = np.eye(n)
        self.budget(m)
        return _Lin(n, {s: m}, np.zeros(n))

    def lin(self, v, n, where) -> _Lin:
        """v as a form of n values: a form of that size, or a float constant of n or 1 values."""
        if isinstance(v, _Lin):
            if v.n != n:
                self.fail(f"{where}: operand of {v.n} values where {n} are expected (broadcasting is not "
                          f"supported)")
            return v
        if isinstance(v, np.ndarray) and v.dtype == np.float32 and v.size in (1, n):
            return _Lin(n, {}, np.broadcast_to(v.ravel().astype(np.float64), (n,)).copy())
        self.fail(f"{where}: expected a float tensor of {n} values")

    def add(self, a: _Lin, b: _Lin, sign: float) -> _Lin:
        terms = dict(a.terms)
        for s, m in b.terms.items():
            terms[s] = terms[s] + sign * m if s in terms else sign * m
            self.budget(terms[s])
        return _Lin(a.n, terms, a.const + sign * b.const)

    def scale(self, a: _Lin, v: np.ndarray) -> _Lin:
        terms = {s: v[:, None] * m for s, m in a.terms.items()}
        self.budget(*terms.values())
        return _Lin(a.n, terms, a.const * v)

    def rows(self, a: _Lin, lo: int, hi: int) -> _Lin:
        terms = {s: m[lo:hi].copy() for s, m in a.terms.items()}
        self.budget(*terms.values())
        return _Lin(hi - lo, terms, a.const[lo:hi].copy())

    def node(self, op, a: _Lin, *more) -> _Lin:
        return self.ident(self.new_sym(op, a.n, [a, *more]))

    def symbol_of(self, a: _Lin, *, coef: float = 1.0, const: float = 0.0):
        """s if a == coef * s + const (elementwise, one symbol), else None."""
        if len(a.terms) != 1 or not np.all(a.const == const):
            return None
        (s, m), = a.terms.items()
        if m.shape != (a.n, a.n) or not np.array_equal(m, coef * np.eye(a.n)):
            return None
        return s

    def same(self, a, b) -> bool:
        return isinstance(a, _Lin) and isinstance(b, _Lin) and a.n == b.n and set(a.terms) == set(b.terms) and \
            np.array_equal(a.const, b.const) and all(np.array_equal(a.terms[s], b.terms[s]) for s in a.terms)

    def describe_rows(self, rows) -> str:
        return " + ".join(f"old[{p[1][0]}k{p[1][1]:+d} : +{p[2][0]}k{p[2][1]:+d}]" if p[0] == "old" else "new"
                          for p in rows)

    # ------------------------------------------------------------------ ops
    def get_float(self, i, where):
        v = self.get(i, where)
        if isinstance(v, _Int):
            self.fail(f"{where}: integer tensor {i} used as a float")
        return v

    def run(self):
        for k, op in enumerate(self.sub.ops):
            name = op["name"]
            where = f"body operator {k} ({name})"
            if name not in _BODY_OPS:
                self.fail(f"unsupported operator {name} in the loop body (operator {k})")
            if not op["inputs"] or not op["outputs"]:
                self.fail(f"{where}: missing inputs or outputs")
            if self.op(op, k):
                continue
            getattr(self, "op_" + name.lower())(op, where)
        b_out = self.loop.b_out
        for j, s in self.loop.counters.items():
            v = self.vals.get(b_out[j])
            if not isinstance(v, _Int) or v.scalar() != (1, s + 1):
                self.fail(f"counter {j} does not go up by 1 per iteration")
        if self.x is None:
            self.fail("the body does not read the frame at the counter")
        h_new = self.vals.get(b_out[self.loop.state_pos])
        if not isinstance(h_new, _Lin) or h_new.n != self.sym_size(self.h):
            self.fail("the body does not compute a new state")
        rows = self.vals.get(b_out[self.loop.seq_pos])
        if isinstance(rows, _Lin) and self.N == 1:
            rows = _Rows([("new", rows)])
        if not isinstance(rows, _Rows):
            self.fail("the body does not write the output array")
        return h_new, rows.pieces, self.N

    def op_gather(self, op, where):
        ins = op["inputs"]
        o = self.sub.options(op, self.sub.tflite.GatherOptions)
        if len(ins) != 2 or ins[0] != self.frames or o.Axis() != 0 or o.BatchDims() != 0:
            self.fail(f"{where}: only the frame array is read, one frame at a time")
        idx = self.get(ins[1], where)
        if not isinstance(idx, _Int) or idx.scalar() != (1, 0) or idx.shape not in ((), (1,)):
            self.fail(f"{where}: the frame index is not the iteration number (a counter from 0)")
        t = self.sub.tensor(ins[0], f"{where} frames")
        if t["shape"][1:] != (1, self.F):
            self.fail(f"{where}: frames of shape {t['shape']}")
        if self.x is None:
            self.x = self.new_sym("x", self.F, [])
        self.vals[op["outputs"][0]] = self.ident(self.x)

    def out_size(self, op, where) -> int:
        return _size(self.sub.tensor(op["outputs"][0], f"{where} output")["shape"])

    def activation(self, v: _Lin, f: int, where) -> _Lin:
        if f == 0:
            return v
        if f == 1:
            return self.node("RELU", v)
        self.fail(f"{where}: fused activation {f} is not supported (none or RELU)")

    def op_fully_connected(self, op, where):
        ins = op["inputs"] + [-1, -1]
        a = self.get_float(ins[0], where)
        if not isinstance(a, _Lin):
            self.fail(f"{where}: input is a constant")
        w = self.sub.tensor(ins[1], f"{where} weights")
        if w["data"] is None or w["type"] != _F32 or len(w["shape"]) != 2 or w["shape"][1] != a.n:
            self.fail(f"{where}: weights must be a constant float32 (N, {a.n}) tensor, got {w['shape']}")
        W = w["data"].astype(np.float64)
        N = W.shape[0]
        b = np.zeros(N)
        if ins[2] >= 0:
            bt = self.sub.tensor(ins[2], f"{where} bias")
            if bt["data"] is None or bt["type"] != _F32 or bt["data"].size != N:
                self.fail(f"{where}: bias must be a constant float32 ({N},) tensor")
            b = bt["data"].ravel().astype(np.float64)
        terms = {}
        for s, m in a.terms.items():
            self.budget(n=N * m.shape[1])
            eye = m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0]))
            terms[s] = W.copy() if eye else W @ m
        res = _Lin(N, terms, W @ a.const + b)
        if N != self.out_size(op, where):
            self.fail(f"{where}: output size differs from the weights'")
        self.vals[op["outputs"][0]] = self.activation(res, self.fused(op, "FULLY_CONNECTED"), where)

    def binary(self, op, where):
        if len(op["inputs"]) != 2 or len(op["outputs"]) != 1:
            self.fail(f"{where}: expected 2 inputs and 1 output")
        n = self.out_size(op, where)
        a, b = (self.get_float(i, where) for i in op["inputs"])
        if not isinstance(a, _Lin) and not isinstance(b, _Lin):
            self.fail(f"{where}: two constants")
        return self.lin(a, n, where), self.lin(b, n, where)

    def op_add(self, op, where):
        a, b = self.binary(op, where)
        self.vals[op["outputs"][0]] = self.activation(self.add(a, b, 1.0), self.fused(op, "ADD"), where)

    def op_sub(self, op, where):
        a, b = self.binary(op, where)
        self.vals[op["outputs"][0]] = self.activation(self.add(a, b, -1.0), self.fused(op, "SUB"), where)

    def op_mul(self, op, where):
        a, b = self.binary(op, where)
        if not a.terms:
            res = self.scale(b, a.const)
        elif not b.terms:
            res = self.scale(a, b.const)
        else:
            res = self.node("MUL", a, b)
        self.vals[op["outputs"][0]] = self.activation(res, self.fused(op, "MUL"), where)

    def unary(self, op, where) -> _Lin:
        a = self.get_float(op["inputs"][0], where)
        if not isinstance(a, _Lin) or len(op["outputs"]) != 1:
            self.fail(f"{where}: expected one computed input and one output")
        if a.n != self.out_size(op, where):
            self.fail(f"{where}: input and output sizes differ")
        return a

    def op_logistic(self, op, where):
        self.vals[op["outputs"][0]] = self.node("LOGISTIC", self.unary(op, where))

    def op_tanh(self, op, where):
        self.vals[op["outputs"][0]] = self.node("TANH", self.unary(op, where))

    def op_relu(self, op, where):
        self.vals[op["outputs"][0]] = self.node("RELU", self.unary(op, where))

    def op_reshape(self, op, where):           # float reshapes (integer ones are _IntEval's)
        a = self.get_float(op["inputs"][0], where)
        if not isinstance(a, _Lin):
            self.fail(f"{where}: expected a computed tensor")
        self.check_reshape(op, a.n, where)
        self.vals[op["outputs"][0]] = a

    def split_parts(self, op, where, a: _Lin, axis_i: int, sizes) -> None:
        t = self.sub.tensor(op["inputs"][1 if op["name"] == "SPLIT" else 0], f"{where} input")
        axis = self.get(axis_i, where)
        shape = t["shape"]
        if not isinstance(axis, _Int) or axis.a.size != 1 or axis.a[0] != 0 or not shape or \
                int(axis.c[0]) % len(shape) != len(shape) - 1 or _size(shape[:-1]) != 1:
            self.fail(f"{where}: only a split along the last axis of a one-step tensor")
        if sum(sizes) != a.n or len(sizes) != len(op["outputs"]) or min(sizes) < 0:
            self.fail(f"{where}: split sizes {sizes} do not add up to {a.n}")
        lo = 0
        for o, n in zip(op["outputs"], sizes):
            self.vals[o] = self.rows(a, lo, lo + n)
            lo += n

    def op_split(self, op, where):
        if len(op["inputs"]) != 2:
            self.fail(f"{where}: expected 2 inputs")
        a = self.get_float(op["inputs"][1], where)
        if not isinstance(a, _Lin):
            self.fail(f"{where}: splits a constant")
        n = len(op["outputs"])
        if a.n % n:
            self.fail(f"{where}: {a.n} values do not split into {n} equal parts")
        self.split_parts(op, where, a, op["inputs"][0], [a.n // n] * n)

    def op_split_v(self, op, where):
        if len(op["inputs"]) != 3:
            self.fail(f"{where}: expected 3 inputs")
        a = self.get_float(op["inputs"][0], where)
        sizes = self.get(op["inputs"][1], where)
        if not isinstance(a, _Lin) or not isinstance(sizes, _Int) or np.any(sizes.a != 0):
            self.fail(f"{where}: expected a computed input and constant sizes")
        s = [int(v) for v in sizes.c]
        if s.count(-1) == 1:
            s[s.index(-1)] = a.n - (sum(s) + 1)
        self.split_parts(op, where, a, op["inputs"][2], s)

    def op_slice(self, op, where):
        ins = op["inputs"]
        if len(ins) != 3:
            self.fail(f"{where}: expected 3 inputs")
        arr = self.get(ins[0], where)
        begin, size = self.get(ins[1], where), self.get(ins[2], where)
        if not isinstance(arr, _Rows) or not arr.fresh:
            self.fail(f"{where}: only the loop's output array is sliced")
        if not isinstance(begin, _Int) or not isinstance(size, _Int) or begin.a.size != 3 or size.a.size != 3:
            self.fail(f"{where}: begin and size must be 3 integer values")
        W = self.sym_size(self.h)
        for ax, full in ((1, 1), (2, W)):
            if begin.a[ax] or begin.c[ax] or size.a[ax] or size.c[ax] not in (-1, full):
                self.fail(f"{where}: slices inside a row")
        start = (int(begin.a[0]), int(begin.c[0]))
        length = (-start[0], self.N - start[1]) if (size.a[0], size.c[0]) == (0, -1) else \
            (int(size.a[0]), int(size.c[0]))
        self.vals[op["outputs"][0]] = _Rows([("old", start, length)])

    def op_concatenation(self, op, where):
        o = self.sub.options(op, self.sub.tflite.ConcatenationOptions)
        out_shape = self.sub.tensor(op["outputs"][0], f"{where} output")["shape"]
        if o.FusedActivationFunction():
            self.fail(f"{where}: a fused activation is not supported")
        axis = o.Axis() % max(1, len(out_shape))
        parts = [self.get_float(i, where) for i in op["inputs"]]
        if len(out_shape) == 3 and axis == 0:            # rows of the output array
            pieces = []
            for i, p in zip(op["inputs"], parts):
                if isinstance(p, _Rows):
                    pieces += p.pieces
                elif isinstance(p, _Lin) and tuple(self.sub.tensor(i, where)["shape"]) == (1, 1, self.sym_size(self.h)):
                    pieces.append(("new", p))
                else:
                    self.fail(f"{where}: an operand is neither array rows nor one row")
            self.vals[op["outputs"][0]] = _Rows(pieces)
            return
        if axis != len(out_shape) - 1 or _size(out_shape[:-1]) != 1 or not all(isinstance(p, _Lin) for p in parts):
            self.fail(f"{where}: only a concatenation of computed tensors along the last axis")
        terms = {}
        n = sum(p.n for p in parts)
        for s in {s for p in parts for s in p.terms}:
            terms[s] = np.concatenate([p.terms.get(s, np.zeros((p.n, self.sym_size(s)))) for p in parts])
            self.budget(terms[s])
        self.vals[op["outputs"][0]] = _Lin(n, terms, np.concatenate([p.const for p in parts]))


# ---------------------------------------------------------------------- cells
def _cell(ev: _Body, h_new: _Lin, I: int, H: int, reverse: bool, fail):
    """The GRU / RNN layer whose step is h_new (a form over the body's symbols), or ImportModelError."""
    x, h = ev.x, ev.h

    def sym(form, op=None, **kw):
        s = ev.symbol_of(form, **kw)
        return s if s is not None and (op is None or ev.sym[s][0] in op) else None

    def coef(form: _Lin, s, cols) -> np.ndarray:
        return form.terms[s] if s in form.terms else np.zeros((form.n, cols))

    def affine_xh(form: _Lin, what) -> None:
        if not set(form.terms) <= {x, h}:
            fail(f"the {what} is not an affine function of the frame and the state")

    s = sym(h_new, ("TANH", "RELU"))
    if s is not None:                                        # SimpleRNN: act(W x + U h + b)
        L = ev.sym[s][2][0]
        affine_xh(L, "RNN pre-activation")
        layer = RNN(input_size=I, hidden_size=H, nonlinearity=ev.sym[s][0].lower(), reverse=reverse)
        layer.directions = [{"w_x": coef(L, x, I), "w_h": coef(L, h, H), "b": L.const}]
        return layer
    # GRU: h' = z * h + (1 - z) * n (Keras)
    prods = [s for s, m in h_new.terms.items() if ev.sym[s][0] == "MUL"]
    if len(h_new.terms) != 2 or len(prods) != 2 or np.any(h_new.const) or \
            any(not np.array_equal(m, np.eye(H)) for m in h_new.terms.values()):
        fail("the new state is neither act(W x + U h + b) nor z * h + (1 - z) * n")
    z = n = None
    for p in prods:
        a, b = ev.sym[p][2]
        for u, v in ((a, b), (b, a)):
            if sym(v) == h and sym(u, ("LOGISTIC",)) is not None:
                z = sym(u)
    for p in prods:
        a, b = ev.sym[p][2]
        for u, v in ((a, b), (b, a)):
            if z is not None and sym(u, coef=-1.0, const=1.0) == z and sym(v, ("TANH",)) is not None:
                n = sym(v)
    if z is None or n is None:
        fail("the new state is not z * h + (1 - z) * tanh(...) with z = sigmoid(...)")
    Lz, Ln = ev.sym[z][2][0], ev.sym[n][2][0]
    affine_xh(Lz, "update gate")
    q = [s for s in Ln.terms if s != x]
    if len(q) != 1 or ev.sym[q[0]][0] != "MUL":
        fail("the candidate is not tanh(W x + b + r * (...))")
    q = q[0]
    a, b = ev.sym[q][2]
    r = hq = None
    for u, v in ((a, b), (b, a)):
        if sym(u, ("LOGISTIC",)) is not None:
            r, hq = sym(u), v
    if r is None:
        fail("the candidate's recurrent part is not gated by a sigmoid (the reset gate)")
    Lr = ev.sym[r][2][0]
    affine_xh(Lr, "reset gate")
    C = Ln.terms[q]
    if sym(hq) == h:         # (with U = I both readings are the same function)
        reset_after, U_n, b_hn = False, C, np.zeros(H)       # tanh(W x + b + U (r * h))
    elif np.array_equal(C, np.eye(H)) and set(hq.terms) <= {h}:
        reset_after, U_n, b_hn = True, coef(hq, h, H), hq.const   # tanh(W x + b + r * (U h + b_h))
    else:
        fail("the candidate is neither tanh(W x + r * (U h + b)) nor tanh(W x + U (r * h))")
    layer = GRU(input_size=I, hidden_size=H, reset_after=reset_after, reverse=reverse)
    layer.directions = [{"w_x": np.concatenate([coef(Lr, x, I), coef(Lz, x, I), coef(Ln, x, I)]),
                         "w_h": np.concatenate([coef(Lr, h, H), coef(Lz, h, H), U_n]),
                         "b_x": np.concatenate([Lr.const, Lz.const, Ln.const]),
                         "b_h": np.concatenate([np.zeros(2 * H), b_hn])}]
    return layer
