"""Image sequence writers: 8-bit PNG and 32-bit float OpenEXR (uncompressed scanline)."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def _attr(name: str, typ: str, data: bytes) -> bytes:
    return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(data)) + data


def write_exr(path: str | Path, channels: dict[str, np.ndarray]) -> None:
    """Write single-part scanline OpenEXR with FLOAT channels and no compression.

    ``channels`` maps channel names (e.g. "R", "G", "B", "A", "Z") to HxW arrays of one size.
    """
    if not channels:
        raise ValueError("write_exr needs at least one channel")
    names = sorted(channels)  # EXR stores channels in alphabetical order
    arrays = [np.ascontiguousarray(channels[n], dtype="<f4") for n in names]
    h, w = arrays[0].shape
    if any(a.shape != (h, w) for a in arrays):
        raise ValueError("all EXR channels must have the same size")
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for n in names) + b"\0"
    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = b"".join([
        struct.pack("<ii", 20000630, 2),
        _attr("channels", "chlist", chlist),
        _attr("compression", "compression", b"\0"),
        _attr("dataWindow", "box2i", box),
        _attr("displayWindow", "box2i", box),
        _attr("lineOrder", "lineOrder", b"\0"),
        _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        b"\0",
    ])
    line_bytes = 4 * w * len(names)
    first = len(header) + 8 * h
    offsets = np.arange(h, dtype=np.uint64) * np.uint64(8 + line_bytes) + np.uint64(first)
    rows = np.stack(arrays, 1)  # [H, C, W]
    body = bytearray()
    for y in range(h):
        body += struct.pack("<ii", y, line_bytes)
        body += rows[y].tobytes()
    Path(path).write_bytes(header + offsets.astype("<u8").tobytes() + bytes(body))


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an HxW or HxWx3 image in [0, 1] (float) or uint8 as 8-bit PNG."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.round(np.nan_to_num(img) * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def write_sequence(out_dir: Path, rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray,
                   fmt: str = "exr", start: int = 0) -> list[str]:
    """Write per-camera files into ``out_dir``: EXR (R, G, B, A, Z in one file per frame) or PNG
    (rgb_NNNNNN.png, alpha_NNNNNN.png; depth as float32 ``depth_NNNNNN.npy``). Returns names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(len(rgb)):
        n = start + k
        if fmt == "exr":
            name = f"render_{n:06d}.exr"
            write_exr(out_dir / name, {"R": rgb[k, ..., 0], "G": rgb[k, ..., 1], "B": rgb[k, ..., 2],
                                       "A": alpha[k], "Z": depth[k]})
            files.append(name)
        elif fmt == "png":
            write_png(out_dir / f"rgb_{n:06d}.png", rgb[k])
            write_png(out_dir / f"alpha_{n:06d}.png", alpha[k])
            np.save(out_dir / f"depth_{n:06d}.npy", depth[k].astype(np.float32))
            files += [f"rgb_{n:06d}.png", f"alpha_{n:06d}.png", f"depth_{n:06d}.npy"]
        else:
            raise ValueError(f"unknown image format {fmt!r}; expected 'exr' or 'png'")
    return files
