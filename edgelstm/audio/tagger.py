"""The tagging pipeline: audio chunks -> log-mel -> (int8) model -> per-frame probabilities -> events.

Events close with hysteresis per class (optionally on a causal moving mean of ``smoothing`` seconds: on at
``onset``, off once below ``offset`` for ``min_gap`` seconds, kept if at least ``min_duration`` seconds; with
``backtrack`` an event starts where its rise began; reported starts move ``lead`` seconds earlier) and are
yielded as soon as they close, so live input streams them.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np

from ..backends.native import prefer_native
from ..config import NJIT_OPTS
from ..errors import AudioError
from ..ir.audio import AudioConfig
from .features import LogMel

DEFAULT_LABELS = ("speech", "alarm", "knock", "glass", "music")


@dataclass
class Event:
    label: str
    start: float          # seconds
    end: float            # seconds
    peak_confidence: float

    def to_dict(self) -> dict:
        return {"label": self.label, "start": round(self.start, 3), "end": round(self.end, 3),
                "peak_confidence": round(self.peak_confidence, 4)}


def _track(P, onset, offset, gap_frames, win, backtrack, ring, active, start, gap_start, last_low, peak, frame0):
    """One chunk of (T, C) float32 probabilities through every class's tracker; the state arrays are updated in
    place.  Returns the events closed in this chunk, in closing order: (class, start frame, end frame, peak).

    ring (W, C) holds the last W probabilities (frame f at row f % W); class c decides on the mean of its last
    win[c] frames (fewer at stream start), recomputed each frame so the result does not depend on chunking or
    stream length.  gap_start[c] is the first frame of the current dip below offset (-1: none); the event
    closes when the dip reaches gap_frames[c] frames and ends where the dip began.  last_low[c] is the last frame
    below offset (-1: none yet); with backtrack[c] an event starts on the frame after it (where the rise that
    crossed onset began) instead of at the crossing: the event is only reported when it closes, so knowing
    its start late costs nothing."""
    out = []
    W = ring.shape[0]
    C = P.shape[1]
    for t in range(P.shape[0]):
        f = frame0 + t
        for c in range(C):
            ring[f % W, c] = P[t, c]
        for c in range(C):
            n = min(win[c], f + 1)
            if n == 1:
                p = P[t, c]
            else:
                acc = 0.0
                for k in range(n):
                    acc += np.float64(ring[(f - k) % W, c])
                p = np.float32(acc / n)
            if p < offset[c]:
                last_low[c] = f
            if active[c]:
                if p < offset[c]:
                    if gap_start[c] < 0:
                        gap_start[c] = f
                    if f - gap_start[c] + 1 >= gap_frames[c]:
                        out.append((c, start[c], gap_start[c], peak[c]))
                        active[c] = False
                        gap_start[c] = -1
                else:
                    gap_start[c] = -1
                    if p > peak[c]:
                        peak[c] = p
            elif p >= onset[c]:
                active[c] = True
                start[c] = last_low[c] + 1 if backtrack[c] else f
                gap_start[c] = -1
                peak[c] = p
    return out


@functools.lru_cache(maxsize=None)
def _compiled_track():
    from numba import njit
    return njit(**NJIT_OPTS)(_track)


def _tracker_loop():
    """``_track`` compiled when Numba runs the models, else the same loop in Python (no Numba, or the C backend:
    ~1 ms per second of audio, measured).  Chosen per tracker, not at import: the CLI's first run may switch
    this process to the C runtime after the model loaded."""
    return _track if prefer_native(None) else _compiled_track()


class EventTracker:
    """Per-class event decisions over streamed probability frames: optional causal smoothing, hysteresis
    (``onset`` / ``offset``), dips shorter than ``min_gap`` bridged, events shorter than ``min_duration``
    dropped, starts optionally backtracked to the rise and reported ``lead`` seconds earlier.  State is
    fixed-size: the smoothing window and a few numbers per class."""

    def __init__(self, config: AudioConfig):
        self.cfg = config
        n = len(config.labels)
        self.onset = np.array(config.onset, np.float32)
        self.offset = np.array(config.offset, np.float32)
        self.gap_frames = np.array(config.gap_frames, np.int64)
        self.win = np.array(config.smoothing_frames, np.int64)
        self.backtrack = np.array(config.backtrack, np.bool_)
        self.ring = np.zeros((int(self.win.max()), n), np.float32)
        self.active = np.zeros(n, np.bool_)
        self.start = np.zeros(n, np.int64)
        self.gap_start = np.full(n, -1, np.int64)
        self.last_low = np.full(n, -1, np.int64)
        self.peak = np.zeros(n, np.float32)
        self.last_end = [0.0] * n       # seconds: the end of each class's last reported event (bounds lead)
        self.frame = 0
        fe = config.frontend
        self.sec_per_frame = fe.hop_length / fe.sr
        self.tail = (fe.n_fft - fe.hop_length) / fe.sr      # an event ends where its last frame's samples end
        self._loop = _tracker_loop()

    def _event(self, c: int, start_frame: int, end_frame: int, peak: float):
        start_s = start_frame * self.sec_per_frame
        end_s = end_frame * self.sec_per_frame + self.tail
        if end_s - start_s < self.cfg.min_duration[c]:      # the detected length decides, not the lead
            return None
        if self.cfg.lead[c]:
            start_s = max(start_s - self.cfg.lead[c], self.last_end[c])
        self.last_end[c] = end_s
        return Event(self.cfg.labels[c], float(start_s), float(end_s), float(peak))

    def update(self, P: np.ndarray) -> list:
        """(T, n_classes) probabilities -> events closed within these frames, in closing order."""
        P = np.ascontiguousarray(P, np.float32)
        if P.ndim != 2 or P.shape[1] != self.active.size:
            raise AudioError(f"probabilities must be (frames, {self.active.size}), got {P.shape}")
        closed = self._loop(P, self.onset, self.offset, self.gap_frames, self.win, self.backtrack, self.ring,
                            self.active, self.start, self.gap_start, self.last_low, self.peak, self.frame)
        self.frame += P.shape[0]
        return [ev for c, a, b, pk in closed for ev in [self._event(c, a, b, pk)] if ev]

    def flush(self) -> list:
        """Close every open event (at the start of its current dip, if any, else at the current frame): end of
        stream, or before an error propagates."""
        out = []
        for c in range(self.active.size):
            if self.active[c]:
                end = self.gap_start[c] if self.gap_start[c] >= 0 else self.frame
                self.active[c] = False
                self.gap_start[c] = -1
                ev = self._event(c, int(self.start[c]), int(end), float(self.peak[c]))
                if ev:
                    out.append(ev)
        return out


@dataclass
class StreamSummary:
    """What a streaming pipeline filled in: seconds of audio, wall seconds inside the pipeline."""
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio processed per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


@dataclass
class TagSummary(StreamSummary):
    events: list = field(default_factory=list)
    frames: int = 0


class Tagger:
    """A loaded audio model and its front end.  ``Tagger()`` is the bundled int8 tagger."""

    def __init__(self, model=None):
        import edgelstm as el
        from ..data import AUDIO_MODEL
        if model is None:
            model = AUDIO_MODEL
        if not hasattr(model, "stream"):
            model = el.load(model)
        if getattr(model, "audio", None) is None:
            raise AudioError("this model has no audio front end in its metadata (not an audio tagger); "
                             "save it with el.save(model, path, audio=AudioConfig(...))")
        if model.audio.frontend.n_mels != model.input_size or len(model.audio.labels) != model.output_size:
            raise AudioError(f"model takes {model.input_size} features -> {model.output_size} outputs but its "
                             f"front end has n_mels={model.audio.frontend.n_mels} and "
                             f"{len(model.audio.labels)} labels")
        self.model = model
        self.config: AudioConfig = model.audio
        self.frontend = model.audio.frontend

    def warmup(self) -> str:
        """Compile (or load from the disk cache) what tagging runs: the model's kernels (``Model.warmup``), the
        event tracker's loop and the log-mel.  Returns the model's backend ("jit" or "native")."""
        backend = self.model.warmup()
        EventTracker(self.config).update(np.zeros((1, len(self.config.labels)), np.float32))
        LogMel(self.frontend).push(np.zeros(self.frontend.n_fft))
        return backend

    def stream(self, chunks, *, summary: TagSummary | None = None, probabilities: list | None = None):
        """Tag an iterable of mono float chunks at ``frontend.sr``; yields Events as they close.  Fills
        ``summary`` (audio seconds, frames) if given; appends per-chunk probability arrays to
        ``probabilities`` if given.  If reading fails, open events are closed and yielded before the error
        propagates, so nothing is lost or emitted twice."""
        feats = LogMel(self.frontend)
        s = self.model.stream()
        tracker = EventTracker(self.config)
        summary = summary if summary is not None else TagSummary()
        t0 = time.perf_counter()
        try:
            for x in chunks:
                summary.audio_seconds += np.asarray(x).size / self.frontend.sr
                F = feats.push(x)
                if F.shape[0] == 0:
                    continue
                P = s.step_many(F)
                summary.frames += F.shape[0]
                if probabilities is not None:
                    probabilities.append(P)
                for ev in tracker.update(P):
                    summary.events.append(ev)
                    yield ev
        except AudioError:
            for ev in tracker.flush():
                summary.events.append(ev)
                yield ev
            summary.wall_seconds = time.perf_counter() - t0
            raise
        for ev in tracker.flush():
            summary.events.append(ev)
            yield ev
        summary.wall_seconds = time.perf_counter() - t0

    def tag_file(self, path, *, raw: bool = False, format: str = "S16_LE", channels: int = 1,
                 rate: int | None = None) -> TagSummary:
        """Tag a WAV file (or headerless PCM with ``raw=True``); returns a TagSummary with all events."""
        from .io import read_raw, read_wav
        chunks = (read_raw(path, sr=self.frontend.sr, format=format, channels=channels, rate=rate) if raw
                  else read_wav(path, sr=self.frontend.sr))
        summary = TagSummary()
        for _ in self.stream(chunks, summary=summary):
            pass
        return summary

    def tag_array(self, y, *, sr: int) -> TagSummary:
        """Tag mono samples already in memory (must be at the model's rate)."""
        if sr != self.frontend.sr:
            raise AudioError(f"samples at {sr} Hz but the model's front end expects {self.frontend.sr} Hz")
        summary = TagSummary()
        for _ in self.stream([np.asarray(y, np.float64)], summary=summary):
            pass
        return summary


def score_frames(pred: np.ndarray, truth: np.ndarray, labels) -> str:
    """Per-class precision / recall / F1 table over frames (pred, truth: (..., n_classes) bool)."""
    pred, truth = pred.reshape(-1, pred.shape[-1]), truth.reshape(-1, truth.shape[-1])
    lines = [f"{'class':<8} {'precision':>9} {'recall':>7} {'F1':>6} {'frames':>7}"]
    for c, name in enumerate(labels):
        tp = np.sum(pred[:, c] & truth[:, c])
        p = tp / max(1, pred[:, c].sum())
        r = tp / max(1, truth[:, c].sum())
        f = 2 * p * r / max(1e-12, p + r)
        lines.append(f"{name:<8} {p:>9.3f} {r:>7.3f} {f:>6.3f} {int(truth[:, c].sum()):>7}")
    return "\n".join(lines)
