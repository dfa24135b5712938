"""The CRNN tagger's training and conversion scripts (scripts/train_crnn_tagger.py, convert_crnn_tagger.py):
every architecture they convert, with random weights, streamed by edgelstm one frame at a time equals the
PyTorch model run over the whole sequence (float32 both; 1e-5 covers summation order), and its int8 model
runs. This pins the layout contract between the two: PyTorch's Conv1d over (channels, length) against
edgelstm's channels-last (length, channels) frame, the position-major flatten after the convs over the mel
axis, and the context of conv features that starts as zeros."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(*names):
    """The modules of scripts/ (not a package) by name, imported with scripts/ on sys.path."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return tuple(importlib.import_module(n) for n in names)
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture(scope="module")
def scripts():
    return script("train_crnn_tagger", "convert_crnn_tagger")


@pytest.mark.parametrize("arch", ["time", "freqtime"])
def test_converted_model_streams_as_pytorch_runs(arch, scripts):
    import edgelstm as el
    T, C = scripts
    torch.manual_seed(3)
    M = T.FE.n_mels
    model = T.build_model(arch, M, 24, "lstm", context=3, channels=16, dropout=0.3)   # training-only: exports alike
    with torch.no_grad():       # a normalization to fold (per mel for time, one scalar for freqtime)
        model.mean.copy_(torch.linspace(-60, -40, M) if arch == "time" else torch.full((M,), -50.0))
        model.std.copy_(torch.linspace(8, 14, M) if arch == "time" else torch.full((M,), 11.0))
    model.eval()
    W = T.export_layers(model)
    meta = {"arch": arch, "frontend": T.FE.to_dict(), "context_frames": 3}
    spec = C.build_spec(W, meta)
    x = (np.random.default_rng(0).standard_normal((80, M)) * 12 - 50).astype(np.float32)
    with torch.no_grad():
        want = torch.sigmoid(model(torch.tensor(x[None]))[0][0]).numpy()
    f32 = el.Model(spec)
    s = f32.stream()
    got = np.stack([s.step(f).copy() for f in x])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(want, axis=0).min() > 1e-3          # outputs that move with the input
    q = el.quantize(f32, calibration=x[None], progress=False)
    p8 = q.run(x)
    assert p8.shape == want.shape and np.abs(p8 - want).max() < 0.1


def test_calibration_gives_unlearned_classes_their_quietest_setting():
    """eval_crnn_tagger's rules: a class with too few validation events, or whose best validation score is
    under the floor, gets the grid's quietest setting (fewest false events, then highest onset, then longest
    min_duration), even where a louder setting at the same rate scores a little more."""
    E, = script("eval_crnn_tagger")

    def setting(onset, md, f1=0.0):
        return {"onset": onset, "min_duration": md, "event_f1": f1, "segment_f1": f1}
    floor = E.MIN_VALIDATION_SCORE
    # run13's knock: at 0 false events/min an onset of 0.4 scores 0.07 (under the floor), onset 0.98 scores 0;
    # pareto keeps the higher score, the cut must not
    cands = [(0.0, 0.0, setting(0.5, 0.3)), (0.0, 0.0, setting(0.98, 4.0)), (0.0, 0.07, setting(0.4, 0.5, 0.07)),
             (0.11, 0.08, setting(0.3, 0.5, 0.08))]
    front = E.pareto(cands)
    assert [s["onset"] for _, _, s in front] == [0.4, 0.3]
    assert 0.08 < floor
    cut, why = E.steerable(front, cands, n_ref=33)               # enough events, score under the floor
    assert [(s["onset"], s["min_duration"]) for _, _, s in cut] == [(0.98, 4.0)] and "F1" in why
    cut, why = E.steerable(front, cands, n_ref=E.MIN_REFERENCE_EVENTS - 1)   # too few events
    assert [(s["onset"], s["min_duration"]) for _, _, s in cut] == [(0.98, 4.0)] and "reference events" in why
    # alarm's case: the quietest among what is allowed costs false events; fewest first, then the highest onset
    probe_tagging = [(0.3, 0.02, setting(0.98, 0.2)), (0.11, 0.03, setting(0.8, 4.0)), (0.11, 0.0, setting(0.9, 4.0))]
    cut, _ = E.steerable(E.pareto(probe_tagging), probe_tagging, n_ref=5)
    assert [(r, s["onset"]) for r, _, s in cut] == [(0.11, 0.9)]
    # the floor judges event and segment F1, not the score's clip recall: a score over the floor made of clip
    # recall alone (a low onset overlapping clips it cannot segment) is still cut
    recall_only = cands + [(0.3, floor + 0.2, setting(0.3, 0.3, 0.05))]
    cut, why = E.steerable(E.pareto(recall_only), recall_only, n_ref=33)
    assert [(s["onset"], s["min_duration"]) for _, _, s in cut] == [(0.98, 4.0)] and "F1" in why
    learned = cands + [(0.3, floor + 0.2, setting(0.7, 0.3, floor + 0.01))]
    front = E.pareto(learned)
    assert E.steerable(front, learned, n_ref=33) == (front, None)


def test_exported_weights_load_back_for_fine_tuning(scripts):
    """load_exported inverts export_layers: a model rebuilt from a run's weights.npz with another normalization
    computes what the original computes (float32: 1e-4 on probabilities) and exports the same weights."""
    T, _ = scripts
    torch.manual_seed(5)
    M = T.FE.n_mels
    model = T.build_model("freqtime", M, 16, "lstm", context=2, channels=12)
    with torch.no_grad():
        model.mean.fill_(-50.0)
        model.std.fill_(11.0)
    model.eval()
    W = T.export_layers(model)
    again = T.build_model("freqtime", M, 16, "lstm", context=2, channels=12)
    T.load_exported(again, W, mean=-37.5, std=19.0)
    again.eval()
    assert float(again.mean[0]) == -37.5 and float(again.std[0]) == 19.0
    for k, v in T.export_layers(again).items():
        np.testing.assert_allclose(v, W[k], rtol=1e-5, atol=1e-5, err_msg=k)
    x = torch.tensor((np.random.default_rng(1).standard_normal((1, 50, M)) * 12 - 50).astype(np.float32))
    with torch.no_grad():
        want, got = torch.sigmoid(model(x)[0]).numpy(), torch.sigmoid(again(x)[0]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.ptp(want) > 1e-3
    smaller = T.build_model("freqtime", M, 8, "lstm", context=2, channels=12)
    with pytest.raises(ValueError, match="shape"):
        T.load_exported(smaller, W, mean=0.0, std=1.0)


def test_spec_augment_shifts_the_mel_axis_and_masks_bands(scripts):
    """Checked against the definition, scene by scene: out[:, m] = x[:, clip(m - s)] for one shift s in
    [-max_shift, max_shift] (both signs drawn); masks change at most `masks` bands of <= max_width bins, to the
    scene's mean; the input is untouched."""
    T, _ = scripts
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 7, 20)).astype(np.float32) * 10 - 50
    keep = x.copy()
    out = T.spec_augment(x, np.random.default_rng(1), max_shift=2, masks=0, max_width=0)
    np.testing.assert_array_equal(x, keep)
    idx = np.arange(20)
    shifts = []
    for b in range(len(x)):
        fits = [s for s in range(-2, 3) if np.array_equal(out[b], x[b][:, np.clip(idx - s, 0, 19)])]
        assert len(fits) == 1, b
        shifts.append(fits[0])
    assert {-2, -1, 0, 1, 2} <= set(shifts)
    out = T.spec_augment(x, np.random.default_rng(2), max_shift=0, masks=2, max_width=3)
    widths = []
    for b in range(len(x)):
        changed = np.flatnonzero(np.any(out[b] != x[b], axis=0))
        np.testing.assert_allclose(out[b][:, changed], x[b].mean(), rtol=1e-6)
        runs = np.split(changed, np.flatnonzero(np.diff(changed) > 1) + 1) if changed.size else []
        assert len(runs) <= 2 and all(len(r) <= 6 for r in runs)     # two masks may touch: 2 x 3 bins
        widths.append(changed.size)
    assert max(widths) >= 3        # masks were drawn, up to their full width


def test_scene_caches_are_keyed_by_the_clips_they_mix(scripts, tmp_path):
    """pools_digest names the training and validation clips: the order of the manifest does not change it, a
    clip added to training does (so old scene caches are not reused), a test-split clip does not."""
    import csv
    T, _ = scripts
    cols = ["package", "version", "path", "source_rate", "start_s", "duration_s", "label", "split", "license"]
    rows = [dict(zip(cols, ["p", "1", f"a{i}.wav", "16000", "0.0", "1.0", "speech", split, "GPL"]))
            for i, split in enumerate(["train", "train", "validation", "test"])]

    def digest(rs):
        with open(tmp_path / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            w.writerows(rs)
        return T.pools_digest(cache=tmp_path)

    base = digest(rows)
    assert len(base) == 8 and digest(rows[::-1]) == base
    assert digest(rows + [{**rows[0], "path": "new.wav"}]) != base
    assert digest(rows[:3] + [{**rows[3], "path": "other.wav"}]) == base


def test_clips_drawn_by_package_weigh_packages_equally(scripts):
    """Pools.draw(by_package) and eval_crnn_tagger.pick_clips: a package of 90 clips and one of 10 are drawn
    about equally often (uniform draws: 9 to 1); pick_clips spreads its picks over packages in turn, without
    repeats, and picks every clip once when given no count; without by_package both draw over clips."""
    T, _ = scripts
    E, = script("eval_crnn_tagger")
    rows = [{"package": "big" if i < 90 else "small", "label": "speech"} for i in range(100)]
    pools = T.Pools("train", rows=rows, clips=[np.full(10, i, np.float32) for i in range(100)])
    rng = np.random.default_rng(0)
    small = np.mean([pools.draw(rng, "speech", True)[0] >= 90 for _ in range(4000)])
    assert 0.45 < small < 0.55
    small = np.mean([pools.draw(rng, "speech", False)[0] >= 90 for _ in range(4000)])
    assert 0.07 < small < 0.13
    picks = E.pick_clips(pools, rng, "speech", 30, True)
    assert len(set(picks)) == 30 and sum(i >= 90 for i in picks) == 10     # all 10 small ones, 20 big ones
    assert sum(i >= 90 for i in picks[:20]) == 10                           # in turn: one of each per round
    assert len(E.pick_clips(pools, rng, "speech", 500, True)) == 100
    assert len(set(E.pick_clips(pools, rng, "speech", 30, False))) == 30
    for by_package in (True, False):                                        # None: every clip once (the test)
        assert sorted(E.pick_clips(pools, rng, "speech", None, by_package)) == list(range(100))


def test_clip_recall_counts_clips_an_event_overlaps():
    """eval_crnn_tagger.clip_recall: the share of clip spans that some event overlaps (touching is not
    overlapping), the calibration's third term."""
    E, = script("eval_crnn_tagger")
    spans = [(0.0, 1.0), (2.0, 3.0), (4.0, 5.0), (6.0, 9.0)]
    assert E.clip_recall([(0.5, 0.6), (3.0, 4.0), (8.9, 12.0)], spans) == 0.5
    assert E.clip_recall([(-1.0, 20.0)], spans) == 1.0
    assert E.clip_recall([], spans) == 0.0 and E.clip_recall([(0.0, 1.0)], []) == 0.0


def test_background_speech_check_flags_a_voice_not_silence_or_noise():
    """fetch_real_audio.flagged: a real voice (alsa-utils' Front_Center.wav, never trained on) in a clip labelled
    background is flagged, digital silence and white noise are not; other labels are not checked."""
    pytest.importorskip("silero_vad")
    voice = Path("/usr/share/sounds/alsa/Front_Center.wav")
    if not voice.is_file():
        pytest.skip("alsa-utils' sounds are not installed")
    F, R = script("fetch_real_audio", "eval_real_recordings")
    from edgelstm.audio.vad import VAD
    y = R.read(voice, F.SR)
    noise = np.random.default_rng(0).standard_normal(3 * F.SR) * 0.05
    rows = [{"label": "background", "n": 0}, {"label": "background", "n": 1}, {"label": "background", "n": 2},
            {"label": "speech", "n": 3}]
    hits = F.flagged(VAD(), rows, [np.zeros(3 * F.SR), noise, y, y], 0.5)
    assert [r["n"] for r, _ in hits] == [2] and 0.5 <= hits[0][1] <= y.size / F.SR


def _cached_clips(tmp_path, F, clips_by_package):
    """Writes clips as fetch_real_audio.process does (int16, one .npz per package); returns rows and hashes."""
    (tmp_path / "clips").mkdir()
    rows = []
    for pkg, (split, clips) in clips_by_package.items():
        q = [np.round(np.asarray(c) * 32767).astype(np.int16) for c in clips]
        np.savez(tmp_path / "clips" / f"{pkg}.npz", audio=np.concatenate(q))
        offsets = np.cumsum([0] + [a.size for a in q])
        rows += [{"package": pkg, "split": split, "path": f"{pkg}/{i}.wav", "start_s": 0.0, "label": "background",
                  "offset": int(offsets[i]), "samples": int(a.size), "n": len(rows) + i} for i, a in enumerate(q)]
    return rows, F.clip_hashes(tmp_path, rows)


def test_identical_clips_are_grouped_across_paths_and_splits(tmp_path):
    """fetch_real_audio.copies: clips with the same samples form one group whatever their rows say; a clip that
    differs in one sample, or holds the same samples in another order, is not a copy."""
    F, = script("fetch_real_audio")
    a = np.random.default_rng(1).uniform(-0.5, 0.5, 1600)
    b = a.copy()
    b[7] += 1e-3
    rows, hashes = _cached_clips(tmp_path, F, {"p": ("train", [a, b]), "q": ("test", [a, np.zeros(10)]),
                                               "r": ("validation", [a[::-1]])})
    assert [[r["n"] for r in g] for g in F.copies(rows, hashes)] == [[0, 2]]


def test_clean_keeps_each_clip_once_in_its_first_split(tmp_path):
    """fetch_real_audio.drop_copies: a clip heard in training leaves validation and test whatever the manifest
    order; a validation clip leaves test; a split keeps one copy of a repeated clip; distinct clips all stay."""
    F, = script("fetch_real_audio")
    x, y, z, w = np.random.default_rng(2).uniform(-0.5, 0.5, (4, 800))
    rows, hashes = _cached_clips(tmp_path, F, {"t": ("test", [x, x, y, w]), "v": ("validation", [y, z]),
                                               "tr": ("train", [x, z])})
    kept, dropped = F.drop_copies(rows, hashes)
    # rows: t: x0 x1 y2 w3, v: y4 z5, tr: x6 z7
    assert [r["n"] for r in kept] == [3, 4, 6, 7]
    assert {r["n"]: r["reason"].split(" @")[0] for r in dropped} == {
        0: "copy of train tr:tr/0.wav", 1: "copy of train tr:tr/0.wav", 2: "copy of validation v:v/0.wav",
        5: "copy of train tr:tr/1.wav"}


def test_clean_drops_every_background_clip_of_a_voice_file():
    """fetch_real_audio.drop_voices: one flagged clip drops all background clips of its file (not the file's
    clips under another label, not other files)."""
    F, = script("fetch_real_audio")
    rows = [{"package": "p", "path": p, "label": lab, "n": i}
            for i, (p, lab) in enumerate([("radio", "background"), ("radio", "background"), ("rain", "background"),
                                          ("radio", "speech")])]
    kept, dropped = F.drop_voices(rows, [(rows[1], 7.5)])
    assert [r["n"] for r in kept] == [2, 3] and [r["n"] for r in dropped] == [0, 1]
    assert all("7.5 s" in r["reason"] for r in dropped)


def test_alarm_calibration_needs_the_probes_tagged_by_every_probe_model(monkeypatch):
    """eval_crnn_tagger.calibrate with probe_models: an alarm setting counts only if each model raises an alarm
    event on every probe.  The int8 model gives the probe 0.99, its float source 0.92: with the int8 model alone
    the quietest probe-tagging onset is the grid's top (0.98), which the float model would miss; with both it
    must be at most 0.92."""
    E, = script("eval_crnn_tagger")
    n = 1250                                            # 20 s of frames at hop 256
    probe = {"int8": np.zeros((n, 6), np.float32), "float": np.zeros((n, 6), np.float32)}
    probe["int8"][60:400, 1], probe["float"][60:400, 1] = 0.99, 0.92
    monkeypatch.setattr(E, "probabilities",
                        lambda m, k, y: probe[m] if k == "beep" else np.zeros((n, 6), np.float32))
    val = {"fg": {"y": np.zeros(20 * E.SR), "refs": [], "spans": []}, "bg": {"y": np.zeros(20 * E.SR)}}
    grid = {"smoothing": [0.0], "min_gap": [0.0], "backtrack": [0], "min_duration": [0.5]}
    alarm = E.FG.index("alarm")
    log = []
    alone = E.calibrate("int8", val, 0.7, log.append, {"beep": None}, grid, probe_models=["int8"])
    both = E.calibrate("int8", val, 0.7, log.append, {"beep": None}, grid, probe_models=["int8", "float"])
    assert alone["onset"][alarm] == max(E.ONSETS) and both["onset"][alarm] <= 0.92
    assert any("2 validation probes (1 signals x 2 models)" in line for line in log)


def test_settings_score_is_the_calibration_objective_at_its_choice(monkeypatch):
    """eval_crnn_tagger.settings_score of the settings calibrate() chose equals the score calibrate logged for
    them (the same objective at one point), and a setting that never fires scores lower."""
    E, = script("eval_crnn_tagger")
    n, fps = 3750, E.SR / E.FE.hop_length                # 60 s of frames
    P = np.zeros((n, 6), np.float32)
    refs, spans = [], []
    for k in range(12):                                  # 12 one-second speech events, 4 s apart
        a = 2.0 + 4 * k
        P[int(a * fps):int((a + 1) * fps), 0] = 0.97
        refs.append(("speech", a, a + 1.0))
        spans.append(("speech", a, a + 1.0))
    monkeypatch.setattr(E, "probabilities", lambda m, k, y: P if k == "val_fg" else np.zeros((n, 6), np.float32))
    val = {"fg": {"y": np.zeros(60 * E.SR), "refs": refs, "spans": spans}, "bg": {"y": np.zeros(60 * E.SR)}}
    grid = {"smoothing": [0.0], "min_gap": [0.0], "backtrack": [0], "min_duration": [0.1, 0.5]}
    log = []
    thr = E.calibrate("m", val, 0.7, log.append, None, grid)
    logged = float(next(x for x in log if "calibration score" in x).split(": ")[1].split(",")[0])
    assert E.settings_score("m", val, thr)[0] == pytest.approx(logged, abs=1e-4) and logged > 0.5
    off = dict(thr, onset=[0.98] + thr["onset"][1:], min_duration=[4.0] + thr["min_duration"][1:])
    assert E.settings_score("m", val, off)[0] < logged


def test_compiled_class_score_equals_the_plain_metrics():
    """eval_crnn_tagger.class_score (one compiled pass) gives the event F1, segment F1 and clip recall of the plain
    event_f1 / segment_counts / clip_recall, on random events placed to hit the collars' edges often."""
    E, = script("eval_crnn_tagger")
    rng = np.random.default_rng(3)
    for trial in range(200):
        ref = sorted((a, a + d) for a, d in zip(rng.uniform(0, 100, rng.integers(0, 25)), rng.uniform(0.1, 6, 25)))
        est = [(a + rng.choice([0.0, 0.2, -0.2, 0.19, 0.21, rng.uniform(-1, 1)]),
                b + rng.choice([0.0, 0.2, -0.2, rng.uniform(-2, 2)])) for a, b in ref if rng.random() < 0.8]
        est = sorted((max(0.0, a), max(a, b) + 0.01) for a, b in est + [tuple(sorted(rng.uniform(0, 100, 2)))
                                                                       for _ in range(rng.integers(0, 5))])
        clips = [(a - rng.uniform(0, 1), b + rng.uniform(0, 1)) for a, b in ref]
        got = E.class_score(est, ref, clips, 107.5)
        want = (E.f1(*E.event_f1(est, ref)) if ref else 0.0, E.f1(*E.segment_counts(est, ref, 107.5)) if ref else 0.0,
                E.clip_recall(est, clips))
        assert got == want, trial


def test_lead_in_calibration_is_the_trackers_lead():
    """with_lead on a lead-0 tracker's events (after the min_duration filter) equals the runtime's EventTracker
    run with that lead, float for float."""
    E, = script("eval_crnn_tagger")
    rng = np.random.default_rng(5)
    P = np.clip(0.5 + np.cumsum(rng.normal(0, 0.08, (3000, 1)), 0) % 1.2 - 0.35, 0, 1).astype(np.float32)
    for lead in (0.05, 0.2, 0.4, 1.5):
        for md in (0.0, 0.1, 0.3):
            kw = dict(frontend=E.FE, labels=["speech"], onset=[0.6], offset=[0.4], min_gap=[0.05], backtrack=[1])
            base = [e for e in E.track(P, E.AudioConfig(**kw, min_duration=[0.0]))["speech"] if e[1] - e[0] >= md]
            want = E.track(P, E.AudioConfig(**kw, min_duration=[md], lead=[lead]))["speech"]
            assert len(want) > 5 and E.with_lead(base, lead) == want, (lead, md)


def test_calibration_chooses_the_lead_that_aligns_late_starts(monkeypatch):
    """A model that rises 0.25 s after each reference start scores event F1 0 without a lead (outside the 0.2 s
    onset collar) and 1 with the grid's 0.25 s lead; calibrate chooses it, and settings_score agrees."""
    E, = script("eval_crnn_tagger")
    n, fps = 3750, E.SR / E.FE.hop_length
    P = np.zeros((n, 6), np.float32)
    refs = []
    for k in range(12):
        a = 2.0 + 4 * k
        P[int((a + 0.25) * fps):int((a + 1) * fps), 0] = 0.97
        refs.append(("speech", a, a + 1.0))
    monkeypatch.setattr(E, "probabilities", lambda m, k, y: P if k == "val_fg" else np.zeros((n, 6), np.float32))
    val = {"fg": {"y": np.zeros(60 * E.SR), "refs": refs, "spans": refs}, "bg": {"y": np.zeros(60 * E.SR)}}
    grid = {"smoothing": [0.0], "min_gap": [0.0], "backtrack": [0], "min_duration": [0.1], "lead": [0.0, 0.25]}
    log = []
    thr = E.calibrate("m", val, 0.7, log.append, None, grid)
    assert thr["lead"][0] == 0.25
    assert any("speech  onset" in x and "lead 0.25 s" in x and "event F1 1.000" in x for x in log)
    logged = float(next(x for x in log if "calibration score" in x).split(": ")[1].split(",")[0])
    assert E.settings_score("m", val, thr)[0] == pytest.approx(logged, abs=1e-4)
    assert E.settings_score("m", val, dict(thr, lead=[0.0] * 6))[0] < logged - 0.2
    # --calibrate-lead from settings without a lead: the smallest lead of its grid that scores as well (0.05
    # brings the 0.24 s late starts inside the collar, and 0.25 puts them a hair before the reference, into the
    # previous 1 s segment), and nothing else changed
    plain = {k: v for k, v in thr.items() if k != "lead"}
    led = E.calibrate_lead("m", val, plain, log.append)
    assert led["lead"][0] == 0.05 and {k: v for k, v in led.items() if k != "lead"} == plain
    assert E.settings_score("m", val, led)[0] > logged
    # a foreground lead already set is chosen anew (background's is not calibrated: kept)
    assert E.calibrate_lead("m", val, dict(led, lead=[0.4] * 5 + [0.0]), log.append) == led
