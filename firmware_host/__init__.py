"""Host harness for C bundles (``edgelstm.firmware_host``): build with a C compiler, run, compare.

    from edgelstm.firmware_host import check
    report = check(model, frames)            # export, build with cc, stream frames, compare with Numba
    assert report.equal, report

``build`` and ``run`` take a compiler and a runner prefix, so the same check runs a cross build under an
emulator (``cc="aarch64-linux-gnu-gcc", ldflags=["-static"], runner=["qemu-aarch64"]``). The C sources
of the runtime live next to this file (include/, src/, example/).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgelstm.errors import FirmwareError, InputError

STRICT_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]
BUNDLE_SOURCES = ["main.c", "model_data.c", "edgelstm.c", "elstm_io.c"]


def frames_text(frames) -> str:
    """Frames (T, F) as the streamer's stdin: %.9g round-trips every float32 exactly."""
    X = np.asarray(frames, dtype=np.float32)
    if X.ndim != 2:
        raise InputError(f"frames must be (T, F), got shape {X.shape}")
    return "".join(" ".join(f"{float(v):.9g}" for v in row) + "\n" for row in X)


def build(bundle, *, cc: str = "cc", cflags=None, ldflags=(), sanitize: bool = False, exe=None) -> Path:
    """Compile the bundle's example streamer; returns the executable's path. Raises FirmwareError."""
    bundle = Path(bundle)
    if shutil.which(cc) is None:
        raise FirmwareError(f"C compiler {cc!r} not found on PATH")
    flags = list(STRICT_CFLAGS if cflags is None else cflags) + (SANITIZE_FLAGS if sanitize else [])
    exe = Path(exe) if exe else bundle / ("streamer-asan" if sanitize else "streamer")
    cmd = [cc, *flags, "-I", str(bundle), "-o", str(exe), *[str(bundle / s) for s in BUNDLE_SOURCES],
           *ldflags, "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"{cc} failed ({res.returncode}):\n{res.stderr.strip()}")
    return exe


def run(exe, frames, *, runner=(), codes: bool = False, timeout: float = 600) -> np.ndarray:
    """Stream frames (T, F) through a built streamer; returns (T, O) float32 (or int8 codes)."""
    cmd = [*runner, str(exe)] + (["-q"] if codes else [])
    res = subprocess.run(cmd, input=frames_text(frames), capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise FirmwareError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()}")
    rows = [line.split() for line in res.stdout.splitlines()]
    dtype = np.int8 if codes else np.float32
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float64).astype(dtype).reshape(len(rows), -1)


@dataclass
class CheckReport:
    """Result of ``check``: ``equal`` is bit-for-bit equality of every output of every frame."""
    frames: int
    outputs: int
    mismatches: int
    first_mismatch: tuple | None = None
    command: list = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.mismatches == 0

    def __str__(self) -> str:
        head = f"C vs Numba over {self.frames} frames x {self.outputs} outputs: "
        if self.equal:
            return head + "bit for bit equal"
        return head + f"{self.mismatches} values differ, first (frame, output, C, Numba) = {self.first_mismatch}"


def check(model, frames, *, cc: str = "cc", cflags=None, ldflags=(), runner=(), sanitize: bool = False,
          workdir=None, tables: bool = True) -> CheckReport:
    """Export ``model`` to C, build it, stream ``frames`` (T, F) through it and compare with the Numba
    runtime's ``stream().step_many`` bit for bit."""
    from edgelstm.export.to_c import to_c
    X = np.ascontiguousarray(frames, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgelstm-c-") as tmp:
        bundle = to_c(model, Path(workdir) if workdir else Path(tmp) / "bundle", tables=tables)
        exe = build(bundle, cc=cc, cflags=cflags, ldflags=ldflags, sanitize=sanitize)
        got = run(exe, X, runner=runner)
    want = model.stream().step_many(X)
    if got.shape != want.shape:
        raise FirmwareError(f"the C streamer printed {got.shape} outputs, expected {want.shape}")
    diff = got.view(np.int32) != want.view(np.int32)
    bad = np.argwhere(diff)
    first = None
    if bad.size:
        t, o = bad[0]
        first = (int(t), int(o), float(got[t, o]), float(want[t, o]))
    return CheckReport(frames=X.shape[0], outputs=want.shape[1],
                       mismatches=int(diff.sum()), first_mismatch=first, command=[*runner, os.fspath(exe)])


def _case_bytes(model, X, tables: bool = True) -> bytes:
    from edgelstm.program import c_program
    prep = model._prep
    prog, w8, blob = c_program.c_arrays(prep, tables=tables, spec=model.spec)
    buf = c_program.c_work_buffers(prep, tables=tables, spec=model.spec)   # the exact buffers a bundle sizes
    (s_in, zp_in), (s_out, zp_out) = model.quant.act[0], model.quant.act[-1]
    hdr = np.array([model.input_size, model.output_size, prep.width, prep.n_state, buf["scratch"], prog.size,
                    w8.size, blob.size, zp_in, zp_out, X.shape[0], buf["gates"], buf["acc"], buf["aux"]], np.int32)
    return b"".join([hdr.tobytes(), np.array([s_in, s_out], np.float32).tobytes(), prog.tobytes(),
                     w8.tobytes(), blob.tobytes(), np.ascontiguousarray(X, np.float32).tobytes()])


def build_runner(builddir, *, cc: str = "cc", cflags=None, ldflags=(), sanitize: bool = False,
                 driver: str = "multi_runner.c", src=None) -> Path:
    """Compile the many-models test driver (harness/multi_runner.c, or another ``driver`` in harness/: the fuzz
    driver fuzz_runner.c) with the runtime (from ``src``, another copy of this directory, if given: an older
    runtime); returns its path."""
    from edgelstm.export.to_c import RUNTIME_SOURCES, records_header
    here = Path(__file__).resolve().parent
    src = Path(src) if src else here
    builddir = Path(builddir)
    builddir.mkdir(parents=True, exist_ok=True)
    for rel in RUNTIME_SOURCES:
        shutil.copyfile(src / rel, builddir / Path(rel).name)
    shutil.copyfile(here / "harness" / driver, builddir / driver)
    (builddir / "elstm_records.h").write_text(records_header())
    if shutil.which(cc) is None:
        raise FirmwareError(f"C compiler {cc!r} not found on PATH")
    flags = list(STRICT_CFLAGS if cflags is None else cflags) + (SANITIZE_FLAGS if sanitize else [])
    exe = builddir / Path(driver).stem
    cmd = [cc, *flags, "-I", str(builddir), "-o", str(exe),
           *[str(builddir / n) for n in (driver, "edgelstm.c", "elstm_io.c")], *ldflags, "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"{cc} failed ({res.returncode}):\n{res.stderr.strip()}")
    return exe


def run_many(exe, cases, *, runner=(), workdir=None, timeout: float = 1800, tables: bool = True) -> list:
    """Stream each (model, frames (T, F)) case through a built multi_runner; returns the (T, O) outputs.
    ``tables=False`` passes the models without activation tables (the runtime computes them).
    ``runner`` prefixes the command (an emulator such as ``["qemu-aarch64"]``), or is a function mapping the
    argument list [exe, cases file, outputs file] to a command (``cortex_m_runner``)."""
    with tempfile.TemporaryDirectory(prefix="edgelstm-many-", dir=workdir) as tmp:
        inp, outp = Path(tmp) / "cases.bin", Path(tmp) / "outputs.bin"
        inp.write_bytes(b"".join(_case_bytes(m, X, tables) for m, X in cases))
        args = [str(exe), str(inp), str(outp)]
        cmd = runner(args) if callable(runner) else [*runner, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise FirmwareError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()[-2000:]}")
        flat = np.fromfile(outp, dtype=np.float32)
    out, pos = [], 0
    for m, X in cases:
        n = X.shape[0] * m.output_size
        if pos + n > flat.size:
            raise FirmwareError("the C runner wrote fewer outputs than expected")
        out.append(flat[pos:pos + n].reshape(X.shape[0], m.output_size))
        pos += n
    return out


def dot_path(exe, *, runner=()) -> str:
    """The dot-loop implementation a built multi_runner uses ("avx2", "neon", "neon-sdot", "portable"):
    it runs no case and names it on stderr."""
    with tempfile.TemporaryDirectory(prefix="edgelstm-path-") as tmp:
        empty = Path(tmp) / "none.bin"
        empty.write_bytes(b"")
        args = [str(exe), str(empty), str(Path(tmp) / "out.bin")]
        cmd = runner(args) if callable(runner) else [*runner, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0 or "dot path " not in res.stderr:
        raise FirmwareError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()[-2000:]}")
    return res.stderr.rsplit("dot path ", 1)[1].split()[0]


CORTEX_M_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-mcpu=cortex-m4", "-mthumb",
                   "-mfloat-abi=soft"]
# newlib's semihosting start-up and stdio; the vector table goes at 0 where the M-profile core boots from
CORTEX_M_LDFLAGS = ["--specs=rdimon.specs", "-Wl,--section-start=.vectors=0x0"]


def cortex_m_runner(args, *, machine: str = "mps2-an386", timeout_s: int = 600) -> list:
    """qemu-system-arm command running a semihosting ELF on an MPS2 Cortex-M4 board with arguments."""
    return ["timeout", str(timeout_s), "qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none",
            "-serial", "none", "-semihosting-config", "enable=on,target=native," + ",".join(f"arg={a}" for a in args),
            "-kernel", args[0]]


def build_cortex_m_runner(builddir, *, cc: str = "arm-none-eabi-gcc", extra_cflags=()) -> Path:
    """The many-models driver as a Cortex-M4 semihosting ELF for ``cortex_m_runner`` (DSP dot loop, SMLAD;
    ``extra_cflags=["-DELSTM_NO_SIMD"]`` for the portable one)."""
    src = Path(__file__).resolve().parent / "harness" / "cortexm_vectors.c"
    builddir = Path(builddir)
    builddir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, builddir / src.name)
    exe = build_runner(builddir, cc=cc, cflags=CORTEX_M_CFLAGS + list(extra_cflags), ldflags=[str(builddir / src.name),
                                                                         *CORTEX_M_LDFLAGS])
    return exe


def build_native(*, cc: str = "cc", out=None, portable: bool = False, cflags=()) -> Path:
    """Compile the C runtime as the shared library of the no-JIT backend (``edgelstm.backends.native``); returns its
    path. Written next to this package when writable, else into the user cache directory. Built for this
    CPU (-march=native: the AVX2 / NEON dot loop) unless ``portable`` (e.g. a cross compiler; an aarch64
    build still gets NEON); ``cflags`` are added (e.g. ``-march=armv8.2-a+dotprod`` for sdot on a Pi 5)."""
    from edgelstm.backends import native
    from edgelstm.export.to_c import RUNTIME_SOURCES, records_header
    src = Path(__file__).resolve().parent
    if out is None:
        out = src / native.LIB_NAME
        if not os.access(src, os.W_OK):
            out = native.user_cache_dir() / native.LIB_NAME
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which(cc) is None:
        raise FirmwareError(f"C compiler {cc!r} not found on PATH")
    with tempfile.TemporaryDirectory(prefix="edgelstm-native-") as tmp:
        for rel in RUNTIME_SOURCES:
            shutil.copyfile(src / rel, Path(tmp) / Path(rel).name)
        (Path(tmp) / "elstm_records.h").write_text(records_header())
        tmp_out = Path(tmp) / native.LIB_NAME
        opt = ["-O3"] + ([] if portable else ["-march=native"]) + list(cflags)
        cmd = [cc, *STRICT_CFLAGS, *opt, "-fPIC", "-shared", "-I", tmp, "-o", str(tmp_out),
               str(Path(tmp) / "edgelstm.c"), str(Path(tmp) / "elstm_io.c"), "-lm"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise FirmwareError(f"{cc} failed ({res.returncode}):\n{res.stderr.strip()}")
        shutil.move(str(tmp_out), str(out))   # whole file appears at once
    return out
