"""The tagging pipeline: audio chunks -> log-mel -> (int8) model -> per-frame probabilities -> events.

Events close with hysteresis per class (on at ``onset``, off below ``offset``, kept if at least
``min_duration`` seconds) and are yielded as soon as they close, so live input streams them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import AudioError
from .features import FrontEnd, LogMel

DEFAULT_LABELS = ("speech", "alarm", "knock", "glass", "music")


@dataclass
class AudioConfig:
    """What an audio model needs besides its weights; stored in the .elstm metadata under 'audio'."""
    frontend: FrontEnd
    labels: list                      # one plain name per model output
    onset: list = None                # per class, probability that opens an event
    offset: list = None               # per class, probability below which it closes
    min_duration: list = None         # per class, seconds; shorter events are dropped

    def __post_init__(self):
        n = len(self.labels)
        self.onset = [0.5] * n if self.onset is None else list(self.onset)
        self.offset = [0.3] * n if self.offset is None else list(self.offset)
        self.min_duration = [0.1] * n if self.min_duration is None else list(self.min_duration)
        if not isinstance(self.frontend, FrontEnd):
            raise AudioError("AudioConfig.frontend must be a FrontEnd")
        if n == 0 or not all(isinstance(s, str) and s and s.isprintable() for s in self.labels) \
                or len(set(self.labels)) != n:
            raise AudioError("audio labels must be distinct non-empty names")
        for name in ("onset", "offset", "min_duration"):
            v = getattr(self, name)
            if len(v) != n or not all(type(x) in (int, float) and math.isfinite(x) for x in v):
                raise AudioError(f"audio {name} must be {n} finite numbers")
        for c in range(n):
            if not 0.0 <= self.offset[c] <= self.onset[c] <= 1.0 or self.min_duration[c] < 0:
                raise AudioError(f"class {self.labels[c]!r}: need 0 <= offset <= onset <= 1, min_duration >= 0")

    def to_dict(self) -> dict:
        return {"frontend": self.frontend.to_dict(), "labels": list(self.labels), "onset": self.onset,
                "offset": self.offset, "min_duration": self.min_duration}

    @classmethod
    def from_dict(cls, d) -> "AudioConfig":
        keys = {"frontend", "labels", "onset", "offset", "min_duration"}
        if not isinstance(d, dict) or set(d) != keys:
            raise AudioError(f"audio metadata must be an object with keys {sorted(keys)}")
        if not isinstance(d["labels"], list):
            raise AudioError("audio labels must be a list")
        for k in ("onset", "offset", "min_duration"):
            if not isinstance(d[k], list):
                raise AudioError(f"audio {k} must be a list")
        return cls(frontend=FrontEnd.from_dict(d["frontend"]), labels=d["labels"], onset=d["onset"],
                   offset=d["offset"], min_duration=d["min_duration"])


@dataclass
class Event:
    label: str
    start: float          # seconds
    end: float            # seconds
    peak_confidence: float

    def to_dict(self) -> dict:
        return {"label": self.label, "start": round(self.start, 3), "end": round(self.end, 3),
                "peak_confidence": round(self.peak_confidence, 4)}


class EventTracker:
    """Hysteresis per class over streamed probability frames."""

    def __init__(self, config: AudioConfig):
        self.cfg = config
        n = len(config.labels)
        self.onset = np.array(config.onset, np.float32)
        self.offset = np.array(config.offset, np.float32)
        self.active = np.zeros(n, bool)
        self.start = np.zeros(n, np.int64)
        self.peak = np.zeros(n, np.float32)
        self.frame = 0
        fe = config.frontend
        self.sec_per_frame = fe.hop_length / fe.sr

    def _close(self, c: int, end_frame: int):
        self.active[c] = False
        start_s = self.start[c] * self.sec_per_frame
        end_s = end_frame * self.sec_per_frame + (self.cfg.frontend.n_fft - self.cfg.frontend.hop_length) / self.cfg.frontend.sr
        if end_s - start_s >= self.cfg.min_duration[c]:
            return Event(self.cfg.labels[c], float(start_s), float(end_s), float(self.peak[c]))
        return None

    def update(self, P: np.ndarray) -> list:
        """(T, n_classes) probabilities -> events closed within these frames, in closing order."""
        out = []
        if not self.active.any() and not (P >= self.onset).any():  # quiet chunk: nothing opens or closes
            self.frame += P.shape[0]
            return out
        for p in P:
            for c in range(p.shape[0]):
                if self.active[c]:
                    if p[c] < self.offset[c]:
                        ev = self._close(c, self.frame)
                        if ev:
                            out.append(ev)
                    elif p[c] > self.peak[c]:
                        self.peak[c] = p[c]
                elif p[c] >= self.onset[c]:
                    self.active[c] = True
                    self.start[c] = self.frame
                    self.peak[c] = p[c]
            self.frame += 1
        return out

    def flush(self) -> list:
        """Close every open event at the current frame (end of stream, or before an error propagates)."""
        return [ev for c in range(self.active.size) if self.active[c] for ev in [self._close(c, self.frame)] if ev]


@dataclass
class TagSummary:
    events: list = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    frames: int = 0

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio processed per wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


class Tagger:
    """A loaded audio model and its front end.  ``Tagger()`` is the bundled int8 tagger."""

    def __init__(self, model=None):
        import edgelstm as el
        from ..cli import DATA
        if model is None:
            model = DATA / "audio_tagger.elstm"
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
        self.frontend: FrontEnd = model.audio.frontend

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
