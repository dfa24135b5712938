"""EventTracker's smoothing, minimum gap, onset backtracking and lead (AudioConfig.smoothing / min_gap / backtrack /
lead),
against a plain reference of the documented rule, and their place in the .elstm audio metadata."""
import json

import numpy as np
import pytest

import edgelstm as el
from edgelstm.audio import AudioConfig, EventTracker, FrontEnd
from edgelstm.errors import ArtifactError, AudioError

FE = FrontEnd()
SPF = FE.hop_length / FE.sr                      # seconds per frame
TAIL = (FE.n_fft - FE.hop_length) / FE.sr        # an event ends where its last frame's samples end


def _cfg(n=1, **kw):
    return AudioConfig(frontend=FE, labels=[f"c{i}" for i in range(n)], **kw)


def _frames(events):
    """[(label, start frame, end frame)]: the tracker's seconds back to frames."""
    return [(e.label, round(e.start / SPF), round((e.end - TAIL) / SPF)) for e in events]


def reference(P, cfg):
    """The documented rule, written plainly: per class, the mean of the last `win` probabilities (fewer at the
    start) decides; an event opens at >= onset and closes once the mean has stayed below offset for `gap`
    frames, ending where that dip began; with backtrack it starts on the frame after the last one below offset
    before the crossing; events shorter than min_duration are dropped; the stream's end closes an open event
    (at its dip's start, if in a dip).  Returns the sorted [(label, start frame, end frame)]."""
    out = []
    for c, name in enumerate(cfg.labels):
        win, gap = cfg.smoothing_frames[c], cfg.gap_frames[c]
        p = np.array([np.float32(np.mean(P[max(0, t - win + 1):t + 1, c].astype(np.float64)))
                      for t in range(len(P))], np.float32)
        on, off = np.float32(cfg.onset[c]), np.float32(cfg.offset[c])
        events, t = [], 0
        while t < len(p):
            if p[t] < on:
                t += 1
                continue
            start = max([k for k in range(t) if p[k] < off], default=-1) + 1 if cfg.backtrack[c] else t
            u, end = t + 1, None
            while u < len(p):
                if p[u] < off:
                    d = u
                    while d < len(p) and p[d] < off and d - u + 1 < gap:
                        d += 1
                    if d < len(p) and p[d] < off:        # a dip of gap frames: closed at its start
                        end = u
                        u = d + 1
                        break
                    if d >= len(p):                      # the stream ends inside the dip
                        end, u = u, len(p)
                        break
                    u = d                                # a shorter dip: bridged
                u += 1
            end = len(p) if end is None else end
            if end * SPF + TAIL - start * SPF >= cfg.min_duration[c]:
                events.append((name, start, end))
            t = u
        out += events
    return sorted(out)


def _run(P, cfg, chunks):
    tr = EventTracker(cfg)
    evs = []
    for part in np.array_split(P, chunks):
        evs += tr.update(part)
    return evs + tr.flush()


def test_min_gap_bridges_short_dips_and_ends_where_the_dip_began():
    # a dip of 3 frames (< 5) is bridged, a dip of 6 frames closes the event at the dip's first frame
    p = [0.9] * 10 + [0.1] * 3 + [0.9] * 10 + [0.1] * 6 + [0.9] * 4 + [0.1] * 2
    P = np.array(p, np.float32)[:, None]
    cfg = _cfg(onset=[0.5], offset=[0.3], min_duration=[0.0], min_gap=[5 * SPF])
    assert cfg.gap_frames == [5]
    assert _frames(_run(P, cfg, 1)) == [("c0", 0, 23), ("c0", 29, 33)]   # the last one: flushed in its dip
    # without a gap the same probabilities give three events (the old behaviour)
    old = _frames(_run(P, _cfg(onset=[0.5], offset=[0.3], min_duration=[0.0]), 1))
    assert old == [("c0", 0, 10), ("c0", 13, 23), ("c0", 29, 33)]


def test_smoothing_removes_a_one_frame_spike_and_delays_a_step_by_half_its_window():
    p = np.zeros(40, np.float32)
    p[5] = 1.0                     # a one-frame spike: mean over 4 frames = 0.25 < onset
    p[20:32] = 1.0                 # a step: the mean reaches 0.5 on its second frame
    cfg = _cfg(onset=[0.5], offset=[0.3], min_duration=[0.0], smoothing=[4 * SPF])
    assert cfg.smoothing_frames == [4]
    evs = _run(p[:, None], cfg, 1)
    assert _frames(evs) == [("c0", 21, 34)]           # off when the mean falls under 0.3: 1/4 at frame 34
    assert evs[0].peak_confidence == 1.0
    raw = _frames(_run(p[:, None], _cfg(onset=[0.5], offset=[0.3], min_duration=[0.0]), 1))
    assert raw == [("c0", 5, 6), ("c0", 20, 32)]


def test_backtrack_starts_an_event_where_its_rise_began():
    # frames 5..7 rise through the band between offset and onset; the crossing is frame 8
    p = [0.1] * 5 + [0.35, 0.45, 0.4, 0.9, 0.9] + [0.1] * 3 + [0.4, 0.6, 0.2, 0.45, 0.8] + [0.1] * 2
    P = np.array(p, np.float32)[:, None]
    kw = {"onset": [0.5], "offset": [0.3], "min_duration": [0.0]}
    assert _frames(_run(P, _cfg(**kw), 1)) == [("c0", 8, 10), ("c0", 14, 15), ("c0", 17, 18)]
    # backtracked: to the frame after the last one below offset (4, then 12, then 15: never into the last event)
    assert _frames(_run(P, _cfg(**kw, backtrack=[1]), 1)) == [("c0", 5, 10), ("c0", 13, 15), ("c0", 16, 18)]
    # a rise from the stream's first frame starts at frame 0; min_duration counts the backtracked length
    Q = np.array([0.4, 0.45, 0.9, 0.1], np.float32)[:, None]
    assert _frames(_run(Q, _cfg(onset=[0.5], offset=[0.3], min_duration=[2 * SPF + TAIL], backtrack=[1]), 1)) \
        == [("c0", 0, 3)]
    assert _run(Q, _cfg(onset=[0.5], offset=[0.3], min_duration=[2 * SPF + TAIL]), 1) == []


def test_lead_moves_starts_earlier_but_never_into_the_previous_event_nor_before_zero():
    # events at frames 3..10, 13..20 (a 2-frame gap) and 40..50, plus a 1-frame blip at 30 that min_duration drops
    p = [0.1] * 3 + [0.9] * 7 + [0.1] * 3 + [0.9] * 7 + [0.1] * 10 + [0.9] + [0.1] * 9 + [0.9] * 10 + [0.1] * 3
    P = np.array(p, np.float32)[:, None]
    kw = {"onset": [0.5], "offset": [0.3], "min_duration": [3 * SPF + TAIL]}
    plain = _run(P, _cfg(**kw), 1)
    assert _frames(plain) == [("c0", 3, 10), ("c0", 13, 20), ("c0", 40, 50)]
    led = _run(P, _cfg(**kw, lead=[5 * SPF]), 1)
    assert [(e.end, e.peak_confidence) for e in led] == [(e.end, e.peak_confidence) for e in plain]
    # the first clamps at 0, the second at the first's end; the third moves 5 frames (the dropped blip at
    # frame 30 bounds nothing: it was never reported)
    assert [e.start for e in led] == [0.0, plain[0].end, plain[2].start - 5 * SPF]
    # min_duration judges the detected length: a 2-frame event stays dropped however large the lead
    short = np.array([0.1] * 5 + [0.9] * 2 + [0.1] * 3, np.float32)[:, None]
    assert _run(short, _cfg(**kw, lead=[1.0]), 1) == []
    # the same events for any chunking (the lead is applied as each event closes)
    assert [(e.start, e.end) for e in _run(P, _cfg(**kw, lead=[5 * SPF]), 7)] == [(e.start, e.end) for e in led]


@pytest.mark.parametrize("backtrack", [[0, 0, 0], [1, 1, 0]])
@pytest.mark.parametrize("seed", range(6))
def test_tracker_equals_the_reference_for_any_chunking(seed, backtrack):
    rng = np.random.default_rng(seed)
    T, C = 700, 3
    # a slowly varying random walk crosses the thresholds often, with dips of every length
    P = np.clip(0.5 + np.cumsum(rng.normal(0, 0.08, (T, C)), 0) % 1.2 - 0.35, 0, 1).astype(np.float32)
    cfg = _cfg(C, onset=[0.6, 0.5, 0.7], offset=[0.4, 0.5, 0.2], min_duration=[0.0, 0.1, 0.3],
               min_gap=[0.0, 3 * SPF, 11 * SPF], smoothing=[0.0, 5 * SPF, 2 * SPF], backtrack=backtrack)
    want = reference(P, cfg)
    assert len(want) > 10
    for chunks in (1, 7, 333, T):
        got = sorted((e.label, round(e.start / SPF), round((e.end - TAIL) / SPF)) for e in _run(P, cfg, chunks))
        assert got == want, chunks


def test_defaults_keep_the_plain_hysteresis():
    rng = np.random.default_rng(1)
    P = rng.random((300, 2)).astype(np.float32)
    cfg = _cfg(2, onset=[0.7, 0.9], offset=[0.3, 0.5], min_duration=[0.0, 0.05])
    assert cfg.smoothing_frames == [1, 1] and cfg.gap_frames == [1, 1]
    assert sorted(_frames(_run(P, cfg, 5))) == reference(P, cfg)


def test_config_validation_and_optional_keys(tmp_path):
    with pytest.raises(AudioError, match="min_gap"):
        _cfg(min_gap=[-0.1])
    with pytest.raises(AudioError, match="min_gap"):
        _cfg(min_gap=[61.0])
    with pytest.raises(AudioError, match="smoothing"):
        _cfg(smoothing=[-1.0])
    with pytest.raises(AudioError, match="smoothing"):
        _cfg(smoothing=[1001 * SPF])                    # the window would exceed 1000 frames
    with pytest.raises(AudioError, match="smoothing"):
        _cfg(smoothing=[float("nan")])
    with pytest.raises(AudioError, match="min_gap"):
        AudioConfig.from_dict({**_cfg().to_dict(), "min_gap": 0.3})   # not a list
    for bad in ([2], [0.5], [True], ["1"]):
        with pytest.raises(AudioError, match="backtrack"):
            _cfg(backtrack=bad)
    for bad in ([-0.01], [5.01], [float("nan")], [True], ["0.2"]):
        with pytest.raises(AudioError, match="lead"):
            _cfg(lead=bad)
    with pytest.raises(AudioError, match="keys"):
        AudioConfig.from_dict({**_cfg().to_dict(), "median": [1]})
    # unused options are not written, so files without them look exactly as before; old dicts load
    plain = _cfg()
    assert set(plain.to_dict()) == {"frontend", "labels", "onset", "offset", "min_duration"}
    assert AudioConfig.from_dict(plain.to_dict()) == plain
    used = _cfg(min_gap=[0.3], smoothing=[0.05], backtrack=[1], lead=[0.2])
    assert set(used.to_dict()) == set(plain.to_dict()) | set(AudioConfig.OPTIONAL)
    assert AudioConfig.from_dict(json.loads(json.dumps(used.to_dict()))) == used


def test_saved_and_loaded_with_the_model(tmp_path):
    spec = el.random_model([{"kind": "dense", "output_size": 2, "activation": "sigmoid"}], input_size=FE.n_mels)
    cfg = AudioConfig(frontend=FE, labels=["a", "b"], min_gap=[0.3, 0.0], smoothing=[0.1, 0.05], backtrack=[0, 1])
    m = el.Model(spec)
    path = tmp_path / "m.elstm"
    el.save(m, path, audio=cfg)
    assert el.load(path).audio == cfg
    # a tampered value is refused on load with the artifact error, as the other audio fields are
    data = path.read_bytes()
    i = data.find(b'\\"min_gap\\":[0.3')
    assert i > 0
    bad = tmp_path / "bad.elstm"
    bad.write_bytes(data.replace(b'\\"min_gap\\":[0.3', b'\\"min_gap\\":[-10'))   # same length: header intact
    with pytest.raises(ArtifactError, match="min_gap"):
        el.load(bad)
