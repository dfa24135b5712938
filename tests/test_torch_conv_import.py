"""from_torch on CNN + RNN hybrids: nn.Conv1d front ends (every option), padding modules, stand-alone activations,
the flatten order into the first matmul. Float32 against PyTorch itself (float32 rounding: tolerance 1e-5)."""
import numpy as np
import pytest

import edgelstm as el
from edgelstm.errors import ImportModelError

torch = pytest.importorskip("torch")
nn = torch.nn
from edgelstm.export import from_torch  # noqa: E402


class _CRNN(nn.Module):
    """Per step: a (channels, length) frame through convs, flattened as PyTorch does, then a GRU and a head."""

    def __init__(self, front, rnn, head, channels, length):
        super().__init__()
        self.front, self.rnn, self.head = front, rnn, head
        self.channels, self.length = channels, length

    def forward(self, x):                       # x (T, channels * length), channels-major per frame
        T = x.shape[0]
        f = self.front(x.reshape(T, self.channels, self.length)).reshape(T, -1)
        y, _ = self.rnn(f[:, None])
        return self.head(y[:, 0])


CASES = [
    # (front modules, channels, length)
    (lambda: [nn.Conv1d(1, 8, 5, stride=2, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 3, groups=8, dilation=2),
              nn.Tanh()], 1, 40),
    (lambda: [nn.ReflectionPad1d((3, 1)), nn.Conv1d(1, 6, 4, stride=3), nn.ReLU6()], 1, 32),
    (lambda: [nn.Conv1d(4, 10, 3, padding="same", padding_mode="reflect"), nn.Sigmoid(), nn.ZeroPad1d(1),
              nn.Conv1d(10, 5, 3, stride=2, bias=False)], 4, 12),
    (lambda: [nn.Conv1d(3, 12, 1), nn.Conv1d(12, 24, 3, groups=12, padding=1), nn.ReLU()], 3, 9),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_conv_front_end_matches_torch(case, rnn):
    torch.manual_seed(case)
    make, channels, length = CASES[case]
    front = nn.Sequential(*make())
    with torch.no_grad():
        n = front(torch.zeros(1, channels, length)).numel()
    recurrent = (nn.GRU if rnn == "gru" else nn.LSTM)(n, 16)
    head = nn.Sequential(nn.Linear(16, 3), nn.Sigmoid())
    model = _CRNN(front, recurrent, head, channels, length).eval()
    m = from_torch(model, input_size=channels * length)
    X = torch.randn(30, channels * length)
    with torch.no_grad():
        want = model(X).numpy()
    # edgelstm's frames are channels last: (length, channels) per step
    ours = X.reshape(30, channels, length).permute(0, 2, 1).reshape(30, -1).numpy()
    np.testing.assert_allclose(m.run(ours), want, rtol=1e-5, atol=1e-5)
    s = m.stream()
    np.testing.assert_allclose(np.stack([s.step(x).copy() for x in ours]), want, rtol=1e-5, atol=1e-5)


def test_stand_alone_activations_anywhere():
    torch.manual_seed(0)
    mods = [nn.Tanh(), nn.LSTM(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.Sigmoid(), nn.Tanh()]
    m = from_torch(mods, input_size=6)
    assert [layer.kind for layer in m.spec.layers] == ["activation", "lstm", "activation", "dense", "activation"]
    X = torch.randn(20, 6)
    with torch.no_grad():
        h, _ = mods[1](torch.tanh(X)[:, None])
        want = torch.tanh(torch.sigmoid(mods[3](torch.relu(h[:, 0])))).numpy()
    np.testing.assert_allclose(m.run(X.numpy()), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("modules, match", [
    ([nn.Conv1d(1, 4, 3, padding_mode="circular", padding=1)], "padding_mode"),
    ([nn.Conv1d(3, 6, 2, groups=3), nn.Conv1d(6, 4, 1, groups=2)], "groups"),
    ([nn.ConstantPad1d(1, 0.5)], "zero padding"),
    ([nn.Conv1d(2, 4, 3)], "split into 2 channels"),
    ([nn.Conv1d(1, 4, 30)], "longer"),
])
def test_bad_conv_modules_are_refused(modules, match):
    with pytest.raises(ImportModelError, match=match):
        from_torch(modules, input_size=9)


def test_quantized_hybrid_keeps_decisions():
    """A CRNN from PyTorch, quantized: int8 decisions agree with float on its calibration data."""
    torch.manual_seed(3)
    front = nn.Sequential(nn.Conv1d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv1d(8, 8, 3, stride=2), nn.ReLU())
    model = _CRNN(front, nn.GRU(8 * 6, 16), nn.Sequential(nn.Linear(16, 2), nn.Sigmoid()), 1, 31).eval()
    m = from_torch(model, input_size=31)
    X = np.random.default_rng(0).standard_normal((400, 31)).astype(np.float32)
    q = el.quantize(m, calibration=X, progress=False)
    assert q.fidelity.decision_agreement > 0.95
