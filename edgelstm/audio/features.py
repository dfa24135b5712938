"""Streaming log-mel front end (parameter names as librosa's).

Frames are ``center=False`` STFT frames: frame t covers samples ``[t*hop_length, t*hop_length + n_fft)``, a
periodic Hann window, power spectrum, Slaney mel filters (librosa's default ``htk=False, norm="slaney"``),
then ``10*log10(max(amin, S))`` (``power_to_db`` with ``ref=1.0, top_db=None``).  Each frame is computed
from its own samples by the same kernel, so the features do not depend on how the audio is chunked.  Two kernels
compute the same bits: ``_logmel_frames`` (plain numpy: where Numba has no wheels, on the C backend and on a
first run) and ``_logmel_loop`` compiled by Numba when Numba runs the models (several times faster; the numpy
log-mel was most of an ``edgelstm tag`` process).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from ..backends.native import prefer_native
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


# ------------------------------------------------------------------------------------ frames (numpy)

def _logmel_frames(x, n_frames, hop, window, bitrev, tw_re, tw_im, band_bins, band_w, amin):
    """(n_frames, n_mels) float64 log-mel of frames t*hop .. t*hop + n_fft of x (float64 samples).

    Plain numpy, no Numba (the front end must run where Numba has no wheels, and compiling it cost a first
    run ~2 s here): the radix-2 FFT's butterflies, then each mel band's sum over its bins in ascending order,
    vectorized across frames but with exactly the scalar operations, in the same order, of the per-frame
    loop it replaced (an IEEE multiply / add per element, nothing fused or reassociated), so the features
    are the same bits (tests/test_audio.py compares with that loop) and each frame depends only on its own
    samples, however the audio is chunked."""
    n = window.shape[0]
    frames = np.lib.stride_tricks.as_strided(x, shape=(n_frames, n), strides=(hop * x.strides[0], x.strides[0]))
    re = np.empty((n_frames, n))
    re[:, bitrev] = frames * window
    im = np.zeros((n_frames, n))
    size = 2
    while size <= n:
        half = size // 2
        wr = tw_re[::n // size][:half]
        wi = tw_im[::n // size][:half]
        r4 = re.reshape(n_frames, n // size, 2, half)
        i4 = im.reshape(n_frames, n // size, 2, half)
        rp, ip, rq, iq = r4[:, :, 0], i4[:, :, 0], r4[:, :, 1], i4[:, :, 1]
        xr = rq * wr - iq * wi
        xi = rq * wi + iq * wr
        rq[...] = rp - xr
        iq[...] = ip - xi
        rp += xr
        ip += xi
        size *= 2
    nb = n // 2 + 1
    power = re[:, :nb] * re[:, :nb] + im[:, :nb] * im[:, :nb]
    s = np.zeros((n_frames, band_bins.shape[0]))
    for j in range(band_bins.shape[1]):   # bin j of every band; past a band's end its weight is 0 (s + 0 = s)
        s += band_w[:, j] * power[:, band_bins[:, j]]
    return 10.0 * np.log10(np.maximum(amin, s))


def _logmel_loop(x, n_frames, hop, window, bitrev, tw_re, tw_im, band_bins, band_w, amin):
    """``_logmel_frames`` one frame at a time, for Numba: the same scalar operations in the same order (no
    fastmath: nothing fused or reassociated), so the same bits (tests/test_audio.py)."""
    n = window.shape[0]
    nb = n // 2 + 1
    n_mels, width = band_bins.shape
    out = np.empty((n_frames, n_mels))
    re, im, power = np.empty(n), np.empty(n), np.empty(nb)
    for t in range(n_frames):
        for i in range(n):
            re[bitrev[i]] = x[t * hop + i] * window[i]
            im[i] = 0.0
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
        for b in range(nb):
            power[b] = re[b] * re[b] + im[b] * im[b]
        for m in range(n_mels):
            acc = 0.0
            for j in range(width):      # past a band's end its weight is 0, as in _logmel_frames
                acc += band_w[m, j] * power[band_bins[m, j]]
            out[t, m] = 10.0 * math.log10(max(amin, acc))
    return out


@functools.lru_cache(maxsize=None)
def _compiled_logmel():
    from numba import njit
    return njit(**NJIT_OPTS)(_logmel_loop)


def _logmel_kernel():
    """The compiled loop when Numba runs the models, else numpy.  Chosen per extractor, not at import: the CLI's
    first run may switch this process to the C runtime (and so to numpy: nothing to compile) after import."""
    return _logmel_frames if prefer_native(None) else _compiled_logmel()


def jit_ready() -> bool:
    """Whether making a LogMel now needs no compile: numpy runs, or the compiled loop is in this process or in
    Numba's disk cache."""
    if prefer_native(None):
        return True
    from ..kernels import is_compiled         # imports Numba: not on the C backend
    return is_compiled(_compiled_logmel())


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
        lo = np.array([np.argmax(r) if r.any() else 0 for r in nz], np.int64)
        hi = np.array([len(r) - np.argmax(r[::-1]) if r.any() else 0 for r in nz], np.int64)
        width = max(1, int((hi - lo).max()))
        j = np.arange(width)
        self._band_bins = np.minimum(lo[:, None] + j, n // 2)      # (n_mels, width) bin of band m's j-th term
        self._band_w = np.where(j < (hi - lo)[:, None], w[np.arange(len(w))[:, None], self._band_bins], 0.0)
        self._mel_w = w
        self._kernel = _logmel_kernel()
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
        out = np.empty((0, self.frontend.n_mels))
        if n_frames:
            buf = np.ascontiguousarray(buf)
            out = self._kernel(buf, n_frames, hop, self._window, self._bitrev, self._tw_re, self._tw_im,
                                 self._band_bins, self._band_w, float(self.frontend.amin))
        self._buf = buf[n_frames * hop:].copy()
        self.frames_out += n_frames
        return out.astype(np.float32)


def logmel(y, *, frontend: FrontEnd) -> np.ndarray:
    """Whole-signal log-mel (n_frames, n_mels) float32 of mono samples ``y`` at ``frontend.sr``."""
    return LogMel(frontend).push(y)
