"""The README and docs/ run as written: every code block meant to run is run here, and every link and path resolves.

Convention (stated at the end of README.md):
- a ```python block runs, unless the line before its fence is ``<!-- test: skip (why) -->``;
- a ```bash block runs only when the line before its fence is ``<!-- test: run -->``;
- ``slow`` in a marker (``<!-- test: run slow -->``): that block and the rest of its file run only with
  ``-m slow`` (CI runs those once);
- ``needs=cc,make`` inside either marker (``<!-- test: run needs=cc,make -->``, ``<!-- test: needs=cc -->``)
  names programs or Python modules the block needs; top-level imports of a python block count as needs too;
- other fences (```text, ```c, a bare ```) never run.
A file's blocks run in order, in ONE Python session (python blocks share their globals; bash blocks run through
``bash -euo pipefail`` in between), in a scratch folder that looks like the repository root (its top-level
folders linked in), with this interpreter's bin folder first on PATH so ``edgelstm`` and ``python`` are the ones
under test. When a need is missing, the blocks before it run and the rest of the file is skipped, loudly: later
blocks use what earlier ones made.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED_INTO_SCRATCH = ("edgelstm", "export", "firmware_host", "tests", "bench", "scripts", "docs")
MARKER = re.compile(r"<!--\s*test:\s*(?P<body>.*?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


def blocks(path: Path) -> list[dict]:
    """The fenced blocks of a markdown file: language, first code line number, source, marker words."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        marker = MARKER.fullmatch(lines[start - 1].strip()) if start else None
        body = marker["body"] if marker else ""
        needs = [n for w in body.split() if w.startswith("needs=") for n in w[6:].split(",") if n]
        words = {w for w in body.split() if not w.startswith("needs=")}
        out.append({"lang": m["lang"], "line": start + 2, "source": "\n".join(lines[start + 1:j]) + "\n",
                    "run": "run" in words, "skip": "skip" in words, "slow": "slow" in words, "needs": needs})
        i = j + 1
    return out


def runnable(path: Path) -> list[dict]:
    chosen = []
    for b in blocks(path):
        if b["lang"] == "python" and not b["skip"]:
            chosen.append(b)
        elif b["lang"] == "bash" and b["run"]:
            chosen.append(b)
    return chosen


def _imports(source: str) -> set[str]:
    """Top-level modules a python block imports outside try/except (a try is a fallback between peers)."""
    names = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Try):
                continue
            if isinstance(child, ast.Import):
                names.update(a.name.split(".")[0] for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names.add(child.module.split(".")[0])
            visit(child)

    visit(ast.parse(source))
    return names


def _missing(block: dict) -> list[str]:
    wanted = list(block["needs"])
    if block["lang"] == "python":
        wanted += sorted(_imports(block["source"]))
    missing = []
    for name in wanted:
        if re.fullmatch(r"[A-Za-z_][\w]*", name) and importlib.util.find_spec(name) is not None:
            continue
        if shutil.which(name) is None:
            missing.append(name)
    return missing


DRIVER = textwrap.dedent('''
    import json, subprocess, sys
    session = {"__name__": "__main__"}
    for b in json.load(open(sys.argv[1])):
        where = f"{b['file']}:{b['line']}"
        print(f"### {where} ({b['lang']})", flush=True)
        if b["lang"] == "python":
            exec(compile(b["source"], where, "exec"), session)
        else:
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", b["source"]])
            if r.returncode:
                sys.exit(f"{where}: bash block exited with status {r.returncode}")
''')


def _scratch(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    work.mkdir()
    for name in LINKED_INTO_SCRATCH:
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    return work


def _run_doc(doc: str, tmp_path: Path, *, slow: bool) -> None:
    path = ROOT / doc
    todo, skipped = [], None
    for b in runnable(path):
        if b["slow"] and not slow:
            break                        # the rest runs in test_slow_code_blocks_run_as_written (-m slow)
        missing = _missing(b)
        if missing:
            skipped = f"{doc}:{b['line']} and after: needs {', '.join(missing)}"
            break
        todo.append({**b, "file": doc})
    if todo:
        (tmp_path / "blocks.json").write_text(json.dumps(todo))
        (tmp_path / "driver.py").write_text(DRIVER)
        env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
                   OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")   # 1 torch thread: the doc runs on a shared 2-core box
        r = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "blocks.json")],
                           cwd=_scratch(tmp_path), env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{doc} failed\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-6000:]}"
    if skipped:
        pytest.skip(f"SKIPPED LOUDLY: {skipped}")


@pytest.mark.parametrize("doc", [p.relative_to(ROOT).as_posix() for p in DOCS])
def test_code_blocks_run_as_written(doc, tmp_path):
    _run_doc(doc, tmp_path, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("doc", [p.relative_to(ROOT).as_posix() for p in DOCS
                                 if any(b["slow"] for b in runnable(p))])
def test_slow_code_blocks_run_as_written(doc, tmp_path):
    _run_doc(doc, tmp_path, slow=True)


def test_blocks_are_found_and_markers_are_known():
    """The extractor sees every runnable block (a typo in a fence or marker would silently drop one)."""
    counts = {p.relative_to(ROOT).as_posix(): len(runnable(p)) for p in DOCS}
    assert counts["README.md"] >= 6 and counts["docs/firmware.md"] >= 4, counts
    for p in DOCS:
        text = p.read_text(encoding="utf-8")
        for m in MARKER.finditer(text):
            words = {w for w in m["body"].split() if not w.startswith("needs=")}
            assert "skip" in words or words <= {"run", "slow"}, f"{p.name}: unknown marker {m[0]!r}"
        for b in blocks(p):
            assert b["lang"] in ("python", "bash", "text", "c", ""), f"{p.name}:{b['line']}: fence {b['lang']!r}"


def test_readme_stays_a_short_guide_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.split("\n")) <= 300
    assert 'pip install -e . && edgelstm tag' in text


def test_readme_test_command_is_what_ci_runs():
    """CI runs the README's test command verbatim (it is the project's definition of 'the tests pass')."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r'^(pip install -e "\.\[dev\]" && python -m pytest -q)\s', readme, re.M)
    assert command, "README.md lost its test command"
    ci = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(line.startswith(command[1] + " ") or line == command[1] for line in ci), \
        f".ci/run does not run {command[1]!r} verbatim"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (but - and _), spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen, out = {}, set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        slug = _slug(line.lstrip("#"))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_links_and_anchors_resolve():
    bad = []
    for p in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", p.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (p.parent / file).resolve() if file else p
            if not dest.exists():
                bad.append(f"{p.name}: {target} (no file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{p.name}: {target} (no such heading)")
    assert not bad, "\n".join(bad)


PATH_TOKEN = re.compile(r"`((?:edgelstm|export|firmware_host|tests|bench|scripts|docs|\.ci)/[\w./-]*)`")


def test_every_repository_path_the_docs_name_exists():
    bad = []
    for p in DOCS:
        for token in PATH_TOKEN.findall(p.read_text(encoding="utf-8")):
            path = token.split("::")[0]
            if "*" in path or "{" in path:
                continue
            if not (ROOT / path).exists():
                bad.append(f"{p.name}: {token}")
    assert not bad, "paths named in the docs that do not exist:\n" + "\n".join(bad)


SETTINGS_COLUMNS = {"onset": "onset", "offset": "offset", "min_gap s": "min_gap", "smoothing s": "smoothing",
                    "min_duration s": "min_duration", "backtrack": "backtrack", "lead s": "lead"}


def test_bundled_event_settings_table_is_the_files():
    """docs/audio.md's table of the bundled tagger's event settings holds the numbers stored in
    edgelstm/data/audio_tagger.elstm (the table once kept a recalibration's old values)."""
    import edgelstm as el
    text = (ROOT / "docs" / "audio.md").read_text(encoding="utf-8")
    lines = text.split("Its event settings (stored in the file", 1)[1].splitlines()
    rows = [line for line in lines[:20] if line.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    assert head[0] == "class" and set(head[1:]) == set(SETTINGS_COLUMNS), head
    audio = el.load(ROOT / "edgelstm" / "data" / "audio_tagger.elstm").audio
    table = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {SETTINGS_COLUMNS[h]: float(re.match(r"[\d.]+", v).group())
                           for h, v in zip(head[1:], cells[1:])}
    assert sorted(table) == sorted(audio.labels)
    for c, label in enumerate(audio.labels):
        for field, value in table[label].items():
            assert value == pytest.approx(getattr(audio, field)[c], abs=5e-4), (label, field)
