"""Voice activity detection: audio -> a VAD model's speech probability per window -> speech segments.

The model is silero-vad's (MIT), imported from the ``silero-vad`` PyPI package's own ONNX file when that package is
installed (converted once, then cached), or any edgelstm model with the same interface: one step takes one window of
``window`` new samples (512 at 16 kHz, 256 at 8 kHz) and returns the speech probability. silero's file takes the
window with the previous 64 (32) samples in front; edgelstm puts a Context layer before it, so users push plain
windows and the stream keeps the context, as silero's own wrapper does.

The segmentation is silero's ``get_speech_timestamps`` (thresholds with hysteresis, minimum speech and silence,
maximum speech length, padding), run as a stream: a segment is emitted as soon as its padded bounds are final.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AudioError, ModelError
from .tagger import StreamSummary

SILERO_FILE = "silero_vad.onnx"


@dataclass
class Segment:
    start: int            # samples at the model's rate
    end: int
    sr: int

    def to_dict(self) -> dict:
        return {"start": round(self.start / self.sr, 3), "end": round(self.end / self.sr, 3),
                "start_sample": int(self.start), "end_sample": int(self.end)}


class SpeechSegmenter:
    """silero-vad's ``get_speech_timestamps_from_probs`` as a stream: ``push(prob)`` per window, ``finish(n)`` at the
    end of ``n`` samples; both return the segments (in samples) whose padded bounds became final, in order.
    Parameters and defaults are silero's.

    silero pads after the whole file: the first start by -pad, and between neighbours either half the gap each
    (gap < 2 pad) or pad each. So a closed segment is held until its successor is known or no successor can start
    within 2 pad of its end (then its end is end + pad): with silero's defaults (min silence 100 ms > 2 x 30 ms)
    that is at once."""

    def __init__(self, *, sr: int = 16000, window: int = 512, threshold: float = 0.5,
                 neg_threshold: float | None = None, min_speech_duration_ms: float = 250,
                 max_speech_duration_s: float = math.inf, min_silence_duration_ms: float = 100,
                 speech_pad_ms: float = 30, min_silence_at_max_speech: float = 98,
                 use_max_poss_sil_at_max_speech: bool = True):
        for name, v in (("threshold", threshold), ("min_speech_duration_ms", min_speech_duration_ms),
                        ("min_silence_duration_ms", min_silence_duration_ms), ("speech_pad_ms", speech_pad_ms),
                        ("min_silence_at_max_speech", min_silence_at_max_speech)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise AudioError(f"VAD {name} must be a finite number >= 0, got {v!r}")
        if not 0 < threshold <= 1:
            raise AudioError(f"VAD threshold must lie in (0, 1], got {threshold}")
        if isinstance(max_speech_duration_s, bool) or not isinstance(max_speech_duration_s, (int, float)) \
                or not max_speech_duration_s > 0:
            raise AudioError(f"VAD max_speech_duration_s must be > 0, got {max_speech_duration_s!r}")
        self.sr, self.window = sr, window
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
        self.min_speech = sr * min_speech_duration_ms / 1000
        self.pad = sr * speech_pad_ms / 1000
        self.max_speech = sr * max_speech_duration_s - window - 2 * self.pad
        self.min_silence = sr * min_silence_duration_ms / 1000
        self.min_silence_at_max = sr * min_silence_at_max_speech / 1000
        self.use_max_poss = use_max_poss_sil_at_max_speech
        self.i = 0
        self.triggered = False
        self.current: dict = {}
        self.temp_end = self.prev_end = self.next_start = 0
        self.possible_ends: list = []
        self.held: dict | None = None     # closed, start padded, end waiting for its successor
        self.shift = self.pad             # what the next kept segment's start moves left by

    def push(self, p: float) -> list:
        """One window's speech probability (window i starts at sample i * window)."""
        self.out = []
        cur = self.window * self.i
        self.i += 1
        self._step(float(p), cur)
        if self.held and (self.held["end"] + 2 * self.pad <= (self.current.get("start", cur))):
            self._emit_held(None)         # no kept successor can start within 2 pad of its end
        return self.out

    def _step(self, p: float, cur: int) -> None:
        # silero's loop body; ``speeches.append`` is ``_keep``
        if p >= self.threshold and self.temp_end:
            sil = cur - self.temp_end
            if sil > self.min_silence_at_max:
                self.possible_ends.append((self.temp_end, sil))
            self.temp_end = 0
            if self.next_start < self.prev_end:
                self.next_start = cur
        if p >= self.threshold and not self.triggered:
            self.triggered = True
            self.current["start"] = cur
            return
        if self.triggered and cur - self.current["start"] > self.max_speech:
            if self.use_max_poss and self.possible_ends:
                self.prev_end, dur = max(self.possible_ends, key=lambda x: x[1])
                self.current["end"] = self.prev_end
                self._keep(self.current)
                self.current = {}
                self.next_start = self.prev_end + dur
                if self.next_start < self.prev_end + cur:
                    self.current["start"] = self.next_start
                else:
                    self.triggered = False
                self.prev_end = self.next_start = self.temp_end = 0
                self.possible_ends = []
            elif self.prev_end:
                self.current["end"] = self.prev_end
                self._keep(self.current)
                self.current = {}
                if self.next_start < self.prev_end:
                    self.triggered = False
                else:
                    self.current["start"] = self.next_start
                self.prev_end = self.next_start = self.temp_end = 0
                self.possible_ends = []
            else:
                self.current["end"] = cur
                self._keep(self.current)
                self.current = {}
                self.prev_end = self.next_start = self.temp_end = 0
                self.triggered = False
                self.possible_ends = []
                return
        if p < self.neg_threshold and self.triggered:
            if not self.temp_end:
                self.temp_end = cur
            sil_now = cur - self.temp_end
            if not self.use_max_poss and sil_now > self.min_silence_at_max:
                self.prev_end = self.temp_end
            if sil_now < self.min_silence:
                return
            self.current["end"] = self.temp_end
            if self.current["end"] - self.current["start"] > self.min_speech:
                self._keep(self.current)
            self.current = {}
            self.prev_end = self.next_start = self.temp_end = 0
            self.triggered = False
            self.possible_ends = []

    def _keep(self, seg: dict) -> None:
        """A segment silero keeps: its predecessor's end is final now, and its own start."""
        seg = dict(seg)
        if self.held:
            self._emit_held(seg["start"])
        seg["start"] = int(max(0, seg["start"] - self.shift))
        self.held = seg

    def _emit_held(self, next_start, audio_len=None) -> None:
        seg, self.held = self.held, None
        if next_start is not None and next_start - seg["end"] < 2 * self.pad:
            gap = next_start - seg["end"]
            seg["end"] += int(gap // 2)
            self.shift = gap // 2
        else:
            end = seg["end"] + self.pad
            seg["end"] = int(end if audio_len is None else min(audio_len, end))
            self.shift = self.pad
        self.out.append(Segment(int(seg["start"]), int(seg["end"]), self.sr))

    def finish(self, n_samples: int) -> list:
        """The end of ``n_samples`` of audio: the segment still open (if long enough) and the held one."""
        self.out = []
        if self.current and n_samples - self.current["start"] > self.min_speech:
            self._keep({"start": self.current["start"], "end": n_samples})
        if self.held:
            self._emit_held(None, n_samples)
        self.current, self.triggered = {}, False
        return self.out


@dataclass
class VADSummary(StreamSummary):
    segments: list = field(default_factory=list)
    windows: int = 0


def silero_path() -> Path:
    """silero-vad's own ONNX file inside its installed PyPI package, located without importing the package (which
    imports torch)."""
    import importlib.util
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("no VAD model: install silero-vad (pip install 'edgelstm[vad]', or pip install --no-deps "
                         "silero-vad for the model file alone) or pass a model (--model M)")
    path = Path(spec.submodule_search_locations[0]) / "data" / SILERO_FILE
    if not path.is_file():
        raise ModelError(f"silero-vad is installed but {path} is missing")
    return path


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgelstm" / "vad"


def silero_model(*, sr: int = 16000, int8: bool = False):
    """silero-vad's model for ``sr`` (16000 or 8000) as an edgelstm Model taking plain windows (512 / 256 samples;
    a Context layer keeps the previous 64 / 32): imported from the package's ONNX file on first use, then loaded
    from a cache keyed by that file's hash.

    ``int8=True``: a Chain of the float front end (context, STFT conv, magnitude, encoder convs) and the int8
    LSTM + head (``quantize_tail``), calibrated on bundled recorded speech and ambience; measured on recorded
    speech and ambience it keeps 99.5% of the float decisions at 0.5, where a whole-int8 model keeps 96%
    (bench/bench_vad.py)."""
    import hashlib

    import edgelstm as el
    from ..artifact import FORMAT_VERSION
    from ..topologies import prepend_context
    if sr not in (8000, 16000):
        raise AudioError(f"silero-vad runs at 8000 or 16000 Hz, not {sr}")
    src = silero_path()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cached = _cache_dir() / f"silero_vad_{sr}_{digest}_v{FORMAT_VERSION}.elstm"
    model = None
    if cached.is_file():
        try:
            model = el.load(cached)
        except el.EdgeLSTMError:
            pass                       # a stale or damaged cache entry: convert again
    if model is None:
        from ..export import from_onnx
        window, context = (512, 64) if sr == 16000 else (256, 32)
        # one call of the file = one window with the previous call's last samples in front; the file leaves that
        # length dynamic, so it is given here
        model = prepend_context(from_onnx(src, bind={"sr": sr}, shapes={"input": (1, context + window)}),
                                context=context, size=window)
        _save_cache(model, cached)
    return _int8_tail(model, cached.with_name(cached.stem + "_int8tail.elstm"), sr) if int8 else model


def _save_cache(model, path: Path) -> None:
    import edgelstm as el
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        el.save(model, path)
    except (OSError, el.ArtifactError):
        pass                           # a read-only home: run without the cache


def calibration_windows(*, sr: int, window: int, seed: int = 0) -> np.ndarray:
    """(n, window) float32 windows for int8 calibration: 6 s of recorded speech and ambience bundled with the
    package (``VAD_CALIBRATION``, made by scripts/make_vad_calibration.py), then generated noise at three levels
    (the quiet gaps a VAD spends most of its time in)."""
    from ..data import VAD_CALIBRATION
    from .io import read_wav
    parts = [np.concatenate(list(read_wav(VAD_CALIBRATION, sr=sr)))]
    rng = np.random.default_rng(seed)
    parts += [(rng.standard_normal(sr // 2) * level).astype(np.float32) for level in (0.001, 0.005, 0.02)]
    x = np.concatenate(parts)
    return x[:x.size // window * window].reshape(-1, window)


def _int8_tail(model, cached: Path | None, sr: int):
    """``model`` as float front + int8 tail, the tail from ``cached`` when it loads (None: no cache)."""
    import edgelstm as el
    from ..quantization import quantize_tail, split_model
    from ..topologies import Chain
    if cached is not None and cached.is_file():
        try:
            return Chain(split_model(model)[0], el.load(cached))
        except el.EdgeLSTMError:
            pass                       # a stale or damaged cache entry: quantize again
    window = 512 if sr == 16000 else 256
    chain = quantize_tail(model, calibration=calibration_windows(sr=sr, window=window), progress=False)
    if cached is not None:
        _save_cache(chain.models[1], cached)
    return chain


class VAD:
    """Speech segments from audio with a VAD model (default: silero-vad's, see the module docstring).

    ``stream(chunks)`` takes any iterable of mono float chunks at ``sr`` and yields Segments as they become final;
    ``segments_file(path)`` reads a WAV (or raw PCM) and returns a VADSummary. Keyword parameters are silero's
    ``get_speech_timestamps`` ones, with its defaults. ``int8=True`` runs the model's recurrent tail in int8
    behind its float front end (``silero_model``); an int8 model given is used as it is."""

    def __init__(self, model=None, *, sr: int = 16000, threshold: float = 0.5, neg_threshold: float | None = None,
                 min_speech_duration_ms: float = 250, max_speech_duration_s: float = math.inf,
                 min_silence_duration_ms: float = 100, speech_pad_ms: float = 30, int8: bool = False):
        import edgelstm as el
        if sr not in (8000, 16000):
            raise AudioError(f"the VAD runs at 8000 or 16000 Hz (silero's windows), not {sr}")
        self.sr = sr
        self.window = 512 if sr == 16000 else 256
        if model is None:
            model = silero_model(sr=sr, int8=int8)
        else:
            if not hasattr(model, "stream"):
                model = el.load(model)
            if int8 and not model.is_quantized:
                model = _int8_tail(model, None, sr)
        if model.input_size != self.window or model.output_size != 1:
            raise ModelError(f"a VAD model takes one window of {self.window} samples and returns one probability; "
                             f"this one takes {model.input_size} and returns {model.output_size}")
        self.model = model
        self.params = dict(threshold=threshold, neg_threshold=neg_threshold,
                           min_speech_duration_ms=min_speech_duration_ms, max_speech_duration_s=max_speech_duration_s,
                           min_silence_duration_ms=min_silence_duration_ms, speech_pad_ms=speech_pad_ms)
        SpeechSegmenter(sr=sr, window=self.window, **self.params)      # validates the parameters now

    def probabilities(self, audio) -> np.ndarray:
        """The speech probability of every window of ``audio`` (the last one zero-padded), from a fresh stream."""
        x = np.asarray(audio, np.float32).ravel()
        n = -(-x.size // self.window)
        frames = np.zeros((n, self.window), np.float32)
        frames.ravel()[:x.size] = x
        return self.model.stream().step_many(frames)[:, 0].copy()

    def stream(self, chunks, *, summary: VADSummary | None = None, probabilities: list | None = None):
        """Yield Segments as they become final. Fills ``summary``; appends each chunk's probabilities to
        ``probabilities`` if given. On a reading error the open segment is closed first, then the error propagates."""
        summary = summary if summary is not None else VADSummary()
        seg = SpeechSegmenter(sr=self.sr, window=self.window, **self.params)
        s = self.model.stream()
        buf = np.zeros(0, np.float32)
        n = 0
        t0 = time.perf_counter()
        try:
            for chunk in chunks:
                x = np.asarray(chunk, np.float32).ravel()
                n += x.size
                buf = np.concatenate([buf, x]) if buf.size else x
                k = buf.size // self.window
                if k == 0:
                    continue
                P = s.step_many(buf[:k * self.window].reshape(k, self.window))[:, 0]
                buf = buf[k * self.window:].copy()
                summary.windows += k
                if probabilities is not None:
                    probabilities.append(P.copy())
                for p in P:
                    for segment in seg.push(p):
                        summary.segments.append(segment)
                        yield segment
        except AudioError:
            for segment in seg.finish(n):
                summary.segments.append(segment)
                yield segment
            summary.audio_seconds, summary.wall_seconds = n / self.sr, time.perf_counter() - t0
            raise
        if buf.size:             # the last partial window, zero-padded (silero does the same)
            last = np.zeros(self.window, np.float32)
            last[:buf.size] = buf
            p = float(s.step(last)[0])
            summary.windows += 1
            if probabilities is not None:
                probabilities.append(np.array([p], np.float32))
            for segment in seg.push(p):
                summary.segments.append(segment)
                yield segment
        for segment in seg.finish(n):
            summary.segments.append(segment)
            yield segment
        summary.audio_seconds, summary.wall_seconds = n / self.sr, time.perf_counter() - t0

    def segments_file(self, path, *, raw: bool = False, format: str = "S16_LE", channels: int = 1,
                      rate: int | None = None) -> VADSummary:
        """All speech segments of a WAV file (or headerless PCM with ``raw=True``)."""
        from .io import read_raw, read_wav
        chunks = (read_raw(path, sr=self.sr, format=format, channels=channels, rate=rate) if raw
                  else read_wav(path, sr=self.sr))
        summary = VADSummary()
        for _ in self.stream(chunks, summary=summary):
            pass
        return summary
