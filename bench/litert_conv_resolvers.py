#!/usr/bin/env python
"""How often LiteRT's three resolvers disagree on the int8 ops of a conv front end, on realistic random layers
(float weights and inputs quantized the way a converter does: per-channel symmetric weights, int32 bias at
s_in * w_scale, min/max activation ranges), and whether each resolver still equals its formula in tests/naive.py
there. The crafted-tie cases are in tests/test_litert_conv_ops.py; findings in docs/litert_conv_measurements.md.

    python bench/litert_conv_resolvers.py [--json out.json]
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import litert_ops as lo  # noqa: E402
import naive  # noqa: E402

RES = ("ref", "opt", "xnn")
PAIRS = (("ref", "opt"), ("ref", "xnn"), ("opt", "xnn"))


def _range_quant(v):
    """(scale, zp) of a float tensor's [min, max] (widened to include 0) over int8, as the converter picks it."""
    lo_, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
    s = max(hi - lo_, 1e-8) / 255.0
    return float(np.float32(s)), int(np.clip(np.round(-128 - lo_ / s), -128, 127))


def _conv_layer(rng, *, C, O, K, stride, dilation, dm, act, L=400):
    wf = rng.normal(0, 1 / np.sqrt(K * (1 if dm else C)), (O, K) if dm else (O, K, C))
    bf = rng.normal(0, 0.1, O)
    xf = rng.normal(0, 1, (L, C)) * rng.uniform(0.5, 2, C)
    if rng.random() < 0.5:
        xf = np.maximum(xf, 0)                                          # the previous layer's ReLU
    s_in, zp_in = _range_quant(xf)
    x = np.clip(np.round(xf / s_in) + zp_in, -128, 127).astype(np.int64)
    amax = np.abs(wf).reshape(O, -1).max(axis=1)
    ws = (amax / 127).astype(np.float32)
    w = np.clip(np.round(wf / ws.reshape((O,) + (1,) * (wf.ndim - 1))), -127, 127).astype(np.int64)
    b = np.round(bf / (np.float32(s_in) * ws)).astype(np.int64)
    yf = naive.ref_conv1d_f64((x - zp_in) * s_in, w * ws.reshape((O,) + (1,) * (w.ndim - 1)), b * s_in * ws,
                              stride=stride, dilation=dilation, depth_multiplier=dm, act=act)
    s_out, zp_out = _range_quant(yf)
    return dict(w=w, b=b, s_in=s_in, zp_in=zp_in, w_scale=ws, s_out=s_out, zp_out=zp_out, act=act, stride=stride,
                dilation=dilation, depth_multiplier=dm), x


def conv_counts(rng, n_layers):
    out = {}
    for depthwise in (False, True):
        t = {"outputs": 0, "xnn_delegated_layers": 0, "formula_mismatches": {r: 0 for r in RES},
             **{f"{a}!={b}": 0 for a, b in PAIRS}, "max_abs_diff": 0}
        for _ in range(n_layers):
            C = int(rng.choice([1, 8, 16, 40, 64, 129]))
            dm = int(rng.choice([1, 1, 2])) if depthwise else None
            O = C * dm if depthwise else int(rng.choice([8, 16, 32, 64, 128]))
            kw, x = _conv_layer(rng, C=C, O=O, K=int(rng.integers(1, 8)), stride=int(rng.integers(1, 3)),
                                dilation=int(rng.integers(1, 3)), dm=dm, act=str(rng.choice(["none", "relu", "relu6"])))
            model = lo.conv_model(length=x.shape[0], **kw)
            ys = {}
            for r in RES:
                y, delegated = lo.run(model, [x], r)
                ys[r] = y.reshape(-1, O)
                t["formula_mismatches"][r] += int(np.sum(ys[r] != naive.ref_conv1d_int8(x, resolver=r, **kw)))
                t["xnn_delegated_layers"] += int(delegated)
            for a, b in PAIRS:
                t[f"{a}!={b}"] += int(np.sum(ys[a] != ys[b]))
                t["max_abs_diff"] = max(t["max_abs_diff"], int(np.abs(ys[a] - ys[b]).max()))
            t["outputs"] += ys["ref"].size
        out["DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"] = t
    return out


def crafted_counts(rng):
    """128 channels, each with one accumulator crafted where two requantizations disagree (tests/litert_ops.py
    tie_cases), swept over 256 neighbouring accumulators; plus dyadic scales (exact half-integer outputs)."""
    out = {}
    x = np.arange(-128, 128).reshape(256, 1)
    sets = [(f"near ties {a} vs {b}", lo.tie_cases(rng, s_in=0.037, s_out=0.11, zp_out=-3, n=128, differ=(a, b)))
            for a, b in (("ref", "opt"), ("ref", "single"), ("ref", "xnn"), ("single", "xnn"))]
    ws = (np.tile(np.arange(1, 16, 2), 8) * 2.0 ** -np.repeat(np.arange(3, 11), 8)).astype(np.float32)
    sets.append(("exact ties (dyadic scales)", (ws, rng.integers(-3000, 3000, ws.size))))
    for name, (ws, b) in sets:
        exact = name.startswith("exact")
        q = dict(s_in=0.5, zp_in=0, s_out=0.5, zp_out=0) if exact else dict(s_in=0.037, zp_in=5, s_out=0.11, zp_out=-3)
        for dm in (None, ws.size):
            kw = dict(w=np.ones((ws.size, 1) if dm else (ws.size, 1, 1)), b=b, w_scale=ws, depth_multiplier=dm, **q)
            model = lo.conv_model(length=256, **kw)
            ys = {r: lo.run(model, [x], r)[0].reshape(256, -1) for r in RES}
            t = {"outputs": int(ys["ref"].size),
                 "formula_mismatches": {r: int(np.sum(ys[r] != naive.ref_conv1d_int8(x, resolver=r, **kw))) for r in RES}}
            t.update({f"{a}!={b}": int(np.sum(ys[a] != ys[b])) for a, b in PAIRS})
            out[f"{'DEPTHWISE_CONV_2D' if dm else 'CONV_2D'} crafted, {name}"] = t
    return out


def quantize_counts(rng):
    """QUANTIZE float32 -> int8 of values a float layer produces (normal, random scale), 8 tensors of 100,003."""
    t = {"outputs": 0, **{f"{a}!={b}": 0 for a, b in PAIRS}}
    for _ in range(8):
        v = (rng.normal(0, 1, 100003) * 10 ** rng.uniform(-2, 1)).astype(np.float32)
        s, zp = _range_quant(v)
        m = lo.quantize_model(n=v.size, s_out=s, zp_out=zp)
        ys = {r: lo.run(m, [v], r)[0].ravel() for r in RES}
        for a, b in PAIRS:
            t[f"{a}!={b}"] += int(np.sum(ys[a] != ys[b]))
        t["outputs"] += v.size
    return t


def magnitude_counts(rng, n_quants):
    """The float magnitude chain over all 65,536 (a, b) int8 pairs per quantization."""
    qa, qb = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"))
    t = {"outputs": 0, **{f"{a}!={b}": 0 for a, b in PAIRS}, "xnn!=exact-sqrt formula": 0}
    for _ in range(n_quants):
        s_in, zp_in = float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-20, 21))
        s_out = float(np.float32(s_in * 1.45 * 256 / 255 * 10 ** rng.uniform(0, 0.3)))
        m = lo.magnitude_model(n=qa.size, s_in=s_in, zp_in=zp_in, s_out=s_out, zp_out=-128)
        ys = {r: lo.run(m, [qa, qb], r)[0].ravel() for r in RES}
        for a, b in PAIRS:
            t[f"{a}!={b}"] += int(np.sum(ys[a] != ys[b]))
        t["xnn!=exact-sqrt formula"] += int(np.sum(ys["xnn"] != naive.ref_magnitude_int8(
            qa, qb, s_in=s_in, zp_in=zp_in, s_out=s_out, zp_out=-128, resolver="xnn")))
        t["outputs"] += qa.size
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the counts here")
    ap.add_argument("--layers", type=int, default=40, help="random layers per conv kind")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    res = conv_counts(rng, args.layers)
    res.update(crafted_counts(rng))
    res["QUANTIZE float->int8"] = quantize_counts(rng)
    res["magnitude (DEQUANTIZE, MUL, ADD, SQRT, QUANTIZE)"] = magnitude_counts(rng, 30)
    for op, t in res.items():
        print(f"{op}: {t['outputs']:,} outputs")
        for k, v in t.items():
            if k != "outputs":
                rate = f"  ({v / t['outputs']:.2e})" if isinstance(v, int) and "!=" in k and v else ""
                print(f"    {k}: {v}{rate}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
