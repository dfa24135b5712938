"""Deterministic recipe for the FIRST audio tagger (synthetic data only; bundled until issue 19), now kept in
scripts/lstm_tagger_out/ as a baseline: `edgelstm tag` bundles the CRNN of scripts/train_crnn_tagger.py.
Its generators are reused by that recipe (synthesis for what has no recording) and the sample clips it picked
(edgelstm/data/sample_{0,1,2}.wav) stay bundled.

    python scripts/train_audio_tagger.py            # generate data, train float LSTM, quantize, score
    python scripts/train_audio_tagger.py --quantize-only   # re-run only the int8 step (after kernel changes)

Needs torch==2.13.0 (CPU) and the espeak-ng program (Debian: apt-get install espeak-ng) for real synthesized
speech.  Training data is generated here (not committed): speech from espeak-ng voices/languages, alarms
(sirens, beeps, phone rings), knocks, glass-like crashes, harmonic music, mixed over noise/hum at random SNR
with random room reverb and level.  The held-out set uses voices, languages and generator families that
training never sees (see HELD_OUT).  Commits: the float model, calibration features, the int8 model, clips.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import edgelstm as el
from edgelstm.audio.features import FrontEnd, LogMel
from edgelstm.audio.io import write_wav, read_wav
from edgelstm.audio.tagger import AudioConfig, DEFAULT_LABELS, score_frames

DATA = Path(__file__).resolve().parents[1] / "edgelstm" / "data"       # the sample clips
OUT = Path(__file__).resolve().parent / "lstm_tagger_out"               # the model, float source, calibration
FE = FrontEnd()
SR = FE.sr
CLIP_S = 4.0
LABELS = DEFAULT_LABELS  # speech, alarm, knock, glass, music

TRAIN_VOICES = [("en", v) for v in ("m1", "m2", "f1", "f2")] + [("de", "m3"), ("fr", "f3"), ("es", "m1"),
                                                                   ("it", "f2"), ("pt", "m2"), ("ru", "f1")]
HELD_OUT = {"voices": [("nl", "m4"), ("pl", "f4"), ("sv", "m7"), ("cs", "f5")],
            "alarm": ["smoke_t3", "chirp_hop"], "knock": ["slam"], "glass": ["shards"], "music": ["pluck"]}
TRAIN_FAMILIES = {"alarm": ["siren", "beep", "ring"], "knock": ["knock"], "glass": ["ping"], "music": ["additive"]}


def _syllables(rng, n):
    c, v = "bdfgklmnprstvz", "aeiou"
    return " ".join("".join(rng.choice(list(c)) + rng.choice(list(v)) for _ in range(rng.integers(1, 4)))
                    for _ in range(n))


def speech(rng, voice, dur):
    lang, var = voice
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-v", f"{lang}+{var}", "-s", str(int(rng.integers(130, 200))),
                        "-p", str(int(rng.integers(20, 80))), "-w", out, _syllables(rng, int(rng.integers(4, 10)))],
                       check=True, capture_output=True)
        y = np.concatenate(list(read_wav(out, sr=SR)))
    return y[: int(dur * SR)]


def tone_env(n, a=0.005, r=0.01):
    e = np.ones(n)
    k, m = min(n, max(1, int(a * SR))), min(n, max(1, int(r * SR)))
    e[:k] = np.linspace(0, 1, k)
    e[-m:] = np.minimum(e[-m:], np.linspace(1, 0, m))
    return e


def harmonics(f_inst, n_h, rng, decay=0.6):
    ph = 2 * np.pi * np.cumsum(f_inst) / SR
    y = np.zeros_like(f_inst)
    for h in range(1, n_h + 1):
        y += decay ** (h - 1) * np.sin(h * ph + rng.uniform(0, 6.28)) * (h * f_inst < SR / 2 - 200)
    return y


def alarm(rng, fam, dur):
    n = int(dur * SR)
    t = np.arange(n) / SR
    if fam == "siren":
        lo, hi, rate = rng.uniform(500, 900), rng.uniform(1200, 1800), rng.uniform(0.3, 4)
        f = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
        return harmonics(f, 4, rng, 0.5)
    if fam == "beep":
        f0, on, period = rng.uniform(800, 3500), rng.uniform(0.08, 0.3), rng.uniform(0.2, 0.8)
        gate = ((t % period) < on).astype(float)
        return harmonics(np.full(n, f0), int(rng.integers(1, 4)), rng, 0.3) * gate
    if fam == "ring":
        f1, f2 = rng.uniform(400, 1100), rng.uniform(1100, 1800)
        gate = ((t % 3.0) < rng.uniform(0.8, 2.0)).astype(float) * (np.sin(2 * np.pi * 20 * t) > 0)
        return (np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t)) * 0.5 * gate
    if fam == "smoke_t3":  # held out: 3 kHz piezo, temporal-3 pattern
        f0 = rng.uniform(2900, 3300)
        pat = t % 4.0
        gate = (((pat < 0.5) | ((pat > 1.0) & (pat < 1.5)) | ((pat > 2.0) & (pat < 2.5)))).astype(float)
        return harmonics(np.full(n, f0), 2, rng, 0.2) * gate
    if fam == "chirp_hop":  # held out: car-alarm style hopping tones
        step = rng.uniform(0.05, 0.15)
        f = rng.uniform(600, 2500, size=int(dur / step) + 1)[(t / step).astype(int)]
        return harmonics(f, 3, rng, 0.4)
    raise ValueError(fam)


def modal(rng, freqs, decays, n):
    t = np.arange(n) / SR
    y = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) * np.exp(-t / d) for f, d in zip(freqs, decays))
    return y + rng.standard_normal(n) * np.exp(-t / 0.004) * 2


def knock(rng, fam, dur):
    n = int(dur * SR)
    y = np.zeros(n)
    if fam == "knock":
        k, gap, t0 = int(rng.integers(2, 5)), rng.uniform(0.12, 0.3), rng.uniform(0, 0.2)
        for i in range(k):
            a = int((t0 + i * gap) * SR)
            if a >= n:
                break
            m = min(n - a, int(0.15 * SR))
            y[a:a + m] += modal(rng, rng.uniform(120, 900, 3), rng.uniform(0.01, 0.05, 3), m)[:m]
    else:  # held out: one slam with a long low tail
        m = min(n, int(0.6 * SR))
        y[:m] = modal(rng, rng.uniform(50, 250, 4), rng.uniform(0.05, 0.2, 4), m)
    return y


def glass(rng, fam, dur):
    n = int(dur * SR)
    y = np.zeros(n)
    pieces = int(rng.integers(1, 4)) if fam == "ping" else int(rng.integers(15, 40))
    span = 0.3 if fam == "ping" else 0.8
    for _ in range(pieces):
        a = int(rng.uniform(0, span) * SR)
        m = min(n - a, int(0.4 * SR))
        if m <= 0:
            continue
        fr = rng.uniform(2500, 7500, int(rng.integers(3, 7)))
        y[a:a + m] += modal(rng, fr, rng.uniform(0.02, 0.15, fr.size), m)[:m] * rng.uniform(0.3, 1)
    return y


def music(rng, fam, dur):
    n = int(dur * SR)
    y = np.zeros(n)
    t = 0.0
    root = rng.uniform(110, 330)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    while t < dur:
        nd = rng.choice([0.125, 0.25, 0.5])
        a, m = int(t * SR), min(n - int(t * SR), int(nd * SR))
        if m <= 0:
            break
        for semi in rng.choice(scale, size=int(rng.integers(1, 4)), replace=False):
            f = root * 2 ** (semi / 12)
            if fam == "additive":
                note = harmonics(np.full(m, f), 8, rng, rng.uniform(0.4, 0.8)) * tone_env(m, 0.01, 0.05)
            else:  # held out: Karplus-Strong plucked string
                p = max(2, int(SR / f))
                buf = rng.uniform(-1, 1, p)
                blocks = []
                for _ in range(m // p + 1):  # one period per step (vectorized Karplus-Strong)
                    blocks.append(buf)
                    buf = 0.996 * 0.5 * (buf + np.roll(buf, -1))
                note = np.concatenate(blocks)[:m]
            y[a:a + m] += note
        t += nd
    return y


def noise(rng, n):
    kind = rng.integers(0, 4)
    w = rng.standard_normal(n)
    if kind == 1:  # pink-ish
        spec = np.fft.rfft(w) / np.sqrt(np.arange(1, n // 2 + 2))
        w = np.fft.irfft(spec, n)
    elif kind == 2:  # brown
        w = np.cumsum(w)
        w -= np.convolve(w, np.ones(400) / 400, mode="same")
    elif kind == 3:  # mains hum + hiss
        f = rng.choice([50.0, 60.0])
        t = np.arange(n) / SR
        w = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 6)) + 0.1 * w
    return w / (np.std(w) + 1e-12)


def reverb(rng, y):
    rt = rng.uniform(0.05, 0.6)
    m = int(rt * SR)
    ir = rng.standard_normal(m) * np.exp(-6.9 * np.arange(m) / m)
    ir[0] = 1.0
    ir /= np.sqrt(np.sum(ir ** 2))
    L = y.size + m
    nfft = 1 << (L - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(y, nfft) * np.fft.rfft(ir, nfft), nfft)[: y.size]


def frame_activity(y, n_frames):
    """Per-frame label: the event's own frame energy within 25 dB of its peak."""
    e = np.array([np.sum(y[t * FE.hop_length: t * FE.hop_length + FE.n_fft] ** 2) for t in range(n_frames)])
    return e > e.max() * 10 ** (-2.5) if e.max() > 0 else np.zeros(n_frames, bool)


def make_clip(rng, held_out: bool, dur=CLIP_S):
    n = int(dur * SR)
    n_frames = 1 + (n - FE.n_fft) // FE.hop_length
    mix = np.zeros(n)
    lab = np.zeros((n_frames, len(LABELS)), bool)
    n_ev = int(rng.choice([0, 1, 1, 2, 2, 3]))
    for _ in range(n_ev):
        c = int(rng.integers(0, len(LABELS)))
        name = LABELS[c]
        edur = rng.uniform(0.5, 2.5)
        if name == "speech":
            voices = HELD_OUT["voices"] if held_out else TRAIN_VOICES
            ev = speech(rng, voices[int(rng.integers(0, len(voices)))], edur)
        else:
            fams = HELD_OUT[name] if held_out else TRAIN_FAMILIES[name]
            fam = fams[int(rng.integers(0, len(fams)))]
            ev = {"alarm": alarm, "knock": knock, "glass": glass, "music": music}[name](rng, fam, edur)
        ev = ev / (np.sqrt(np.mean(ev ** 2)) + 1e-12) * 10 ** (rng.uniform(-30, -8) / 20)
        a = int(rng.integers(0, max(1, n - ev.size)))
        ev = reverb(rng, ev)[: n - a]
        full = np.zeros(n)
        full[a:a + ev.size] = ev
        lab[:, c] |= frame_activity(full, n_frames)
        mix += full
    level = 10 ** (rng.uniform(-70, -25) / 20)
    mix += noise(rng, n) * level
    mix = np.clip(mix, -1, 1)
    return mix, lab


def dataset(seed, count, held_out):
    rng = np.random.default_rng(seed)
    X, Y, clips = [], [], []
    for i in range(count):
        y, lab = make_clip(rng, held_out)
        X.append(LogMel(FE).push(y))
        Y.append(lab)
        clips.append(y)
        if (i + 1) % 100 == 0:
            print(f"  {'held-out' if held_out else 'train'} clips {i + 1}/{count}", file=sys.stderr)
    return np.stack(X), np.stack(Y), clips


def train(X, Y, *, hidden=48, epochs=25, seed=0):
    import torch
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    mean, std = X.reshape(-1, X.shape[-1]).mean(0), X.reshape(-1, X.shape[-1]).std(0) + 1e-3
    lstm = torch.nn.LSTM(X.shape[-1], hidden, batch_first=True)
    lin = torch.nn.Linear(hidden, Y.shape[-1])
    opt = torch.optim.Adam(list(lstm.parameters()) + list(lin.parameters()), lr=3e-3)
    Xt = torch.tensor((X - mean) / std, dtype=torch.float32)
    Yt = torch.tensor(Y, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    pos_weight = torch.full((Y.shape[-1],), 2.0)  # events are rarer than background: favour recall
    for ep in range(epochs):
        perm = torch.randperm(Xt.shape[0], generator=g)
        tot = 0.0
        for b in range(0, Xt.shape[0], 16):
            idx = perm[b:b + 16]
            out = lin(lstm(Xt[idx])[0])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, Yt[idx], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss) * idx.numel()
        print(f"  epoch {ep + 1}/{epochs} loss {tot / Xt.shape[0]:.4f}", file=sys.stderr)
    # fold the feature normalization into the first layer: the model takes raw log-mel dB
    with torch.no_grad():
        w = lstm.weight_ih_l0 / torch.tensor(std, dtype=torch.float32)
        lstm.bias_ih_l0 -= w @ torch.tensor(mean, dtype=torch.float32)
        lstm.weight_ih_l0.copy_(w)
    from edgelstm.export.from_torch import from_torch
    return from_torch(torch.nn.Sequential(lstm, lin, torch.nn.Sigmoid()))


def report(title, model, X, Y):
    P = model.run(X)
    print(f"{title}\n{score_frames(P >= 0.5, Y, LABELS)}")
    return P


def quantize_step(X_hold=None, Y_hold=None):
    f32 = el.load(OUT / "audio_tagger_f32.elstm")
    calib = np.load(OUT / "audio_calibration.npy").astype(np.float32)
    q = el.quantize(f32, calibration=calib, progress=False)
    el.save(q, OUT / "audio_tagger.elstm", audio=f32.audio)
    print(q.fidelity)
    if X_hold is not None:
        pf = report("float32, held-out", f32, X_hold, Y_hold)
        pq = report("int8, held-out", q, X_hold, Y_hold)
        print(f"int8 vs float frame decisions equal: {100 * np.mean((pf >= .5) == (pq >= .5)):.2f}% of frame x class")
    print(f"int8 model {os.path.getsize(OUT / 'audio_tagger.elstm')} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantize-only", action="store_true")
    ap.add_argument("--evaluate", action="store_true",
                    help="score the bundled float and int8 models on a freshly generated held-out set (no training)")
    ap.add_argument("--train-clips", type=int, default=360)
    ap.add_argument("--held-out-clips", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    if args.quantize_only:
        quantize_step()
        return
    if args.evaluate:
        Xh, Yh, _ = dataset(2, args.held_out_clips, held_out=True)
        pf = report("float32, held-out", el.load(OUT / "audio_tagger_f32.elstm"), Xh, Yh)
        pq = report("int8, held-out", el.load(OUT / "audio_tagger.elstm"), Xh, Yh)
        print(f"int8 vs float frame decisions equal: {100 * np.mean((pf >= .5) == (pq >= .5)):.2f}% of frame x class")
        return
    print("generating data", file=sys.stderr)
    X, Y, _ = dataset(1, args.train_clips, held_out=False)
    Xh, Yh, clips = dataset(2, args.held_out_clips, held_out=True)
    f32 = train(X, Y, epochs=args.epochs)
    OUT.mkdir(exist_ok=True)
    el.save(f32, OUT / "audio_tagger_f32.elstm", audio=AudioConfig(frontend=FE, labels=list(LABELS)))
    f32 = el.load(OUT / "audio_tagger_f32.elstm")
    report("float32, train", f32, X, Y)
    np.save(OUT / "audio_calibration.npy", X[:16].astype(np.float16))
    quantize_step(Xh, Yh)
    # sample clips: held-out clips (unseen generators/voices) with the most classes present
    order = np.argsort([-(Yh[i].any(0).sum()) for i in range(len(clips))], kind="stable")[:3]
    for k, i in enumerate(order):
        write_wav(DATA / f"sample_{k}.wav", clips[i], sr=SR)
        print(f"sample_{k}.wav: {[LABELS[j] for j in np.flatnonzero(Yh[i].any(0))]}")


if __name__ == "__main__":
    main()
