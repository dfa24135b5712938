#!/usr/bin/env python
"""Audio tagging speed and memory, side by side with the obvious peer pipeline, in one run.

    nice -n 10 python bench/bench_audio_tag.py [--minutes 10] [--stream-minutes 60] [--json OUT.json]
                                               [--model INT8.elstm --model-f32 F32.elstm] [--also OTHER.elstm ...]

--also: ``edgelstm tag`` with other models on the same clip in the same run (e.g. the previous bundled tagger).

1. Builds a --minutes long 16 kHz WAV from the bundled sample clips (each repeated with a random gain and
   background noise) in a temp dir.
2. ours:  the whole ``edgelstm tag CLIP.wav --json`` process (start-up, model load, JIT cache load included),
   wall clock from a subprocess -> real-time factor.
3. peer:  librosa log-mel (melspectrogram + power_to_db, same parameters, whole file read with the stdlib
   ``wave``) + LiteRT running the same int8 model exported by ``to_tflite`` (fused sequence graph, 1000 frames
   per invoke, state kept in its variable tensors), also a whole subprocess -> real-time factor.  A model that
   starts with front-end layers (context + Conv1D: the CRNN tagger) cannot go to TFLite whole: the peer then
   computes those layers in numpy over the whole file (one matmul, float weights of MODEL_F32) and runs the
   recurrent and dense layers in LiteRT, int8 (quantized on the same calibration frames), prepared before timing.
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


PEER = textwrap.dedent('''
    import sys, time, wave, json
    t0 = time.perf_counter()
    import numpy as np, librosa
    from ai_edge_litert.interpreter import Interpreter
    import edgelstm as el
    import os, tempfile
    from edgelstm.export import to_tflite
    m = el.load(sys.argv[2]); fe = m.audio.frontend
    T = 1000
    if len(sys.argv) > 3:   # front-end layers in numpy, the rest prepared as TFLite (see the docstring)
        front = np.load(os.path.join(sys.argv[3], "front.npz")); path = os.path.join(sys.argv[3], "rest.tflite")
        m = el.load(os.path.join(sys.argv[3], "rest.elstm"))
    else:
        front = None
        path = os.path.join(tempfile.mkdtemp(), "m.tflite"); to_tflite(m, path)
    it = Interpreter(model_path=path, num_threads=1)
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    it.resize_tensor_input(i_in, [1, T, m.input_size]); it.allocate_tensors()
    with wave.open(sys.argv[1]) as w:
        y = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    S = librosa.feature.melspectrogram(y=y, sr=fe.sr, n_fft=fe.n_fft, hop_length=fe.hop_length, n_mels=fe.n_mels,
                                       fmin=fe.fmin, fmax=fe.fmax, center=False, power=2.0)
    X = librosa.power_to_db(S, ref=1.0, amin=fe.amin, top_db=None).T.astype(np.float32)
    if front is not None:   # context (zeros before the start) + Conv1D + ReLU over every frame at once
        w, b = front["w"], front["b"]                       # (C_out, K, n_mels): window frames oldest first
        K = w.shape[1]
        Xp = np.concatenate([np.zeros((K - 1, X.shape[1]), np.float32), X])
        win = np.lib.stride_tricks.sliding_window_view(Xp, (K, X.shape[1]))[:, 0].reshape(X.shape[0], -1)
        X = np.maximum(win @ w.reshape(w.shape[0], -1).T + b, 0).astype(np.float32)
    sc, zp = m.quant.act[0]; osc, ozp = m.quant.act[-1]
    Xq = np.clip(np.round(X / sc) + zp, -128, 127).astype(np.int8)
    n = -(-Xq.shape[0] // T) * T
    Xq = np.concatenate([Xq, np.full((n - Xq.shape[0], Xq.shape[1]), zp, np.int8)])
    P = []
    for a in range(0, n, T):
        it.set_tensor(i_in, Xq[None, a:a + T]); it.invoke(); P.append(it.get_tensor(i_out)[0].copy())
    P = (np.concatenate(P)[:X.shape[0]].astype(np.float32) - ozp) * osc
    on = int((P >= 0.5).sum())
    print(json.dumps({"wall": time.perf_counter() - t0, "frames": int(X.shape[0]), "on": on}))
''')


def peer_prep(model_f32, calibration, d):
    """For a model with front-end layers: front.npz (the Conv1D's float weights), rest.elstm (its recurrent and
    dense layers quantized on the calibration frames pushed through the front layers) and rest.tflite."""
    import edgelstm as el
    from edgelstm.export import to_tflite
    f32 = el.load(model_f32)
    kinds = [getattr(layer, "kind", "") for layer in f32.spec.layers]
    if kinds[:2] != ["context", "conv1d"] or "context" in kinds[2:] or "conv1d" in kinds[2:]:
        raise SystemExit(f"peer: front-end layers {kinds} not supported (context + one Conv1D)")
    conv = f32.spec.layers[1]
    np.savez(os.path.join(d, "front.npz"), w=conv.directions[0]["w"], b=conv.directions[0]["b"])
    rest = el.Model(el.ModelSpec(layers=f32.spec.layers[2:]))
    calib = np.load(calibration).astype(np.float32)
    calib = calib.reshape(-1, calib.shape[-1])
    K, M = conv.kernel_size, calib.shape[1]
    win = np.lib.stride_tricks.sliding_window_view(np.concatenate([np.zeros((K - 1, M)), calib]), (K, M))
    H = np.maximum(win[:, 0].reshape(calib.shape[0], -1) @ conv.directions[0]["w"].reshape(conv.out_channels, -1).T
                   + conv.directions[0]["b"], 0).astype(np.float32)
    q = el.quantize(rest, calibration=H, progress=False)
    el.save(q, os.path.join(d, "rest.elstm"))
    to_tflite(q, os.path.join(d, "rest.tflite"))
    return d


def tag_process(clip, model):
    """Wall seconds of a whole `edgelstm tag CLIP --json` process (after one warm run) and its summary."""
    cmd = [PY, "-m", "edgelstm", "tag", clip, "--json", "--model", str(model)]
    subprocess.run(cmd, check=True, capture_output=True)
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, json.loads(out.splitlines()[-1])["summary"]


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
    ap.add_argument("--model-f32", help="its float source (default: the bundled one's)")
    ap.add_argument("--calibration", help="log-mel frames for the peer's int8 (default: the bundled ones)")
    ap.add_argument("--also", nargs="*", default=[], help="more taggers for edgelstm tag on the same clip")
    a = ap.parse_args()
    from edgelstm.data import AUDIO_CALIBRATION, AUDIO_MODEL, AUDIO_MODEL_F32
    model, model_f32 = a.model or AUDIO_MODEL, a.model_f32 or (AUDIO_MODEL_F32 if a.model is None else None)
    import edgelstm as el
    front = any(getattr(layer, "kind", "") == "context" for layer in el.load(model).spec.layers)
    res = {"model": str(model)}
    with tempfile.TemporaryDirectory() as d:
        clip = os.path.join(d, "clip.wav")
        secs = make_clip(clip, a.minutes)
        peer_args = [clip, str(model)]
        if front:
            if model_f32 is None:
                raise SystemExit("--model has front-end layers: give --model-f32 for the peer")
            peer_args.append(peer_prep(model_f32, a.calibration or AUDIO_CALIBRATION, d))
        # one warm run each so both pipelines start from a warm OS file cache / Numba disk cache
        ours, summ = tag_process(clip, model)
        subprocess.run([PY, "-c", PEER, *peer_args], check=True, capture_output=True)
        t = time.perf_counter()
        peer_out = json.loads(subprocess.run([PY, "-c", PEER, *peer_args], check=True,
                                             capture_output=True, text=True).stdout)
        peer = time.perf_counter() - t
        also = {str(m): tag_process(clip, m) for m in a.also}
    res["clip_seconds"] = secs
    res["ours"] = {"process_wall_s": ours, "rtf": secs / ours, "events": summ["events"]}
    res["peer_librosa_litert"] = {"process_wall_s": peer, "rtf": secs / peer, "frames": peer_out["frames"],
                                  "front_end_layers_in_numpy": front}
    res["also"] = {m: {"process_wall_s": w, "rtf": secs / w, "events": s["events"]} for m, (w, s) in also.items()}
    res["streaming_latency"] = latency(model)
    res["memory"] = memory(model, a.stream_minutes)
    print(json.dumps(res, indent=1))
    print(f"\n{a.minutes}-min clip: edgelstm tag {secs / ours:,.0f}x real time ({ours:.2f} s process), "
          f"librosa + LiteRT {secs / peer:,.0f}x ({peer:.2f} s process); ours/peer speed {peer / ours:.2f}x")
    for m, r in res["also"].items():
        print(f"  edgelstm tag --model {m}: {r['rtf']:,.0f}x real time ({r['process_wall_s']:.2f} s process)")
    if a.json:
        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
