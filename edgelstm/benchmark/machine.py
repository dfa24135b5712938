"""The machine a benchmark ran on: CPU model, flags and clock, the derived int8 peak, library versions."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

# the runtimes ``edgelstm bench`` compares; their versions go into every result
PEER_MODULES = ("numba", "ai_edge_litert", "tflite_runtime", "onnxruntime", "torch")


def cpu_info() -> dict:
    """{"model", "flags" (in /proc/cpuinfo order), "mhz"}: the rated maximum clock when the kernel exposes it,
    else the first core's current one."""
    info = {"model": platform.processor() or platform.machine(), "flags": [], "mhz": None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "model name" and info["model"] in ("", platform.machine()):
                info["model"] = val.strip()
            elif key in ("flags", "Features") and not info["flags"]:
                info["flags"] = val.split()
            elif key == "cpu MHz" and info["mhz"] is None:
                info["mhz"] = float(val)
    except OSError:
        pass
    try:  # the rated maximum when the kernel exposes it (cpu MHz is the current, often throttled, clock)
        info["mhz"] = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    return info


def int8_peak(cpu: dict | None = None) -> dict:
    """One core's int16 multiply-accumulate peak (our int8 kernels widen to int16 and use pairwise 16-bit
    multiply-adds): MACs per instruction x instructions per cycle x clock.

    x86 with AVX2 (vpmaddwd / vpdpwssd on 256 bits): 16 MACs per instruction, 2 per cycle (two vector
    multiply pipes on Zen 3/4 and Intel since Skylake); AVX-512 parts are counted the same, since Zen 4 splits
    512-bit ops in two and our kernels need only 256 bits.  AArch64 NEON (smlal/smlal2 on 16-bit lanes): 4 MACs
    per instruction, 2 per cycle (Cortex-A72/A76).  Pass ``peak_gmacs`` to ``run_bench`` to override.
    Returns {"gmacs" (None when unknown), "derivation"} and, when known, "macs_per_cycle" and "ghz"."""
    cpu = cpu or cpu_info()
    mhz = cpu.get("mhz")
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and "avx2" in cpu["flags"]:
        macs, per_cycle, how = 16, 2, "AVX2 vpmaddwd: 16 int16 MACs x 2/cycle"
    elif machine in ("aarch64", "arm64"):
        macs, per_cycle, how = 4, 2, "NEON smlal: 4 int16 MACs x 2/cycle"
    elif machine in ("x86_64", "amd64"):
        macs, per_cycle, how = 8, 1, "SSE2 pmaddwd: 8 int16 MACs x 1/cycle"
    else:
        return {"gmacs": None, "derivation": f"unknown vector unit on {machine}"}
    if not mhz:
        return {"gmacs": None, "derivation": how + ", clock unknown"}
    return {"gmacs": macs * per_cycle * mhz / 1000.0, "derivation": f"{how} x {mhz:.0f} MHz",
            "macs_per_cycle": macs * per_cycle, "ghz": mhz / 1000.0}


def versions(modules) -> dict:
    """{module: its __version__, or None when it is not installed (or broken)}."""
    out = {}
    for mod in modules:
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional peer; absent or broken both mean "not measured"
            out[mod] = None
    return out


def load_average() -> list | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine_info(*, modules=PEER_MODULES) -> dict:
    cpu = cpu_info()
    info = {"cpu": cpu["model"], "mhz": cpu["mhz"], "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "load_average": load_average()}
    info.update(versions(modules))
    from .. import __version__
    info["edgelstm"] = __version__
    return info
