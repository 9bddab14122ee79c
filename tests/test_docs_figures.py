"""Every measured figure in the docs comes from a committed results file.

A figure is a number carrying a unit (dB, px, %, s, ms, µs, frames/s, fps, GB/s, GB, deg,
degrees, °) in the prose or the tables of ``docs/*.md`` and ``README.md``; in a table, a number
in a column or row whose header names a unit (``PSNR (dB)``, ``train s``, ``drift (px ...)``)
counts too. Each must appear in a file under ``benchmarks/results/`` (written by a script in
``benchmarks/``): numerically, as the results value rounded to the decimals the doc quotes
("0.37 px" is backed by 0.366357). Where the paragraph, table or table row names results files
(``poses-cpu-2core-1080p-300-affine.md``; a table naming none takes the paragraph above it),
the figure must be in those files (the ``.json`` and ``.md`` of that name); otherwise in any
results file, where a short number can match by chance, so name the file. Every results file
the docs name must exist.

Not figures: anything in a code block or a code span (options, commands, formulas), a bound
(a number after <, >, ≤, ≥, ±, "at most", "at least", "up to", "more/less than", "below",
"above", "over", "under", "within", "tolerance", "default" or "every": test tolerances,
targets, thresholds, option defaults and periods), and the few specifications in ``ALLOWED``.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

UNITS = r"frames/s|fps|GB/s|MB/s|GB|dB|px|ms|µs|s|%|degrees|deg|°"
NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
FIGURE = re.compile(
    rf"(?<![\w.])(?<![\deE][-−])(?P<a>{NUM})(?:\s*(?:-|–|\.\.|to)\s*(?P<b>{NUM}))?"
    rf"[ \u00a0]?(?P<unit>{UNITS})(?![A-Za-z0-9])")
NUMBER = re.compile(rf"(?<![\w.])(?<![\deE][-−])(?:{NUM})(?![\w])")
BOUND = re.compile(r"(?:<|>|≤|≥|±|<=|>=|at most|at least|up to|more than|less than|below|above|over|under|"
                   r"within|tolerance|default|every)\s*$", re.IGNORECASE)
HEADER_UNIT = re.compile(rf"\((?:[^)]*?\s)?(?:{UNITS})(?![A-Za-z])|(?:^|\s)(?:{UNITS})$|frames/s|fps")

# Specifications, not measurements: (doc, text containing the figure). Keep this short; a
# measured figure never belongs here.
ALLOWED = [
    ("docs/poses.md", "From 640 px up"),  # the tracker's affine-pass switch, a parameter
    ("docs/synthetic.md", "50 deg elevation, 1 deg disc"),  # the scene's sun, a scene parameter
    ("docs/stereo.md", "(0.5 px) of the"),  # the z-buffer tolerance z_tol, a parameter
    ("docs/stereo.md", "within 4 px of a hole"),  # the background fill's mask band, a parameter
    ("docs/stereo.md", "keeps 25 fps"),  # the frame rate of a test input
    ("docs/compositing.md", "90-degree"),  # the cube faces' field of view
    ("docs/compositing.md", "render long side 240 px"),  # preview settings (options)
    ("docs/compositing.md", "60 steps at 240 px"),
    ("docs/compositing.md", "32 px environment"),
    ("docs/compositing.md", "7000 steps at up to 1600 px, SH degree 3, 256 px faces"),  # full settings
    ("docs/compositing.md", "at 90 degrees what lit"),  # an example of the rotation control
    ("docs/compositing.md", "a whole 8 px, so the converged right eye's truth is that image moved 8 px"),  # test setup
    ("docs/addon.md", "*Preview* (240 px"),  # the preview's settings
    ("docs/addon.md", "at 240 px"),  # a test's frame size
    ("docs/addon.md", "in 0.5 s attempts"),  # the link's connect timeout, a parameter
    ("docs/conventions.md", "+90 deg rotation"),  # axis conventions: exact rotations
    ("docs/conventions.md", "180 deg rotation"),
    ("docs/conventions.md", "near 180 deg"),
    ("docs/conventions.md", "differs by 0.5 px"),  # the pixel-centre convention's offset
    ("docs/protocol.md", "SIGKILL after 1 s"),  # the cancel protocol's grace period
]


@dataclass(frozen=True)
class Figure:
    path: str
    line: int
    number: str
    text: str
    sources: tuple[str, ...] = ()  # stems of the results files the text names (empty: any)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.number!r} in {self.text!r}"


def _script_names() -> list[str]:
    """Names results files start with: each script's stem, also with dashes (poses_spread ->
    poses-spread), longest first."""
    stems = [p.stem for p in (ROOT / "benchmarks").glob("*.py")]
    return sorted({s for stem in stems for s in (stem, stem.replace("_", "-"))}, key=len, reverse=True)


RESULTS_NAME = re.compile(rf"(?<![\w.-])((?:{'|'.join(map(re.escape, _script_names()))})-[\w.-]*?)\.(?:json|md)\b")


def cited(text: str) -> tuple[str, ...]:
    """Stems of the results files named in ``text`` (``poses-cpu-2core.md`` -> ``poses-cpu-2core``)."""
    return tuple(sorted(set(RESULTS_NAME.findall(text))))


def results_values(results_dir: Path, stems: tuple[str, ...] = ()) -> list[float]:
    """Every number in the files under ``results_dir`` (only those of ``stems`` if given;
    absolute values, sorted)."""
    values = set()
    pat = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
    for p in sorted(results_dir.rglob("*")):
        if p.is_file() and (not stems or p.stem in stems):
            for tok in pat.findall(p.read_text(errors="replace")):
                try:
                    values.add(abs(float(tok.replace(",", ""))))
                except ValueError:
                    pass
    return sorted(values)


def is_backed(number: str, values: list[float]) -> bool:
    """Whether some value rounds to ``number`` at the decimals it is quoted with."""
    q = float(number.replace(",", ""))
    decimals = len(number.split(".")[1]) if "." in number else 0
    half = 0.5 * 10.0 ** -decimals + 1e-9 * max(1.0, q)
    i = bisect.bisect_left(values, q - half)
    return i < len(values) and values[i] <= q + half


def _strip_code(text: str) -> str:
    text = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), text)
    return re.sub(r"\]\([^)]*\)", lambda m: " " * len(m.group()), text)  # link targets


def _allowed(rel: str, text: str, start: int, end: int) -> bool:
    for doc, phrase in ALLOWED:
        if doc != rel:
            continue
        for m in re.finditer(re.escape(phrase), text):
            if m.start() <= start and end <= m.end():
                return True
    return False


def _bounded(text: str, start: int) -> bool:
    return BOUND.search(text[max(0, start - 24):start]) is not None


def _blocks(lines: list[str]):
    """(kind, first line number, lines): prose paragraphs and tables, code blocks dropped."""
    block, kind, first, fenced = [], None, 0, False
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            if block:
                yield kind, first, block
            block, kind = [], None
            continue
        if fenced:
            continue
        this = "table" if line.lstrip().startswith("|") else ("prose" if line.strip() else None)
        if this != kind or this is None:
            if block:
                yield kind, first, block
            block, kind, first = [], this, i
        if this:
            block.append(line)
    if block and not fenced:
        yield kind, first, block


def _prose_figures(rel: str, first: int, block: list[str]):
    sources = cited(" ".join(block))
    text = _strip_code(" ".join(block))
    starts = [0]
    for line in block:
        starts.append(starts[-1] + len(line) + 1)
    for m in FIGURE.finditer(text):
        if _bounded(text, m.start()) or _allowed(rel, text, m.start(), m.end()):
            continue
        line = first + bisect.bisect_right(starts, m.start()) - 1
        for key in ("a", "b"):
            if m.group(key):
                yield Figure(rel, line, m.group(key), m.group(), sources)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_figures(rel: str, first: int, block: list[str], before: tuple[str, ...] = ()):
    header, col_units = None, []
    table_sources = cited(" ".join(block)) or before
    for k, line in enumerate(block):
        sources = cited(line) or table_sources
        cells = _cells(_strip_code(line))
        if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
            continue
        if header is None:
            header = cells
            col_units = [bool(HEADER_UNIT.search(c)) for c in cells]
            continue
        row_unit = bool(cells) and bool(re.search(rf"\((?:[^)]*?\s)?(?:{UNITS})(?![A-Za-z])", cells[0]))
        for j, cell in enumerate(cells):
            found = set()
            for m in FIGURE.finditer(cell):
                exempt = _bounded(cell, m.start()) or _allowed(rel, cell, m.start(), m.end())
                for key in ("a", "b"):
                    if m.group(key):
                        found.add(m.group(key))
                        if not exempt:
                            yield Figure(rel, first + k, m.group(key), cell, sources)
            if j > 0 and (row_unit or (j < len(col_units) and col_units[j])):
                for m in NUMBER.finditer(cell):
                    if m.group() not in found and not _bounded(cell, m.start()):
                        yield Figure(rel, first + k, m.group(), cell, sources)


def doc_figures(rel: str, text: str) -> list[Figure]:
    """The figures of one Markdown document (``rel``: its path relative to the repository)."""
    out, before = [], ()
    for kind, first, block in _blocks(text.splitlines()):
        if kind == "table":  # a table naming no results file takes those of the paragraph above it
            out += list(_table_figures(rel, first, block, before))
        else:
            out += list(_prose_figures(rel, first, block))
            before = cited(" ".join(block))
    return out


def unbacked(docs: dict[str, str], results_dir: Path) -> list[Figure]:
    """Figures of ``docs`` ({relative path: text}) that no file under ``results_dir`` holds."""
    cache: dict[tuple[str, ...], list[float]] = {}
    out = []
    for rel, text in docs.items():
        for f in doc_figures(rel, text):
            if f.sources not in cache:
                cache[f.sources] = results_values(results_dir, f.sources)
            if not is_backed(f.number, cache[f.sources]):
                out.append(f)
    return out


def _repo_docs() -> dict[str, str]:
    paths = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    return {str(p.relative_to(ROOT)): p.read_text() for p in paths}


# --- the checker itself -------------------------------------------------------------------

def test_checker_flags_unbacked_figures(tmp_path):
    (tmp_path / "bench-m.json").write_text('{"err_px": 0.366357, "psnr": 31.04, "fps": 16.804, "n": 1,600}')
    (tmp_path / "bench-m.md").write_text("| a | b |\n|---|---|\n| 19.68 | 5.2e-3 |\n")
    doc = "\n".join([
        "# T",
        "Ours 0.37 px and 0.42 px; 16.8 frames/s, 17 fps and 31.04 dB; 0.0052 deg.",  # 0.42 px unbacked
        "Across lines 19.68",
        "dB here, and a range 0.37-0.44 px.",  # 0.44 unbacked
        "Bounds are not figures: < 0.9 px, at most 3 s, default 7 %, `0.91 px` in code.",
        "```",
        "0.93 px in a code block",
        "```",
        "| method | PSNR (dB) | steps |",
        "|---|---|---|",
        "| ours | 31.04 | 7001 |",
        "| naive | 29.5 | 7002 |",  # 29.5 unbacked (the unit is in the header); steps have none
        "| drift (px at 1080p) | 0.37 | 0.55 |",  # 0.55 unbacked (the unit is in the row)
        "| other | 12 s | x |",  # 12 s unbacked
    ])
    bad = unbacked({"docs/t.md": doc}, tmp_path)
    assert sorted((f.line, f.number) for f in bad) == [(2, "0.42"), (4, "0.44"), (12, "29.5"),
                                                       (13, "0.55"), (14, "12")], [str(f) for f in bad]


def test_checker_rounding_and_allow_list(tmp_path):
    (tmp_path / "r.json").write_text('{"a": 0.002019, "b": 0.01, "c": 399.019, "d": 1434.05}')
    values = results_values(tmp_path)
    assert is_backed("0.0020", values) and is_backed("0.0100", values) and is_backed("0.01", values)
    assert is_backed("399", values) and is_backed("1,434", values)
    assert not is_backed("0.0021", values) and not is_backed("398", values) and not is_backed("0.011", values)
    doc = "The sun: 50 deg elevation, 1 deg disc. Elsewhere 50 deg elevation, 1 deg disc too, and 51 deg."
    assert [f.number for f in unbacked({"docs/synthetic.md": doc}, tmp_path)] == ["51"]
    assert len(unbacked({"docs/other.md": doc}, tmp_path)) == 5  # the allow-list is per document


def test_checker_uses_the_results_files_a_paragraph_names(tmp_path):
    (tmp_path / "poses-a.json").write_text('{"rot": 0.0019}')
    (tmp_path / "poses-a.md").write_text("| 18.4 |")
    (tmp_path / "poses-b.json").write_text('{"rot": 0.0047}')
    doc = "\n".join([
        "From `poses-a.md`: 0.0019 deg in 18.4 s, and 0.0047 deg.",  # 0.0047 is only in poses-b
        "",
        "Anywhere: 0.0047 deg.",
        "",
        "| file | rotation (deg) |",
        "|---|---|",
        "| `poses-b.md` | 0.0047 |",
        "| `poses-b.md` | 0.0019 |",  # the row names poses-b
        "| | 0.0019 |",  # the table names poses-b only
        "",
        "Measured (`poses-b.json`):",
        "",
        "| x | rotation (deg) |",
        "|---|---|",
        "| y | 0.0019 |",  # the paragraph above names poses-b
    ])
    bad = unbacked({"docs/t.md": doc}, tmp_path)
    assert [(f.line, f.number) for f in bad] == [(1, "0.0047"), (8, "0.0019"), (9, "0.0019"), (15, "0.0019")], \
        [str(f) for f in bad]


# --- the repository -----------------------------------------------------------------------

def test_every_docs_figure_is_in_a_results_file():
    bad = unbacked(_repo_docs(), RESULTS)
    assert not bad, ("figures in the docs that no file in benchmarks/results/ holds (back them with a "
                     "results file written by a script in benchmarks/, or remove them):\n"
                     + "\n".join(map(str, bad)))


def test_results_files_named_in_the_docs_exist():
    files = {p.stem for p in RESULTS.iterdir() if p.is_file()}
    missing = [(rel, stem) for rel, text in _repo_docs().items() for stem in cited(text) if stem not in files]
    assert not missing, f"docs name results files that benchmarks/results/ does not hold: {missing}"


def test_allow_list_entries_are_used():
    docs = _repo_docs()
    stale = [(d, p) for d, p in ALLOWED if p not in docs.get(d, "")]
    assert not stale, f"allow-list entries whose text is no longer in the doc: {stale}"


def test_results_files_come_from_benchmark_scripts():
    scripts = _script_names()
    files = sorted(p for p in RESULTS.iterdir() if p.is_file())
    assert files
    orphans = [p.name for p in files if not any(p.name.startswith(s + "-") for s in scripts)]
    assert not orphans, f"results files named after no script in benchmarks/: {orphans}"
    no_json = [p.name for p in files if p.suffix == ".md" and not p.with_suffix(".json").exists()]
    assert not no_json, f"Markdown results without the JSON their script writes beside them: {no_json}"


if __name__ == "__main__":  # pragma: no cover
    for fig in unbacked(_repo_docs(), RESULTS):
        print(fig)
    pytest.main([__file__, "-q"])
