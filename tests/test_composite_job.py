"""The main job end to end on the committed sample (``--preview``), and its input checks."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.cli import main as cli
from backend.media.video import iter_frames, probe

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "backend" / "samples"
CLIP, PRODUCT = SAMPLES / "sample_clip.mp4", SAMPLES / "product.glb"


@pytest.fixture(scope="module")
def preview_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("composite")
    out = tmp / "out" / "composite.mp4"
    code = cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--preview", "--steps", "8",
                "--work-dir", str(tmp / "work")])
    return code, out, tmp


def test_preview_end_to_end_writes_the_clips_frames_at_its_fps(preview_run, capsys):
    code, out, tmp = preview_run
    assert code == 0
    src, got = probe(CLIP), probe(out)
    assert got.frame_count == src.frame_count == 48
    assert abs(got.fps - src.fps) < 1e-6
    assert (got.width, got.height) == (240, 136)  # 240x135 padded to even for yuv420p
    assert list(out.parent.iterdir()) == [out]


def bottle_points(base, up, height: float) -> np.ndarray:
    """Points on the outline of the sample bottle (backend/samples/make_sample.py: a surface of
    revolution 0.25 m tall, radius 0.036 m, base centre at the origin) standing at ``base`` along
    ``up``, scaled to ``height``."""
    from backend.samples.make_sample import BOTTLE_RADIUS_M, PRODUCT_HEIGHT_M

    up = np.asarray(up, float) / np.linalg.norm(up)
    e1 = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    k = height / PRODUCT_HEIGHT_M
    ang = np.linspace(0, 2 * np.pi, 96, endpoint=False)[:, None]
    rings = [(0.0, 0.93), (0.012, 1.0), (0.52, 1.0), (0.6, 0.96), (0.86, 0.42), (1.0, 0.42)]  # (height, radius) fractions
    return np.concatenate([base + k * (f * PRODUCT_HEIGHT_M * up + r * BOTTLE_RADIUS_M * (np.cos(ang) * e1 + np.sin(ang) * e2))
                           for f, r in rings])


def product_pixels(composite: np.ndarray, footage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns where the frame shows the product: far from the footage (> 40 levels;
    green glass, cream label and red cap against the grey floor)."""
    return np.nonzero(np.abs(composite.astype(int) - footage.astype(int)).max(2) > 40)


def check_product_at(composite, footage, silhouette: np.ndarray, axis_px) -> None:
    """The product's base row (bottom edge of its pixels) and its axis column (median column of
    its pixels + 0.5, pixel-corner origin) within 2 px of where the silhouette's points and
    the axis's midpoint project."""
    ys, xs = product_pixels(composite, footage)
    assert len(ys) > 20, "no product in the frame"
    assert abs(ys.max() + 1 - silhouette[:, 1].max()) <= 2.0, (ys.max() + 1, silhouette[:, 1].max())
    assert abs(np.median(xs) + 0.5 - axis_px[0]) <= 2.0, (np.median(xs) + 0.5, axis_px[0])


def test_preview_composite_puts_the_product_where_the_true_camera_sees_it(preview_run, tmp_path):
    """The anchor is the ground under the centre of the lower third of frame 0. From the clip's
    true cameras: that ray meets the true floor (z = 0) at G; the bottle, at its own size in the
    solve's units (the solve's scale to metres from the camera paths), stands at G. In every
    frame its base row and axis column are within 2 px of that bottle through the true camera,
    and outside its box plus a shadow margin (ambient occlusion on the shadow catcher: two of
    its heights around its base) the frame is the footage up to the codec's own error: the
    footage encoded the same way (crf 18) differs from it as much (mean within 0.25 levels,
    99th percentile within 4)."""
    import json

    from backend.media.encode import VideoWriter
    from backend.pipelines.composite.placement import PinholeCamera, default_pixel, intersect_plane
    from shared_protocol import camera_file

    _, out, tmp = preview_run
    truth = json.loads((SAMPLES / "sample_truth.json").read_text())
    solve = camera_file.read(tmp / "work" / "solve" / "cameras.json")
    tc, sc = camera_file.matrices(truth)[:, :3, 3], camera_file.matrices(solve)[:, :3, 3]
    metres_per_unit = np.linalg.norm(tc[-1] - tc[0]) / np.linalg.norm(sc[-1] - sc[0])
    w, h = truth["width"], truth["height"]
    ground = intersect_plane(*PinholeCamera.from_frame(truth["frames"][0]).ray(*default_pixel(w, h)),
                             np.zeros(3), np.array([0.0, 0.0, 1.0]))
    height = 0.25 * metres_per_unit
    outline = bottle_points(ground, [0, 0, 1.0], height)
    s = 240 / w  # the preview's render scale
    footage = [cv2.resize(f, (240, 135), interpolation=cv2.INTER_AREA) for _, _, f in iter_frames(CLIP)]
    frames = [f[:135] for _, _, f in iter_frames(out)]
    with VideoWriter(tmp_path / "codec.mp4", probe(CLIP).fps, crf=18) as writer:
        for f in footage:
            writer.write(f)
    codec = [f[:135] for _, _, f in iter_frames(tmp_path / "codec.mp4")]
    assert len(frames) == len(footage) == len(codec) == len(truth["frames"]) == 48
    yy, xx = np.mgrid[:135, :240] + 0.5
    for i, fr in enumerate(truth["frames"]):
        cam = PinholeCamera.from_frame(fr)
        sil = cam.project(outline)[0] * s
        base, top, mid = cam.project([ground, ground + [0, 0, height], ground + [0, 0, height / 2]])[0] * s
        check_product_at(frames[i], footage[i], sil, mid)
        box = (xx >= sil[:, 0].min() - 2) & (xx <= sil[:, 0].max() + 2) & (yy >= sil[:, 1].min() - 2) & \
            (yy <= sil[:, 1].max() + 2)
        outside = ~box & (np.hypot(xx - base[0], yy - base[1]) > 2 * np.linalg.norm(top - base))
        ours = np.abs(frames[i].astype(int) - footage[i].astype(int)).max(2)[outside]
        ref = np.abs(codec[i].astype(int) - footage[i].astype(int)).max(2)[outside]
        assert ours.mean() <= ref.mean() + 0.25 and np.percentile(ours, 99) <= np.percentile(ref, 99) + 4, \
            (i, ours.mean(), ref.mean(), np.percentile(ours, 99), np.percentile(ref, 99))


def test_rerun_reuses_every_finished_frame(preview_run, capsys):
    _, out, tmp = preview_run
    shot = next((tmp / "work").glob("shot-*"))
    (shot / "frames" / "000010.png").unlink()
    code = cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--preview", "--steps", "8",
                "--work-dir", str(tmp / "work")])
    assert code == 0
    text = capsys.readouterr().out
    assert "frames_rendered: 1" in text and "frames_skipped: 47" in text
    assert "preview (reduced settings)" in text


@pytest.mark.parametrize("content", [b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n",
                                     b"<!DOCTYPE html><html></html>", b"glTF\x02\x00\x00\x00\xff\xff\x00\x00"])
def test_bad_product_gives_one_line_and_no_output(tmp_path, capsys, content):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(content)
    out = tmp_path / "out" / "composite.mp4"
    code = cli(["composite", str(CLIP), str(bad), "-o", str(out), "--preview", "--work-dir", str(tmp_path / "w")])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]  # (progress lines aside)
    assert code == 1
    assert len(errors) == 1 and str(bad) in errors[0]
    assert not out.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_parameters_are_refused(tmp_path, capsys):
    out = tmp_path / "c.mp4"
    assert cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--at-pixel", "12"]) == 1
    assert "U,V" in capsys.readouterr().err
    assert cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--product-height", "-1"]) == 1
    assert "product_height must be positive" in capsys.readouterr().err
    assert not out.exists()


def test_audio_of_the_footage_is_kept(preview_run, tmp_path, capsys):
    """The sample has no audio: mux a tone into a copy (same video stream), re-run on the
    finished work folder (every frame is reused) and check the output carries the audio."""
    import subprocess

    from backend.media.encode import audio_codec, ffmpeg_exe

    _, _, tmp = preview_run
    clip = tmp_path / "with_audio.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(CLIP), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=2", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                    "-shortest", str(clip)], check=True)
    work = tmp / "work"
    splats = next(work.glob("splats-*"))
    out = tmp_path / "audio.mp4"
    code = cli(["composite", str(clip), str(PRODUCT), "-o", str(out), "--preview", "--steps", "8",
                "--work-dir", str(work), "--solve", str(work / "solve"), "--reconstruction", str(splats)])
    assert code == 0
    text = capsys.readouterr().out
    assert "frames_rendered: 0" in text and "audio: True" in text
    assert audio_codec(out) == "aac"
    assert probe(out).frame_count == 48


def test_novel_camera_path_renders_over_the_splats(preview_run):
    """--camera-path: the solve's world seen along an orbit about the product; the background is
    the splat render, the product sits at its anchor's projection through the path camera."""
    import json

    from shared_protocol.camera_paths import orbit, write_nerfstudio
    from shared_protocol import camera_file

    from backend.pipelines.composite.placement import PinholeCamera, ground_of

    _, _, tmp = preview_run
    work = tmp / "work"
    spec = json.loads(next(work.glob("shot-*/spec.json")).read_text())
    anchor = np.array(spec["anchor"])
    doc = camera_file.read(work / "solve" / "cameras.json")
    cam0 = np.array(doc["frames"][0]["matrix_world"])
    path = orbit(anchor, cam0[:3, 3], 3, degrees=-20.0, axis=(0, 0, 1), focal_px=doc["frames"][0]["focal_px"],
                 width=doc["width"], height=doc["height"], fps=12.0)
    cp = write_nerfstudio(path, tmp / "camera_path.json")
    out = tmp / "path" / "orbit.mp4"
    code = cli(["composite", str(CLIP), str(PRODUCT), "-o", str(out), "--preview", "--steps", "8",
                "--work-dir", str(work), "--camera-path", str(cp)])
    assert code == 0
    got = probe(out)
    assert got.frame_count == 3 and abs(got.fps - 12.0) < 1e-6
    shot = [d for d in work.glob("shot-*") if (d / "background" / "000002.png").is_file()
            and not (d / "background" / "000047.png").exists()]
    assert len(shot) == 1
    for i, (_, _, rgb) in enumerate(iter_frames(out)):
        h, w = 135, 240
        rgb = rgb[:h].astype(int)
        splat_bg = cv2.cvtColor(cv2.imread(str(shot[0] / "background" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
        diff = np.abs(rgb - splat_bg.astype(int)).max(2) > 40
        ys, xs = np.nonzero(diff)
        assert len(ys) > 20  # the product over the splat background, nothing else changed much
        cam = PinholeCamera.from_frame({"matrix_world": path.matrices[i].tolist(), "focal_px": path.focal_px[i],
                                        "principal_point_px": [doc["width"] / 2, doc["height"] / 2]})
        s = w / doc["width"]
        # the bottle at its own size (0.25 solve units) standing on the solve's ground at the anchor
        up = ground_of(doc)[1]
        sil = cam.project(bottle_points(anchor, up, 0.25))[0] * s
        mid = cam.project(anchor + 0.125 * up)[0][0] * s
        check_product_at(rgb, splat_bg, sil, mid)
