"""python -m edgelstm.firmware_host build-native [--cc CC] [-o PATH] [--portable] [--cflag FLAG ...]: build the
no-JIT backend's library."""
import argparse
import sys

from edgelstm.errors import EdgeLSTMError
from edgelstm.firmware_host import build_native


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgelstm.firmware_host")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-native", help="compile the C runtime as a shared library for the no-JIT backend")
    b.add_argument("--cc", default="cc", help="C compiler (default: cc)")
    b.add_argument("-o", "--output", help="library path (default: next to the package, else the user cache)")
    b.add_argument("--portable", action="store_true", help="no -march=native (cross compilers, shared images)")
    b.add_argument("--cflag", action="append", default=[], metavar="FLAG",
                   help="extra compiler flag, repeatable (e.g. --cflag=-march=armv8.2-a+dotprod)")
    args = p.parse_args(argv)
    try:
        path = build_native(cc=args.cc, out=args.output, portable=args.portable, cflags=args.cflag)
    except EdgeLSTMError as e:
        print(f"edgelstm: error: {e}", file=sys.stderr)
        return 2
    from edgelstm.backends.native import _load
    lib = _load(path) if args.cc == "cc" else None     # a cross build cannot be loaded here
    print(f"built {path}" + (f" (dot loop: {lib.elstm_dot_path().decode()})" if lib is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
