"""The C runtime under ASan + UBSan (no recovery) on mutated program data: 5,000 cases built with gcc and 5,000
with clang (tests/c_fuzzing.py: record fields, config sizes, array lengths, scales, weight values of LSTM / GRU /
RNN cell graph / Dense / converter op-graph programs). elstm_init must reject a case or the steps must run
clean: 0 sanitizer reports. bench/fuzz_c_program.py runs the same engine for longer (its counts: README)."""
import shutil
import subprocess

import pytest

import c_fuzzing

CASES = 5_000


def _links_sanitizers(cc, tmp_path) -> bool:
    src = tmp_path / "probe.c"
    src.write_text("int main(void) { return 0; }\n")
    return subprocess.run([cc, "-fsanitize=address,undefined", "-o", str(tmp_path / "probe"), str(src)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("cc, seed", [("cc", 2026), ("clang", 2027)])
def test_mutated_programs_are_rejected_or_run_clean_under_sanitizers(cc, seed, tmp_path):
    if shutil.which(cc) is None or not _links_sanitizers(cc, tmp_path):
        pytest.skip(f"SKIPPED LOUDLY: {cc} with ASan/UBSan runtimes missing (Debian: libclang-rt-14-dev for clang)")
    exe = c_fuzzing.build_fuzz_runner(tmp_path / "build", cc)
    res = c_fuzzing.run(CASES, seed=seed, exe=exe)
    print(f"\nC fuzz ({cc}, seed {seed}): {res['accepted']} accepted, {res['rejected']} rejected, "
          f"{res['skipped']} skipped, reports {res['reports']}")
    assert not res["reports"], f"sanitizer reports (replay: python tests/c_fuzzing.py --seed {seed} --case N): " \
                               f"{res['reports']} first cases {res['examples']}"
    assert res["accepted"] + res["rejected"] + res["skipped"] == CASES
    # both outcomes exercised: mutations neither too mild nor too wild
    assert res["accepted"] > CASES // 10 and res["rejected"] > CASES // 10
