"""The seed RNN topologies as small helpers over ``Model.run`` / ``Model.stream``.

many-to-one         ``many_to_one``: the output at each sequence's last valid step
aligned many-to-many ``Model.run`` itself: one output per input frame
sequence embedding  ``embed``: final hidden state of the last recurrent layer, or its mean over valid steps
one-to-many         ``generate``: a step loop that feeds each output back through a user function
encoder-decoder     ``encode_decode``: the encoder's final state becomes the decoder's initial state
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import InputError, ModelError
from .ir.model import ModelSpec
from .quant.params import QuantParams
from .runtime import Model, State


def _lengths_or_full(X: np.ndarray, lengths):
    if X.ndim == 3:
        return np.full(X.shape[0], X.shape[1]) if lengths is None else np.asarray(lengths)
    return None


def many_to_one(model: Model, X, *, lengths=None) -> np.ndarray:
    """Output at the last valid step: (O,) for (T, F) input, (B, O) for (B, T, F)."""
    X = np.asarray(X)
    Y = model.run(X, lengths=lengths)
    if X.ndim == 2:
        return Y[-1].copy()
    last = _lengths_or_full(X, lengths) - 1
    return Y[np.arange(Y.shape[0]), last]


def _recurrent_prefix(model: Model) -> Model:
    """The model cut after its last recurrent layer (embeddings come from there, not from a Dense head)."""
    layers = model.spec.layers
    last = max((k for k, l in enumerate(layers) if l.kind != "dense"), default=None)
    if last is None:
        raise ModelError("embed needs at least one recurrent layer")
    if last == len(layers) - 1:
        return model
    spec = ModelSpec(layers=layers[:last + 1], has_weights=model.spec.has_weights)
    quant = None
    if model.quant is not None:
        quant = QuantParams(act=model.quant.act[:last + 2], layers=model.quant.layers[:last + 1])
    return Model(spec, quant)


def embed(model: Model, X, *, lengths=None, pooling: str = "last") -> np.ndarray:
    """Fixed-size sequence embedding from the last recurrent layer.

    pooling="last": its final hidden state (bidirectional: [forward at the last valid step, backward at
    step 0], as PyTorch's h_n); pooling="mean": mean of its outputs over each sequence's valid steps.
    Returns (D,) for (T, F) input, (B, D) for (B, T, F); float32 (int8 models are dequantized)."""
    if pooling not in ("last", "mean"):
        raise InputError(f"pooling must be 'last' or 'mean', got {pooling!r}")
    X = np.asarray(X)
    body = _recurrent_prefix(model)
    Y, state = body.run(X, lengths=lengths, return_state=True)
    if pooling == "mean":
        if X.ndim == 2:
            return Y.mean(axis=0)
        n = _lengths_or_full(X, lengths)
        return Y.sum(axis=1) / n[:, None].astype(np.float32)
    fstate = body.state_to_float(state)
    last = fstate[len(body.spec.layers) - 1]
    return np.concatenate([d["h"] for d in last], axis=-1).astype(np.float32)


def generate(model: Model, first_input, *, steps: int, feedback: Callable[[np.ndarray], np.ndarray],
             initial_state: State | None = None) -> np.ndarray:
    """One-to-many: x_0 = first_input; y_t = step(x_t); x_{t+1} = feedback(y_t). Returns (steps, O).

    ``feedback`` maps one output frame (O,) to the next input frame (F,) (e.g. identity, one-hot of the
    argmax, or a sampler)."""
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be a positive int, got {steps!r}")
    stream = model.stream()
    if initial_state is not None:
        stream.state = initial_state
    out = np.empty((steps, model.output_size), np.float32)
    x, source = first_input, "first_input"
    for t in range(steps):
        try:
            out[t] = stream.step(x)
        except InputError as e:
            raise InputError(f"generate: {source} must be one input frame ({model.input_size},) float: "
                             f"{e}") from None
        x, source = feedback(out[t].copy()), f"feedback(y[{t}]) (it maps an output ({model.output_size},) " \
                                             f"to the next input)"
    return out


def transfer_state(encoder: Model, decoder: Model, state: State) -> State:
    """Map an encoder's final state onto a decoder with the same recurrent layers (kinds and sizes),
    requantizing through float when the two models' quantizations differ."""
    enc = [l for l in encoder.spec.layers if l.kind != "dense"]
    dec = [l for l in decoder.spec.layers if l.kind != "dense"]
    if [(l.kind, l.hidden_size, getattr(l, "proj_size", 0)) for l in enc] != \
            [(l.kind, l.hidden_size, getattr(l, "proj_size", 0)) for l in dec]:
        raise ModelError("encoder and decoder need the same recurrent layers (kind, hidden and proj sizes)")
    if decoder.spec.needs_whole_sequence:
        raise ModelError("a decoder runs step by step and cannot be bidirectional or reverse")
    fstate = encoder.state_to_float(state)
    enc_rec = [k for k, l in enumerate(encoder.spec.layers) if l.kind != "dense"]
    dec_rec = [k for k, l in enumerate(decoder.spec.layers) if l.kind != "dense"]
    out = State([[{}] for _ in decoder.spec.layers])
    for ke, kd in zip(enc_rec, dec_rec):
        dirs = fstate[ke]
        if len(dirs) == 2:  # bidirectional encoder: sum of directions, a common bridge choice
            merged = {n: dirs[0][n] + dirs[1][n] for n in dirs[0]}
        else:
            merged = dirs[0]
        out[kd] = [merged]
    return decoder.state_from_float(out)


def encode_decode(encoder: Model, decoder: Model, X, *, steps: int, first_input,
                  feedback: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Encoder-decoder for one sequence X (T, F): run the encoder, hand its final state to the decoder,
    then generate ``steps`` outputs (see ``generate``)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError("encode_decode takes one sequence (T, F)")
    _, state = encoder.run(X, return_state=True)
    return generate(decoder, first_input, steps=steps, feedback=feedback,
                    initial_state=transfer_state(encoder, decoder, state))


def prepend_context(model: Model, *, context: int, size: int) -> Model:
    """``model`` with a Context layer in front: each step takes ``size`` new values and the model sees the
    previous ``context`` values before them (kept in the stream state), as streaming audio models expect
    (silero-vad: 512 new samples + 64 of context). ``model`` must take context + size values per step."""
    from .ir.frontend import Context
    if model.input_size != context + size:
        raise ModelError(f"prepend_context: the model takes {model.input_size} values per step, not context "
                         f"{context} + size {size}")
    layers = [Context(size=size, context=context)] + list(model.spec.layers)
    spec = ModelSpec(layers=layers, has_weights=model.spec.has_weights)
    quant = None
    if model.is_quantized:     # the context keeps its input's quantization: the model's own input quantization
        quant = QuantParams(act=[model.quant.act[0]] + list(model.quant.act), layers=[[{}]] + list(model.quant.layers))
    initial = model.initial_state
    if initial is not None:
        initial = State([[{"ctx": np.zeros(context, np.float32)}]] + list(initial))
    out = Model(spec, quant, initial_state=initial)
    out.audio = model.audio
    return out
