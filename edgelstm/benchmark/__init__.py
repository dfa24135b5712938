"""``edgelstm bench``: per-step latency of edgelstm side by side with its peers, measured in one process.

    from edgelstm.benchmark import run_bench, write_report
    result = run_bench(sweep=True, quick=True)          # or run_bench(model_path="tagger.elstm")
    write_report(result, "bench-out")                   # bench.json, bench.md, PNG charts

Every row is one (runtime, API) pair on one model, timed single-threaded:

  edgelstm int8 / f32   step (one frame), step_many (T frames in one call, per step), streams (N independent
                        streams stepped by one call, per stream-step), run (a (T, F) sequence, per step) and
                        run_batch (a (N, T, F) batch, per stream-step)
  LiteRT int8 / f32     our model exported with ``to_tflite``: the full streaming step from Python (set the frame
                        and the state inputs, invoke, read the outputs, feed the state back; with a sequence
                        export the state stays in the op's variable tensors) and the fused sequence per step
  onnxruntime f32       our model exported with ``to_onnx(streaming=True)``: step with state fed back, sequence
  PyTorch f32           eager nn.*Cell + Linear per step (state fed back), and nn.LSTM/GRU/RNN over T per step
  PyTorch dyn-int8      ``quantize_dynamic`` nn.LSTM/GRU (PyTorch has no dynamic-int8 nn.RNN): step, sequence

Step-like rows are medians and p99 of individually timed calls (the ~50 ns timer overhead included, as a user's
loop would see it); sequence rows are the call time divided by T, over repeated calls.  Before timing, each peer's
output is compared with ours on the same frames (int8 LiteRT: identical integers; float peers: within 1e-4) and
the row says whether it agreed.  A peer that is not installed, or that cannot express a model, is listed under
``skipped`` with the reason; it never fails the run.

GMAC/s counts one multiply-accumulate per weight-matrix element per step (input, recurrent, projection and
Dense matrices; peepholes and biases excluded).  The int8 peak is derived, not measured: see ``int8_peak``.

One home per concern, shared with the scripts in bench/:
  machine   CPU model, flags, clock, the derived int8 peak, library versions
  timing    individually timed calls, repeated calls, best-of, timer overhead, statistics
  cases     sweep models, model files, the frames fed to them, MACs per step
  peers     LiteRT, onnxruntime and PyTorch: sessions, fed-back step wrappers, agreement checks, their rows
  runner    argument checks, run_bench, the ratios and the headline
  report    bench.md, bench.json and the charts, written atomically; write_json for every bench result
"""
from .cases import (HEAD_SIZE, SWEEP_HIDDEN_SIZES, SWEEP_INPUT_SIZES, SWEEP_KINDS, Case, file_case, head_spec,
                    macs_per_step, sweep_cases, torch_stack, walk)
from .machine import PEER_MODULES, cpu_info, int8_peak, machine_info, versions
from .peers import (AGREE_ATOL, Skip, agrees, litert_file_step, litert_interpreter, litert_step, ort_session,
                    ort_step, quantize_frames, torch_cell, torch_step, torch_zero_state)
from .report import markdown, plots, prepare_outdir, save_figure, write_json, write_report
from .runner import FULL, MAX_SIZE, PEERS, QUICK, Budget, check_arguments, headline, run_bench
from .timing import (best_of, gc_paused, median_p99_us, stats_us, time_calls, time_repeats,
                     timer_overhead_ns)

__all__ = ["AGREE_ATOL", "FULL", "HEAD_SIZE", "MAX_SIZE", "PEERS", "PEER_MODULES", "QUICK", "SWEEP_HIDDEN_SIZES",
           "SWEEP_INPUT_SIZES", "SWEEP_KINDS", "Budget", "Case", "Skip", "agrees", "best_of", "check_arguments",
           "cpu_info", "file_case", "gc_paused", "head_spec", "headline", "int8_peak", "litert_file_step",
           "litert_interpreter", "litert_step", "machine_info", "macs_per_step", "markdown", "median_p99_us",
           "ort_session", "ort_step", "plots", "prepare_outdir", "quantize_frames", "run_bench", "save_figure",
           "stats_us", "sweep_cases", "time_calls", "time_repeats", "timer_overhead_ns", "torch_cell",
           "torch_stack", "torch_step", "torch_zero_state", "versions", "walk", "write_json", "write_report"]
