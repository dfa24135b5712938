#!/usr/bin/env python
"""How often LiteRT's optimized builtin ("opt") and default XNNPACK ("xnn") resolvers disagree with its reference
resolver (= edgelstm) on exported int8 CNN + RNN hybrids, per op and over whole streams: random front ends of every
option (tests/test_frontend.py's random_front_end, with a context) + LSTM / GRU + Dense, calibrated on a quiet walk
and streamed 1,000 steps 2.5x louder (tests/litert_hybrid.py). Per layer, each resolver runs the layer alone on
edgelstm's input to it, so a count is that layer's own disagreement, and conv layers are checked against the
per-resolver formula of tests/naive.py. Per stream, the step file runs with every state fed back.

    nice python bench/conv_tflite_resolvers.py [--models 25] [--json out.json]
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import litert_hybrid as lh  # noqa: E402
from test_to_tflite_conv import STEPS, _quantized, _random  # noqa: E402

from edgelstm.benchmark.report import write_json  # noqa: E402
from edgelstm.export import to_tflite  # noqa: E402

RES = ("opt", "xnn")


def measure(n_models: int) -> dict:
    per_op, streams = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(n_models):
            for recurrent in ("lstm", "gru"):
                frame, spec = _random(seed, recurrent)
                q, Xq = _quantized(frame, spec, seed)
                for row in lh.layer_by_layer(q, Xq):
                    acc = per_op.setdefault(row["op"], {"layers": 0, "outputs": 0, **{r: {
                        "differ": 0, "max_diff": 0, "formula_layers": 0, "formula_ok": 0} for r in ("ref",) + RES}})
                    acc["layers"] += 1
                    acc["outputs"] += row["outputs"]
                    for r in ("ref",) + RES:
                        a = acc[r]
                        a["differ"] += row[r]["differ"]
                        a["max_diff"] = max(a["max_diff"], row[r]["max_diff"])
                        if row[r]["formula"] is not None:
                            a["formula_layers"] += 1
                            a["formula_ok"] += int(row[r]["formula"])
                path = os.path.join(tmp, "m.tflite")
                to_tflite(q, path, mode="step")
                ref, _ = lh.litert_stream(path, Xq, "ref")
                rec = {"seed": seed, "recurrent": recurrent, "kinds": [layer.kind for layer in q.spec.layers],
                       "outputs": int(ref.size), "edgelstm_equals_ref": bool(np.array_equal(lh.edgelstm_ints(q, Xq), ref))}
                for r in RES:
                    got, _ = lh.litert_stream(path, Xq, r)
                    d = np.abs(got - ref)
                    steps = np.nonzero(d.max(axis=1))[0]
                    rec[r] = {"differ": int(np.sum(d > 0)), "max_diff": int(d.max()),
                              "first_step": int(steps[0]) if steps.size else None,
                              "first_max_diff": int(d[steps[0]].max()) if steps.size else 0}
                streams.append(rec)
                print(f"seed {seed} {recurrent}: " + ", ".join(
                    f"{r} {rec[r]['differ']}/{rec['outputs']} (max {rec[r]['max_diff']})" for r in RES), flush=True)
    return {"litert": _litert_version(), "models": 2 * n_models, "steps": STEPS, "per_op": per_op,
            "streams": streams}


def _litert_version() -> str:
    from importlib.metadata import version
    return version("ai-edge-litert")


def report(res: dict) -> str:
    lines = [f"ai-edge-litert {res['litert']}, {res['models']} random hybrids, {res['steps']} steps each",
             "", "| op (layer kind) | layers | outputs | ref != edgelstm | opt != ref | xnn != ref | max diff (opt, xnn) | "
                 "= per-resolver formula |", "|---|---|---|---|---|---|---|---|"]
    for op, a in sorted(res["per_op"].items(), key=lambda kv: -kv[1]["outputs"]):
        n = a["outputs"]
        f = [f"{a[r]['formula_ok']}/{a[r]['formula_layers']}" for r in RES if a[r]["formula_layers"]]
        lines.append(f"| {op} | {a['layers']} | {n:,} | {a['ref']['differ']} | {a['opt']['differ']:,} "
                     f"({a['opt']['differ'] / n:.2%}) | {a['xnn']['differ']:,} ({a['xnn']['differ'] / n:.2%}) | "
                     f"{a['opt']['max_diff']}, {a['xnn']['max_diff']} | {', '.join(f) or '-'} |")
    s = res["streams"]
    total = sum(r["outputs"] for r in s)
    lines += ["", f"whole streams (step files, states fed back): edgelstm == ref on "
                  f"{sum(r['edgelstm_equals_ref'] for r in s)}/{len(s)}"]
    for r in RES:
        differ = sum(x[r]["differ"] for x in s)
        lines.append(f"  {r}: {differ:,} of {total:,} outputs differ ({differ / total:.2%}); streams with any: "
                     f"{sum(x[r]['differ'] > 0 for x in s)}/{len(s)}; max |diff| {max(x[r]['max_diff'] for x in s)}; "
                     f"at the first divergence max |diff| {max(x[r]['first_max_diff'] for x in s)}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=25, help="random front ends (each with an LSTM and a GRU)")
    ap.add_argument("--json", help="write the counts here")
    a = ap.parse_args()
    res = measure(a.models)
    print(report(res))
    if a.json:
        write_json(a.json, res)


if __name__ == "__main__":
    main()
