"""Encodes a numbered PNG sequence to H.264 with imageio-ffmpeg's bundled ffmpeg (no bpy)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg


def encode_mp4(frames_dir: Path, out_path: Path, fps: float, crf: int = 12) -> Path:
    """Write ``frames_dir/%06d.png`` as yuv420p H.264 at ``fps``; raise RuntimeError with ffmpeg's tail."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-framerate", f"{fps:g}",
           "-start_number", "0", "-i", str(Path(frames_dir) / "%06d.png"), "-c:v", "libx264",
           "-preset", "medium", "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-r", f"{fps:g}",
           "-movflags", "+faststart", str(out_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed encoding {frames_dir}: {proc.stderr.strip()[-2000:]}")
    return Path(out_path)
