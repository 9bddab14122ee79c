"""Files and arrays a reconstruction hands back: PLY, .splat, metrics, holdout strip, payload."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared_protocol import camera_file

from ..splats_io import Splats, write_ply, write_splat
from .scene import Solve, viewmats_to_blender


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def splat_payload(splats: Splats) -> dict[str, np.ndarray]:
    """The "splat mesh" arrays for Blender: positions, linear RGB (DC colour), opacity (0..1),
    scales (linear), rotations (unit w,x,y,z) and the higher SH bands as stored."""
    return {
        "positions": splats.means.astype(np.float32),
        "colors": srgb_to_linear(splats.rgb()).astype(np.float32),
        "opacity": splats.alpha().astype(np.float32),
        "scales": np.exp(splats.scales).astype(np.float32),
        "rotations": splats.unit_quats().astype(np.float32),
        "sh_rest": splats.shN.astype(np.float32),
    }


def write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def write_refined_cameras(solve: Solve, viewmats: np.ndarray, path: Path) -> None:
    """A copy of the solve's cameras.json with registered frames' matrix_world refined."""
    doc = json.loads(json.dumps(solve.doc))
    mw = viewmats_to_blender(viewmats)
    for k, i in enumerate(solve.index):
        doc["frames"][i]["matrix_world"] = mw[k].tolist()
    doc.setdefault("stats", {})["refined_by"] = "reconstruct"
    camera_file.write(path, doc)


def write_outputs(out_dir: Path, splats: Splats, metrics: dict, strip: np.ndarray | None) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ply(splats, out_dir / "splats.ply")
    write_splat(splats, out_dir / "splats.splat")
    files = ["splats.ply", "splats.splat"]
    if strip is not None:
        write_png(out_dir / "holdout.png", strip)
        files.append("holdout.png")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    files.append("metrics.json")
    return files
