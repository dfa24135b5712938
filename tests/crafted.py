"""Hand-crafted hostile input files (issue 16), shared by tests/test_hardening2.py and bench/fuzz_importers.py
(which also measures each one's peak RSS in a subprocess).

Keras: a fixture's LSTM kernel replaced by a dataset whose bytes live OUTSIDE the model file (HDF5 external
storage with an absolute or a working-directory-relative path, an external link, a virtual dataset), in a legacy
``.h5`` and inside a ``.keras`` zip. A safe reader refuses all eight; an unsafe one imports the foreign bytes as
weights. WAV: headers that declare absurd rates or channel counts, truncated data, huge declared sizes.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np

FIX = Path(__file__).resolve().parent / "fixtures" / "keras"
SECRET_TEXT = b"TOP SECRET, not model weights. "
# the LSTM kernel of lstm_dense_sigmoid (5 x 32 float32) in each layout
_KERNEL = {".h5": "model_weights/lstm/lstm/lstm_cell/kernel:0", ".keras": "layers/lstm/cell/vars/0"}
KERAS_KINDS = ("external-absolute", "external-relative", "external-link", "virtual-dataset")


def _copy_h5(src, dst) -> None:
    import h5py
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for k, v in a.attrs.items():
            b.attrs[k] = v
        for k in a:
            a.copy(k, b)


def _foreign_h5(path: Path, shape, dtype) -> None:
    """A separate HDF5 file whose dataset 'w' holds the secret bytes (target of links and virtual datasets)."""
    import h5py
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = (SECRET_TEXT * (n // len(SECRET_TEXT) + 1))[:n]
    with h5py.File(path, "w") as g:
        g.create_dataset("w", data=np.frombuffer(raw, dtype).reshape(shape))


def _point_outside(h5_path: Path, key: str, kind: str, folder: Path) -> None:
    import h5py
    with h5py.File(h5_path, "a") as f:
        ds = f[key]
        shape, dtype = ds.shape, ds.dtype
        del f[key]
        n = int(np.prod(shape)) * dtype.itemsize
        if kind == "external-absolute":
            f.create_dataset(key, shape, dtype, external=[(str(folder / "secret.txt"), 0, n)])
        elif kind == "external-relative":    # resolved against the reader's working directory
            f.create_dataset(key, shape, dtype, external=[("secret.txt", 0, n)])
        elif kind == "external-link":
            _foreign_h5(folder / "foreign.h5", shape, dtype)
            f[key] = h5py.ExternalLink(str(folder / "foreign.h5"), "/w")
        elif kind == "virtual-dataset":
            _foreign_h5(folder / "foreign.h5", shape, dtype)
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[:] = h5py.VirtualSource(str(folder / "foreign.h5"), "w", shape=shape)
            f.create_virtual_dataset(key, layout)
        else:
            raise ValueError(kind)


def keras_outside_files(folder) -> list[tuple[str, Path]]:
    """The eight crafted Keras files in ``folder`` (plus the secret.txt / foreign.h5 they point at):
    (label, path). Run the importer with ``folder`` as the working directory for the relative variant."""
    folder = Path(folder)
    (folder / "secret.txt").write_bytes(SECRET_TEXT * 64)
    out = []
    for suffix in (".h5", ".keras"):
        for kind in KERAS_KINDS:
            dst = folder / f"{kind}{suffix}"
            if suffix == ".h5":
                _copy_h5(FIX / "lstm_dense_sigmoid.h5", dst)
                _point_outside(dst, _KERNEL[suffix], kind, folder)
            else:
                with zipfile.ZipFile(FIX / "lstm_dense_sigmoid.keras") as z:
                    parts = {n: z.read(n) for n in z.namelist()}
                inner = folder / f"{kind}.weights.h5"
                inner.write_bytes(parts["model.weights.h5"])
                _point_outside(inner, _KERNEL[suffix], kind, folder)
                parts["model.weights.h5"] = inner.read_bytes()
                with zipfile.ZipFile(dst, "w") as z:
                    for n, v in parts.items():
                        z.writestr(n, v)
            out.append((f"{kind}{suffix}", dst))
    return out


def keras_huge_declared(folder) -> Path:
    """A legacy .h5 whose LSTM kernel declares 4 x 2^24 float32 elements stored nowhere (HDF5 returns the fill
    value): reading it costs the memory the header claims, not the file's size."""
    import h5py
    folder = Path(folder)
    dst = folder / "huge-declared.h5"
    _copy_h5(FIX / "lstm_dense_sigmoid.h5", dst)
    with h5py.File(dst, "a") as f:
        key = _KERNEL[".h5"]
        del f[key]
        f.create_dataset(key, (1 << 12, 1 << 14), np.float32, chunks=(64, 1024), compression="gzip")
    return dst


# ------------------------------------------------------------------------------------------------ WAV

def wav_bytes(*, rate: int, channels: int = 1, bits: int = 16, tag: int = 1, data: bytes = b"",
              data_size: int | None = None) -> bytes:
    """A RIFF/WAVE header with the given fields, then ``data``; ``data_size`` overrides the declared size."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def wav_crafted(folder, *, big: bool = False) -> list[tuple[str, Path]]:
    """The issue's WAV files and their relatives: (label, path). ``big``: also the 256 MiB 65,535-channel file."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000) * 3000).astype("<i2").tobytes()   # 32 KB
    cases = {
        "rate-1hz": wav_bytes(rate=1, data=noise),                   # 32 KB declared as 4.4 hours at 1 Hz
        "rate-4g": wav_bytes(rate=0xFFFFFFFF, data=noise),
        "channels-65535": wav_bytes(rate=16000, channels=65535, bits=8, data=noise),
        "data-size-4g": wav_bytes(rate=16000, data=noise, data_size=0xFFFFFFF0),
        "truncated-mid-data": wav_bytes(rate=16000, data=noise, data_size=len(noise) * 4),
        "float64-8ch-8khz": wav_bytes(rate=8000, channels=8, bits=64, tag=3,
                                      data=np.zeros(8 * 4000, "<f8").tobytes()),
        "list-chunk-4g": (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"LIST"
                          + struct.pack("<I", 0xFFFFFFF0) + bytes(1 << 20)),
        "fmt-chunk-4g": (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt "
                         + struct.pack("<I", 0xFFFFFFF0) + bytes(1 << 20)),
    }
    if big:     # the 2.4 GiB case: 256 MiB of data in 65,535 channels
        cases["channels-65535-256mib"] = wav_bytes(rate=16000, channels=65535, bits=8, data=bytes(65535 * 4096))
    out = []
    for label, data in cases.items():
        p = folder / f"{label}.wav"
        p.write_bytes(data)
        out.append((label, p))
    return out


def own_peak_rss_kib() -> int:
    """This process's own peak RSS, KiB: VmHWM of its memory since exec. Not ``ru_maxrss``: Linux carries the
    parent's high-water mark into a child through fork + exec, so a child of a 2 GiB pytest reports 2 GiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_of(code: str, *args: str, cwd=None, timeout: float = 600.0) -> tuple[int, str, str]:
    """Run ``code`` in a fresh Python (argv[1:] = args) and return (peak RSS in bytes of that child and its own
    children, stdout, stderr), measured with resource.getrusage(RUSAGE_CHILDREN) in a wrapper process."""
    import subprocess
    import sys
    wrapper = ("import resource, subprocess, sys\n"
               "p = subprocess.run([sys.executable, '-c', sys.argv[1]] + sys.argv[2:], capture_output=True, "
               "text=True)\n"
               "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
               "sys.stdout.write('\\nRSS %d %d\\n' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "p.returncode))\n")
    p = subprocess.run([sys.executable, "-c", wrapper, code, *args], capture_output=True, text=True,
                       timeout=timeout, cwd=cwd, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    lines = p.stdout.rstrip("\n").splitlines()
    rss_line = lines[-1].split()
    return (int(rss_line[1]) * 1024, "\n".join(lines[:-1]),
            (f"(exit {rss_line[2]})\n" if rss_line[2] != "0" else "") + p.stderr)
