"""Stereo composite: the right eye's product through Blender's stereo rig, checked against truth.

The shot is a 160x90 synthetic stereo clip (true cameras and planar depth for both eyes; the
right camera is the left one moved ``B`` along its own +x axis, parallel) with a cylinder
between the camera and the origin. The product is a green emissive sphere of radius ``R``
standing on the ground at the origin. The convergence distance ``Z_c`` is chosen so that the
sensor shift ``f*B/Z_c`` is a whole number of pixels ``S``: the truth of the converged right
eye is then the parallel right eye moved right by exactly ``S`` pixels (image and depth).

Checked, on the shot specs the pipeline builds (:func:`right_spec`):

* the sphere's silhouette centre in the left eye (the mono shot) and in the right eye (Blender's
  stereo rig, right view) lies where the analytic cameras put it: the left camera, and the
  right camera of :func:`right_eye_cameras` (offset + shift), within 0.5 px;
* its horizontal disparity is ``f*B/Z - f*B/Z_c`` within 0.5 px (a rig moved the wrong way,
  or converged by toe-in or not at all, is off by ``f*B/Z_c`` = S px or more);
* occlusion in the right eye: the sphere is hidden where the right eye's depth has the
  cylinder in front of it and shown elsewhere;
* resumability of the right eye (its view-suffixed files are renamed into place).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.pipelines.composite import stereo as stereo_mod
from backend.pipelines.composite.blender import run_shot
from backend.pipelines.composite.layers import FAR
from backend.pipelines.render.writers import write_exr, write_png
from backend.pipelines.stereo.scene import right_eye_cameras
from backend.synthetic import make_clip

W, H = 160, 90
B = 0.3  # interaxial (m)
R = 0.2  # sphere radius (m)
FRAMES = (0, 2)
ANCHOR = np.zeros(3)
TOL_PX = 0.5  # half a pixel
REPO = Path(__file__).resolve().parents[1]


def _sphere_glb(path: Path) -> Path:
    """A unit-diameter icosphere with a black base colour and green emission (unlit look)."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    mesh.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(
        baseColorFactor=[0, 0, 0, 255], emissiveFactor=[0.0, 1.0, 0.0], metallicFactor=0.0, roughnessFactor=1.0))
    path.write_bytes(trimesh.Scene(mesh).export(file_type="glb"))
    return path


def _exr(path: Path, depth: np.ndarray) -> str:
    d = np.where(np.isfinite(depth), depth, FAR).astype(np.float32)
    write_exr(path, {"R": d, "G": d, "B": d})
    return str(path)


def _shift_right(img: np.ndarray, s: int, fill) -> np.ndarray:
    out = np.empty_like(img)
    out[:, s:] = img[:, :-s]
    out[:, :s] = fill if fill is not None else img[:, :1]
    return out


def _mono_spec(clip: Path, tmp: Path, product: Path, depth: str) -> dict:
    frames = [{"index": i, "background": str(clip / "frames" / f"{i:06d}.png"), "depth": depth,
               "output": str(tmp / "left" / f"{i:06d}.png")} for i in FRAMES]
    return {"cameras": str(clip / "truth.json"), "product": str(product), "anchor": ANCHOR.tolist(),
            "product_height": 2 * R, "rotate_deg": 0.0, "frame_offset": 1,
            "render": {"percent": 100, "samples": 8, "denoise": False, "threads": 2, "device": "CPU"},
            "environment": None, "occlusion_margin": 0.03, "frames": frames}


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stereo_composite")
    clip = make_clip(tmp / "clip", path="handheld", width=W, height=H, frames=max(FRAMES) + 1, samples=4,
                     occluder=True, video=False, seed=0, stereo=B)["dir"]
    truth = json.loads((clip / "truth.json").read_text())
    f = float(truth["frames"][0]["focal_px"])
    s = int(round(f * B / 5.0))  # convergence near 5 m: the sphere (~2.6 m) is well in front of the screen
    zc = f * B / s
    product = _sphere_glb(tmp / "sphere.glb")
    far = _exr(tmp / "far.exr", np.full((H, W), np.inf, np.float32))
    mono = _mono_spec(clip, tmp, product, far)
    free, occluded = {}, {}
    for i in FRAMES:
        bg = cv2.cvtColor(cv2.imread(str(clip / "right" / "frames" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
        write_png(tmp / f"right_bg{i}.png", _shift_right(bg, s, None))
        depth = _shift_right(np.load(clip / "right" / "depth" / f"{i:06d}.npy"), s, np.inf)
        free[i] = {"background": tmp / f"right_bg{i}.png", "depth": far}
        occluded[i] = {"background": tmp / f"right_bg{i}.png", "depth": _exr(tmp / f"right_depth{i}.exr", depth)}
    parallel = dict(mono, frames=mono["frames"][-1:])  # one frame; only the sphere's disc is measured
    specs = {"left": mono,
             "right": stereo_mod.right_spec(mono, tmp / "right", free, B, zc),
             "right_occluded": stereo_mod.right_spec(mono, tmp / "right_occluded", occluded, B, zc),
             "right_parallel": stereo_mod.right_spec(parallel, tmp / "right_parallel", free, B, None)}
    counts = {name: run_shot(spec, tmp / f"{name}.json") for name, spec in specs.items()}
    return {"clip": clip, "tmp": tmp, "truth": truth, "f": f, "s": s, "zc": zc, "specs": specs, "counts": counts}


def _rgb(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float64)


def _coverage(out: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Per-pixel coverage of the sphere: ``out = cov * colour + (1 - cov) * bg`` (least squares).
    Its colour (emission green plus a little grey specular) is the median of the pixels it
    clearly covers: the saturated green ones."""
    mask = (out[..., 1] > 250) & (out[..., 0] < 60) & (out[..., 2] < 60) & (bg[..., 1] < 200)
    colour = np.median(out[mask], axis=0) if mask.sum() >= 10 else np.array([0.0, 255.0, 0.0])
    d = colour - bg
    return np.clip(((out - bg) * d).sum(2) / np.maximum((d * d).sum(2), 1.0), 0.0, 1.0)


def _centre(out: np.ndarray, bg: np.ndarray, near: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    """Coverage-weighted centroid of the sphere within ``radius`` px of ``near``; its area (px)."""
    cov = _coverage(out, bg)
    vv, uu = np.mgrid[0:H, 0:W] + 0.5
    w = np.where((np.hypot(uu - near[0], vv - near[1]) < radius) & (cov > 0.2), cov, 0.0)
    return np.array([(w * uu).sum(), (w * vv).sum()]) / w.sum(), float(w.sum())


def _silhouette_centre(c2w: np.ndarray, f: float, pp, centre, radius: float) -> tuple[np.ndarray, float]:
    """Exact image centre (px) of a sphere's silhouette for a Blender camera, and the planar depth
    of the sphere's centre. The silhouette is the conic x^T (c c^T - (|c|^2 - r^2) I) x = 0 of
    the tangent cone (c: centre in OpenCV camera axes, x: homogeneous normalised pixel)."""
    pc = np.linalg.inv(c2w) @ np.append(centre, 1.0)
    c = np.array([pc[0], -pc[1], -pc[2]])
    q = np.outer(c, c) - (c @ c - radius * radius) * np.eye(3)
    xy = np.linalg.solve(q[:2, :2], -q[:2, 2])
    return np.array([pp[0] + f * xy[0], pp[1] + f * xy[1]]), float(c[2])


def _cameras(shot, i: int, converged: bool = True):
    fr = shot["truth"]["frames"][i]
    mw, pp = np.asarray(fr["matrix_world"], float), np.asarray(fr["principal_point_px"], float)
    mw_r, pp_r = right_eye_cameras(mw, shot["f"], pp, B, shot["zc"] if converged else None)
    return (mw, pp), (mw_r[0], pp_r[0])


def test_truth_right_eye_is_the_parallel_offset_camera(shot):
    """The synthetic right camera is the scene-stereo rig without shift (else the shifted truth
    below would not be the converged right eye)."""
    right = json.loads((shot["clip"] / "right" / "truth.json").read_text())
    for i in FRAMES:
        mw = np.asarray(shot["truth"]["frames"][i]["matrix_world"], float)
        mw_r, pp_r = right_eye_cameras(mw, shot["f"], shot["truth"]["frames"][i]["principal_point_px"], B, None)
        np.testing.assert_allclose(np.asarray(right["frames"][i]["matrix_world"]), mw_r[0], atol=1e-5)
        np.testing.assert_allclose(right["frames"][i]["principal_point_px"], pp_r[0], atol=1e-6)
    assert shot["s"] >= 5


@pytest.mark.parametrize("i", FRAMES)
def test_product_lands_where_the_analytic_cameras_put_it(shot, i):
    tmp, clip, f = shot["tmp"], shot["clip"], shot["f"]
    centre = ANCHOR + np.array([0.0, 0.0, R])
    (mw, pp), (mw_r, pp_r) = _cameras(shot, i)
    want_l, z = _silhouette_centre(mw, f, pp, centre, R)
    want_r, z_r = _silhouette_centre(mw_r, f, pp_r, centre, R)
    assert z_r == pytest.approx(z)
    got_l, area_l = _centre(_rgb(tmp / "left" / f"{i:06d}.png"), _rgb(clip / "frames" / f"{i:06d}.png"),
                            want_l, 2.5 * f * R / z)
    got_r, area_r = _centre(_rgb(tmp / "right" / "frames" / f"{i:06d}.png"), _rgb(tmp / f"right_bg{i}.png"),
                            want_r, 2.5 * f * R / z)
    disc = np.pi * (f * R / z) ** 2
    assert 0.85 * disc < area_l < 1.15 * disc and 0.85 * disc < area_r < 1.15 * disc, (area_l, area_r, disc)
    assert np.abs(got_l - want_l).max() < TOL_PX, (got_l, want_l)
    assert np.abs(got_r - want_r).max() < TOL_PX, (got_r, want_r)
    disparity = f * B * (1.0 / z - 1.0 / shot["zc"])
    assert abs((got_l[0] - got_r[0]) - disparity) < TOL_PX, (got_l[0] - got_r[0], disparity)
    assert abs(disparity) > 3.0  # the check can tell a right eye from the left one


def test_product_behind_the_occluder_is_hidden_in_the_right_eye(shot):
    """Where the right eye's depth has the cylinder in front of the sphere the output is the
    right background, elsewhere it is the unoccluded render; in some frame the cylinder's edge
    crosses the sphere (both cases in one frame)."""
    tmp, f = shot["tmp"], shot["f"]
    counts = []
    for i in FRAMES:
        bg = _rgb(tmp / f"right_bg{i}.png")
        free = _rgb(tmp / "right" / "frames" / f"{i:06d}.png")
        occ = _rgb(tmp / "right_occluded" / "frames" / f"{i:06d}.png")
        _, (mw_r, pp_r) = _cameras(shot, i)
        _, z = _silhouette_centre(mw_r, f, pp_r, ANCHOR + [0, 0, R], R)
        sphere = _coverage(free, bg) > 0.5
        depth = _shift_right(np.load(shot["clip"] / "right" / "depth" / f"{i:06d}.npy"), shot["s"], np.inf)
        nearer = depth < z - R - 0.3  # the cylinder stands ~0.9 m in front of the sphere
        hidden, shown = sphere & nearer, sphere & ~nearer
        counts.append((int(hidden.sum()), int(shown.sum())))
        if hidden.any():
            assert np.abs(occ - bg)[hidden].max() <= 2  # the background, to the 8-bit round trip
        if shown.any():
            assert np.abs(occ - free)[shown].max() <= 1
    assert any(h >= 15 and s >= 15 for h, s in counts), counts


def test_parallel_rig_without_convergence(shot):
    """``convergence`` null: parallel cameras, no shift (Blender's PARALLEL mode); the disparity
    is the full ``f*B/Z``."""
    tmp, f = shot["tmp"], shot["f"]
    i = FRAMES[-1]
    centre = ANCHOR + np.array([0.0, 0.0, R])
    (mw, pp), (mw_r, pp_r) = _cameras(shot, i, converged=False)
    want_l, z = _silhouette_centre(mw, f, pp, centre, R)
    want_r, _ = _silhouette_centre(mw_r, f, pp_r, centre, R)
    got_r, _ = _centre(_rgb(tmp / "right_parallel" / "frames" / f"{i:06d}.png"), _rgb(tmp / f"right_bg{i}.png"),
                       want_r, 2.5 * f * R / z)
    assert np.abs(got_r - want_r).max() < TOL_PX, (got_r, want_r)
    assert abs((want_l[0] - got_r[0]) - f * B / z) < TOL_PX


def test_default_convergence_is_the_anchor_depth(shot):
    fr = shot["truth"]["frames"][2]
    _, z = _silhouette_centre(np.asarray(fr["matrix_world"]), shot["f"], fr["principal_point_px"], ANCHOR, 1e-9)
    assert stereo_mod.anchor_depth(shot["truth"], ANCHOR, 2) == pytest.approx(z, rel=1e-9)
    with pytest.raises(Exception, match="frame 99 has no solved camera"):
        stereo_mod.anchor_depth(shot["truth"], ANCHOR, 99)


def test_stereo_parameters_are_refused_before_any_work(tmp_path, capsys):
    from backend.cli import main as cli

    samples = REPO / "backend" / "samples"
    video, product = str(samples / "sample_clip.mp4"), str(samples / "product.glb")
    out = tmp_path / "s.mp4"
    for args, message in ((["--interaxial", "0.1"], "interaxial needs stereo"),
                          (["--stereo", "sbs", "--interaxial", "0"], "interaxial must be positive"),
                          (["--stereo", "tab", "--convergence", "-2"], "convergence must be positive")):
        assert cli(["composite", video, product, "-o", str(out), "--work-dir", str(tmp_path / "w"), *args]) == 1
        assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "w").exists()


def test_right_eye_rerun_renders_only_the_missing_frame(shot):
    tmp, spec = shot["tmp"], shot["specs"]["right"]
    assert shot["counts"]["right"]["rendered"] == len(FRAMES)
    outputs = [Path(fr["output"]) for fr in spec["frames"]]
    kept = outputs[1].stat().st_mtime_ns
    before = _rgb(outputs[0])
    outputs[0].unlink()
    counts = run_shot(spec, tmp / "rerun.json")
    assert counts["rendered"] == 1 and counts["skipped"] == len(FRAMES) - 1
    assert outputs[1].stat().st_mtime_ns == kept
    assert np.abs(_rgb(outputs[0]) - before).max() <= 1
    assert sorted(p.name for p in (tmp / "right" / "frames").iterdir()) == [p.name for p in outputs]


def _splats_from_truth(clip: Path, views: list[tuple[str, int]]):
    """Splats that reproduce the synthetic scene: one small opaque Gaussian per pixel of the
    given views (``("", i)`` left, ``("right", i)`` right eye), at its true depth and colour."""
    from backend.pipelines.splats_io import SH_C0, Splats

    means, scales, colours = [], [], []
    for eye, i in views:
        root = clip / eye if eye else clip
        fr = json.loads((root / "truth.json").read_text())["frames"][i]
        mw, f = np.asarray(fr["matrix_world"], float), float(fr["focal_px"])
        cx, cy = fr["principal_point_px"]
        z = np.load(root / "depth" / f"{i:06d}.npy").astype(np.float64)
        rgb = cv2.cvtColor(cv2.imread(str(root / "frames" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
        vv, uu = np.mgrid[0:H, 0:W] + 0.5
        ok = np.isfinite(z)
        cam = np.stack([(uu - cx) / f * z, -(vv - cy) / f * z, -z, np.ones_like(z)], -1)[ok]
        means.append((cam @ mw.T)[:, :3])
        scales.append(np.repeat((0.6 * z[ok] / f)[:, None], 3, 1))
        colours.append(rgb[ok] / 255.0)
    means, scales, colours = (np.concatenate(a) for a in (means, scales, colours))
    n = len(means)
    return Splats(means=means, scales=np.log(scales), quats=np.tile([1.0, 0, 0, 0], (n, 1)),
                  opacities=np.full(n, 6.0), sh0=(colours - 0.5) / SH_C0)


@pytest.fixture(scope="module")
def job(shot):
    """The pipeline on the synthetic clip: its true cameras as the solve, splats from its truth."""
    import shutil

    from backend.pipelines.composite import CompositeRequest, CompositeSettings, composite
    from backend.pipelines.composite.placement import PinholeCamera
    from backend.pipelines.composite.stereo import StereoOptions
    from backend.pipelines.splats_io import write_ply

    tmp, clip = shot["tmp"] / "job", shot["clip"]
    (tmp / "solve").mkdir(parents=True)
    (tmp / "recon").mkdir()
    shutil.copy(clip / "truth.json", tmp / "solve" / "cameras.json")
    write_ply(_splats_from_truth(clip, [("", 0), ("right", 0), ("", 2)]), tmp / "recon" / "splats.ply")
    at = PinholeCamera.from_frame(shot["truth"]["frames"][0]).project(ANCHOR)[0][0]
    settings = CompositeSettings.for_mode(True, "cpu", samples=8, render_long_side=W)  # = the CLI's below
    req = CompositeRequest(video=clip / "frames", product=shot["tmp"] / "sphere.glb", settings=settings,
                           at_pixel=(float(at[0]), float(at[1])), product_height=2 * R, solve_dir=tmp / "solve",
                           reconstruction=tmp / "recon", work_dir=tmp / "work", max_frames=3,
                           stereo=StereoOptions("sbs", B, shot["zc"]))
    summary = composite(req, tmp / "out.mp4")
    right = Path(summary["right_eye_dir"])
    return {"tmp": tmp, "summary": summary, "right": right, "shot": right.parent}


def test_job_writes_side_by_side_eyes(job):
    from backend.media.video import iter_frames, probe

    s = job["summary"]
    assert s["right_frames_rendered"] == 3 and s["frames_rendered"] == 3
    assert np.abs(np.asarray(s["anchor_world"])).max() < 1e-6
    info = probe(job["tmp"] / "out.mp4")
    assert (info.width, info.height, info.frame_count) == (2 * W, H, 3)
    for index, _, rgb in iter_frames(job["tmp"] / "out.mp4"):
        eyes = [_rgb(job["shot"] / "frames" / f"{index:06d}.png"), _rgb(job["right"] / "frames" / f"{index:06d}.png")]
        for k, half in enumerate((rgb[:, :W].astype(float), rgb[:, W:].astype(float))):
            same, other = (np.abs(half - eyes[j]).mean() for j in (k, 1 - k))
            assert same < 8.0 and same < 0.5 * other, (k, same, other)  # H.264 (crf 18) of a textured 160 px frame


def test_job_right_eye_splat_layer_is_the_converged_right_eye(job, shot):
    """The right eye's background (splat render from the offset, shifted camera) is the true
    parallel right eye moved right by the shift S: phase correlation finds S horizontally within
    0.5 px (a shift of the wrong sign or none is off by S = 8 px; re-rendering a view from its own
    per-pixel splats moves it by at most 0.2 px horizontally). Its depth is the true right-eye
    depth to the bias of the per-pixel splats on the oblique ground (measured in the left eye:
    1.5 % median, 3.3 % 90th percentile), so 3 % median is allowed."""
    from backend.synthetic.exr import read_exr_channels

    s = shot["s"]
    win = cv2.createHanningWindow((W - 2 * s, H), cv2.CV_64F)
    for i in range(3):
        truth_grey = cv2.imread(str(shot["clip"] / "right" / "frames" / f"{i:06d}.png"), cv2.IMREAD_GRAYSCALE)
        bg = cv2.imread(str(job["right"] / "background" / f"{i:06d}.png"), cv2.IMREAD_GRAYSCALE)
        (dx, _), _ = cv2.phaseCorrelate(truth_grey[:, s:-s].astype(np.float64), bg[:, s:-s].astype(np.float64), win)
        assert abs(dx - s) < 0.5, (dx, s)
        truth = _shift_right(np.load(shot["clip"] / "right" / "depth" / f"{i:06d}.npy"), s, np.inf)
        got = read_exr_channels(job["right"] / "depth" / f"{i:06d}.exr", ["R"])["R"]
        ok = np.isfinite(truth) & (got < FAR)
        ok[:, : s + 4] = False
        assert ok.mean() > 0.8 and np.median(np.abs(got[ok] - truth[ok]) / truth[ok]) < 0.03


def test_job_right_eye_product_position_and_occlusion(job, shot):
    """Frame 2: the sphere is in full view of the right eye and lands where the analytic right
    camera puts it (the pipeline gives Blender the rig its splat layer uses); frame 0: the
    cylinder, seen in the right eye's splat depth, hides most of it there."""
    from backend.synthetic.exr import read_exr_channels

    f = shot["f"]
    centre = ANCHOR + np.array([0.0, 0.0, R])
    (mw, pp), (mw_r, pp_r) = _cameras(shot, 2)
    want_l, z = _silhouette_centre(mw, f, pp, centre, R)
    want_r, _ = _silhouette_centre(mw_r, f, pp_r, centre, R)
    got_r, area = _centre(_rgb(job["right"] / "frames" / "000002.png"),
                          _rgb(job["right"] / "background" / "000002.png"),
                          want_r, 2.5 * f * R / z)
    assert 0.85 < area / (np.pi * (f * R / z) ** 2) < 1.15, area
    assert np.abs(got_r - want_r).max() < TOL_PX, (got_r, want_r)
    assert abs((want_l[0] - got_r[0]) - f * B * (1.0 / z - 1.0 / shot["zc"])) < TOL_PX
    _, (mw_r, pp_r) = _cameras(shot, 0)
    want, z0 = _silhouette_centre(mw_r, f, pp_r, centre, R)
    vv, uu = np.mgrid[0:H, 0:W] + 0.5
    inner = np.hypot(uu - want[0], vv - want[1]) < 0.9 * f * R / z0
    splat = read_exr_channels(job["right"] / "depth" / "000000.exr", ["R"])["R"]  # the occluder the job used
    hidden, shown = inner & (splat < z0 - R - 0.3), inner & (splat > z0)
    out, bg = _rgb(job["right"] / "frames" / "000000.png"), _rgb(job["right"] / "background" / "000000.png")
    assert hidden.sum() >= 15 and shown.sum() >= 5, (hidden.sum(), shown.sum())
    assert np.abs(out - bg).max(2)[hidden].max() <= 2
    assert (np.abs(out - bg).max(2)[shown] > 40).all()


def test_job_rerun_renders_nothing(job, shot):
    from backend.pipelines.composite import CompositeRequest, CompositeSettings, composite
    from backend.pipelines.composite.stereo import StereoOptions

    tmp = job["tmp"]
    (job["right"] / "frames" / "000001.png").unlink()
    settings = CompositeSettings.for_mode(True, "cpu", samples=8, render_long_side=W)  # = the CLI's below
    s0 = job["summary"]
    req = CompositeRequest(video=shot["clip"] / "frames", product=shot["tmp"] / "sphere.glb", settings=settings,
                           at_pixel=tuple(s0["anchor_pixel"]), product_height=2 * R, solve_dir=tmp / "solve",
                           reconstruction=tmp / "recon", work_dir=tmp / "work", max_frames=3,
                           stereo=StereoOptions("anaglyph", B, shot["zc"]))
    s = composite(req, tmp / "again.mp4")
    assert s["frames_rendered"] == 0 and s["right_frames_rendered"] == 1
    assert s["right_frames_skipped"] == 2


def test_cli_stereo_reuses_the_finished_eyes(job, shot, capsys):
    """``splatstage composite ... --stereo tab`` on the finished work folder: the same shot and
    right eye (same settings, interaxial and convergence), so only the packing changes."""
    from backend.cli import main as cli
    from backend.media.video import probe

    tmp, s0 = job["tmp"], job["summary"]
    out = tmp / "tab.mp4"
    u, v = s0["anchor_pixel"]
    code = cli(["composite", str(shot["clip"] / "frames"), str(shot["tmp"] / "sphere.glb"), "-o", str(out),
                "--preview", "--samples", "8", "--render-size", str(W), "--device", "cpu",
                "--at-pixel", f"{u!r},{v!r}", "--product-height", repr(2 * R), "--solve", str(tmp / "solve"),
                "--reconstruction", str(tmp / "recon"), "--work-dir", str(tmp / "work"), "--max-frames", "3",
                "--stereo", "tab", "--interaxial", repr(B), "--convergence", repr(shot["zc"])])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "frames_rendered: 0" in text and "right_frames_rendered: 0" in text and "stereo_layout: tab" in text
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (W, 2 * H, 3)
