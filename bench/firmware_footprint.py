"""Cortex-M4 footprint of C bundles: flash (text + rodata) and RAM (state + scratch) next to the int8 weights.

    python bench/firmware_footprint.py      # needs arm-none-eabi-gcc; prints a markdown table + JSON

Models: LSTM I=40 H=64 + Dense 8 sigmoid, GRU I=40 H=64 + Dense 8 sigmoid (random weights, quantized with
random calibration frames: the sizes do not depend on the values).
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import edgelstm as el
from edgelstm.export.to_c import to_c
from edgelstm.firmware_host import CORTEX_M_CFLAGS

FLAGS = [f for f in CORTEX_M_CFLAGS if f != "-O2"] + ["-Os", "-ffunction-sections", "-fdata-sections", "-c"]


def _sizes(obj):
    """(text, rodata, data, bss) bytes of an object file by section name."""
    out = subprocess.run(["arm-none-eabi-objdump", "-h", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    acc = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            name, size = parts[1], int(parts[2], 16)
            for k in acc:
                if name.startswith("." + k):
                    acc[k] += size
    return acc


def footprint(kind):
    spec = el.random_model([{"kind": kind, "hidden_size": 64}, {"kind": "dense", "output_size": 8,
                                                                "activation": "sigmoid"}], input_size=40, seed=3)
    rng = np.random.default_rng(0)
    q = el.quantize(el.Model(spec), calibration=rng.standard_normal((2, 50, 40)).astype(np.float32),
                    progress=False)
    int8_weights = sum(int(a.size) for layer in q.quant.layers for d in layer for n, a in d.items()
                       if n in ("w_x", "w_h", "w", "w_proj"))
    bias_bytes = sum(4 * int(a.size) for layer in q.quant.layers for d in layer for n, a in d.items()
                     if n.startswith("b"))
    with tempfile.TemporaryDirectory() as tmp:
        b = to_c(q, Path(tmp) / "b")
        objs = {}
        for src in ("edgelstm.c", "model_data.c"):
            obj = Path(tmp) / (src + ".o")
            subprocess.run(["arm-none-eabi-gcc", *FLAGS, "-I", str(b), "-o", str(obj), str(b / src)], check=True)
            objs[src] = _sizes(obj)
    prep = q._prep
    tables = 65536 * 2 * (3 if kind == "lstm" else 2)
    ram = 2 * prep.n_state + 2 * 2 * prep.width + prep.scratch * (2 + 4 + 2)
    return {"model": f"{kind.upper()} I=40 H=64 + Dense 8", "int8_weight_bytes": int8_weights,
            "int32_bias_bytes": bias_bytes,
            "runtime_code_bytes": objs["edgelstm.c"]["text"] + objs["edgelstm.c"]["rodata"],
            "model_data_flash_bytes": objs["model_data.c"]["rodata"] + objs["model_data.c"]["text"],
            "activation_table_bytes": tables,
            "ram_state_bytes": 2 * prep.n_state, "ram_total_bytes": ram}


def main():
    if shutil.which("arm-none-eabi-gcc") is None:
        print("SKIPPED: arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)", file=sys.stderr)
        return 0
    rows = [footprint(k) for k in ("lstm", "gru")]
    print("| model | int8 weights | runtime code (text+rodata) | model data in flash | of which gemmlowp tables "
          "| RAM state | RAM state+scratch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['int8_weight_bytes']} | {r['runtime_code_bytes']} | "
              f"{r['model_data_flash_bytes']} | {r['activation_table_bytes']} | {r['ram_state_bytes']} | "
              f"{r['ram_total_bytes']} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
