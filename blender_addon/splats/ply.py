"""Numpy-only reader for the standard 3D Gaussian Splatting PLY layout (runs in Blender's
Python, which has numpy but neither plyfile nor torch).

The file holds one ``vertex`` element with properties ``x y z``, ``f_dc_0..2``,
``f_rest_0..(3K-1)`` (channel-major: all red coefficients, then green, then blue; K = 0, 3, 8
or 15), ``opacity`` (logit), ``scale_0..2`` (log) and ``rot_0..3`` (quaternion w, x, y, z, not
necessarily unit); normals and other properties are ignored. ``binary_little_endian``,
``binary_big_endian`` and ``ascii`` encodings and any scalar property type are read; the
vertex data is read with a single ``numpy.fromfile`` (binary) call.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "ascii"}
_REST_COUNTS = {0: 0, 9: 3, 24: 8, 45: 15}
MAX_HEADER_BYTES = 1 << 16


class SplatFileError(ValueError):
    """A splat file cannot be read; the message names the file and the problem."""


@dataclass
class RawSplats:
    """Pre-activation 3DGS parameters as stored in the PLY (float32)."""

    means: np.ndarray        # (N, 3)
    sh0: np.ndarray          # (N, 3) DC coefficients f_dc
    shN: np.ndarray          # (N, K, 3) higher-band coefficients, coefficient-major
    opacities: np.ndarray    # (N,) logits
    scales: np.ndarray       # (N, 3) log scales
    quats: np.ndarray        # (N, 4) w, x, y, z

    def __len__(self) -> int:
        return len(self.means)


@dataclass
class _Element:
    name: str
    count: int
    props: list[tuple[str, str]]     # (name, numpy type code); list properties are rejected


def _parse_header(path: Path, head: bytes) -> tuple[str, list[_Element], int]:
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise SplatFileError(f"{path}: not a PLY file (no 'ply' magic or no end_header in the first "
                             f"{MAX_HEADER_BYTES} bytes)")
    nl = head.find(b"\n", end)
    if nl < 0:
        raise SplatFileError(f"{path}: truncated after end_header")
    lines = head[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise SplatFileError(f"{path}: unsupported PLY format line {line.strip()!r}")
            fmt = _FORMATS[words[1]]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise SplatFileError(f"{path}: bad element line {line.strip()!r}")
            elements.append(_Element(words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise SplatFileError(f"{path}: property before any element")
            if len(words) >= 2 and words[1] == "list":
                elements[-1].props.append((words[-1], "list"))
            elif len(words) == 3 and words[1] in _TYPES:
                elements[-1].props.append((words[2], _TYPES[words[1]]))
            else:
                raise SplatFileError(f"{path}: bad property line {line.strip()!r}")
    if fmt is None:
        raise SplatFileError(f"{path}: PLY header has no format line")
    return fmt, elements, nl + 1


def read_ply(path: str | Path) -> RawSplats:
    """Read a standard 3DGS PLY; raises SplatFileError naming the file for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER_BYTES)
    except FileNotFoundError:
        raise SplatFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SplatFileError(f"{path}: is a directory, not a PLY file") from None
    fmt, elements, offset = _parse_header(path, head)
    names = [e.name for e in elements]
    if "chunk" in names:
        raise SplatFileError(f"{path}: compressed (SuperSplat) PLY; load it through the backend "
                             f"(backend.pipelines.splats_io) or save it uncompressed")
    if "vertex" not in names:
        raise SplatFileError(f"{path}: no 'vertex' element")
    vi = names.index("vertex")
    vertex = elements[vi]
    if any(t == "list" for _, t in vertex.props):
        raise SplatFileError(f"{path}: list properties in the vertex element are not splat data")
    prop_names = [n for n, _ in vertex.props]
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in required if n not in prop_names]
    if missing:
        raise SplatFileError(f"{path}: not a Gaussian-splat PLY (missing {', '.join(missing)})")
    n_rest = sum(1 for n in prop_names if n.startswith("f_rest_"))
    if n_rest not in _REST_COUNTS or any(f"f_rest_{i}" not in prop_names for i in range(n_rest)):
        raise SplatFileError(f"{path}: expected f_rest_0..f_rest_(9|24|45 - 1), found {n_rest} f_rest properties")
    n = vertex.count

    table = None
    if fmt == "ascii":
        data = _read_ascii(path, offset, elements, vi)
    else:
        for e in elements[:vi]:
            if any(t == "list" for _, t in e.props):
                raise SplatFileError(f"{path}: a list element before 'vertex' is not supported")
            offset += e.count * sum(np.dtype(t).itemsize for _, t in e.props)
        dtype = np.dtype([(name, fmt + t) for name, t in vertex.props])
        size = path.stat().st_size
        if size < offset + n * dtype.itemsize:
            raise SplatFileError(f"{path}: truncated: header promises {n} splats "
                                 f"({offset + n * dtype.itemsize} bytes), file has {size}")
        types = {t for _, t in vertex.props}
        if len(types) == 1:
            # one scalar type (the usual all-float layout): read a plain (n, properties) matrix
            table = np.fromfile(path, dtype=fmt + types.pop(), count=n * len(vertex.props), offset=offset)
            table = table.reshape(n, len(vertex.props))
            data = {name: table[:, i] for i, (name, _) in enumerate(vertex.props)}
        else:
            data = np.fromfile(path, dtype=dtype, count=n, offset=offset)

    order = {name: i for i, name in enumerate(prop_names)}

    def cols(*keys: str) -> np.ndarray:
        idx = [order[k] for k in keys]
        if table is not None and idx == list(range(idx[0], idx[0] + len(idx))):
            return np.ascontiguousarray(table[:, idx[0]:idx[0] + len(idx)], dtype=np.float32)
        out = np.empty((n, len(keys)), dtype=np.float32)
        for i, k in enumerate(keys):
            out[:, i] = data[k]
        return out

    k = _REST_COUNTS[n_rest]
    rest = (cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else np.empty((n, 0), np.float32))
    rest = rest.reshape(n, 3, k).transpose(0, 2, 1)
    splats = RawSplats(means=cols("x", "y", "z"), sh0=cols("f_dc_0", "f_dc_1", "f_dc_2"),
                       shN=np.ascontiguousarray(rest), opacities=cols("opacity")[:, 0],
                       scales=cols("scale_0", "scale_1", "scale_2"),
                       quats=cols("rot_0", "rot_1", "rot_2", "rot_3"))
    if not np.all(np.isfinite(splats.means)):
        raise SplatFileError(f"{path}: non-finite splat positions")
    return splats


def _read_ascii(path: Path, offset: int, elements: list[_Element], vi: int) -> np.ndarray:
    with open(path, "rb") as f:
        f.seek(offset)
        skip = sum(e.count for e in elements[:vi])
        vertex = elements[vi]
        try:
            table = np.loadtxt(f, dtype=np.float64, skiprows=skip, max_rows=vertex.count, ndmin=2)
        except ValueError as e:
            raise SplatFileError(f"{path}: bad ASCII vertex data ({e})") from None
    if table.shape != (vertex.count, len(vertex.props)):
        raise SplatFileError(f"{path}: truncated: expected {vertex.count} rows of {len(vertex.props)} "
                             f"values, got {table.shape}")
    return {name: table[:, i] for i, (name, _) in enumerate(vertex.props)}
