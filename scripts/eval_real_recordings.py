#!/usr/bin/env python
"""The bundled audio tagger on real recordings it never saw: Debian's alsa-utils voice clips and the
freedesktop sound theme's alert sounds.

    apt-get install alsa-utils sound-theme-freedesktop        # real recordings, shipped as system sounds
    python scripts/eval_real_recordings.py [--json OUT.json]

alsa-utils' /usr/share/sounds/alsa/*.wav are a human voice saying channel names ("Front Center", ...), 48 kHz,
read with edgelstm's own WAV reader and resampler; Noise.wav is background (no event expected). From the
freedesktop theme (Ogg Vorbis, decoded with soundfile), the ringing and alarm sounds are labelled alarm; the
other theme sounds are UI blips with no class of ours and are not scored. A clip counts as detected when the
tagger emits an event of its class; every other event on a labelled clip is a false alarm.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ALSA = Path("/usr/share/sounds/alsa")
THEME = Path("/usr/share/sounds/freedesktop/stereo")
SPEECH = [f"{a}_{b}.wav" for a, b in [("Front", "Center"), ("Front", "Left"), ("Front", "Right"),
                                      ("Rear", "Center"), ("Rear", "Left"), ("Rear", "Right"),
                                      ("Side", "Left"), ("Side", "Right")]]
ALARMS = ["alarm-clock-elapsed.oga", "phone-incoming-call.oga", "phone-outgoing-calling.oga",
          "phone-outgoing-busy.oga", "bell.oga"]
PAD_SECONDS = 0.5   # silence around each clip, so an event can open and close inside it


def clips() -> list[tuple[Path, str | None]]:
    """(path, expected class or None for background) for every recording that is installed."""
    out = [(ALSA / n, "speech") for n in SPEECH] + [(ALSA / "Noise.wav", None)] + [(THEME / n, "alarm")
                                                                                  for n in ALARMS]
    return [(p, label) for p, label in out if p.is_file()]


def read(path: Path, sr: int) -> np.ndarray:
    from edgelstm.audio import read_wav
    if path.suffix == ".wav":
        return np.concatenate(list(read_wav(path, sr=sr)))
    import librosa        # dev extra: Ogg Vorbis through soundfile, then librosa's resampler
    import soundfile
    y, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    return librosa.resample(y.mean(axis=1), orig_sr=rate, target_sr=sr)


def evaluate() -> list[dict]:
    from edgelstm.audio.tagger import Tagger
    tagger = Tagger()
    sr = tagger.frontend.sr
    rows = []
    for path, expected in clips():
        pad = np.zeros(int(PAD_SECONDS * sr))
        summary = tagger.tag_array(np.concatenate([pad, read(path, sr), pad]), sr=sr)
        # a model with an explicit background class reports it as an event: not a sound event of a clip
        labels = sorted({e.label for e in summary.events} - {"background"})
        rows.append({"clip": path.name, "expected": expected or "background", "events": labels,
                     "detected": expected in labels if expected else not labels,
                     "false_alarms": [label for label in labels if label != expected]})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| clip | expected | events | detected | false alarms |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clip']} | {r['expected']} | {', '.join(r['events']) or '-'} | "
                     f"{'yes' if r['detected'] else 'no'} | {', '.join(r['false_alarms']) or '-'} |")
    by = {}
    for r in rows:
        by.setdefault(r["expected"], []).append(r["detected"])
    lines += [""] + [f"- {k}: detected in {sum(v)} of {len(v)} clips" for k, v in by.items()]
    lines.append(f"- clips with a false alarm: {sum(bool(r['false_alarms']) for r in rows)} of {len(rows)}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args()
    if not clips():
        print("no recordings installed: apt-get install alsa-utils sound-theme-freedesktop", file=sys.stderr)
        return 1
    rows = evaluate()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
