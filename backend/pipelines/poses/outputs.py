"""Write a solve's files: cameras.json, points.ply, colmap/ (text model), transforms.json."""
from __future__ import annotations

from pathlib import Path

from shared_protocol import camera_file

from .colmap_text import export_colmap_text
from .nerfstudio import export_transforms
from .points_ply import write_points
from .solution import PoseSolution


def write_outputs(sol: PoseSolution, out_dir: str | Path) -> list[str]:
    """Write every output into ``out_dir``; returns the relative names written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    camera_file.write(out / "cameras.json", sol.to_document())
    write_points(out / "points.ply", sol.points_xyz, sol.points_rgb, sol.track_length)
    colmap = export_colmap_text(sol, out / "colmap")
    export_transforms(sol, out / "transforms.json", "points.ply")
    return ["cameras.json", "points.ply"] + [str(p.relative_to(out)) for p in colmap] + ["transforms.json"]
