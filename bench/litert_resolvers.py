#!/usr/bin/env python
"""How LiteRT's three op resolvers agree on the converter-made int8 step graphs (tests/fixtures/tflite_cells):
each fixture streamed 1,000 steps with the state fed back (tests/test_tflite_cells.py's driver), outputs of
the builtin resolver without delegates and of the default (AUTO, with XNNPACK) compared with the reference
kernels, which edgelstm's op-graph layers equal bit for bit.

    python bench/litert_resolvers.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import test_tflite_cells as cells  # noqa: E402

cells.RESOLVERS["builtin"] = cells.litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def main() -> int:
    print("fixture               builtin (no delegates)   default (AUTO, XNNPACK)   [% of outputs != reference]")
    for name in cells.NAMES:
        X = cells._load_X(name)
        path = os.path.join(cells.HERE, f"{name}_int8.tflite")
        ref, _ = cells._litert_stream(path, X, "ref")
        diffs = [np.mean(cells._litert_stream(path, X, r)[0] != ref) * 100 for r in ("builtin", "default")]
        print(f"{name:20s}  {diffs[0]:8.2f}                 {diffs[1]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
