"""Read and write Gaussian splats: 3DGS PLY, SuperSplat compressed PLY, antimatter15 ``.splat``,
Niantic ``.spz`` (through the ``gsply`` package).

:class:`Splats` holds the pre-activation parameters of the standard 3DGS PLY layout:
``means`` [N,3], ``scales`` [N,3] (log), ``quats`` [N,4] (w, x, y, z; not necessarily unit),
``opacities`` [N] (logit), ``sh0`` [N,3] (DC coefficients) and ``shN`` [N,K,3] (higher bands,
K = 0, 3, 8 or 15). Colour from SH is ``0.5 + SH_C0 * sh0`` (plus higher bands), as in 3DGS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gzip
import struct

import numpy as np
from plyfile import PlyData, PlyElement

SH_C0 = 0.28209479177387814
_REST_FOR_DEGREE = {0: 0, 1: 3, 2: 8, 3: 15}


class SplatFormatError(ValueError):
    """A splat file could not be read; the message names the file."""


@dataclass
class Splats:
    means: np.ndarray
    scales: np.ndarray
    quats: np.ndarray
    opacities: np.ndarray
    sh0: np.ndarray
    shN: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        n = len(self.means)
        self.means = np.asarray(self.means, np.float32).reshape(n, 3)
        self.scales = np.asarray(self.scales, np.float32).reshape(n, 3)
        self.quats = np.asarray(self.quats, np.float32).reshape(n, 4)
        self.opacities = np.asarray(self.opacities, np.float32).reshape(n)
        self.sh0 = np.asarray(self.sh0, np.float32).reshape(n, 3)
        if self.shN is None:
            self.shN = np.zeros((n, 0, 3), np.float32)
        self.shN = np.asarray(self.shN, np.float32).reshape(n, -1, 3)
        if self.shN.shape[1] not in _REST_FOR_DEGREE.values():
            raise ValueError(f"shN must hold 0, 3, 8 or 15 coefficients per channel, got {self.shN.shape[1]}")

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return {v: k for k, v in _REST_FOR_DEGREE.items()}[self.shN.shape[1]]

    def rgb(self) -> np.ndarray:
        """View-independent colour (DC term) in the footage's colour space, clipped to [0, 1]."""
        return np.clip(0.5 + SH_C0 * self.sh0, 0.0, 1.0)

    def alpha(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.opacities))

    def unit_quats(self) -> np.ndarray:
        n = np.linalg.norm(self.quats, axis=1, keepdims=True)
        return self.quats / np.maximum(n, 1e-12)

    def subset(self, idx) -> "Splats":
        return Splats(self.means[idx], self.scales[idx], self.quats[idx], self.opacities[idx],
                      self.sh0[idx], self.shN[idx])


def _fail(path: Path, why: str) -> SplatFormatError:
    return SplatFormatError(f"{path}: {why}")


# ---------------------------------------------------------------- 3DGS PLY ------------------
def write_ply(splats: Splats, path: str | Path, sh_rest: int = 45) -> None:
    """Write the standard 3DGS binary PLY (x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity
    scale_0..2 rot_0..3). ``f_rest`` is channel-major (all R coefficients, then G, then B) and
    zero-padded to ``sh_rest`` entries."""
    n = len(splats)
    k = splats.shN.shape[1]
    if sh_rest % 3 or sh_rest // 3 < k:
        raise ValueError(f"sh_rest={sh_rest} cannot hold {k} coefficients per channel")
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(sh_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    rest = np.zeros((n, 3, sh_rest // 3), np.float32)
    rest[:, :, :k] = splats.shN.transpose(0, 2, 1)
    cols = np.concatenate([
        splats.means, np.zeros((n, 3), np.float32), splats.sh0, rest.reshape(n, -1),
        splats.opacities[:, None], splats.scales, splats.quats], axis=1).astype(np.float32)
    arr = np.empty(n, dtype=[(nm, "f4") for nm in names])
    for i, nm in enumerate(names):
        arr[nm] = cols[:, i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(arr, "vertex")], text=False).write(str(path))


def _read_standard(path: Path, v) -> Splats:
    props = set(v.data.dtype.names)
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
            "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [p for p in need if p not in props]
    if missing:
        raise _fail(path, f"not a 3DGS splat PLY (vertex lacks {', '.join(missing)})")
    col = lambda nm: np.asarray(v[nm], np.float32)  # noqa: E731
    rest_names = sorted((p for p in props if p.startswith("f_rest_")), key=lambda s: int(s[7:]))
    n_rest = len(rest_names)
    if n_rest % 3:
        raise _fail(path, f"{n_rest} f_rest properties is not a multiple of 3")
    k = n_rest // 3
    rest = np.stack([col(p) for p in rest_names], 1).reshape(-1, 3, k) if k else np.zeros((len(v.data), 3, 0))
    keep = max((kk for kk in _REST_FOR_DEGREE.values() if kk <= k), default=0)
    return Splats(
        means=np.stack([col("x"), col("y"), col("z")], 1),
        scales=np.stack([col(f"scale_{i}") for i in range(3)], 1),
        quats=np.stack([col(f"rot_{i}") for i in range(4)], 1),
        opacities=col("opacity"),
        sh0=np.stack([col(f"f_dc_{i}") for i in range(3)], 1),
        shN=rest[:, :, :keep].transpose(0, 2, 1),
    )


# ---------------------------------------------------------------- SuperSplat compressed PLY -
_CHUNK = 256


def _unorm(v: np.ndarray, bits: int) -> np.ndarray:
    return (v & ((1 << bits) - 1)).astype(np.float32) / float((1 << bits) - 1)


def _pack_unorm(x: np.ndarray, bits: int) -> np.ndarray:
    t = (1 << bits) - 1
    return np.clip(np.floor(x * t + 0.5), 0, t).astype(np.uint32)


def _read_compressed(path: Path, ply: PlyData) -> Splats:
    c = ply["chunk"].data
    v = ply["vertex"].data
    n = len(v)
    if len(c) * _CHUNK < n:
        raise _fail(path, f"{len(c)} chunks cannot cover {n} splats")
    ci = np.arange(n) // _CHUNK
    g = lambda nm: np.asarray(c[nm], np.float32)[ci]  # noqa: E731
    lerp = lambda lo, hi, t: lo + (hi - lo) * t  # noqa: E731
    pos = v["packed_position"].astype(np.uint32)
    t = np.stack([_unorm(pos >> 21, 11), _unorm(pos >> 11, 10), _unorm(pos, 11)], 1)
    means = np.stack([lerp(g(f"min_{a}"), g(f"max_{a}"), t[:, i]) for i, a in enumerate("xyz")], 1)
    sc = v["packed_scale"].astype(np.uint32)
    t = np.stack([_unorm(sc >> 21, 11), _unorm(sc >> 11, 10), _unorm(sc, 11)], 1)
    scales = np.stack([lerp(g(f"min_scale_{a}"), g(f"max_scale_{a}"), t[:, i])
                       for i, a in enumerate("xyz")], 1)
    rot = v["packed_rotation"].astype(np.uint32)
    abc = np.stack([(_unorm(rot >> s, 10) - 0.5) * np.sqrt(2.0) for s in (20, 10, 0)], 1)
    m = np.sqrt(np.clip(1.0 - (abc ** 2).sum(1), 0.0, None))
    largest = (rot >> 30).astype(np.int64)
    quats = np.empty((n, 4), np.float32)
    for L in range(4):
        sel = largest == L
        others = [i for i in range(4) if i != L]
        quats[sel, L] = m[sel]
        quats[np.ix_(sel, others)] = abc[sel]
    col = v["packed_color"].astype(np.uint32)
    rgba = np.stack([_unorm(col >> s, 8) for s in (24, 16, 8, 0)], 1)
    names = set(c.dtype.names)
    rgb = rgba[:, :3]
    if {"min_r", "max_r"} <= names:
        rgb = np.stack([lerp(g(f"min_{a}"), g(f"max_{a}"), rgb[:, i]) for i, a in enumerate("rgb")], 1)
    a = np.clip(rgba[:, 3], 1e-6, 1 - 1e-6)
    shN = None
    if "sh" in [e.name for e in ply.elements]:
        s = ply["sh"].data
        rest_names = sorted(s.dtype.names, key=lambda x: int(x.split("_")[-1]))
        raw = np.stack([np.asarray(s[nm], np.float32) for nm in rest_names], 1)
        nrm = np.where(raw == 0, 0.0, np.where(raw == 255, 1.0, (raw + 0.5) / 256.0))
        k = len(rest_names) // 3
        shN = ((nrm - 0.5) * 8.0).reshape(n, 3, k).transpose(0, 2, 1)
    return Splats(means, scales, quats, np.log(a / (1 - a)), (rgb - 0.5) / SH_C0, shN)


def write_compressed_ply(splats: Splats, path: str | Path) -> None:
    """Write the SuperSplat compressed PLY (256-splat chunks; 11/10/11-bit position and log-scale,
    2+3x10-bit smallest-three rotation, 8-bit RGBA; SH rest as 8-bit in an ``sh`` element)."""
    n = len(splats)
    nch = (n + _CHUNK - 1) // _CHUNK
    q = splats.unit_quats().astype(np.float64)
    largest = np.argmax(np.abs(q), 1)
    q = q * np.where(q[np.arange(n), largest] < 0, -1.0, 1.0)[:, None]
    rgb = 0.5 + SH_C0 * splats.sh0.astype(np.float64)
    scl = np.clip(splats.scales.astype(np.float64), -20, 20)
    chunk_fields = [f"{p}_{a}" for p in ("min", "max") for a in "xyz"]
    chunk_fields += [f"{p}_scale_{a}" for p in ("min", "max") for a in "xyz"]
    chunk_fields += [f"{p}_{a}" for p in ("min", "max") for a in "rgb"]
    chunks = np.zeros(nch, dtype=[(f, "f4") for f in chunk_fields])
    packed = np.zeros(n, dtype=[(f, "u4") for f in ("packed_position", "packed_rotation",
                                                     "packed_scale", "packed_color")])
    for k in range(nch):
        s = slice(k * _CHUNK, min(n, (k + 1) * _CHUNK))

        def norm(x):
            lo, hi = x.min(0), x.max(0)
            span = np.where(hi - lo < 1e-5, 1.0, hi - lo)
            return np.where(hi - lo < 1e-5, 0.0, np.clip((x - lo) / span, 0, 1)), lo, hi

        tp, lo, hi = norm(splats.means[s].astype(np.float64))
        for i, a in enumerate("xyz"):
            chunks[f"min_{a}"][k], chunks[f"max_{a}"][k] = lo[i], hi[i]
        ts, lo, hi = norm(scl[s])
        for i, a in enumerate("xyz"):
            chunks[f"min_scale_{a}"][k], chunks[f"max_scale_{a}"][k] = lo[i], hi[i]
        tc, lo, hi = norm(rgb[s])
        for i, a in enumerate("rgb"):
            chunks[f"min_{a}"][k], chunks[f"max_{a}"][k] = lo[i], hi[i]
        pack3 = lambda t: (_pack_unorm(t[:, 0], 11) << 21) | (_pack_unorm(t[:, 1], 10) << 11) \
            | _pack_unorm(t[:, 2], 11)  # noqa: E731
        packed["packed_position"][s] = pack3(tp)
        packed["packed_scale"][s] = pack3(ts)
        alpha = splats.alpha()[s].astype(np.float64)
        packed["packed_color"][s] = (_pack_unorm(tc[:, 0], 8) << 24) | (_pack_unorm(tc[:, 1], 8) << 16) \
            | (_pack_unorm(tc[:, 2], 8) << 8) | _pack_unorm(alpha, 8)
    rot = largest.astype(np.uint32)
    for i in range(4):
        code = _pack_unorm(q[:, i] * np.sqrt(0.5) + 0.5, 10)
        # components other than the largest are appended in index order
        take = largest != i
        rot = np.where(take, (rot << 10) | code, rot)
    packed["packed_rotation"] = rot
    elements = [PlyElement.describe(chunks, "chunk"), PlyElement.describe(packed, "vertex")]
    k = splats.shN.shape[1]
    if k:
        rest = splats.shN.transpose(0, 2, 1).reshape(n, -1).astype(np.float64)
        code = np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        sh = np.zeros(n, dtype=[(f"f_rest_{i}", "u1") for i in range(3 * k)])
        for i in range(3 * k):
            sh[f"f_rest_{i}"] = code[:, i]
        elements.append(PlyElement.describe(sh, "sh"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData(elements, text=False).write(str(path))


def read_ply(path: str | Path) -> Splats:
    """Read a 3DGS PLY or a SuperSplat compressed PLY (detected by its ``chunk`` element)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        ply = PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types for malformed headers
        raise _fail(path, f"not a readable PLY file ({exc})") from None
    names = [e.name for e in ply.elements]
    if "vertex" not in names:
        raise _fail(path, "PLY has no vertex element")
    v = ply["vertex"]
    if "chunk" in names and "packed_position" in v.data.dtype.names:
        return _read_compressed(path, ply)
    return _read_standard(path, v)


# ---------------------------------------------------------------- antimatter15 .splat -------
_SPLAT_DTYPE = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def write_splat(splats: Splats, path: str | Path) -> None:
    """Write the antimatter15 ``.splat`` (32 bytes a splat: position, linear scale, RGBA8,
    quaternion w,x,y,z as uint8 with 128 = 0), sorted by size x opacity, largest first."""
    n = len(splats)
    alpha = splats.alpha()
    order = np.argsort(-np.exp(splats.scales.astype(np.float64).sum(1)) * alpha, kind="stable")
    rec = np.zeros(n, _SPLAT_DTYPE)
    rec["pos"] = splats.means
    rec["scale"] = np.exp(splats.scales)
    rgba = np.concatenate([splats.rgb(), alpha[:, None]], 1)
    rec["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255)
    rec["rot"] = np.clip(np.round(splats.unit_quats() * 128.0 + 128.0), 0, 255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec[order].tofile(str(path))


def read_splat(path: str | Path) -> Splats:
    """Read an antimatter15 ``.splat`` file (DC colour and opacity only)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    size = path.stat().st_size
    if size % 32:
        raise _fail(path, f"size {size} is not a multiple of 32 bytes (not a .splat file)")
    rec = np.fromfile(str(path), _SPLAT_DTYPE)
    rgba = rec["rgba"].astype(np.float32) / 255.0
    a = np.clip(rgba[:, 3], 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    scale = rec["scale"].astype(np.float64)
    if np.any(scale <= 0) or not np.all(np.isfinite(rec["pos"])):
        raise _fail(path, "non-positive scales or non-finite positions (not a .splat file)")
    return Splats(
        means=rec["pos"], scales=np.log(scale), quats=(rec["rot"].astype(np.float32) - 128.0) / 128.0,
        opacities=np.log(a / (1 - a)), sh0=(rgba[:, :3] - 0.5) / SH_C0)


# ---------------------------------------------------------------- Niantic .spz -------------
# SPZ stores Gaussians in RUB axes (x right, y up, z back: OpenGL / three.js). The Blender world
# is RFU (x right, y front, z up). rub = _BLENDER_TO_RUB @ blender, a rotation of -90 degrees about
# x (the glTF Y-up <-> Blender Z-up change); the Gaussians' orientations and SH rotate with it.
_BLENDER_TO_RUB = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_Q_BLENDER_TO_RUB = np.array([np.sqrt(0.5), -np.sqrt(0.5), 0.0, 0.0])  # w, x, y, z
SPZ_MAGIC = 0x5053474E  # "NGSP"
SPZ_MAX_FRACTIONAL_BITS = 12
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
          0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """Real SH basis of bands 1..``degree`` at unit directions [M,3] -> [M, (degree+1)^2 - 1],
    in the 3DGS / gsplat order and normalisation (band 0 is the constant ``SH_C0``)."""
    x, y, z = (np.asarray(dirs, np.float64)[:, i] for i in range(3))
    out = []
    if degree >= 1:
        out += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        c = _SH_C2
        out += [c[0] * x * y, c[1] * y * z, c[2] * (2 * zz - xx - yy), c[3] * x * z, c[4] * (xx - yy)]
    if degree >= 3:
        c = _SH_C3
        out += [c[0] * y * (3 * xx - yy), c[1] * x * y * z, c[2] * y * (4 * zz - xx - yy),
                c[3] * z * (2 * zz - 3 * xx - 3 * yy), c[4] * x * (4 * zz - xx - yy),
                c[5] * z * (xx - yy), c[6] * x * (xx - 3 * yy)]
    return np.stack(out, 1) if out else np.zeros((len(x), 0))


def sh_rotation(R: np.ndarray, degree: int) -> np.ndarray:
    """Matrix D [K,K] (K = (degree+1)^2 - 1) with ``shN_new = D @ shN`` for splats rotated by
    ``R`` (new = R @ old): the colour seen along R @ d after equals the colour along d before.
    Bands do not mix; each band's block is fitted exactly on 64 spread directions."""
    k = (degree + 1) ** 2 - 1
    if k == 0:
        return np.zeros((0, 0))
    i = np.arange(64) + 0.5
    phi, cos_t = np.pi * (1 + 5 ** 0.5) * i, 1 - 2 * i / 64
    sin_t = np.sqrt(1 - cos_t ** 2)
    d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], 1)
    A, B = sh_basis(d, degree), sh_basis(d @ np.asarray(R, np.float64).T, degree)
    D = np.zeros((k, k))
    for band in range(1, degree + 1):
        s = slice(band * band - 1, (band + 1) ** 2 - 1)
        D[s, s] = np.linalg.lstsq(B[:, s], A[:, s], rcond=None)[0]
    return D


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = (a[..., i] for i in range(4))
    bw, bx, by, bz = (b[..., i] for i in range(4))
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def rotate_splats(splats: Splats, R: np.ndarray, q: np.ndarray) -> Splats:
    """The splats turned by the rotation ``R`` (3x3, new = R @ old; ``q`` its w,x,y,z quaternion):
    positions, orientations and view-dependent colour; scales, opacity and DC colour unchanged."""
    R = np.asarray(R, np.float64)
    D = sh_rotation(R, splats.sh_degree)
    return Splats(means=splats.means.astype(np.float64) @ R.T, scales=splats.scales,
                  quats=_quat_mul(np.asarray(q, np.float64), splats.quats.astype(np.float64)),
                  opacities=splats.opacities, sh0=splats.sh0,
                  shN=np.einsum("kj,njc->nkc", D, splats.shN.astype(np.float64)))


def _gsply(path: Path):
    try:
        import gsply
    except ImportError:
        raise SplatFormatError(f"{path}: .spz needs the gsply package (pip install 'gsply>=0.4.6')") \
            from None
    return gsply


def spz_header(path: str | Path) -> dict:
    """The header of an ``.spz`` file: version, num_points, sh_degree, fractional_bits, flags,
    container ("gzip" for versions 1-3, "ngsp" for the zstd container of version 4)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    container = "ngsp"
    if head[:2] == b"\x1f\x8b":
        container = "gzip"
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(16)
        except (OSError, EOFError) as exc:
            raise _fail(path, f"not a readable gzip stream ({exc})") from None
    if len(head) < 16:
        raise _fail(path, "too short for an SPZ header")
    magic, version, n, degree, frac, flags, _ = struct.unpack("<IIIBBBB", head)
    if magic != SPZ_MAGIC:
        raise _fail(path, f"not an SPZ file (magic 0x{magic:08x}, expected 0x{SPZ_MAGIC:08x})")
    return {"version": version, "num_points": n, "sh_degree": degree, "fractional_bits": frac,
            "flags": flags, "container": container}


def read_spz(path: str | Path) -> Splats:
    """Read a Niantic ``.spz`` (versions 2 and 3, gzip; version 4 with ``zstandard`` installed)
    into the Blender world: SPZ's RUB axes are turned to Blender's (x, -z, y)."""
    path = Path(path)
    h = spz_header(path)
    if h["version"] == 1:
        raise _fail(path, "SPZ version 1 (float16 positions) is not supported; re-save it as version 3")
    if h["sh_degree"] > 3:
        raise _fail(path, f"SPZ spherical-harmonics degree {h['sh_degree']} is not supported (0-3)")
    gsply = _gsply(path)
    try:
        d = gsply.read_spz(path)
    except (ValueError, OSError) as exc:
        raise _fail(path, f"not a readable SPZ file ({exc})") from None
    k = (h["sh_degree"] + 1) ** 2 - 1
    shN = np.asarray(d.shN, np.float32).reshape(len(d.means), -1, 3)[:, :k] if k else None
    rub = Splats(d.means, d.scales, d.quats, d.opacities, d.sh0, shN)
    return rotate_splats(rub, _BLENDER_TO_RUB.T, _Q_BLENDER_TO_RUB * [1, -1, -1, -1])


def spz_fractional_bits(means: np.ndarray, bits: int = SPZ_MAX_FRACTIONAL_BITS) -> int:
    """The most fractional bits (at most ``bits``) whose 24-bit fixed point holds every coordinate."""
    extent = float(np.abs(means).max()) if len(means) else 0.0
    while bits > 0 and np.round(extent * 2.0 ** bits) > 2 ** 23 - 1:
        bits -= 1
    return bits


def write_spz(splats: Splats, path: str | Path, fractional_bits: int = SPZ_MAX_FRACTIONAL_BITS) -> None:
    """Write a Niantic ``.spz`` version 3 (gzip, smallest-three rotations) in SPZ's RUB axes.

    Quantisation (the format's): positions 24-bit fixed point with up to ``fractional_bits``
    fractional bits (fewer for scenes beyond 2048 m), log-scales 1/16 steps on [-10, 5.94],
    opacity and colour 8 bits (DC colour clipped to +-3.33 in SH units), rotation components
    10 bits, higher SH 8 bits on [-1, 1]."""
    path = Path(path)
    gsply = _gsply(path)
    rub = rotate_splats(splats, _BLENDER_TO_RUB, _Q_BLENDER_TO_RUB)
    if not np.all(np.isfinite(rub.means)):
        raise ValueError(f"{path}: non-finite splat positions cannot be written")
    bits = spz_fractional_bits(rub.means, fractional_bits)
    if bits < 1:
        raise ValueError(f"{path}: splat positions up to {np.abs(rub.means).max():.4g} exceed SPZ's range")
    data = gsply.GSData.from_arrays(
        means=rub.means, scales=rub.scales, quats=rub.quats, opacities=rub.opacities, sh0=rub.sh0,
        shN=rub.shN if rub.shN.shape[1] else None, format="ply")
    path.parent.mkdir(parents=True, exist_ok=True)
    gsply.write_spz(path, data, version=3, fractional_bits=bits)


# ---------------------------------------------------------------- by extension -------------
def load_splats(path: str | Path) -> Splats:
    """Read splats by extension: ``.ply`` (3DGS or SuperSplat compressed), ``.splat`` or ``.spz``."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".ply":
        return read_ply(path)
    if ext == ".splat":
        return read_splat(path)
    if ext == ".spz":
        return read_spz(path)
    raise SplatFormatError(f"{path}: unknown splat format {ext or '(no extension)'}; "
                           "expected .ply, .splat or .spz")


def save_splats(splats: Splats, path: str | Path) -> None:
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".splat":
        write_splat(splats, path)
    elif ext == ".spz":
        write_spz(splats, path)
    else:
        write_ply(splats, path)
