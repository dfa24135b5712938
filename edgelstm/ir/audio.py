"""What an audio model needs besides its weights: the front end's settings, class labels and event thresholds.

A model's description (stored in the .elstm metadata under 'audio' and validated on load), so it lives with the
IR: reading a tagger's file needs no signal-processing code (nor Numba); ``edgelstm.audio`` computes with it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import AudioError


@dataclass(frozen=True)
class FrontEnd:
    """The feature settings a model was trained with (stored in the .elstm file)."""
    sr: int = 16000
    n_fft: int = 512          # power of two (radix-2 FFT)
    hop_length: int = 256
    n_mels: int = 32
    fmin: float = 50.0
    fmax: float = 8000.0
    amin: float = 1e-10       # power_to_db floor

    def __post_init__(self):
        ok = (isinstance(self.sr, int) and 1000 <= self.sr <= 192000
              and isinstance(self.n_fft, int) and 16 <= self.n_fft <= 8192 and self.n_fft & (self.n_fft - 1) == 0
              and isinstance(self.hop_length, int) and 1 <= self.hop_length <= self.n_fft
              and isinstance(self.n_mels, int) and 1 <= self.n_mels <= self.n_fft // 2
              and 0.0 <= float(self.fmin) < float(self.fmax) <= self.sr / 2.0 and float(self.amin) > 0)
        if not ok:
            raise AudioError(f"invalid front end {asdict(self)}: need 1000 <= sr <= 192000, n_fft a power of "
                             "two in [16, 8192], 1 <= hop_length <= n_fft, 1 <= n_mels <= n_fft/2, "
                             "0 <= fmin < fmax <= sr/2, amin > 0")

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d) -> "FrontEnd":
        if not isinstance(d, dict) or set(d) != set(cls.__dataclass_fields__):
            raise AudioError(f"front end must be an object with keys {sorted(cls.__dataclass_fields__)}")
        ints = ("sr", "n_fft", "hop_length", "n_mels")
        for k, v in d.items():
            good = (type(v) is int) if k in ints else (type(v) in (int, float) and math.isfinite(v))
            if not good:
                raise AudioError(f"front end field {k!r} has a bad value {v!r}")
        return cls(**{k: (int(v) if k in ints else float(v)) for k, v in d.items()})


# bounds of the smoothing options: the tracker keeps a window of this many frames per class, so a file cannot
# make it allocate more; a gap longer than a minute is no longer a dip
MAX_SMOOTHING_FRAMES = 1000
MAX_MIN_GAP_S = 60.0
MAX_LEAD_S = 5.0


@dataclass
class AudioConfig:
    """What an audio model needs besides its weights; stored in the .elstm metadata under 'audio'.

    Per class: an event opens when the (smoothed) probability reaches ``onset`` and closes once it has stayed
    below ``offset`` for ``min_gap`` seconds (shorter dips are bridged; the event ends where the dip began);
    events shorter than ``min_duration`` seconds are dropped.  ``smoothing`` is the length in seconds of a
    causal moving mean over the class's probabilities before those decisions (0 = none).  ``min_gap`` and
    ``smoothing`` are rounded to whole frames and are optional in the file (older files have neither).  With
    ``backtrack`` 1 a class's event starts where its rise began (the frame after the last one below ``offset``
    before the onset crossing) rather than at the crossing; optional too (absent = 0).  ``lead`` moves a class's
    reported starts that many seconds earlier (the causal model's detection delay, calibrated with the other
    settings; never before the class's previous event nor the stream's start); which events are kept does not
    change, as ``min_duration`` measures the detected length; optional (absent = 0)."""
    frontend: FrontEnd
    labels: list                      # one plain name per model output
    onset: list = None                # per class, probability that opens an event
    offset: list = None               # per class, probability below which it closes
    min_duration: list = None         # per class, seconds; shorter events are dropped
    min_gap: list = None              # per class, seconds below offset before an event closes
    smoothing: list = None            # per class, seconds of causal moving mean over the probabilities
    backtrack: list = None            # per class, 1: start events where the rise began, 0: at the crossing
    lead: list = None                 # per class, seconds reported starts move earlier (detection delay)

    OPTIONAL = ("min_gap", "smoothing", "backtrack", "lead")

    def __post_init__(self):
        n = len(self.labels)
        self.onset = [0.5] * n if self.onset is None else list(self.onset)
        self.offset = [0.3] * n if self.offset is None else list(self.offset)
        self.min_duration = [0.1] * n if self.min_duration is None else list(self.min_duration)
        self.min_gap = [0.0] * n if self.min_gap is None else list(self.min_gap)
        self.smoothing = [0.0] * n if self.smoothing is None else list(self.smoothing)
        self.backtrack = [0] * n if self.backtrack is None else list(self.backtrack)
        self.lead = [0.0] * n if self.lead is None else list(self.lead)
        if not isinstance(self.frontend, FrontEnd):
            raise AudioError("AudioConfig.frontend must be a FrontEnd")
        if n == 0 or not all(isinstance(s, str) and s and s.isprintable() for s in self.labels) \
                or len(set(self.labels)) != n:
            raise AudioError("audio labels must be distinct non-empty names")
        for name in ("onset", "offset", "min_duration") + self.OPTIONAL:
            v = getattr(self, name)
            if len(v) != n or not all(type(x) in (int, float) and math.isfinite(x) for x in v):
                raise AudioError(f"audio {name} must be {n} finite numbers")
        for c in range(n):
            if not 0.0 <= self.offset[c] <= self.onset[c] <= 1.0 or self.min_duration[c] < 0:
                raise AudioError(f"class {self.labels[c]!r}: need 0 <= offset <= onset <= 1, min_duration >= 0")
            if not 0.0 <= self.min_gap[c] <= MAX_MIN_GAP_S:
                raise AudioError(f"class {self.labels[c]!r}: need 0 <= min_gap <= {MAX_MIN_GAP_S:g} s")
            if not (0.0 <= self.smoothing[c] and self.smoothing_frames[c] <= MAX_SMOOTHING_FRAMES):
                raise AudioError(f"class {self.labels[c]!r}: need smoothing >= 0 and at most "
                                 f"{MAX_SMOOTHING_FRAMES} frames")
            if self.backtrack[c] not in (0, 1):
                raise AudioError(f"class {self.labels[c]!r}: backtrack must be 0 or 1")
            if not 0.0 <= self.lead[c] <= MAX_LEAD_S:
                raise AudioError(f"class {self.labels[c]!r}: need 0 <= lead <= {MAX_LEAD_S:g} s")

    def _frames(self, seconds) -> list:
        return [max(1, int(round(s * self.frontend.sr / self.frontend.hop_length))) for s in seconds]

    @property
    def smoothing_frames(self) -> list:
        """Per class, the moving mean's window in frames (1 = no smoothing)."""
        return self._frames(self.smoothing)

    @property
    def gap_frames(self) -> list:
        """Per class, frames below offset that close an event (1 = close at the first one)."""
        return self._frames(self.min_gap)

    def to_dict(self) -> dict:
        d = {"frontend": self.frontend.to_dict(), "labels": list(self.labels), "onset": self.onset,
             "offset": self.offset, "min_duration": self.min_duration}
        for k in self.OPTIONAL:             # written only when used: files without them stay as they were
            if any(getattr(self, k)):
                d[k] = getattr(self, k)
        return d

    @classmethod
    def from_dict(cls, d) -> "AudioConfig":
        keys = {"frontend", "labels", "onset", "offset", "min_duration"}
        if not isinstance(d, dict) or not keys <= set(d) <= keys | set(cls.OPTIONAL):
            raise AudioError(f"audio metadata must be an object with keys {sorted(keys)} "
                             f"(and optionally {list(cls.OPTIONAL)})")
        if not isinstance(d["labels"], list):
            raise AudioError("audio labels must be a list")
        for k in ("onset", "offset", "min_duration") + cls.OPTIONAL:
            if k in d and not isinstance(d[k], list):
                raise AudioError(f"audio {k} must be a list")
        return cls(frontend=FrontEnd.from_dict(d["frontend"]), labels=d["labels"], onset=d["onset"],
                   offset=d["offset"], min_duration=d["min_duration"],
                   **{k: d[k] for k in cls.OPTIONAL if k in d})
