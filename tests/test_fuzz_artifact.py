"""10,000 mutated .elstm files: each loads with a clean edgelstm error, or runs and equals tests/naive.py.
Cases run in subprocess batches with faulthandler, so a crash or a hang is counted and names its case
(see tests/fuzzing.py; bench/fuzz_elstm.py runs the same engine for millions of cases)."""
import json

from fuzzing import run_batches

CASES = 10_000


def test_mutated_artifacts_fail_cleanly_or_match_the_reference():
    res = run_batches(CASES, seed=2026)
    c = res["counts"]
    print(f"\nfuzz .elstm: {CASES} cases: {json.dumps(c)}")
    assert c["crash"] == 0 and c["hang"] == 0 and not res["failures"], json.dumps(res["failures"][:10])[:4000]
    assert c["error"] + c["equal"] == CASES
    # both outcomes must be exercised, or the mutations are too mild / too wild to test anything
    assert c["error"] > CASES // 10 and c["equal"] > CASES // 10
