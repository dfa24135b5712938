"""Streaming log-mel front end in Numba (parameter names as librosa's).

Frames are ``center=False`` STFT frames: frame t covers samples ``[t*hop_length, t*hop_length + n_fft)``, a
periodic Hann window, power spectrum, Slaney mel filters (librosa's default ``htk=False, norm="slaney"``),
then ``10*log10(max(amin, S))`` (``power_to_db`` with ``ref=1.0, top_db=None``).  Each frame is computed
from its own samples by the same kernel, so the features do not depend on how the audio is chunked.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..config import NJIT_OPTS
from ..errors import AudioError
from ..ir.audio import FrontEnd  # noqa: F401  (edgelstm.audio.features.FrontEnd, as before)


# ------------------------------------------------------------------------------------ setup (float64, once)

def _hz_to_mel(f):
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = math.log(6.4) / 27.0
    lin = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, lin)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(*, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, 1 + n_fft//2) Slaney-scale, Slaney-normalized triangular filters (librosa's defaults)."""
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    w = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        w[i] = np.maximum(0.0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    w *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w


def _twiddles(n_fft: int):
    k = np.arange(n_fft // 2)
    return np.cos(-2 * np.pi * k / n_fft), np.sin(-2 * np.pi * k / n_fft)


def _bitrev(n_fft: int) -> np.ndarray:
    bits = n_fft.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n_fft)], np.int64)


# ------------------------------------------------------------------------------------ kernels

@njit(**NJIT_OPTS)
def _logmel_frames_kernel(x, n_frames, hop, window, bitrev, tw_re, tw_im, mel_w, mel_lo, mel_hi, amin,
                          re, im, power, out):
    """out[t] = log-mel of frame t of x (float64 samples); re/im/power are scratch buffers."""
    n = window.shape[0]
    n_bins = n // 2 + 1
    n_mels = mel_w.shape[0]
    for t in range(n_frames):
        a = t * hop
        for i in range(n):
            j = bitrev[i]
            re[j] = x[a + i] * window[i]
            im[j] = 0.0
        size = 2
        while size <= n:
            half = size // 2
            step = n // size
            for start in range(0, n, size):
                for k in range(half):
                    wr = tw_re[k * step]
                    wi = tw_im[k * step]
                    p = start + k
                    q = p + half
                    xr = re[q] * wr - im[q] * wi
                    xi = re[q] * wi + im[q] * wr
                    re[q] = re[p] - xr
                    im[q] = im[p] - xi
                    re[p] += xr
                    im[p] += xi
            size *= 2
        for b in range(n_bins):
            power[b] = re[b] * re[b] + im[b] * im[b]
        for m in range(n_mels):
            s = 0.0
            for b in range(mel_lo[m], mel_hi[m]):
                s += mel_w[m, b] * power[b]
            out[t, m] = 10.0 * math.log10(max(amin, s))


class LogMel:
    """Streaming log-mel extractor: ``push(samples)`` returns the (n, n_mels) float32 frames completed by
    these samples; state between calls is the last ``n_fft - hop_length`` samples (fixed size)."""

    def __init__(self, frontend: FrontEnd):
        fe = self.frontend = frontend
        n = fe.n_fft
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann (librosa's)
        self._bitrev = _bitrev(n)
        self._tw_re, self._tw_im = _twiddles(n)
        w = mel_filters(sr=fe.sr, n_fft=n, n_mels=fe.n_mels, fmin=fe.fmin, fmax=fe.fmax)
        nz = w > 0
        self._mel_lo = np.array([np.argmax(r) if r.any() else 0 for r in nz], np.int64)
        self._mel_hi = np.array([len(r) - np.argmax(r[::-1]) if r.any() else 0 for r in nz], np.int64)
        self._mel_w = w
        self._re = np.zeros(n)
        self._im = np.zeros(n)
        self._power = np.zeros(n // 2 + 1)
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float64)
        self.frames_out = 0

    def push(self, samples) -> np.ndarray:
        """Mono float samples at ``frontend.sr`` -> newly completed frames (n, n_mels) float32."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        if x.size and not np.isfinite(x).all():
            raise AudioError("audio samples contain NaN or inf")
        buf = np.concatenate([self._buf, x]) if self._buf.size else x
        n, hop = self.frontend.n_fft, self.frontend.hop_length
        n_frames = 0 if buf.size < n else 1 + (buf.size - n) // hop
        out = np.empty((n_frames, self.frontend.n_mels), np.float64)
        if n_frames:
            buf = np.ascontiguousarray(buf)
            _logmel_frames_kernel(buf, n_frames, hop, self._window, self._bitrev, self._tw_re, self._tw_im,
                                  self._mel_w, self._mel_lo, self._mel_hi, float(self.frontend.amin),
                                  self._re, self._im, self._power, out)
        self._buf = buf[n_frames * hop:].copy()
        self.frames_out += n_frames
        return out.astype(np.float32)


def logmel(y, *, frontend: FrontEnd) -> np.ndarray:
    """Whole-signal log-mel (n_frames, n_mels) float32 of mono samples ``y`` at ``frontend.sr``."""
    return LogMel(frontend).push(y)
