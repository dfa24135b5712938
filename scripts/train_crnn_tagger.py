#!/usr/bin/env python
"""CRNN audio tagger trained on real recordings under camera-like conditions (issue 19).

    python scripts/fetch_real_audio.py                      # once: the recordings (see that script)
    python scripts/train_crnn_tagger.py [--arch time|freq|freqtime] [--out scripts/crnn_out]
    python scripts/eval_crnn_tagger.py                      # calibrate on validation, score on test

Data: 10 s scenes built from the TRAIN packages of scripts/fetch_real_audio.py (speech, alarm, knock, glass,
music over real ambiences), plus synthesis where recordings are missing or scarce (sirens, smoke-alarm
patterns, beep trains, steady tones, synthetic knocks/glass, a little espeak-ng speech; the generators of
scripts/train_audio_tagger.py).  Every scene goes through a random camera chain (room reverb on the events,
foreground at -5..+20 dB SNR over the bed, telephone band or cheap-mic response, AGC, compression, gain steps,
clipping, mic self-noise) and then through the runtime's own streaming log-mel (edgelstm.audio.features), so
training features are the features `edgelstm tag` computes.

Model (one frame in, one probability vector out, streamable exactly; see ``stream_reference``):
  --arch time: context(2 frames) -> Conv1d over time, channels = mels (k=3) + ReLU -> GRU -> Dense sigmoid
  --arch freq: Conv1d over frequency (frame as (n_mels, 1)) x2 + ReLU -> GRU -> Dense sigmoid
  --arch freqtime: the freq arch's two convs over frequency (their filters slide along the mel axis: a beep or
      a harmonic looks the same an octave up), then context(--context frames) of those features -> Conv1d over
      time (--channels) + ReLU -> GRU/LSTM -> Dense sigmoid: a factorized 2-D conv front end
The input normalization is folded into the first layer, so raw log-mel dB go in.  Deterministic (seeds).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fetch_real_audio as real           # noqa: E402  (scripts/ is not a package)
import train_audio_tagger as synth        # noqa: E402

from crnn_reference import FREQ_CONVS, StreamReference, freq_length  # noqa: E402,F401  (re-exported)
from edgelstm._files import write_atomic  # noqa: E402
from edgelstm.audio.features import FrontEnd, LogMel  # noqa: E402

LABELS = real.LABELS                       # speech, alarm, knock, glass, music, background
FG = LABELS[:-1]
BG = len(LABELS) - 1
FE = FrontEnd(n_mels=40)
SR = FE.sr
SCENE_S = 10.0
N_FRAMES = 1 + (int(SCENE_S * SR) - FE.n_fft) // FE.hop_length
OUT = Path(__file__).resolve().parent / "crnn_out"

# gaps shorter than this (s) inside one event's activity are bridged: a sentence, a beep train, a knock
# sequence, a piece of music are one event each
BRIDGE_S = {"speech": 0.35, "alarm": 0.7, "knock": 0.3, "glass": 0.3, "music": 1.0}
EVENT_WEIGHTS = {"speech": 0.28, "alarm": 0.24, "knock": 0.16, "glass": 0.10, "music": 0.22}
SYNTH_SHARE = {"speech": 0.12, "alarm": 0.5, "knock": 0.3, "glass": 0.5, "music": 0.05}
ALARM_FAMILIES = ["siren", "beep", "ring", "smoke_t3", "chirp_hop", "tone", "beep_train"]
VOICES = synth.TRAIN_VOICES + synth.HELD_OUT["voices"]


# ------------------------------------------------------------------------------------ sources

class Pools:
    """Real clips of one split, by label (float32 at 16 kHz), and their manifest rows."""

    def __init__(self, split: str, cache: Path | None = None, *, rows=None, clips=None):
        """The split's clips from the cache, or the given manifest rows and their clips."""
        if rows is None:
            cache = cache or real.default_cache()
            rows = [r for r in real.read_manifest(cache) if r["split"] == split]
            clips = real.load_clips(cache, rows)
        self.by_label = {c: [] for c in LABELS}
        self.rows = {c: [] for c in LABELS}
        for r, y in zip(rows, clips):
            self.by_label[r["label"]].append(y)
            self.rows[r["label"]].append(r)
        # label -> [[clip indices of one package], ...]: for drawing a package first, then one of its clips
        self.by_package = {}
        for c, rs in self.rows.items():
            groups = {}
            for i, r in enumerate(rs):
                groups.setdefault(r["package"], []).append(i)
            self.by_package[c] = [groups[p] for p in sorted(groups)]

    def draw(self, rng, label: str, by_package: bool) -> np.ndarray:
        """One clip of a label: uniformly over its clips, or (by_package) over its packages first, so that a
        package of 1,800 one-word clips weighs as much as one of 50 sentences."""
        if not by_package:
            clips = self.by_label[label]
            return clips[int(rng.integers(0, len(clips)))]
        group = self.by_package[label][int(rng.integers(0, len(self.by_package[label])))]
        return self.by_label[label][group[int(rng.integers(0, len(group)))]]


def alarm_synth(rng, dur):
    fam = ALARM_FAMILIES[int(rng.integers(0, len(ALARM_FAMILIES)))]
    n = int(dur * SR)
    t = np.arange(n) / SR
    if fam == "tone":           # a steady tone (test signals, buzzers)
        return synth.harmonics(np.full(n, rng.uniform(400, 4000)), int(rng.integers(1, 4)), rng, 0.3)
    if fam == "beep_train":     # regular on/off beeps, 0.05..0.6 s each
        on, off = rng.uniform(0.05, 0.6), rng.uniform(0.05, 0.6)
        gate = ((t % (on + off)) < on).astype(float)
        return synth.harmonics(np.full(n, rng.uniform(500, 4000)), int(rng.integers(1, 3)), rng, 0.3) * gate
    return synth.alarm(rng, fam, dur)


def synth_event(rng, label, dur):
    if label == "speech":
        return synth.speech(rng, VOICES[int(rng.integers(0, len(VOICES)))], dur)
    if label == "alarm":
        return alarm_synth(rng, dur)
    if label == "knock":
        return synth.knock(rng, ["knock", "slam"][int(rng.integers(0, 2))], dur)
    if label == "glass":
        return synth.glass(rng, ["ping", "shards"][int(rng.integers(0, 2))], dur)
    return synth.music(rng, ["additive", "pluck"][int(rng.integers(0, 2))], dur)


def crop(rng, y, n):
    """A random window of at most n samples."""
    if y.size <= n:
        return y
    a = int(rng.integers(0, y.size - n + 1))
    return y[a:a + n]


def loop_to(rng, y, n):
    """Tile a background clip (from a random phase) to exactly n samples with 50 ms crossfades."""
    if y.size >= n:
        return crop(rng, y, n).astype(np.float64)
    out = np.zeros(n)
    pos = -int(rng.integers(0, y.size))
    fade = min(800, y.size // 4)
    ramp = np.linspace(0, 1, fade) if fade else np.zeros(0)
    while pos < n:
        seg = y.astype(np.float64).copy()
        if fade:
            seg[:fade] *= ramp
            seg[-fade:] *= ramp[::-1]
        a, b = max(0, pos), min(n, pos + seg.size)
        out[a:b] += seg[a - pos:b - pos]
        pos += seg.size - fade
    return out


# ------------------------------------------------------------------------------------ camera chain

def _sos_filter(sos, y):
    from scipy.signal import sosfilt
    return sosfilt(sos, y)


def band_limit(rng, y):
    from scipy.signal import butter
    kind = rng.random()
    if kind < 0.4:              # telephone band: 300-3400 Hz (an 8 kHz path)
        sos = butter(4, [rng.uniform(250, 400), rng.uniform(3200, 3600)], btype="band", fs=SR, output="sos")
        return _sos_filter(sos, y)
    # cheap mic: low-frequency roll-off, early high cut, one resonance
    y = _sos_filter(butter(2, rng.uniform(80, 500), btype="high", fs=SR, output="sos"), y)
    y = _sos_filter(butter(4, rng.uniform(3000, 7500), btype="low", fs=SR, output="sos"), y)
    from scipy.signal import iirpeak, tf2sos
    f0 = rng.uniform(1000, 5000)
    b, a = iirpeak(f0, rng.uniform(1, 4), fs=SR)
    return y + rng.uniform(0.3, 1.5) * _sos_filter(tf2sos(b, a), y)


def agc(rng, y):
    """Camera AGC: slow level follower pulling the signal to a target level (lifts quiet room tone)."""
    blk = 320
    nb = max(1, y.size // blk)
    rms = np.sqrt(np.mean(y[:nb * blk].reshape(nb, blk) ** 2, axis=1) + 1e-12)
    tau = rng.uniform(0.2, 2.0) * SR / blk
    a = math.exp(-1 / tau)
    env = np.empty(nb)
    e = rms[0]
    for i in range(nb):
        e = a * e + (1 - a) * rms[i] if rms[i] < e else 0.7 * e + 0.3 * rms[i]   # fast attack, slow release
        env[i] = e
    target = 10 ** (rng.uniform(-30, -15) / 20)
    gain = np.clip(target / (env + 1e-9), 10 ** (-20 / 20), 10 ** (rng.uniform(10, 35) / 20))
    g = np.interp(np.arange(y.size), np.arange(nb) * blk + blk / 2, gain)
    return y * g


def compress(rng, y):
    thr = 10 ** (rng.uniform(-30, -10) / 20)
    ratio = rng.uniform(2, 8)
    a = np.abs(y)
    over = a > thr
    out = y.copy()
    out[over] = np.sign(y[over]) * thr * (a[over] / thr) ** (1 / ratio)
    return out * (1 / thr) ** (1 - 1 / ratio) * 10 ** (rng.uniform(-6, 0) / 20)


def camera(rng, y):
    if rng.random() < 0.45:
        y = band_limit(rng, y)
    if rng.random() < 0.35:
        y = agc(rng, y)
    if rng.random() < 0.25:
        y = compress(rng, y)
    if rng.random() < 0.2:      # gain step (someone touched the volume, AGC jump)
        k = int(rng.integers(0, y.size))
        y = y.copy()
        y[k:] *= 10 ** (rng.choice([-1, 1]) * rng.uniform(6, 15) / 20)
    rms = np.sqrt(np.mean(y ** 2)) + 1e-12
    y = y / rms * 10 ** (rng.uniform(-50, -14) / 20)
    if rng.random() < 0.15:     # clipping: drive the peaks 3..15 dB over full scale
        y = y / (np.max(np.abs(y)) + 1e-12) * 10 ** (rng.uniform(3, 15) / 20)
    y = y + rng.standard_normal(y.size) * 10 ** (rng.uniform(-90, -60) / 20)   # mic self-noise
    return np.clip(y, -1.0, 1.0)


# ------------------------------------------------------------------------------------ scenes

def frame_energy(y, n_frames):
    idx = np.arange(n_frames)[:, None] * FE.hop_length + np.arange(FE.n_fft)[None, :]
    return np.sum(y[idx] ** 2, axis=1)


def bridge(mask, gap_frames):
    """Fill runs of False shorter than gap_frames that lie between two True frames."""
    m = mask.copy()
    on = np.flatnonzero(m)
    if on.size < 2:
        return m
    gaps = np.flatnonzero(np.diff(on) > 1)
    for g in gaps:
        a, b = on[g], on[g + 1]
        if b - a - 1 < gap_frames:
            m[a:b] = True
    return m


def activity(ev_full, bed_e, label, n_frames):
    """Frames where the event is present: within 30 dB of its own peak and not more than 6 dB under the
    bed, then short gaps bridged."""
    e = frame_energy(ev_full, n_frames)
    if e.max() <= 0:
        return np.zeros(n_frames, bool)
    m = (e > e.max() * 1e-3) & (e > bed_e * 10 ** (-0.6))
    return bridge(m, int(BRIDGE_S[label] * SR / FE.hop_length))


def make_bed(rng, pools: Pools, n):
    r = rng.random()
    bgs = pools.by_label["background"]
    if r < 0.7 and bgs:
        bed = loop_to(rng, bgs[int(rng.integers(0, len(bgs)))], n)
        if rng.random() < 0.3:       # two ambiences at once
            bed = bed + loop_to(rng, bgs[int(rng.integers(0, len(bgs)))], n) * rng.uniform(0.2, 1)
    elif r < 0.9:
        bed = synth.noise(rng, n)
    else:
        bed = rng.standard_normal(n) * 1e-3     # a quiet room
    return bed / (np.sqrt(np.mean(bed ** 2)) + 1e-12)


def make_scene(rng, pools: Pools, *, n_events=None, labels_only=None, synth_ok=True, camera_ok=True, silent=False,
               weights=None, by_package=False):
    """(samples, (N_FRAMES, 6) bool targets): events over a bed, through a camera chain.  silent: events over
    digital silence, no camera chain (clean files, test tones, clips padded with zeros: log-mel frames at the
    floor, -100 dB, which a camera's noise never gives).  weights: label -> share of the events (default
    EVENT_WEIGHTS).  by_package: real clips drawn package first (Pools.draw)."""
    n = int(SCENE_S * SR)
    if silent:
        bed = np.zeros(n)
        camera_ok = False
    else:
        bed = make_bed(rng, pools, n) * 10 ** (rng.uniform(-45, -20) / 20)
    bed_e = frame_energy(bed, N_FRAMES)
    mix = bed.copy()
    lab = np.zeros((N_FRAMES, len(LABELS)), bool)
    if n_events is None:
        n_events = int(rng.choice([0, 0, 1, 1, 1, 2, 2, 3]))
    weights = weights or EVENT_WEIGHTS
    names = list(weights)
    w = np.array([weights[k] for k in names])
    for _ in range(n_events):
        label = labels_only or names[int(rng.choice(len(names), p=w / w.sum()))]
        dur = rng.uniform(0.4, 7.0) if label in ("speech", "music", "alarm") else rng.uniform(0.3, 3.0)
        clips = pools.by_label[label]
        if synth_ok and (not clips or rng.random() < SYNTH_SHARE[label]):
            ev = synth_event(rng, label, dur)
        else:
            ev = crop(rng, pools.draw(rng, label, by_package), int(dur * SR)).astype(np.float64)
        if ev.size == 0 or not np.any(ev):
            continue
        if camera_ok and rng.random() < 0.5:
            ev = synth.reverb(rng, ev)
        snr = rng.uniform(-5, 20)
        level = np.sqrt(np.mean(bed ** 2)) * 10 ** (snr / 20) if not silent else 10 ** (rng.uniform(-40, -10) / 20)
        ev = ev / (np.sqrt(np.mean(ev ** 2)) + 1e-12) * level
        a = int(rng.integers(0, max(1, n - ev.size)))
        full = np.zeros(n)
        full[a:a + ev.size] = ev[: n - a]
        lab[:, LABELS.index(label)] |= activity(full, bed_e, label, N_FRAMES)
        mix += full
    lab[:, BG] = ~lab[:, :BG].any(axis=1)
    if silent:
        return np.clip(mix, -1, 1), lab
    y = camera(rng, mix) if camera_ok else np.clip(mix / (np.max(np.abs(mix)) + 1e-12) * 0.5, -1, 1)
    return y, lab


_POOLS = {}


def save_arrays(path: Path, **arrays) -> None:
    """np.savez (one array: np.save) written atomically: a run stopped mid-write leaves no truncated cache."""
    buf = io.BytesIO()
    if len(arrays) == 1 and path.suffix == ".npy":
        np.save(buf, next(iter(arrays.values())))
    else:
        np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def _scene_batch(args):
    split, seed, count, silent_share, weights, by_package = args
    if split not in _POOLS:
        _POOLS[split] = Pools(split)
    rng = np.random.default_rng(seed)
    X = np.empty((count, N_FRAMES, FE.n_mels), np.float16)
    Y = np.empty((count, N_FRAMES, len(LABELS)), bool)
    for i in range(count):
        y, lab = make_scene(rng, _POOLS[split], silent=bool(rng.random() < silent_share), weights=weights,
                            by_package=by_package)
        X[i] = LogMel(FE).push(y)
        Y[i] = lab
    return X, Y


def pools_digest(splits=("train", "validation"), cache: Path | None = None) -> str:
    """8 hex digits naming the clips of these splits (package, version, path, start, label of every manifest row):
    scene caches carry it, so a change to fetch_real_audio.PACKAGES makes new scenes instead of reusing old ones."""
    import hashlib
    rows = sorted((r["split"], r["package"], r["version"], r["path"], r["start_s"], r["label"])
                  for r in real.read_manifest(cache or real.default_cache()) if r["split"] in splits)
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:8]


def scenes(split: str, count: int, seed: int, jobs: int, silent_share: float = 0.0, weights: dict | None = None,
           by_package: bool = False):
    """count scenes of a split, generated in jobs processes, deterministic for (seed, count, silent_share,
    weights, by_package)."""
    per = 50
    tasks = [(split, seed * 100003 + k, min(per, count - k * per), silent_share, weights, by_package)
             for k in range(math.ceil(count / per))]
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        parts = list(ex.map(_scene_batch, tasks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------------ model

def clipped_lstm(x, lstm, clip: float, state=None):
    """nn.LSTM's math (PyTorch gate order i, f, g, o) one step at a time with the cell state clipped to
    [-clip, clip] after each update, as an edgelstm / TFLite LSTM with cell_clip runs it.  x (B, T, F) ->
    (out (B, T, H), (h, c) each (1, B, H))."""
    import torch
    B = x.shape[0]
    H = lstm.hidden_size
    xg = x @ lstm.weight_ih_l0.T + (lstm.bias_ih_l0 + lstm.bias_hh_l0)      # (B, T, 4H): the input terms at once
    h, c = (x.new_zeros(B, H), x.new_zeros(B, H)) if state is None else (state[0][0], state[1][0])
    outs = []
    for xt in xg.unbind(1):     # unbind, not xg[:, t]: each slice's backward would allocate all of xg
        i, f, g, o = (xt + h @ lstm.weight_hh_l0.T).chunk(4, 1)
        c = torch.clamp(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), -clip, clip)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), (h[None], c[None])


def build_model(arch: str, n_mels: int, hidden: int, cell: str = "gru", *, context: int = 2, channels: int = 64,
                cell_clip: float = 0.0, dropout: float = 0.0):
    import torch
    from torch import nn

    def _relu_conv_channels_last(h, conv):
        """ReLU(conv(h)) for h (N, L, C_in) -> (N, L', C_out), valid padding."""
        O, C, K = conv.weight.shape
        win = h.unfold(1, K, conv.stride[0])                 # (N, L', C, K)
        return torch.relu(nn.functional.linear(win.reshape(*win.shape[:2], C * K), conv.weight.reshape(O, C * K),
                                               conv.bias))

    class CRNN(nn.Module):
        """arch 'time': frames (B, T, M) -> context window (B, T, context+1, M) -> Conv1d(M->C, k=context+1) over it
        -> ReLU -> GRU -> Linear.  arch 'freq': each frame as (M, 1) -> Conv1d(1->16, k=5, s=2) -> ReLU ->
        Conv1d(16->24, k=3, s=2) -> ReLU -> flatten (position-major, channels last) -> GRU -> Linear.  arch
        'freqtime': FREQ_CONVS over each frame -> ReLU -> flatten (F features) -> context window of those
        features (zeros before the stream starts) -> Conv1d(F->C, k=context+1) -> ReLU -> GRU -> Linear.
        ``dropout`` acts in training only, on the GRU's input and output: the exported layers are the same."""

        def __init__(self):
            super().__init__()
            self.arch = arch
            self.register_buffer("mean", torch.zeros(n_mels))
            self.register_buffer("std", torch.ones(n_mels))
            if arch == "time":
                self.context = context
                self.conv = nn.ModuleList([nn.Conv1d(n_mels, channels, context + 1)])
                feat = channels
            elif arch == "freqtime":
                self.context = context
                per_frame = FREQ_CONVS[-1][1] * freq_length(n_mels, FREQ_CONVS)
                self.conv = nn.ModuleList([nn.Conv1d(i, o, k, stride=s) for i, o, k, s in FREQ_CONVS]
                                          + [nn.Conv1d(per_frame, channels, context + 1)])
                feat = channels
            else:
                self.context = 0
                self.conv = nn.ModuleList([nn.Conv1d(1, 16, 5, stride=2), nn.Conv1d(16, 24, 3, stride=2)])
                l1 = (n_mels - 5) // 2 + 1
                l2 = (l1 - 3) // 2 + 1
                feat = 24 * l2
            self.cell = cell          # the attribute's name is the state dict's prefix: gru.* or lstm.*
            self.cell_clip = cell_clip if cell == "lstm" else 0.0
            setattr(self, cell, (nn.GRU if cell == "gru" else nn.LSTM)(feat, hidden, batch_first=True))
            self.fc = nn.Linear(hidden, len(LABELS))
            self.drop = nn.Dropout(dropout)

        @property
        def rnn(self):
            return getattr(self, self.cell)

        def features(self, x):
            """(B, T, M) raw dB -> (B, T, F) per-frame conv features (what the GRU sees)."""
            B, T, M = x.shape
            x = (x - self.mean) / self.std
            if self.arch == "time":
                # the stream's context starts as zeros of the RAW input, i.e. -mean/std once normalized
                pad = ((torch.zeros(B, self.context, M) - self.mean) / self.std)
                w = torch.cat([pad, x], 1).unfold(1, self.context + 1, 1)       # (B, T, M, K)
                h = self.conv[0](w.reshape(B * T, M, self.context + 1))           # (B*T, C, 1)
                return torch.relu(h).reshape(B, T, -1)
            if self.arch == "freqtime":
                return self._freqtime_features(x)
            h = x.reshape(B * T, 1, M)
            for conv in self.conv:
                h = torch.relu(conv(h))                                           # (B*T, C, L)
            return h.transpose(1, 2).reshape(B, T, -1)                            # position-major

        def _freqtime_features(self, x):
            """The convs as window x weight matmuls (the same sums as Conv1d, whose backward over ~20k tiny
            sequences per batch made an epoch 1.6x slower), channels last throughout."""
            B, T, M = x.shape
            h = x.reshape(B * T, M, 1)                       # (N, L, C): each frame along the mel axis
            for conv in self.conv[:-1]:
                h = _relu_conv_channels_last(h, conv)        # (N, L', O)
            h = h.reshape(B, T, -1)                          # position-major features of each frame
            h = torch.cat([torch.zeros(B, self.context, h.shape[2]), h], 1)   # the context starts as zeros
            return _relu_conv_channels_last(h, self.conv[-1])                 # (B, T, C): over time

        def forward(self, x, h0=None):
            f = self.drop(self.features(x))
            if self.cell_clip:
                out, h = clipped_lstm(f, self.rnn, self.cell_clip, h0)
            else:
                out, h = self.rnn(f, h0)
            return self.fc(self.drop(out)), h

    return CRNN()


def spec_augment(x, rng, *, max_shift: int, masks: int, max_width: int):
    """A copy of x (B, T, M) raw log-mel dB with each scene's mel axis shifted by -max_shift..max_shift bins (the
    edge bin repeated: one bin is a pitch or speed change of ~6-10%, a voice or beep the clips do not hold), then
    ``masks`` bands of 0..max_width bins set to the scene's mean level (SpecAugment's frequency masks: no class
    may hinge on a few bins).  Labels are unchanged: both keep every event where it is in time."""
    x = np.array(x, np.float32)
    B, _, M = x.shape
    bins = np.arange(M)
    for b in range(B):
        s = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
        x[b] = x[b][:, np.clip(bins - s, 0, M - 1)]      # out bin m = in bin m - s, edges repeated
        fill = float(x[b].mean())
        for _ in range(masks):
            w = int(rng.integers(0, max_width + 1))
            a = int(rng.integers(0, M - w + 1))
            x[b, :, a:a + w] = fill
    return x


def train(model, X, Y, Xv, Yv, *, epochs, seed, batch=32, lr=3e-3, log=print, checkpoint=None,
          pos_weight_max=8.0, fit_norm=True, weight_decay=0.0, augment=None):
    """augment: None, or spec_augment's keywords (max_shift, masks, max_width) for the training batches."""
    import torch
    torch.manual_seed(seed)
    aug_rng = np.random.default_rng(seed + 7)
    flat = X.reshape(-1, X.shape[-1]).astype(np.float32)
    if not fit_norm:        # fine-tuning: keep the loaded normalization
        pass
    elif model.arch == "time":
        model.mean.copy_(torch.tensor(flat.mean(0)))
        model.std.copy_(torch.tensor(flat.std(0) + 1e-3))
    else:   # one scalar: folds exactly into a convolution over frequency
        model.mean.fill_(float(flat.mean()))
        model.std.fill_(float(flat.std() + 1e-3))
    del flat
    # AdamW's decay is decoupled from the gradient scale; with 0 it is Adam, kept for the earlier runs' sake
    opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay) if weight_decay
           else torch.optim.Adam(model.parameters(), lr=lr))
    steps = epochs * math.ceil(len(X) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    pos_weight = class_pos_weight(Y, pos_weight_max, log)
    best = (1e9, None)
    for ep in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(X), generator=g).numpy()
        tot = 0.0
        for b in range(0, len(X), batch):
            idx = np.sort(perm[b:b + batch])
            xb = X[idx].astype(np.float32)
            xb = torch.tensor(spec_augment(xb, aug_rng, **augment) if augment else xb)
            yb = torch.tensor(Y[idx].astype(np.float32))
            logits, _ = model(xb)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        vl = evaluate_loss(model, Xv, Yv, pos_weight)
        log(f"  epoch {ep + 1}/{epochs} train loss {tot / len(X):.4f} val loss {vl:.4f} ({time.time() - t0:.0f} s)")
        if vl < best[0]:
            best = (vl, {k: v.clone() for k, v in model.state_dict().items()})
            if checkpoint is not None:      # a stopped run keeps its best epoch
                torch.save(best[1], checkpoint)
    model.load_state_dict(best[1])
    return best[0]


def class_pos_weight(Y, pos_weight_max, log=print):
    """Class balance: positives of rare classes count more (capped); background positives are common."""
    import torch
    pos = Y.reshape(-1, Y.shape[-1]).mean(0)
    pos_weight = torch.tensor(np.clip(0.5 / np.maximum(pos, 1e-3), 1.0, pos_weight_max), dtype=torch.float32)
    pos_weight[BG] = 1.0
    log(f"  positive frame share {np.round(pos, 3).tolist()} -> pos_weight {np.round(pos_weight.numpy(), 2).tolist()}")
    return pos_weight


def evaluate_loss(model, X, Y, pos_weight):
    import torch
    model.eval()
    tot = 0.0
    with torch.no_grad():
        for b in range(0, len(X), 64):
            logits, _ = model(torch.tensor(X[b:b + 64].astype(np.float32)))
            tot += float(torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.tensor(Y[b:b + 64].astype(np.float32)), pos_weight=pos_weight)) * len(X[b:b + 64])
    return tot / len(X)


# ------------------------------------------------------------------------------------ export

def export_layers(model) -> dict:
    """Float weights with the normalization folded into the first conv: raw log-mel dB in.  Layout as the
    runtime's layers will take them (see DATA.md / the report): conv weight (C_out, C_in/groups, K)."""
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in model.state_dict().items()}
    mean, std = sd["mean"], sd["std"]
    w0, b0 = sd["conv.0.weight"], sd["conv.0.bias"]
    if model.arch == "time":        # channels = mels: per-channel normalization folds exactly
        w = w0 / std[None, :, None]
        b = b0 - np.einsum("oik,i->o", w, mean)
    else:                           # scalar normalization: w/s, b - mu/s * sum(w)
        w = w0 / std[0]
        b = b0 - mean[0] * w.sum(axis=(1, 2))
    out = {"conv0.weight": w, "conv0.bias": b}
    for i in range(1, len(model.conv)):
        out[f"conv{i}.weight"] = sd[f"conv.{i}.weight"]
        out[f"conv{i}.bias"] = sd[f"conv.{i}.bias"]
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        out[f"{model.cell}.{k}"] = sd[f"{model.cell}.{k}"]
    out["dense.weight"], out["dense.bias"] = sd["fc.weight"], sd["fc.bias"]
    return {k: v.astype(np.float32) for k, v in out.items()}


def load_exported(model, W: dict, mean: float, std: float) -> None:
    """The inverse of export_layers for the frequency archs: load exported weights (raw dB in) into model with its
    normalization set to the scalar (mean, std) and the first conv unfolded to match, so fine-tuning starts from
    exactly the exported model (the state dict of a bundled run need not survive; its weights.npz does)."""
    import torch
    if model.arch == "time":
        raise ValueError("load_exported: the frequency archs only (arch time normalizes per mel)")
    sd = model.state_dict()
    w = W["conv0.weight"].astype(np.float64)
    new = {"mean": np.full(sd["mean"].shape, mean), "std": np.full(sd["std"].shape, std),
           "conv.0.weight": w * std, "conv.0.bias": W["conv0.bias"] + mean * w.sum(axis=(1, 2)),
           "fc.weight": W["dense.weight"], "fc.bias": W["dense.bias"]}
    for i in range(1, len(model.conv)):
        new[f"conv.{i}.weight"], new[f"conv.{i}.bias"] = W[f"conv{i}.weight"], W[f"conv{i}.bias"]
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        new[f"{model.cell}.{k}"] = W[f"{model.cell}.{k}"]
    if set(new) != set(sd):
        raise ValueError(f"load_exported: weights do not fit the model: {sorted(set(new) ^ set(sd))}")
    for k, v in new.items():
        if tuple(np.shape(v)) != tuple(sd[k].shape):
            raise ValueError(f"load_exported: {k} has shape {np.shape(v)}, the model {tuple(sd[k].shape)}")
    model.load_state_dict({k: torch.tensor(np.asarray(v), dtype=sd[k].dtype) for k, v in new.items()})


def cost(model, n_mels: int) -> dict:
    """Parameters and multiply-accumulates per frame (one streaming step)."""
    params = sum(p.numel() for n, p in model.named_parameters())
    macs = 0
    if model.arch == "time":
        c = model.conv[0]
        macs += c.out_channels * c.in_channels * c.kernel_size[0]
    else:
        L = n_mels
        freq = model.conv[:-1] if model.arch == "freqtime" else model.conv
        for c in freq:
            L = (L - c.kernel_size[0]) // c.stride[0] + 1
            macs += L * c.out_channels * c.in_channels * c.kernel_size[0]
        if model.arch == "freqtime":
            c = model.conv[-1]
            macs += c.out_channels * c.in_channels * c.kernel_size[0]
    H, F = model.rnn.hidden_size, model.rnn.input_size
    macs += (3 if model.cell == "gru" else 4) * H * (F + H) + model.fc.in_features * model.fc.out_features
    return {"params": int(params), "macs_per_frame": int(macs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["time", "freq", "freqtime"], default="time")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--cell-clip", type=float, default=0.0,
                    help="LSTM: clip the cell state to [-X, X] after each step (edgelstm's cell_clip), so the int8 "
                         "cell format (range 64 at most) holds what the float model computes; 0 = none")
    ap.add_argument("--cell", choices=["gru", "lstm"], default="gru")
    ap.add_argument("--context", type=int, default=2,
                    help="arch time, freqtime: frames before the current one the conv over time sees")
    ap.add_argument("--channels", type=int, default=64, help="arch time, freqtime: the time conv's output channels")
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="dropout on the recurrent layer's input and output, in training only")
    ap.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decoupled weight decay; 0 = Adam")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-scenes", type=int, default=6000)
    ap.add_argument("--val-scenes", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=14, help="0: export --init as it is (no training)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)   # 2 threads on a shared 2-core box: 4x slower
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--pos-weight-max", type=float, default=8.0,
                    help="cap of the positive-class loss weight (rare classes); lower = fewer false events")
    ap.add_argument("--silent-share", type=float, default=0.0,
                    help="share of scenes over digital silence without the camera chain (clean files, tones)")
    ap.add_argument("--silent-scenes", type=int, default=0,
                    help="append this many scenes over digital silence (and a tenth as many to validation)")
    ap.add_argument("--extra-scenes", type=int, default=0,
                    help="append this many more training scenes per --extra-seeds seed (cached next to --features)")
    ap.add_argument("--extra-seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--extra-weights", nargs="+", default=[], metavar="LABEL=SHARE",
                    help="event shares of the extra scenes, e.g. alarm=0.5 (unnamed labels keep their default share)")
    ap.add_argument("--init", type=Path,
                    help="start from this state dict (.pt) or a run's exported weights.npz (fine-tuning)")
    ap.add_argument("--spec-augment", type=int, nargs=3, metavar=("MAX_SHIFT", "MASKS", "MAX_WIDTH"),
                    help="training batches: shift each scene's mel axis by up to MAX_SHIFT bins, then set MASKS "
                         "bands of up to MAX_WIDTH bins to its mean level (e.g. 1 2 4); default none")
    ap.add_argument("--by-package", action="store_true",
                    help="training scenes draw each real clip package first, then a clip of it (validation scenes "
                         "stay as they are, so validation losses compare across runs)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--features", type=Path, default=None,
                    help="cache the generated features here (npz); reused when present")
    args = ap.parse_args()
    if args.cell_clip < 0 or (args.cell_clip and args.cell != "lstm"):
        ap.error("--cell-clip: a positive clip, and only with --cell lstm")
    if not 0 <= args.dropout < 1:
        ap.error("--dropout: a rate in [0, 1)")
    if not (args.weight_decay >= 0 and math.isfinite(args.weight_decay)):
        ap.error("--weight-decay: a finite value >= 0")
    extra_weights = dict(EVENT_WEIGHTS)
    for item in args.extra_weights:
        label, _, share = item.partition("=")
        try:
            extra_weights[label] = float(share)
        except ValueError:
            ap.error(f"--extra-weights: {item!r} is not LABEL=SHARE")
        if label not in EVENT_WEIGHTS or not 0 <= extra_weights[label] or not math.isfinite(extra_weights[label]):
            ap.error(f"--extra-weights: {item!r}: a label of {list(EVENT_WEIGHTS)} and a share >= 0")
    if not sum(extra_weights.values()) > 0:
        ap.error("--extra-weights: at least one share > 0")
    if args.extra_weights and not args.extra_scenes:
        ap.error("--extra-weights applies to the extra scenes: give --extra-scenes N")
    if args.spec_augment and not (0 <= args.spec_augment[0] < FE.n_mels // 4 and args.spec_augment[1] >= 0
                                  and 0 <= args.spec_augment[2] < FE.n_mels // 4):
        ap.error(f"--spec-augment: shift and width in 0..{FE.n_mels // 4 - 1}, masks >= 0")
    if args.init and args.init.suffix not in (".pt", ".npz"):
        ap.error("--init: a state dict (.pt) or a run's weights.npz")
    if args.init and args.init.suffix == ".npz" and args.arch == "time":
        ap.error("--init weights.npz: the frequency archs only (arch time normalizes per mel; give its .pt)")
    if not shutil.which("espeak-ng"):      # a little synthetic speech; fail now, not in a worker minutes later
        ap.error("espeak-ng is not on PATH (Debian: apt-get install espeak-ng)")
    import torch
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log_lines = []

    def log(s):
        print(s, flush=True)
        log_lines.append(s)

    t0 = time.time()
    silent = f"_silent{args.silent_share:g}" if args.silent_share else ""
    digest = pools_digest()
    bypkg = "_bypkg" if args.by_package else ""
    feats = args.features or (real.default_cache() / f"crnn_scenes_{args.train_scenes}_{args.val_scenes}_{args.seed}"
                                                     f"{silent}{bypkg}_{digest}.npz")
    if feats.is_file():
        d = np.load(feats)
        X, Y, Xv, Yv = d["X"], d["Y"], d["Xv"], d["Yv"]
    else:
        X, Y = scenes("train", args.train_scenes, args.seed + 1, args.jobs, args.silent_share,
                      by_package=args.by_package)
        Xv, Yv = scenes("validation", args.val_scenes, args.seed + 2, args.jobs, args.silent_share)
        save_arrays(feats, X=X, Y=Y, Xv=Xv, Yv=Yv)
    if args.silent_scenes:      # appended: cheap to make (no camera chain), a few seconds per hundred
        n_val = max(1, args.silent_scenes // 10)
        Xs, Ys = scenes("train", args.silent_scenes, args.seed + 3, args.jobs, 1.0, by_package=args.by_package)
        Xsv, Ysv = scenes("validation", n_val, args.seed + 4, args.jobs, 1.0)
        X, Y = np.concatenate([X, Xs]), np.concatenate([Y, Ys])
        Xv, Yv = np.concatenate([Xv, Xsv]), np.concatenate([Yv, Ysv])
    tag = "".join(f"_{k}{w:g}" for k, w in extra_weights.items() if w != EVENT_WEIGHTS[k])
    for seed in args.extra_seeds if args.extra_scenes else ():
        # the same clips, new mixtures and camera chains (and, with --extra-weights, other event shares)
        extra = feats.with_name(f"crnn_scenes_extra_{args.extra_scenes}_{seed}{tag}{bypkg}_{digest}.npz")
        if extra.is_file():
            d = np.load(extra)
            Xe, Ye = d["X"], d["Y"]
        else:
            Xe, Ye = scenes("train", args.extra_scenes, 1000 + seed, args.jobs, weights=extra_weights,
                            by_package=args.by_package)
            save_arrays(extra, X=Xe, Y=Ye)
        X, Y = np.concatenate([X, Xe]), np.concatenate([Y, Ye])
    log(f"data: {len(X)} train scenes, {len(Xv)} validation scenes of {SCENE_S:.0f} s, clips {digest} "
        f"({time.time() - t0:.0f} s to make)")
    model = build_model(args.arch, FE.n_mels, args.hidden, args.cell, context=args.context, channels=args.channels,
                        cell_clip=args.cell_clip, dropout=args.dropout)
    if args.init and args.init.suffix == ".npz":     # unfold with this data's normalization, as training fits it
        flat = X[: min(len(X), 2000)].astype(np.float32)
        load_exported(model, dict(np.load(args.init)), float(flat.mean()), float(flat.std() + 1e-3))
        del flat
    elif args.init:
        model.load_state_dict(torch.load(args.init))
    log(f"model {args.arch}: {cost(model, FE.n_mels)}")
    t1 = time.time()
    if args.epochs == 0:        # export only (e.g. the best checkpoint of a stopped run, given as --init)
        vl = evaluate_loss(model, Xv, Yv, class_pos_weight(Y, args.pos_weight_max, log))
    else:
        vl = train(model, X, Y, Xv, Yv, epochs=args.epochs, seed=args.seed, log=log, lr=args.lr, batch=args.batch,
                   checkpoint=args.out / "best_checkpoint.pt", pos_weight_max=args.pos_weight_max,
                   fit_norm=args.init is None, weight_decay=args.weight_decay,
                   augment=dict(zip(("max_shift", "masks", "max_width"), args.spec_augment))
                   if args.spec_augment else None)
    train_s = time.time() - t1
    log(f"trained in {train_s / 60:.1f} min, best validation loss {vl:.4f}")
    W = export_layers(model)
    # the streamed numpy reference must equal the batch PyTorch model (float64 vs float32: 1e-4)
    ref = StreamReference(W, args.arch, FE.n_mels, model.cell_clip)
    model.eval()        # no dropout
    x = Xv[0].astype(np.float32)
    with torch.no_grad():
        p_batch = torch.sigmoid(model(torch.tensor(x[None]))[0][0]).numpy()
    p_stream = np.stack([ref.step(f) for f in x])
    err = float(np.max(np.abs(p_batch - p_stream)))
    log(f"stream (numpy, frame by frame) vs batch (torch): max |dp| = {err:.2e}")
    assert err < 1e-4, err
    save_arrays(args.out / "weights.npz", **W)
    # whole validation scenes, consecutive frames: the context layer needs a real sequence
    save_arrays(args.out / "calibration.npy", calibration=Xv[:6].reshape(-1, FE.n_mels).astype(np.float16))
    meta = {"arch": args.arch, "cell": args.cell, "labels": list(LABELS), "frontend": FE.to_dict(), "hidden": args.hidden,
            "context_frames": model.context, "channels": model.conv[-1 if args.arch == "freqtime" else 0].out_channels,
            "cell_clip": model.cell_clip, **cost(model, FE.n_mels), "train_minutes": round(train_s / 60, 1),
            "epochs": args.epochs, "train_scenes": len(X), "val_loss": round(vl, 4), "seed": args.seed,
            "lr": args.lr, "dropout": args.dropout, "weight_decay": args.weight_decay,
            "spec_augment": args.spec_augment, "by_package": args.by_package, "batch": args.batch,
            "pos_weight_max": args.pos_weight_max, "silent_share": args.silent_share,
            "silent_scenes": args.silent_scenes, "extra_scenes": args.extra_scenes, "clips_digest": digest,
            "extra_seeds": args.extra_seeds if args.extra_scenes else [],
            "extra_weights": extra_weights if args.extra_scenes and extra_weights != EVENT_WEIGHTS else None,
            "init": str(args.init) if args.init else None}
    (args.out / "model.json").write_text(json.dumps(meta, indent=1) + "\n")
    (args.out / "train_log.txt").write_text("\n".join(log_lines) + "\n")
    torch.save(model.state_dict(), args.out / "state_dict.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
