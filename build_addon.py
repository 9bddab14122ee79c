#!/usr/bin/env python3
"""Build the installable Blender extension zip: ``python build_addon.py [--out dist]``.

The zip holds the add-on (``blender_addon/``) at its root, a vendored copy of
``shared_protocol`` (protocol, conventions, camera file, camera paths, GLB checks, client)
inside it, and pyzmq wheels for Blender's Python 3.11 (Blender 4.2-5.0) and 3.13 (later
releases) on Linux x86_64, Windows x64 and macOS (arm64 and x86_64), declared in
``blender_manifest.toml`` so Blender installs the right one. Wheels are fetched with ``pip download --only-binary=:all:`` into a
cache folder (``.cache/wheels``, never committed); ``--offline`` uses only the cache.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
PROTOCOL = ROOT / "shared_protocol"
PYZMQ_VERSION = "27.1.0"
PYTHONS = ("3.11", "3.13")
# Blender platform -> pip --platform tags to try (newest first); universal2 covers both macOS arches
PLATFORMS = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_10_15_x86_64", "macosx_10_9_x86_64"),
}
EXCLUDE = re.compile(r"(__pycache__|\.pyc$|\.pyo$|\.DS_Store$)")


class BuildError(RuntimeError):
    pass


def manifest_version(text: str) -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        raise BuildError("blender_manifest.toml: no version")
    return m.group(1)


def wheel_matches(name: str, python: str, platform: str) -> bool:
    """Whether a pyzmq wheel file name serves ``python`` (e.g. "3.13") on a Blender platform."""
    parts = name[:-4].split("-")
    if len(parts) < 5:
        return False
    py_tag, abi_tag, plat_tag = parts[-3:]
    major_minor = python.replace(".", "")
    if abi_tag == "abi3":
        ok_py = int(py_tag[2:]) <= int(major_minor)
    else:
        ok_py = py_tag == f"cp{major_minor}"
    arch = {"linux-x64": "x86_64", "windows-x64": "amd64", "macos-arm64": "arm64", "macos-x64": "x86_64"}[platform]
    os_ok = {"linux-x64": "linux", "windows-x64": "win", "macos-arm64": "macosx", "macos-x64": "macosx"}[platform]
    plat_ok = os_ok in plat_tag and (plat_tag.endswith(arch) or (os_ok == "macosx" and plat_tag.endswith("universal2")))
    return ok_py and plat_ok


def fetch_wheels(cache: Path, version: str, offline: bool) -> list[Path]:
    """One pyzmq wheel per (Python, platform), from the cache or downloaded into it."""
    if not offline:
        cache.mkdir(parents=True, exist_ok=True)
    chosen: list[Path] = []
    for python in PYTHONS:
        for platform, tags in PLATFORMS.items():
            def cached() -> list[Path]:
                return sorted(p for p in cache.glob(f"pyzmq-{version}-*.whl") if wheel_matches(p.name, python, platform))

            found = cached()
            if not found and not offline:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--implementation", "cp", "--python-version", python, "-d", str(cache), "-q"]
                for tag in tags:
                    cmd += ["--platform", tag]
                proc = subprocess.run(cmd + [f"pyzmq=={version}"], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise BuildError(f"pip download pyzmq=={version} for Python {python} {platform} failed: "
                                     f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
                found = cached()
            if not found:
                raise BuildError(f"no pyzmq {version} wheel for Python {python} on {platform} in {cache}"
                                 + (" (run without --offline to download it)" if offline else ""))
            if found[0] not in chosen:
                chosen.append(found[0])
    return chosen


def render_manifest(text: str, wheels: list[Path]) -> str:
    """The manifest with ``platforms`` and ``wheels`` inserted among the top-level keys."""
    lines = [f'platforms = [{", ".join(chr(34) + p + chr(34) for p in PLATFORMS)}]']
    if wheels:
        lines.append("wheels = [")
        lines += [f'  "./wheels/{w.name}",' for w in wheels]
        lines.append("]")
    block = "\n".join(lines) + "\n\n"
    m = re.search(r"^\[", text, re.M)
    return text[:m.start()] + block + text[m.start():] if m else text + "\n" + block


def stage(dest: Path, wheels: list[Path]) -> None:
    def copytree(src: Path, dst: Path) -> None:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if EXCLUDE.search(str(rel)) or path.is_dir():
                continue
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / rel)

    copytree(ADDON, dest)
    if (dest / "shared_protocol").exists():
        raise BuildError("blender_addon/shared_protocol exists; the vendored copy would clash")
    copytree(PROTOCOL, dest / "shared_protocol")
    text = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
    (dest / "blender_manifest.toml").write_text(render_manifest(text, wheels), encoding="utf-8")
    if wheels:
        (dest / "wheels").mkdir()
        for w in wheels:
            shutil.copy2(w, dest / "wheels" / w.name)


def write_zip(src: Path, zip_path: Path) -> None:
    tmp = zip_path.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    tmp.replace(zip_path)


def build(out_dir: Path, cache: Path, version: str = PYZMQ_VERSION, offline: bool = False,
          with_wheels: bool = True) -> Path:
    """Build the extension zip into ``out_dir`` and return its path."""
    manifest = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
    wheels = fetch_wheels(cache, version, offline) if with_wheels else []
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"splatstage-{manifest_version(manifest)}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        stage(Path(tmp), wheels)
        write_zip(Path(tmp), zip_path)
    return zip_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    ap.add_argument("--wheel-cache", type=Path, default=ROOT / ".cache" / "wheels",
                    help="pyzmq wheel cache (default: .cache/wheels)")
    ap.add_argument("--pyzmq-version", default=PYZMQ_VERSION)
    ap.add_argument("--offline", action="store_true", help="use only wheels already in the cache")
    ap.add_argument("--no-wheels", action="store_true", help="leave the wheels out (pyzmq must be provided)")
    args = ap.parse_args(argv)
    try:
        path = build(args.out, args.wheel_cache, args.pyzmq_version, args.offline, not args.no_wheels)
    except (BuildError, OSError) as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
