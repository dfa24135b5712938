"""Reading audio in chunks: WAV files (PCM 8/16/24/32-bit, IEEE float 32/64, any channel count, any rate),
raw PCM from a file or stdin, and (optionally) a live microphone through ``sounddevice``.

Every reader yields mono float64 chunks at the requested ``sr`` (downmix by averaging channels, streaming
linear-interpolation resampling) and raises ``AudioError`` for anything malformed.  Chunks are yielded only
after they were fully decoded, so no sample is emitted twice and every sample before an error was emitted.

Memory is bounded by the chunk, never by what a header declares: a chunk reads at most ``CHUNK_BYTES`` and
emits at most about ``chunk_frames`` samples after resampling; chunks before 'data' are skipped in pieces;
rates outside ``MIN_RATE..MAX_RATE`` Hz and more than ``MAX_CHANNELS`` channels are refused.  The header is
read when a reader is called (its errors come before any output), the samples as the chunks are consumed.
A WAV that ends before the size its header declares is read to its end with an ``AudioWarning``.
"""
from __future__ import annotations

import os
import struct
import sys
import warnings

import numpy as np

from .._files import write_atomic
from ..errors import AudioError, AudioWarning

CHUNK_FRAMES = 16000  # output samples per chunk at most (about): bounded memory for any stream length
CHUNK_BYTES = 1 << 20  # input bytes per chunk at most, whatever the channel count and sample width
MIN_RATE, MAX_RATE = 1000, 768000  # Hz: below, a 16 kHz model would upsample a header's typo 16x or more
MAX_CHANNELS = 256

# raw formats accepted by --format (arecord's names)
RAW_FORMATS = {"S16_LE": np.dtype("<i2"), "S32_LE": np.dtype("<i4"), "U8": np.dtype("u1"),
               "FLOAT_LE": np.dtype("<f4"), "S24_3LE": None}

_WAVE_FORMAT_PCM, _WAVE_FORMAT_FLOAT, _WAVE_FORMAT_EXTENSIBLE = 1, 3, 0xFFFE


def _to_float(raw: bytes, kind: str, width: int) -> np.ndarray:
    """Interleaved sample bytes -> float64 in [-1, 1) (PCM) or as stored (float)."""
    if kind == "float":    # NaN payloads (PCM read as float) would warn in the cast: _chunks reports them
        with np.errstate(invalid="ignore"):
            return np.frombuffer(raw, "<f4" if width == 4 else "<f8").astype(np.float64)
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return v.astype(np.float64) / float(1 << 23)
    dt = {2: "<i2", 4: "<i4"}[width]
    return np.frombuffer(raw, dt).astype(np.float64) / float(1 << (8 * width - 1))


class _Resampler:
    """Streaming linear-interpolation resampler (chunking-independent): keeps the last input sample and the
    fractional read position between chunks."""

    def __init__(self, sr_in: int, sr_out: int):
        self.ratio = sr_in / sr_out
        self.pos = 0.0          # next output position, in input samples from the start of `prev`
        self.prev = None        # last input sample of the previous chunk

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.ratio == 1.0:
            return x
        buf = x if self.prev is None else np.concatenate([[self.prev], x])
        if buf.size < 2:
            self.prev = buf[-1] if buf.size else self.prev
            return np.zeros(0)
        last = buf.size - 1
        n = int(np.floor((last - self.pos) / self.ratio)) + 1 if self.pos <= last else 0
        p = self.pos + self.ratio * np.arange(n)
        p = p[p < last] if n else p
        i = p.astype(np.int64)
        f = p - i
        out = buf[i] * (1 - f) + buf[i + 1] * f
        nxt = self.pos + self.ratio * p.size
        self.pos = nxt - last
        self.prev = buf[-1]
        return out


def _mono(x: np.ndarray, channels: int) -> np.ndarray:
    return x if channels == 1 else x.reshape(-1, channels).mean(axis=1)


def _read_exact(f, n: int) -> bytes:
    out = b""
    while len(out) < n:
        b = f.read(n - len(out))
        if not b:
            break
        out += b
    return out


def _open(source):
    if source == "-" or source is sys.stdin:
        return sys.stdin.buffer, False
    if hasattr(source, "read"):
        return source, False
    try:
        return open(os.fspath(source), "rb"), True
    except FileNotFoundError:
        raise AudioError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{source}: is a directory") from None
    except OSError as e:
        raise AudioError(f"{source}: cannot open ({e.strerror or e})") from None


def _check_layout(where: str, channels: int, rate: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{where}: {channels} channels; edgelstm reads 1..{MAX_CHANNELS}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{where}: a sample rate of {rate} Hz; edgelstm reads {MIN_RATE}..{MAX_RATE} Hz")


def _skip(f, n: int) -> int:
    """Skip ``n`` bytes of a (possibly unseekable) stream in bounded pieces; returns how many were there."""
    done = 0
    while done < n:
        b = f.read(min(n - done, CHUNK_BYTES))
        if not b:
            break
        done += len(b)
    return done


_MAX_FMT_BYTES = 4096  # a 'fmt ' chunk is 16, 18 or 40 bytes


def wav_info(f, where: str) -> dict:
    """Parse a RIFF/WAVE header up to the start of the 'data' chunk; returns the format."""
    head = _read_exact(f, 12)
    if len(head) < 12:
        raise AudioError(f"{where}: truncated WAV header ({len(head)} bytes; a WAV file starts with 12 bytes "
                         "'RIFF' size 'WAVE')" if head else f"{where}: empty file (zero length)")
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioError(f"{where}: not a WAV file (no RIFF/WAVE header); for headerless PCM use --raw")
    fmt = None
    while True:
        ch = _read_exact(f, 8)
        if len(ch) < 8:
            what = "no 'fmt ' chunk" if fmt is None else "no 'data' chunk"
            raise AudioError(f"{where}: truncated WAV header ({what} before the end of the file)")
        cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
        if cid == b"data":
            if fmt is None:
                raise AudioError(f"{where}: malformed WAV ('data' chunk before 'fmt ')")
            fmt["data_bytes"] = size
            return fmt
        if cid != b"fmt ":      # LIST, fact, ...: skipped without holding them in memory
            if _skip(f, size + (size & 1)) < size:
                raise AudioError(f"{where}: truncated WAV header (chunk {cid!r} cut short)")
            continue
        if not 16 <= size <= _MAX_FMT_BYTES:
            raise AudioError(f"{where}: malformed WAV 'fmt ' chunk ({size} bytes, need 16..{_MAX_FMT_BYTES})")
        body = _read_exact(f, size + (size & 1))
        if len(body) < size:
            raise AudioError(f"{where}: truncated WAV header (chunk {cid!r} cut short)")
        tag, ch_n, sr, _, align, bits = struct.unpack("<HHIIHH", body[:16])
        if tag == _WAVE_FORMAT_EXTENSIBLE and size >= 26:
            tag = struct.unpack("<H", body[24:26])[0]
        if tag == _WAVE_FORMAT_PCM and bits in (8, 16, 24, 32):
            kind = "pcm"
        elif tag == _WAVE_FORMAT_FLOAT and bits in (32, 64):
            kind = "float"
        else:
            raise AudioError(f"{where}: unsupported WAV encoding (format tag {tag}, {bits} bits); supported: "
                             "PCM 8/16/24/32-bit and IEEE float 32/64-bit")
        _check_layout(where, ch_n, sr)
        if align != ch_n * bits // 8:
            raise AudioError(f"{where}: malformed WAV 'fmt ' chunk ({ch_n} channels, {sr} Hz, block "
                             f"align {align})")
        fmt = {"kind": kind, "width": bits // 8, "channels": ch_n, "sr": sr}


def _chunks(f, where, *, kind, width, channels, sr_in, sr, limit=None, chunk_frames=CHUNK_FRAMES, close=None):
    """Yield mono float64 chunks at ``sr`` decoded from ``f``; ``limit`` bytes at most (None: to EOF).  Each
    read takes at most ``CHUNK_BYTES`` and as many frames as give about ``chunk_frames`` output samples, so the
    decoder's, downmixer's and resampler's buffers are bounded by the chunk.  ``close``: called at the end."""
    try:
        frame_bytes = width * channels
        frames = max(1, min(chunk_frames, CHUNK_BYTES // frame_bytes, chunk_frames * sr_in // sr))
        resample = _Resampler(sr_in, sr)
        left = limit
        total = 0
        carry = b""
        while left is None or left > 0:
            want = frames * frame_bytes if left is None else min(frames * frame_bytes, left)
            raw = _read_exact(f, want)
            if not raw:
                break
            if left is not None:
                left -= len(raw)
            raw = carry + raw
            usable = len(raw) - len(raw) % frame_bytes
            carry = raw[usable:]
            if usable:
                x = _to_float(raw[:usable], kind, width)
                if kind == "float" and not np.isfinite(x).all():
                    first = total // width + int(np.flatnonzero(~np.isfinite(x))[0])
                    raise AudioError(f"{where}: float audio contains NaN or inf (sample {first // channels}, "
                                     f"channel {first % channels}); integer PCM read as float? check the format")
                total += usable
                yield resample(_mono(x, channels))
        if carry:
            raise AudioError(f"{where}: stream ends with {len(carry)} stray byte(s), not a whole sample frame of "
                             f"{frame_bytes} bytes ({channels} channel(s) x {width} bytes): wrong raw-format flags "
                             "or a truncated file")
        if total == 0:
            raise AudioError(f"{where}: no audio samples (zero length)")
        if left:
            warnings.warn(f"{where}: truncated WAV: the header declares {limit / frame_bytes / sr_in:.2f} s of "
                          f"audio, the file ends after {total / frame_bytes / sr_in:.2f} s (all of it was read)",
                          AudioWarning, stacklevel=2)
    finally:
        if close is not None:
            close()


def read_wav(source, *, sr: int, chunk_frames: int = CHUNK_FRAMES):
    """Mono float64 chunks at ``sr`` from a WAV file path or binary file object (an iterator).  The header is
    read and checked now; the samples as the chunks are consumed."""
    f, close = _open(source)
    where = os.fspath(source) if close else "<stream>"
    try:
        fmt = wav_info(f, where)
    except BaseException:
        if close:
            f.close()
        raise
    limit = fmt["data_bytes"] if fmt["data_bytes"] not in (0, 0xFFFFFFFF) else None  # streamed WAVs
    return _chunks(f, where, kind=fmt["kind"], width=fmt["width"], channels=fmt["channels"], sr_in=fmt["sr"],
                   sr=sr, limit=limit, chunk_frames=chunk_frames, close=f.close if close else None)


def read_raw(source, *, sr: int, format: str = "S16_LE", channels: int = 1, rate: int | None = None,
             chunk_frames: int = CHUNK_FRAMES):
    """Mono float64 chunks at ``sr`` from headerless PCM (a path, a binary file object or '-' for stdin; an
    iterator).  ``format`` is arecord's name (S16_LE, S32_LE, S24_3LE, U8, FLOAT_LE); ``rate`` defaults to
    ``sr``.  The flags and the file are checked now; the samples are read as the chunks are consumed."""
    if format not in RAW_FORMATS:
        raise AudioError(f"unknown raw format {format!r}; supported: {', '.join(RAW_FORMATS)}")
    rate = sr if rate is None else rate
    for name, v in (("channels", channels), ("rate", rate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise AudioError(f"raw {name} must be an integer, got {v!r}")
    _check_layout("raw input", int(channels), int(rate))
    kind = "float" if format == "FLOAT_LE" else "pcm"
    width = {"S16_LE": 2, "S32_LE": 4, "U8": 1, "FLOAT_LE": 4, "S24_3LE": 3}[format]
    f, close = _open(source)
    where = os.fspath(source) if close else "<stdin>" if source == "-" else "<stream>"
    try:
        head = f.peek(4)[:4] if hasattr(f, "peek") else b""
        if head == b"RIFF":
            raise AudioError(f"{where}: this is a WAV file (RIFF header), not raw PCM: drop --raw")
    except BaseException:
        if close:
            f.close()
        raise
    return _chunks(f, where, kind=kind, width=width, channels=int(channels), sr_in=int(rate), sr=sr,
                   chunk_frames=chunk_frames, close=f.close if close else None)


def read_microphone(*, sr: int, seconds: float | None = None, device=None, block: int = 1600):
    """Yield mono float64 chunks at ``sr`` from a live microphone (needs the optional ``sounddevice``)."""
    try:
        import sounddevice as sd
    except ImportError:
        raise AudioError("live microphone input needs the optional package sounddevice: "
                         "pip install 'edgelstm[audio]'") from None
    total = None if seconds is None else int(seconds * sr)
    got = 0
    with sd.InputStream(samplerate=sr, channels=1, dtype="float32", blocksize=block, device=device) as s:
        while total is None or got < total:
            x, _ = s.read(block)
            x = np.asarray(x, np.float64)[:, 0]
            got += x.size
            yield x


def write_wav(path, y: np.ndarray, *, sr: int) -> None:
    """16-bit PCM mono WAV (for sample clips and tests), written atomically."""
    v = np.clip(np.round(np.asarray(y, np.float64) * 32767.0), -32768, 32767).astype("<i2").tobytes()
    head = (b"RIFF" + struct.pack("<I", 36 + len(v)) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr,
            sr * 2, 2, 16) + b"data" + struct.pack("<I", len(v)))
    write_atomic(path, head + v, error=AudioError)
