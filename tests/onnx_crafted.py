"""Crafted ONNX files for the importer's hardening tests (issue 16): a small GRU model with a constant side path
that folding must evaluate, and bombs wired into it (or left unused).  ``python onnx_crafted.py NAME PATH``
imports PATH in this process and prints a JSON line with the outcome, the peak RSS and the time (run as a
subprocess by the tests and bench/fuzz_importers.py)."""
import json
import sys
import time

import numpy as np

from crafted import own_peak_rss_kib

F, H = 3, 4


def _helpers():
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    return onnx, TensorProto, helper, numpy_helper


def gru_model(extra_nodes=(), extra_inits=(), bias_from=None, opset=17):
    """X (T, 1, F) -> GRU(H) -> Y.  ``bias_from``: the name of a constant whose ReduceSum (times 0) is added to
    the GRU's bias, so folding must compute it."""
    _, TensorProto, helper, numpy_helper = _helpers()
    rng = np.random.default_rng(1)
    W = rng.standard_normal((1, 3 * H, F)).astype(np.float32) * 0.5
    R = rng.standard_normal((1, 3 * H, H)).astype(np.float32) * 0.5
    B = rng.standard_normal((1, 6 * H)).astype(np.float32) * 0.1
    nodes = list(extra_nodes)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")] + list(extra_inits)
    if bias_from is None:
        inits.append(numpy_helper.from_array(B, "B"))
    else:
        inits += [numpy_helper.from_array(B, "B0"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
        nodes += [helper.make_node("ReduceSum", [bias_from], ["bomb_sum"], keepdims=0),
                  helper.make_node("Cast", ["bomb_sum"], ["bomb_f"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["bomb_f", "zero"], ["bomb_0"]),
                  helper.make_node("Add", ["B0", "bomb_0"], ["B"])]
    nodes.append(helper.make_node("GRU", ["X", "W", "R", "B"], ["Y"], hidden_size=H, linear_before_reset=1))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", 1, F])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, 1, H])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _i64(name, v):
    _, _, _, numpy_helper = _helpers()
    return numpy_helper.from_array(np.asarray(v, np.int64), name)


def crafted() -> dict:
    """name -> ModelProto of every crafted file."""
    _, TensorProto, helper, numpy_helper = _helpers()
    big = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.1])
    out = {}
    # an 8 KB file whose ConstantOfShape would be 1.1e9 floats: unused, then used
    cos = helper.make_node("ConstantOfShape", ["shape"], ["bomb"], value=big)
    out["constantofshape_unused"] = gru_model([cos], [_i64("shape", [1_100_000_000])])
    out["constantofshape_used"] = gru_model([cos], [_i64("shape", [1_100_000_000])], bias_from="bomb")
    out["range"] = gru_model([helper.make_node("Range", ["s", "l", "d"], ["bomb"])],
                             [_i64("s", 0), _i64("l", 1_200_000_000), _i64("d", 1)], bias_from="bomb")
    out["expand"] = gru_model([helper.make_node("Expand", ["one", "shape"], ["bomb"])],
                              [numpy_helper.from_array(np.ones((1, 1), np.float32), "one"),
                               _i64("shape", [40_000, 40_000])], bias_from="bomb")
    tiles = [helper.make_node("Tile", ["t0" if k == 0 else f"t{k}", "reps"], [f"t{k + 1}"]) for k in range(6)]
    out["tile_chain"] = gru_model(tiles + [helper.make_node("Identity", ["t6"], ["bomb"])],
                                  [numpy_helper.from_array(np.ones(64, np.float32), "t0"), _i64("reps", [64])],
                                  bias_from="bomb")
    out["matmul_work"] = gru_model(
        [helper.make_node("ConstantOfShape", ["shape"], ["m"], value=big),
         helper.make_node("MatMul", ["m", "m"], ["bomb"])], [_i64("shape", [3000, 3000])], bias_from="bomb")
    # Loop: 10^12 iterations; and a loop that never stops by its condition
    body = helper.make_graph(
        [helper.make_node("Add", ["acc", "one_f"], ["acc_out"]), helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.ones((), np.float32), "one_f")])
    loop_inits = [numpy_helper.from_array(np.zeros((), np.float32), "acc0"),
                  numpy_helper.from_array(np.array(True), "true")]
    out["loop_trip_count"] = gru_model([helper.make_node("Loop", ["M", "true", "acc0"], ["bomb"], body=body)],
                                       loop_inits + [_i64("M", 10 ** 12)], bias_from="bomb")
    out["loop_condition"] = gru_model([helper.make_node("Loop", ["", "true", "acc0"], ["bomb"], body=body)],
                                      loop_inits, bias_from="bomb")
    # broadcasting two vectors into a square
    out["broadcast"] = gru_model(
        [helper.make_node("ConstantOfShape", ["s1"], ["a"], value=big),
         helper.make_node("ConstantOfShape", ["s2"], ["b"], value=big), helper.make_node("Add", ["a", "b"], ["bomb"])],
        [_i64("s1", [50_000, 1]), _i64("s2", [1, 50_000])], bias_from="bomb")
    # opset-11 Unsqueeze with an axes attribute, folded on constants (issue 18: folding ignored the opset)
    out["opset11_unsqueeze"] = gru_model(
        [helper.make_node("Unsqueeze", ["vec"], ["bomb"], axes=[0])],
        [numpy_helper.from_array(np.ones(3, np.float32), "vec")], bias_from="bomb", opset=11)
    return out


def run_one(path: str) -> dict:
    import warnings
    warnings.simplefilter("ignore")
    import edgelstm as el
    from edgelstm.export import from_onnx
    t0 = time.perf_counter()
    try:
        m = from_onnx(path)
        y = m.run(np.zeros((5, m.input_size), np.float32))
        outcome = "imported" if np.all(np.isfinite(y)) else "non-finite"
    except el.EdgeLSTMError as e:
        outcome = "refused: " + str(e)[-300:]
    except Exception as e:  # noqa: BLE001
        outcome = f"FOREIGN {type(e).__name__}: {str(e)[:300]}"
    return {"outcome": outcome, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mib": round(own_peak_rss_kib() / 1024, 1)}


if __name__ == "__main__":
    print(json.dumps(run_one(sys.argv[1])))
