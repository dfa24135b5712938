"""Every way of running the bundled models, and the tagger's log-mel (numpy, and the Numba loop where Numba
is), saved for a bit-for-bit comparison across machines (bench/pi_emulated.sh runs it on x86 and in the
emulated Pi chroots).

    python bench/pi_compare.py save OUT.npz [--int8-only]
    python bench/pi_compare.py compare REFERENCE.npz OTHER.npz      # exit 1 on any difference
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def outputs(model, seed: int = 0) -> dict:
    """run, batched run with lengths and its final states, stream step / step_many and the stream's state,
    streams(3): a dict of arrays, on fixed inputs."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3, 17, model.input_size)).astype(np.float32) * 2
    out = {"run": model.run(X[0])}
    Y, st = model.run(X, lengths=[17, 5, 11], return_state=True)
    out["batched"] = Y
    out.update({f"batched_state{k}{d}{n}": a for k, layer in enumerate(st) for d, dd in enumerate(layer)
                for n, a in dd.items()})
    s = model.stream()
    out["step"] = np.stack([s.step(x).copy() for x in X[1, :9]])
    out["step_many"] = s.step_many(X[1, 9:])
    out.update({f"stream_state{k}{d}{n}": a for k, layer in enumerate(s.state) for d, dd in enumerate(layer)
                for n, a in dd.items()})
    ss = model.streams(3)
    out["streams"] = np.stack([ss.step(X[:, t]).copy() for t in range(17)])
    return out


def logmels() -> dict:
    """The bundled tagger's log-mel of a fixed signal (noise, digital silence, a clipped plateau) with each
    kernel this machine has: "numpy" always, "jit" where Numba is importable."""
    from edgelstm.audio import LogMel
    from edgelstm.backends import native
    from edgelstm.data import AUDIO_MODEL
    import edgelstm as el
    fe = el.load(AUDIO_MODEL).audio.frontend
    y = np.random.default_rng(7).standard_normal(fe.sr * 3) * 0.3
    y[fe.sr // 2:fe.sr] = 0.0
    y[2 * fe.sr:2 * fe.sr + 800] = 1.0
    out = {}
    for name in ("native", "jit") if native.numba_importable() else ("native",):
        native.set_backend(name)
        try:
            out[f"logmel/{'numpy' if name == 'native' else 'jit'}"] = LogMel(fe).push(y)
        finally:
            native.set_backend(None)
    return out


def save(path: str, *, int8_only: bool) -> None:
    import edgelstm as el
    from edgelstm.data import DATA
    arrays = logmels()
    for f in sorted(DATA.glob("*.elstm")):
        m = el.load(f)
        if int8_only and not m.is_quantized:
            continue
        arrays.update({f"{f.stem}/{k}": v for k, v in outputs(m).items()})
        print(f"{f.name}: {len(arrays)} arrays so far", file=sys.stderr)
    np.savez(path, **arrays)


def compare(ref: str, other: str) -> int:
    a, b = dict(np.load(ref)), dict(np.load(other))
    bad = [k for k in b if k not in a or a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])]
    models = sorted({k.split("/")[0] for k in b})
    print(f"{other} vs {ref}: {len(b) - len(bad)}/{len(b)} arrays bit-identical over {len(models)} models "
          f"({', '.join(models)})")
    for k in bad:
        print(f"  DIFFERENT: {k}" + (f" max |diff| {np.abs(a[k].astype(float) - b[k]).max():.3g}"
                                     if k in a and a[k].shape == b[k].shape else ""))
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("out")
    s.add_argument("--int8-only", action="store_true", help="skip float models (no Numba: the C runtime)")
    c = sub.add_parser("compare")
    c.add_argument("ref")
    c.add_argument("other")
    args = p.parse_args()
    if args.cmd == "save":
        save(args.out, int8_only=args.int8_only)
        return 0
    return compare(args.ref, args.other)


if __name__ == "__main__":
    sys.exit(main())
