"""The headless batch as docs/addon.md shows it, on a machine where no backend runs.

``batch.py --video V --product P --out DIR`` with no ``--backend``: nothing answers at the
default address, so the batch starts its own ``splatstage serve``, solves on it and stops it;
afterwards no process of it is left and nothing listens on its port. The saved .blend (no
.blend was given) holds none of Blender's startup Cube, Light and Camera. The product's size is
one number: the model's own glTF metres by default, ``--size`` along ``--axis`` otherwise, and
the .blend, the Render panel's ``composite`` params and the product the render builds from
them agree on it, against the height read from the GLB with trimesh.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import REPO, bpy_python, run_script  # noqa: E402

BATCH = REPO / "blender_addon" / "batch.py"
SAMPLES = REPO / "backend" / "samples"
CLIP, PRODUCT = SAMPLES / "sample_clip.mp4", SAMPLES / "product.glb"


def glb_extent() -> list[float]:
    """The sample product's size from the file itself: (width X, depth, height) in Blender's axes
    (glTF is Y-up; Blender's importer turns +Y into +Z)."""
    import trimesh

    ext = trimesh.load(PRODUCT).extents  # glTF axes: x, y (up), z
    return [float(ext[0]), float(ext[2]), float(ext[1])]


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_members(pgid: int) -> list[str]:
    """Live processes of process group ``pgid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(text.split(")")[0] + ")")
    return out


def run_batch_without_backend(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    """The batch with no --backend on a machine where nothing answers at its default address;
    checks that it started a local backend and that nothing of it is left afterwards."""
    if listening(5555):
        pytest.skip("something listens on tcp://127.0.0.1:5555, the batch's default address: it would use that")
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "u"))
    env.pop("PYTHONPATH", None)  # batch.py finds the add-on of its own checkout
    proc = subprocess.run([bpy_python(), str(BATCH), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)
    started = re.search(r"starting a local backend on tcp://127\.0\.0\.1:(\d+)", proc.stdout)
    ready = re.search(r"local backend ready \(pid (\d+)\)", proc.stdout)
    stopped = re.search(r"local backend stopped \(pid (\d+)\)", proc.stdout)
    assert started and ready and stopped, proc.stdout[-3000:] + proc.stderr[-3000:]
    pid, port = int(ready.group(1)), int(started.group(1))
    assert int(stopped.group(1)) == pid
    assert not group_members(pid), "processes of the local backend are left"
    assert not listening(port) and not listening(5555)
    return proc


needs_proc = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process groups from /proc (Linux)")


@needs_proc
def test_batch_without_backend_starts_and_stops_its_own(tmp_path):
    out = tmp_path / "out"
    proc = run_batch_without_backend(tmp_path, "--video", CLIP, "--product", PRODUCT, "--out", out, "--end", "23")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    blend = Path(proc.stdout.strip().splitlines()[-1])
    assert blend == (out / "scene.blend").resolve() and blend.is_file()
    assert (out / "solve" / "cameras.json").is_file()

    report = tmp_path / "report.json"
    run_script("batch_product_size.py", report, "--blend", blend, user_dir=tmp_path / "u2")
    r = json.loads(report.read_text())
    # an empty start: no startup Cube, Light or Camera, no light at all (the add-on adds none)
    assert not {"Cube", "Light", "Camera"} & set(r["objects"]), r["objects"]
    assert "Cube" not in r["meshes"] and r["lights"] == []
    assert len(r["cameras"]) == 1 and r["cameras"][0] != "Camera"
    # one size, the model's own: glTF metres (float32 vertices: 1e-6 relative)
    height = glb_extent()[2]
    for key in ("blend_height", "recorded_height", "render_param", "render_height"):
        assert r[key] == pytest.approx(height, rel=1e-5), (key, r)


@pytest.mark.parametrize("size, axis", [(None, "LARGEST"), (0.4, "LARGEST"), (0.1, "WIDTH"), (0.3, "HEIGHT")])
def test_product_size_is_one_number_in_blend_and_render(tmp_path, size, axis):
    """``batch.insert_product`` in an empty scene (no solve needed: the ground is world Z = 0)."""
    ext = glb_extent()
    index = {"WIDTH": 0, "DEPTH": 1, "HEIGHT": 2}.get(axis)
    along = max(ext) if index is None else ext[index]
    scale = 1.0 if size is None else size / along
    extra = [] if size is None else ["--size", str(size)]
    report = tmp_path / "report.json"
    run_script("batch_product_size.py", report, "--", "--video", CLIP, "--out", tmp_path / "out", "--product",
               PRODUCT, "--place", "cursor", "--axis", axis, *extra, user_dir=tmp_path / "u")
    r = json.loads(report.read_text())
    assert not {"Cube", "Light", "Camera"} & set(r["objects"]), r["objects"]
    assert r["recorded_dimension"] == pytest.approx(scale * along, rel=1e-5)
    assert r["scene_product_size"] == pytest.approx(scale * along, rel=1e-5)
    for key in ("blend_height", "recorded_height", "render_param", "render_height"):
        assert r[key] == pytest.approx(scale * ext[2], rel=1e-5), (key, r)


@needs_proc
def test_a_failed_solve_still_stops_the_local_backend(tmp_path):
    """Featureless frames: the solve fails on the local backend; one error line, no .blend, and
    the backend is gone as well."""
    pytest.importorskip("imageio_ffmpeg")
    from test_addon_cameras import write_video

    video = tmp_path / "flat.mp4"
    write_video(video, 64, 48, 4)
    proc = run_batch_without_backend(tmp_path, "--video", video, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    err = [line for line in proc.stderr.splitlines() if line.startswith("batch: error:")]
    assert len(err) == 1 and "camera solve failed" in err[0], proc.stderr
    assert not (tmp_path / "out" / "scene.blend").exists()
