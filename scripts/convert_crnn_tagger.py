#!/usr/bin/env python
"""Convert a CRNN tagger made by scripts/train_crnn_tagger.py into edgelstm models (issue 19).

    python scripts/convert_crnn_tagger.py [--run scripts/crnn_out] [--no-floats-in-int8] [--bundle]

Reads RUN/weights.npz (normalization folded into the first conv), RUN/model.json, RUN/calibration.npy (whole
validation scenes, consecutive frames) and, if present, RUN/thresholds.json (the event settings calibrated on
the validation packages by scripts/eval_crnn_tagger.py), and writes

- RUN/tagger_f32.elstm: [Conv1D over the mel axis (+ReLU) x2, arch freqtime] -> context -> Conv1D over time
  (+ReLU) -> GRU or LSTM -> Dense sigmoid, float32, with its AudioConfig;
- RUN/tagger_int8.elstm: the same quantized by el.quantize on the calibration scenes;
- RUN/convert.json: float stream vs PyTorch and vs the numpy stream reference, int8 fidelity, sizes, cost;
- with --bundle, also the package's bundled tagger (edgelstm.data: AUDIO_MODEL, AUDIO_MODEL_F32 and
  AUDIO_CALIBRATION, the calibration frames as float16), i.e. `edgelstm tag`'s default model.

The layers (see CONVERT.md): Context(size=n_mels, context=k*n_mels) gives the last k+1 frames, oldest first,
i.e. the (L=k+1, C=n_mels) view of the step vector; Conv1D(length=k+1, in_channels=n_mels, kernel_size=k+1)
is PyTorch's Conv1d over that window with mels as channels (weights (O, I, K) -> (O, K, I)); its one output
position of C_out channels feeds the recurrent layer.  Arch freqtime first views each frame as (L=n_mels, C=1)
and runs the convs over frequency (train_crnn_tagger.FREQ_CONVS, valid padding, stride 2); their flattened
(position-major) output of F values takes n_mels' place in the context and the conv over time.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_crnn_tagger as T             # noqa: E402

import edgelstm as el                      # noqa: E402
from edgelstm.audio import AudioConfig, FrontEnd  # noqa: E402
from edgelstm.ir.frontend import Context, Conv1D  # noqa: E402


def _conv(W: dict, i: int, length: int, stride: int = 1) -> Conv1D:
    """conv{i} (PyTorch (C_out, C_in, K)) + ReLU over a frame viewed as (length, C_in)."""
    w = W[f"conv{i}.weight"]
    return Conv1D(length=length, in_channels=w.shape[1], out_channels=w.shape[0], kernel_size=w.shape[2],
                  stride=stride, activation="relu",
                  directions=[{"w": np.ascontiguousarray(w.transpose(0, 2, 1)), "b": W[f"conv{i}.bias"]}])


def build_spec(W: dict, meta: dict) -> el.ModelSpec:
    """arch time: context of raw frames -> conv over time.  arch freqtime: convs over the mel axis of each frame
    (the frame as (n_mels, 1)) -> context of their features -> conv over time."""
    if meta["arch"] not in ("time", "freqtime"):
        raise SystemExit("only arch 'time' and 'freqtime' (a context + conv over time) are converted here")
    k = meta["context_frames"]
    layers, per_frame = [], meta["frontend"]["n_mels"]
    if meta["arch"] == "freqtime":
        length = per_frame
        for i, (*_, stride) in enumerate(T.FREQ_CONVS):
            layers.append(_conv(W, i, length, stride))
            length = layers[-1].out_length
        per_frame = layers[-1].output_size
    layers += [Context(size=per_frame, context=k * per_frame), _conv(W, len(layers), k + 1)]
    cell = "gru" if "gru.weight_hh_l0" in W else "lstm"
    w_ih, w_hh = W[f"{cell}.weight_ih_l0"], W[f"{cell}.weight_hh_l0"]
    b_ih, b_hh = W[f"{cell}.bias_ih_l0"], W[f"{cell}.bias_hh_l0"]
    H = w_hh.shape[1]
    if cell == "gru":        # PyTorch's r, z, n with the recurrent term of n inside the reset gate
        layers.append(el.GRU(input_size=w_ih.shape[1], hidden_size=H, reset_after=True,
                             directions=[{"w_x": w_ih, "w_h": w_hh, "b_x": b_ih, "b_h": b_hh}]))
    else:                    # PyTorch's i, f, g, o; one bias
        layers.append(el.LSTM(input_size=w_ih.shape[1], hidden_size=H, cell_clip=meta.get("cell_clip", 0.0),
                              directions=[{"w_x": w_ih, "w_h": w_hh, "b": b_ih + b_hh}]))
    layers.append(el.Dense(input_size=H, output_size=W["dense.weight"].shape[0], activation="sigmoid",
                           directions=[{"w": W["dense.weight"], "b": W["dense.bias"]}]))
    return el.ModelSpec(layers=layers)


def audio_config(meta: dict, thresholds: dict | None) -> AudioConfig:
    kw = {}
    if thresholds:
        kw = {k: thresholds[k] for k in ("onset", "offset", "min_duration", "min_gap", "smoothing", "backtrack", "lead")
              if k in thresholds}
    return AudioConfig(frontend=FrontEnd(**meta["frontend"]), labels=list(meta["labels"]), **kw)


def torch_probabilities(run: Path, meta: dict, X: np.ndarray) -> np.ndarray | None:
    """The trained PyTorch model on one (T, F) sequence (batch), if its state dict is there."""
    sd = run / "state_dict.pt"
    if not sd.is_file():
        return None
    import torch
    model = T.build_model(meta["arch"], meta["frontend"]["n_mels"], meta["hidden"], meta.get("cell", "gru"),
                          context=meta.get("context_frames", 2), channels=meta.get("channels", 64),
                          cell_clip=meta.get("cell_clip", 0.0))
    model.load_state_dict(torch.load(sd))
    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.tensor(X[None]))[0][0]).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=T.OUT)
    ap.add_argument("--no-floats-in-int8", action="store_true",
                    help="write the int8 file without the float weights (smaller; cannot be re-quantized)")
    ap.add_argument("--bundle", action="store_true", help="also write them as edgelstm tag's bundled model")
    args = ap.parse_args()
    run = args.run
    W = dict(np.load(run / "weights.npz"))
    meta = json.loads((run / "model.json").read_text())
    thr_path = run / "thresholds.json"
    thresholds = json.loads(thr_path.read_text()) if thr_path.is_file() else None
    cfg = audio_config(meta, thresholds)
    spec = build_spec(W, meta)
    f32 = el.Model(spec)
    calib = np.load(run / "calibration.npy").astype(np.float32)
    M = meta["frontend"]["n_mels"]
    scenes = calib.reshape(-1, T.N_FRAMES, M)                # whole scenes: each a stream from zero state
    report = {"params": int(sum(v.size for v in W.values())), "macs_per_frame": meta.get("macs_per_frame")}

    # float: streamed one frame at a time == PyTorch (float32 both; 1e-5 covers summation-order differences)
    x = scenes[0]
    s = f32.stream()
    p_stream = np.stack([s.step(f).copy() for f in x])
    p_run = f32.run(x)
    ref = T.StreamReference(W, meta["arch"], M, meta.get("cell_clip", 0.0))
    p_ref = np.stack([ref.step(f) for f in x])
    report["float_stream_vs_run"] = float(np.max(np.abs(p_stream - p_run)))
    report["float_stream_vs_numpy_reference"] = float(np.max(np.abs(p_stream - p_ref)))
    p_torch = torch_probabilities(run, meta, x)
    if p_torch is not None:
        report["float_stream_vs_torch"] = float(np.max(np.abs(p_stream - p_torch)))
        assert report["float_stream_vs_torch"] < 1e-5, report
    assert report["float_stream_vs_numpy_reference"] < 1e-5, report

    q = el.quantize(f32, calibration=scenes, progress=False)
    fid = q.fidelity
    P32 = np.concatenate([f32.run(sc) for sc in scenes])
    P8 = np.concatenate([q.run(sc) for sc in scenes])
    onset = np.array(cfg.onset, np.float32)
    report["int8_max_abs_prob_error_on_calibration"] = float(np.max(np.abs(P32 - P8)))
    report["int8_decisions_agree_at_onset_on_calibration"] = float(np.mean((P32 >= onset) == (P8 >= onset)))
    report["fidelity"] = str(fid)
    from edgelstm.artifact import _write_atomic
    from edgelstm.data import AUDIO_CALIBRATION, AUDIO_MODEL, AUDIO_MODEL_F32
    el.save(f32, run / "tagger_f32.elstm", audio=cfg)
    if args.bundle:
        el.save(f32, AUDIO_MODEL_F32, audio=cfg)
    if args.no_floats_in_int8:      # (the int8 model shares the float spec: after every float save)
        q.spec.has_weights = False
    el.save(q, run / "tagger_int8.elstm", audio=cfg)
    if args.bundle:
        el.save(q, AUDIO_MODEL, audio=cfg)
        buf = io.BytesIO()
        np.save(buf, scenes.astype(np.float16))          # (scenes, frames, mels): each a stream from zero state
        _write_atomic(AUDIO_CALIBRATION, buf.getvalue())
        report["bundled"] = [str(AUDIO_MODEL), str(AUDIO_MODEL_F32), str(AUDIO_CALIBRATION)]
    report["bytes_f32"] = (run / "tagger_f32.elstm").stat().st_size
    report["bytes_int8"] = (run / "tagger_int8.elstm").stat().st_size
    (run / "convert.json").write_text(json.dumps(report, indent=1) + "\n")
    for k, v in report.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
