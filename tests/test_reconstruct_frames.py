"""Training frames: video-index mapping, radial undistortion, resizing with intrinsics."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.pipelines.reconstruct.frames import load_frames, training_size
from backend.pipelines.reconstruct.scene import load_solve
from backend.pipelines.reconstruct.synthetic_solve import analytic_solve
from backend.progress import JobError


@pytest.fixture(scope="module")
def solve(tmp_path_factory) -> Path:
    # textured enough that neighbouring frames differ: 300 Gaussians, 12 frames, 96x72
    return analytic_solve(tmp_path_factory.mktemp("frames") / "solve", n_gaussians=300, n_frames=12,
                          width=96, height=72, seed=5)


def _pngs(solve: Path) -> list[np.ndarray]:
    files = sorted((solve / "frames").glob("*.png"))
    return [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB).astype(np.float64) for f in files]


def test_video_frames_map_to_their_index(solve, tmp_path):
    from backend.synthetic.video import encode_mp4

    video = encode_mp4(solve / "frames", tmp_path / "clip.mp4", fps=24)
    s = load_solve(solve)
    sources = [str(i) for i in range(12)]
    fs = load_frames(video, sources, s.width, s.height, s.K)
    png = _pngs(solve)
    for k in range(12):
        got = fs.images[k].numpy().astype(np.float64)
        errs = [np.abs(got - p).mean() for p in png]
        # the decoded frame k is the PNG k (H.264 error), not a neighbour: the index mapping is exact
        assert int(np.argmin(errs)) == k
        assert errs[k] < 6.0  # mean abs error in 8-bit levels after yuv420p H.264 at crf 12
    # a subset with a gap, named by index, comes back in the order asked
    fs = load_frames(video, ["7", "2", "9"], s.width, s.height, s.K[[7, 2, 9]])
    assert int(np.argmin([np.abs(fs.images[0].numpy() - p).mean() for p in png])) == 7
    with pytest.raises(JobError, match="lacks frames"):
        load_frames(video, ["3", "40"], s.width, s.height, s.K[:2])


def test_radial_distortion_is_removed(tmp_path):
    w, h, f = 96, 72, 80.0
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    k1, k2 = -0.25, 0.05
    # round blobs (sigma 2 px) at known undistorted positions, rendered exactly into the
    # distorted image: pixel p_d shows the point u(p_d) = undistort(p_d) (radial2 model,
    # x_d = x_u (1 + k1 r^2 + k2 r^4) in normalised coordinates)
    centres = np.array([[x, y] for x in (14.3, 30.6, 48.2, 65.7, 81.1) for y in (13.4, 36.1, 57.8)])
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    pts = np.stack([xs.ravel(), ys.ravel()], 1)[:, None, :]
    u = cv2.undistortPoints(pts, K, np.array([k1, k2, 0, 0]), P=K).reshape(h, w, 2)
    img = np.zeros((h, w))
    for c in centres:
        img += np.exp(-((u - c) ** 2).sum(-1) / (2 * 2.0 ** 2))
    folder = tmp_path / "distorted"
    folder.mkdir()
    cv2.imwrite(str(folder / "f.png"), np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    fixed = load_frames(folder, ["f.png"], w, h, K[None], k1=k1, k2=k2).images[0, ..., 0].numpy()
    raw = load_frames(folder, ["f.png"], w, h, K[None]).images[0, ..., 0].numpy()

    def centroid(a, c):
        x0, y0 = int(c[0]), int(c[1])
        win = a[y0 - 6:y0 + 7, x0 - 6:x0 + 7].astype(np.float64)
        wy, wx = np.mgrid[y0 - 6:y0 + 7, x0 - 6:x0 + 7] + 0.5
        return np.array([(win * wx).sum() / win.sum(), (win * wy).sum() / win.sum()])

    err_fixed = [np.linalg.norm(centroid(fixed, c) - c) for c in centres]
    err_raw = [np.linalg.norm(centroid(raw, c) - c) for c in centres]
    # OpenCV's remap (1/32 px fixed-point bilinear) and 8-bit rounding move a 2 px blob's
    # centroid by well under 0.05 px; mixing up the pixel-centre convention costs ~0.14 px here
    assert max(err_fixed) < 0.05, err_fixed
    assert max(err_raw) > 1.0  # without undistortion the corner blobs are far off


def test_resize_scales_intrinsics_and_checks_size(solve, tmp_path):
    s = load_solve(solve)
    assert training_size(96, 72, 48) == (48, 36, 0.5)
    assert training_size(96, 72, 200) == (96, 72, 1.0)
    fs = load_frames(s.input_path(), s.sources, s.width, s.height, s.K, max_size=48)
    assert tuple(fs.images.shape) == (12, 36, 48, 3)
    # a pixel-corner-origin camera scales as x' = x * 0.5: f and c both halve
    np.testing.assert_allclose(fs.K[0], s.K[0] * np.array([[0.5], [0.5], [1.0]]))
    # a solve that claims another frame size is refused with the frame named
    doc = json.loads((solve / "cameras.json").read_text())
    with pytest.raises(JobError, match="000000.png.*96x72.*100x72"):
        load_frames(s.input_path(), s.sources, 100, 72, s.K)
    assert doc["width"] == 96
    # frames that would not fit the host budget are refused before decoding, with the size named
    with pytest.raises(JobError, match="12 frames .* at 96x72 need 0.000249 GB, over the 1e-06 GB"):
        load_frames(s.input_path(), s.sources, s.width, s.height, s.K, host_budget_gb=1e-6)
