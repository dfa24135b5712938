"""Seed topologies against PyTorch doing the same thing by hand.

Float tolerance 1e-5: our float32 kernels and PyTorch's accumulate in different orders, so results differ
by a few float32 ulps per step; 1e-5 is the contract's bound for the float path.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import edgelstm as el  # noqa: E402
from edgelstm.export import from_torch  # noqa: E402
from edgelstm.topologies import embed, encode_decode, generate, many_to_one, transfer_state  # noqa: E402

TOL = 1e-5


def _packed(module, X, lengths):
    packed = nn.utils.rnn.pack_padded_sequence(torch.from_numpy(X), torch.from_numpy(lengths), batch_first=True,
                                               enforce_sorted=False)
    with torch.inference_mode():
        out, hn = module(packed)
    y, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=X.shape[1])
    return y.numpy(), hn


def test_many_to_one_is_torch_final_hidden():
    torch.manual_seed(1)
    lstm = nn.LSTM(6, 12, num_layers=2, batch_first=True)
    X = np.random.default_rng(1).standard_normal((4, 30, 6)).astype(np.float32)
    lengths = np.array([30, 7, 19, 1])
    _, (hn, _) = _packed(lstm, X, lengths)
    got = many_to_one(from_torch(lstm), X, lengths=lengths)
    np.testing.assert_allclose(got, hn[-1].numpy(), atol=TOL)


def test_embed_last_bidirectional_matches_h_n():
    torch.manual_seed(2)
    gru = nn.GRU(5, 8, bidirectional=True, batch_first=True)
    X = np.random.default_rng(2).standard_normal((3, 25, 5)).astype(np.float32)
    lengths = np.array([25, 10, 3])
    _, hn = _packed(gru, X, lengths)
    want = torch.cat([hn[0], hn[1]], dim=-1).numpy()
    got = embed(from_torch(gru), X, lengths=lengths, pooling="last")
    np.testing.assert_allclose(got, want, atol=TOL)


def test_embed_mean_ignores_padding_and_dense_head():
    torch.manual_seed(3)
    rnn = nn.RNN(4, 9, batch_first=True)
    head = nn.Sequential(rnn, nn.Linear(9, 2), nn.Softmax(dim=-1))
    X = np.random.default_rng(3).standard_normal((2, 16, 4)).astype(np.float32)
    lengths = np.array([16, 5])
    y, _ = _packed(rnn, X, lengths)
    want = np.stack([y[b, :n].mean(axis=0) for b, n in enumerate(lengths)])
    got = embed(from_torch(head), X, lengths=lengths, pooling="mean")
    np.testing.assert_allclose(got, want, atol=TOL)


def test_generate_feeds_outputs_back_like_a_torch_loop():
    torch.manual_seed(4)
    lstm = nn.LSTM(7, 7)
    x0 = np.random.default_rng(4).standard_normal(7).astype(np.float32)
    want, state, x = [], None, torch.from_numpy(x0)[None, None]
    with torch.inference_mode():
        for _ in range(40):
            y, state = lstm(x, state)
            want.append(y[0, 0].numpy().copy())
            x = torch.tanh(y)
    got = generate(from_torch(lstm), x0, steps=40, feedback=np.tanh)
    np.testing.assert_allclose(got, np.array(want), atol=TOL)


def test_encoder_decoder_hands_final_state_over():
    torch.manual_seed(5)
    enc = nn.LSTM(6, 10, batch_first=True)
    dec_rnn = nn.LSTM(3, 10, batch_first=True)
    dec_out = nn.Linear(10, 3)
    X = np.random.default_rng(5).standard_normal((20, 6)).astype(np.float32)
    start = np.zeros(3, np.float32)
    want = []
    with torch.inference_mode():
        _, state = enc(torch.from_numpy(X)[None])
        x = torch.from_numpy(start)[None, None]
        for _ in range(12):
            h, state = dec_rnn(x, state)
            y = dec_out(h)
            want.append(y[0, 0].numpy().copy())
            x = y
    encoder = from_torch(enc)
    decoder = from_torch(nn.Sequential(dec_rnn, dec_out))
    got = encode_decode(encoder, decoder, X, steps=12, first_input=start, feedback=lambda y: y)
    np.testing.assert_allclose(got, np.array(want), atol=TOL)


def test_int8_encoder_decoder_follows_float():
    torch.manual_seed(6)
    enc = nn.GRU(6, 16, batch_first=True)
    dec = nn.Sequential(nn.GRU(4, 16), nn.Linear(16, 4), nn.Tanh())
    rng = np.random.default_rng(6)
    calib = rng.standard_normal((4, 60, 6)).astype(np.float32)
    fe, fd = from_torch(enc), from_torch(dec)
    qe = el.quantize(fe, calibration=calib)
    qd = el.quantize(fd, calibration=rng.uniform(-1, 1, (4, 60, 4)).astype(np.float32))
    X = rng.standard_normal((30, 6)).astype(np.float32)
    start = np.zeros(4, np.float32)
    yf = encode_decode(fe, fd, X, steps=20, first_input=start, feedback=lambda y: y)
    yq = encode_decode(qe, qd, X, steps=20, first_input=start, feedback=lambda y: y)
    cos = float(yf.ravel() @ yq.ravel() / (np.linalg.norm(yf) * np.linalg.norm(yq)))
    assert cos > 0.98, cos


def test_transfer_state_refuses_mismatched_layers():
    a = el.Model(el.random_model([{"kind": "lstm", "hidden_size": 8}], input_size=3))
    b = el.Model(el.random_model([{"kind": "gru", "hidden_size": 8}], input_size=3))
    with pytest.raises(el.ModelError, match="same recurrent layers"):
        transfer_state(a, b, a.zero_state())


def test_generate_rejects_bad_steps():
    m = el.Model(el.random_model([{"kind": "rnn", "hidden_size": 3}], input_size=3))
    with pytest.raises(el.InputError):
        generate(m, np.zeros(3, np.float32), steps=0, feedback=lambda y: y)
