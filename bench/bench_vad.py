#!/usr/bin/env python
"""silero-vad through edgelstm against silero's own stack, on recorded speech and ambience, in one run.

    python bench/bench_vad.py [--chunks 10000] [--json bench/results/vad_silero.json]

Audio: speech clips of the TEST packages (recordings from Debian packages, fetched by
scripts/fetch_real_audio.py into ~/.cache/edgelstm/real_audio) alternating with ambience and quiet gaps; int8
calibration uses TRAIN packages only. Without that cache: alsa-utils' voice clips (apt-get install alsa-utils)
over generated noise. Measured:
  accuracy   per 512-sample chunk: edgelstm float32 vs onnxruntime on silero_vad.onnx (state fed back, as
             silero's OnnxWrapper calls it), both vs a float64 forward of the imported model (tests/naive.py);
             int8 vs float32 probabilities and decisions at 0.5
  segments   edgelstm.audio.VAD (float and int8) vs silero's get_speech_timestamps(OnnxWrapper) on the stream
  speed      per chunk (CPU time, best of repeats): onnxruntime's session.run on silero's streaming interface
             (1 thread), silero's OnnxWrapper.__call__, edgelstm Stream.step (float, int8); whole stream:
             silero's get_speech_timestamps vs edgelstm's VAD.stream
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
SR, WINDOW, CONTEXT = 16000, 512, 64
CACHE = Path(os.environ.get("EDGELSTM_REAL_AUDIO", Path.home() / ".cache" / "edgelstm" / "real_audio")) / "clips"


def _clips(split: str, label: str, limit: int) -> list[np.ndarray]:
    """Recorded clips of one label from the packages of one split (the fetch script's cache)."""
    out = []
    for meta in sorted(CACHE.glob("*.json")):
        rows = [r for r in json.loads(meta.read_text()) if r["split"] == split and r["label"] == label]
        if not rows:
            continue
        audio = np.load(meta.with_suffix(".npz"))["audio"]          # int16 PCM
        for r in rows[:max(1, limit // 4)]:
            out.append(audio[r["offset"]:r["offset"] + r["samples"]].astype(np.float32) / 32768.0)
            if len(out) >= limit:
                return out
    return out


def _fallback(rng) -> tuple[list, list]:
    voices = sorted(Path("/usr/share/sounds/alsa").glob("*.wav"))
    if not voices:
        raise SystemExit("no recorded audio: run scripts/fetch_real_audio.py, or apt-get install alsa-utils")
    from edgelstm.audio import read_wav
    speech = [np.concatenate(list(read_wav(v, sr=SR))) for v in voices if "Noise" not in v.name]
    noise = [(rng.standard_normal(SR * 4) * rng.uniform(0.002, 0.05)).astype(np.float32) for _ in range(8)]
    return speech, noise


def build_stream(split: str, chunks: int, seed: int) -> np.ndarray:
    """Speech, ambience and quiet gaps in turn, at least ``chunks`` windows long."""
    rng = np.random.default_rng(seed)
    speech, ambience = _clips(split, "speech", 400), _clips(split, "background", 100)
    if not speech or not ambience:
        speech, ambience = _fallback(rng)
    parts, n = [], 0
    while n < chunks * WINDOW:
        s = speech[rng.integers(len(speech))]
        a = ambience[rng.integers(len(ambience))]
        a = a[:int(rng.uniform(1, 5) * SR)] * rng.uniform(0.3, 1.0)
        gap = (rng.standard_normal(int(rng.uniform(0.2, 1.5) * SR)) * 1e-3).astype(np.float32)
        for p in (s * rng.uniform(0.3, 1.0), gap, a, gap):
            parts.append(p.astype(np.float32))
            n += p.size
    return np.concatenate(parts)[:chunks * WINDOW]


def ort_probs(sess, audio: np.ndarray) -> np.ndarray:
    state, ctx, out = np.zeros((2, 1, 128), np.float32), np.zeros(CONTEXT, np.float32), []
    sr = np.array(SR, np.int64)
    for w in audio.reshape(-1, WINDOW):
        x = np.concatenate([ctx, w])[None]
        p, state = sess.run(None, {"input": x, "state": state, "sr": sr})
        ctx = x[0, -CONTEXT:]
        out.append(float(p.ravel()[0]))
    return np.array(out, np.float32)


def best_cpu_per_call(fn, xs, repeats=3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for x in xs:
            fn(x)
        best = min(best, (time.process_time() - t) / len(xs))
    return best * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10000)
    ap.add_argument("--timing-chunks", type=int, default=2000)
    ap.add_argument("--json")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    import edgelstm as el
    import naive
    from edgelstm.audio.vad import VAD, silero_model, silero_path
    from silero_vad.utils_vad import OnnxWrapper, get_speech_timestamps
    torch.set_num_threads(1)
    path = str(silero_path())
    audio = build_stream("test", args.chunks, seed=1)
    calib = build_stream("train", 1500, seed=2)
    real = CACHE.is_dir() and any(CACHE.glob("*.json"))
    print(f"audio: {audio.size / SR:.0f} s ({audio.size // WINDOW} chunks) from "
          f"{'test packages (recorded speech and ambience)' if real else 'alsa voices over noise'}")

    f32 = silero_model(sr=SR)
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    frames = audio.reshape(-1, WINDOW)
    p_ort = ort_probs(sess, audio)
    p_f32 = f32.stream().step_many(frames)[:, 0]
    # float64 forward of the same imported layers (no Context layer: it feeds the windows with their context)
    full = np.concatenate([np.zeros(CONTEXT, np.float32), audio])
    win = np.stack([full[i * WINDOW:i * WINDOW + WINDOW + CONTEXT] for i in range(frames.shape[0])])
    inner = el.ModelSpec(layers=f32.spec.layers[1:])
    p_f64 = naive.ref_forward_f64(inner, win[None])[0][0, :, 0]
    t0 = time.perf_counter()
    q = el.quantize(f32, calibration=calib.reshape(-1, WINDOW), progress=False)
    quant_s = time.perf_counter() - t0
    p_q = q.stream().step_many(frames)[:, 0]
    acc = {"chunks": int(frames.shape[0]), "f32_vs_ort_max": float(np.abs(p_f32 - p_ort).max()),
           "f32_vs_f64_max": float(np.abs(p_f32 - p_f64).max()), "ort_vs_f64_max": float(np.abs(p_ort - p_f64).max()),
           "int8_vs_f32_max": float(np.abs(p_q - p_f32).max()), "int8_vs_f32_mean": float(np.abs(p_q - p_f32).mean()),
           "int8_decisions_equal": float(np.mean((p_q >= 0.5) == (p_f32 >= 0.5))),
           "f32_decisions_equal_ort": float(np.mean((p_f32 >= 0.5) == (p_ort >= 0.5))),
           "speech_fraction_ort": float(np.mean(p_ort >= 0.5)), "quantize_seconds": quant_s}
    print(json.dumps(acc, indent=1))

    wrapper = OnnxWrapper(path, force_onnx_cpu=True)
    t0 = time.process_time()
    theirs = get_speech_timestamps(torch.from_numpy(audio), wrapper, sampling_rate=SR)
    silero_whole = time.process_time() - t0
    seg = {}
    for name, model in (("f32", f32), ("int8", q)):
        vad = VAD(model, sr=SR)
        t0 = time.process_time()
        ours = [s for s in vad.stream([audio])]
        seg[name + "_seconds"] = time.process_time() - t0
        a = [(s.start, s.end) for s in ours]
        b = [(d["start"], d["end"]) for d in theirs]
        worst = max((max(abs(x[0] - y[0]), abs(x[1] - y[1])) for x, y in zip(a, b)), default=0) \
            if len(a) == len(b) else None
        seg[name] = {"segments": len(a), "silero_segments": len(b), "max_boundary_diff_samples": worst,
                     "equal": a == b}
    seg["silero_get_speech_timestamps_seconds"] = silero_whole
    print(json.dumps(seg, indent=1))

    xs = frames[:args.timing_chunks]
    sr_t = np.array(SR, np.int64)
    state = {"s": np.zeros((2, 1, 128), np.float32)}
    ctx = np.zeros((1, WINDOW + CONTEXT), np.float32)

    def ort_call(x):
        ctx[0, CONTEXT:] = x
        out, state["s"] = sess.run(None, {"input": ctx, "state": state["s"], "sr": sr_t})
        ctx[0, :CONTEXT] = ctx[0, -CONTEXT:]

    wrapper.reset_states()
    xt = [torch.from_numpy(x) for x in xs]
    speed = {"onnxruntime_session_run_us": best_cpu_per_call(ort_call, xs),
             "silero_onnxwrapper_us": best_cpu_per_call(lambda x: wrapper(x, SR), xt)}
    for name, model in (("f32", f32), ("int8", q)):
        s = model.stream()
        s.step(xs[0])
        speed[f"edgelstm_{name}_step_us"] = best_cpu_per_call(s.step, xs)
    for name in ("f32", "int8"):
        speed[f"ratio_ort_over_{name}"] = speed["onnxruntime_session_run_us"] / speed[f"edgelstm_{name}_step_us"]
        speed[f"whole_stream_silero_over_{name}"] = silero_whole / seg[name + "_seconds"]
    print(json.dumps(speed, indent=1))
    if args.json:
        from edgelstm.benchmark import machine_info, write_json
        write_json(Path(args.json), {"machine": machine_info(), "audio_seconds": audio.size / SR,
                                     "recorded": bool(real), "accuracy": acc, "segments": seg, "speed": speed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
