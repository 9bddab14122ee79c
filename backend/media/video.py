"""Streaming frame reader for video files (via imageio-ffmpeg) and image folders.

``probe(path)`` reports the displayed size, frame rate, frame count and rotation of an input;
``iter_frames(path, ...)`` yields ``(index, source, frame)`` one frame at a time, where ``frame`` is
an ``HxWx3`` uint8 RGB array already rotated as the file's display matrix asks and optionally
downscaled so that its longer side is at most ``max_size``. With ``threads > 1`` frames are
decoded ahead of the consumer in background threads (image files in parallel; a video's pipe
by one reader thread), delivered in order, a bounded number of frames ahead. Every decoded
frame is delivered exactly once (no duplication or dropping to a constant rate), so
variable-frame-rate files keep their true frame sequence. Bad inputs raise :class:`backend.progress.JobError` naming the input.
"""
from __future__ import annotations

import logging
import queue
import re
import subprocess
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from backend.progress import JobError

# imageio-ffmpeg warns whenever the output size differs from the coded size, which is the
# intended result of rotation and downscaling here.
logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found: displayed size (after rotation), rate, count and rotation."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    rotation: int
    is_image_folder: bool = False


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` in natural order (frame2 before frame10)."""
    files = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _header(path: Path) -> str:
    """ffmpeg's description of ``path`` (its stderr for ``ffmpeg -i path``)."""
    proc = subprocess.run([_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, errors="replace", timeout=60)
    return proc.stderr


def _rotation_from_header(text: str) -> int:
    m = re.search(r"rotation of (-?[0-9.]+) degrees", text)
    if m:
        return int(round(float(m.group(1)))) % 360
    m = re.search(r"rotate\s*:\s*(-?[0-9]+)", text)
    if m:
        return int(m.group(1)) % 360
    return 0


def _video_stream_line(text: str) -> str | None:
    for line in text.splitlines():
        if re.search(r"Stream #\d+:\d+.*: Video:", line):
            return line
    return None


def probe(path: str | Path, count: bool = True) -> VideoInfo:
    """Size (as displayed), fps, frame count and rotation of a video file or image folder.

    With ``count`` the frame count is exact (the stream is decoded once, which takes a while
    for long videos); without it, it is estimated from the duration and frame rate.
    """
    path = Path(path)
    if not path.exists():
        raise JobError(f"input not found: {path}", code="bad_input")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise JobError(f"no images in folder: {path}", code="bad_input")
        first = _read_image(files[0])
        return VideoInfo(str(path), int(first.shape[1]), int(first.shape[0]), 0.0, len(files), 0, True)
    if path.stat().st_size == 0:
        raise JobError(f"empty file, not a video: {path}", code="bad_input")
    text = _header(path)
    line = _video_stream_line(text)
    if line is None:
        raise JobError(f"not a readable video (no video stream): {path}", code="bad_input")
    m = re.search(r", (\d{2,5})x(\d{2,5})[ ,\[]", line)
    if not m:
        raise JobError(f"not a readable video (no frame size): {path}", code="bad_input")
    w, h = int(m.group(1)), int(m.group(2))
    rotation = _rotation_from_header(text)
    if rotation in (90, 270):
        w, h = h, w
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    m = re.search(r"([\d.]+) fps", line)
    stream_fps = float(m.group(1)) if m else 0.0
    if count:
        count = _count_frames(path)
        if count == 0:
            raise JobError(f"video has no decodable frames: {path}", code="bad_input")
    else:
        count = max(1, int(round(duration * stream_fps))) if duration > 0 and stream_fps > 0 else 0
    fps = 0.0
    if duration > 0:
        fps = count / duration
        if stream_fps > 0 and abs(fps - stream_fps) / stream_fps < 0.02:
            fps = stream_fps
    else:
        fps = stream_fps
    return VideoInfo(str(path), w, h, float(fps), count, rotation, False)


def _count_frames(path: Path) -> int:
    """Exact number of decodable video frames (decodes the stream; no frame rate conversion)."""
    cmd = [_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0",
           "-fps_mode", "passthrough", "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=3600)
    found = re.findall(r"frame=\s*(\d+)", proc.stderr)
    if proc.returncode != 0 and not found:
        return 0
    return int(found[-1]) if found else 0


def scaled_size(w: int, h: int, max_size: int | None) -> tuple[int, int]:
    """Size with the longer side at most ``max_size`` (even dimensions when scaled)."""
    if not max_size or max(w, h) <= max_size:
        return w, h
    s = max_size / max(w, h)
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


def _read_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise JobError(f"cannot read image: {path}", code="bad_input")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _selected(index: int, start: int, stop: int | None, stride: int) -> bool:
    return index >= start and (stop is None or index < stop) and (index - start) % stride == 0


def iter_frames(path: str | Path, start: int = 0, stop: int | None = None, stride: int = 1,
                max_frames: int | None = None, max_size: int | None = None,
                threads: int = 1, read_ahead: int | None = None,
                ) -> Iterator[tuple[int, str, np.ndarray]]:
    """Yield ``(index, source, rgb)`` for frames ``start <= index < stop`` every ``stride``.

    ``index`` is the frame's position in the input (0-based decode order); ``source`` is the
    frame index as a string for videos or the image file name for folders. At most
    ``max_frames`` frames are produced; with ``max_size`` the longer side is downscaled to it.
    With ``threads == 1`` only one frame is held at a time. With ``threads > 1`` decoding runs
    ahead in background threads (``threads`` image decoders for a folder, one pipe reader for
    a video), at most ``read_ahead`` (default ``2 * threads``) frames ahead of the consumer
    (plus the one a video reader holds while it waits for room); order and errors are as without threads (an error surfaces at the frame that caused it),
    and closing the generator stops the background work.
    """
    if threads > 1:
        depth = max(1, read_ahead if read_ahead is not None else 2 * threads)
        return _prefetched(Path(path), start, stop, stride, max_frames, max_size, threads, depth)
    return _iter_frames(path, start, stop, stride, max_frames, max_size)


def _iter_frames(path, start, stop, stride, max_frames, max_size):
    path = Path(path)
    _check_range(path, start, stop, stride)
    if path.is_dir():
        files = _folder_files(path)
        for i, f in _selected_files(files, start, stop, stride, max_frames):
            yield i, f.name, _read_scaled(f, max_size)
        return
    yield from _iter_video(path, start, stop, stride, max_frames, max_size)


def _check_range(path: Path, start: int, stop: int | None, stride: int) -> None:
    if stride < 1 or start < 0 or (stop is not None and stop <= start):
        raise JobError(f"bad frame range start={start} stop={stop} stride={stride} for {path}",
                       code="bad_params")
    if not path.exists():
        raise JobError(f"input not found: {path}", code="bad_input")


def _folder_files(path: Path) -> list[Path]:
    files = list_images(path)
    if not files:
        raise JobError(f"no images in folder: {path}", code="bad_input")
    return files


def _selected_files(files, start, stop, stride, max_frames):
    """``(index, file)`` of the folder images the range selects, in order."""
    chosen = [(i, f) for i, f in enumerate(files) if _selected(i, start, stop, stride)]
    return chosen if max_frames is None else chosen[:max_frames]


def _read_scaled(path: Path, max_size: int | None) -> np.ndarray:
    """An image file as RGB, its longer side downscaled to ``max_size`` (area filter)."""
    import cv2

    img = _read_image(path)
    w, h = scaled_size(img.shape[1], img.shape[0], max_size)
    if (w, h) != (img.shape[1], img.shape[0]):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return img


def _prefetched(path, start, stop, stride, max_frames, max_size, threads, depth):
    """:func:`iter_frames` with decoding done ahead in background threads (see there)."""
    _check_range(path, start, stop, stride)
    if path.is_dir():
        yield from _prefetch_folder(_selected_files(_folder_files(path), start, stop, stride,
                                                    max_frames), max_size, threads, depth)
    else:
        yield from _prefetch_iterator(
            lambda: _iter_video(path, start, stop, stride, max_frames, max_size), depth)


def _prefetch_folder(chosen, max_size, threads, depth):
    """Decode the ``(index, file)`` list with ``threads`` workers, at most ``depth`` ahead."""
    pending: deque = deque()
    todo = iter(chosen)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="frame-decode")
    try:
        while True:
            while len(pending) < depth:
                item = next(todo, None)
                if item is None:
                    break
                i, f = item
                pending.append((i, f.name, pool.submit(_read_scaled, f, max_size)))
            if not pending:
                return
            i, name, fut = pending.popleft()
            img = fut.result()
            yield i, name, img
    finally:
        for *_, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


_DONE = object()


def _prefetch_iterator(make_iter, depth):
    """Run the iterator ``make_iter()`` in a reader thread, at most ``depth`` items ahead.

    Items and the iterator's exception (re-raised here, after the items before it) arrive in
    order; closing this generator stops the reader, which then closes the iterator.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def reader():
        try:
            it = make_iter()
            try:
                for item in it:
                    if not put((item, None)):
                        return
            finally:
                it.close()
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=reader, name="frame-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is _DONE:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _iter_video(path, start, stop, stride, max_frames, max_size):
    import imageio_ffmpeg

    info = probe(path, count=False)
    w, h = scaled_size(info.width, info.height, max_size)
    out_params = ["-fps_mode", "passthrough", "-an", "-sn"]
    if (w, h) != (info.width, info.height):
        out_params += ["-vf", f"scale={w}:{h}:flags=area"]
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=out_params)
    produced = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                meta = next(gen)
            except (RuntimeError, OSError, StopIteration, ValueError) as exc:
                raise JobError(f"cannot decode video {path}: {str(exc).splitlines()[0]}",
                               code="bad_input") from None
        fw, fh = meta["size"]
        index = -1
        while True:
            try:
                buf = next(gen)
            except StopIteration:
                break
            except (RuntimeError, OSError) as exc:
                if produced == 0:
                    raise JobError(f"cannot decode video {path}: {str(exc).splitlines()[0]}",
                                   code="bad_input") from None
                break
            index += 1
            if stop is not None and index >= stop:
                break
            if not _selected(index, start, stop, stride):
                continue
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(fh, fw, 3)
            produced += 1
            yield index, str(index), frame
            if max_frames is not None and produced >= max_frames:
                break
    finally:
        gen.close()
