"""H.264 video writer using imageio-ffmpeg's bundled ffmpeg binary.

:class:`VideoWriter` takes RGB uint8 frames one at a time and streams them to ffmpeg
(libx264, yuv420p). Odd frame sizes are padded to even by repeating the last row/column
(yuv420p needs even dimensions). The frame rate is kept exactly (as a fraction, so 29.97 stays
30000/1001). When ``audio_from`` names a media file with an audio stream, that stream is
copied into the output (or re-encoded to AAC when the MP4 container cannot hold its codec).
The file is written under a temporary name beside ``path`` and renamed when complete, so a
failed or aborted write leaves nothing at ``path``.
"""
from __future__ import annotations

import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from backend.progress import JobError

#: Audio codecs an MP4 file can carry as they are.
MP4_AUDIO_COPY = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def audio_codec(path: str | Path) -> str | None:
    """Codec name of the first audio stream of ``path``, or None when it has none."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    m = re.search(r"Stream #\d+:\d+.*?: Audio: ([A-Za-z0-9_]+)", proc.stderr)
    return m.group(1).lower() if m else None


def fps_fraction(fps: float | Fraction | str) -> Fraction:
    """The frame rate as an exact fraction (NTSC rates like 29.97 become 30000/1001)."""
    f = Fraction(fps) if isinstance(fps, str) else Fraction(float(fps) if not isinstance(fps, Fraction) else fps)
    f = f.limit_denominator(1001)
    if f <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return f


class VideoWriter:
    """Stream RGB frames into an H.264 MP4 at ``path``; use as a context manager.

    ``crf`` and ``preset`` are libx264's quality and speed settings. All frames must have the
    size of the first one.
    """

    def __init__(self, path: str | Path, fps: float | Fraction | str, audio_from: str | Path | None = None,
                 crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        self.fps = fps_fraction(fps)
        self.audio_from = Path(audio_from) if audio_from else None
        self.crf, self.preset = int(crf), preset
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{os.getpid()}.mp4")
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._proc: subprocess.Popen | None = None

    def _start(self, h: int, w: int) -> None:
        self.size = (h, w)
        eh, ew = h + h % 2, w + w % 2
        cmd = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{ew}x{eh}",
               "-framerate", f"{self.fps.numerator}/{self.fps.denominator}", "-i", "-"]
        codec = audio_codec(self.audio_from) if self.audio_from else None
        if codec:
            cmd += ["-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0",
                    "-c:a", "copy" if codec in MP4_AUDIO_COPY else "aac", "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.audio_codec = codec
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame (H, W, 3) uint8."""
        a = np.asarray(frame)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8, got {a.shape} {a.dtype}")
        if self._proc is None:
            self._start(a.shape[0], a.shape[1])
        elif a.shape[:2] != self.size:
            raise ValueError(f"frame {self.frames} is {a.shape[:2]}, the video is {self.size}")
        h, w = self.size
        if h % 2 or w % 2:
            a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(a).tobytes())
        except BrokenPipeError as exc:
            err = self._proc.stderr.read().decode(errors="replace").strip()
            self.abort()
            raise JobError(f"ffmpeg stopped while writing {self.path}: {err[-500:]}", "encode_failed") from exc
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns ``path``."""
        if self._proc is None:
            raise JobError(f"no frames were written to {self.path}", "encode_failed")
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        rc = self._proc.wait()
        self._proc = None
        if rc != 0:
            self.tmp.unlink(missing_ok=True)
            raise JobError(f"ffmpeg failed writing {self.path}: {err[-500:]}", "encode_failed")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file."""
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames, fps, audio_from=None, **kw) -> Path:
    """Write an iterable of RGB frames to ``path``; returns ``path``."""
    with VideoWriter(path, fps, audio_from, **kw) as w:
        for f in frames:
            w.write(f)
    return Path(path)
