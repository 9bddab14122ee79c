"""The main job: footage + product GLB -> composited H.264 video.

Stages: check inputs -> camera solve -> splat reconstruction -> placement (ground plane under
pixel (U, V) of frame N) -> per-frame inputs (footage at render size, splat depth) ->
environment map from the splats at the product -> Blender render + compositor (subprocess)
-> encode at the footage's fps with its audio. With ``stereo`` (:mod:`.stereo`) the mono
composite is the left eye; the right eye (splat render from the offset camera, product from
Blender's stereo rig) is rendered after it and the two are packed in the chosen layout.

Everything expensive is kept in a work folder (default: the project cache, keyed by the
footage and the settings): the solve, the splats and every rendered frame. A re-run skips
what exists, so an interrupted job resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.pipelines.poses.scale import ScaleRequest, summary_lines
from backend.progress import JobError, Progress

from . import placement as placement_mod
from . import stereo as stereo_mod
from .blender import run_shot
from .envmap import render_envmap
from .inputs import check_product, check_video
from .layers import write_backgrounds, write_depths, write_path_layers
from .settings import CompositeSettings
from .stereo import StereoOptions


@dataclass
class CompositeRequest:
    """What to composite and where (see ``splatstage composite --help``)."""

    video: Path
    product: Path
    settings: CompositeSettings
    at_pixel: tuple[float, float] | None = None
    at_frame: int = 0
    product_height: float | None = None
    rotate_deg: float = 0.0
    solve_dir: Path | None = None
    reconstruction: Path | None = None
    work_dir: Path | None = None
    max_frames: int | None = None
    stereo: StereoOptions | None = None
    camera_path: Path | None = None
    scale: ScaleRequest | None = None
    summary: dict = field(default_factory=dict)


def _file_key(path: Path) -> list:
    st = Path(path).stat()
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_work_dir(video: Path) -> Path:
    from backend.pipelines.reconstruct import cache_dir

    return cache_dir() / "composite" / _hash(_file_key(video))


def _stage_dir(final: Path, build) -> Path:
    """Build a folder with ``build(tmp)`` and rename it to ``final`` (kept if it exists)."""
    if final.is_dir():
        return final
    tmp = final.with_name(f".{final.name}.partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def solve_cameras(video: Path, work: Path, progress: Progress) -> Path:
    """The camera solve of the footage (cached in ``work/solve``)."""
    from backend.pipelines.poses.outputs import write_outputs
    from backend.pipelines.poses.pipeline import SolveOptions, solve

    def build(tmp: Path) -> None:
        from backend.pipelines.poses.scale import automatic_metric

        sol = solve(str(video), SolveOptions(), progress)
        automatic_metric(sol, video, progress=progress)  # the default guess without a metric model
        write_outputs(sol, tmp)

    return _stage_dir(work / "solve", build)


def train_config(s: CompositeSettings):
    """The reconstruction's TrainConfig for these settings (every frame trains)."""
    from backend.pipelines.reconstruct import TrainConfig

    sh = 1 if s.preview else 3
    return TrainConfig(steps=s.steps, sh_degree=sh, sh_degree_interval=max(1, min(1000, s.steps // (2 * (sh + 1)))),
                       holdout_every=0, eval_every=max(1, min(500, s.steps // 5)),
                       checkpoint_every=1000, cpu_threads=s.threads or None)


def reconstruct_splats(solve_dir: Path, video: Path, work: Path, s: CompositeSettings, progress: Progress) -> Path:
    """Splats for the solve (cached in ``work/splats-<steps>``); every frame trains."""
    from backend.pipelines.reconstruct import reconstruct

    cfg = train_config(s)
    sh = cfg.sh_degree
    device = "cuda" if s.device.startswith("cuda") else "cpu"

    def build(tmp: Path) -> None:
        reconstruct(solve_dir, tmp, cfg, device=device, input_path=video,
                    max_size=s.train_max_size, progress=progress)

    return _stage_dir(work / f"splats-{s.steps}-sh{sh}-{s.train_max_size}px-{cfg.fingerprint()[:8]}", build)


def _place(doc: dict, req: CompositeRequest) -> tuple[np.ndarray, tuple[float, float]]:
    u, v = req.at_pixel if req.at_pixel is not None else placement_mod.default_pixel(doc["width"], doc["height"])
    try:
        return placement_mod.anchor_from_pixel(doc, float(u), float(v), int(req.at_frame)), (float(u), float(v))
    except placement_mod.PlacementError as exc:
        raise JobError(f"composite: cannot place the product: {exc}", "bad_params") from None


def composite(req: CompositeRequest, out_path: Path, progress: Progress | None = None) -> dict:
    """Run the main job; writes the video to ``out_path`` and returns the summary."""
    from backend.media.encode import VideoWriter
    from shared_protocol import camera_file

    progress = progress or Progress()
    s = req.settings
    times: dict[str, float] = {}
    t_all = time.monotonic()

    progress.stage("check", "checking the footage and the product")
    if req.stereo is not None:
        req.stereo.check()
        if req.camera_path is not None:
            raise JobError("composite: --stereo and --camera-path together are not supported; render the path "
                           "in mono, or its splat-only stereo with `splatstage stereo PATH.json`", "bad_params")
    path_cams = None
    if req.camera_path is not None:
        from backend.pipelines.render.camera_paths import load_path

        path_cams = load_path(req.camera_path)
    info = check_video(req.video)
    warnings = check_product(req.product)
    work = Path(req.work_dir) if req.work_dir else default_work_dir(req.video)
    work.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    solve_dir = Path(req.solve_dir) if req.solve_dir else solve_cameras(req.video, work, progress)
    base_solve, (solve_dir, scale_factor) = solve_dir, _scaled_solve(solve_dir, req.scale, work)
    times["solve"] = time.monotonic() - t
    cameras_path = solve_dir / "cameras.json"
    try:
        doc = camera_file.read(cameras_path)
    except camera_file.CameraFileError as exc:
        raise JobError(f"composite: {exc}", "bad_input") from None

    progress.stage("place", "placing the product")
    anchor, pixel = _place(doc, req)
    frames_idx, track_px = placement_mod.anchor_track(doc, anchor)

    t = time.monotonic()
    splats_dir = Path(req.reconstruction) if req.reconstruction else \
        reconstruct_splats(base_solve, req.video, work, s, progress)
    splats_path = splats_dir / "splats.ply"
    if not splats_path.is_file():
        raise JobError(f"composite: no splats.ply in {splats_dir}", "bad_input")
    if scale_factor != 1.0:  # splats trained in the solve's old scale
        splats_path = _scaled_splats(splats_path, scale_factor, doc, work)
    times["reconstruct"] = time.monotonic() - t

    view_doc, view_cameras = doc, cameras_path
    if path_cams is not None:  # a novel camera path: the splat render is the background
        from backend.pipelines.render.camera_paths import cameras_document

        view_doc = cameras_document(path_cams)
        view_cameras = work / f"path-{_hash(view_doc)}" / "cameras.json"
        if not view_cameras.is_file():
            view_cameras.parent.mkdir(parents=True, exist_ok=True)
            camera_file.write(view_cameras, view_doc)
    size = s.render_size(int(view_doc["width"]), int(view_doc["height"]))
    shot_key = _hash({"product": _file_key(req.product), "anchor": anchor.round(9).tolist(),
                      "height": req.product_height, "rotate": req.rotate_deg, "size": size,
                      "samples": s.samples, "bounces": s.max_bounces, "denoise": s.denoise,
                      "env": [s.env_face, s.env_exposure, s.env_rotation_deg],
                      "light": [s.env_linear, s.key_light],
                      "margin": s.occlusion_margin, "splats": _file_key(splats_path),
                      "cameras": _file_key(view_cameras)})
    shot = work / f"shot-{shot_key}"
    shot.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    device = "cuda" if s.device.startswith("cuda") else "cpu"
    if path_cams is not None:
        n_path = len(path_cams.focal_px)
        total = n_path if not req.max_frames else min(n_path, int(req.max_frames))
        progress.stage("layers", f"splat background and depth along the camera path at {size[0]}x{size[1]}")
        backgrounds, depths = write_path_layers(splats_path, view_cameras, shot, size, device=device,
                                                progress=progress, total=total)
    else:
        total = info.frame_count if not req.max_frames else min(info.frame_count, int(req.max_frames))
        progress.stage("layers", f"footage and splat depth at {size[0]}x{size[1]}")
        backgrounds = write_backgrounds(req.video, shot / "background", size, progress, total)[:total]
        total = len(backgrounds)  # the decoder's count rules when the container's header was off
        depths = write_depths(splats_path, cameras_path, shot / "depth", size, device=device, progress=progress,
                              total=total)
    times["layers"] = time.monotonic() - t

    t = time.monotonic()
    progress.stage("environment", "environment map from the splats")
    height_guess = req.product_height or 0.25
    env_at = anchor + placement_mod.ground_of(doc)[1] * (0.5 * height_guess)
    env_path = shot / "envmap.exr"
    if not env_path.exists():
        render_envmap(splats_path, env_at, env_path, face=s.env_face,
                      device="cuda" if s.device.startswith("cuda") else "cpu", linear=s.env_linear)
    light = _scene_light(splats_path, doc, anchor, env_path, shot / "light.json", s.key_light)
    times["environment"] = time.monotonic() - t

    frames = [{"index": i, "background": str(backgrounds[i]), "depth": str(depths[i]),
               "output": str(shot / "frames" / f"{i:06d}.png")} for i in range(total) if i in depths]
    spec = {"cameras": str(view_cameras), "product": str(Path(req.product).resolve()), "anchor": anchor.tolist(),
            "product_height": req.product_height, "rotate_deg": float(req.rotate_deg), "frame_offset": 1,
            "render": {"percent": s.percent(int(view_doc["width"]), int(view_doc["height"])), "samples": s.samples,
                       "denoise": s.denoise, "threads": s.threads, "max_bounces": s.max_bounces,
                       "device": "CUDA" if s.device.startswith("cuda") else "CPU"},
            "environment": {"path": str(env_path), "exposure": s.env_exposure, "rotation_deg": s.env_rotation_deg},
            "sun": light["sun"], "ground_albedo": light["ground_albedo"] if s.env_linear else None,
            "occlusion_margin": s.occlusion_margin, "frames": frames}
    t = time.monotonic()
    progress.stage("render", f"rendering {len(frames)} frames with Blender")
    missing = [f for f in frames if not Path(f["output"]).exists()]
    counts = run_shot(spec, shot / "spec.json", progress) if missing else {"rendered": 0, "skipped": len(frames)}
    times["render"] = time.monotonic() - t

    right_frames, stereo_summary = {}, {}
    if req.stereo is not None:
        t = time.monotonic()
        right_frames, stereo_summary = _right_eye(req, doc, anchor, splats_path, cameras_path, shot, spec, size,
                                                  backgrounds, progress)
        times["right_eye"] = time.monotonic() - t

    t = time.monotonic()
    progress.stage("encode", "encoding H.264")
    import cv2

    fps = info.fps if info.fps > 0 else float(doc.get("fps") or 24.0)
    audio = None if info.is_image_folder else req.video
    if path_cams is not None:
        fps, audio = path_cams.fps, None
    with VideoWriter(out_path, fps, audio_from=audio, crf=s.crf) as writer:
        for i in range(total):
            src = shot / "frames" / f"{i:06d}.png"
            img = cv2.imread(str(src if i in depths else backgrounds[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise JobError(f"composite: frame {i} is missing from {shot}", "render_failed")
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            if req.stereo is not None:
                rgb = stereo_mod.pack(rgb, _read_rgb(right_frames.get(i), rgb, i), req.stereo)
            writer.write(rgb)
    times["encode"] = time.monotonic() - t

    rendered = int(counts.get("rendered", 0))
    summary = {
        "mode": "preview (reduced settings)" if s.preview else "full",
        "frames": total, "fps": round(fps, 4), "render_size": f"{size[0]}x{size[1]}",
        "samples": s.samples, "steps": s.steps, "anchor_world": [round(float(a), 5) for a in anchor],
        "anchor_pixel": list(pixel), "anchor_frame": int(req.at_frame),
        "frames_rendered": rendered, "frames_skipped": int(counts.get("skipped", 0)),
        "frames_without_camera": total - len(frames), "audio": bool(writer.audio_codec),
        "render_seconds_per_frame": round(float(counts.get("seconds", 0.0)) / rendered, 3) if rendered else None,
        **{f"seconds_{k}": round(v, 2) for k, v in times.items()},
        "total_seconds": round(time.monotonic() - t_all, 2),
        "work_dir": str(work), "product_warnings": warnings, **stereo_summary,
        "key_light": None if light["sun"] is None else {
            "elevation_deg": round(light["sun"]["found"]["elevation_deg"], 1),
            "azimuth_deg": round(light["sun"]["found"]["azimuth_deg"], 1),
            "shadow_ratio": round(light["sun"]["found"]["ratio"], 3), "strength": round(light["sun"]["strength"], 4)},
        **summary_lines(doc.get("stats") or {}),
    }
    if path_cams is not None:
        summary["camera_path"] = str(req.camera_path)
    req.summary = summary
    if path_cams is not None:
        frames_idx, track_px = placement_mod.anchor_track(view_doc, anchor)
    summary["anchor_track"] = {"frames": frames_idx.tolist(), "pixels": track_px.round(4).tolist()}
    return summary


def _scaled_solve(solve_dir: Path, scale: ScaleRequest | None, work: Path) -> tuple[Path, float]:
    """The solve re-scaled by ``scale`` (cached in the work folder) and the factor applied;
    ``(solve_dir, 1.0)`` without a scale request."""
    from backend.pipelines.poses.scale import rescale_solve_dir

    if scale is None:
        return solve_dir, 1.0
    final = work / f"solve-scaled-{_hash({'solve': _file_key(solve_dir / 'cameras.json'), 'scale': scale.key()})}"

    def build(tmp: Path) -> None:
        _, factor, _ = rescale_solve_dir(solve_dir, tmp, scale, "composite")
        (tmp / "scale_factor.json").write_text(json.dumps({"factor": factor}))

    _stage_dir(final, build)
    return final, float(json.loads((final / "scale_factor.json").read_text())["factor"])


def _scaled_splats(splats: Path, factor: float, doc: dict, work: Path) -> Path:
    """``splats`` scaled by ``factor`` about the ground's point (cached in the work folder)."""
    from backend.pipelines.poses.scale import rescale_splats

    pivot, _ = placement_mod.ground_of(doc)
    final = work / f"splats-scaled-{_hash({'splats': _file_key(splats), 'factor': factor, 'pivot': pivot.tolist()})}"
    _stage_dir(final, lambda tmp: rescale_splats(splats, tmp / "splats.ply", factor, pivot))
    return final / "splats.ply"


def _scene_light(splats_path: Path, doc: dict, anchor: np.ndarray, env_path: Path, path: Path,
                 find_sun: bool) -> dict:
    """The sun found from the footage's shadows and the ground's albedo (kept in ``path``)."""
    from .sunlight import scene_light

    if path.is_file():
        return json.loads(path.read_text())
    light = scene_light(splats_path, doc, anchor, env_path, find_sun=find_sun)
    tmp = path.with_name(f".{path.name}.partial{os.getpid()}")
    tmp.write_text(json.dumps(light, indent=1))
    os.replace(tmp, path)
    return light


def _read_rgb(path: Path | None, fallback: np.ndarray, index: int) -> np.ndarray:
    """An RGB frame from ``path``; ``fallback`` (the left eye: zero disparity) when None."""
    import cv2

    if path is None:
        return fallback
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise JobError(f"composite: right-eye frame {index} is missing: {path}", "render_failed")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _right_eye(req: CompositeRequest, doc: dict, anchor: np.ndarray, splats_path: Path, cameras_path: Path,
               shot: Path, mono_spec: dict, size: tuple[int, int], backgrounds: list[Path],
               progress: Progress) -> tuple[dict[int, Path], dict]:
    """Render the right eye of a stereo composite (resumable); returns ``{video frame: right
    eye frame}`` and the stereo part of the summary."""
    st = req.stereo
    s = req.settings
    conv = float(st.convergence) if st.convergence is not None else \
        stereo_mod.anchor_depth(doc, anchor, int(req.at_frame))
    folder = shot / f"right-{_hash({'interaxial': round(st.interaxial, 9), 'convergence': round(conv, 9)})}"
    progress.stage("right_layers", f"right-eye splat render at {size[0]}x{size[1]}")
    layers = stereo_mod.write_right_layers(splats_path, cameras_path, folder, size, backgrounds, st.interaxial, conv,
                                           device="cuda" if s.device.startswith("cuda") else "cpu",
                                           progress=progress)
    spec = stereo_mod.right_spec(mono_spec, folder, layers, st.interaxial, conv)
    progress.stage("right_render", f"rendering {len(spec['frames'])} right-eye frames with Blender")
    missing = [f for f in spec["frames"] if not Path(f["output"]).exists()]
    counts = run_shot(spec, folder / "spec.json", progress) if missing else {"rendered": 0,
                                                                           "skipped": len(spec["frames"])}
    frames = {int(f["index"]): Path(f["output"]) for f in spec["frames"]}
    return frames, {"stereo_layout": st.layout, "stereo_interaxial": st.interaxial,
                    "stereo_convergence": round(conv, 6),
                    "stereo_convergence_from": "given" if st.convergence is not None
                    else f"anchor depth, frame {req.at_frame}",
                    "right_frames_rendered": int(counts.get("rendered", 0)),
                    "right_frames_skipped": int(counts.get("skipped", 0)), "right_eye_dir": str(folder)}
