"""Print the inner loop the pairwise matvec (kernels/pairwise._dot_blocks) compiles to, on this x86 host, for
AVX2 (haswell; alderlake with AVX-VNNI, where LLVM fuses vpmaddwd + vpaddd into vpdpwssd) and for AArch64
(cortex-a76 with dotprod, cortex-a72 plain ARMv8), and count the multiply-add and int8 -> int16 widening instructions.

    python bench/pairwise_asm.py [--full] [--json bench/results/pairwise_asm.json]

AArch64: the portable vector IR (the path non-x86 targets take) is taken from Numba, retargeted to
aarch64-unknown-linux-gnu and compiled by llvmlite's own AArch64 backend, so no ARM machine is needed.
"""
import re
import sys

import llvmlite.binding as llvm
import numba

from edgelstm.kernels import pairwise

SIG = "(int16[::1], int64, int64, int64, int64, int16[::1], int32[::1], int64, int64, int64, int32[::1], int64)"
MADD = re.compile(r"\b(vpmaddwd|vpdpwssd|vpmovsxbw|smlal2?|smull2?|sdot|sadalp|saddw2?|sshll2?|mla)\b")


def _fresh(py_func):
    f = numba.njit(nogil=True)(py_func)
    f.compile(SIG)
    return f


def _kernel_only(ir_text):
    """The kernel's own function (first ``define``), without Numba's x86-specific NRT helpers and the
    host's target attributes, plus the declarations it uses."""
    lines = ir_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("define"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    body = [re.sub(r"\)( local_unnamed_addr)? #\d+ \{$", ") {", lines[start])] + lines[start + 1:end + 1]
    text = re.sub(r", !llvm\.loop !\d+", "", "\n".join(body))
    decls = [re.sub(r" #\d+$", "", line) for line in lines
             if line.startswith("declare") and re.search(r"@([\w.]+)\(", line).group(1) in text]
    return "\n".join(decls + [text]) + "\n"


def _report(name, asm, full):
    ops = MADD.findall(asm)
    counts = {op: ops.count(op) for op in sorted(set(ops))}
    print(f"== {name}: multiply-add instructions {counts}")
    if full:
        print(asm)
    return counts


def main(argv):
    full = "--full" in argv
    out = argv[argv.index("--json") + 1] if "--json" in argv else None
    host = _fresh(pairwise._dot_blocks.py_func)
    x86 = _report(f"host {llvm.get_host_cpu_name()}", host.inspect_asm(host.signatures[0]), full)

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    results = {"host": x86}
    for isa, triple, cpu, feats in (("avx2", "x86_64-unknown-linux-gnu", "haswell", "+avx2"),
                                    ("avx2", "x86_64-unknown-linux-gnu", "alderlake", "+avx2,+avxvnni"),
                                    ("generic", "aarch64-unknown-linux-gnu", "cortex-a76", "+neon,+dotprod"),
                                    ("generic", "aarch64-unknown-linux-gnu", "cortex-a72", "+neon")):
        pairwise.FORCE_ISA = isa
        kernel = _fresh(pairwise._dot_blocks.py_func)
        ir_text = _kernel_only(kernel.inspect_llvm(kernel.signatures[0]))
        tm = llvm.Target.from_triple(triple).create_target_machine(cpu=cpu, features=feats, opt=3)
        mod = llvm.parse_assembly(ir_text)
        mod.triple = triple
        mod.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        results[f"{cpu} {isa}"] = _report(f"{triple.split('-')[0]} {cpu} ({isa} IR)", tm.emit_assembly(mod), full)
    pairwise.FORCE_ISA = None
    if out:
        import json
        with open(out, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
