"""from_keras on files Keras itself wrote (tests/fixtures/make_keras.py): every layer kind and option matches
Keras' own outputs within 1e-5, for both the .keras and the legacy .h5 format, with masked (variable-length)
sequences mapped to lengths=."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py")

import edgelstm as el  # noqa: E402
from edgelstm.export import from_keras  # noqa: E402

FIX = Path(__file__).resolve().parent / "fixtures" / "keras"
NAMES = sorted(p.stem for p in FIX.glob("*.npz"))


def test_fixtures_present():
    assert len(NAMES) == 5


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("name", NAMES)
def test_matches_keras_outputs(name, fmt):
    d = np.load(FIX / f"{name}.npz")
    m = from_keras(FIX / f"{name}.{fmt}")
    masked = "simplernn" not in name
    lengths = d["lengths"] if masked else None
    Y = m.run(d["x"], lengths=lengths)
    want = d["y"]
    if masked:  # Keras carries the last valid output through masked steps; edgelstm emits zeros there
        valid = np.arange(d["x"].shape[1])[None, :] < d["lengths"][:, None]
        Y, want = Y[valid], want[valid]
    # float32 against float32 (Keras/TF kernels, other summation orders): rounding only
    assert np.abs(Y - want).max() <= 1e-5


def test_imported_keras_model_quantizes():
    m = from_keras(FIX / "lstm_dense_sigmoid.keras")
    q = el.quantize(m, calibration=np.load(FIX / "lstm_dense_sigmoid.npz")["x"], progress=False)
    print(q.fidelity)
    assert q.fidelity.to_dict()["cosine"] > 0.99


def test_damaged_files_are_import_errors(tmp_path):
    data = (FIX / "gru_after_softmax.keras").read_bytes()
    for k, junk in enumerate([data[:len(data) // 2], b"PK\x03\x04" + b"\x00" * 50, b"\x89HDF\r\n\x1a\n" + b"0" * 99]):
        p = tmp_path / f"bad{k}.keras"
        p.write_bytes(junk)
        with pytest.raises(el.ImportModelError):
            from_keras(p)
