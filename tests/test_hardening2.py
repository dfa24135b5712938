"""Hardening round 2 (issue 16), the Python side: each defect has a test here that failed before its fix.

Files are crafted by tests/crafted.py (shared with bench/fuzz_importers.py, which also measures their peak RSS).
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edgelstm as el
from crafted import keras_outside_files

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "edgelstm" / "data"


# ---- 1. from_keras reads only what the model file itself stores ----

@pytest.fixture(scope="module")
def outside_files(tmp_path_factory):
    pytest.importorskip("h5py")
    folder = tmp_path_factory.mktemp("outside")
    return folder, keras_outside_files(folder)


def test_keras_files_pointing_outside_are_refused(outside_files, monkeypatch):
    from edgelstm.export import from_keras
    folder, files = outside_files
    monkeypatch.chdir(folder)         # where the relative external-storage path resolves
    outcomes = {}
    for label, path in files:
        try:
            m = from_keras(path)
        except el.ImportModelError as e:
            outcomes[label] = str(e)
            continue
        kernel = np.ascontiguousarray(m.spec.layers[0].directions[0]["w_x"].T).tobytes()  # Keras' layout
        outcomes[label] = "IMPORTED the foreign file's bytes" if b"SECRET" in kernel else "IMPORTED"
    print(outcomes)
    for label, text in outcomes.items():
        assert not text.startswith("IMPORTED"), (label, text)
        assert "outside" in text, (label, text)
