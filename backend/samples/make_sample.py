"""Generate the project's own sample assets for ``make demo``: a short hand-held clip of the
synthetic textured scene (rendered with Blender through :func:`backend.synthetic.make_clip`)
and a product model (a bottle built with trimesh, written as GLB).

    python -m backend.samples.make_sample [--out backend/samples] [--only clip|product]

Writes ``sample_clip.mp4``, ``sample_truth.json`` (the clip's true cameras, cameras.json
format) and ``product.glb``; each file appears atomically. Nothing third-party is used.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from shared_protocol.atomic import atomic_write_bytes

HERE = Path(__file__).resolve().parent

#: The sample clip: what :func:`make_clip` renders (tests check the committed file against it).
CLIP = dict(path="handheld", width=480, height=270, frames=48, fps=24.0, samples=16, denoise=True,
            seed=7, crf=23)

#: The product: a bottle standing on its base, +Y up as glTF requires (Blender's importer turns
#: it +Z up), base centre at the origin.
PRODUCT_HEIGHT_M = 0.25
BOTTLE_RADIUS_M = 0.036
SECTIONS = 48

# (height fraction, radius fraction) of the bottle's outline, base to mouth, and the parts
_BODY = [(0.0, 0.93), (0.012, 1.0), (0.2, 1.0)]
_LABEL = [(0.2, 1.0), (0.52, 1.0)]
_SHOULDER = [(0.52, 1.0), (0.6, 0.96), (0.68, 0.78), (0.74, 0.5), (0.78, 0.38), (0.86, 0.36)]
_CAP = [(0.86, 0.42), (1.0, 0.42)]
_MATERIALS = {
    "glass": dict(baseColorFactor=[0.09, 0.36, 0.2, 1.0], metallicFactor=0.0, roughnessFactor=0.12),
    "label": dict(baseColorFactor=[0.93, 0.9, 0.8, 1.0], metallicFactor=0.0, roughnessFactor=0.6),
    "cap": dict(baseColorFactor=[0.75, 0.1, 0.08, 1.0], metallicFactor=0.6, roughnessFactor=0.35),
}


def _lathe(profile: list[tuple[float, float]], cap_bottom: bool = False, cap_top: bool = False):
    """A surface of revolution about +Y from (height, radius) fractions, optionally closed."""
    import trimesh

    h = np.array([p[0] for p in profile]) * PRODUCT_HEIGHT_M
    r = np.array([p[1] for p in profile]) * BOTTLE_RADIUS_M
    ang = np.linspace(0.0, 2 * np.pi, SECTIONS, endpoint=False)
    rings = len(h)
    verts = np.stack([np.outer(r, np.cos(ang)), np.repeat(h[:, None], SECTIONS, 1),
                      -np.outer(r, np.sin(ang))], -1).reshape(-1, 3)
    faces = []
    for i in range(rings - 1):
        for j in range(SECTIONS):
            a, b = i * SECTIONS + j, i * SECTIONS + (j + 1) % SECTIONS
            c, d = a + SECTIONS, b + SECTIONS
            faces += [[a, b, d], [a, d, c]]
    verts = list(verts)
    for ring, closed, up in ((0, cap_bottom, False), (rings - 1, cap_top, True)):
        if not closed:
            continue
        centre = len(verts)
        verts.append([0.0, h[ring], 0.0])
        for j in range(SECTIONS):
            a, b = ring * SECTIONS + j, ring * SECTIONS + (j + 1) % SECTIONS
            faces.append([centre, b, a] if not up else [centre, a, b])
    mesh = trimesh.Trimesh(np.asarray(verts), np.asarray(faces), process=True)
    mesh.fix_normals()
    return mesh


def build_product():
    """The bottle as a trimesh Scene of three PBR-material parts (glass, label, cap)."""
    import trimesh
    from trimesh.visual.material import PBRMaterial

    parts = {
        "glass": trimesh.util.concatenate([_lathe(_BODY, cap_bottom=True), _lathe(_SHOULDER)]),
        "label": _lathe(_LABEL),
        "cap": _lathe(_CAP, cap_top=True),
    }
    # the label sits a hair outside the glass so the two never z-fight
    parts["label"].vertices[:, [0, 2]] *= 1.004
    scene = trimesh.Scene()
    for name, mesh in parts.items():
        mesh.visual = trimesh.visual.TextureVisuals(material=PBRMaterial(name=name, **_MATERIALS[name]))
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    return scene


def write_product(out: Path) -> Path:
    data = build_product().export(file_type="glb")
    return _atomic_bytes(out / "product.glb", data)


def write_clip(out: Path, threads: int = 2) -> tuple[Path, Path]:
    """Render the clip into a temporary folder, then move the mp4 and its truth into ``out``."""
    from backend.synthetic import make_clip

    with tempfile.TemporaryDirectory(prefix="sample-clip-") as tmp:
        paths = make_clip(Path(tmp) / "clip", threads=threads, **CLIP)
        truth = json.loads(paths["truth"].read_text())
        truth.pop("video", None)
        clip = _atomic_bytes(out / "sample_clip.mp4", paths["video"].read_bytes())
        cams = _atomic_bytes(out / "sample_truth.json", (json.dumps(truth, indent=1) + "\n").encode())
    return clip, cams


_atomic_bytes = atomic_write_bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: backend/samples)")
    ap.add_argument("--only", choices=["clip", "product"], help="make only one of the assets")
    ap.add_argument("--threads", type=int, default=2, help="render threads for the clip (0 = all)")
    args = ap.parse_args(argv)
    if args.only in (None, "product"):
        p = write_product(args.out)
        print(f"{p}: {p.stat().st_size / 1024:.0f} KiB")
    if args.only in (None, "clip"):
        for p in write_clip(args.out, args.threads):
            print(f"{p}: {p.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
