"""COLMAP text model (cameras.txt, images.txt, points3D.txt): export and import.

Export writes one shared RADIAL camera (f, cx, cy, k1, k2), the registered frames with their
world-to-camera poses (COLMAP/OpenCV camera axes) in the solve's Blender world, and the sparse
points (tracks are not exported). Image names are the input file names for image folders and
``frame_NNNNNN.png`` (the input frame index) for videos. Import accepts SIMPLE_PINHOLE,
PINHOLE, SIMPLE_RADIAL, RADIAL and OPENCV cameras (one shared camera; fx and fy must agree) and
returns a cameras.json document.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from shared_protocol import camera_file
from shared_protocol.camera_file import CameraFileError

from .solution import PoseSolution

CV_TO_BLENDER = np.diag([1.0, -1.0, -1.0])
FRAME_NAME = re.compile(r"^frame_(\d+)\.png$")


def image_name_for(source: str, is_video: bool) -> str:
    return f"frame_{int(source):06d}.png" if is_video else source


def source_for(name: str) -> str:
    m = FRAME_NAME.match(Path(name).name)
    return str(int(m.group(1))) if m else name


def _is_video(sol: PoseSolution) -> bool:
    return all(s.isdigit() for s in sol.sources)


def export_colmap_text(sol: PoseSolution, folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cx, cy = sol.principal_point_px
    (folder / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"1 RADIAL {sol.width} {sol.height} {sol.focal_px!r} {cx!r} {cy!r} {sol.k1!r} {sol.k2!r}\n")
    video = _is_video(sol)
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i, (m, src, reg) in enumerate(zip(sol.matrix_world, sol.sources, sol.registered)):
        if not reg:
            continue
        r_cw = (m[:3, :3] @ CV_TO_BLENDER).T
        t = -r_cw @ m[:3, 3]
        x, y, z, w = Rotation.from_matrix(r_cw).as_quat()
        lines.append(f"{i + 1} {w!r} {x!r} {y!r} {z!r} {t[0]!r} {t[1]!r} {t[2]!r} 1 "
                     f"{image_name_for(src, video)}")
        lines.append("")
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    pts = ["# 3D point list with one line of data per point:",
           "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for i, (p, c) in enumerate(zip(sol.points_xyz, sol.points_rgb)):
        pts.append(f"{i + 1} {p[0]!r} {p[1]!r} {p[2]!r} {int(c[0])} {int(c[1])} {int(c[2])} 0")
    (folder / "points3D.txt").write_text("\n".join(pts) + "\n")
    return [folder / "cameras.txt", folder / "images.txt", folder / "points3D.txt"]


def _data_lines(path: Path) -> list[str]:
    if not path.exists():
        raise CameraFileError(f"{path}: file not found")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _camera(line: str, path: Path) -> tuple[int, dict]:
    parts = line.split()
    try:
        cam_id, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
        p = [float(v) for v in parts[4:]]
    except (ValueError, IndexError):
        raise CameraFileError(f"{path}: malformed camera line {line!r}") from None
    k1 = k2 = 0.0
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = p[:3]
    elif model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = p[:4]
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = p[:5]
    elif model in ("PINHOLE", "OPENCV"):
        fx, fy, cx, cy = p[:4]
        if abs(fx - fy) > 1e-3 * fx:
            raise CameraFileError(f"{path}: camera {cam_id} has fx={fx} != fy={fy} "
                                  "(non-square pixels are not supported)")
        f = (fx + fy) / 2
        if model == "OPENCV":
            k1, k2, p1, p2 = p[4:8]
            if abs(p1) > 1e-9 or abs(p2) > 1e-9:
                raise CameraFileError(f"{path}: camera {cam_id} has tangential distortion "
                                      "(p1, p2), which radial2 cannot represent")
    else:
        raise CameraFileError(f"{path}: unsupported camera model {model}")
    return cam_id, {"width": w, "height": h, "f": f, "cx": cx, "cy": cy, "k1": k1, "k2": k2}


def import_colmap_text(folder: str | Path, fps: float = 0.0) -> dict:
    """A cameras.json document from a COLMAP text model (frames in image-name order)."""
    folder = Path(folder)
    cams = dict(_camera(ln, folder / "cameras.txt") for ln in _data_lines(folder / "cameras.txt"))
    if not cams:
        raise CameraFileError(f"{folder / 'cameras.txt'}: no cameras")
    if len({(c["width"], c["height"], round(c["f"], 6), round(c["cx"], 6), round(c["cy"], 6))
            for c in cams.values()}) > 1:
        raise CameraFileError(f"{folder / 'cameras.txt'}: several different cameras "
                              "(one shared camera is supported)")
    cam = next(iter(cams.values()))
    raw = (folder / "images.txt")
    if not raw.exists():
        raise CameraFileError(f"{raw}: file not found")
    lines = [ln for ln in raw.read_text().splitlines() if not ln.startswith("#")]
    entries = []
    for k in range(0, len(lines), 2):
        parts = lines[k].split()
        if not parts:
            continue
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(v) for v in parts[1:8])
            name = " ".join(parts[9:])
        except (ValueError, IndexError):
            raise CameraFileError(f"{raw}: malformed image line {lines[k]!r}") from None
        r_cw = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
        m = np.eye(4)
        m[:3, :3] = r_cw.T @ CV_TO_BLENDER
        m[:3, 3] = -r_cw.T @ np.array([tx, ty, tz])
        entries.append((name, m))
    if not entries:
        raise CameraFileError(f"{raw}: no images")
    entries.sort(key=lambda e: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", e[0])])
    return camera_file.make_document(
        cam["width"], cam["height"], fps, [m for _, m in entries], cam["f"], (cam["cx"], cam["cy"]),
        sources=[source_for(n) for n, _ in entries], k1=cam["k1"], k2=cam["k2"],
        stats={"imported_from": "colmap_text"})


def read_colmap_points(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Points (N x 3) and colours (N x 3 uint8) of a COLMAP text model's points3D.txt."""
    rows = [ln.split() for ln in _data_lines(Path(folder) / "points3D.txt")]
    if not rows:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    xyz = np.array([[float(v) for v in r[1:4]] for r in rows])
    rgb = np.array([[int(v) for v in r[4:7]] for r in rows], np.uint8)
    return xyz, rgb
