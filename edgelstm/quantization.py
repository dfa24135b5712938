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
from .runtime import Model

__all__ = ["quantize", "fidelity"]


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
    on the calibration data."""
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
    qmodel.fidelity = fidelity(model, qmodel, X)
    return qmodel
