#!/usr/bin/env python
"""Two checks of the real clips of scripts/fetch_real_audio.py's manifest:

1. identical clips (the same samples at 16 kHz) under several paths, and whether a copy crosses splits: a
   validation or test clip identical to a training clip was heard in training, whatever its package;
2. background clips that hold speech: every clip labelled background run through edgelstm's VAD (silero-vad's
   model, an independent speech detector); those with at least --min-speech seconds of speech are listed.  A
   background clip with speech teaches the tagger (train) or the calibration (validation: a speech event on it
   counts as a false event) that speech is background.  Needs the `vad` extra (silero-vad).

    python scripts/check_real_clips.py [--min-speech 0.5]

fetch_real_audio.py drops copies and voice recordings (>= VOICE_SECONDS of speech) when it writes the manifest
(its ``clean``); this script lists what is left, with a lower speech threshold, for a look by ear.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fetch_real_audio as real        # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-speech", type=float, default=0.5, help="seconds of speech that flag a clip")
    args = ap.parse_args()
    from edgelstm.audio.vad import VAD
    vad = VAD()
    cache = real.default_cache()
    rows = real.read_manifest(cache)
    groups = real.copies(rows, real.clip_hashes(cache, rows))
    print(f"{len(rows)} clips, {len(rows) - sum(len(g) - 1 for g in groups)} distinct; {len(groups)} groups of "
          f"identical clips; across splits:")
    print("| splits | label | paths |\n|---|---|---|")
    for g in groups:
        if len({r["split"] for r in g}) > 1:
            print(f"| {', '.join(sorted({r['split'] for r in g}))} | {', '.join(sorted({r['label'] for r in g}))} | "
                  + ", ".join(f"{r['package']}: {r['path']} @ {r['start_s']}" for r in g) + " |")
    for split in real.SPLIT_ORDER:
        print(f"{split}: {sum(r['split'] == split for g in groups for r in g[1:])} extra copies")
    print()
    rows = [r for r in rows if r["label"] == "background"]
    hits = real.flagged(vad, rows, real.load_clips(cache, rows), args.min_speech)
    print("| split | package | path | start s | speech s |\n|---|---|---|---|---|")
    for r, s in sorted(hits, key=lambda h: (h[0]["split"], h[0]["package"], h[0]["path"], float(h[0]["start_s"]))):
        print(f"| {r['split']} | {r['package']} | {r['path']} | {r['start_s']} | {s:.1f} |")
    for split in real.SPLIT_ORDER:
        n = sum(r["split"] == split for r in rows)
        k = sum(r["split"] == split for r, _ in hits)
        print(f"{split}: {k} of {n} background clips hold >= {args.min_speech} s of speech")
    return 0


if __name__ == "__main__":
    sys.exit(main())
