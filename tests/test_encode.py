"""H.264 writer: frame rate, audio, even sizes, atomic output."""
from __future__ import annotations

import re
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from backend.media.encode import VideoWriter, audio_codec, ffmpeg_exe, write_video


def stream_info(path):
    err = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    video = re.search(r"Video: (\w+).*?, (\w+)\(.*?(\d+)x(\d+).*?, ([\d.]+) fps", err)
    return err, video


def count_frames(path):
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory):
    """A 2 s 25 fps clip (64x48) with a 440 Hz sine audio track (AAC), made with ffmpeg."""
    out = tmp_path_factory.mktemp("enc") / "src.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def test_keeps_fps_and_copies_audio(clip_with_audio, tmp_path):
    assert audio_codec(clip_with_audio) == "aac"
    frames = [np.full((48, 128, 3), i * 5, np.uint8) for i in range(50)]
    out = write_video(tmp_path / "sbs.mp4", frames, 25, audio_from=clip_with_audio)
    err, video = stream_info(out)
    assert video and video.group(1) == "h264" and video.group(2) == "yuv420p"
    assert (int(video.group(3)), int(video.group(4))) == (128, 48)
    assert float(video.group(5)) == 25.0
    assert re.search(r"Audio: aac.*44100 Hz", err)
    n, secs = count_frames(out)
    assert n == 50 and secs == pytest.approx(2.0, abs=0.05)


def test_ntsc_rate_kept_exactly_and_no_audio_when_source_has_none(tmp_path):
    src = tmp_path / "silent.mp4"
    write_video(src, [np.zeros((16, 16, 3), np.uint8)] * 3, 10)
    assert audio_codec(src) is None
    out = write_video(tmp_path / "o.mp4", [np.zeros((16, 16, 3), np.uint8)] * 30, Fraction(30000, 1001),
                      audio_from=src)
    err, video = stream_info(out)
    assert "29.97 fps" in err and "Audio" not in err


def test_odd_size_padded_to_even(tmp_path):
    frame = np.zeros((45, 63, 3), np.uint8)
    frame[:, -1] = 200  # the last column is repeated into the padding
    out = write_video(tmp_path / "odd.mp4", [frame] * 4, 24)
    _, video = stream_info(out)
    assert (int(video.group(3)), int(video.group(4))) == (64, 46)
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(out))
    meta = next(gen)
    first = np.frombuffer(next(gen), np.uint8).reshape(46, 64, 3)
    gen.close()
    assert meta["size"] == (64, 46)
    assert abs(int(first[20, 63].mean()) - 200) < 12 and first[20, 30].mean() < 12


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 24) as w:
            w.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("pipeline failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "x.mp4", 24).write(np.zeros((16, 16), np.uint8))
