"""Render a composited shot frame by frame (bpy side), resumable.

    python -m blender_addon.compositing.shot SPEC.json        (bpy as a module)
    blender -b --python-expr "..." or from the add-on: :func:`render_shot`

``SPEC.json``::

    {"cameras": "cameras.json", "product": "product.glb", "anchor": [x, y, z],
     "product_height": 0.25, "rotate_deg": 0, "frame_offset": 1,
     "render": {"percent": 50, "samples": 8, "denoise": false, "threads": 0, "device": "CPU",
                "max_bounces": 4 | null},
     "environment": {"path": "envmap.exr", "exposure": 0, "rotation_deg": 0} | null,
     "sun": {"direction": [x, y, z], "strength": 3.0, "angle_deg": 1.0} | null,
     "ground_albedo": [r, g, b] | null,
     "occlusion_margin": 0.03,
     "frames": [{"index": 0, "background": "bg/000000.png", "depth": "depth/000000.exr",
                 "output": "frames/000000.png"}, ...],
     "save_blend": "scene.blend" | null,
     "stereo": {"eye": "right", "interaxial": 0.065, "convergence": 3.0 | null} | null}

With ``stereo`` the shot renders the right eye of Blender's stereo 3D camera rig built on the
solved camera (:mod:`.stereo`); its frames' ``background`` and ``depth`` are the right eye's
(the splat render from the offset camera) and the compositor tree is the same as the mono one.

The scene is built with the add-on's own pieces: the solved camera and the shadow-catcher
ground (:mod:`blender_addon.blender.camera_import`), the product through Blender's glTF
importer (:mod:`blender_addon.blender.product`), the environment world (:mod:`.world`) and
the compositor tree (:mod:`.tree`). A frame whose output file exists is skipped; outputs are
written under a temporary name and renamed, so an interrupted run leaves no partial frame.
Prints ``composite: frame K/N video I rendered|skipped`` per frame; exits 1 with one line on
stderr on failure.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import bpy

from blender_addon.blender import camera_import, product
from blender_addon.core import cameras_json

from . import stereo as stereo_mod
from . import tree as tree_mod
from . import world as world_mod


def build_scene(spec: dict):
    """Camera, ground, product, world, render settings and compositor from ``spec``; returns
    ``(scene, nodes)`` with the tree's image nodes."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    track = cameras_json.load(spec["cameras"])
    offset = int(spec.get("frame_offset", 1))
    objs = camera_import.import_solve(scene, track, frame_offset=offset, name="Splatstage")
    if "ground" not in objs:
        camera_import.create_ground_plane((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 20.0, "Splatstage Ground",
                                          objs["collection"])
    root = insert_product(spec)
    configure_render(scene, spec.get("render", {}))
    st = spec.get("stereo")
    view_suffix = ""
    if st:
        if st.get("eye", "right") != "right":
            raise ValueError(f"stereo eye must be 'right' (the left eye is the mono shot), got {st.get('eye')!r}")
        view_suffix = stereo_mod.setup_right_eye(scene, objs["camera"], st["interaxial"], st.get("convergence"))
    env = spec.get("environment")
    if env and env.get("path"):
        world_mod.setup(scene, env["path"], float(env.get("exposure", 0.0)), float(env.get("rotation_deg", 0.0)))
    else:
        world_mod.setup_uniform(scene)
    sun = spec.get("sun")
    if sun:  # the key light found in the footage; it follows the environment's exposure and rotation
        world_mod.add_sun(scene, sun["direction"], float(sun["strength"]), float(sun.get("angle_deg", 1.0)))
    if spec.get("ground_albedo"):
        world_mod.ground_material(next(o for o in scene.objects if o.get("splatstage_ground")),
                                  spec["ground_albedo"])
    first = spec["frames"][0]
    bg = tree_mod.data_image(first["background"], "Splatstage Footage", non_color=False)
    dz = tree_mod.data_image(first["depth"], "Splatstage Splat Depth", non_color=True)
    nodes = tree_mod.build(scene, bg, dz, float(spec.get("occlusion_margin", 0.03)))
    nodes["product"] = root
    nodes["view_suffix"] = view_suffix
    return scene, nodes


def insert_product(spec: dict):
    """The product standing on the ground at ``spec["anchor"]``: scaled to ``product_height``
    metres tall, or at the model's own size (glTF units are metres) when that is null."""
    height = spec.get("product_height")
    try:
        root = product.insert_product(bpy.context, spec["product"], dimension=float(height or 1.0),
                                      axis="HEIGHT", rotation_z=math.radians(float(spec.get("rotate_deg", 0.0))),
                                      location=tuple(spec["anchor"]))
    except product.ProductError as exc:
        raise RuntimeError(str(exc)) from None
    if not height:
        root.scale = (1.0, 1.0, 1.0)
        bpy.context.view_layer.update()
    return root


def configure_render(scene, r: dict) -> None:
    """Cycles with a transparent film, Z pass, Standard view transform (footage pixels pass
    through unchanged), 8-bit RGB PNG output, no dithering; persistent render data (the scene
    is synced once for all frames); ``max_bounces`` caps every Cycles bounce count."""
    scene.render.engine = "CYCLES"
    scene.render.use_persistent_data = True
    cyc = scene.cycles
    cyc.samples = int(r.get("samples", 64))
    if r.get("max_bounces") is not None:
        n = int(r["max_bounces"])
        for key in ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces",
                    "volume_bounces", "transparent_max_bounces"):
            setattr(cyc, key, min(getattr(cyc, key), n))
    cyc.use_denoising = bool(r.get("denoise", False))
    if hasattr(cyc, "use_adaptive_sampling"):
        cyc.use_adaptive_sampling = True
    cyc.device = "GPU" if str(r.get("device", "CPU")).upper() in ("CUDA", "OPTIX", "HIP", "ONEAPI", "GPU") else "CPU"
    if cyc.device == "GPU":
        prefs = bpy.context.preferences.addons["cycles"].preferences
        kind = str(r.get("device")).upper()
        prefs.compute_device_type = "CUDA" if kind == "GPU" else kind
        prefs.get_devices()
        for d in prefs.devices:
            d.use = d.type != "CPU"
    threads = int(r.get("threads", 0))
    scene.render.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        scene.render.threads = threads
    scene.render.film_transparent = True
    scene.render.resolution_percentage = int(r.get("percent", 100))
    scene.render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"


def render_frames(scene, nodes: dict, frames: list[dict], frame_offset: int = 1, log=print) -> dict:
    """Render every frame whose ``output`` is missing; returns counts and seconds. A stereo
    view's image is written with the view's suffix (``nodes["view_suffix"]``) and renamed."""
    done = skipped = 0
    t0 = time.monotonic()
    n = len(frames)
    for k, fr in enumerate(frames, 1):
        out = Path(fr["output"])
        if out.exists():
            skipped += 1
            log(f"composite: frame {k}/{n} video {fr['index']} skipped", flush=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        scene.frame_set(frame_offset + int(fr["index"]))
        tree_mod.swap_file(nodes["background"].image, fr["background"])
        tree_mod.swap_file(nodes["depth"].image, fr["depth"])
        tmp = out.with_name(f".{out.stem}.partial{os.getpid()}.png")
        scene.render.filepath = str(tmp)
        bpy.ops.render.render(write_still=True)
        suffix = nodes.get("view_suffix", "")
        if suffix:
            written = tmp.with_name(f"{tmp.stem}{suffix}{tmp.suffix}")
            if written.exists():
                os.replace(written, tmp)
        if not tmp.exists():
            raise RuntimeError(f"Blender wrote no image for video frame {fr['index']}")
        os.replace(tmp, out)
        done += 1
        log(f"composite: frame {k}/{n} video {fr['index']} rendered", flush=True)
    return {"rendered": done, "skipped": skipped, "seconds": time.monotonic() - t0}


def render_shot(spec: dict) -> dict:
    """Build the scene of ``spec`` and render its missing frames; returns the counts."""
    scene, nodes = build_scene(spec)
    if spec.get("save_blend"):
        bpy.ops.wm.save_as_mainfile(filepath=str(spec["save_blend"]), copy=True)
    return render_frames(scene, nodes, spec["frames"], int(spec.get("frame_offset", 1)))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m blender_addon.compositing.shot SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(argv[0]).read_text())
        result = render_shot(spec)
    except Exception as exc:  # noqa: BLE001 - one line for the caller
        print(f"composite: error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr, flush=True)
        return 1
    print("composite: result " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
