"""Streaming frame reader: rotation metadata, variable frame rate, ranges, folders, bad files."""
from __future__ import annotations

import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

# a skip, not a collection error, without imageio_ffmpeg (the GPU machine): `pytest -m gpu tests/` collects
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from backend.media.video import iter_frames, probe  # noqa: E402
from backend.progress import JobError  # noqa: E402


def _ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *args], check=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A 64x48 clip whose frame n has a bright marker in its top-left quadrant."""
    d = tmp_path_factory.mktemp("video")
    path = d / "plain.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10", "-frames:v", "20",
            "-vf", "drawbox=x=0:y=0:w=16:h=12:color=white:t=fill",
            "-pix_fmt", "yuv420p", "-c:v", "libx264", "-qp", "0", str(path))
    return path


def test_probe_and_read_plain(plain):
    info = probe(plain)
    assert (info.width, info.height, info.frame_count, info.rotation) == (64, 48, 20, 0)
    assert info.fps == pytest.approx(10.0)
    frames = list(iter_frames(plain))
    assert [i for i, _, _ in frames] == list(range(20))
    assert [s for _, s, _ in frames] == [str(i) for i in range(20)]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, _, f in frames)
    assert frames[0][2][:12, :16].mean() > 200


def test_range_stride_max_frames_and_downscale(plain):
    got = [(i, f.shape) for i, _, f in iter_frames(plain, start=3, stop=17, stride=4, max_size=32)]
    assert [i for i, _ in got] == [3, 7, 11, 15]
    assert all(shape == (24, 32, 3) for _, shape in got)
    assert [i for i, _, _ in iter_frames(plain, start=2, max_frames=3)] == [2, 3, 4]


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotation_metadata_is_honoured(plain, tmp_path, angle):
    rotated = tmp_path / f"rot{angle}.mp4"
    _ffmpeg("-display_rotation", str(angle), "-i", str(plain), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert info.rotation in (angle, (360 - angle) % 360)
    expect = (48, 64) if angle in (90, 270) else (64, 48)
    assert (info.width, info.height) == expect
    _, _, frame = next(iter_frames(rotated))
    assert frame.shape[:2] == (expect[1], expect[0])
    # The white marker (top-left of the coded picture) must move to the corner the rotation
    # sends it to: top-left is never where it stays, except for no rotation.
    h, w = frame.shape[:2]
    corners = {"tl": frame[:h // 5, :w // 5], "tr": frame[:h // 5, -w // 5:],
               "bl": frame[-h // 5:, :w // 5], "br": frame[-h // 5:, -w // 5:]}
    brightest = max(corners, key=lambda k: corners[k].mean())
    assert brightest != "tl"
    if angle == 180:
        assert brightest == "br"


def test_variable_frame_rate_keeps_every_frame_once(tmp_path):
    """Frames 0-9 at 10 fps then 10-29 at 30 fps; each frame's brightness encodes its number."""
    path = tmp_path / "vfr.mkv"
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x48:r=30", "-frames:v", "30",
            "-vf", "geq=lum='40+N*6':cb=128:cr=128,setpts='if(lt(N,10),N*3,30+(N-10))/(30*TB)'",
            "-fps_mode", "vfr", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-qp", "0", str(path))
    info = probe(path)
    assert info.frame_count == 30
    levels = [f.mean() for _, _, f in iter_frames(path)]
    assert len(levels) == 30
    assert np.all(np.diff(levels) > 2.0), "a frame was duplicated or dropped"


def test_image_folder(tmp_path):
    for i in (10, 2, 1):
        img = np.full((30, 40, 3), i * 20, np.uint8)
        cv2.imwrite(str(tmp_path / f"f{i}.png"), img)
    (tmp_path / "notes.txt").write_text("ignored")
    info = probe(tmp_path)
    assert info.is_image_folder and (info.width, info.height, info.frame_count) == (40, 30, 3)
    got = list(iter_frames(tmp_path))
    assert [s for _, s, _ in got] == ["f1.png", "f2.png", "f10.png"]
    assert [int(f.mean()) for _, _, f in got] == [20, 40, 200]


@pytest.mark.parametrize("content", [b"", b"garbage" * 1000, "text"])
def test_bad_files_raise_job_error_naming_the_input(tmp_path, content):
    path = tmp_path / "broken.mov"
    if content == "text":
        path.write_text("hello\n")
    else:
        path.write_bytes(content)
    with pytest.raises(JobError) as err:
        list(iter_frames(path))
    assert str(path) in err.value.message and "\n" not in err.value.message
    assert err.value.code == "bad_input"


def test_missing_input_and_empty_folder(tmp_path):
    with pytest.raises(JobError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(JobError, match="no images"):
        probe(tmp_path)


def test_frames_are_streamed_not_collected(plain):
    gen = iter_frames(plain)
    first = next(gen)
    second = next(gen)
    assert first[0] == 0 and second[0] == 1
    gen.close()


@pytest.fixture
def numbered_folder(tmp_path):
    """40 images whose brightness encodes their number, plus a corrupt one at position 25."""
    for i in range(40):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((24, 32, 3), 5 * i + 10, np.uint8))
    return tmp_path


@pytest.mark.parametrize("threads", [2, 4])
def test_prefetch_matches_plain_reading(plain, numbered_folder, threads):
    for path in (plain, numbered_folder):
        for kw in ({}, {"start": 3, "stop": 17, "stride": 4, "max_size": 16}, {"max_frames": 5}):
            want = list(iter_frames(path, **kw))
            got = list(iter_frames(path, threads=threads, read_ahead=3, **kw))
            assert [(i, s) for i, s, _ in got] == [(i, s) for i, s, _ in want]
            assert all(np.array_equal(a[2], b[2]) for a, b in zip(got, want))


def test_prefetch_folder_error_surfaces_at_its_frame(numbered_folder):
    (numbered_folder / "025.png").write_bytes(b"not a png")
    seen = []
    with pytest.raises(JobError) as err:
        for i, _, frame in iter_frames(numbered_folder, threads=4, read_ahead=8):
            seen.append(i)
    assert seen == list(range(25))
    assert "025.png" in err.value.message and err.value.code == "bad_input"


def test_prefetch_holds_a_bounded_number_of_frames(numbered_folder, plain, monkeypatch):
    import backend.media.video as video

    decoded = []
    real_read = video._read_scaled

    def counting_read(path, max_size):
        decoded.append(path.name)
        return real_read(path, max_size)

    monkeypatch.setattr(video, "_read_scaled", counting_read)
    gen = iter_frames(numbered_folder, threads=3, read_ahead=4)
    for k in range(1, 6):
        next(gen)
        time.sleep(0.05)  # give the workers every chance to run further ahead
        assert len(decoded) <= k + 4
    gen.close()
    time.sleep(0.05)
    assert len(decoded) <= 5 + 4  # nothing more is decoded once closed

    pulled = []
    real_video = video._iter_video

    def counting_video(*args):
        for item in real_video(*args):
            pulled.append(item[0])
            yield item

    monkeypatch.setattr(video, "_iter_video", counting_video)
    gen = iter_frames(plain, threads=2, read_ahead=2)
    for k in range(1, 4):
        next(gen)
        time.sleep(0.05)
        assert len(pulled) <= k + 2 + 1  # the queue plus the one in the reader's hand
    gen.close()
    assert not any(t.name == "frame-reader" for t in threading.enumerate())


def test_prefetch_stops_cleanly_when_the_consumer_fails(plain, numbered_folder):
    for path in (plain, numbered_folder):
        before = threading.active_count()
        with pytest.raises(RuntimeError, match="consumer"):
            for i, _, _ in iter_frames(path, threads=3):
                if i == 2:
                    raise RuntimeError("consumer gave up")
        assert threading.active_count() == before


def test_prefetch_reports_bad_input_like_plain_reading(tmp_path):
    path = tmp_path / "broken.mov"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(JobError) as err:
        list(iter_frames(path, threads=2))
    assert str(path) in err.value.message and err.value.code == "bad_input"
    with pytest.raises(JobError, match="bad frame range"):
        list(iter_frames(path, start=5, stop=2, threads=2))
