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


# ---- 5. audio memory is bounded by the chunk; absurd rates and channel counts are refused ----

READ_WAV_SCRIPT = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))   # a runaway reader fails here, not the machine
    from edgelstm.audio.io import read_wav
    from edgelstm.errors import AudioError
    n = 0
    try:
        for chunk in read_wav(sys.argv[1], sr=16000):
            n += chunk.size
        print("read", n)
    except AudioError as e:
        print("AudioError", e)
""")


def test_crafted_wavs_are_refused_or_read_in_bounded_memory(tmp_path):
    from crafted import peak_rss_of, wav_crafted
    refused = {"rate-1hz": "1 Hz", "rate-4g": "4294967295 Hz", "channels-65535": "65535 channels",
               "fmt-chunk-4g": "fmt", "list-chunk-4g": "truncated"}
    bad = []
    for label, path in wav_crafted(tmp_path):
        rss, out, err = peak_rss_of(READ_WAV_SCRIPT, str(path))
        last = out.strip().splitlines()[-1] if out.strip() else f"died: {err.strip().splitlines()[-1]}"
        print(f"{label:<16} peak RSS {rss / 2**20:7.1f} MiB  {last[:160]}")
        want = ("AudioError", refused[label]) if label in refused else ("read", "")
        if rss >= 512 << 20 or not last.startswith(want[0]) or want[1] not in last:
            bad.append(label)
    assert not bad


def test_wav_cut_short_is_read_with_a_warning(tmp_path):
    from crafted import wav_bytes
    from edgelstm.audio.io import read_wav
    p = tmp_path / "cut.wav"
    p.write_bytes(wav_bytes(rate=16000, data=bytes(32000), data_size=4 * 32000))
    with pytest.warns(el.AudioWarning, match=r"declares 4\.00 s of audio, the file ends after 1\.00 s"):
        n = sum(c.size for c in read_wav(p, sr=16000))
    assert n == 16000


def test_reader_errors_come_when_the_reader_is_made(tmp_path):
    # the CLI prints its banner after this point: a bad header must not follow the banner
    from crafted import wav_bytes
    from edgelstm.audio.io import read_raw, read_wav
    p = tmp_path / "r.wav"
    p.write_bytes(wav_bytes(rate=1, data=bytes(100)))
    with pytest.raises(el.AudioError, match="1 Hz"):
        read_wav(p, sr=16000)
    with pytest.raises(el.AudioError, match="channels"):
        read_raw(p, sr=16000, channels=1000)
