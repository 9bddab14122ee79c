"""Validate a GLB (binary glTF 2.0) file before anything is imported.

Catches what importers handle badly: Git LFS pointer files and HTML pages saved as .glb,
truncated or non-GLB data, invalid JSON, required extensions the importer cannot decode
(Draco without the decoder library, meshopt, KTX2/Basis textures) and non-finite vertex
positions. Errors are :class:`GlbError` with one line naming the file.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "i2", 5123: "u2", 5125: "u4", 5126: "f4"}
_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
JSON_CHUNK, BIN_CHUNK = 0x4E4F534A, 0x004E4942


class GlbError(ValueError):
    """The file cannot be imported; ``code`` says why (e.g. ``lfs_pointer``, ``extension``)."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


@dataclass
class GlbInfo:
    path: Path
    gltf: dict
    extensions_required: list[str] = field(default_factory=list)
    extensions_used: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _sniff(path: Path, head: bytes) -> None:
    text = head.lstrip()[:512].lower()
    if text.startswith(b"version https://git-lfs"):
        raise GlbError(f"{path}: is a Git LFS pointer, not the model (fetch it with 'git lfs pull')", "lfs_pointer")
    if text.startswith((b"<!doctype html", b"<html")) or (text.startswith(b"<") and b"<html" in text):
        raise GlbError(f"{path}: is an HTML page (a failed download?), not a GLB model", "html")
    if text.startswith(b"{"):
        raise GlbError(f"{path}: is JSON glTF text, not a binary .glb", "not_glb")
    raise GlbError(f"{path}: is not a GLB file (no 'glTF' header)", "not_glb")


def _accessor_values(gltf: dict, bin_chunk: bytes, index: int) -> np.ndarray | None:
    """Float values of accessor ``index`` (sparse substitutions applied); None if not float
    or stored outside the GLB's binary chunk."""
    acc = gltf["accessors"][index]
    if acc.get("componentType") != 5126:
        return None
    ncomp = _SIZES.get(acc.get("type"), 1)
    count = int(acc.get("count", 0))
    if "bufferView" in acc:
        view = gltf["bufferViews"][acc["bufferView"]]
        if view.get("buffer", 0) != 0 or "uri" in gltf.get("buffers", [{}])[view.get("buffer", 0)]:
            return None
        start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
        stride = int(view.get("byteStride", 0)) or 4 * ncomp
        need = start + stride * (count - 1) + 4 * ncomp if count else start
        if need > len(bin_chunk):
            raise ValueError(f"accessor {index} reads past the end of the binary chunk")
        vals = np.ndarray((count, ncomp), dtype="<f4", buffer=bin_chunk, offset=start,
                          strides=(stride, 4)).copy()
    else:
        vals = np.zeros((count, ncomp), dtype=np.float32)
    sparse = acc.get("sparse")
    if sparse:
        n = int(sparse["count"])
        iv = gltf["bufferViews"][sparse["indices"]["bufferView"]]
        it = _COMPONENTS[sparse["indices"]["componentType"]]
        ioff = int(iv.get("byteOffset", 0)) + int(sparse["indices"].get("byteOffset", 0))
        idx = np.frombuffer(bin_chunk, dtype="<" + it, count=n, offset=ioff)
        vv = gltf["bufferViews"][sparse["values"]["bufferView"]]
        voff = int(vv.get("byteOffset", 0)) + int(sparse["values"].get("byteOffset", 0))
        vals[idx.astype(np.int64)] = np.frombuffer(bin_chunk, dtype="<f4", count=n * ncomp, offset=voff).reshape(n, ncomp)
    return vals


def inspect(path: Path | str, supported_extensions: Iterable[str]) -> GlbInfo:
    """Check ``path`` and return its glTF JSON and warnings, or raise :class:`GlbError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GlbError(f"{path}: file not found", "missing") from None
    except OSError as exc:
        raise GlbError(f"{path}: cannot read ({exc.strerror or exc})", "missing") from None
    if len(data) < 20 or data[:4] != b"glTF":
        if not data:
            raise GlbError(f"{path}: file is empty", "not_glb")
        _sniff(path, data[:4096])
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise GlbError(f"{path}: GLB container version {version}; only glTF 2.0 is supported", "not_glb")
    if length > len(data):
        raise GlbError(f"{path}: truncated (header says {length} bytes, file has {len(data)})", "truncated")
    chunks, off = {}, 12
    while off + 8 <= length:
        clen, ctype = struct.unpack_from("<II", data, off)
        if off + 8 + clen > length:
            raise GlbError(f"{path}: truncated chunk at byte {off}", "truncated")
        chunks.setdefault(ctype, data[off + 8: off + 8 + clen])
        off += 8 + ((clen + 3) & ~3)
    if JSON_CHUNK not in chunks:
        raise GlbError(f"{path}: no JSON chunk", "not_glb")

    def _bad_constant(name):
        raise ValueError(f"JSON contains {name}")

    try:
        gltf = json.loads(chunks[JSON_CHUNK].decode("utf-8"), parse_constant=_bad_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise GlbError(f"{path}: invalid glTF JSON ({exc})", "invalid_json") from None
    if not isinstance(gltf, dict) or str(gltf.get("asset", {}).get("version", "")) != "2.0":
        raise GlbError(f"{path}: not glTF 2.0 (asset.version missing or different)", "not_glb")
    info = GlbInfo(path, gltf, list(gltf.get("extensionsRequired") or []), list(gltf.get("extensionsUsed") or []))
    supported = set(supported_extensions)
    missing = [e for e in info.extensions_required if e not in supported]
    if missing:
        raise GlbError(f"{path}: requires glTF extension {', '.join(missing)}, which this Blender cannot decode",
                       "extension")
    _check_positions(path, gltf, chunks.get(BIN_CHUNK, b""), info)
    return info


def _check_positions(path: Path, gltf: dict, bin_chunk: bytes, info: GlbInfo) -> None:
    seen_pos, seen_nrm = set(), set()
    for mi, mesh in enumerate(gltf.get("meshes") or []):
        for prim in mesh.get("primitives") or []:
            if "KHR_draco_mesh_compression" in (prim.get("extensions") or {}):
                continue  # positions live in the compressed stream; decoded by the importer
            attrs = [prim.get("attributes") or {}] + list(prim.get("targets") or [])
            for a in attrs:
                if "POSITION" in a:
                    seen_pos.add(a["POSITION"])
            if "NORMAL" in (prim.get("attributes") or {}):
                seen_nrm.add(prim["attributes"]["NORMAL"])
    try:
        for idx in sorted(seen_pos):
            acc = gltf["accessors"][idx]
            for key in ("min", "max"):
                if key in acc and not np.all(np.isfinite(np.asarray(acc[key], dtype=np.float64))):
                    raise GlbError(f"{path}: non-finite vertex positions (accessor {idx} {key})", "non_finite")
            vals = _accessor_values(gltf, bin_chunk, idx)
            if vals is not None and not np.all(np.isfinite(vals)):
                bad = int(np.count_nonzero(~np.all(np.isfinite(vals), axis=1)))
                raise GlbError(f"{path}: {bad} non-finite vertex positions (accessor {idx})", "non_finite")
        zero = 0
        for idx in sorted(seen_nrm):
            vals = _accessor_values(gltf, bin_chunk, idx)
            if vals is not None:
                zero += int(np.count_nonzero(~(np.linalg.norm(vals, axis=1) > 1e-6)))
        if zero:
            info.warnings.append(f"{zero} zero-length or non-finite normals; Blender recomputes them")
    except GlbError:
        raise
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise GlbError(f"{path}: broken accessor or buffer view ({exc})", "invalid") from None
