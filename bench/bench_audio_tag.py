#!/usr/bin/env python
"""Audio tagging speed and memory, side by side with the obvious peer pipeline, in one run.

    nice -n 10 python bench/bench_audio_tag.py [--minutes 10] [--stream-minutes 60] [--json OUT.json]
                                               [--model TAGGER.elstm] [--also OTHER.elstm ...]
                                               [--peer-step bench/fixtures/crnn_tagger_step_int8.tflite]
                                               [--repeats 5]

--model: the int8 tagger to measure (default: the bundled one); --also: ``edgelstm tag`` with other taggers on
the same clip in the same run (e.g. the previous bundled one, scripts/lstm_tagger_out/audio_tagger.elstm).
Every whole-process wall time below is the median of --repeats rounds; each round runs every pipeline once,
interleaved, after one warm run each.

1. Builds a --minutes long 16 kHz WAV from the bundled sample clips (each repeated with a random gain and
   background noise) in a temp dir.
2. ours:  the whole ``edgelstm tag CLIP.wav --json`` process (start-up, model load, JIT cache load included),
   wall clock from a subprocess -> real-time factor.
3. peer:  librosa log-mel (melspectrogram + power_to_db, same parameters, whole file read with the stdlib
   ``wave``) + LiteRT running the same int8 model exported by ``to_tflite`` (fused sequence graph, 1000 frames
   per invoke, state kept in its variable tensors; a model with a context layer, like the CRNN tagger, takes
   every state as an input and gives it back as an output: the peer carries them from invoke to invoke), also a
   whole subprocess -> real-time factor.
   With --peer-step FILE also the same front end + a TF-converter step graph of the model, one frame per
   invoke with its context and h/c carried (bench/fixtures/make_litert_tagger.py): LiteRT's fastest path for
   the tagger (bench/bench_tagger_peer_paths.py), which agrees with edgelstm's int8 on fewer decisions.
4. per-frame latency of the streaming path: push hop_length samples at a time (one new frame per push) through
   ``Tagger.stream`` -> median / p99 µs per frame (front end + model + event tracker).
5. memory: --stream-minutes of generated audio pushed through ``Tagger.stream`` in 1 s chunks; peak RSS
   (ru_maxrss) at 10 minutes and at the end.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

from edgelstm.benchmark import write_json

PY = sys.executable


def make_clip(path, minutes, seed=0):
    from edgelstm.audio import read_wav, write_wav
    from edgelstm.data import DATA
    clips = [np.concatenate(list(read_wav(DATA / f"sample_{k}.wav", sr=16000))) for k in range(3)]
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    while n < minutes * 60 * 16000:
        c = clips[int(rng.integers(0, 3))] * 10 ** (rng.uniform(-6, 3) / 20)
        c = c + rng.standard_normal(c.size) * 10 ** (rng.uniform(-70, -45) / 20)
        parts.append(np.clip(c, -1, 1))
        n += c.size
    y = np.concatenate(parts)[: minutes * 60 * 16000]
    write_wav(path, y, sr=16000)
    return y.size / 16000


PEER_FRONT = textwrap.dedent('''
    import sys, time, wave, json
    t0 = time.perf_counter()
    import numpy as np, librosa
    from ai_edge_litert.interpreter import Interpreter
    import edgelstm as el
    m = el.load(sys.argv[2]); fe = m.audio.frontend

    def logmel():
        with wave.open(sys.argv[1]) as w:
            y = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        S = librosa.feature.melspectrogram(y=y, sr=fe.sr, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                           n_mels=fe.n_mels, fmin=fe.fmin, fmax=fe.fmax, center=False, power=2.0)
        return librosa.power_to_db(S, ref=1.0, amin=fe.amin, top_db=None).T.astype(np.float32)
''')

PEER = PEER_FRONT + textwrap.dedent('''
    import os, tempfile
    from edgelstm.export import to_tflite
    T = 1000
    path = os.path.join(tempfile.mkdtemp(), "m.tflite"); to_tflite(m, path)
    it = Interpreter(model_path=path, num_threads=1)
    ins, outs = it.get_input_details(), it.get_output_details()
    i_in, i_out = ins[0]["index"], outs[0]["index"]
    it.resize_tensor_input(i_in, [1, T, m.input_size]); it.allocate_tensors()
    # states as inputs/outputs (a context layer): start at each tensor's zero point (a zero state), then carried
    out_idx = {d["name"]: d["index"] for d in outs}
    carry = [(d["index"], out_idx.get(d["name"] + "_next", out_idx.get(d["name"]))) for d in ins[1:]]
    for d in ins[1:]:
        it.set_tensor(d["index"], np.full(d["shape"], d["quantization"][1], d["dtype"]))
    X = logmel()
    sc, zp = m.quant.act[0]; osc, ozp = m.quant.act[-1]
    Xq = np.clip(np.round(X / sc) + zp, -128, 127).astype(np.int8)
    n = -(-Xq.shape[0] // T) * T
    Xq = np.concatenate([Xq, np.full((n - Xq.shape[0], Xq.shape[1]), zp, np.int8)])
    P = []
    for a in range(0, n, T):
        it.set_tensor(i_in, Xq[None, a:a + T]); it.invoke(); P.append(it.get_tensor(i_out)[0].copy())
        for i, o in carry:
            it.set_tensor(i, it.get_tensor(o))
    P = (np.concatenate(P)[:X.shape[0]].astype(np.float32) - ozp) * osc
    on = int((P >= 0.5).sum())
    print(json.dumps({"wall": time.perf_counter() - t0, "frames": int(X.shape[0]), "on": on}))
''')


# the same front end + a TF-converter step graph of the model (bench/fixtures/make_litert_tagger.py), one frame per
# invoke with ctx/h/c carried: LiteRT's fastest path for the tagger (bench/bench_tagger_peer_paths.py), whose
# int8 cell state costs agreement with edgelstm's (reported there)
PEER_STEP = PEER_FRONT + textwrap.dedent('''
    it = Interpreter(model_path=sys.argv[3], num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    byname = {d["name"].split("serving_default_")[-1].split(":")[0]: d for d in ins}
    d_y = next(d for d in outs if d["shape"][-1] == len(m.audio.labels))
    carry = []
    for name in ("ctx", "h", "c"):      # each state output has its input's shape and quantization
        d = byname[name]
        (o,) = [e for e in outs if e["shape"][-1] == d["shape"][-1] and e["quantization"] == d["quantization"]]
        it.set_tensor(d["index"], np.full(d["shape"], d["quantization"][1], np.int8))
        carry.append((d["index"], o["index"]))
    X = logmel()
    sc, zp = byname["x"]["quantization"]
    Xq = np.clip(np.round(X / sc) + zp, -128, 127).astype(np.int8)[:, None, :]
    i_x, i_y = byname["x"]["index"], d_y["index"]
    osc, ozp = d_y["quantization"]
    P = np.empty((len(Xq), d_y["shape"][-1]), np.int8)
    set_t, get_t, invoke = it.set_tensor, it.get_tensor, it.invoke
    (i0, o0), (i1, o1), (i2, o2) = carry
    for t in range(len(Xq)):
        set_t(i_x, Xq[t]); invoke(); P[t] = get_t(i_y)[0]
        set_t(i0, get_t(o0)); set_t(i1, get_t(o1)); set_t(i2, get_t(o2))
    on = int(((P.astype(np.float32) - ozp) * osc >= 0.5).sum())
    print(json.dumps({"wall": time.perf_counter() - t0, "frames": int(X.shape[0]), "on": on}))
''')


def peer_process(script, *args):
    """A whole peer process: () -> (wall seconds, its JSON line)."""
    cmd = [PY, "-c", script, *map(str, args)]

    def once():
        t = time.perf_counter()
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        return time.perf_counter() - t, out
    return once


def tag_process(clip, model):
    """A whole `edgelstm tag CLIP --json --model MODEL` process: () -> (wall seconds, its summary)."""
    cmd = [PY, "-m", "edgelstm", "tag", clip, "--json", "--model", str(model)]

    def once():
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return time.perf_counter() - t, json.loads(out.splitlines()[-1])["summary"]
    return once


def timed_rounds(pipelines: dict, repeats: int) -> dict:
    """name -> (median wall seconds, all of them, last output).  One warm run each (OS file cache, Numba disk
    cache), then `repeats` rounds running every pipeline once, interleaved, so a change in the machine's load
    falls on all of them alike."""
    for once in pipelines.values():
        once()
    walls, outs = {k: [] for k in pipelines}, {}
    for _ in range(repeats):
        for k, once in pipelines.items():
            w, outs[k] = once()
            walls[k].append(w)
    return {k: (float(np.median(walls[k])), walls[k], outs[k]) for k in pipelines}


def latency(model, frames=3000):
    from edgelstm.audio import Tagger
    tg = Tagger(model)
    hop = tg.frontend.hop_length
    rng = np.random.default_rng(1)
    y = rng.standard_normal(hop * (frames + 2)) * 0.05
    ns = []
    def chunks():
        for a in range(0, y.size - hop + 1, hop):
            t = time.perf_counter_ns()
            yield y[a:a + hop]
            ns.append(time.perf_counter_ns() - t)  # time from this push until the next chunk is asked for
    for _ in tg.stream(chunks()):
        pass
    us = np.array(ns[10:]) / 1e3
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)), "frames": len(us)}


def memory(model, minutes):
    from edgelstm.audio import Tagger
    tg = Tagger(model)
    rng = np.random.default_rng(2)
    base = rng.standard_normal(16000) * 0.05
    rss = {}
    def chunks():
        for s in range(minutes * 60):
            yield base * (1 + 0.5 * np.sin(s))
            if s + 1 in (600, minutes * 60):
                rss[f"{(s + 1) // 60} min"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_ev = sum(1 for _ in tg.stream(chunks()))
    return {"peak_rss_mib": rss, "events": n_ev}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--stream-minutes", type=int, default=60)
    ap.add_argument("--json")
    ap.add_argument("--model", help="int8 tagger (default: the bundled one)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds; each pipeline's median is reported")
    ap.add_argument("--also", nargs="*", default=[], help="more taggers for edgelstm tag on the same clip")
    ap.add_argument("--peer-step", help="also the peer with this TF-converter step graph of the same model "
                                        "(bench/fixtures/crnn_tagger_step_int8.tflite) in place of to_tflite's file")
    a = ap.parse_args()
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    from edgelstm.data import AUDIO_MODEL
    model = a.model or AUDIO_MODEL
    res = {"model": os.path.relpath(model)}
    with tempfile.TemporaryDirectory() as d:
        clip = os.path.join(d, "clip.wav")
        secs = make_clip(clip, a.minutes)
        pipes = {"ours": tag_process(clip, model), "peer": peer_process(PEER, clip, model)}
        if a.peer_step:
            pipes["step"] = peer_process(PEER_STEP, clip, model, a.peer_step)
        pipes.update({str(m): tag_process(clip, m) for m in a.also})
        t = timed_rounds(pipes, a.repeats)
    res["clip_seconds"] = secs
    res["repeats"] = a.repeats
    ours, _, summ = t["ours"]
    peer, _, peer_out = t["peer"]
    res["ours"] = {"process_wall_s": ours, "all_s": t["ours"][1], "rtf": secs / ours, "events": summ["events"]}
    res["peer_librosa_litert"] = {"process_wall_s": peer, "all_s": t["peer"][1], "rtf": secs / peer,
                                  "frames": peer_out["frames"]}
    if a.peer_step:
        step = t["step"]
        res["peer_librosa_litert_converter_step"] = {"tflite": os.path.relpath(a.peer_step), "process_wall_s": step[0],
                                                     "all_s": step[1], "rtf": secs / step[0],
                                                     "frames": step[2]["frames"]}
    res["also"] = {str(m): {"process_wall_s": t[str(m)][0], "all_s": t[str(m)][1], "rtf": secs / t[str(m)][0],
                            "events": t[str(m)][2]["events"]} for m in a.also}
    res["streaming_latency"] = latency(model)
    res["memory"] = memory(model, a.stream_minutes)
    print(json.dumps(res, indent=1))
    print(f"\n{a.minutes}-min clip: edgelstm tag {secs / ours:,.0f}x real time ({ours:.2f} s process), "
          f"librosa + LiteRT {secs / peer:,.0f}x ({peer:.2f} s process); ours/peer speed {peer / ours:.2f}x")
    if a.peer_step:
        step = t["step"]
        print(f"  librosa + LiteRT, converter step graph {a.peer_step} (XNNPACK): {secs / step[0]:,.0f}x "
              f"({step[0]:.2f} s process); ours/peer speed {step[0] / ours:.2f}x")
    for m, r in res["also"].items():
        print(f"  edgelstm tag --model {m}: {r['rtf']:,.0f}x real time ({r['process_wall_s']:.2f} s process)")
    if a.json:
        write_json(a.json, res)
    return 0

if __name__ == "__main__":
    sys.exit(main())
