"""The add-on's Render, Reconstruction and Stereo operators and their bpy-free parameter builders.

The builders (``blender_addon.core.job_params``) are checked against the backend's own job
modules: what the add-on submits equals what ``splatstage <kind>`` sends for the same settings,
and the composite job accepts it. The operators run in a fresh bpy subprocess (this file run as
a script, see ``_scenario``) against a live ``splatstage serve``: the input errors; the
placement pixel picked from the 3D cursor; a stereo preview composite of two frames of the
committed sample clip, reusing a camera solve (the clip's true cameras) and a reconstruction
(flat splats on the true ground plane) so no solve or training runs, where the product must
stand where the requested pixel's ground point is in both eyes; a backend-side error; a short
reconstruction and its import; a scene-stereo video; a cancelled job. None leaves a partial
output or a staging folder behind.
"""
from __future__ import annotations

import argparse
import atexit
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "backend" / "samples"
CLIP, PRODUCT, TRUTH = SAMPLES / "sample_clip.mp4", SAMPLES / "product.glb", SAMPLES / "sample_truth.json"
PIXEL = (300.0, 200.0)      # on the ground of frame 0 (480x270), right of the default anchor
HEIGHT_M = 0.25


# -- the bpy side: ``python tests/test_addon_render.py --scenario ADDRESS SPEC OUT`` -------------

class _Layout:
    """Stands in for a UI layout in background mode; records what a panel draws."""

    active = True

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append((name, kwargs.get("text", "")))
            if name in ("row", "column", "box", "split"):
                return _Layout(self.log)
            if name == "operator":
                return type("Op", (), {})()
            return None
        return call


def _scenario(address: str, spec_path: str, out_path: str) -> None:
    import bpy

    import blender_addon
    from blender_addon import panels
    from blender_addon.blender import link_state
    from blender_addon.blender.link_state import STATE

    spec = json.loads(Path(spec_path).read_text())
    blender_addon.register()
    atexit.register(blender_addon.unregister)
    reports: list[str] = []
    flush = link_state._flush_reports

    def capture():
        reports.extend(f"{lvl}: {txt}" for lvl, txt in STATE.reports)
        flush()

    link_state._flush_reports = capture
    ticks: list[float] = []

    def run_timer(until, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            t0 = time.perf_counter()
            link_state.tick()
            ticks.append(time.perf_counter() - t0)
            time.sleep(0.02)

    def op(name="render_composite", **kw):
        t0 = time.perf_counter()
        try:
            ret, msg = sorted(getattr(bpy.ops.splatstage, name)(asynchronous=True, **kw)), ""
        except RuntimeError as exc:
            ret, msg = ["ERROR"], str(exc).strip()
        return {"ret": ret, "msg": msg, "seconds": time.perf_counter() - t0}

    def draw():
        log = []
        for cls in panels.classes:
            cls.draw(type("P", (), {"layout": _Layout(log)})(), bpy.context)
        panels.draw_status_bar(type("H", (), {"layout": _Layout(log)})(), bpy.context)
        return log

    def run_job(name="render_composite", kind="composite", **kw) -> dict:
        del reports[:]
        del ticks[:]
        res = {"submit": op(name, **kw)}
        view = STATE.job_of_kind(kind)
        fractions, eta, drawn = [], False, []
        done = ("done", "error", "cancelled")
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and view.status not in done:
            run_timer(lambda: True, 0)
            run_timer(lambda: view.status in done, 0.1)
            if view.status == "running" and view.fraction > 0:
                fractions.append(view.fraction)
                eta = eta or view.eta_s is not None
                drawn = drawn or draw()
        run_timer(lambda: False, 0.3)  # the reports of the result handler
        res.update(status=view.status, message=view.message, fractions=fractions, eta_seen=eta,
                   drawn=[list(x) for x in drawn], tick_ms=sorted(1000 * t for t in ticks), reports=list(reports),
                   render_result=bpy.context.scene.splatstage.render_result,
                   stereo_result=bpy.context.scene.splatstage.stereo_result)
        return res

    s = bpy.context.scene.splatstage
    r = {"no_footage": op()}
    bpy.ops.splatstage.load_footage(filepath=spec["video"])
    s.render_output = spec["output"]
    s.product_path = spec["missing_product"]
    r["missing_product"] = op()
    s.product_path = spec["product"]
    r["not_connected"] = op()
    r["jobs_after_errors"] = len(STATE.jobs)

    bpy.ops.splatstage.connect(address=address)
    run_timer(lambda: STATE.status != "connecting", 20)
    r["status_after_connect"] = STATE.status
    s.solve_dir, s.reconstruction_dir = spec["solve"], spec["recon"]
    bpy.ops.splatstage.import_cameras(filepath=str(Path(spec["solve"]) / "cameras.json"))
    bpy.context.scene.frame_set(1)  # video frame 0
    bpy.context.scene.cursor.location = spec["cursor"]
    r["picked"] = {"ret": sorted(bpy.ops.splatstage.placement_from_cursor()), "placement": s.render_placement,
                   "pixel": list(s.render_pixel), "frame": s.render_frame}
    s.render_product_height, s.render_preview, s.render_max_frames = spec["height"], True, 2
    s.render_stereo, s.stereo_layout, s.stereo_interaxial, s.stereo_convergence = True, "tab", 0.065, 0.0
    r["composite"] = run_job()

    s.render_output, s.render_frame = spec["error_output"], 100000
    r["backend_error"] = run_job()

    s.reconstruction_dir, s.recon_steps, s.recon_max_size, s.recon_device = spec["new_recon"], 5, 120, "cpu"
    for _ in range(2):
        res = run_job("reconstruct", "reconstruct")
    # background mode's blocking path (what batch.py uses): the same job, answered from the cache
    try:
        res["blocking"] = sorted(bpy.ops.splatstage.reconstruct(address=address))
    except RuntimeError as exc:
        res["blocking"] = str(exc)
    res["objects"] = [[len(o.data.vertices), o["splatstage_splats"]["source"]]
                      for o in bpy.context.scene.objects if o.get("splatstage_splats")]
    r["reconstruct"] = res
    try:
        r["blocking_unreachable"] = sorted(bpy.ops.splatstage.render_composite(
            address="tcp://127.0.0.1:9", connect_timeout=0.5))
    except RuntimeError as exc:
        r["blocking_unreachable"] = str(exc).strip()

    s.reconstruction_dir, s.stereo_output, s.stereo_layout = spec["recon"], spec["stereo_output"], "tab"
    s.stereo_interaxial, s.stereo_convergence = 0.065, 3.0
    r["stereo"] = run_job("render_stereo", "stereo", max_frames=2)

    s.render_output, s.render_frame, s.render_reuse = spec["cancel_output"], 0, False
    del reports[:]
    res = {"submit": op()}
    view = STATE.job_of_kind("composite")
    res["second"] = op()
    run_timer(lambda: view.status == "running" and view.fraction > 0 or view.status in ("error", "done"), 60)
    res["running_before_cancel"] = view.status == "running"
    t0 = time.monotonic()
    bpy.ops.splatstage.cancel_job()
    run_timer(lambda: view.status in ("done", "error", "cancelled"), 30)
    res.update(status=view.status, message=view.message, cancel_s=time.monotonic() - t0)
    r["cancel"] = res

    from blender_addon import render_ops

    sc = bpy.context.scene
    cam = bpy.data.objects.new("PathCam", bpy.data.cameras.new("PathCam"))
    sc.collection.objects.link(cam)
    sc.frame_start, sc.frame_end = 1, 3
    for f, x in ((1, 0.0), (3, 0.5)):
        cam.location = (x, -2.0, 1.5)
        cam.keyframe_insert("location", frame=f)
    s.render_camera, s.render_stereo = cam, False
    p, _ = render_ops.composite_params(sc)
    doc = json.loads(Path(p["camera_path"]).read_text())
    r["camera_path"] = {"frames": len(doc["camera_path"]), "size": [doc["render_width"], doc["render_height"]],
                        "xs": [c["camera_to_world"][3] for c in doc["camera_path"]],
                        "scene_size": [sc.render.resolution_x, sc.render.resolution_y]}
    s.render_stereo = True
    try:
        render_ops.composite_params(sc)
        r["camera_path"]["stereo_error"] = None
    except Exception as exc:  # noqa: BLE001 - the message is what the test checks
        r["camera_path"]["stereo_error"] = str(exc)
    bpy.ops.splatstage.disconnect()
    Path(out_path).write_text(json.dumps(r))


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--scenario":
    # the bpy side runs in Blender's Python (an LTS one has no pytest): stop before the tests
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)  # the tests folder must not shadow top-level modules
    _scenario(*sys.argv[2:5])
    sys.exit(0)

import pytest  # noqa: E402  (after the bpy side, which runs without pytest)


# -- bpy-free parameter builders ---------------------------------------------------------------

def _cli_params(kind: str, argv: list[str]) -> dict:
    import importlib

    mod = importlib.import_module(f"backend.jobs.{kind}")
    ap = argparse.ArgumentParser()
    mod.add_arguments(ap)
    return mod.params_from_args(ap.parse_args(argv))


def test_composite_params_equal_the_cli_and_the_job_accepts_them(tmp_path):
    from backend.jobs.composite import request_from_params
    from blender_addon.core.job_params import composite_params

    solve, recon = _solve_and_splats(tmp_path)
    p = composite_params(CLIP, PRODUCT, at_pixel=[12.5, 200], at_frame=3, product_height=0.3, rotate_deg=45,
                         preview=True, steps=9, device="cpu", solve_dir=solve, reconstruction_dir=recon,
                         max_frames=2)
    cli = _cli_params("composite", [str(CLIP), str(PRODUCT), "--at-pixel", "12.5,200", "--at-frame", "3",
                                    "--product-height", "0.3", "--rotate", "45", "--preview", "--steps", "9",
                                    "--device", "cpu", "--solve", str(solve), "--reconstruction", str(recon),
                                    "--max-frames", "2"])
    assert {k: cli[k] for k in p} == p
    req = request_from_params(p)
    assert req.at_pixel == (12.5, 200.0) and req.at_frame == 3 and req.product_height == 0.3
    assert req.rotate_deg == 45 and req.settings.preview and req.settings.steps == 9
    assert req.solve_dir == Path(solve) and req.reconstruction == Path(recon) and req.max_frames == 2
    p = composite_params(CLIP, PRODUCT, exposure=1.5, env_rotation_deg=30.0)
    cli = _cli_params("composite", [str(CLIP), str(PRODUCT), "--exposure", "1.5", "--env-rotation", "30"])
    assert {k: cli[k] for k in p} == p
    req = request_from_params(p)
    assert (req.settings.env_exposure, req.settings.env_rotation_deg) == (1.5, 30.0)
    p = composite_params(CLIP, PRODUCT, stereo="tab", interaxial=0.1, convergence=2.0)
    cli = _cli_params("composite", [str(CLIP), str(PRODUCT), "--stereo", "tab", "--interaxial", "0.1",
                                    "--convergence", "2"])
    assert {k: cli[k] for k in p} == p
    req = request_from_params(p)
    assert (req.stereo.layout, req.stereo.interaxial, req.stereo.convergence) == ("tab", 0.1, 2.0)
    assert request_from_params(composite_params(CLIP, PRODUCT, stereo="sbs")).stereo.convergence is None
    from shared_protocol.camera_paths import CameraPath, write_nerfstudio
    from blender_addon.core import job_params

    cp = write_nerfstudio(CameraPath(np.tile(np.eye(4), (2, 1, 1)), 500.0, 64, 48, 10.0), tmp_path / "path.json")
    p = composite_params(CLIP, PRODUCT, camera_path=cp)
    assert {k: v for k, v in _cli_params("composite", [str(CLIP), str(PRODUCT), "--camera-path", str(cp)]).items()
            if k in p} == p
    assert request_from_params(p).camera_path == Path(cp)
    with pytest.raises(job_params.ParamError, match="mono"):
        composite_params(CLIP, PRODUCT, camera_path=cp, stereo="sbs")
    with pytest.raises(job_params.ParamError, match="camera path not found"):
        composite_params(CLIP, PRODUCT, camera_path=tmp_path / "nothing.json")
    default = composite_params(str(CLIP), str(PRODUCT))
    assert default["at_pixel"] is None and default["product_height"] is None and default["steps"] is None
    assert request_from_params(default).settings.preview is False


def test_reconstruct_and_stereo_params_equal_the_cli(tmp_path):
    from blender_addon.core.job_params import reconstruct_params, stereo_params

    solve, recon = _solve_and_splats(tmp_path)
    p = reconstruct_params(solve, video=CLIP, steps=500, strategy="mcmc", device="cpu", max_size=320)
    cli = _cli_params("reconstruct", [str(solve), "--input", str(CLIP), "--steps", "500", "--strategy", "mcmc",
                                      "--device", "cpu", "--max-size", "320"])
    assert {k: cli[k] for k in p} == p
    assert "device" not in reconstruct_params(solve)  # auto: the backend decides
    p = stereo_params(CLIP, interaxial=0.1, convergence=2.5, layout="half-sbs", method="scene", debug_grid=True,
                      reconstruction_dir=recon, cameras=Path(solve) / "cameras.json", max_frames=3)
    cli = _cli_params("stereo", [str(CLIP), "--interaxial", "0.1", "--convergence", "2.5", "--layout", "half-sbs",
                                 "--method", "scene", "--debug-grid", "--reconstruction", str(recon),
                                 "--cameras", str(Path(solve) / "cameras.json"), "--max-frames", "3"])
    assert {k: cli[k] for k in p} == p


def _cameras_only(tmp_path):
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "cameras.json").write_text(TRUTH.read_text())
    return tmp_path / "cams"


def _html(tmp_path):
    bad = tmp_path / "page.glb"
    bad.write_bytes(b"<!DOCTYPE html><html></html>")
    return bad


@pytest.mark.parametrize("call, needle", [
    (lambda t: ("composite", ("", PRODUCT), {}), "no footage loaded"),
    (lambda t: ("composite", (t / "nope.mp4", PRODUCT), {}), "nope.mp4: footage not found"),
    (lambda t: ("composite", (CLIP, ""), {}), "no product set"),
    (lambda t: ("composite", (CLIP, t / "gone.glb"), {}), "gone.glb: product file not found"),
    (lambda t: ("composite", (CLIP, _html(t)), {}), "page.glb: is an HTML page"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"at_pixel": "12"}), "pixel must be U,V"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"at_pixel": [1, -2]}), "must not be negative"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"product_height": -1.0}), "product height must be positive"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"steps": 0}), "steps must be an integer"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"device": "tpu"}), "device must be one of"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"solve_dir": t}), "no cameras.json in the solve folder"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"reconstruction_dir": t}), "no splats.ply"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"stereo": "3d"}), "stereo layout must be one of"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"interaxial": 0.1}), "need a stereo layout"),
    (lambda t: ("composite", (CLIP, PRODUCT), {"stereo": "sbs", "convergence": 0.0}), "convergence must be positive"),
    (lambda t: ("reconstruct", (t,), {}), "no cameras.json"),
    (lambda t: ("reconstruct", (_cameras_only(t),), {}), "no points.ply in the solve folder"),
    (lambda t: ("reconstruct", ("",), {}), "no camera solve"),
    (lambda t: ("stereo", (CLIP,), {"layout": "cube"}), "layout must be one of"),
    (lambda t: ("stereo", (CLIP,), {"interaxial": 0.0}), "interaxial must be in"),
    (lambda t: ("stereo", (CLIP,), {"convergence": -3.0}), "convergence distance must be positive"),
    (lambda t: ("stereo", (CLIP,), {"method": "scene"}), "scene stereo needs a reconstruction"),
    (lambda t: ("output", (t / "out.avi",), {}), "out.avi: output must be a .mp4 file"),
    (lambda t: ("output", (t / "dir.mp4",), {}), "is a folder"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, call, needle):
    from blender_addon.core import job_params

    (tmp_path / "dir.mp4").mkdir()
    kind, args, kw = call(tmp_path)
    fn = {"composite": job_params.composite_params, "reconstruct": job_params.reconstruct_params,
          "stereo": job_params.stereo_params, "output": job_params.output_path}[kind]
    with pytest.raises(job_params.ParamError) as exc:
        fn(*args, **kw)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg, msg


@pytest.mark.parametrize("k1, k2", [(0.0, 0.0), (-0.08, 0.02)])
def test_footage_pixel_inverts_the_composite_placement(k1, k2):
    """The composite places the product where the ray through (u, v) meets the ground; the
    add-on's projection of that point (3D cursor -> pixel) must give (u, v) back, lens
    distortion included (independent code: the backend undistorts by iteration, the add-on
    distorts in closed form; agreement to 1e-6 px)."""
    from backend.pipelines.composite.placement import anchor_from_pixel
    from blender_addon.core.footage_pixel import footage_pixel
    from blender_addon.core.job_params import ParamError

    doc = json.loads(TRUTH.read_text())
    doc["distortion"] = {"model": "radial2", "k1": k1, "k2": k2}
    for frame, (u, v) in ((0, PIXEL), (17, (12.5, 260.0)), (47, (470.0, 140.0))):
        point = anchor_from_pixel(doc, u, v, frame)
        got = footage_pixel(doc, frame, point)
        assert np.hypot(got[0] - u, got[1] - v) < 1e-6, (frame, got, (u, v))
    cam = np.array(doc["frames"][0]["matrix_world"])
    with pytest.raises(ParamError, match="behind the camera of video frame 0"):
        footage_pixel(doc, 0, cam[:3, 3] + cam[:3, 2])  # +Z of the camera: behind it
    with pytest.raises(ParamError, match="outside video frame 0"):
        footage_pixel(doc, 0, cam[:3, 3] - cam[:3, 2] + 5 * cam[:3, 0])
    with pytest.raises(ParamError, match="video frame 99 has no solved camera"):
        footage_pixel(doc, 99, [0, 0, 0])


def test_delivery_replaces_the_output_whole_and_removes_staging(tmp_path):
    from blender_addon.core.delivery import deliver_file, deliver_folder

    out = tmp_path / "out" / "video.mp4"
    for content in (b"first", b"second"):
        staging = tmp_path / "staging"
        staging.mkdir()
        (staging / "composite.mp4").write_bytes(content)
        assert deliver_file({"composite.mp4": str(staging / "composite.mp4")}, "composite.mp4", out, staging) == out
        assert out.read_bytes() == content and not staging.exists()
    staging.mkdir()
    with pytest.raises(RuntimeError, match="has no composite.mp4"):
        deliver_file({}, "composite.mp4", out, staging)
    assert out.read_bytes() == b"second" and not staging.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["video.mp4"]

    dest = tmp_path / "splats"
    for n in (1, 2):
        staging = tmp_path / "st"
        staging.mkdir()
        (staging / f"splats{n}.ply").write_text("x")
        deliver_folder(staging, dest)
        assert [p.name for p in dest.iterdir()] == [f"splats{n}.ply"] and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "splats"]


# -- operators in Blender against a live backend -----------------------------------------------

def _solve_and_splats(tmp: Path) -> tuple[str, str]:
    """A solve folder with the clip's true cameras (and grey points on the true ground plane
    z = 0) and a reconstruction of flat grey splats covering that ground around the scene."""
    from backend.pipelines.splats_io import Splats, write_ply

    solve, recon = tmp / "solve", tmp / "recon"
    if not (solve / "cameras.json").is_file():
        solve.mkdir(parents=True, exist_ok=True)
        doc = json.loads(TRUTH.read_text())
        keep = ("version", "convention", "width", "height", "fps", "frames", "distortion", "ground_plane", "stats")
        doc = {k: doc[k] for k in keep}
        for fr in doc["frames"]:
            fr["source"] = str(fr["frame"])  # video frame indices, as the poses job writes them
        (solve / "cameras.json").write_text(json.dumps(doc))
        g = np.linspace(-2.0, 2.0, 21)
        x, y = (a.ravel() for a in np.meshgrid(g, g))
        pts = np.zeros(x.size, dtype=[(c, "f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")])
        pts["x"], pts["y"] = x, y
        pts["red"] = pts["green"] = pts["blue"] = 128
        from plyfile import PlyData, PlyElement

        PlyData([PlyElement.describe(pts, "vertex")]).write(str(solve / "points.ply"))
        g = np.linspace(-3.0, 3.0, 61)
        x, y = (a.ravel() for a in np.meshgrid(g, g))
        n = x.size
        write_ply(Splats(means=np.stack([x, y, np.zeros(n)], 1), scales=np.log([[0.06, 0.06, 0.002]] * n),
                         quats=np.tile([1.0, 0, 0, 0], (n, 1)), opacities=np.full(n, 4.0),
                         sh0=np.zeros((n, 3))), recon / "splats.ply")
    return str(solve), str(recon)


def _expected_product_rows(u: float, v: float, scale: float) -> tuple[float, float, float, float]:
    """(column of the product's axis, row of its top, row of its base, width of its body's
    silhouette in columns) in the output at ``scale``: the ray through pixel (u, v) of frame 0
    meets the ground z = 0 at the anchor, and the top is HEIGHT_M above it (true camera:
    pinhole, no distortion). The body is a vertical cylinder of the bottle's radius from 1.2 %
    to 52 % of its height (``make_sample``'s outline); its silhouette edges are the generator
    lines where the horizontal rays from the camera touch it. The width is measured across the
    image, so the camera's downward tilt (which shortens the product's height in the image)
    does not enter it."""
    from backend.samples.make_sample import BOTTLE_RADIUS_M

    fr = json.loads(TRUTH.read_text())["frames"][0]
    m = np.array(fr["matrix_world"])
    f, (cx, cy) = fr["focal_px"], fr["principal_point_px"]
    rot, origin = m[:3, :3], m[:3, 3]
    d = rot @ np.array([(u - cx) / f, -(v - cy) / f, -1.0])
    anchor = origin + (-origin[2] / d[2]) * d

    def project(p):
        c = rot.T @ (p - origin)
        return np.array([cx + f * c[0] / -c[2], cy - f * c[1] / -c[2]]) * scale

    base, top = project(anchor), project(anchor + [0, 0, HEIGHT_M])
    to_cam = np.append(origin[:2] - anchor[:2], 0.0)
    dist = np.linalg.norm(to_cam)
    toward, side = to_cam / dist, np.cross([0.0, 0.0, 1.0], to_cam / dist)
    cos_t = BOTTLE_RADIUS_M / dist  # tangent points: radius at angle acos(R / d) from the camera direction
    edge_cols = [project(anchor + BOTTLE_RADIUS_M * (cos_t * toward + k * np.sqrt(1 - cos_t ** 2) * side)
                         + [0, 0, z])[0]
                 for k in (-1.0, 1.0) for z in np.linspace(0.012, 0.52, 8) * HEIGHT_M]
    return float((base[0] + top[0]) / 2), float(top[1]), float(base[1]), float(max(edge_cols) - min(edge_cols))


@pytest.fixture(scope="module")
def blender_run(tmp_path_factory):
    """One bpy process: input errors, the composite, a backend error and a cancel."""
    sys.path.insert(0, str(REPO / "tests" / "blender_scripts"))
    from bpy_subprocess import run_script

    from conftest import ServerProcess

    tmp = tmp_path_factory.mktemp("addon_render")
    solve, recon = _solve_and_splats(tmp)
    child_tmp = tmp / "child_tmp"
    child_tmp.mkdir()
    spec = {"video": str(CLIP), "product": str(PRODUCT), "missing_product": str(tmp / "missing.glb"),
            "solve": solve, "recon": recon, "pixel": list(PIXEL), "height": HEIGHT_M,
            "output": str(tmp / "renders" / "composite.mp4"), "error_output": str(tmp / "renders" / "error.mp4"),
            "cancel_output": str(tmp / "renders" / "cancel.mp4"), "new_recon": str(tmp / "recon_new"),
            "stereo_output": str(tmp / "renders" / "stereo.mp4")}
    from backend.pipelines.composite.placement import anchor_from_pixel

    spec["cursor"] = anchor_from_pixel(json.loads((Path(solve) / "cameras.json").read_text()), *PIXEL, 0).tolist()
    (tmp / "spec.json").write_text(json.dumps(spec))
    srv = ServerProcess(tmp / "srv", "--gpu-workers", "1", "--cpu-workers", "1", "--root", str(SAMPLES),
                        "--root", str(tmp)).start()
    t0 = time.monotonic()
    try:
        run_script(str(Path(__file__).resolve()), "--scenario", srv.address, tmp / "spec.json", tmp / "out.json",
                   user_dir=tmp / "user", timeout=240, extra_env={"TMPDIR": str(child_tmp)})
    finally:
        srv.stop()
    r = json.loads((tmp / "out.json").read_text())
    r["wall_s"] = time.monotonic() - t0
    return r, spec, child_tmp


def test_input_errors_submit_nothing_and_write_nothing(blender_run):
    r, spec, _ = blender_run
    assert r["no_footage"]["ret"] == ["ERROR"] and "no footage loaded" in r["no_footage"]["msg"]
    assert r["missing_product"]["ret"] == ["ERROR"]
    assert f"{spec['missing_product']}: product file not found" in r["missing_product"]["msg"]
    assert r["not_connected"]["ret"] == ["ERROR"] and "not connected to a backend" in r["not_connected"]["msg"]
    for case in ("no_footage", "missing_product", "not_connected"):
        assert r[case]["msg"].count("\n") == 0
    assert r["jobs_after_errors"] == 0
    assert r["status_after_connect"] == "connected"


def test_pixel_from_3d_cursor_finds_the_footage_pixel(blender_run):
    """The cursor at the ground point under PIXEL of video frame 0 (scene frame 1) gives PIXEL
    back (float32 cursor and property: ~1e-4 px); the composite below uses this placement."""
    r, _, _ = blender_run
    p = r["picked"]
    assert p["ret"] == ["FINISHED"] and p["placement"] == "PIXEL" and p["frame"] == 0
    assert np.hypot(p["pixel"][0] - PIXEL[0], p["pixel"][1] - PIXEL[1]) < 1e-3, p


def test_render_composite_runs_in_the_background_and_delivers_the_video(blender_run):
    from backend.media.video import iter_frames, probe

    r, spec, child_tmp = blender_run
    c = r["composite"]
    assert c["submit"]["ret"] == ["FINISHED"]
    # the operator only queues the job: a local queue put, no network round trip (>= 500 ms)
    assert c["submit"]["seconds"] < 0.25, c["submit"]
    assert c["status"] == "done", c
    # A tick drains a queue; one that waited on the backend would take >= 100 ms each time.
    # On a loaded 2-core box a few ticks are descheduled, so the 95th percentile is checked.
    ticks = c["tick_ms"]
    assert len(ticks) > 20 and ticks[int(0.95 * len(ticks))] < 50, ticks[-10:]
    fr = c["fractions"]
    assert fr and fr == sorted(fr) and 0 < fr[-1] <= 1.0
    assert c["eta_seen"]
    assert any(name == "progress" for name, _ in c["drawn"]) and any(
        name == "operator" and text == "" for name, text in c["drawn"]), "progress bar and Cancel button"
    out = Path(spec["output"])
    assert c["render_result"] == str(out) and out.is_file()
    assert any(f"composite written to {out}" in t for t in c["reports"]), c["reports"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["composite.mp4", "stereo.mp4"], "no partial files"
    assert any("(2 frames, stereo tab)" in t for t in c["reports"]), c["reports"]
    assert not list(child_tmp.iterdir()), "staging folders removed"

    info = probe(out)
    # preview: 480x270 at 50 %; stereo top and bottom: left eye above, right eye below
    assert info.frame_count == 2 and (info.width, info.height) == (240, 270)
    both = next(iter_frames(out))[2]
    frame, right = both[:135].astype(int), both[135:]
    import cv2

    footage = cv2.resize(next(iter_frames(CLIP))[2], (240, 135), interpolation=cv2.INTER_AREA).astype(int)
    changed = (np.abs(frame - footage).max(2) > 40).astype(np.uint8)
    axis_x, top_y, base_y, body_width = _expected_product_rows(*PIXEL, scale=0.5)

    # The product is the largest changed blob (elsewhere only the edges of the footage's
    # high-contrast markers differ, through scaling and re-encoding). The bottle is symmetric
    # about its axis; its cap is its highest point and it stands on the ground at the anchor.
    # Tolerances: 1 px of quantisation at this 240 px render plus 1 px for anti-aliased edges
    # under the threshold.
    n, labels, stats, centres = cv2.connectedComponentsWithStats(changed, connectivity=8)
    assert n > 1
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = stats[big]
    assert abs(y - top_y) <= 2, (y, top_y)
    assert abs(centres[big][0] - axis_x) <= 1.5, (centres[big], axis_x)
    assert abs(w - body_width) <= 2, (w, body_width)
    ys, xs = np.nonzero(changed)
    on_axis = np.abs(xs - axis_x) <= body_width / 2 + 1
    assert abs(ys[on_axis].max() - base_y) <= 2, (ys[on_axis].max(), base_y)  # the base or its contact shadow

    # The right eye's background is rendered from the (grey) splats, so the product is found by
    # its colour there. Convergence 0 puts the product on the screen plane: zero disparity, the
    # same column as in the left eye (the bottle's depth range moves it by well under 1 px).
    hsv = cv2.cvtColor(np.ascontiguousarray(right), cv2.COLOR_RGB2HSV)
    rys, rxs = np.nonzero((hsv[..., 1] > 80) & (hsv[..., 2] > 25))
    assert len(rxs) > 10
    assert abs(np.median(rxs) - axis_x) <= 1.5, (np.median(rxs), axis_x)
    assert abs(rys.min() - top_y) <= 2, (rys.min(), top_y)


def test_backend_error_is_shown_and_nothing_is_written(blender_run):
    r, spec, _ = blender_run
    e = r["backend_error"]
    assert e["submit"]["ret"] == ["FINISHED"] and e["status"] == "error"
    assert "frame" in e["message"] and "\n" not in e["message"], e["message"]
    assert any(t.startswith("ERROR: Composite: ") for t in e["reports"]), e["reports"]
    assert not Path(spec["error_output"]).exists()
    assert e["render_result"] == spec["output"], "the last good result stays"


def test_blocking_mode_reports_an_unreachable_backend_in_one_line(blender_run):
    r, spec, _ = blender_run
    msg = r["blocking_unreachable"]
    assert msg.startswith("Error: Composite failed: ") and "tcp://127.0.0.1:9" in msg and "\n" not in msg, msg


def test_render_panel_camera_path_is_sampled_for_the_job(blender_run):
    """The Render panel's path camera goes to the job as a camera_path.json of the scene range."""
    c = blender_run[0]["camera_path"]
    assert c["frames"] == 3 and c["size"] == c["scene_size"]
    np.testing.assert_allclose(c["xs"], [0.0, 0.25, 0.5], atol=0.06)  # keyed x at frames 1 and 3
    assert c["xs"][0] == pytest.approx(0.0, abs=1e-9) and c["xs"][2] == pytest.approx(0.5, abs=1e-9)
    assert "mono" in c["stereo_error"]


def test_cancel_stops_the_job_and_writes_nothing(blender_run):
    r, spec, child_tmp = blender_run
    c = r["cancel"]
    assert c["running_before_cancel"], c
    assert c["second"]["ret"] == ["ERROR"] and "a composite job is already running" in c["second"]["msg"]
    assert c["status"] == "cancelled", c
    assert c["cancel_s"] < 5.0, c
    assert not Path(spec["cancel_output"]).exists()
    assert not list(child_tmp.iterdir())


def test_reconstruct_trains_on_the_solve_and_imports_the_splats(blender_run):
    from plyfile import PlyData

    r, spec, child_tmp = blender_run
    c = r["reconstruct"]
    assert c["submit"]["ret"] == ["FINISHED"] and c["status"] == "done", c
    ply = Path(spec["new_recon"]) / "splats.ply"
    assert ply.is_file() and not list(child_tmp.iterdir())
    v = PlyData.read(str(ply))["vertex"].data
    # one imported object per reconstruction folder (later runs, the last one blocking as in
    # background mode, replace it), holding the file's splats
    assert c["blocking"] == ["FINISHED"], c["blocking"]
    assert c["objects"] == [[len(v), str(ply)]], c["objects"]
    assert any(f"{len(v)} splats imported from {ply.parent}" in t for t in c["reports"]), c["reports"]
    # 441 points on z = 0 seed it; 5 steps at gsplat's position learning rate (1.6e-4 x the
    # scene scale, a few metres here) cannot move a splat off the plane by more than ~1 cm
    assert len(v) >= 441 and np.abs(v["z"]).max() < 0.02


def test_render_stereo_uses_the_reconstruction_and_the_layout(blender_run):
    from backend.media.video import probe

    r, spec, child_tmp = blender_run
    c = r["stereo"]
    assert c["submit"]["ret"] == ["FINISHED"] and c["status"] == "done", c
    out = Path(spec["stereo_output"])
    assert c["stereo_result"] == str(out) and not list(child_tmp.iterdir())
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (480, 540, 2)  # top and bottom: two 480x270 eyes
    assert any("method scene" in t for t in c["reports"]), c["reports"]  # auto chose the splats
