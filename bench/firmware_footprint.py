"""Cortex-M4 footprint of C bundles: flash (text + rodata) and RAM (state + scratch) next to the int8 weights.

    python bench/firmware_footprint.py     # needs arm-none-eabi-gcc; writes bench/results/firmware_footprint.json

Runtime code measured for the portable dot loop (-DELSTM_NO_SIMD) and the Cortex-M DSP one (SMLAD, the
default for -mcpu=cortex-m4), as the bundle builds it: only the layer kinds, Dense activations and op kernels
its model uses (the ELSTM_WITH_* macros to_c writes into the bundle's elstm_records.h). Each model twice:
exported with the gemmlowp activation tables (the default, fastest on a PC) and with ``tables=False``
(``edgelstm export --to c --no-tables``: the runtime computes the activations). "linked" is a whole image:
the runtime and model data objects linked with a minimal entry (elstm_init, then elstm_step in a loop),
--gc-sections, and libgcc (so any soft-float or 64-bit helper a kernel calls is counted), entry excluded.

Models: LSTM I=40 H=64 + Dense 8 sigmoid, GRU I=40 H=64 + Dense 8 sigmoid (random weights, quantized with
random calibration frames: the sizes do not depend on the values). The int8 GRU runs as its int16 op graph
(edgelstm/program/cellgraph.py): its CONV16 weights are int8 in w8, its records, biases and two-byte per-row
requantization (edgelstm/program/c_program.py c_program) and its int16 LOGISTIC / TANH table (256 uint16, two per int32)
in prog; no gemmlowp tables, so its two rows are the same. Its arena holds the graph's tensors by lifetime
(program.opgraph.prepare_record). RAM is what the bundle's example streamer allocates per stream: state, the two frame
buffers, gates (MODEL_SCRATCH), acc (MODEL_ACC_LEN int32) and aux (MODEL_AUX_LEN), the exact elements the
model's layers touch (c_program.c_buffers).
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import edgelstm as el
from edgelstm.program.c_program import TABLE_LEN, c_arrays, c_work_buffers
from edgelstm.program import layout as L
from edgelstm.export.to_c import to_c
from edgelstm.firmware_host import CORTEX_M_CFLAGS
from edgelstm.benchmark import write_json

FLAGS = [f for f in CORTEX_M_CFLAGS if f != "-O2"] + ["-Os", "-ffunction-sections", "-fdata-sections", "-c"]
ENTRY = """#include "edgelstm.h"
#include "model_data.h"
static int16_t state[MODEL_N_STATE], frames[2 * MODEL_WIDTH], gates[MODEL_SCRATCH], aux[MODEL_AUX_LEN];
static int32_t acc[MODEL_ACC_LEN];
static int8_t x[MODEL_INPUT_SIZE], y[MODEL_OUTPUT_SIZE];
void _start(void);
void _start(void)
{
    elstm_state st;
    st.state = state; st.frames = frames; st.gates = gates; st.acc = acc; st.aux = aux;
    if (elstm_init(&model_config, &model_weights, &st) == ELSTM_OK) {
        for (;;) elstm_step(&model_config, &model_weights, &st, x, y);
    }
    for (;;) {}
}
"""


def _table_count(prog):
    """Distinct gemmlowp activation tables the C program's LSTM records name (-1: computed)."""
    offs = set()
    for k in range(int(prog[L.G_LAYERS])):
        lo = int(prog[L.G_LAYER0 + k])
        if int(prog[lo + L.L_KIND]) == L.KIND_LSTM:
            rec = lo + L.L_HDR
            offs |= {int(prog[rec + f]) for f in (L.LS_SIG, L.LS_TANH3, L.LS_TANH_CELL) if int(prog[rec + f]) >= 0}
    return len(offs)


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


def _sizes_elf(elf):
    """(text, rodata, data, bss) bytes of a linked image by output section name."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    acc = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            for k in acc:
                if parts[0].startswith("." + k):
                    acc[k] += int(parts[1])
    return acc


def footprint(kind, tables):
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
        b = to_c(q, Path(tmp) / "b", tables=tables)
        objs = {}
        for key, src, extra in (("dsp", "edgelstm.c", []), ("portable", "edgelstm.c", ["-DELSTM_NO_SIMD"]),
                                ("data", "model_data.c", [])):
            obj = Path(tmp) / f"{key}.o"
            subprocess.run(["arm-none-eabi-gcc", *FLAGS, *extra, "-I", str(b), "-o", str(obj), str(b / src)],
                           check=True)
            objs[key] = _sizes(obj)
        (Path(tmp) / "entry.c").write_text(ENTRY)
        entry = Path(tmp) / "entry.o"
        subprocess.run(["arm-none-eabi-gcc", *FLAGS, "-I", str(b), "-o", str(entry), str(Path(tmp) / "entry.c")],
                       check=True)
        linked = {}
        for key, extra in (("dsp", []), ("portable", ["-DELSTM_NO_SIMD"])):
            elf = Path(tmp) / f"{key}.elf"
            subprocess.run(["arm-none-eabi-gcc", *[f for f in FLAGS if f != "-c"], *extra, "-I", str(b), "-nostdlib",
                            "-nostartfiles", "-Wl,--gc-sections", "-o", str(elf), str(Path(tmp) / "entry.c"),
                            str(b / "edgelstm.c"), str(b / "model_data.c"), "-lgcc"], check=True)
            e, o = _sizes_elf(elf), _sizes(entry)
            linked[key] = e["text"] + e["rodata"] - o["text"] - o["rodata"]
    prep = q._prep
    prog, _, _ = c_arrays(prep, tables=tables, spec=q.spec)    # the bundle's arrays: count its tables
    table_bytes = TABLE_LEN * 2 * _table_count(prog)
    buf = c_work_buffers(prep, tables=tables, spec=q.spec)      # as the bundle's model_data.h sizes them
    ram = 2 * prep.n_state + 2 * 2 * prep.width + 2 * buf["scratch"] + 4 * buf["acc"] + 2 * buf["aux"]
    code = objs["portable"]["text"] + objs["portable"]["rodata"]
    code_dsp = objs["dsp"]["text"] + objs["dsp"]["rodata"]
    data = objs["data"]["rodata"] + objs["data"]["text"]
    return {"model": f"{kind.upper()} I=40 H=64 + Dense 8", "activation_tables": tables,
            "int8_weight_bytes": int8_weights, "int32_bias_bytes": bias_bytes,
            "runtime_code_bytes": code, "runtime_code_dsp_bytes": code_dsp,
            "model_data_flash_bytes": data, "activation_table_bytes": table_bytes,
            "flash_total_bytes": code + data, "flash_beyond_weights_bytes": code + data - int8_weights,
            "flash_beyond_weights_dsp_bytes": code_dsp + data - int8_weights,
            "linked_beyond_weights_bytes": linked["portable"] - int8_weights,
            "linked_beyond_weights_dsp_bytes": linked["dsp"] - int8_weights,
            "ram_state_bytes": 2 * prep.n_state, "ram_total_bytes": ram}


def main():
    if shutil.which("arm-none-eabi-gcc") is None:
        print("SKIPPED: arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)", file=sys.stderr)
        return 0
    rows = [footprint(k, t) for k in ("lstm", "gru") for t in (False, True)]
    print("| model | activations | int8 weights | runtime code (text+rodata): portable / SMLAD | model data in flash "
          "| of which gemmlowp tables | flash total (portable) | flash beyond the int8 weights: portable / SMLAD "
          "| linked image beyond the int8 weights: portable / SMLAD | RAM state | RAM state+scratch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {'tables' if r['activation_tables'] else 'computed (--no-tables)'} | "
              f"{r['int8_weight_bytes']:,} B | {r['runtime_code_bytes']:,} / {r['runtime_code_dsp_bytes']:,} B | "
              f"{r['model_data_flash_bytes']:,} B | {r['activation_table_bytes']:,} B | {r['flash_total_bytes']:,} B | "
              f"{r['flash_beyond_weights_bytes']:,} / {r['flash_beyond_weights_dsp_bytes']:,} B | "
              f"{r['linked_beyond_weights_bytes']:,} / {r['linked_beyond_weights_dsp_bytes']:,} B | "
              f"{r['ram_state_bytes']:,} B | {r['ram_total_bytes']:,} B |")
    out = Path(__file__).resolve().parent / "results" / "firmware_footprint.json"
    write_json(out, rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
