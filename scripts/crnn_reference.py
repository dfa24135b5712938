"""The CRNN tagger's float reference, numpy only: the exported layers (train_crnn_tagger.export_layers) run one
frame at a time, as the runtime runs them.  It imports nothing from edgelstm, so that
bench/fixtures/make_litert_tagger.py, which runs in a throwaway TensorFlow venv, checks its Keras graphs against
the same reference that train_crnn_tagger and convert_crnn_tagger check PyTorch and edgelstm against."""
from __future__ import annotations

import numpy as np

FREQ_CONVS = ((1, 16, 5, 2), (16, 16, 3, 2))    # arch freqtime: (in, out, kernel, stride) over the mel axis


def freq_length(n_mels: int, convs) -> int:
    """Positions left along the mel axis after valid convs [(in, out, kernel, stride)]."""
    L = n_mels
    for _, _, k, s in convs:
        L = (L - k) // s + 1
    return L


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class StreamReference:
    """The exported model run ONE FRAME AT A TIME in numpy, as the runtime will: a context buffer of the
    previous raw frames (zeros at start), conv layers on the (L, C) view of the step's vector (flat index
    l*C + c), GRU (PyTorch gate order r, z, n; n's recurrent term inside the reset gate) or LSTM (PyTorch gate
    order i, f, g, o), Dense, sigmoid."""

    def __init__(self, W: dict, arch: str, n_mels: int, cell_clip: float = 0.0):
        self.W = {k: v.astype(np.float64) for k, v in W.items()}
        self.cell_clip = cell_clip
        self.arch, self.M = arch, n_mels
        self.strides = {"time": [1], "freq": [2, 2], "freqtime": [s for *_, s in FREQ_CONVS]}[arch]
        self.context, self.per_frame = 0, 0      # the time conv's window: previous frames, values per frame
        if arch in ("time", "freqtime"):
            w = self.W[f"conv{len(self.strides) if arch == 'freqtime' else 0}.weight"]    # (C_out, C_in, K)
            self.context, self.per_frame = w.shape[2] - 1, w.shape[1]
        self.cell = "gru" if "gru.weight_hh_l0" in self.W else "lstm"
        self.H = self.W[f"{self.cell}.weight_hh_l0"].shape[1]
        self.reset()

    def reset(self):
        self.ctx = np.zeros(self.context * self.per_frame)
        self.h = np.zeros(self.H)
        self.c = np.zeros(self.H)

    @staticmethod
    def conv1d(x_lc, w, b, stride):
        """x (L, C_in) -> (L_out, C_out), valid padding, groups=1."""
        K = w.shape[2]
        L_out = (x_lc.shape[0] - K) // stride + 1
        idx = np.arange(L_out)[:, None] * stride + np.arange(K)[None, :]
        win = x_lc[idx]                                  # (L_out, K, C_in)
        return np.einsum("lkc,ock->lo", win, w) + b

    def step(self, frame):
        x = np.asarray(frame, np.float64)
        if self.arch == "time":
            v = np.concatenate([self.ctx, x])            # ((context+1)*M,) = the last frames, oldest first
            self.ctx = v[self.M:]
            h = np.maximum(self.conv1d(v.reshape(self.context + 1, self.M), self.W["conv0.weight"],
                                       self.W["conv0.bias"], 1), 0)
        else:
            h = x.reshape(self.M, 1)
            for i, s in enumerate(self.strides):
                h = np.maximum(self.conv1d(h, self.W[f"conv{i}.weight"], self.W[f"conv{i}.bias"], s), 0)
            if self.arch == "freqtime":
                f = h.reshape(-1)
                v = np.concatenate([self.ctx, f])        # the last frames' features, oldest first
                self.ctx = v[f.size:]
                i = len(self.strides)
                h = np.maximum(self.conv1d(v.reshape(self.context + 1, f.size), self.W[f"conv{i}.weight"],
                                           self.W[f"conv{i}.bias"], 1), 0)
        f = h.reshape(-1)
        p = self.cell
        W_ih, W_hh = self.W[f"{p}.weight_ih_l0"], self.W[f"{p}.weight_hh_l0"]
        b_ih, b_hh = self.W[f"{p}.bias_ih_l0"], self.W[f"{p}.bias_hh_l0"]
        gi, gh = W_ih @ f + b_ih, W_hh @ self.h + b_hh
        H = self.H
        if p == "lstm":
            g = gi + gh
            i, fg, o = _sigmoid(g[:H]), _sigmoid(g[H:2 * H]), _sigmoid(g[3 * H:])
            self.c = fg * self.c + i * np.tanh(g[2 * H:3 * H])
            if self.cell_clip:
                self.c = np.clip(self.c, -self.cell_clip, self.cell_clip)
            self.h = o * np.tanh(self.c)
        else:
            r = _sigmoid(gi[:H] + gh[:H])
            z = _sigmoid(gi[H:2 * H] + gh[H:2 * H])
            n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
            self.h = (1 - z) * n + z * self.h
        return _sigmoid(self.W["dense.weight"] @ self.h + self.W["dense.bias"])
