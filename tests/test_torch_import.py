"""from_torch + gate_order, checked against PyTorch itself through the float64 reference (tests/naive.py)."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import edgelstm  # noqa: E402
from edgelstm.errors import ImportModelError  # noqa: E402
from edgelstm.export import from_torch  # noqa: E402
from edgelstm.export import gate_order  # noqa: E402
from naive import ref_forward_f64  # noqa: E402

B, T, F = 3, 200, 5
VAR_LENGTHS = [200, 137, 1]


# ---- gate order ----

def _labelled(order: str, *, rows_per_gate: int = 2, cols: int = 3) -> np.ndarray:
    """Rows filled with the ASCII code of their gate letter, so the result can be read back by letter."""
    return np.concatenate([np.full((rows_per_gate, cols), ord(g), dtype=np.float32) for g in order])


def _letters(arr: np.ndarray, *, rows_per_gate: int = 2) -> str:
    return "".join(chr(int(arr[r, 0])) for r in range(0, arr.shape[0], rows_per_gate))


@pytest.mark.parametrize("src, kind, expected", [
    (gate_order.TORCH_LSTM, "lstm", "ifgo"),
    (gate_order.ONNX_LSTM, "lstm", "ifco"),    # ONNX i,o,f,c -> i,f,c(=g),o
    (gate_order.KERAS_LSTM, "lstm", "ifco"),
    (gate_order.TORCH_GRU, "gru", "rzn"),
    (gate_order.ONNX_GRU, "gru", "rzh"),       # ONNX z,r,h -> r,z,h(=n)
    (gate_order.KERAS_GRU, "gru", "rzh"),
    (gate_order.ONNX_PEEPHOLE, "peephole", "ifo"),
])
def test_reorder_gates_by_label(src, kind, expected):
    out = gate_order.reorder_gates(_labelled(src), src, kind)
    assert _letters(out) == expected


@pytest.mark.parametrize("order, kind", [
    ("iofc", "lstm"), ("ifco", "lstm"), ("ogfi", "lstm"), ("zrh", "gru"), ("nzr", "gru"), ("iof", "peephole")])
def test_gate_order_round_trip(order, kind):
    rng = np.random.default_rng(0)
    n = len(order)
    for shape in [(n * 4, 7), (n * 4,), (n * 2, 3, 2)]:
        a = rng.standard_normal(shape).astype(np.float32)
        canon = gate_order.reorder_gates(a, order, kind)
        np.testing.assert_array_equal(gate_order.from_canonical(canon, order, kind), a)
    # Keras stacks gates on the last axis.
    a = rng.standard_normal((6, n * 3))
    back = gate_order.from_canonical(gate_order.reorder_gates(a, order, kind, axis=-1), order, kind, axis=-1)
    np.testing.assert_array_equal(back, a)
    blocks = gate_order.split_gates(gate_order.reorder_gates(a.T, order, kind), kind)
    np.testing.assert_array_equal(gate_order.stack_gates(blocks, kind), gate_order.reorder_gates(a.T, order, kind))


def test_keras_last_axis_matches_transposed():
    kernel = np.random.default_rng(1).standard_normal((5, 4 * 3))  # Keras LSTM kernel (I, 4H)
    np.testing.assert_array_equal(gate_order.reorder_gates(kernel, gate_order.KERAS_LSTM, "lstm", axis=-1).T,
                                  gate_order.reorder_gates(kernel.T, gate_order.KERAS_LSTM, "lstm"))


def test_stack_gates_accepts_framework_letters():
    blocks = {g: np.full((2,), ord(g)) for g in "ifco"}  # TFLite-style: one tensor per gate, c for g
    out = gate_order.stack_gates(blocks, "lstm")
    assert [chr(int(v)) for v in out[::2]] == list("ifco")


@pytest.mark.parametrize("order, kind", [("ifg", "lstm"), ("ifgx", "lstm"), ("rzz", "gru"), ("ifgo", "conv")])
def test_bad_gate_orders_raise(order, kind):
    with pytest.raises(ImportModelError):
        gate_order.reorder_gates(np.zeros((12, 2)), order, kind)


def test_indivisible_gate_axis_raises():
    with pytest.raises(ImportModelError):
        gate_order.reorder_gates(np.zeros((10, 2)), "ifgo", "lstm")


# ---- torch helpers ----

def _cases():
    """name -> builder of a list of modules run in order (torch can't chain an RNN and a Linear in Sequential)."""
    return {
        "lstm_2layer_bidi": lambda: [nn.LSTM(F, 8, num_layers=2, bidirectional=True, batch_first=True)],
        "lstm_proj_bidi": lambda: [nn.LSTM(F, 10, num_layers=2, proj_size=4, bidirectional=True, batch_first=True)],
        "lstm_no_bias_time_major": lambda: [nn.LSTM(F, 6, bias=False)],
        "gru_2layer_bidi": lambda: [nn.GRU(F, 7, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3)],
        "rnn_tanh": lambda: [nn.RNN(F, 6, num_layers=2, nonlinearity="tanh", batch_first=True)],
        "rnn_relu_bidi": lambda: [nn.RNN(F, 6, nonlinearity="relu", bidirectional=True, batch_first=True)],
        "gru_linear_sigmoid": lambda: nn.Sequential(nn.GRU(F, 8, batch_first=True), nn.Linear(8, 3), nn.Sigmoid()),
        "stack_linear_lstm_softmax": lambda: nn.ModuleList([
            nn.Linear(F, 6), nn.Tanh(), nn.LSTM(6, 8, bidirectional=True, batch_first=True),
            nn.Linear(16, 4), nn.Softmax(dim=-1)]),
        "linear_relu_rnn_linear": lambda: [nn.Linear(F, 6), nn.ReLU(), nn.RNN(6, 5), nn.Linear(5, 2),
                                           nn.Identity()],
    }


def _build(name: str):
    torch.manual_seed(sum(map(ord, name)))
    modules = _cases()[name]()
    with torch.no_grad():
        for m in modules:
            m.eval()  # dropout off, as on device
            # Weights on a 2**-12 grid: float32 holds them exactly and the importer's float32 bias fold
            # b_ih + b_hh is exact, so the float64 comparison below sees no float32 rounding at all.
            for prm in m.parameters():
                prm.copy_(torch.round(prm * 4096) / 4096)
    return modules


def _torch_forward(modules, X: np.ndarray, *, lengths=None, initial=None):
    """Run the modules like the IR does: per-step features flow from one module to the next.

    Returns Y (B, T, O) and per recurrent module its (h_n, c_n or None).  ``X`` dtype picks float32/float64."""
    x = torch.from_numpy(X)
    finals = []
    with torch.no_grad():
        for m in modules:
            if isinstance(m, nn.RNNBase):
                inp = x if m.batch_first else x.transpose(0, 1)
                if lengths is not None:
                    inp = nn.utils.rnn.pack_padded_sequence(inp, torch.tensor(lengths), batch_first=m.batch_first,
                                                            enforce_sorted=False)
                out, hn = m(inp, initial) if initial is not None else m(inp)
                if lengths is not None:
                    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=m.batch_first, total_length=T)
                x = out if m.batch_first else out.transpose(0, 1)
                finals.append(hn if isinstance(hn, tuple) else (hn, None))
            else:
                x = m(x)
    return x.numpy(), finals


def _ir_state_of_torch(modules, finals):
    """PyTorch h_n is (num_layers * num_directions, B, H): index layer * D + d.  Map to IR layer indices."""
    expected = []  # (ir_layer, direction, h, c)
    ir_layer = 0
    it = iter(finals)
    for m in modules:
        if isinstance(m, nn.RNNBase):
            h_n, c_n = next(it)
            D = 2 if m.bidirectional else 1
            for k in range(m.num_layers):
                for d in range(D):
                    expected.append((ir_layer, d, h_n[k * D + d].numpy(),
                                     None if c_n is None else c_n[k * D + d].numpy()))
                ir_layer += 1
        elif isinstance(m, nn.Linear):
            ir_layer += 1
    return expected


def _mask(lengths):
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    return (np.arange(T)[None, :] < lengths[:, None])[..., None]


# ---- importer + reference against PyTorch in float64 ----
# Running PyTorch in float64 (a deepcopy made .double()) and comparing to ≤1e-9 checks the float64 reference
# and the importer together (gate order, bias folding, directions, packing, projection), with float32
# rounding out of the picture: any real mismatch shows up many orders of magnitude above 1e-9.

@pytest.mark.parametrize("lengths", [None, VAR_LENGTHS], ids=["full", "varlen"])
@pytest.mark.parametrize("name", list(_cases()))
def test_reference_of_imported_model_matches_torch_f64(name, lengths):
    modules = _build(name)
    spec = from_torch(modules).spec
    X = np.random.default_rng(3).standard_normal((B, T, F))
    Y_torch, finals = _torch_forward([copy.deepcopy(m).double() for m in modules], X, lengths=lengths)
    Y_ref, state_ref = ref_forward_f64(spec, X, lengths=lengths)
    mask = _mask(lengths)
    assert Y_ref.shape == Y_torch.shape
    np.testing.assert_allclose(Y_ref, Y_torch * mask, rtol=0, atol=1e-9)
    for k, d, h, c in _ir_state_of_torch(modules, finals):
        np.testing.assert_allclose(state_ref[k][d]["h"], h, rtol=0, atol=1e-9)
        if c is not None:
            np.testing.assert_allclose(state_ref[k][d]["c"], c, rtol=0, atol=1e-9)


def test_reference_initial_state_matches_torch_f64():
    m = _build("lstm_proj_bidi")[0]
    spec = from_torch(m).spec
    rng = np.random.default_rng(4)
    X = rng.standard_normal((B, T, F))
    h0 = rng.standard_normal((4, B, 4))   # (num_layers * D, B, proj_size)
    c0 = rng.standard_normal((4, B, 10))  # (num_layers * D, B, hidden_size)
    md = copy.deepcopy(m).double()
    Y_torch, _ = _torch_forward([md], X, lengths=VAR_LENGTHS, initial=(torch.from_numpy(h0), torch.from_numpy(c0)))
    init = [[{"h": h0[k * 2 + d], "c": c0[k * 2 + d]} for d in range(2)] for k in range(2)]
    Y_ref, _ = ref_forward_f64(spec, X, lengths=VAR_LENGTHS, initial_state=init)
    np.testing.assert_allclose(Y_ref, Y_torch * _mask(VAR_LENGTHS), rtol=0, atol=1e-9)


def test_imported_weights_layout():
    m = nn.LSTM(3, 4, num_layers=2, proj_size=2, bidirectional=True)
    spec = from_torch(m, input_size=3).spec
    assert [layer.input_size for layer in spec.layers] == [3, 4]
    p = spec.layers[1].directions[1]
    np.testing.assert_array_equal(p["w_proj"], m.weight_hr_l1_reverse.detach().numpy())
    np.testing.assert_array_equal(p["b_proj"], np.zeros(2, np.float32))
    np.testing.assert_allclose(p["b"], (m.bias_ih_l1_reverse + m.bias_hh_l1_reverse).detach().numpy())
    assert all(a.dtype == np.float32 for layer in spec.layers for d in layer.directions for a in d.values())
    gru = nn.GRU(3, 4)
    g = from_torch(gru).spec.layers[0]
    assert g.reset_after
    # GRU biases stay separate (b_hn is gated by r); torch's r,z,n is already canonical.
    np.testing.assert_array_equal(g.directions[0]["b_x"], gru.bias_ih_l0.detach().numpy())
    np.testing.assert_array_equal(g.directions[0]["b_h"], gru.bias_hh_l0.detach().numpy())


# ---- bad inputs ----

@pytest.mark.parametrize("modules, match", [
    (nn.Conv1d(3, 4, 3), "needs input_size"),
    ([nn.Linear(3, 4), nn.Softmax(dim=0)], "Softmax"),
    ([nn.Linear(3, 4), nn.Softmax()], "Softmax"),
    ([nn.LSTM(3, 4), nn.Softmax(dim=-1)], "Softmax"),
    ([nn.Sigmoid()], "needs input_size"),
    ([nn.Linear(3, 4), nn.Sigmoid(), nn.Embedding(3, 4)], "unsupported module"),
    ([nn.LSTM(3, 4), nn.Linear(5, 2)], "expects 5 input features"),
    ([], "no modules"),
    ("not a module", "expects torch.nn modules"),
])
def test_bad_inputs_raise(modules, match):
    with pytest.raises(ImportModelError, match=match):
        from_torch(modules)


class _UserStack(nn.Module):
    """A user's own module whose children run one after another (forward is not traced)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 5, batch_first=True)
        self.head = nn.Linear(5, 2)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.head(self.rnn(x)[0]))


def test_user_module_subclass_imports_as_its_children():
    torch.manual_seed(0)
    user = _UserStack().eval()
    model = from_torch(user)
    assert isinstance(model, edgelstm.Model)
    assert [layer.kind for layer in model.spec.layers] == ["gru", "dense"]
    X = np.random.default_rng(1).standard_normal((2, 17, 3)).astype(np.float32)
    with torch.no_grad():
        want = user(torch.from_numpy(X)).numpy()
    # float32 against float32 with different summation orders: 1e-5 leaves room for rounding only
    assert np.max(np.abs(model.run(X) - want)) <= 1e-5


def test_user_module_without_children_is_refused():
    class Empty(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ImportModelError, match="child modules in order"):
        from_torch(Empty())


def test_input_size_mismatch_raises():
    with pytest.raises(ImportModelError, match="input_size"):
        from_torch(nn.GRU(3, 4), input_size=5)


# ---- the lead's float runtime against PyTorch float32 ----

RUNTIME_CASES = ["lstm_2layer_bidi", "lstm_proj_bidi", "gru_2layer_bidi", "rnn_tanh", "rnn_relu_bidi",
                 "stack_linear_lstm_softmax", "gru_linear_sigmoid"]


@pytest.mark.parametrize("lengths", [None, VAR_LENGTHS], ids=["full", "varlen"])
@pytest.mark.parametrize("name", RUNTIME_CASES)
def test_runtime_float_matches_torch(name, lengths):
    try:
        import edgelstm
        import edgelstm.runtime as runtime
    except ImportError as e:
        pytest.skip(f"edgelstm.runtime not importable yet: {e}")
    Model = getattr(edgelstm, "Model", None) or getattr(runtime, "Model", None)
    if Model is None or not hasattr(Model, "run"):
        pytest.skip("edgelstm.Model.run not available yet")
    modules = _build(name)
    model = from_torch(modules)
    X = np.random.default_rng(5).standard_normal((B, T, F)).astype(np.float32)
    Y_torch, finals = _torch_forward(modules, X, lengths=lengths)
    Y, state = model.run(X, lengths=None if lengths is None else np.asarray(lengths), return_state=True)
    mask = _mask(lengths)
    assert np.asarray(Y).shape == Y_torch.shape
    assert np.max(np.abs(np.asarray(Y) * mask - Y_torch * mask)) <= 1e-5
    for k, d, h, c in _ir_state_of_torch(modules, finals):
        assert np.max(np.abs(np.asarray(state[k][d]["h"]) - h)) <= 1e-5
        if c is not None:
            assert np.max(np.abs(np.asarray(state[k][d]["c"]) - c)) <= 1e-5
    # Single unbatched sequence (T, F) gives the same as row 0 of the batch.
    if lengths is None:
        y0 = model.run(X[0])
        assert np.max(np.abs(np.asarray(y0) - Y_torch[0])) <= 1e-5
