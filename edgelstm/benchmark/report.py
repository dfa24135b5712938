"""The report: bench.md (tables with a legend of their columns), bench.json and the PNG charts, every file
written atomically (a complete temp file in the same folder, then ``os.replace``)."""
from __future__ import annotations

import io
import json
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from .._files import write_atomic
from ..errors import ArtifactError, InputError
from .peers import AGREE_ATOL, Skip

REPORT_FILES = ("bench.json", "bench.md", "latency_per_model.png", "latency_vs_hidden.png",
                "latency_distribution.png")

_COLUMNS = (
    ("runtime", "who computed the row: edgelstm int8 / f32, or a peer running the same model (LiteRT, "
                "onnxruntime, PyTorch; a `--tflite` file by its name)"),
    ("API", "what was called: `step` one frame; `step_many` T frames in one call; `streams(N)` N streams "
            "stepped by one call; `run` a (T, F) sequence; `run_batch(B)` a (B, T, F) batch; `full step` a peer's "
            "step as an app calls it (set frame and state, run, read output, feed state back); `cell step` / "
            "`module step` PyTorch's per-frame calls; `sequence` a peer's whole-sequence call"),
    ("median, p99 µs/step", "per step (per stream-step for `streams` and `run_batch`): individually timed calls "
                            "for one-frame rows, repeated calls / T for the others; the ~50 ns timer read included"),
    ("GMAC/s", "weight-matrix multiply-accumulates per step / median time"),
    ("% int8 peak", "GMAC/s over the int8 peak above (int8 rows)"),
    ("× edgelstm", "this row's median over edgelstm's of the same model and dtype (one-frame rows and `streams` "
                   "against `step`, the others against `step_many`): above 1, edgelstm is faster"),
    ("agrees", f"the peer's outputs equalled ours on the same frames before timing (int8: identical integers; "
               f"float: within {AGREE_ATOL:g}); blank: not compared"),
)
LEGEND = "\n".join(["| column | meaning |", "|---|---|"] + [f"| {c} | {m} |" for c, m in _COLUMNS]) + "\n"


# ---------------------------------------------------------------------------------------------- files
def write_bytes(path, data: bytes) -> None:
    """``path`` written atomically: a crash leaves the old file or the new one, never a torn one."""
    write_atomic(path, data, error=ArtifactError)


def write_json(path, obj) -> None:
    """``obj`` as indented JSON, written atomically (every bench result goes through here)."""
    write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def save_figure(fig, path, *, dpi: int = 110) -> Path:
    """A matplotlib figure as a PNG, written atomically; as a 256-colour palette image (a third of the bytes of
    the RGBA one, the same picture) when Pillow, which matplotlib itself needs, is there."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    try:
        from PIL import Image
        small = io.BytesIO()
        Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(256).save(small, format="png", optimize=True)
        buf = small
    except ImportError:
        pass
    write_bytes(path, buf.getvalue())
    return Path(path)


def prepare_outdir(outdir, names=REPORT_FILES) -> Path:
    """The report folder, checked before anything is measured: created when missing, not an existing file,
    writable, and none of the report's file names taken by a folder.  InputError otherwise."""
    p = Path(outdir)
    if p.exists() and not p.is_dir():
        raise InputError(f"bench: output folder {p} is an existing file")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"bench: cannot create the output folder {p}: {e.strerror or e}") from None
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise InputError(f"bench: cannot write in the output folder {p}: {e.strerror or e}") from None
    for name in names:
        if (p / name).is_dir():
            raise InputError(f"bench: cannot write {p / name}: it is a folder")
    return p


# ---------------------------------------------------------------------------------------------- markdown
def markdown(result: dict) -> str:
    m, peak = result["machine"], result["int8_peak"]
    lines = [f"edgelstm bench on {m['cpu']} ({m['cores']} cores), Python {m['python']}, load average "
             f"{', '.join(f'{v:.1f}' for v in (m['load_average'] or []))}",
             f"int8 peak: {peak['gmacs']:.1f} GMAC/s per core ({peak['derivation']})" if peak["gmacs"]
             else f"int8 peak: unknown ({peak['derivation']})", "", LEGEND]
    for model in dict.fromkeys(r["model"] for r in result["rows"]):
        lines += [f"### {model}", "",
                  "| runtime | API | median µs/step | p99 µs/step | GMAC/s | % int8 peak | × edgelstm | agrees |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in result["rows"]:
            if r["model"] != model:
                continue
            pf = f"{100 * r['peak_fraction']:.1f}" if r.get("peak_fraction") is not None else ""
            xv = f"{r['x_vs_edgelstm']:.2f}" if r.get("x_vs_edgelstm") is not None else ""
            ag = {True: "yes", False: "NO", None: ""}[r["agrees"]]
            lines.append(f"| {r['runtime']} | {r['api']} | {r['median_us']:.2f} | {r['p99_us']:.2f} | "
                         f"{r['gmacs']:.2f} | {pf} | {xv} | {ag} |")
        h = result["headline"].get(model, {})
        if h:
            lines += [""] + [f"- {k}: {v:.2f}x" for k, v in h.items()]
        lines.append("")
    if result["skipped"]:
        lines += ["Skipped:", ""] + [f"- {s['model']}: {s['peer']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- charts
_FAMILY_COLOURS = {"edgelstm int8": "#1f4e9c", "edgelstm f32": "#7fa7e0", "LiteRT int8": "#d2691e",
                   "LiteRT f32": "#f2b27a", "onnxruntime": "#2e8b57", "PyTorch f32": "#c0392b",
                   "PyTorch dyn-int8": "#e8918a"}


def _colour(runtime: str) -> str:
    for prefix, colour in _FAMILY_COLOURS.items():
        if runtime == prefix or (runtime.startswith(prefix) and prefix == "onnxruntime"):
            return colour
    return "#8e44ad"            # a user's --tflite model


def _ratio_text(r: dict) -> str:
    x = r.get("x_vs_edgelstm")
    if x is None:
        return ""
    if not r["runtime"].startswith("edgelstm"):
        return f"  = {x:.2f}× ours"
    if r["api"] in ("step", "step_many"):
        return ""               # the reference itself
    ref = "step" if r["api"].startswith("streams") or r["steps_per_call"] == 1 else "step_many"
    return f"  = {x:.2f}× our {ref}"


def _plain_numbers(axis) -> None:
    """Log-axis tick labels as plain numbers (2, 10, 200, not 2x10^0); on an axis of less than two decades
    the 2x and 5x minor ticks are labelled too."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _pos):
        lo, hi = sorted(axis.get_view_interval())
        lead = round(v / 10 ** np.floor(np.log10(v)), 6)
        return f"{v:g}" if hi / lo < 100 and lead in (2, 5) else ""
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _bars(ax, rows: list[dict], title: str) -> None:
    """One horizontal bar per row: median µs per step, labelled with the value and its ratio to ours."""
    labels = [f"{r['runtime']} · {r['api']}" for r in rows]
    values = [r["median_us"] for r in rows]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, values, color=[_colour(r["runtime"]) for r in rows], height=0.7)
    ax.set_yticks(y, ["\n".join(textwrap.wrap(s, 44)) for s in labels], fontsize=7)
    ax.set_xscale("log")
    _plain_numbers(ax.xaxis)
    lo, hi = min(values), max(values)
    ax.set_xlim(lo / 2, hi * 15)      # room on the right for the labels
    for yy, r in zip(y, rows):
        ax.text(r["median_us"] * 1.08, yy, f"{r['median_us']:.2f} µs{_ratio_text(r)}", va="center", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("median µs per step (log)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def _per_model(plt, rows: list[dict], outdir: Path) -> Path:
    """latency_per_model.png: per model, each engine's µs per step, one frame per call (left) and with a whole
    sequence or N streams per call (right), each bar labelled with its ratio to ours."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sides = [[r for r in rows if r["model"] == m and r["steps_per_call"] == 1] for m in models], \
        [[r for r in rows if r["model"] == m and r["steps_per_call"] > 1] for m in models]
    heights = [0.3 * max(len(a), len(b), 1) + 0.9 for a, b in zip(*sides)]
    total = sum(heights) + 0.5                                  # + the figure title
    fig, axes = plt.subplots(len(models), 2, figsize=(14, total), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    for i, model in enumerate(models):
        for j, (part, what) in enumerate(zip(sides, ("one frame per call", "whole sequence or N streams per call"))):
            if part[i]:
                _bars(axes[i][j], part[i], f"{model}: {what}")
            else:
                axes[i][j].set_axis_off()
    fig.suptitle("µs per step of each engine (× = its time over ours, same dtype: above 1, edgelstm is faster)",
                 fontsize=10)
    path = save_figure(fig, outdir / "latency_per_model.png")
    plt.close(fig)
    return path


def _vs_hidden(plt, rows: list[dict], outdir: Path) -> Path | None:
    """latency_vs_hidden.png: each engine's one-frame step against the hidden size, one panel per kind and
    input size; only for sweeps of two or more hidden sizes."""
    panels = list(dict.fromkeys((r["kind"], r["input_size"]) for r in rows if r["hidden_size"]))
    sizes = {p: {r["hidden_size"] for r in rows if (r["kind"], r["input_size"]) == p} for p in panels}
    panels = [p for p in panels if len(sizes[p]) >= 2]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    height = 3.8 * nrows + 1.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, height), squeeze=False)
    for ax, (kind, I) in zip(axes.ravel(), panels):
        series = {}
        for r in rows:
            if (r["kind"], r["input_size"]) == (kind, I) and r["steps_per_call"] == 1:
                series.setdefault(f"{r['runtime']} · {r['api']}", []).append((r["hidden_size"], r["median_us"],
                                                                               r["runtime"]))
        for label, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=_colour(pts[0][2]), label=label, ms=4)
        ax.set(title=f"{kind} I={I}", xlabel="hidden size H", ylabel="median µs per step (log)", yscale="log")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sizes[(kind, I)]), [str(h) for h in sorted(sizes[(kind, I)])])
        _plain_numbers(ax.yaxis)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    legend = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    fig.legend(list(legend.values()), list(legend), fontsize=7, loc="lower center", ncol=min(3, len(legend)))
    fig.suptitle("one streaming step (one frame per call) against the hidden size", fontsize=10)
    fig.tight_layout(rect=(0, (0.25 + 0.16 * -(-len(legend) // 3)) / height, 1, 1))
    path = save_figure(fig, outdir / "latency_vs_hidden.png")
    plt.close(fig)
    return path


def _distribution(plt, result: dict, outdir: Path) -> Path | None:
    """latency_distribution.png: how much one call varies, per engine's one-frame step, on the first model."""
    rows = result["rows"]
    first = rows[0]["model"] if rows else None
    mine = {f"{rt} · {api}": ns / 1e3 for (m, rt, api), ns in result.get("_samples", {}).items() if m == first}
    if not mine:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(mine) + 1.2))
    labels = list(mine)[::-1]
    try:    # matplotlib >= 3.10 says "orientation"; "vert" is deprecated there and all that older ones know
        ax.boxplot([mine[k] for k in labels], whis=(1, 99), showfliers=False, orientation="horizontal")
    except TypeError:
        ax.boxplot([mine[k] for k in labels], whis=(1, 99), showfliers=False, vert=False)
    ax.set_yticks(range(1, len(labels) + 1), ["\n".join(textwrap.wrap(s, 48)) for s in labels], fontsize=7)
    ax.set(title=f"per-call latency of one step, {first} (box: p25-p75, line: median, whiskers: p1-p99)",
           xlabel="µs per call (log)", xscale="log")
    _plain_numbers(ax.xaxis)
    ax.title.set_fontsize(9)
    fig.tight_layout()
    path = save_figure(fig, outdir / "latency_distribution.png")
    plt.close(fig)
    return path


def plots(result: dict, outdir: Path) -> list[Path]:
    """latency_per_model.png (per model: each engine's µs per step, ratios labelled), latency_vs_hidden.png
    (sweeps of two or more hidden sizes) and latency_distribution.png (per-call spread of the first model's
    one-frame steps, when the per-call samples are in ``result``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise Skip("plots need matplotlib (pip install 'edgelstm[bench]')") from e
    rows = result["rows"]
    if not rows:
        return []
    written = [_per_model(plt, rows, Path(outdir)), _vs_hidden(plt, rows, Path(outdir)),
               _distribution(plt, result, Path(outdir))]
    return [p for p in written if p is not None]


def write_report(result: dict, outdir, *, with_plots: bool = True) -> dict:
    """bench.json + bench.md (+ PNG charts) in ``outdir``; returns {"json", "markdown", "plots", "note"}."""
    outdir = prepare_outdir(outdir)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    write_json(outdir / "bench.json", public)
    write_bytes(outdir / "bench.md", markdown(result).encode())
    out = {"json": str(outdir / "bench.json"), "markdown": str(outdir / "bench.md"), "plots": [], "note": None}
    if with_plots:
        try:
            out["plots"] = [str(p) for p in plots(result, outdir)]
        except Skip as e:
            out["note"] = str(e)
    return out
