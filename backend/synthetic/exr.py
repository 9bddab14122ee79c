"""Minimal reader for uncompressed scanline OpenEXR files (the passes Blender writes).

Handles single- and multi-part scanline files with ``NONE`` compression and HALF/FLOAT/UINT
channels, which is what :mod:`backend.synthetic.render` asks Blender to write (Blender 5 writes
multilayer EXRs as one part per pass). Pure numpy, no OpenEXR binding needed.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = 20000630
_TILED, _MULTIPART = 0x200, 0x1000
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("latin-1"), end + 1


def _parse_chlist(value: bytes) -> list[tuple[str, int]]:
    chans, p = [], 0
    while value[p:p + 1] != b"\0":
        name, p = _cstring(value, p)
        ptype, _plinear, xs, ys = struct.unpack_from("<iB3xii", value, p)
        p += 16
        if xs != 1 or ys != 1:
            raise ValueError(f"subsampled channel {name!r} is not supported")
        chans.append((name, ptype))
    return chans


def _parse_one_header(buf: bytes, pos: int) -> tuple[dict, int]:
    header: dict = {}
    while True:
        name, pos = _cstring(buf, pos)
        if not name:
            return header, pos
        typ, pos = _cstring(buf, pos)
        (size,) = struct.unpack_from("<i", buf, pos)
        value = buf[pos + 4:pos + 4 + size]
        pos += 4 + size
        if typ == "chlist":
            header[name] = _parse_chlist(value)
        elif typ == "box2i":
            header[name] = struct.unpack("<iiii", value)
        elif typ in ("compression", "lineOrder"):
            header[name] = value[0]
        elif typ == "int":
            header[name] = struct.unpack("<i", value)[0]
        elif typ == "string":
            header[name] = value.decode("latin-1")
        else:
            header[name] = value


def read_exr_channels(path: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Return ``{channel name: (H, W) array}`` of an uncompressed scanline EXR, rows top-down.

    ``names`` restricts the result to those channels (KeyError naming the missing one).
    """
    buf = Path(path).read_bytes()
    magic, version = struct.unpack_from("<ii", buf, 0)
    if magic != _MAGIC:
        raise ValueError(f"{path}: not an OpenEXR file")
    if version & _TILED:
        raise ValueError(f"{path}: tiled OpenEXR files are not supported")
    multipart = bool(version & _MULTIPART)
    pos, headers = 8, []
    while True:
        header, pos = _parse_one_header(buf, pos)
        headers.append(header)
        if not multipart:
            break
        if buf[pos:pos + 1] == b"\0":
            pos += 1
            break
    layouts, out = [], {}
    for header in headers:
        if header.get("compression", 0) != 0:
            raise ValueError(f"{path}: only uncompressed (NONE) OpenEXR files are supported")
        xmin, ymin, xmax, ymax = header["dataWindow"]
        width, height = xmax - xmin + 1, ymax - ymin + 1
        chans = header["channels"]
        count = header.get("chunkCount", height)
        offsets = np.frombuffer(buf, dtype="<u8", count=count, offset=pos)
        pos += 8 * count
        line_dtype = np.dtype([(n, _PIXEL_DTYPES[t], (width,)) for n, t in chans])
        for n, t in chans:
            out[n] = np.empty((height, width), dtype=_PIXEL_DTYPES[t])
        layouts.append((offsets, line_dtype, chans, ymin))
    for part, (offsets, line_dtype, chans, ymin) in enumerate(layouts):
        for off in offsets:
            off = int(off)
            if multipart:
                (got_part,) = struct.unpack_from("<i", buf, off)
                if got_part != part:
                    raise ValueError(f"{path}: chunk of part {got_part} in part {part}'s table")
                off += 4
            y, size = struct.unpack_from("<ii", buf, off)
            if size != line_dtype.itemsize:
                raise ValueError(f"{path}: unexpected scanline size {size}")
            line = np.frombuffer(buf, dtype=line_dtype, count=1, offset=off + 8)[0]
            for n, _t in chans:
                out[n][y - ymin] = line[n]
    if names is not None:
        missing = [n for n in names if n not in out]
        if missing:
            raise KeyError(f"{path}: channel {missing[0]!r} not in {sorted(out)}")
        out = {n: out[n] for n in names}
    return out
