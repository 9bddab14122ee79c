"""Training frames from the footage: streamed decode, resize, undistort, memory-budgeted cache.

Frames are decoded one at a time with :func:`backend.media.video.iter_frames` (video files or
image folders), resized to the training resolution, undistorted when the solve has radial
distortion, and kept as uint8. The stack goes to the training device only if it fits the
device budget; otherwise it stays in host memory and each step copies one frame over.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.media.video import iter_frames
from backend.progress import JobError, Progress


@dataclass
class FrameStore:
    images: torch.Tensor  # [F,H,W,3] uint8, on ``images.device``
    K: np.ndarray  # [F,3,3] intrinsics at the training resolution
    width: int
    height: int
    on_device: bool
    alphas: torch.Tensor | None = None  # [F,H,W,1] uint8 target coverage (object views), or None

    def get(self, i: int, device: torch.device) -> torch.Tensor:
        """Frame ``i`` as float32 [H,W,3] in [0,1] on ``device``."""
        return self.images[i].to(device, non_blocking=True).float() / 255.0

    def get_alpha(self, i: int, device: torch.device) -> torch.Tensor:
        """Target coverage of frame ``i`` as float32 [H,W,1] in [0,1] (needs ``alphas``)."""
        return self.alphas[i].to(device, non_blocking=True).float() / 255.0


def training_size(width: int, height: int, max_size: int | None) -> tuple[int, int, float]:
    """Training resolution for ``max_size`` on the longer side (never upscales) and its scale."""
    if not max_size or max(width, height) <= max_size:
        return width, height, 1.0
    s = max_size / float(max(width, height))
    return max(1, round(width * s)), max(1, round(height * s)), s


def _undistort(img: np.ndarray, K: np.ndarray, k1: float, k2: float) -> np.ndarray:
    """Remove radial2 distortion. ``K`` uses the pixel-corner origin (centres at +0.5);
    OpenCV's remapping puts pixel centres at integers, so its principal point is 0.5 less."""
    import cv2

    K_cv = np.array(K, np.float64).copy()
    K_cv[0, 2] -= 0.5
    K_cv[1, 2] -= 0.5
    return cv2.undistort(img, K_cv, np.array([k1, k2, 0.0, 0.0]))


def host_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return 16.0


def load_frames(input_path: Path, sources: list[str], width: int, height: int, K: np.ndarray,
                k1: float = 0.0, k2: float = 0.0, max_size: int | None = None,
                device: torch.device | str = "cpu", device_budget_gb: float = 4.0,
                host_budget_gb: float | None = None, progress: Progress | None = None) -> FrameStore:
    """Decode the frames named by ``sources`` (video frame indices or image names) from
    ``input_path``; ``width``/``height``/``K`` are the solve's. Raises JobError naming the input
    when a frame is missing or has the wrong size, or when the decoded frames would not fit
    ``host_budget_gb`` (default: half the machine's memory)."""
    import cv2

    input_path = Path(input_path)
    if not input_path.exists():
        raise JobError(f"footage not found: {input_path}", code="bad_input")
    tw, th, s = training_size(width, height, max_size)
    need = len(sources) * tw * th * 3 / 1e9
    budget = host_memory_gb() / 2 if host_budget_gb is None else host_budget_gb
    if need > budget:
        raise JobError(f"{len(sources)} frames of {input_path} at {tw}x{th} need {need:.3g} GB, over the "
                       f"{budget:.3g} GB frame budget", code="too_large",
                       hint="lower --max-size or solve fewer frames (a frame stride)")
    is_video = input_path.is_file()
    if is_video:
        idx = [int(x) for x in sources if x.strip().isdigit()]
        if len(idx) != len(sources):
            raise JobError(f"{input_path} is a video but the solve names image files as frame sources",
                           code="bad_input")
        start, stop = min(idx), max(idx) + 1
        want = {v: i for i, v in enumerate(idx)}
    else:
        want = {src: i for i, src in enumerate(sources)}
        start, stop = 0, None
    out = np.empty((len(sources), th, tw, 3), np.uint8)
    found = np.zeros(len(sources), bool)
    for _, src, rgb in iter_frames(input_path, start=start, stop=stop):
        i = want.get(int(src) if is_video else src)
        if i is None:
            continue
        if rgb.shape[:2] != (height, width):
            raise JobError(f"frame {src} of {input_path} is {rgb.shape[1]}x{rgb.shape[0]}, "
                           f"the solve says {width}x{height}", code="bad_input")
        if k1 or k2:
            rgb = _undistort(rgb, K[i], k1, k2)
        if (tw, th) != (width, height):
            rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA)
        out[i] = rgb
        found[i] = True
        if progress is not None:
            progress.update(found.mean(), f"decoded {found.sum()}/{len(sources)} frames")
        if found.all():
            break
    if not found.all():
        missing = [sources[i] for i in np.nonzero(~found)[0][:3]]
        raise JobError(f"{input_path} lacks frames named in the solve: {', '.join(missing)}", code="bad_input")
    Ks = np.array(K, np.float64).copy()
    Ks[:, 0, :] *= tw / width
    Ks[:, 1, :] *= th / height
    images = torch.from_numpy(out)
    device = torch.device(device)
    on_device = device.type == "cpu" or out.nbytes <= device_budget_gb * 1e9
    if on_device:
        images = images.to(device)
    elif torch.cuda.is_available():
        images = images.pin_memory()
    return FrameStore(images=images, K=Ks, width=tw, height=th, on_device=on_device)
