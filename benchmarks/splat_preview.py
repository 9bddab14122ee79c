"""Benchmark importing Gaussian splats into Blender (bpy as a module, run in this process).

    python benchmarks/splat_preview.py [--splats 1000000] [--repeat 3] [--label cpu-2core]

Writes a ``--splats`` random 3DGS PLY (SH degree 0, and degree 3 with 45 f_rest values) to a
temporary folder and times ``blender_addon.splats.importer.import_ply`` end to end (numpy
read, activation, mesh + point attributes via ``foreach_set``, preview modifier), its parts,
the import of backend payload arrays already in memory, and the first evaluation of the
geometry-nodes preview at the default display fraction. Target: import of 1,000,000 splats
< 2 s. Result: ``benchmarks/results/splat_preview-<label>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.evaluation.machine import describe  # noqa: E402


def machine_name() -> str:
    return describe()


def write_random_ply(path: Path, n: int, sh_rest: int, seed: int = 0) -> None:
    """A standard 3DGS binary PLY (x y z nx ny nz f_dc f_rest opacity scale rot) of n splats."""
    rng = np.random.default_rng(seed)
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(sh_rest)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    data = rng.normal(size=(n, len(names))).astype("<f4")
    data[:, 3:6] = 0
    data[:, names.index("scale_0"):names.index("scale_2") + 1] -= 4.0
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n" + \
        "".join(f"property float {p}\n" for p in names) + "end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splats", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--label", default="cpu-2core", help="machine label used in the result file name")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    import bpy

    from blender_addon.splats import attributes, importer, ply, preview

    def reset():
        bpy.ops.wm.read_factory_settings(use_empty=True)

    result = {"benchmark": "splat_preview", "machine": machine_name(), "blender": bpy.app.version_string,
              "splats": args.splats, "repeat": args.repeat, "cases": {},
              "targets": {"import_seconds_1M": "< 2"}, "load_average_1min_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="splat-bench-") as tmp:
        for degree, rest in ((0, 0), (3, 45)):
            path = Path(tmp) / f"splats_sh{degree}.ply"
            write_random_ply(path, args.splats, rest)
            runs = {"import_ply": [], "read": [], "activate": [], "mesh_attributes": [], "preview_modifier": [],
                    "import_payload": [], "first_preview_evaluation": []}
            for _ in range(args.repeat):
                reset()
                obj, t = timed(lambda: importer.import_ply(path))
                runs["import_ply"].append(t)
                frac = attributes.default_display_fraction(args.splats)
                _, t = timed(lambda: bpy.context.evaluated_depsgraph_get().update())
                runs["first_preview_evaluation"].append(t)
                shown = sum(1 for i in bpy.context.evaluated_depsgraph_get().object_instances if i.is_instance)
                reset()
                raw, t = timed(lambda: ply.read_ply(path))
                runs["read"].append(t)
                sp, t = timed(lambda: attributes.from_raw(raw))
                runs["activate"].append(t)
                mesh, t = timed(lambda: importer.build_mesh(sp, "bench"))
                runs["mesh_attributes"].append(t)
                o = bpy.data.objects.new("bench", mesh)
                bpy.context.scene.collection.objects.link(o)
                _, t = timed(lambda: preview.add_preview(o, display_fraction=frac))
                runs["preview_modifier"].append(t)
                reset()
                payload = {"positions": sp.positions, "colors": sp.color[:, :3], "opacity": sp.opacity,
                           "scales": sp.scale, "rotations": sp.rotation, "sh_rest": sp.sh[:, 1:]}
                _, t = timed(lambda: importer.import_payload(payload))
                runs["import_payload"].append(t)
            case = {"file_mib": path.stat().st_size / 2**20, "default_display_fraction": frac,
                    "preview_instances_evaluated": shown}
            case.update({f"{k}_seconds_median": statistics.median(v) for k, v in runs.items()})
            case.update({f"{k}_seconds_all": v for k, v in runs.items()})
            result["cases"][f"sh_degree_{degree}"] = case
            path.unlink()
            print(f"SH degree {degree}: import_ply {case['import_ply_seconds_median']:.2f} s median "
                  f"(read {case['read_seconds_median']:.2f}, activate {case['activate_seconds_median']:.2f}, "
                  f"mesh+attributes {case['mesh_attributes_seconds_median']:.2f}, "
                  f"preview {case['preview_modifier_seconds_median']:.3f}); payload "
                  f"{case['import_payload_seconds_median']:.2f} s; first preview evaluation "
                  f"({shown} instances) {case['first_preview_evaluation_seconds_median']:.2f} s", flush=True)
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    result["notes"] = ("Shared CI-class machine (other jobs may run concurrently); medians over repeats. "
                       "import_ply covers reading the PLY, activation, the mesh with all point attributes and "
                       "the preview modifier; Blender evaluates the preview lazily, timed separately.")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"splat_preview-{args.label}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
