"""Parameters of the backend jobs the add-on submits (``composite``, ``reconstruct``, ``stereo``).

Each builder validates what the artist set and returns the JSON ``params`` dict the job module
expects (the same keys ``splatstage <kind>`` sends), or raises :class:`ParamError` with one line
naming the bad input. Nothing here imports ``bpy``: the operators, ``batch.py`` and the tests
call these functions directly.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from ..vendor import module

glb_check = module("glb_check")

DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("default", "mcmc")
LAYOUTS = ("sbs", "half-sbs", "tab", "anaglyph")
METHODS = ("auto", "scene", "warp")


class ParamError(ValueError):
    """Bad input for a job; the message is one line and names the input."""


def _finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParamError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise ParamError(f"{name} must be a finite number, got {value!r}")
    return v


def _count(value, name: str, lo: int, hi: int = 1_000_000_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ParamError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def parse_pixel(text: str) -> list[float]:
    """``"U,V"`` -> ``[u, v]`` (pixels, origin at the top-left corner of the image)."""
    parts = str(text).split(",")
    if len(parts) != 2:
        raise ParamError(f"pixel must be U,V (two numbers), got {text!r}")
    u, v = (_finite(p.strip(), "pixel") for p in parts)
    if u < 0 or v < 0:
        raise ParamError(f"pixel must not be negative, got {text!r}")
    return [u, v]


def footage_path(path: str | Path | None) -> str:
    """The footage as an absolute path: a video file or an image folder that exists."""
    if not path:
        raise ParamError("no footage loaded (Footage panel: Load Footage)")
    p = Path(path).expanduser().resolve()
    if not (p.is_file() or p.is_dir()):
        raise ParamError(f"{path}: footage not found")
    return str(p)


def product_path(path: str | Path | None, supported_extensions: Iterable[str] | None = None) -> str:
    """The product GLB as an absolute path, checked with :func:`glb_check.inspect` (glTF
    extensions are checked only when ``supported_extensions`` is given)."""
    if not path:
        raise ParamError("no product set (Product panel: Product)")
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ParamError(f"{path}: product file not found")
    try:
        glb_check.inspect(p, supported_extensions if supported_extensions is not None else ())
    except glb_check.GlbError as exc:
        if not (exc.code == "extension" and supported_extensions is None):
            raise ParamError(str(exc)) from None
    return str(p)


def output_path(path: str | Path | None, suffix: str = ".mp4", what: str = "output") -> Path:
    """Where a job's video goes: an absolute ``suffix`` file path that is not a folder."""
    if not path:
        raise ParamError(f"no {what} path set")
    p = Path(path).expanduser()
    if p.suffix.lower() != suffix:
        raise ParamError(f"{path}: {what} must be a {suffix} file")
    p = p.resolve()
    if p.is_dir():
        raise ParamError(f"{path}: {what} is a folder, not a {suffix} file")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ParamError(f"{path}: {parent} is not a folder")
            break
    return p


def solve_folder(path: str | Path | None) -> str:
    """A camera-solve folder that holds cameras.json, as an absolute path."""
    if not path:
        raise ParamError("no camera solve (Camera Solve panel: Solve Cameras)")
    p = Path(path).expanduser().resolve()
    if not (p / "cameras.json").is_file():
        raise ParamError(f"{path}: no cameras.json in the solve folder (Camera Solve panel: Solve Cameras)")
    return str(p)


def reconstruction_folder(path: str | Path | None) -> str:
    """A reconstruction folder that holds splats.ply, as an absolute path."""
    p = Path(path or "").expanduser().resolve()
    if not path or not (p / "splats.ply").is_file():
        raise ParamError(f"{path or '(none)'}: no splats.ply in the reconstruction folder "
                         "(Reconstruction panel: Reconstruct)")
    return str(p)


def _device(device: str) -> str:
    if device not in DEVICES:
        raise ParamError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return device


def composite_params(video, product, *, at_pixel=None, at_frame: int = 0, product_height: float | None = None,
                     rotate_deg: float = 0.0, preview: bool = False, steps: int | None = None,
                     device: str = "auto", solve_dir=None, reconstruction_dir=None, max_frames: int | None = None,
                     stereo: str | None = None, interaxial: float | None = None, convergence: float | None = None,
                     supported_extensions: Iterable[str] | None = None, camera_path=None,
                     exposure: float = 0.0, env_rotation_deg: float = 0.0) -> dict:
    """Params of the ``composite`` job. ``at_pixel`` None: the job's default anchor (centre of
    the lower third of frame ``at_frame``); ``product_height`` None: the model's own size;
    ``steps`` None: the job's default; ``solve_dir``/``reconstruction_dir``: reuse them.
    ``stereo``: a stereo layout makes a stereo composite (``interaxial`` in metres, default the
    job's; ``convergence`` in metres, default the product's distance). ``camera_path``: a
    camera_path.json / cameras.json to render along instead of the footage's cameras.
    ``exposure`` (EV) and ``env_rotation_deg``: the environment light rendered from the splats."""
    params = {"video": footage_path(video), "product": product_path(product, supported_extensions)}
    if at_pixel is not None:
        if isinstance(at_pixel, str):
            at_pixel = parse_pixel(at_pixel)
        if len(at_pixel) != 2:
            raise ParamError(f"pixel must be [U, V], got {at_pixel!r}")
        at_pixel = [_finite(x, "pixel") for x in at_pixel]
        if min(at_pixel) < 0:
            raise ParamError(f"pixel must not be negative, got {at_pixel}")
    params["at_pixel"] = at_pixel
    params["at_frame"] = _count(at_frame, "frame", 0)
    if product_height is not None:
        product_height = _finite(product_height, "product height")
        if product_height <= 0:
            raise ParamError(f"product height must be positive (metres), got {product_height}")
    params["product_height"] = product_height
    params["rotate"] = _finite(rotate_deg, "rotation")
    params["exposure"] = _finite(exposure, "light exposure")
    params["env_rotation"] = _finite(env_rotation_deg, "light rotation")
    params["preview"] = bool(preview)
    params["steps"] = None if steps is None else _count(steps, "steps", 1, 1_000_000)
    params["device"] = _device(device)
    params["solve"] = solve_folder(solve_dir) if solve_dir else None
    params["reconstruction"] = reconstruction_folder(reconstruction_dir) if reconstruction_dir else None
    params["max_frames"] = None if max_frames is None else _count(max_frames, "max frames", 1)
    if stereo is not None:
        if stereo not in LAYOUTS:
            raise ParamError(f"stereo layout must be one of {', '.join(LAYOUTS)}, got {stereo!r}")
        params["stereo"] = stereo
        for name, value in (("interaxial", interaxial), ("convergence", convergence)):
            if value is not None:
                value = _finite(value, name)
                if value <= 0:
                    raise ParamError(f"{name} must be positive (metres), got {value}")
                params[name] = value
    elif interaxial is not None or convergence is not None:
        raise ParamError("interaxial and convergence need a stereo layout")
    if camera_path is not None:
        if stereo is not None:
            raise ParamError("a camera path renders in mono: turn Stereo off (Render Stereo renders a path's splats "
                             "in stereo)")
        if Path(camera_path).suffix.lower() != ".json" or not Path(camera_path).is_file():
            raise ParamError(f"camera path not found (a .json file): {camera_path}")
        params["camera_path"] = str(Path(camera_path).resolve())
    return params


def reconstruct_params(solve_dir, *, video=None, steps: int = 7000, strategy: str = "default",
                       device: str = "auto", max_size: int = 1600) -> dict:
    """Params of the ``reconstruct`` job for a camera solve (``video``: the footage, needed when
    cameras.json names video frames rather than image files; ``max_size``: longest side of the
    training images in pixels)."""
    params = {"solve_dir": solve_folder(solve_dir), "steps": _count(steps, "steps", 1, 1_000_000),
              "max_size": _count(max_size, "max size", 16, 16384)}
    if not (Path(params["solve_dir"]) / "points.ply").is_file():
        raise ParamError(f"{solve_dir}: no points.ply in the solve folder (the splats start from its points)")
    if strategy not in STRATEGIES:
        raise ParamError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    params["strategy"] = strategy
    if _device(device) != "auto":
        params["device"] = device
    if video:
        params["input"] = footage_path(video)
    return params


def stereo_params(video, *, interaxial: float = 0.065, convergence: float | None = None, layout: str = "sbs",
                  method: str = "auto", debug_grid: bool = False, reconstruction_dir=None, cameras=None,
                  max_frames: int | None = None) -> dict:
    """Params of the ``stereo`` job. ``convergence`` None: the job's default (median depth of
    frame 0); ``reconstruction_dir``: splats for scene stereo (``method`` scene or auto)."""
    params = {"input": footage_path(video)}
    ia = _finite(interaxial, "interaxial")
    if not 0 < ia <= 10:
        raise ParamError(f"interaxial must be in (0, 10] metres, got {ia}")
    params["interaxial"] = ia
    if convergence is not None:
        convergence = _finite(convergence, "convergence")
        if convergence <= 0:
            raise ParamError(f"convergence distance must be positive (metres), got {convergence}")
    params["convergence"] = convergence
    if layout not in LAYOUTS:
        raise ParamError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if method not in METHODS:
        raise ParamError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    params.update(layout=layout, method=method, debug_grid=bool(debug_grid))
    params["reconstruction"] = reconstruction_folder(reconstruction_dir) if reconstruction_dir else None
    if method == "scene" and params["reconstruction"] is None:
        raise ParamError("scene stereo needs a reconstruction (Reconstruction panel: Reconstruct)")
    if cameras:
        c = Path(cameras).expanduser().resolve()
        if not c.is_file():
            raise ParamError(f"{cameras}: cameras.json not found")
        params["cameras"] = str(c)
    else:
        params["cameras"] = None
    params["max_frames"] = None if max_frames is None else _count(max_frames, "max frames", 1)
    return params
