#!/usr/bin/env python
"""Every imported ONNX / Keras model quantized with ``edgelstm.quantize``: how close int8 stays to float.

    nice python bench/import_fidelity.py [--json bench/results/import_fidelity.json]

Models: the PyTorch-exported ONNX fixtures (tests/fixtures/onnx, TorchScript and dynamo exporters), the Keras
fixtures (tests/fixtures/keras, .keras and .h5) and the 18 ``onnx.backend.test.case.node`` lstm/gru/rnn cases
(weights bound as initializers, as tests/test_onnx_import.py does).  Each is calibrated on 8 random sequences
of 100 frames (standard normal, seed 1) and measured on 8 other ones (seed 2) with ``edgelstm.quant.fidelity``:
output cosine, max abs error, decision agreement (0.5 threshold for sigmoid, argmax for softmax, sign
otherwise).  Files the importer refuses are listed with the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from edgelstm.benchmark import write_json

ROOT = Path(__file__).resolve().parent.parent


def models():
    """(name, source) pairs: paths, or onnx ModelProtos for the backend cases."""
    fx = ROOT / "tests" / "fixtures"
    for p in sorted((fx / "onnx").glob("*.onnx")) + sorted((fx / "keras").glob("*.keras")) + \
            sorted((fx / "keras").glob("*.h5")):
        yield p.relative_to(ROOT).as_posix(), p
    sys.path.insert(0, str(ROOT / "tests"))
    from test_onnx_import import CASES, _bound
    for name in sorted(CASES):
        yield f"onnx backend {name}", _bound(CASES[name], CASES[name].data_sets[0][0])[0]


def main() -> int:
    warnings.simplefilter("ignore")
    import edgelstm as el
    from edgelstm.export import from_onnx, import_model
    from edgelstm.quantization import fidelity
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = []
    for name, src in models():
        try:
            m = import_model(src) if isinstance(src, Path) else from_onnx(src)
        except el.EdgeLSTMError as e:
            rows.append({"model": name, "refused": str(e)[:200]})
            print(f"{name:58s} refused: {str(e)[:90]}")
            continue
        F = m.input_size
        calib = np.random.default_rng(1).standard_normal((8, 100, F)).astype(np.float32)
        held = np.random.default_rng(2).standard_normal((8, 100, F)).astype(np.float32)
        q = el.quantize(m, calibration=calib, progress=False)
        rep = fidelity(m, q, held)
        row = {"model": name, "layers": "-".join(d["kind"] for d in m.spec.describe()),
               "cosine": rep.cosine, "max_abs_error": rep.max_abs_error,
               "output_range": float(np.ptp(m.run(held))), "decision_agreement": rep.decision_agreement,
               "decision_rule": rep.decision_rule, "calibration_cosine": q.fidelity.cosine}
        rows.append(row)
        print(f"{name:58s} {row['layers']:28s} cosine {rep.cosine:.5f}  max|err| {rep.max_abs_error:.4f} "
              f"(range {row['output_range']:.2f})  {rep.decision_rule} {100 * rep.decision_agreement:.2f}%",
              flush=True)
    ok = [r for r in rows if "cosine" in r]
    summary = {"models": len(rows), "quantized": len(ok), "refused": len(rows) - len(ok),
               "min_cosine": min(r["cosine"] for r in ok), "median_cosine": float(np.median([r["cosine"] for r in ok])),
               "max_abs_error_worst": max(r["max_abs_error"] for r in ok),
               "min_decision_agreement": min(r["decision_agreement"] for r in ok)}
    print(json.dumps(summary))
    if a.json:
        write_json(a.json, {"summary": summary, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
