"""Read a point cloud (vertex positions and optional colours) from a PLY file with numpy.

Supports binary little/big endian and ASCII PLY with scalar vertex properties; the vertex
element must come first (as written by plyfile, Open3D, COLMAP and the camera solve).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


class PlyError(ValueError):
    """The PLY file is missing, malformed or has no x/y/z vertex properties."""


def read_points(path: Path | str) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (positions float32 (N, 3), colours uint8 (N, 3) or None)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise PlyError(f"{path}: not a PLY file")
    nl = raw.find(b"\n", end)
    header = raw[:end].decode("ascii", "replace").splitlines()
    body = raw[nl + 1:]
    fmt, count, props, in_vertex, seen_vertex = None, 0, [], False, False
    for line in header:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            in_vertex = tok[1] == "vertex"
            if in_vertex:
                if seen_vertex or props:
                    raise PlyError(f"{path}: the vertex element must come first")
                count, seen_vertex = int(tok[2]), True
            elif not seen_vertex:
                raise PlyError(f"{path}: the vertex element must come first")
        elif tok[0] == "property" and in_vertex:
            if tok[1] == "list":
                raise PlyError(f"{path}: list properties in the vertex element are not supported")
            if tok[1] not in _TYPES:
                raise PlyError(f"{path}: unknown property type {tok[1]!r}")
            props.append((tok[2], _TYPES[tok[1]]))
    names = [p[0] for p in props]
    if not all(a in names for a in "xyz"):
        raise PlyError(f"{path}: vertex element lacks x, y, z")
    if fmt == "ascii":
        table = np.loadtxt(body.decode("ascii").splitlines()[:count], ndmin=2) if count else np.zeros((0, len(props)))
        if table.shape[0] != count:
            raise PlyError(f"{path}: expected {count} vertices, found {table.shape[0]}")
        cols = {n: table[:, i].astype(t) for i, (n, t) in enumerate(props)}
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + t) for n, t in props])
        if len(body) < dtype.itemsize * count:
            raise PlyError(f"{path}: truncated ({len(body)} bytes for {count} vertices)")
        rec = np.frombuffer(body, dtype=dtype, count=count)
        cols = {n: rec[n] for n in names}
    else:
        raise PlyError(f"{path}: unsupported PLY format {fmt!r}")
    xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)
    rgb = None
    for r, g, b in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if r in cols and g in cols and b in cols:
            c = np.stack([cols[r], cols[g], cols[b]], axis=1)
            if c.dtype.kind == "f":
                c = np.clip(np.round(c * 255.0), 0, 255)
            rgb = c.astype(np.uint8)
            break
    return xyz, rgb
