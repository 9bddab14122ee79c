"""Scene stereo along a novel camera path: both eyes rendered from the splats."""
from __future__ import annotations

import json

import numpy as np
import pytest

from backend.evaluation.image_metrics import psnr
from backend.jobs import stereo as job
from backend.progress import JobError, Progress

from test_stereo_scene import _scene_fixture

W, H, F = 96, 64, 70.0


def _read(path, w2):
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    next(gen)
    return [np.frombuffer(b, np.uint8).reshape(H, w2, 3) for b in gen]


def _path(n=4):
    mws = []
    for i in range(n):
        m = np.eye(4)
        m[0, 3], m[2, 3] = -0.1 + 0.06 * i, 0.2 - 0.05 * i  # sideways and forward: not the footage's path
        mws.append(m)
    return np.array(mws)


def _expected(recon, mws, convergence):
    from backend.pipelines.splats_io import read_ply
    from backend.pipelines.stereo.scene import render_pair

    splats = read_ply(recon / "splats.ply")
    n = len(mws)
    left, right = render_pair(splats, mws, [F] * n, [[W / 2, H / 2]] * n, W, H, (W, H), 0.1, convergence)
    u8 = lambda a: np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
    return [u8(x) for x in left["rgb"]], [u8(x) for x in right["rgb"]]


luma = lambda a: a.astype(float) @ [0.299, 0.587, 0.114]  # noqa: E731


def test_nerfstudio_camera_path_renders_both_eyes_from_the_splats(tmp_path):
    from shared_protocol.camera_paths import CameraPath, write_nerfstudio

    recon, _, _ = _scene_fixture(tmp_path, frames=1)
    mws = _path()
    cp = write_nerfstudio(CameraPath(mws, F, W, H, 12.0), tmp_path / "camera_path.json")
    res = job.run({"input": str(cp), "reconstruction": str(recon), "interaxial": 0.1, "convergence": 3.0,
                   "layout": "sbs", "crf": 0}, tmp_path / "out", Progress())
    assert res.summary["method"] == "scene-path" and res.summary["frames"] == 4
    assert res.summary["fps"] == 12.0 and res.summary["size"] == [W, H]
    frames = _read(tmp_path / "out" / "stereo.mp4", 2 * W)
    left, right = _expected(recon, mws, 3.0)
    assert len(frames) == 4
    for fr, lt, rt in zip(frames, left, right):
        # each half is the render of its eye (H.264 at crf 0 in yuv420p); the eyes differ by the parallax
        assert psnr(luma(fr[:, :W]), luma(lt)) > 35 and psnr(luma(fr[:, W:]), luma(rt)) > 35
        assert psnr(luma(fr[:, W:]), luma(lt)) < psnr(luma(fr[:, W:]), luma(rt)) - 5


def test_cameras_json_path_and_default_convergence(tmp_path):
    from shared_protocol import camera_file

    recon, _, _ = _scene_fixture(tmp_path, frames=1)
    mws = _path(2)
    doc = camera_file.make_document(W, H, 8.0, mws, F, [W / 2, H / 2])
    camera_file.write(tmp_path / "path.json", doc)
    res = job.run({"input": str(tmp_path / "path.json"), "reconstruction": str(recon), "interaxial": 0.1,
                   "layout": "tab", "crf": 0}, tmp_path / "out", Progress())
    # default convergence: the median splat depth of the first frame (the wall at z = -4 seen from z = 0.2)
    assert res.summary["convergence"] == pytest.approx(4.2, abs=0.05)
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(tmp_path / "out" / "stereo.mp4"))
    meta = next(gen)
    assert tuple(meta["size"]) == (W, 2 * H)  # top-bottom
    assert sum(1 for _ in gen) == 2


def test_camera_path_errors_name_the_input(tmp_path):
    recon, _, _ = _scene_fixture(tmp_path, frames=1)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"camera_path": [], "render_width": W, "render_height": H, "fps": 10}))
    with pytest.raises(JobError, match="bad.json"):
        job.run({"input": str(bad), "reconstruction": str(recon)}, tmp_path / "o1", Progress())
    good = tmp_path / "p.json"
    from shared_protocol.camera_paths import CameraPath, write_nerfstudio

    write_nerfstudio(CameraPath(_path(2), F, W, H, 10.0), good)
    with pytest.raises(JobError, match="needs --reconstruction"):
        job.run({"input": str(good)}, tmp_path / "o2", Progress())
    with pytest.raises(JobError, match="warp method needs footage"):
        job.run({"input": str(good), "reconstruction": str(recon), "method": "warp"}, tmp_path / "o3", Progress())
    assert not (tmp_path / "o1" / "stereo.mp4").exists() and not (tmp_path / "o2").exists()
