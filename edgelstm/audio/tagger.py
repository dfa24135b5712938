"""The tagging pipeline: audio chunks -> log-mel -> (int8) model -> per-frame probabilities -> events.

Events close with hysteresis per class (on at ``onset``, off below ``offset``, kept if at least
``min_duration`` seconds) and are yielded as soon as they close, so live input streams them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

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
