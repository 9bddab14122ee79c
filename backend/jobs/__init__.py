"""Job kinds the server (and the CLI, in-process) can run.

Each kind names an entry point ``module:function`` with the signature
``run(params: dict, out_dir: pathlib.Path, progress: backend.progress.Progress) -> JobResult``.
Entry points are imported lazily so the server process never imports torch or pycolmap.

``path_params`` lists the parameters that hold input paths: the server confines them to its
configured roots and hashes the files they name into the result-cache key.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from backend.results import JobResult  # noqa: F401 (re-exported for the job modules and the runner)


@dataclass(frozen=True)
class JobKind:
    name: str
    entry: str
    description: str
    path_params: tuple[str, ...] = ()
    device: str = "cpu"  # "gpu" jobs share the GPU worker slots

    def load(self) -> Callable:
        module, _, func = self.entry.partition(":")
        return getattr(importlib.import_module(module), func)


KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> None:
    KINDS[kind.name] = kind


def available() -> dict[str, JobKind]:
    """The registered kinds whose entry module is importable in this installation."""
    import importlib.util

    out = {}
    for name, kind in KINDS.items():
        module = kind.entry.partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if found:
            out[name] = kind
    return out


register(JobKind("sleep", "backend.jobs.sleep:run",
                 "Sleeps with progress; a built-in kind for tests and health checks."))
register(JobKind("poses", "backend.jobs.poses:run",
                 "Camera solve: video or image folder -> cameras.json + points.ply.",
                 path_params=("input",), device="cpu"))
register(JobKind("scale", "backend.jobs.scale:run",
                 "Re-scale a camera solve (camera height, known distance or height) without solving again.",
                 path_params=("solve",), device="cpu"))
register(JobKind("reconstruct", "backend.jobs.reconstruct:run",
                 "Gaussian-splat reconstruction from a camera solve.",
                 path_params=("solve_dir", "input", "checkpoint_dir"), device="gpu"))
register(JobKind("render", "backend.jobs.render:run",
                 "Render splats (RGB, alpha, depth) for cameras.",
                 path_params=("splats", "cameras"), device="gpu"))
register(JobKind("stereo", "backend.jobs.stereo:run",
                 "Stereo video from a clip (scene stereo or depth warp).",
                 path_params=("input", "reconstruction", "depth", "cameras", "weights"), device="gpu"))
register(JobKind("composite", "backend.jobs.composite:run",
                 "Product GLB composited into footage.",
                 path_params=("video", "product", "solve", "reconstruction", "work_dir", "camera_path"),
                 device="gpu"))
register(JobKind("scene", "backend.jobs.scene:run",
                 "A splat scene from one photo (or 2-8 photos of one place).",
                 path_params=("images", "weights"), device="gpu"))
register(JobKind("product", "backend.jobs.product:run",
                 "A product (splats, mesh, turntable) from one photo.",
                 path_params=("photo", "weights"), device="gpu"))
