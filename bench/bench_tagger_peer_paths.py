#!/usr/bin/env python
"""Which LiteRT path is the peer's fastest for the bundled int8 CRNN audio tagger?  One run, one thread.

    PYTHONPATH=. /work/venv/ci/bin/python bench/bench_tagger_peer_paths.py [--minutes 10] [--repeats 5]
                                                                           [--json bench/results/tagger_peer_paths.json]

Needs the converter-made graphs from bench/fixtures/make_litert_tagger.py (TF venv).  On the log-mel frames of
one --minutes clip (bench_audio_tag.make_clip: the bundled sample clips repeated with gain and noise; librosa
melspectrogram + power_to_db exactly as bench_audio_tag's PEER does; that log-mel is timed too), each path's
model time per frame, median of --repeats whole passes over all frames (inputs quantized beforehand, outside
the timing, with each graph's own input quantization; outputs are read back and states carried inside it):

- to_tflite: our exporter's fused sequence graph, 1000 frames per invoke, states carried from invoke to invoke
  as bench_audio_tag's PEER does;
- converter seq: bench/fixtures/crnn_tagger_seq_int8.tflite, 1000 frames per invoke, conv context carried; its
  LSTM starts from zero state at every invoke (the state-carrying variant crashes the TF 2.21 calibrator);
- converter step: bench/fixtures/crnn_tagger_step_int8.tflite, one frame per invoke from Python, ctx/h/c carried
  (the graph's state outputs have the same int8 quantization as its state inputs: carried as raw int8);
- each LiteRT path with the default op resolver (XNNPACK delegate on) and BUILTIN_WITHOUT_DEFAULT_DELEGATES;
- edgelstm: m.stream().step_many(X_float) over all frames (float in: its input quantization is inside the time),
  after one warm call.

Agreement: max |p - p_ours| and the share of frame x class decisions at 0.5 equal to our int8 stream's (and the
same against the float model's stream, for context).  Threads: NUMBA/OMP/OPENBLAS/MKL = 1, num_threads=1.
"""
import os

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from edgelstm.benchmark import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
FIX = ROOT / "bench" / "fixtures"
T = 1000


def quantize(X, q):
    sc, zp = q
    return np.clip(np.round(X / sc) + zp, -128, 127).astype(np.int8)


def interp(path, resolver):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {} if resolver == "default" else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return Interpreter(model_path=str(path), num_threads=1, **kw)


def run_seq(path, resolver, X, ours_names):
    """A fused sequence graph, T frames per invoke; every state input carried from its output.  Returns
    (a function doing one timed pass -> probabilities, setup info)."""
    it = interp(path, resolver)
    ins, outs = it.get_input_details(), it.get_output_details()
    if ours_names:      # to_tflite: x first, outputs[0] the probabilities, states by name (PEER's logic)
        d_x, d_y = ins[0], outs[0]
        it.resize_tensor_input(d_x["index"], [1, T, X.shape[1]])
        it.allocate_tensors()
        ins, outs = it.get_input_details(), it.get_output_details()
        d_x, d_y = ins[0], outs[0]
        out_idx = {d["name"]: d["index"] for d in outs}
        states = ins[1:]
        carry = [(d["index"], out_idx.get(d["name"] + "_next", out_idx.get(d["name"]))) for d in states]
    else:               # converter graph: x (1, T, 40), ctx (1, 4, F); outputs by shape
        it.allocate_tensors()
        d_x = next(d for d in ins if d["name"].endswith("_x:0"))
        d_c = next(d for d in ins if d["name"].endswith("_ctx:0"))
        d_y = next(d for d in outs if d["shape"][-1] == 6)
        o_c = next(d for d in outs if list(d["shape"]) == list(d_c["shape"]))
        assert o_c["quantization"] == d_c["quantization"], (o_c, d_c)
        states, carry = [d_c], [(d_c["index"], o_c["index"])]
    Xq = quantize(X, d_x["quantization"])
    zp = d_x["quantization"][1]
    n = -(-Xq.shape[0] // T) * T
    Xq = np.concatenate([Xq, np.full((n - Xq.shape[0], Xq.shape[1]), zp, np.int8)])
    i_x, i_y = d_x["index"], d_y["index"]
    osc, ozp = d_y["quantization"]

    def one_pass():
        for d in states:
            it.set_tensor(d["index"], np.full(d["shape"], d["quantization"][1], d["dtype"]))
        P = []
        t0 = time.perf_counter()
        for a in range(0, n, T):
            it.set_tensor(i_x, Xq[None, a:a + T]); it.invoke(); P.append(it.get_tensor(i_y)[0].copy())
            for i, o in carry:
                it.set_tensor(i, it.get_tensor(o))
        dt = time.perf_counter() - t0
        return dt, (np.concatenate(P)[:X.shape[0]].astype(np.float32) - ozp) * osc
    return one_pass


def run_step(path, resolver, X):
    it = interp(path, resolver)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    byname = {d["name"].split("serving_default_")[-1].split(":")[0]: d for d in ins}
    d_x = byname["x"]
    d_y = next(d for d in outs if d["shape"][-1] == 6)
    carry = []
    for name in ("ctx", "h", "c"):       # the output of the same shape and quantization
        d = byname[name]
        o = [e for e in outs if e["shape"][-1] == d["shape"][-1] and e["quantization"] == d["quantization"]]
        assert len(o) == 1, (name, d, outs)
        carry.append((d["index"], o[0]["index"]))
    Xq = quantize(X, d_x["quantization"])[:, None, :]         # (N, 1, 40)
    i_x, i_y = d_x["index"], d_y["index"]
    osc, ozp = d_y["quantization"]
    zero = [(byname[k]["index"], np.full(byname[k]["shape"], byname[k]["quantization"][1], np.int8))
            for k in ("ctx", "h", "c")]
    N = X.shape[0]

    def one_pass():
        for i, z in zero:
            it.set_tensor(i, z)
        P = np.empty((N, 6), np.int8)
        set_t, get_t, invoke = it.set_tensor, it.get_tensor, it.invoke
        (i0, o0), (i1, o1), (i2, o2) = carry
        t0 = time.perf_counter()
        for t in range(N):
            set_t(i_x, Xq[t]); invoke(); P[t] = get_t(i_y)[0]
            set_t(i0, get_t(o0)); set_t(i1, get_t(o1)); set_t(i2, get_t(o2))
        dt = time.perf_counter() - t0
        return dt, (P.astype(np.float32) - ozp) * osc
    return one_pass


def agreement(P, ref):
    return {"max_abs_prob_diff": float(np.max(np.abs(P - ref))),
            "decisions_agree_at_0.5": float(np.mean((P >= 0.5) == (ref >= 0.5)))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "tagger_peer_paths.json"))
    a = ap.parse_args()
    import librosa
    import ai_edge_litert
    import edgelstm as el
    from edgelstm.data import AUDIO_MODEL, AUDIO_MODEL_F32
    from edgelstm.export import to_tflite
    from bench_audio_tag import make_clip
    import wave

    m = el.load(AUDIO_MODEL)
    f32 = el.load(AUDIO_MODEL_F32)
    fe = m.audio.frontend
    res = {"model": os.path.relpath(AUDIO_MODEL, ROOT), "litert": getattr(ai_edge_litert, "__version__", "?"),
           "librosa": librosa.__version__, "repeats": a.repeats, "threads": 1}
    with tempfile.TemporaryDirectory() as d:
        clip = os.path.join(d, "clip.wav")
        secs = make_clip(clip, a.minutes)
        with wave.open(clip) as w:
            y = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768

        def logmel():
            S = librosa.feature.melspectrogram(y=y, sr=fe.sr, n_fft=fe.n_fft, hop_length=fe.hop_length,
                                               n_mels=fe.n_mels, fmin=fe.fmin, fmax=fe.fmax, center=False, power=2.0)
            return librosa.power_to_db(S, ref=1.0, amin=fe.amin, top_db=None).T.astype(np.float32)
        X = logmel()
        lm = []
        for _ in range(a.repeats):
            t0 = time.perf_counter(); logmel(); lm.append(time.perf_counter() - t0)
        ours_path = os.path.join(d, "ours.tflite")
        to_tflite(m, ours_path)
        N = X.shape[0]
        res["clip_seconds"] = secs
        res["frames"] = int(N)
        res["librosa_logmel_s"] = {"median": float(np.median(lm)), "all": lm}
        print(f"{a.minutes}-min clip: {N} frames; librosa log-mel {np.median(lm):.3f} s (median of {a.repeats})",
              flush=True)

        # references: our int8 stream (and the float model's stream)
        m.stream().step_many(X[:100])
        t_ours = []
        for _ in range(a.repeats):
            s = m.stream()
            t0 = time.perf_counter(); P_ours = np.asarray(s.step_many(X)); t_ours.append(time.perf_counter() - t0)
        P_f32 = np.asarray(f32.stream().step_many(X))

        paths = {}
        paths["edgelstm step_many (int8)"] = ("edgelstm", "numba", t_ours, P_ours)
        specs = [("to_tflite seq (ours), 1000/invoke", lambda r: run_seq(ours_path, r, X, True)),
                 ("converter seq, 1000/invoke (LSTM zero state per invoke)",
                  lambda r: run_seq(FIX / "crnn_tagger_seq_int8.tflite", r, X, False)),
                 ("converter step, 1 frame/invoke", lambda r: run_step(FIX / "crnn_tagger_step_int8.tflite", r, X))]
        for name, make in specs:
            for r in ("default", "builtin_without_default_delegates"):
                try:
                    one = make(r)
                    one()                                  # warm (XNNPACK packs weights at first invoke)
                    ts = []
                    for _ in range(a.repeats):
                        dt, P = one(); ts.append(dt)
                    paths[f"{name} | {r}"] = (name, r, ts, P)
                except Exception as e:             # report, go on
                    paths[f"{name} | {r}"] = (name, r, None, repr(e))
                print(f"  done {name} | {r}", flush=True)

    rows = []
    for key, (name, r, ts, P) in paths.items():
        row = {"path": name, "resolver": r}
        if ts is None:
            row["error"] = P
        else:
            med = float(np.median(ts))
            row.update(us_per_frame=med / N * 1e6, total_s=med, all_s=ts,
                       vs_ours_int8=agreement(P, P_ours), vs_float=agreement(P, P_f32))
        rows.append(row)
    res["paths"] = rows
    ok = [r for r in rows if "us_per_frame" in r and r["path"] != "edgelstm"]
    best = min(ok, key=lambda r: r["us_per_frame"])
    res["fastest_litert_path"] = f"{best['path']} | {best['resolver']}"
    eo = next(r for r in rows if r["path"] == "edgelstm")
    res["peer_pipeline_fastest_s"] = res["librosa_logmel_s"]["median"] + best["total_s"]
    write_json(a.json, res)       # atomic
    print(f"\n{'path':58s} {'resolver':34s} {'us/frame':>9s} {'total s':>8s} {'maxdiff':>8s} {'agree':>7s}")
    for r in rows:
        if "error" in r:
            print(f"{r['path']:58s} {r['resolver']:34s} ERROR {r['error'][:60]}")
            continue
        ag = r["vs_ours_int8"]
        print(f"{r['path']:58s} {r['resolver']:34s} {r['us_per_frame']:9.2f} {r['total_s']:8.3f} "
              f"{ag['max_abs_prob_diff']:8.4f} {ag['decisions_agree_at_0.5']:7.4f}")
    print(f"\nlibrosa log-mel: {res['librosa_logmel_s']['median']:.3f} s; fastest LiteRT path: "
          f"{res['fastest_litert_path']} ({best['us_per_frame']:.2f} us/frame); peer pipeline with it "
          f"{res['peer_pipeline_fastest_s']:.3f} s vs edgelstm model {eo['total_s']:.3f} s (model only)")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
