"""The built extension zip installs into Blender, enables, and registers/unregisters cleanly.

``build_addon.py`` is run into a temporary folder with ``--offline``: the pyzmq wheels come
from the repository's wheel cache (``.cache/wheels``, filled by a normal ``python
build_addon.py``). Without a cache the zip is built without wheels and the wheel checks are
skipped with the reason given.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import REPO, run_script  # noqa: E402

sys.path.insert(0, str(REPO))
import build_addon  # noqa: E402

CACHE = REPO / ".cache" / "wheels"


def _have_wheels() -> bool:
    try:
        build_addon.fetch_wheels(CACHE, build_addon.PYZMQ_VERSION, offline=True)
        return True
    except build_addon.BuildError:
        return False


HAVE_WHEELS = _have_wheels()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    args = [sys.executable, str(REPO / "build_addon.py"), "--out", str(out), "--wheel-cache", str(CACHE), "--offline"]
    if not HAVE_WHEELS:
        args.append("--no-wheels")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    out = tmp / "report.json"
    # no PYTHONPATH to the checkout: the installed extension must be self-contained
    proc = run_script("install_extension.py", built, out, user_dir=tmp / "user", extra_env={"PYTHONPATH": ""})
    report = json.loads(out.read_text())
    report["log"] = proc.stdout + proc.stderr
    return report


def test_zip_layout_and_manifest(built):
    with zipfile.ZipFile(built) as zf:
        names = set(zf.namelist())
        manifest = zf.read("blender_manifest.toml").decode()
    assert {"blender_manifest.toml", "__init__.py", "shared_protocol/client.py",
            "shared_protocol/conventions.py", "shared_protocol/camera_file.py",
            "shared_protocol/camera_paths.py", "shared_protocol/glb_check.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert re.search(r'^blender_version_min = "4\.2\.0"', manifest, re.M)
    assert "[permissions]" in manifest and re.search(r"^files = ", manifest, re.M) and re.search(r"^network = ", manifest, re.M)
    wheels = re.findall(r'"\./wheels/([^"]+)"', manifest)
    assert all(f"wheels/{w}" in names for w in wheels)


@pytest.mark.skipif(not HAVE_WHEELS, reason=f"no pyzmq wheels in {CACHE} (run python build_addon.py once)")
@pytest.mark.parametrize("python", build_addon.PYTHONS)
@pytest.mark.parametrize("platform", list(build_addon.PLATFORMS))
def test_a_wheel_for_every_python_and_platform(built, python, platform):
    with zipfile.ZipFile(built) as zf:
        manifest = zf.read("blender_manifest.toml").decode()
    wheels = re.findall(r'"\./wheels/([^"]+)"', manifest)
    assert any(build_addon.wheel_matches(w, python, platform) for w in wheels), (python, platform, wheels)


def test_blender_validates_the_package(installed):
    if installed["validate"] is None:
        pytest.skip("this Blender has no bl_pkg validator")
    assert installed["validate"]["rc"] == 0, installed["validate"]["output"]


def test_installs_and_enables(installed):
    assert installed.get("install") == ["FINISHED"], installed.get("install_error")
    first = installed["steps"][0]
    assert first["enabled"] and first["scene_prop"] and first["operators_callable"]
    assert {"SPLATSTAGE_PT_backend", "SPLATSTAGE_OT_import_splats", "SPLATSTAGE_OT_add_camera_path"} <= set(first["registered"])
    assert "preferences:tcp://127.0.0.1:5555" in first["registered"]
    assert first["protocol_module"].endswith("splatstage.shared_protocol"), "uses the vendored protocol"
    assert first["shared_modules"] == {
        "camera_paths_bpy": "bl_ext.user_default.splatstage.shared_protocol.camera_paths",
        "core.job_params": "bl_ext.user_default.splatstage.shared_protocol.glb_check",
        "blender.product": "bl_ext.user_default.splatstage.shared_protocol.glb_check"}, "the vendored formats"
    assert first["status_draw"] == 1
    if HAVE_WHEELS:
        assert first["wheel_zmq_binaries"] >= 1, "Blender installed the bundled pyzmq wheel"


def test_no_python_errors_logged(installed):
    bad = [line for line in installed["log"].splitlines()
           if "Traceback" in line or "Error" in line and not line.startswith(("Error: Not freed", "Freeing memory"))]
    assert not bad, bad


def test_register_unregister_twice_without_leaks(installed):
    steps = {s["label"]: s for s in installed["steps"]}
    for label in ("disabled 0", "disabled 1", "final disabled"):
        s = steps[label]
        assert not s["enabled"] and s["registered"] == [] and not s["scene_prop"], label
        assert not s["timer"] and s["status_draw"] == 0 and s["link_threads"] == 0, label
    for label in ("enabled 0", "enabled 1"):
        s = steps[label]
        assert s["enabled"] and s["scene_prop"] and s["status_draw"] == 1, label
        assert len(s["registered"]) == len(steps["installed"]["registered"]), label
    for label in ("connecting 0", "connecting 1"):
        assert steps[label]["timer"] and steps[label]["link_threads"] == 1, label

