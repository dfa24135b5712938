"""Post-training quantization of a float Model: ``quantize()`` and ``fidelity()``.

They run models (calibration observes the float model, the report compares the int8 model with it), so they sit
above the runtime; the math they use (observers, scale choice, the report type) is ``edgelstm.quant.ptq``.
"""
from __future__ import annotations

import numpy as np

from ._progress import Progress
from .errors import InputError, ModelError
from .ir.model import ModelSpec
from .quant.params import QuantParams
from .quant.ptq import FidelityReport, cosine, observe, choose_params, decisions
from .runtime import Model, State

__all__ = ["quantize", "quantize_tail", "fidelity"]


def fidelity(float_model, int8_model, X: np.ndarray, *, lengths=None) -> FidelityReport:
    spec, quant = int8_model.spec, int8_model.quant
    rep = FidelityReport(frames=int(np.prod(X.shape[:-1])))
    init = float_model.initial_state
    for k, layer in enumerate(spec.layers):
        sub = ModelSpec(layers=spec.layers[:k + 1])
        fq = QuantParams(act=quant.act[:k + 2], layers=quant.layers[:k + 1])
        sub_init = None if init is None else init[:k + 1]
        yf = Model(sub, initial_state=sub_init).run(X, lengths=lengths)
        yq = Model(sub, fq, initial_state=sub_init).run(X, lengths=lengths)
        rep.layers.append({"kind": layer.kind, "max_abs_error": float(np.abs(yf - yq).max()),
                           "cosine": cosine(yf, yq)})
        if k == len(spec.layers) - 1:
            rep.cosine = rep.layers[-1]["cosine"]
            rep.max_abs_error = rep.layers[-1]["max_abs_error"]
            act = layer.activation if layer.kind == "dense" else "none"
            df, rule = decisions(yf, act)
            dq, _ = decisions(yq, act)
            rep.decision_agreement = float(np.mean(df == dq))
            rep.decision_rule = rule
    return rep


def quantize(model, *, calibration, lengths=None, progress: bool | None = None):
    """Post-training int8 quantization of a float Model.

    calibration: (T, F) or (B, T, F) float frames representative of deployment (clips of different
    lengths: concatenate them into one (T, F) array). ``lengths`` is refused: padding would distort the
    observed ranges. Returns a new int8 Model whose ``fidelity`` attribute holds a FidelityReport measured
    on the calibration data; it keeps the float model's ``initial_state`` and ``audio`` metadata."""
    if model.is_quantized:
        raise ModelError("model is already quantized")
    if any(layer.kind == "ops" for layer in model.spec.layers):
        raise ModelError("a float op graph (an imported TFLite step graph) cannot be quantized by edgelstm: convert "
                         "the Keras model to an int8 .tflite with the TF converter and import that")
    expect = (f"(T, {model.input_size}) or (B, T, {model.input_size}) float frames; clips of different "
              f"lengths: np.concatenate them into one (T, {model.input_size}) array")
    X = model._check_frames(calibration, "calibration", expect=expect)
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3:
        raise InputError(f"calibration must be (T, F) or (B, T, F), got shape {X.shape}")
    if lengths is not None:
        raise InputError("quantize takes no lengths=: pass equal-length clips as (B, T, F), or clips of "
                         "different lengths concatenated into one (T, F) array")
    spec = model.spec
    work = X.shape[1] * sum(2 if l.bidirectional else 1 for l in spec.layers)
    # a diverging float model overflows here; choose_params turns that into a clear ModelError
    with Progress(total=work, desc="calibrating", enabled=progress) as bar, np.errstate(all="ignore"):
        inp, obs = observe(spec, X, bar, model.initial_state)
    q = choose_params(spec, inp, obs)
    qmodel = Model(spec, q, initial_state=model.initial_state)
    qmodel.audio = model.audio      # an audio tagger stays one: its front end, labels and thresholds
    qmodel.fidelity = fidelity(model, qmodel, X)
    return qmodel


def split_model(model, *, start: int | None = None):
    """(front, tail): a float Model split before layer ``start`` (default: its first recurrent layer), each part
    with its layers' share of the initial state; the front keeps the audio metadata."""
    layers = list(model.spec.layers)
    if start is None:
        start = next((k for k, l in enumerate(layers) if l.kind in ("lstm", "gru", "rnn")), None)
        if start is None:
            raise ModelError("the model has no recurrent layer to split before; give start=")
    if not 0 < start < len(layers):
        raise InputError(f"start must be 1..{len(layers) - 1} (a layer index), got {start}")
    init = model.initial_state
    front = Model(ModelSpec(layers=layers[:start], has_weights=model.spec.has_weights),
                  initial_state=None if init is None else State(init[:start]))
    tail = Model(ModelSpec(layers=layers[start:], has_weights=model.spec.has_weights),
                 initial_state=None if init is None else State(init[start:]))
    front.audio = model.audio
    return front, tail


def quantize_tail(model, *, calibration, start: int | None = None, progress: bool | None = None):
    """A float Model split before layer ``start`` (default: its first recurrent layer), the layers from there on
    quantized to int8: a ``topologies.Chain`` of the float front and the int8 tail.

    For hybrids whose conv front end loses too much in int8 (silero-vad's STFT magnitudes span a range one int8
    scale cannot hold: whole-model int8 keeps 96% of its decisions, the float front 99.5%). ``calibration``: float
    frames of the whole model, as for ``quantize``. The Chain's ``fidelity`` compares it with the float model on
    them (per tail layer: the tail's own report on the front's float output, which is the whole Chain's)."""
    from .topologies import Chain
    if model.is_quantized:
        raise ModelError("model is already quantized")
    front, tail = split_model(model, start=start)
    X = model._check_frames(calibration, "calibration", expect=f"(T, {model.input_size}) float frames")
    if X.ndim != 2:
        raise InputError(f"quantize_tail: calibration must be (T, {model.input_size}) frames, got {X.shape}")
    mid = front.run(X)
    chain = Chain(front, quantize(tail, calibration=mid, progress=progress))
    chain.fidelity = chain.models[1].fidelity
    return chain
