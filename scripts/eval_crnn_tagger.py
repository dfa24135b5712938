#!/usr/bin/env python
"""Calibrate an edgelstm audio tagger's event settings on the VALIDATION packages, then score it on the TEST
packages (issue 19): the model runs exactly as `edgelstm tag` runs it (edgelstm.audio.Tagger: the streaming
log-mel, the model's own stream, 1 s chunks) and events come from the runtime's own EventTracker.

    python scripts/eval_crnn_tagger.py --run scripts/crnn_out [--calibrate] [--baseline edgelstm/data/audio_tagger.elstm]

RUN/tagger_f32.elstm and RUN/tagger_int8.elstm (scripts/convert_crnn_tagger.py) are scored with the same
settings; --calibrate first chooses them on the validation packages with the int8 model (--calibrate-on) and writes
RUN/thresholds.json (convert again to store them in the .elstm files).  --baseline scores other taggers (e.g.
today's bundled one) on the same test streams, each with the settings stored in its own file.

Streams (real recordings only; see scripts/fetch_real_audio.py for the packages):
- foreground: the split's foreground clips (validation: --per-class per class, drawn package by package; test:
  every clip unless --test-per-class; long clips cut to 10 s), each
  over 1.5..3 s of the split's own ambience on both sides at +5..+20 dB SNR (test: also -5..+5 dB), all
  concatenated into one stream; reference events are the clips' activity (the training labeller: within 30 dB
  of the clip's peak and not far under the bed, short gaps bridged);
- background: all of the split's ambience recordings, concatenated, each at a random level; and the same
  through the camera chain of the training recipe.
Metrics: event-based F1 per class (onset collar 200 ms, offset collar max(200 ms, 20% of the reference length)),
segment-based F1 (1 s segments), foreground events per minute on the background streams, the dominant label of
each foreground clip (the class whose events cover most of it), beeps and tones (1 kHz beep trains 0.3 s and 0.1 s
on/off and a steady 1 kHz tone, clean and over the test ambience: an alarm event?), and the README's check
(alsa-utils voices and Noise.wav, freedesktop alarm sounds; never trained on).

Calibration: per class, a grid of onset, offset, min_gap, smoothing, min_duration, onset backtracking (an
event starts where its rise began) and lead (reported starts move earlier by the model's detection delay); each
setting's events on
the validation foreground stream (score: the mean of event F1, segment F1 and clip recall; event F1 alone picks
settings that never fire for classes whose events it cannot segment within the collars, e.g. whole pieces of
music; clip recall, the share of the class's clips an event of it overlaps, keeps one-word clips in view, which
the dominant label counts; the validation clips are drawn package by package) and on every validation background
stream (false events per minute, the worst stream counts); then one setting per class that maximizes the
weighted sum of those scores with the summed false-event rate <= --target-fpm.  With --alarm-probes clean only
alarm settings that raise an alarm event on every clean beep/tone probe, with the int8 and the float model, take
part (--alarm-probes all: also on those built over validation ambience).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_crnn_tagger as T             # noqa: E402

import edgelstm as el                      # noqa: E402
from edgelstm.audio import AudioConfig, EventTracker, Tagger  # noqa: E402

LABELS, FG, SR = T.LABELS, T.FG, T.SR
FE = T.FE
TAIL_S = (FE.n_fft - FE.hop_length) / SR     # an event ends where its last frame's samples end
# weights of the classes in the calibration objective: the goals name speech, alarm and music; the
# validation packages hold 33 knocks and one glass break, too few to steer by
CLASS_WEIGHT = {"speech": 1.0, "alarm": 1.0, "knock": 0.5, "glass": 0.25, "music": 1.0}
# a class with fewer validation reference events than this gets its quietest setting: one glass break (the
# validation packages' only one) chose a setting that fired ~1/min on the test ambiences
MIN_REFERENCE_EVENTS = 10
# a class whose best validation score at any false-event rate is under this gets its quietest setting too: the
# model has not learned it, so a setting bought with false alarms buys nothing (run11's knock scored 0.07 and
# its chosen setting fired on a freedesktop phone tone, the README check: that failure suggested this rule)
MIN_VALIDATION_SCORE = 0.1
PROBS_CACHE = T.real.default_cache() / "probs"


# ------------------------------------------------------------------------------------ streams

def runs(mask):
    """[(first, last_exclusive)] of True runs."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def pick_clips(pools: T.Pools, rng, label: str, count: int | None, by_package: bool) -> list:
    """Indices of at most count clips of a label (None: all of them), in random order; by_package: spread over
    its packages in turn (one clip of each package, then a second of each, ...), so that no package outweighs
    the others."""
    if not by_package:
        return list(rng.permutation(len(pools.by_label[label]))[:count])
    groups = [[g[i] for i in rng.permutation(len(g))] for g in pools.by_package[label]]
    groups = [groups[i] for i in rng.permutation(len(groups))]
    rounds = max((len(g) for g in groups), default=0)
    return [g[k] for k in range(rounds) for g in groups if k < len(g)][:count]


def fg_stream(pools: T.Pools, rng, per_class: int | None, snr=(5.0, 20.0), by_package=False):
    """(samples, reference events [(label, start, end)], clip spans [(label, start, end)])."""
    beds = pools.by_label["background"]
    items = []
    for c in FG:
        items += [(c, pools.by_label[c][i]) for i in pick_clips(pools, rng, c, per_class, by_package)]
    order = rng.permutation(len(items))
    pieces, refs, spans, t = [], [], [], 0
    for k in order:
        label, clip = items[k]
        clip = clip[: int(10 * SR)].astype(np.float64)
        pre, post = int(rng.uniform(1.5, 3.0) * SR), int(rng.uniform(1.5, 3.0) * SR)
        n = pre + clip.size + post
        bed = T.loop_to(rng, beds[int(rng.integers(0, len(beds)))], n)
        bed = bed / (np.sqrt(np.mean(bed ** 2)) + 1e-12)
        ev = np.zeros(n)
        ev[pre:pre + clip.size] = clip / (np.sqrt(np.mean(clip ** 2)) + 1e-12) * 10 ** (rng.uniform(*snr) / 20)
        seg = bed + ev
        seg = seg / (np.sqrt(np.mean(seg ** 2)) + 1e-12) * 10 ** (rng.uniform(-35, -20) / 20)
        nf = 1 + (n - FE.n_fft) // FE.hop_length     # reference: the event alone, against its bed
        act = T.activity(ev, T.frame_energy(bed, nf), label, nf)
        for a, b in runs(act):
            refs.append((label, (t + a * FE.hop_length) / SR, (t + b * FE.hop_length) / SR + TAIL_S))
        spans.append((label, (t + pre) / SR, (t + pre + clip.size) / SR))
        pieces.append(np.clip(seg, -1, 1))
        t += n
    return np.concatenate(pieces), refs, spans


def bg_stream(pools: T.Pools, rng, camera=False):
    out = []
    for y in pools.by_label["background"]:
        y = y.astype(np.float64)
        y = y / (np.sqrt(np.mean(y ** 2)) + 1e-12) * 10 ** (rng.uniform(-50, -20) / 20)
        out.append(T.camera(rng, y) if camera else np.clip(y, -1, 1))
    return np.concatenate(out)


STREAMS = {"validation": {"fg": (5.0, 20.0), "bg": False, "bg_camera": True},
           "test": {"fg": (5.0, 20.0), "fg_low_snr": (-5.0, 5.0), "bg": False, "bg_camera": True}}
# validation foreground clips are drawn package by package: uniform draws made it 75% gcin-voice's Mandarin
# syllables, and settings and models chosen there ranked the other way on test's prompts and dialogue.  Test
# draws stay uniform over clips, as every earlier run was scored.
BY_PACKAGE = {"validation": True, "test": False}


def split_streams(split: str, seed: int, per_class: int | None) -> dict:
    """name -> {"y": samples, "refs", "spans"} (background streams: no refs); deterministic per (split, seed)."""
    pools = T.Pools(split)
    out = {}
    for k, (name, arg) in enumerate(STREAMS[split].items()):
        rng = np.random.default_rng([seed, k, split == "test"])
        if name.startswith("fg"):
            y, refs, spans = fg_stream(pools, rng, per_class, snr=arg, by_package=BY_PACKAGE[split])
            out[name] = {"y": y, "refs": refs, "spans": spans}
        else:
            out[name] = {"y": bg_stream(pools, rng, camera=arg)}
    out["_pools"] = pools
    return out


def probe_signals(pools: T.Pools, seed: int) -> dict:
    """The beep/tone check: name -> samples (synthetic by the issue's definition, over the split's real
    ambience: test for the report, validation for the calibration's alarm requirement)."""
    rng = np.random.default_rng([seed, 99])
    t = np.arange(int(6 * SR)) / SR
    tone = np.sin(2 * np.pi * 1000 * t)
    signals = {"beep 0.3 s on/off": tone * ((t % 0.6) < 0.3), "beep 0.1 s on/off": tone * ((t % 0.2) < 0.1),
               "steady 1 kHz tone": tone}
    beds = pools.by_label["background"]
    out = {}
    for name, sig in signals.items():
        for cond, snr in (("clean", None), ("over ambience, 10 dB SNR", 10.0)):
            n = sig.size + 2 * SR
            x = np.zeros(n)
            x[SR:SR + sig.size] = sig * 0.1
            if snr is not None:
                bed = T.loop_to(rng, beds[int(rng.integers(0, len(beds)))], n)
                bed = bed / (np.sqrt(np.mean(bed ** 2)) + 1e-12) * np.sqrt(np.mean((sig * 0.1) ** 2)) * 10 ** (-snr / 20)
                x = x + bed
            out[f"{name}, {cond}"] = np.clip(x, -1, 1)
    return out


def readme_clips() -> list:
    """[(clip name, expected label or None, samples)]: the README's real-recording check (alsa-utils,
    sound-theme-freedesktop; never trained on), fetched with apt-get download + dpkg -x into the cache."""
    import eval_real_recordings as E
    real = T.real
    cache = real.default_cache()
    roots = {p: real.fetch(p, cache)[0] for p in real.NEVER_TRAIN}
    items = [(roots["alsa-utils"] / "usr/share/sounds/alsa" / n, "speech") for n in E.SPEECH]
    items += [(roots["alsa-utils"] / "usr/share/sounds/alsa/Noise.wav", None)]
    items += [(roots["sound-theme-freedesktop"] / "usr/share/sounds/freedesktop/stereo" / n, "alarm") for n in E.ALARMS]
    pad = np.zeros(int(E.PAD_SECONDS * SR))
    return [(p.name, exp, np.concatenate([pad, E.read(p, SR), pad])) for p, exp in items if p.is_file()]


# ------------------------------------------------------------------------------------ model outputs

def probabilities(model_path: Path, name: str, y: np.ndarray) -> np.ndarray:
    """(T, classes) probabilities of the model on samples y, exactly as `edgelstm tag` computes them (Tagger:
    streaming log-mel, the model's stream, 1 s chunks); cached by model file + signal contents."""
    h = hashlib.sha1(Path(model_path).read_bytes())
    h.update(np.ascontiguousarray(y, np.float64).tobytes())
    key = PROBS_CACHE / f"{h.hexdigest()[:20]}.npy"
    if key.is_file():
        return np.load(key)
    tagger = Tagger(model_path)
    out = []
    chunks = (y[i:i + SR] for i in range(0, y.size, SR))
    for _ in tagger.stream(chunks, probabilities=out):
        pass
    P = np.concatenate(out).astype(np.float32)
    PROBS_CACHE.mkdir(parents=True, exist_ok=True)
    T.save_arrays(key, P=P)
    return P


def track(P: np.ndarray, cfg: AudioConfig) -> dict:
    """label -> [(start s, end s)]: the runtime's EventTracker on these probabilities, then flushed."""
    tr = EventTracker(cfg)
    out = {c: [] for c in cfg.labels}
    for e in tr.update(P) + tr.flush():
        out[e.label].append((e.start, e.end))
    return out


# ------------------------------------------------------------------------------------ metrics

def of_class(items, name: str) -> list:
    """[(start, end)] of the (label, start, end) items (reference events, clip spans) with this label."""
    return [(a, b) for lab, a, b in items if lab == name]


def event_f1(est, ref):
    """(tp, fp, fn): greedy one-to-one matching, onset collar 0.2 s, offset collar max(0.2 s, 20%)."""
    used = np.zeros(len(est), bool)
    tp = 0
    est_on = np.array([e[0] for e in est]) if est else np.zeros(0)
    for r0, r1 in ref:
        collar = max(0.2, 0.2 * (r1 - r0))
        cand = np.flatnonzero(~used & (np.abs(est_on - r0) <= 0.2))
        for i in cand:
            if abs(est[i][1] - r1) <= collar:
                used[i] = True
                tp += 1
                break
    return tp, len(est) - tp, len(ref) - tp


def segment_counts(est, ref, total_s, seg=1.0):
    n = int(np.ceil(total_s / seg))

    def grid(evs):
        g = np.zeros(n, bool)
        for a, b in evs:
            g[int(a // seg):min(n, int(np.ceil(b / seg)))] = True
        return g
    e, r = grid(est), grid(ref)
    return int(np.sum(e & r)), int(np.sum(e & ~r)), int(np.sum(~e & r))


def f1(tp, fp, fn):
    return 2 * tp / max(1, 2 * tp + fp + fn)


def score(evs: dict, refs, spans, total_s):
    """Per-class event / segment F1 and the dominant label, for the classes the model has."""
    rows = {}
    classes = [c for c in FG if c in evs]
    for name in classes:
        ref = of_class(refs, name)
        e = event_f1(evs[name], ref)
        s = segment_counts(evs[name], ref, total_s)
        rows[name] = {"event_f1": round(f1(*e), 3), "event_tp_fp_fn": list(e),
                      "segment_f1": round(f1(*s), 3), "segment_tp_fp_fn": list(s), "reference_events": len(ref)}
    correct = {c: [0, 0] for c in FG}
    for label, a, b in spans:
        cover = {c: sum(max(0.0, min(b, e1) - max(a, e0)) for e0, e1 in evs[c]) for c in classes}
        top = max(cover, key=cover.get)
        correct[label][0] += int(cover[top] > 0 and top == label)
        correct[label][1] += 1
    dom = {c: round(k / max(1, n), 3) for c, (k, n) in correct.items()}
    allk = sum(k for k, _ in correct.values()) / max(1, sum(n for _, n in correct.values()))
    return rows, dom, round(allk, 3)


def false_events(evs: dict, minutes: float):
    n = {c: len(evs[c]) for c in FG if c in evs}
    return {"per_minute": round(sum(n.values()) / minutes, 3), "by_class": n, "minutes": round(minutes, 1)}


# ------------------------------------------------------------------------------------ calibration

ONSETS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98]
OFF_RATIOS = [0.5, 0.7, 0.9]
MIN_GAPS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0]
SMOOTHINGS = [0.0, 0.05, 0.1, 0.2, 0.4]
MIN_DURS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 3.0, 4.0]
BACKTRACKS = [0, 1]
# the model hears a start late (run12 on test: speech and music events start a median 0.2 s after their
# references, against a 0.2 s onset collar), so reported starts may move earlier by a calibrated lead
LEADS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8]
# the grid run4's bundled settings were chosen on (--run4-grid reproduces its thresholds.json)
RUN4_GRID = {"smoothing": [0.0, 0.05, 0.1, 0.2], "min_gap": [0.0, 0.1, 0.2, 0.3, 0.5, 0.8], "backtrack": [0],
             "min_duration": [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0], "lead": [0.0]}
# thresholds.json -> AudioConfig (lead: absent from settings calibrated before it existed, i.e. 0)
SETTINGS = ("onset", "offset", "min_duration", "min_gap", "smoothing", "backtrack", "lead")


def clip_recall(est, spans) -> float:
    """The share of clip spans [(start, end)] that some event [(start, end)] overlaps."""
    return sum(any(e0 < b and e1 > a for e0, e1 in est) for a, b in spans) / max(1, len(spans))


@njit(cache=True)
def _class_counts(on, off, ref_on, ref_off, clip_a, clip_b, total_s, seg):
    """event_f1, segment_counts and the clip_recall numerator in one compiled pass, with the same rules and
    float operations (the calibration grid scores ~10^6 event lists; tests check it against those three)."""
    used = np.zeros(on.size, np.bool_)
    etp = 0
    for j in range(ref_on.size):
        collar = max(0.2, 0.2 * (ref_off[j] - ref_on[j]))
        for i in range(on.size):
            if not used[i] and abs(on[i] - ref_on[j]) <= 0.2 and abs(off[i] - ref_off[j]) <= collar:
                used[i] = True
                etp += 1
                break
    n = int(np.ceil(total_s / seg))
    ge = np.zeros(n, np.bool_)
    gr = np.zeros(n, np.bool_)
    for i in range(on.size):
        for k in range(int(on[i] // seg), min(n, int(np.ceil(off[i] / seg)))):
            ge[k] = True
    for j in range(ref_on.size):
        for k in range(int(ref_on[j] // seg), min(n, int(np.ceil(ref_off[j] / seg)))):
            gr[k] = True
    stp = sfp = sfn = 0
    for k in range(n):
        stp += ge[k] and gr[k]
        sfp += ge[k] and not gr[k]
        sfn += gr[k] and not ge[k]
    hit = 0
    for j in range(clip_a.size):
        for i in range(on.size):
            if on[i] < clip_b[j] and off[i] > clip_a[j]:
                hit += 1
                break
    return etp, on.size - etp, ref_on.size - etp, stp, sfp, sfn, hit


def _pairs(evs) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(evs, np.float64).reshape(-1, 2)
    return np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1])


def class_score(est, ref, clips, total_s: float) -> tuple[float, float, float]:
    """(event F1, segment F1, clip recall) of one class's events est against its references and clip spans;
    the calibration score is their mean."""
    etp, efp, efn, stp, sfp, sfn, hit = _class_counts(*_pairs(est), *_pairs(ref), *_pairs(clips), total_s, 1.0)
    ef = f1(etp, efp, efn) if ref else 0.0
    sf = f1(stp, sfp, sfn) if ref else 0.0
    return ef, sf, hit / max(1, len(clips))


def with_lead(est, lead: float) -> list:
    """One class's events [(start, end)] in order, as the tracker reports them with this lead: each start moved
    lead earlier, never before the previous event's end nor 0 (EventTracker._event)."""
    if not lead:
        return est
    out, last = [], 0.0
    for a, b in est:
        out.append((max(a - lead, last), b))
        last = b
    return out


def class_candidates(c: int, P_fg, refs, P_bgs, minutes_bg, total_s, P_probes=(), grid=None, spans=()):
    """Every grid setting of class c: (false events/min (worst background stream), validation score, setting
    with its event and segment F1, clip recall and how many of P_probes it raises an event on).  The score is
    the mean of event F1, segment F1 (1 s) and clip recall (the share of the class's clips that one of its events
    overlaps: without it, settings that never fire on one-word clips score as well as those that do, and the
    dominant label, a goal, counts those clips as missed).  The tracker runs with min_duration 0 and events are
    filtered by length afterwards: the same events as a tracker with that min_duration (it keeps an event iff
    end - start >= min_duration, the same floats); each lead then moves the kept events' starts (with_lead, as
    the tracker does after its length check)."""
    grid = {"smoothing": SMOOTHINGS, "min_gap": MIN_GAPS, "backtrack": BACKTRACKS, "min_duration": MIN_DURS,
            "lead": LEADS, **(grid or {})}
    name = FG[c]
    ref, clips = of_class(refs, name), of_class(spans, name)
    out = []
    for sm in grid["smoothing"]:
        for on in ONSETS:
            for ratio in OFF_RATIOS:
                for gap in grid["min_gap"]:
                    for bt in grid["backtrack"]:
                        cfg = AudioConfig(frontend=FE, labels=[name], onset=[on], offset=[round(on * ratio, 3)],
                                          min_duration=[0.0], min_gap=[gap], smoothing=[sm], backtrack=[bt])
                        fg = track(P_fg[:, c:c + 1], cfg)[name]
                        bgs = [track(Pb[:, c:c + 1], cfg)[name] for Pb in P_bgs]
                        probes = [track(Pp[:, c:c + 1], cfg)[name] for Pp in P_probes]
                        for md in grid["min_duration"]:
                            est = [e for e in fg if e[1] - e[0] >= md]
                            fpm = max(sum(1 for e in b if e[1] - e[0] >= md) / m for b, m in zip(bgs, minutes_bg))
                            tagged = sum(any(e[1] - e[0] >= md for e in pr) for pr in probes)
                            for lead in grid["lead"]:
                                ef, sf, cr = class_score(with_lead(est, lead), ref, clips, total_s)
                                out.append((fpm, (ef + sf + cr) / 3,
                                            {"onset": on, "offset": round(on * ratio, 3), "min_duration": md,
                                             "min_gap": gap, "smoothing": sm, "backtrack": bt, "lead": lead,
                                             "event_f1": ef, "segment_f1": sf, "clip_recall": cr,
                                             "probes_tagged": tagged}))
    return out


def pareto(cands):
    """Per distinct false-event rate, the best score, keeping only settings better than every cheaper one; among
    equal scores the most conservative setting (highest onset, then longest min_duration, then the smallest
    lead): a class that scores nothing on validation is then as quiet as the grid allows, not quiet by luck."""
    best = {}

    def quiet(s):
        return s["onset"], s["min_duration"], -s.get("lead", 0.0)
    for fpm, score_, s in cands:
        k = round(fpm, 4)
        if k not in best or score_ > best[k][1] or (score_ == best[k][1] and quiet(s) > quiet(best[k][2])):
            best[k] = (fpm, score_, s)
    out, top = [], -1.0
    for k in sorted(best):
        if best[k][1] > top:
            out.append(best[k])
            top = best[k][1]
    return out


def allocate(fronts: dict, target_fpm: float):
    """One setting per class maximizing sum(weight * F1) with sum(false events/min) <= target (a knapsack over
    the Pareto fronts, rates in steps of 0.001/min).  If no combination fits, every class gets its quietest
    setting: the result then exceeds the target (the caller says so)."""
    unit = 1e-3
    cap = int(round(target_fpm / unit))
    # dp[b] = (score, choices) with total cost <= b
    dp = {0: (0.0, [])}
    for name, front in fronts.items():
        w = CLASS_WEIGHT[name]
        new = {}
        for used, (sc, ch) in dp.items():
            for fpm, f, s in front:
                b = used + int(np.ceil(fpm / unit - 1e-9))
                if b > cap:
                    continue
                cand = (sc + w * f, ch + [(name, fpm, f, s)])
                if b not in new or cand[0] > new[b][0]:
                    new[b] = cand
        dp = new
        if not dp:
            return [(name, *front[0]) for name, front in fronts.items()]
    return max(dp.values(), key=lambda v: v[0])[1]


def quietest(cands):
    """The grid's quietest setting: the fewest false events on validation, then the highest onset, then the longest
    min_duration; the validation score breaks only the remaining ties, then the smallest lead."""
    return min(cands, key=lambda x: (round(x[0], 4), -x[2]["onset"], -x[2]["min_duration"], -x[1],
                                     x[2].get("lead", 0.0)))


def steerable(front: list, cands: list, n_ref: int) -> tuple[list, str | None]:
    """The part of a class's Pareto front (of cands) calibration may choose from, and why it was cut (None: not
    cut): too few validation events to steer by, or a best F1 score too low to buy.  A cut class gets the grid's
    quietest setting, whatever it scores: a score under the floor is noise, and buying it with a lower onset
    is what made run13's knock fire on a phone tone.  The floor judges the mean of event and segment F1 alone:
    clip recall is cheap to buy (a low onset overlaps clips it cannot segment)."""
    if n_ref < MIN_REFERENCE_EVENTS:
        return [quietest(cands)], f"only {n_ref} validation reference events (< {MIN_REFERENCE_EVENTS})"
    if max((s["event_f1"] + s["segment_f1"]) / 2 for _, _, s in cands) < MIN_VALIDATION_SCORE:
        return [quietest(cands)], f"best validation (event F1 + segment F1) / 2 < {MIN_VALIDATION_SCORE}"
    return front, None


def validation_probabilities(model: Path, val: dict):
    """(foreground stream probabilities, [background stream probabilities], [background stream minutes])."""
    bgs = [k for k in val if k.startswith("bg")]
    return (probabilities(model, "val_fg", val["fg"]["y"]),
            [probabilities(model, f"val_{k}", val[k]["y"]) for k in bgs],
            [val[k]["y"].size / SR / 60 for k in bgs])


def calibrate(model: Path, val: dict, target_fpm: float, log, probes: dict | None = None, grid=None,
              probe_models: list[Path] | None = None):
    """Per-class settings (thresholds.json's content).  probes: name -> samples that every alarm setting must
    raise an alarm event on (the beep/tone check over validation ambience; None: no requirement), with each of
    probe_models (default: model alone; main passes the int8 model and its float source, so that a setting
    does not tag the probes by int8 rounding alone)."""
    P_fg, P_bgs, minutes = validation_probabilities(model, val)
    P_probes = [probabilities(m, k, y) for m in (probe_models or [model]) for k, y in (probes or {}).items()]
    log(f"validation: foreground stream {val['fg']['y'].size / SR / 60:.1f} min "
        f"({len(val['fg']['refs'])} reference events), background streams {', '.join(f'{m:.1f}' for m in minutes)} min"
        f"; grid {grid or 'default'}; alarm must tag {len(P_probes)} validation probes "
        f"({len(probes or {})} signals x {len(probe_models or [model])} models)")
    fronts = {}
    for c, name in enumerate(FG):
        cands = class_candidates(c, P_fg, val["fg"]["refs"], P_bgs, minutes, val["fg"]["y"].size / SR,
                                 P_probes if name == "alarm" else (), grid, val["fg"]["spans"])
        if name == "alarm" and P_probes:
            cands = [x for x in cands if x[2]["probes_tagged"] == len(P_probes)]
            log(f"  alarm   {len(cands)} settings tag all {len(P_probes)} probes; the quietest "
                f"{min([x[0] for x in cands] or [float('nan')]):.2f} false events/min")
            if not cands:
                raise SystemExit("no alarm setting in the grid tags every probe")
        fronts[name] = pareto(cands)
        log(f"  {name:<7} validation score (mean of event F1, segment F1, clip recall): best "
            f"{max(f for _, f, _ in fronts[name]):.3f} "
            f"at any rate; at 0 false events/min {max([f for r, f, _ in fronts[name] if r == 0] or [0]):.3f}; front "
            + " ".join(f"{r:.2f}:{f:.2f}" for r, f, _ in fronts[name]))
        n_ref = sum(1 for lab, _, _ in val["fg"]["refs"] if lab == name)
        fronts[name], why = steerable(fronts[name], cands, n_ref)
        if why:
            log(f"  {name:<7} {why}: its quietest setting")
    choice = allocate(fronts, target_fpm)
    total = sum(fpm for _, fpm, _, _ in choice)
    if total > target_fpm:
        log(f"  NOTE: no setting meets the budget: {total:.2f} false events/min on validation > {target_fpm}")
    cfg = {k: [] for k in SETTINGS}
    for name, fpm, f, s in choice:
        log(f"  {name:<7} onset {s['onset']:.2f} offset {s['offset']:.3f} min_gap {s['min_gap']:.2f} s "
            f"smoothing {s['smoothing']:.2f} s min_duration {s['min_duration']:.2f} s backtrack {s['backtrack']} "
            f"lead {s['lead']:.2f} s: "
            f"validation event F1 {s['event_f1']:.3f}, segment F1 {s['segment_f1']:.3f}, clip recall "
            f"{s['clip_recall']:.3f}, background {fpm:.2f} "
            f"false events/min")
        for k in cfg:
            cfg[k].append(s[k])
    log(f"  validation calibration score (sum of class weight x score): "
        f"{sum(CLASS_WEIGHT[name] * f for name, _, f, _ in choice):.4f}, background {total:.2f} false events/min")
    # background: an explicit class, reported as an event but never a false alarm; long and stable
    for k, v in {"onset": 0.6, "offset": 0.4, "min_duration": 1.0, "min_gap": 0.5, "smoothing": 0.1,
                 "backtrack": 0, "lead": 0.0}.items():
        cfg[k].append(v)
    cfg["target_fpm"] = target_fpm
    _, dom, dom_all = validation_dominant_label(P_fg, val["fg"], cfg)
    log(f"  validation dominant label correct on {dom_all:.3f} of foreground clips {dom}")
    return cfg


def class_config(settings: dict, c: int, **fixed) -> AudioConfig:
    """Foreground class c alone, with its settings from thresholds.json's content (fields it lacks: their
    defaults); fixed: fields set to these values instead."""
    kw = {k: [settings[k][c]] for k in SETTINGS if k in settings and k not in fixed}
    return AudioConfig(frontend=FE, labels=[FG[c]], **kw, **{k: [v] for k, v in fixed.items()})


def calibrate_lead(model: Path, val: dict, settings: dict, log) -> dict:
    """settings (thresholds.json's content) with each foreground class's lead chosen on validation and nothing
    else changed: the lead only moves reported starts, so the events, the false-event rates and the probes stay
    as they were, and the calibration score can only rise.  Ties go to the smaller lead."""
    P_fg = validation_probabilities(model, val)[0]
    total_s = val["fg"]["y"].size / SR
    out = {**settings, "lead": list(settings.get("lead", [0.0] * len(LABELS)))}
    for c, name in enumerate(FG):
        est = track(P_fg[:, c:c + 1], class_config(settings, c, lead=0.0))[name]
        ref, clips = of_class(val["fg"]["refs"], name), of_class(val["fg"]["spans"], name)
        scores = [(sum(class_score(with_lead(est, lead), ref, clips, total_s)) / 3, -lead) for lead in LEADS]
        best, neg = max(scores)
        out["lead"][c] = -neg
        log(f"  {name:<7} lead {-neg:.2f} s: validation score {scores[0][0]:.3f} -> {best:.3f}")
    return out


def settings_score(model: Path, val: dict, settings: dict) -> tuple[float, float]:
    """(calibration score, summed false events/min) of given settings (thresholds.json's content) on the
    validation streams: what calibrate() maximizes, at one point, e.g. to compare a bundled model's settings with
    a new calibration's."""
    P_fg, P_bgs, minutes = validation_probabilities(model, val)
    total_s = val["fg"]["y"].size / SR
    score_, fpm = 0.0, 0.0
    for c, name in enumerate(FG):
        cfg = class_config(settings, c)
        est = track(P_fg[:, c:c + 1], cfg)[name]
        ref, clips = of_class(val["fg"]["refs"], name), of_class(val["fg"]["spans"], name)
        score_ += CLASS_WEIGHT[name] * sum(class_score(est, ref, clips, total_s)) / 3
        fpm += max(len(track(Pb[:, c:c + 1], cfg)[name]) / m for Pb, m in zip(P_bgs, minutes))
    return score_, fpm


def validation_dominant_label(P_fg, fg: dict, settings: dict):
    """score() of the validation foreground stream under settings (thresholds.json's content): a diagnostic,
    not in the objective (it depends on every class's setting at once; moving one class at a time along its
    Pareto front to raise score + dominant label changed no setting of run12 or run21)."""
    cfg = AudioConfig(frontend=FE, labels=list(LABELS), **{k: settings[k] for k in SETTINGS if k in settings})
    return score(track(P_fg, cfg), fg["refs"], fg["spans"], fg["y"].size / SR)


# ------------------------------------------------------------------------------------ scoring a model

def evaluate(model: Path, cfg: AudioConfig, test: dict, probes: dict, readme: list, log, tag: str) -> dict:
    report = {}
    for name in [k for k in test if k.startswith("fg")]:
        st = test[name]
        P = probabilities(model, f"test_{name}", st["y"])
        evs = track(P, cfg)
        rows, dom, dom_all = score(evs, st["refs"], st["spans"], st["y"].size / SR)
        report[f"test {name}"] = {"minutes": round(st["y"].size / SR / 60, 1), "clips": len(st["spans"]),
                                  "classes": rows, "dominant_label_accuracy": dom, "dominant_label_all": dom_all}
        log(f"\n{tag}: TEST {name}: {st['y'].size / SR / 60:.1f} min, {len(st['spans'])} clips")
        log("| class | event F1 (tp/fp/fn) | segment F1 1 s | dominant label correct |")
        log("|---|---|---|---|")
        for c, r in rows.items():
            log(f"| {c} | {r['event_f1']:.3f} ({'/'.join(map(str, r['event_tp_fp_fn']))}) | {r['segment_f1']:.3f} | "
                f"{dom[c]:.3f} |")
        log(f"dominant label correct on {dom_all:.3f} of foreground clips")
    for name in [k for k in test if k.startswith("bg")]:
        y = test[name]["y"]
        fe = false_events(track(probabilities(model, f"test_{name}", y), cfg), y.size / SR / 60)
        report[f"test {name}"] = fe
        log(f"{tag}: test {name}: {fe['per_minute']:.2f} false events/min over {fe['minutes']} min {fe['by_class']}")
    report["beep_tone_check"] = {}
    for name, y in probes.items():
        evs = track(probabilities(model, name, y), cfg)
        alarm = evs.get("alarm", [])
        report["beep_tone_check"][name] = {"alarm_event": bool(alarm),
                                           "alarm_seconds": round(sum(b - a for a, b in alarm), 2),
                                           "other_events": {c: len(v) for c, v in evs.items()
                                                            if c not in ("alarm", "background") and v}}
        r = report["beep_tone_check"][name]
        log(f"  {name}: alarm event {'yes' if alarm else 'NO'} ({r['alarm_seconds']} s) other {r['other_events']}")
    rows = []
    for clip, expected, y in readme:
        evs = track(probabilities(model, clip, y), cfg)
        labels = sorted(c for c, v in evs.items() if v and c != "background")
        rows.append({"clip": clip, "expected": expected or "background", "events": labels,
                     "detected": expected in labels if expected else not labels,
                     "false_alarms": [x for x in labels if x != expected]})
    import eval_real_recordings as E
    log(f"\n{tag}: README real-recording check (alsa-utils, sound-theme-freedesktop; never trained on):")
    log(E.table(rows))
    report["readme_check"] = rows
    return report


def int8_agreement(f32: Path, q8: Path, cfg: AudioConfig, test: dict) -> dict:
    """Frame decisions (probability >= onset) and events of the int8 model vs the float one, test streams."""
    frames = agree = 0
    same = total = 0
    for name in [k for k in test if not k.startswith("_")]:
        Pf, Pq = probabilities(f32, f"test_{name}", test[name]["y"]), probabilities(q8, f"test_{name}", test[name]["y"])
        on = np.array(cfg.onset, np.float32)
        agree += int(np.sum((Pf >= on) == (Pq >= on)))
        frames += Pf.size
        ef, eq = track(Pf, cfg), track(Pq, cfg)
        for c in cfg.labels:
            total += len(ef[c])
            eqs = set((round(a / 0.016), round(b / 0.016)) for a, b in eq[c])
            same += sum((round(a / 0.016), round(b / 0.016)) in eqs for a, b in ef[c])
    return {"frame_decisions_agree": round(agree / frames, 5), "float_events": total,
            "float_events_with_identical_int8_event": same}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=T.OUT)
    ap.add_argument("--calibrate", action="store_true", help="choose the event settings on validation first")
    ap.add_argument("--calibrate-on", choices=["int8", "float"], default="int8",
                    help="the model whose validation probabilities choose the settings (int8: the one that ships)")
    ap.add_argument("--baseline", type=Path, nargs="+", default=[],
                    help="also score these taggers, each with its own stored settings")
    ap.add_argument("--per-class", type=int, default=150, help="validation foreground clips per class")
    ap.add_argument("--test-per-class", type=int, default=0,
                    help="test foreground clips per class (default 0: every test clip; a draw of 150 moved the "
                         "dominant label by 5 points from one seed to the next)")
    ap.add_argument("--target-fpm", type=float, default=0.7,
                    help="calibration target: summed foreground false events per minute on validation background")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--alarm-probes", choices=["clean", "all"],
                    help="calibration: an alarm setting counts only if it tags every clean beep/tone probe (clean), "
                         "or every probe including those over validation ambience (all; seed --seed + 100, not the "
                         "test probes' seed; the clean probes are the same signals as the test's)")
    ap.add_argument("--run4-grid", action="store_true", help="calibration grid of run4 (no backtracking)")
    ap.add_argument("--no-backtrack", action="store_true", help="calibration grid without onset backtracking")
    ap.add_argument("--min-gaps", type=float, nargs="+", help=f"calibration grid of min_gap (default {MIN_GAPS})")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--calibrate-lead", action="store_true",
                    help="keep RUN/thresholds.json's settings and choose only each class's lead on validation "
                         "(e.g. for a bundled model's settings, calibrated before the lead existed)")
    ap.add_argument("--settings-score", action="store_true",
                    help="log the validation calibration score of RUN/thresholds.json as it stands")
    args = ap.parse_args()
    if args.calibrate and args.calibrate_lead:
        ap.error("--calibrate already chooses the lead with the other settings")
    run = args.run
    f32, q8 = run / "tagger_f32.elstm", run / "tagger_int8.elstm"
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    t0 = time.time()
    val = (split_streams("validation", args.seed, args.per_class)
           if args.calibrate or args.calibrate_lead or args.settings_score else None)
    if args.calibrate:
        grid = {**(RUN4_GRID if args.run4_grid else {}), **({"backtrack": [0]} if args.no_backtrack else {}),
                **({"min_gap": args.min_gaps} if args.min_gaps else {})}
        probes = probe_signals(val["_pools"], args.seed + 100) if args.alarm_probes else None
        if args.alarm_probes == "clean":
            probes = {k: y for k, y in probes.items() if k.endswith(", clean")}
        thr = calibrate(q8 if args.calibrate_on == "int8" else f32, val, args.target_fpm, log, probes, grid,
                        probe_models=[q8, f32])
        thr["calibrated_on"] = args.calibrate_on
        (run / "thresholds.json").write_text(json.dumps(thr, indent=1) + "\n")
    thr = json.loads((run / "thresholds.json").read_text())
    if args.calibrate_lead:
        thr = calibrate_lead(q8 if args.calibrate_on == "int8" else f32, val, thr, log)
        (run / "thresholds.json").write_text(json.dumps(thr, indent=1) + "\n")
    if args.settings_score:
        sc, fpm = settings_score(q8 if args.calibrate_on == "int8" else f32, val, thr)
        log(f"validation calibration score of RUN/thresholds.json: {sc:.4f}, background {fpm:.2f} false events/min")
    del val
    meta = el.load(f32).audio
    cfg = AudioConfig(frontend=meta.frontend, labels=list(meta.labels),
                      **{k: thr[k] for k in SETTINGS if k in thr})
    test = split_streams("test", args.seed + 1, args.test_per_class or None)
    probes = probe_signals(test["_pools"], args.seed)
    readme = readme_clips()
    report = {"settings": cfg.to_dict(), "float": evaluate(f32, cfg, test, probes, readme, log, "float")}
    if not args.no_int8 and q8.is_file():
        report["int8"] = evaluate(q8, cfg, test, probes, readme, log, "int8")
        report["int8_vs_float"] = int8_agreement(f32, q8, cfg, test)
        log(f"int8 vs float: {report['int8_vs_float']}")
    for path in args.baseline:
        base = el.load(path).audio
        report.setdefault("baselines", []).append(
            {"model": str(path), "settings": base.to_dict(),
             **evaluate(path, base, test, probes, readme, log, f"baseline {path.name}")})
    report["eval_seconds"] = round(time.time() - t0, 1)
    (run / "eval_test.json").write_text(json.dumps(report, indent=1) + "\n")
    (run / "eval_log.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
