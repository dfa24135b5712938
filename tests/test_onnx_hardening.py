"""Issue 16, items 3 and 4: ONNX external data is read from the model's own folder only, and constant folding is
bounded (sizes before materializing, loop trip counts, work), skipping what the graph outputs never use.  Each
test failed against the importer before the fix (see the branch's report)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import edgelstm as el  # noqa: E402
from edgelstm.export import from_onnx  # noqa: E402
from onnx_crafted import crafted, gru_model  # noqa: E402

HERE = Path(__file__).resolve().parent


def _save_external(model, folder: Path, location="w.bin"):
    """``model`` saved in ``folder`` with every initializer in the external file ``location``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return folder / "m.onnx"


def _edit_location(path: Path, location: str):
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    path.write_bytes(m.SerializeToString())


def test_external_data_comes_from_the_models_folder_not_the_working_directory(tmp_path, monkeypatch):
    model = gru_model()
    path = _save_external(model, tmp_path / "model")
    decoy = tmp_path / "cwd"
    decoy.mkdir()
    data = (tmp_path / "model" / "w.bin").read_bytes()
    (decoy / "w.bin").write_bytes(np.random.default_rng(5).standard_normal(len(data) // 4).astype(np.float32)
                                  .tobytes())                       # same size, other numbers
    monkeypatch.chdir(decoy)
    X = np.random.default_rng(0).standard_normal((7, 1, 3)).astype(np.float32)
    (Y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"X": X})
    m = from_onnx(path)
    # float32 kernels vs onnxruntime's: rounding only; the decoy's weights would be off by O(1)
    np.testing.assert_allclose(m.run(X[:, 0]), Y[:, 0, 0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "past_end"])
def test_external_data_that_leaves_the_folder_is_refused(tmp_path, where):
    path = _save_external(gru_model(), tmp_path / "model")
    outside = tmp_path / "outside.bin"
    outside.write_bytes((tmp_path / "model" / "w.bin").read_bytes())
    if where == "parent":
        _edit_location(path, "../outside.bin")
    elif where == "absolute":
        _edit_location(path, str(outside))
    elif where == "symlink":
        os.symlink(outside, tmp_path / "model" / "link.bin")
        _edit_location(path, "link.bin")
    else:
        (tmp_path / "model" / "w.bin").write_bytes(b"\0" * 16)      # shorter than the tensors it holds
    with pytest.raises(el.ImportModelError, match="leaves the model's folder|not a relative path|beyond the end"):
        from_onnx(path)


def test_external_data_of_a_model_given_as_bytes_is_refused(tmp_path):
    path = _save_external(gru_model(), tmp_path / "model")
    with pytest.raises(el.ImportModelError, match="external file"):
        from_onnx(path.read_bytes())


# files that must import (the bomb is unused, or the op is fine under its opset) vs be refused
IMPORTS = {"constantofshape_unused", "opset11_unsqueeze"}


@pytest.mark.parametrize("name", sorted(crafted()))
def test_crafted_files_stay_under_2_gib_and_end_cleanly(tmp_path, name):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(crafted()[name].SerializeToString())
    assert path.stat().st_size < 16_000
    p = subprocess.run([sys.executable, str(HERE / "onnx_crafted.py"), str(path)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    print(name, res)
    assert not res["outcome"].startswith("FOREIGN"), res
    assert res["peak_rss_mib"] < 2048, res
    assert res["seconds"] < 60, res
    if name in IMPORTS:
        assert res["outcome"] == "imported", res
    else:
        assert res["outcome"].startswith("refused"), res
