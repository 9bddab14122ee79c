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


def test_preview_composite_differs_from_the_footage_only_around_the_product(preview_run):
    """The default anchor is the centre of the lower third: (120, 112.5) at 240x135."""
    _, out, _ = preview_run
    first = next(iter_frames(out))[2][:135].astype(int)
    footage = cv2.resize(next(iter_frames(CLIP))[2], (240, 135), interpolation=cv2.INTER_AREA).astype(int)
    diff = np.abs(first - footage).max(2) > 40
    ys, xs = np.nonzero(diff)
    assert len(ys) > 20  # the product is there
    assert abs(np.median(xs) - 120) < 15 and 60 < np.median(ys) < 135


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

    from blender_addon.camera_paths import orbit, write_nerfstudio
    from shared_protocol import camera_file

    from backend.pipelines.composite.placement import PinholeCamera

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
        u, v = cam.project(anchor)[0][0]
        s = w / doc["width"]
        # the anchor is the product's base: its column is the product's, its row the bottom of it
        assert abs(np.median(xs) - u * s) < 12 and abs(ys.max() - v * s) < 12
