"""Input checks of the main job: the footage and the product GLB, before any work starts."""
from __future__ import annotations

from pathlib import Path

from backend.progress import JobError
from shared_protocol import glb_check

#: glTF extensions every supported Blender importer decodes (Draco depends on a library and is
#: checked again inside Blender, where the importer reports what it can decode).
IMPORTER_EXTENSIONS = (
    "KHR_materials_pbrSpecularGlossiness", "KHR_lights_punctual", "KHR_materials_unlit",
    "KHR_texture_transform", "KHR_materials_clearcoat", "KHR_mesh_quantization", "EXT_mesh_gpu_instancing",
    "KHR_draco_mesh_compression", "KHR_materials_variants", "KHR_materials_emissive_strength",
    "KHR_materials_transmission", "KHR_materials_specular", "KHR_materials_sheen", "KHR_materials_ior",
    "KHR_materials_volume",
)


def check_product(path: str | Path) -> list[str]:
    """Validate the product GLB; returns its warnings or raises JobError (one line naming it)."""
    try:
        info = glb_check.inspect(Path(path), IMPORTER_EXTENSIONS)
    except glb_check.GlbError as exc:
        raise JobError(f"composite: product {exc}", "bad_input") from None
    return list(info.warnings)


def check_video(path: str | Path):
    """Probe the footage; returns :class:`backend.media.video.VideoInfo` or raises JobError."""
    from backend.media.video import probe

    try:
        return probe(path)
    except JobError as exc:
        raise JobError(f"composite: {exc.message}", exc.code) from None
