"""Voice activity detection: silero-vad's segmentation as a stream (against silero's own function), the VAD
pipeline on any window-in / probability-out model, and `edgelstm vad`."""
import json
import math

import numpy as np
import pytest

import edgelstm as el
from edgelstm.audio import VAD, SpeechSegmenter, write_wav
from edgelstm.cli import main
from edgelstm.errors import AudioError, ModelError
from edgelstm.topologies import prepend_context

silero_utils = pytest.importorskip("silero_vad.utils_vad")   # silero's reference (the dev extra installs it)


def _segments(probs, length, **kw):
    seg = SpeechSegmenter(**kw)
    out = []
    for p in probs:
        out += seg.push(p)
    out += seg.finish(length)
    return [{"start": s.start, "end": s.end} for s in out]


@pytest.mark.parametrize("seed", range(6))
def test_streaming_segmenter_equals_silero(seed):
    """Random probability runs (and uniform noise), with silero's defaults and with max-speech splits, other
    silences and paddings: every segment equals get_speech_timestamps_from_probs' on the same probabilities."""
    rng = np.random.default_rng(seed)
    for trial in range(80):
        n = int(rng.integers(1, 300))
        if trial % 3 == 0:
            probs = rng.random(n)
        else:
            runs = np.repeat(rng.random(n // 4 + 1) > 0.5, int(rng.integers(2, 12)))[:n]
            probs = np.clip(runs * rng.uniform(0.3, 1.0, runs.size) + rng.uniform(0, 0.45, runs.size), 0, 1)
        kw = {}
        if trial % 4 == 1:
            kw["max_speech_duration_s"] = float(rng.uniform(0.2, 3))
        if trial % 5 == 2:
            kw.update(min_silence_duration_ms=int(rng.integers(0, 200)), speech_pad_ms=int(rng.integers(0, 100)))
        if trial % 7 == 3:
            kw.update(use_max_poss_sil_at_max_speech=False, max_speech_duration_s=float(rng.uniform(0.2, 3)))
        length = len(probs) * 512 - int(rng.integers(0, 512))
        want = silero_utils.get_speech_timestamps_from_probs([float(p) for p in probs],
                                                             audio_length_samples=length, **kw)
        assert _segments(probs, length, **kw) == want, (seed, trial, kw)


def _energy_vad(window=512, context=64):
    """A small stand-in VAD model (conv front end + GRU + sigmoid) over context + window samples."""
    spec = el.random_model([{"kind": "conv1d", "out_channels": 8, "kernel_size": 64, "stride": 64},
                            {"kind": "activation", "activation": "relu"}, {"kind": "gru", "hidden_size": 8},
                            {"kind": "dense", "output_size": 1, "activation": "sigmoid"}],
                           input_size=window + context, seed=4, scale=3.0)
    return prepend_context(el.Model(spec), context=context, size=window)


def _speechy(seconds=6.0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = (np.sin(2 * np.pi * 0.4 * t) > 0.2).astype(np.float32)
    return (env * np.sin(2 * np.pi * 220 * t) * 0.5 + rng.standard_normal(t.size) * 0.01).astype(np.float32)


def test_chunking_does_not_change_segments():
    vad = VAD(_energy_vad(), min_speech_duration_ms=50)
    audio = _speechy()
    whole = [s.to_dict() for s in vad.stream([audio])]
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.integers(0, audio.size, 40))
    parts = np.split(audio, cuts)
    assert [s.to_dict() for s in vad.stream(parts)] == whole
    probs = vad.probabilities(audio)
    assert _segments(probs, audio.size, min_speech_duration_ms=50) == \
        [{"start": d["start_sample"], "end": d["end_sample"]} for d in whole]
    assert len(whole) >= 2


def test_vad_refuses_bad_models_and_parameters():
    with pytest.raises(ModelError, match="window"):
        VAD(el.Model(el.random_model([{"kind": "dense", "output_size": 1}], input_size=100)))
    with pytest.raises(AudioError, match="threshold"):
        VAD(_energy_vad(), threshold=1.5)
    with pytest.raises(AudioError, match="8000 or 16000"):
        VAD(_energy_vad(), sr=44100)
    with pytest.raises(AudioError, match="max_speech"):
        VAD(_energy_vad(), max_speech_duration_s=-1)


def test_cli_vad_json(tmp_path, capsys):
    model = tmp_path / "vad.elstm"
    el.save(_energy_vad(), model)
    wav = tmp_path / "x.wav"
    write_wav(wav, _speechy(), sr=16000)
    assert main(["vad", str(wav), "--model", str(model), "--json", "--min-speech-ms", "50"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    segs, summary = lines[:-1], lines[-1]["summary"]
    assert summary["segments"] == len(segs) >= 2
    assert math.isclose(summary["audio_seconds"], 6.0)
    want = VAD(el.load(model), min_speech_duration_ms=50).segments_file(wav).segments
    assert segs == [s.to_dict() for s in want]
