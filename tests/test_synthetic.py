"""Checks the synthetic generator's truth against its own renders, geometrically.

The renders run in a subprocess (make_clip); this process never imports bpy. Markers are
emissive spheres at exact positions: their image centroids must match the exact centroid of
the projected sphere silhouette, and the depth maps must match ray/sphere and ray/ground
intersections computed from truth.json alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

# a skip, not a collection error, without imageio_ffmpeg (the GPU machine): `pytest -m gpu tests/` collects
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from backend.synthetic import make_clip  # noqa: E402
from backend.synthetic.paths import camera_path  # noqa: E402
from shared_protocol import camera_file  # noqa: E402

W, H, N_FRAMES, FPS = 320, 180, 10, 24.0
PP_OFFSET = (9.0, -6.0)
INTERAXIAL = 0.065


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "handheld"
    return make_clip(out, path="handheld", width=W, height=H, frames=N_FRAMES, fps=FPS, samples=4,
                     pp_offset=PP_OFFSET, stereo=INTERAXIAL, seed=3)


@pytest.fixture(scope="session")
def pan_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "pan"
    return make_clip(out, path="pan", width=160, height=90, frames=3, samples=1, occluder=True,
                     video=False, seed=5)


@pytest.fixture(scope="session")
def blur_clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "blur"
    return make_clip(out, path="pan", pan_deg=16.0, width=W, height=H, frames=3, samples=16,
                     motion_blur=0.5, video=False, seed=2)


def load(path) -> dict:
    return json.loads(Path(path).read_text())


def world_to_camera(frame: dict, x: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> camera coordinates with +z forward (Blender camera looks down -Z)."""
    m = np.asarray(frame["matrix_world"], float)
    xc = (x - m[:3, 3]) @ m[:3, :3]
    return xc * np.array([1.0, -1.0, -1.0])


def project(frame: dict, xc: np.ndarray) -> np.ndarray:
    f = frame["focal_px"]
    cx, cy = frame["principal_point_px"]
    return np.stack([cx + f * xc[..., 0] / xc[..., 2], cy + f * xc[..., 1] / xc[..., 2]], -1)


def pixel_rays(frame: dict, uv: np.ndarray) -> np.ndarray:
    """Camera-space (+z forward) ray directions with z = 1 through image points uv (..., 2)."""
    f = frame["focal_px"]
    cx, cy = frame["principal_point_px"]
    return np.stack([(uv[..., 0] - cx) / f, (uv[..., 1] - cy) / f, np.ones(uv.shape[:-1])], -1)


def silhouette_centroid(frame: dict, centre_c: np.ndarray, radius: float) -> np.ndarray:
    """Area centroid of the image of a sphere (an ellipse), from its tangent cone."""
    dist = np.linalg.norm(centre_c)
    axis = centre_c / dist
    a = np.arcsin(radius / dist)
    u = np.cross(axis, [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    t = np.linspace(0, 2 * np.pi, 721)[:-1]
    dirs = np.cos(a) * axis + np.sin(a) * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v)
    p = project(frame, dirs)
    x, y = p[:, 0], p[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)


def sphere_depth(ray: np.ndarray, centre_c: np.ndarray, radius: float) -> np.ndarray:
    """Planar depth of the first hit of rays (..., 3; z = 1) with a sphere; nan on a miss."""
    a = (ray * ray).sum(-1)
    b = -2 * (ray @ centre_c)
    c = centre_c @ centre_c - radius ** 2
    disc = b * b - 4 * a * c
    return np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.nan)


def linear(srgb8: np.ndarray) -> np.ndarray:
    """8-bit sRGB -> linear light in [0, 1] (where partial pixel coverage mixes linearly)."""
    c = srgb8.astype(float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def magenta_score(img_rgb: np.ndarray, x0: int, y0: int, half: int) -> np.ndarray:
    """min(R, B) - G in linear light over a window: a pixel covered by the marker for a
    fraction a scores a + (1 - a) * (its background's score)."""
    win = linear(img_rgb[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1])
    return np.minimum(win[..., 0], win[..., 2]) - win[..., 1]


def marker_centroid(img_rgb: np.ndarray, around: np.ndarray, half: int) -> np.ndarray | None:
    """Coverage-weighted centroid of the magenta marker blob in a window around a point.

    Coverage is the magenta score ramped between the background level of the textured
    surfaces (<= 0.2) and a pure marker (1).
    """
    x0, y0 = int(round(around[0])) - half, int(round(around[1])) - half
    score = magenta_score(img_rgb, x0, y0, half)
    w = np.clip((score - 0.2) / 0.8, 0, 1)
    if w.sum() < 3:
        return None
    ys, xs = np.mgrid[0:score.shape[0], 0:score.shape[1]]
    return np.array([x0 + ((xs + 0.5) * w).sum() / w.sum(), y0 + ((ys + 0.5) * w).sum() / w.sum()])


def _partly_hidden(depth: np.ndarray, centre_px: np.ndarray, r_px: float, nearest_z: float) -> bool:
    """Whether anything nearer than the sphere's nearest point (planar ``nearest_z``, less 2 cm)
    shows within half a pixel of its silhouette. The surface a sphere rests on shows just below
    its silhouette at planar depth ``centre + r * tan(elevation / 2)``, beyond that threshold."""
    ys, xs = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    near = np.hypot(xs + 0.5 - centre_px[0], ys + 0.5 - centre_px[1]) < r_px + 0.5
    return bool((depth[near] < nearest_z - 0.02).any())


def marker_observations(truth: dict, root: Path):
    """(frame, marker, expected centroid, measured centroid, depth map, camera-space centre,
    radius) for every marker fully inside the image with nothing in front of any part of it."""
    markers = [r for r in truth["scene"] if r["role"] == "marker"]
    obs = []
    for fr in truth["frames"]:
        img = cv2.cvtColor(cv2.imread(str(root / "frames" / fr["source"])), cv2.COLOR_BGR2RGB)
        depth = np.load(root / "depth" / (Path(fr["source"]).stem + ".npy"))
        for mk in markers:
            cc = world_to_camera(fr, np.array(mk["centre"]))
            radius = mk["size"][0] / 2
            expect = silhouette_centroid(fr, cc, radius)
            r_px = fr["focal_px"] * radius / cc[2]
            half = int(np.ceil(r_px)) + 3
            if not (half <= expect[0] < W - half - 1 and half <= expect[1] < H - half - 1):
                continue
            if _partly_hidden(depth, expect, r_px, cc[2] - radius):
                continue
            obs.append((fr, mk, expect, marker_centroid(img, expect, half), depth, cc, radius))
    return obs


@pytest.mark.parametrize("eye", ["left", "right"])
def test_markers_land_where_truth_projects_them(clip, eye):
    root = clip["dir"] if eye == "left" else clip["dir"] / "right"
    truth = load(root / "truth.json")
    obs = marker_observations(truth, root)
    assert len(obs) >= 2 * N_FRAMES, f"only {len(obs)} visible markers"
    errs = np.array([np.linalg.norm(got - exp) if got is not None else np.inf
                     for _, _, exp, got, *_ in obs])
    # Sub-pixel: the blob is ~10 px across; 0.5 px is a quarter of the anti-aliasing filter width.
    assert errs.max() < 0.5, f"marker reprojection errors {np.round(errs, 3)}"


def test_marker_depth_is_planar_z(clip):
    truth = load(clip["truth"])
    obs = marker_observations(truth, clip["dir"])
    assert len(obs) >= 2 * N_FRAMES
    for fr, mk, exp, _, depth, cc, radius in obs:
        iu, iv = np.floor(exp).astype(int)
        corners = np.array([[iu, iv], [iu + 1, iv], [iu, iv + 1], [iu + 1, iv + 1]], float)
        d = sphere_depth(pixel_rays(fr, corners), cc, radius)
        # The Z pass takes one jittered sample inside the pixel: allow the depth range the
        # sphere spans over that pixel, plus 1 mm.
        tol = np.nanmax(d) - np.nanmin(d) + 1e-3
        assert abs(depth[iv, iu] - np.nanmean(d)) <= tol, (fr["frame"], mk["name"], depth[iv, iu], d)


def _segment_hits_boxes(origin, ends, boxes_min, boxes_max):
    """(N,) bool: segment origin->ends[i] passes through any axis-aligned box."""
    d = ends - origin
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (boxes_min[None] - origin) * inv[:, None]
        t2 = (boxes_max[None] - origin) * inv[:, None]
    t1 = np.nan_to_num(t1, nan=-np.inf)
    t2 = np.nan_to_num(t2, nan=np.inf)
    tmin = np.minimum(t1, t2).max(-1)
    tmax = np.maximum(t1, t2).min(-1)
    return ((tmax >= np.maximum(tmin, 0)) & (tmin <= 1)).any(-1)


@pytest.mark.parametrize("eye", ["left", "right"])
def test_ground_depth_matches_truth_everywhere_unoccluded(clip, eye):
    root = clip["dir"] if eye == "left" else clip["dir"] / "right"
    truth = load(root / "truth.json")
    others = [r for r in truth["scene"] if r["role"] not in ("ground",)]
    margin = 0.03  # > one pixel footprint at the farthest tested ground point
    bmin = np.array([r["bbox_min"] for r in others]) - margin
    bmax = np.array([r["bbox_max"] for r in others]) + margin
    ys, xs = np.mgrid[0:H, 0:W]
    tested = 0
    for fr in truth["frames"][:: max(1, N_FRAMES // 3)]:
        depth = np.load(root / "depth" / (Path(fr["source"]).stem + ".npy"))
        m = np.asarray(fr["matrix_world"], float)
        rot = m[:3, :3] * np.array([1.0, -1.0, -1.0])  # camera (+z forward, y down) -> world

        def ground_depth(u, v):
            ray_w = pixel_rays(fr, np.stack([u, v], -1)) @ rot.T
            return -m[2, 3] / ray_w[..., 2], ray_w

        d, ray_w = ground_depth(xs + 0.5, ys + 0.5)
        hit = m[:3, 3] + d[..., None] * ray_w
        ok = (d > 0) & (np.abs(hit[..., 0]) < 3.8) & (np.abs(hit[..., 1]) < 3.8)
        ok &= ~_segment_hits_boxes(m[:3, 3], hit.reshape(-1, 3), bmin, bmax).reshape(H, W)
        corners = [ground_depth(xs + a, ys + b)[0] for a in (0, 1) for b in (0, 1)]
        tol = np.max(corners, 0) - np.min(corners, 0) + 1e-3
        err = np.abs(depth - d)
        assert ok.sum() > 0.2 * W * H
        bad = ok & (err > tol)
        assert not bad.any(), f"frame {fr['frame']}: {bad.sum()} ground pixels off, max {err[bad].max()} m"
        tested += ok.sum()
    assert tested > 0


def test_truth_file_layout(clip):
    camera_file.read(clip["truth"])
    camera_file.read(clip["right_truth"])
    truth = load(clip["truth"])
    assert truth["version"] == 1 and truth["convention"] == "blender"
    assert (truth["width"], truth["height"], truth["fps"]) == (W, H, FPS)
    assert [f["frame"] for f in truth["frames"]] == list(range(N_FRAMES))
    assert truth["ground_plane"] == {"point": [0.0, 0.0, 0.0], "normal": [0.0, 0.0, 1.0]}
    assert truth["stats"] == {} and truth["interaxial_m"] == INTERAXIAL
    assert truth["depth"]["kind"] == "planar_z"
    for fr in truth["frames"]:
        assert (clip["frames"] / fr["source"]).is_file()
        r = np.asarray(fr["matrix_world"])[:3, :3]
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-5)
        assert fr["principal_point_px"] == pytest.approx([W / 2 + PP_OFFSET[0], H / 2 + PP_OFFSET[1]], abs=1e-4)
        depth = np.load(clip["depth"] / (Path(fr["source"]).stem + ".npy"))
        assert depth.shape == (H, W) and depth.dtype == np.float32
    roles = [r["role"] for r in truth["scene"]]
    assert roles.count("marker") >= 4 and "ground" in roles


def test_right_eye_is_parallel_offset_along_camera_x(clip):
    left, right = load(clip["truth"]), load(clip["right_truth"])
    assert right["eye"] == "right"
    for lf, rf in zip(left["frames"], right["frames"], strict=True):
        ml, mr = np.asarray(lf["matrix_world"]), np.asarray(rf["matrix_world"])
        np.testing.assert_allclose(mr[:3, :3], ml[:3, :3], atol=1e-6)
        np.testing.assert_allclose(mr[:3, 3], ml[:3, 3] + INTERAXIAL * ml[:3, 0], atol=1e-5)
        assert rf["focal_px"] == lf["focal_px"] and rf["principal_point_px"] == lf["principal_point_px"]


def test_mp4_matches_frames(clip):
    reader = imageio_ffmpeg.read_frames(str(clip["video"]))
    meta = next(reader)
    assert tuple(meta["size"]) == (W, H) and meta["fps"] == pytest.approx(FPS)
    decoded = [np.frombuffer(b, np.uint8).reshape(H, W, 3) for b in reader]
    assert len(decoded) == N_FRAMES
    png = cv2.cvtColor(cv2.imread(str(clip["frames"] / "000000.png")), cv2.COLOR_BGR2RGB)
    # crf 12 keeps the texture: a mean error over 3 grey levels would mean smeared features.
    assert np.abs(decoded[0].astype(float) - png).mean() < 3.0


def test_pan_keeps_camera_centre_fixed(pan_clip):
    truth = load(pan_clip["truth"])
    mats = np.array([f["matrix_world"] for f in truth["frames"]])
    np.testing.assert_allclose(mats[:, :3, 3], mats[:1, :3, 3].repeat(len(mats), 0), atol=1e-5)
    yaw = np.degrees(np.arctan2(-mats[:, 1, 2], -mats[:, 0, 2]))
    assert abs(yaw[-1] - yaw[0]) == pytest.approx(30.0, abs=0.01)


def test_occluder_stands_at_the_centre_of_the_straight_pan_frame(pan_clip):
    truth = load(pan_clip["truth"])
    fr = truth["frames"][1]
    occ = next(r for r in truth["scene"] if r["role"] == "occluder")
    m = np.asarray(fr["matrix_world"], float)
    cx, cy = fr["principal_point_px"]
    iu, iv = int(cx), int(cy)
    ray_w = (pixel_rays(fr, np.array([iu + 0.5, iv + 0.5])) * [1, -1, -1]) @ m[:3, :3].T
    o, c, rad = m[:3, 3], np.array(occ["centre"]), occ["size"][0] / 2
    dx, ox = ray_w[:2], o[:2] - c[:2]
    a, b, cc = dx @ dx, 2 * dx @ ox, ox @ ox - rad ** 2
    t = (-b - np.sqrt(b * b - 4 * a * cc)) / (2 * a)
    depth = np.load(pan_clip["depth"] / "000001.npy")
    assert abs(o[2] + t * ray_w[2] - c[2]) < occ["size"][2] / 2
    assert depth[iv, iu] == pytest.approx(t, abs=0.01)


def test_handheld_shake_has_requested_size():
    smooth = camera_path("handheld", 2400, fps=24, seed=1, jitter_m=0, jitter_deg=0)
    shaky = camera_path("handheld", 2400, fps=24, seed=1, jitter_m=0.0015, jitter_deg=0.2)
    pos_rms = np.sqrt(((shaky[:, :3, 3] - smooth[:, :3, 3]) ** 2).mean(0))
    np.testing.assert_allclose(pos_rms, 0.0015, rtol=0.25)
    rel = np.einsum("nji,njk->nik", smooth[:, :3, :3], shaky[:, :3, :3])
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert np.sqrt((angle ** 2).mean()) == pytest.approx(0.2 * np.sqrt(3), rel=0.3)


def test_orbit_and_pan_geometry():
    orbit = camera_path("orbit", 50, distance=2.6, height=1.6, target=(0, 0, 0.2))
    r = np.linalg.norm(orbit[:, :2, 3], axis=1)
    np.testing.assert_allclose(r, 2.6, atol=1e-12)
    fwd = -orbit[:, :3, 2]
    to_target = np.array([0, 0, 0.2]) - orbit[:, :3, 3]
    np.testing.assert_allclose(np.cross(fwd, to_target), 0, atol=1e-12)
    with pytest.raises(ValueError, match="zigzag"):
        camera_path("zigzag", 3)


def test_bad_size_fails_cleanly(tmp_path):
    out = tmp_path / "odd"
    with pytest.raises(RuntimeError, match="--width/--height must be even"):
        make_clip(out, width=321, height=180, frames=1)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_texture_gives_corners_everywhere(clip):
    gray = cv2.cvtColor(cv2.imread(str(clip["frames"] / "000000.png")), cv2.COLOR_BGR2GRAY)
    pts = cv2.goodFeaturesToTrack(gray, 3000, 0.01, 5).reshape(-1, 2)
    cells = np.zeros((4, 4), int)
    np.add.at(cells, ((pts[:, 1] * 4 // H).astype(int), (pts[:, 0] * 4 // W).astype(int)), 1)
    assert cells.min() >= 15, f"corners per image cell:\n{cells}"


def test_tracked_corners_move_as_truth_and_depth_predict(clip):
    """KLT tracks from frame 0 to 1 agree with the motion predicted from depth + cameras."""
    truth = load(clip["truth"])
    f0, f1 = truth["frames"][0], truth["frames"][1]
    g0, g1 = (cv2.cvtColor(cv2.imread(str(clip["frames"] / f["source"])), cv2.COLOR_BGR2GRAY) for f in (f0, f1))
    pts = cv2.goodFeaturesToTrack(g0, 2000, 0.01, 5)
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(g0, g1, pts, None, winSize=(15, 15), maxLevel=3)
    pts, tracked = pts.reshape(-1, 2), tracked.reshape(-1, 2)
    depth = np.load(clip["depth"] / "000000.npy")
    iu, iv = np.floor(pts).astype(int).T
    d = depth[iv, iu]
    ok = status.ravel().astype(bool) & np.isfinite(d)
    m0, m1 = (np.asarray(f["matrix_world"], float) for f in (f0, f1))
    xc = pixel_rays(f0, pts) * d[:, None]
    xw = (xc * [1, -1, -1]) @ m0[:3, :3].T + m0[:3, 3]
    pred = project(f1, world_to_camera(f1, xw))
    err = np.linalg.norm(pred - tracked, axis=1)[ok]
    motion = np.linalg.norm(pred - pts, axis=1)[ok]
    assert ok.sum() > 300 and np.median(motion) > 2.0
    # KLT on a static texture with 4-sample render noise is accurate to ~0.1 px; corners on
    # depth edges and on the far, grazing ground track less well, so bound the median and p75.
    # A one-frame offset or a wrong camera would put most tracks pixels away from prediction.
    assert np.median(err) < 0.2 and np.percentile(err, 75) < 0.4, (np.median(err), np.percentile(err, 75))


def test_timeout_kills_the_renderer_and_leaves_nothing(tmp_path):
    out = tmp_path / "slow"
    with pytest.raises(RuntimeError, match="timed out"):
        make_clip(out, width=64, height=36, frames=50, samples=1, video=False, timeout=1.0)
    assert list(tmp_path.iterdir()) == []


def test_same_seed_same_truth_and_pixels(tmp_path):
    seen = []
    a = make_clip(tmp_path / "a", width=64, height=36, frames=2, samples=1, video=False, seed=11,
                  progress=lambda done, total: seen.append((done, total)))
    b = make_clip(tmp_path / "b", width=64, height=36, frames=2, samples=1, video=False, seed=11)
    assert seen == [(1, 2), (2, 2)]
    ta, tb = load(a["truth"]), load(b["truth"])
    for t in (ta, tb):
        t["generator"].pop("render_seconds_per_frame")
    assert ta == tb
    for name in ("000000.png", "000001.png"):  # pixels, not bytes: PNGs carry Cycles' timings
        np.testing.assert_array_equal(cv2.imread(str(a["frames"] / name)), cv2.imread(str(b["frames"] / name)))


def test_cancel_from_progress_stops_and_cleans_up(tmp_path):
    class Stop(Exception):
        pass

    def cancel(done, total):
        raise Stop

    with pytest.raises(Stop):
        make_clip(tmp_path / "c", width=64, height=36, frames=20, samples=1, video=False, progress=cancel)
    assert list(tmp_path.iterdir()) == []


def test_motion_blur_streaks_centre_on_the_truth_pose(blur_clip):
    """Shutter 0.5 centred on the frame, pan of 8 deg per frame: each marker sweeps L ~ 17 px.

    The streak's centroid stays on the projection at the frame time (also on the first and
    last frame: the camera motion is extrapolated past the ends), and its coverage is the disc
    convolved with a uniform segment of length L, so the variance along the motion exceeds the
    variance across it by L^2 / 12 (measured in linear light, inside the streak's footprint).
    """
    truth = load(blur_clip["truth"])
    frames = truth["frames"]
    markers = [r for r in truth["scene"] if r["role"] == "marker"]
    checked = 0
    for i, fr in enumerate(frames):
        img = cv2.cvtColor(cv2.imread(str(blur_clip["frames"] / fr["source"])), cv2.COLOR_BGR2RGB)
        for mk in markers:
            radius = mk["size"][0] / 2
            at = [silhouette_centroid(f, world_to_camera(f, np.array(mk["centre"])), radius)
                  for f in frames[max(i - 1, 0):i + 2]]
            step = (at[-1] - at[0]) / (len(at) - 1)
            sweep = 0.5 * np.linalg.norm(step)
            u = step / np.linalg.norm(step)
            cc = world_to_camera(fr, np.array(mk["centre"]))
            expect = silhouette_centroid(fr, cc, radius)
            r_px = fr["focal_px"] * radius / cc[2]
            half = int(np.ceil(sweep / 2 + r_px)) + 3
            if not (half <= expect[0] < W - half - 1 and half <= expect[1] < H - half - 1):
                continue
            x0, y0 = np.round(expect).astype(int) - half
            score = magenta_score(img, x0, y0, half)
            ys, xs = np.mgrid[0:score.shape[0], 0:score.shape[1]]
            d = np.stack([xs + x0 + 0.5 - expect[0], ys + y0 + 0.5 - expect[1]], -1)
            along, across = d @ u, d @ np.array([-u[1], u[0]])
            footprint = np.hypot(np.clip(np.abs(along) - sweep / 2, 0, None), across) <= r_px + 1.5
            w = np.clip(score, 0, 1) * footprint
            offset = np.array([(w * along).sum(), (w * across).sum()]) / w.sum()
            # 16 samples per pixel estimate each pixel's coverage with std <= 0.125; over the
            # ~150 streak pixels that moves the centroid by ~0.1 px.
            assert np.linalg.norm(offset) < 0.5, (fr["frame"], mk["name"], offset)
            var = [(w * (x - (w * x).sum() / w.sum()) ** 2).sum() / w.sum() for x in (along, across)]
            assert var[0] - var[1] == pytest.approx(sweep ** 2 / 12, rel=0.2), (fr["frame"], mk["name"], var)
            checked += 1
    assert checked >= 6
