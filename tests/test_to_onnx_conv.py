"""to_onnx on CNN + RNN hybrids (conv, pad, magnitude, activation, context): onnxruntime runs the exported float
graph, whole sequences and streamed with the context state fed back, within 1e-5 of edgelstm (float32 sums in
another order)."""
import numpy as np
import pytest

import edgelstm as el

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from edgelstm.export import to_onnx  # noqa: E402
from test_frontend import random_front_end  # noqa: E402


@pytest.mark.parametrize("seed", range(8))
def test_hybrid_onnx_matches_edgelstm(seed, tmp_path):
    rng = np.random.default_rng(seed)
    frame = int(rng.integers(8, 40))
    spec = el.random_model(random_front_end(rng, frame=frame, recurrent=("lstm", "gru")[seed % 2]),
                           input_size=frame, seed=seed)
    m = el.Model(spec)
    X = rng.standard_normal((3, 30, frame)).astype(np.float32)
    to_onnx(m, tmp_path / "seq.onnx")
    y = ort.InferenceSession(str(tmp_path / "seq.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    np.testing.assert_allclose(y, m.run(X), rtol=1e-5, atol=1e-5)
    to_onnx(m, tmp_path / "step.onnx", streaming=True)
    s = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    states = [i.name for i in s.get_inputs() if i.name != "x"]
    feeds = {i.name: np.zeros([1 if d == "B" else d for d in i.shape], np.float32) for i in s.get_inputs()
             if i.name != "x"}
    out_names = [o.name for o in s.get_outputs()]
    ys = []
    for t in range(X.shape[1]):
        res = dict(zip(out_names, s.run(None, {"x": X[:1, t:t + 1], **feeds})))
        ys.append(res["y"][0, 0])
        feeds = {n: res[n[:-1] + "N"] for n in states}          # h0 <- hN, c0 <- cN, ctx0 <- ctxN
    np.testing.assert_allclose(np.stack(ys), m.run(X[0]), rtol=1e-5, atol=1e-5)
