"""The house keeps its layers, read from the source with ``ast`` (every import statement counts,
also those inside functions):

* no module of ``backend/`` or ``shared_protocol/`` imports ``blender_addon``;
* ``shared_protocol`` imports only the standard library, numpy and itself (pyzmq only in
  ``client.py``), so Blender's Python runs it and the add-on can vendor it;
* the add-on reaches ``shared_protocol`` only through ``blender_addon/vendor.py`` (the built
  extension has no top-level ``shared_protocol``) and never imports ``backend``;
* the backend's floors (pipelines and what they use; job kinds, runner and server; command
  line) import only from their own floor or lower ones;
* no import cycles among the modules of ``backend/`` and ``shared_protocol/``.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "shared_protocol")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(*packages: str) -> dict[str, Path]:
    return {module_name(p): p for pkg in packages for p in sorted((REPO / pkg).rglob("*.py"))}


def imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement of the file;
    relative imports resolved against ``name``."""
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


def edges(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports: ``from X import Y`` is an edge to ``X.Y`` when that
    is a module, else to ``X``."""
    out = set()
    for target, names, _ in imports(name, path):
        subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
        out.update(subs)
        if target in known and len(subs) < len(names) or target in known and not names:
            out.add(target)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_sees_every_import_form(tmp_path):
    """The scanner itself on known input: absolute, relative, nested, ``from pkg import module``."""
    known = {"pkg": Path("pkg/__init__.py"), "pkg.a": Path("pkg/a.py"), "pkg.b": Path("pkg/b.py"),
             "pkg.sub": Path("pkg/sub/__init__.py"), "pkg.sub.c": Path("pkg/sub/c.py")}
    probe = tmp_path / "a.py"
    probe.write_text("import os\nfrom . import b\nfrom .sub import c, helper\n"
                     "def f():\n    from pkg.sub.c import thing\n    import pkg\n")
    assert edges("pkg.a", probe, known) == {"pkg", "pkg.b", "pkg.sub", "pkg.sub.c"}
    init = tmp_path / "__init__.py"
    init.write_text("from .a import x\nfrom ..other import y\n")
    assert [t for t, _, _ in imports("pkg.sub", init)] == ["pkg.sub.a", "pkg.other"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_backend_and_shared_protocol_never_import_the_addon():
    bad = [f"{path.relative_to(REPO)}:{line}: imports {target}"
           for name, path in modules(*PACKAGES).items() for target, _, line in imports(name, path)
           if target == "blender_addon" or target.startswith("blender_addon.")]
    assert not bad, "\n".join(bad)


def test_shared_protocol_needs_only_stdlib_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "shared_protocol"}
    bad = []
    for name, path in modules("shared_protocol").items():
        for target, _, line in imports(name, path):
            top = target.split(".")[0]
            if top in allowed or (top == "zmq" and name == "shared_protocol.client"):
                continue
            bad.append(f"{path.relative_to(REPO)}:{line}: imports {target}")
    assert not bad, "\n".join(bad)


def test_the_addon_uses_its_vendored_protocol_and_no_backend():
    bad = []
    for name, path in modules("blender_addon").items():
        if name == "blender_addon.vendor":
            continue
        for target, _, line in imports(name, path):
            top = target.split(".")[0]
            if top in ("shared_protocol", "backend"):
                bad.append(f"{path.relative_to(REPO)}:{line}: imports {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_in_backend_and_shared_protocol():
    known = modules(*PACKAGES)
    graph = {name: edges(name, path, known) for name, path in known.items()}
    assert sum(map(len, graph.values())) > 100, "the scan found the imports"
    assert "backend.results" in graph["backend.pipelines.stereo.scene"]
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


#: The backend's floors above the pipelines (everything else in backend/ is floor 2: progress,
#: results, media, evaluation, synthetic truth, pipelines, models).
FLOORS = {3: ("backend.jobs", "backend.runner", "backend.server"),
          4: ("backend.pipeline_cli", "backend.demo", "backend.batch", "backend.cli")}


def floor(name: str) -> int:
    if name == "backend":
        return 1  # the package itself: its version
    for level, prefixes in FLOORS.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return level
    return 2


def test_floors_never_reach_up():
    """Pipelines, media, evaluation, synthetic truth, progress and results (floor 2) are below
    the job kinds, the runner and the server (3), which are below the command line (4); a
    module imports from its own floor or lower ones only."""
    known = modules("backend")
    assert floor("backend.pipelines.stereo.scene") == 2 and floor("backend.results") == 2
    assert floor("backend.jobs.poses") == 3 and floor("backend.cli") == 4
    bad = [f"{path.relative_to(REPO)} (floor {floor(name)}) imports {target} (floor {floor(target)})"
           for name, path in known.items() for target in sorted(edges(name, path, known))
           if floor(target) > floor(name)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("moved", ["camera_paths", "glb_check"])
def test_shared_formats_live_in_shared_protocol(moved):
    """Camera paths and GLB checks have one home, which both sides import."""
    assert (REPO / "shared_protocol" / f"{moved}.py").is_file()
    assert not list((REPO / "blender_addon").rglob(f"{moved}.py"))
