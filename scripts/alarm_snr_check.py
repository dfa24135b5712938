#!/usr/bin/env python
"""How loud a beep train or a steady tone must be over real ambience before a tagger calls it an alarm.

    python scripts/alarm_snr_check.py edgelstm/data/audio_tagger.elstm [--split validation] [--per-row 40]

Sine beep trains (0.5-4 kHz, 0.05-0.6 s on and 0.05-0.6 s off, the ranges of the training recipe's beep_train)
and steady tones, 2-5 s, over the split's ambiences (train_crnn_tagger.make_bed) at -5..+20 dB SNR, plain and
through the camera chain; 10 events per row.  Prints, per (kind, camera, SNR), the median over events of the
alarm probability's median while the event sounds, and how many events have that median above 0.5.  Needs the
recordings of fetch_real_audio.py.  Deterministic (seed 5).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_crnn_tagger as T     # noqa: E402  (scripts/ is not a package)

import edgelstm as el             # noqa: E402
from edgelstm.audio.features import LogMel  # noqa: E402

SNRS = (-5, 0, 5, 10, 15, 20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", choices=["train", "validation", "test"], default="validation")
    ap.add_argument("--per-row", type=int, default=10)
    args = ap.parse_args()
    model = el.load(args.model)
    alarm = T.LABELS.index("alarm")
    pools = T.Pools(args.split)
    rng = np.random.default_rng(5)
    sr, hop = T.SR, T.FE.hop_length
    rows = {}
    for i in range(args.per_row * 2 * 2 * len(SNRS)):
        kind = ("beep train", "tone")[i % 2]
        snr = SNRS[i // 2 % len(SNRS)]
        camera = i // (2 * len(SNRS)) % 2 == 1
        n = 8 * sr
        bed = T.make_bed(rng, pools, n) * 10 ** (rng.uniform(-45, -20) / 20)
        t = np.arange(int(rng.uniform(2, 5) * sr)) / sr
        ev = np.sin(2 * np.pi * rng.uniform(500, 4000) * t)
        on, off = rng.uniform(0.05, 0.6), rng.uniform(0.05, 0.6)
        if kind == "beep train":
            ev = ev * ((t % (on + off)) < on)
        ev = ev / np.sqrt(np.mean(ev ** 2)) * np.sqrt(np.mean(bed ** 2)) * 10 ** (snr / 20)
        mix = bed.copy()
        mix[sr:sr + ev.size] += ev
        y = T.camera(rng, mix) if camera else np.clip(mix, -1, 1)
        P = model.run(LogMel(T.FE).push(y).astype(np.float32))
        sounding = P[int(1.5 * sr) // hop:(sr + ev.size) // hop, alarm]    # from 0.5 s into the event
        rows.setdefault((kind, camera, snr), []).append(float(np.median(sounding)))
    print(f"{args.model} on {args.split} ambiences: median alarm probability (events above 0.5 of {args.per_row})")
    for (kind, camera, snr), v in sorted(rows.items()):
        v = np.array(v)
        print(f"  {kind:10s} {'camera' if camera else 'plain ':6s} {snr:+3d} dB  {np.median(v):.2f}  ({int(np.sum(v > 0.5))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
