"""Audio front end, readers, event tracking and the bundled tagger."""
import io
import json
import math
import struct
import wave

import numpy as np
import pytest

import edgelstm as el
from edgelstm.audio import AudioConfig, EventTracker, FrontEnd, LogMel, Tagger, logmel, read_raw, read_wav
from edgelstm.audio.features import _compiled_logmel
from edgelstm.cli import main
from edgelstm.data import AUDIO_MODEL, DATA
from edgelstm.errors import ArtifactError, AudioError

FE = FrontEnd()


def _wav_bytes(payload: bytes, *, tag=1, channels=1, sr=16000, bits=16) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, sr, sr * align, align, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + 16 + 8 + len(payload)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", len(payload)) + payload)


# ------------------------------------------------------------------------------------------ front end

def test_streaming_logmel_equals_whole_signal_for_random_chunkings():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(16000 * 2) * 0.2
    whole = logmel(y, frontend=FE)
    for trial in range(5):
        cuts = np.sort(rng.integers(0, y.size, size=rng.integers(1, 40)))
        lm = LogMel(FE)
        parts = [lm.push(c) for c in np.split(y, cuts)]
        got = np.concatenate(parts)
        assert np.array_equal(got, whole), trial  # exact: each frame sees the same samples, same kernel


def _logmel_loop(x, n_frames, hop, window, bitrev, tw_re, tw_im, mel_w, mel_lo, mel_hi, amin):
    """The per-frame loop the numpy front end replaced (Numba-compiled, scalar float64): the reference for bits."""
    n = window.shape[0]
    out = np.empty((n_frames, mel_w.shape[0]))
    re, im = np.zeros(n), np.zeros(n)
    for t in range(n_frames):
        for i in range(n):
            re[bitrev[i]] = x[t * hop + i] * window[i]
            im[bitrev[i]] = 0.0
        size = 2
        while size <= n:
            half, step = size // 2, n // size
            for start in range(0, n, size):
                for k in range(half):
                    wr, wi, p, q = tw_re[k * step], tw_im[k * step], start + k, start + k + half
                    xr = re[q] * wr - im[q] * wi
                    xi = re[q] * wi + im[q] * wr
                    re[q] = re[p] - xr
                    im[q] = im[p] - xi
                    re[p] += xr
                    im[p] += xi
            size *= 2
        for m in range(mel_w.shape[0]):
            s = 0.0
            for b in range(mel_lo[m], mel_hi[m]):
                s += mel_w[m, b] * (re[b] * re[b] + im[b] * im[b])
            out[t, m] = 10.0 * math.log10(max(amin, s))
    return out


def test_logmel_is_bit_identical_to_the_per_frame_loop():
    """The numpy front end (no Numba: it must run on 32-bit Pi OS) vectorizes across frames but keeps each
    frame's float64 operations and their order, so its log-mel equals the scalar loop bit for bit."""
    numba = pytest.importorskip("numba")
    loop = numba.njit(_logmel_loop)      # fastmath off: IEEE operations as written, like the old kernel
    from edgelstm.audio.features import _logmel_frames
    rng = np.random.default_rng(3)
    for fe in (FE, FrontEnd(sr=16000, n_fft=1024, hop_length=160, n_mels=40, fmin=0.0, fmax=7600.0)):
        lm = LogMel(fe)
        nz = lm._mel_w > 0
        lo = np.array([np.argmax(r) if r.any() else 0 for r in nz], np.int64)
        hi = np.array([len(r) - np.argmax(r[::-1]) if r.any() else 0 for r in nz], np.int64)
        for scale in (0.3, 1e-6, 0.0):
            x = rng.standard_normal(fe.n_fft + 37 * fe.hop_length) * scale
            n_frames = 1 + (x.size - fe.n_fft) // fe.hop_length
            want = loop(x, n_frames, fe.hop_length, lm._window, lm._bitrev, lm._tw_re, lm._tw_im, lm._mel_w, lo,
                        hi, float(fe.amin))
            args = (x, n_frames, fe.hop_length, lm._window, lm._bitrev, lm._tw_re, lm._tw_im, lm._band_bins,
                    lm._band_w, float(fe.amin))
            got = _logmel_frames(*args)
            assert np.array_equal(got, want), (fe.n_fft, scale, np.abs(got - want).max())
            # the package's own compiled loop (what LogMel runs when Numba runs the models): the same bits
            jit = _compiled_logmel()(*args)
            assert np.array_equal(jit, want), (fe.n_fft, scale, np.abs(jit - want).max())


def test_logmel_kernel_follows_the_backend():
    """LogMel runs the compiled loop when Numba runs the models and numpy on the C backend (a first run, where
    nothing may compile); both give the same features for any chunking."""
    pytest.importorskip("numba")
    from edgelstm.audio.features import _logmel_frames
    from edgelstm.backends import native
    y = np.random.default_rng(5).standard_normal(16000 * 3) * 0.3
    y[5000:9000] = 0.0
    y[20000:21000] = 1.0              # a clipped plateau
    try:
        native.set_backend("jit")
        jit = LogMel(FE)
        native.set_backend("native")
        ref = LogMel(FE)
    finally:
        native.set_backend(None)
    assert jit._kernel is _compiled_logmel()
    assert ref._kernel is _logmel_frames
    whole = ref.push(y)
    cuts = np.sort(np.random.default_rng(6).integers(0, y.size, size=25))
    parts = np.concatenate([jit.push(c) for c in np.split(y, cuts)])
    assert np.array_equal(parts, whole)


def test_logmel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    for fe in (FE, FrontEnd(sr=16000, n_fft=1024, hop_length=160, n_mels=40, fmin=0.0, fmax=7600.0)):
        S = librosa.feature.melspectrogram(y=y, sr=fe.sr, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                           n_mels=fe.n_mels, fmin=fe.fmin, fmax=fe.fmax, center=False,
                                           power=2.0, dtype=np.float64)
        ref = librosa.power_to_db(S, ref=1.0, amin=fe.amin, top_db=None).T
        got = logmel(y, frontend=fe)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-3  # the bound; float32 output rounding is ~1e-5 dB


def test_frontend_rejects_bad_parameters():
    with pytest.raises(AudioError):
        FrontEnd(n_fft=500)
    with pytest.raises(AudioError):
        FrontEnd(fmax=9000.0)


# ------------------------------------------------------------------------------------------ readers

@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm_wav_decoding_matches_stdlib_wave(tmp_path, bits, channels):
    rng = np.random.default_rng(bits + channels)
    width = bits // 8
    raw = rng.integers(0, 256, size=3000 * channels * width, dtype=np.uint8).tobytes()
    p = tmp_path / "x.wav"
    with wave.open(str(p), "wb") as w:  # the standard library writes the header: a real peer
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(16000)
        w.writeframes(raw)
    got = np.concatenate(list(read_wav(p, sr=16000, chunk_frames=700)))
    b = np.frombuffer(raw, np.uint8).reshape(-1, width)
    if bits == 8:
        v = b[:, 0].astype(np.float64) - 128
    else:
        v = sum(b[:, i].astype(np.int64) << (8 * i) for i in range(width))
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v).astype(np.float64)
    want = (v / float(1 << (bits - 1))).reshape(-1, channels).mean(axis=1)
    assert np.array_equal(got, want)


def test_float_wav_and_resampling(tmp_path):
    y = np.sin(2 * np.pi * 100 * np.arange(8000) / 8000).astype("<f4")
    p = tmp_path / "f.wav"
    p.write_bytes(_wav_bytes(y.tobytes(), tag=3, sr=8000, bits=32))
    out = np.concatenate(list(read_wav(p, sr=16000, chunk_frames=333)))
    assert abs(out.size - 16000) <= 2
    t = np.arange(out.size) / 16000
    # linear interpolation of a 100 Hz sine sampled at 8 kHz: error bound (pi*100/8000)^2/2 ~ 8e-4
    assert np.abs(out - np.sin(2 * np.pi * 100 * t)).max() < 1e-3
    whole = np.concatenate(list(read_wav(p, sr=16000, chunk_frames=100000)))
    assert np.allclose(whole, out, atol=1e-12)  # chunk size does not change the resampled signal


def test_raw_stream_reader():
    y = (np.arange(-500, 500) * 30).astype("<i2")
    got = np.concatenate(list(read_raw(io.BytesIO(y.tobytes()), sr=16000, chunk_frames=77)))
    assert np.array_equal(got, y / 32768.0)


# ------------------------------------------------------------------------------------------ bad inputs

def test_truncated_header(tmp_path):
    p = tmp_path / "t.wav"
    p.write_bytes(_wav_bytes(b"\0" * 100)[:30])
    with pytest.raises(AudioError, match="truncated WAV header"):
        list(read_wav(p, sr=16000))


def test_unsupported_encoding(tmp_path):
    p = tmp_path / "adpcm.wav"
    p.write_bytes(_wav_bytes(b"\0" * 100, tag=2, bits=4))
    with pytest.raises(AudioError, match="unsupported WAV encoding"):
        list(read_wav(p, sr=16000))


def test_zero_length(tmp_path):
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="zero length"):
        list(read_wav(empty, sr=16000))
    nodata = tmp_path / "n.wav"
    nodata.write_bytes(_wav_bytes(b""))
    with pytest.raises(AudioError, match="zero length"):
        list(read_wav(nodata, sr=16000))
    with pytest.raises(AudioError, match="zero length"):
        list(read_raw(io.BytesIO(b""), sr=16000))


def test_nan_in_float_wav_emits_every_good_chunk_once(tmp_path):
    y = np.zeros(5000, "<f4")
    y[:] = 0.1
    y[3456] = np.nan
    p = tmp_path / "nan.wav"
    p.write_bytes(_wav_bytes(y.tobytes(), tag=3, bits=32))
    got = []
    with pytest.raises(AudioError, match="NaN"):
        for c in read_wav(p, sr=16000, chunk_frames=1000):
            got.append(c)
    assert sum(c.size for c in got) == 3000  # chunks 0..2 whole, the bad chunk not emitted


def test_wrong_raw_format_flags(tmp_path):
    with pytest.raises(AudioError, match="unknown raw format"):
        list(read_raw(io.BytesIO(b"\0" * 10), sr=16000, format="S16_BE"))
    got = []
    with pytest.raises(AudioError, match="stray byte"):
        for c in read_raw(io.BytesIO(b"\0" * 1001), sr=16000, format="S16_LE", chunk_frames=100):
            got.append(c)
    assert sum(c.size for c in got) == 500  # every whole sample before the error, once
    p = tmp_path / "w.wav"
    p.write_bytes(_wav_bytes(b"\0" * 100))
    with pytest.raises(AudioError, match="drop --raw"):
        list(read_raw(p, sr=16000))


def test_cli_bad_audio_one_line_error(tmp_path, capsys):
    p = tmp_path / "t.wav"
    p.write_bytes(b"RIFF")
    assert main(["tag", str(p), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgelstm: error:") and "truncated WAV header" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ events

def _cfg(**kw):
    return AudioConfig(frontend=FE, labels=["a", "b"], **kw)


def test_hysteresis_events():
    cfg = _cfg(onset=[0.5, 0.5], offset=[0.3, 0.3], min_duration=[0.0, 0.2])
    tr = EventTracker(cfg)
    pa = [0.1, 0.6, 0.4, 0.9, 0.35, 0.2, 0.1, 0.7, 0.2]   # a: on at 1, stays on (>= 0.3) until 5
    pb = [0.0, 0.6, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]   # b: 1 frame -> shorter than 0.2 s, dropped
    evs = tr.update(np.array([pa, pb], np.float32).T)
    spf = FE.hop_length / FE.sr
    tail = (FE.n_fft - FE.hop_length) / FE.sr
    assert [(e.label, round(e.start / spf), round((e.end - tail) / spf)) for e in evs] == [("a", 1, 5), ("a", 7, 8)]
    assert evs[0].peak_confidence == pytest.approx(0.9)
    assert tr.flush() == []


def test_error_mid_stream_flushes_open_events_once():
    labels = ["a", "b", "c"]
    # a real model that always fires: Dense with zero weights and a large bias -> sigmoid ~ 1 on every frame
    spec = el.ModelSpec(layers=[el.Dense(input_size=FE.n_mels, output_size=3, activation="sigmoid",
                                         directions=[{"w": np.zeros((3, FE.n_mels), np.float32),
                                                      "b": np.full(3, 8.0, np.float32)}])])
    m = el.Model(spec)
    m.audio = AudioConfig(frontend=FE, labels=labels)

    def chunks():
        yield np.zeros(8000)
        raise AudioError("boom")

    got = []
    with pytest.raises(AudioError, match="boom"):
        for ev in Tagger(m).stream(chunks()):
            got.append(ev)
    assert sorted(e.label for e in got) == labels  # each open event exactly once, closed at the error
    assert all(e.end == pytest.approx(got[0].end) and e.start == 0.0 for e in got)


# ------------------------------------------------------------------------------------------ model file

def test_audio_metadata_round_trip_and_validation(tmp_path):
    m = el.load(AUDIO_MODEL)
    assert m.audio is not None and m.audio.frontend.n_mels == m.input_size
    p = tmp_path / "m.elstm"
    el.save(m, p)
    assert el.load(p).audio.to_dict() == m.audio.to_dict()
    # a file without audio metadata still loads
    from edgelstm.artifact import save_parts
    save_parts(p, m.spec, m.quant)
    assert el.load(p).audio is None
    with pytest.raises(AudioError, match="no audio front end"):
        Tagger(p)
    # tampered front end in the metadata: clear ArtifactError on load
    data = bytearray((DATA / "audio_tagger.elstm").read_bytes())
    i = data.find(b'\\"n_mels\\":')
    assert i > 0
    data[i + 11:i + 13] = b"99"
    q = tmp_path / "bad.elstm"
    q.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="audio"):
        el.load(q)


def test_bundled_int8_follows_float_on_calibration_features():
    f32 = el.load(DATA / "audio_tagger_f32.elstm")
    q = el.load(AUDIO_MODEL)
    assert q.is_quantized and AUDIO_MODEL.stat().st_size < 200 * 1024      # issue 19's budget
    X = np.load(DATA / "audio_calibration.npy").astype(np.float32)
    agree = np.mean((f32.run(X) >= 0.5) == (q.run(X) >= 0.5))
    # the measured level (docs/audio.md): 99.5% for the bundled run12 (freq convs, LSTM 128), 99.2% for run5a, 99.7% for run4
    assert agree >= 0.99, agree


def test_cli_tag_bundled_clip_json(capsys):
    assert main(["tag", "--json"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["audio_seconds"] > 1 and summary["real_time_factor"] > 0
    labels = set(el.load(AUDIO_MODEL).audio.labels)
    assert all(ln["event"]["label"] in labels for ln in lines[:-1])


@pytest.mark.parametrize("beep_s", [0.3, 0.1, None])
def test_bundled_tagger_tags_clean_beeps_and_a_tone_as_alarm(beep_s):
    """Issue 19's probes: a 1 kHz beep train (0.3 s or 0.1 s on, as long off) or a steady 1 kHz tone, 6 s at
    amplitude 0.1 between 1 s of silence, is one alarm event of at least 4 s (the calibrated min_duration) and
    no foreground event of another class.  Over ambience the bundled model misses them (docs/audio.md)."""
    tagger = Tagger()
    sr = tagger.frontend.sr
    t = np.arange(6 * sr) / sr
    tone = 0.1 * np.sin(2 * np.pi * 1000 * t)
    if beep_s is not None:
        tone *= (t % (2 * beep_s)) < beep_s
    y = np.concatenate([np.zeros(sr), tone, np.zeros(sr)])
    events = tagger.tag_array(y, sr=sr).events
    alarms = [e for e in events if e.label == "alarm"]
    assert len(alarms) == 1 and alarms[0].end - alarms[0].start >= 4.0, events
    assert {e.label for e in events} <= {"alarm", "background"}, events
