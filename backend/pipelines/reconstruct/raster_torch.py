"""Pure-PyTorch Gaussian rasterizer with the semantics of ``gsplat.rasterization`` (classic mode).

EWA projection of 3D Gaussians to screen-space ellipses (gsplat's own PyTorch reference
projection, ``gsplat.cuda._torch_impl``), then depth-sorted front-to-back alpha compositing,
evaluated densely over blocks of pixel rows against the Gaussians whose bounding box touches
the block. It follows gsplat's CUDA kernels: pixel centres at +0.5, a 0.3 px^2 screen-space
blur, an opacity-aware 3.33-sigma bounding box, alpha = min(0.999, o * exp(-sigma)) skipped
below 1/255, and a pixel stops once its transmittance would fall to 1e-4.

Everything is differentiable by autograd, so it trains on the CPU. The returned ``info`` dict
carries what gsplat's densification strategies read (``means2d``, ``radii``, ``width``,
``height``, ``n_cameras``, ``gaussian_ids``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from gsplat.cuda._torch_impl import (
    _persp_proj,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
    _world_to_cam,
)

ALPHA_THRESHOLD = 1.0 / 255.0
TRANSMITTANCE_STOP = 1e-4
MAX_ALPHA = 0.999


def project(means, quats, scales, opacities, viewmats, Ks, width, height,
            eps2d=0.3, near_plane=0.01, far_plane=1e10, antialiased=False):
    """Project N Gaussians into C cameras.

    Returns ``means2d`` [C,N,2], ``conics`` [C,N,3] (inverse 2D covariance: a, b, c),
    ``depths`` [C,N], ``radii`` [C,N,2] (int32; 0 where culled) and the per-camera
    opacities [C,N] (multiplied by the antialiasing compensation when asked).
    """
    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False, triu=False)
    means_c, covars_c = _world_to_cam(means, covars, viewmats)
    means2d, cov2d = _persp_proj(means_c, covars_c, Ks, width, height)
    det_orig = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    cov2d = cov2d + torch.eye(2, device=means.device, dtype=means.dtype) * eps2d
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    det_safe = det.clamp(min=1e-10)
    conics = torch.stack([
        cov2d[..., 1, 1] / det_safe,
        -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det_safe,
        cov2d[..., 0, 0] / det_safe,
    ], dim=-1)
    opac = opacities[None, :].expand(means2d.shape[:-1])
    if antialiased:
        opac = opac * torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0))
    depths = means_c[..., 2]
    with torch.no_grad():
        extend = torch.sqrt(2.0 * torch.log(torch.clamp(opac, min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = torch.clamp(extend, max=3.33)
        rx = torch.ceil(extend * torch.sqrt(cov2d[..., 0, 0].clamp(min=0)))
        ry = torch.ceil(extend * torch.sqrt(cov2d[..., 1, 1].clamp(min=0)))
        valid = (det > 0) & (depths > near_plane) & (depths < far_plane) & (opac >= ALPHA_THRESHOLD)
        valid &= (rx > 0) | (ry > 0)
        valid &= (means2d[..., 0] + rx > 0) & (means2d[..., 0] - rx < width)
        valid &= (means2d[..., 1] + ry > 0) & (means2d[..., 1] - ry < height)
        radii = torch.stack([rx, ry], dim=-1) * valid[..., None]
        radii = radii.to(torch.int32)
    return means2d, conics, depths, radii, opac


def _composite_camera(means2d, conics, opac, feats, radii, depths, width, height, budget, tile=8):
    """Composite one camera. Returns features [H,W,D] and alpha [H,W,1] (no background).

    Pixels are grouped into ``tile`` x ``tile`` tiles; each tile evaluates, densely, the
    depth-sorted Gaussians whose bounding box touches it. Tiles are batched in groups of
    similar list length (padded to the group's longest) within ``budget`` elements.
    """
    device, dtype = means2d.device, means2d.dtype
    D = feats.shape[-1]
    visible = (radii > 0).all(dim=-1).nonzero(as_tuple=True)[0]
    if visible.numel() == 0:
        zero = means2d.sum() * 0.0 + feats.sum() * 0.0
        return (torch.zeros(height, width, D, device=device, dtype=dtype) + zero,
                torch.zeros(height, width, 1, device=device, dtype=dtype) + zero)
    order = visible[torch.argsort(depths[visible].detach(), stable=True)]
    tw, th = math.ceil(width / tile), math.ceil(height / tile)
    n_tiles = tw * th
    with torch.no_grad():
        m = means2d[order].detach()
        r = radii[order].to(dtype)
        x0 = torch.clamp(torch.floor((m[:, 0] - r[:, 0]) / tile), 0, tw).long()
        x1 = torch.clamp(torch.ceil((m[:, 0] + r[:, 0]) / tile), 0, tw).long()
        y0 = torch.clamp(torch.floor((m[:, 1] - r[:, 1]) / tile), 0, th).long()
        y1 = torch.clamp(torch.ceil((m[:, 1] + r[:, 1]) / tile), 0, th).long()
        nx, ny = x1 - x0, y1 - y0
        counts = nx * ny
        rank = torch.repeat_interleave(torch.arange(order.numel(), device=device), counts)
        start = torch.cumsum(counts, 0) - counts
        local = torch.arange(rank.numel(), device=device) - start[rank]
        tile_id = (y0[rank] + local // nx[rank]) * tw + x0[rank] + local % nx[rank]
        srt = torch.argsort(tile_id, stable=True)  # stable: keeps depth order within a tile
        tile_id, rank = tile_id[srt], rank[srt]
        per_tile = torch.bincount(tile_id, minlength=n_tiles)
        tile_start = torch.cumsum(per_tile, 0) - per_tile
        by_count = torch.argsort(per_tile, stable=True)
        counts_sorted = per_tile[by_count].cpu().numpy()
    pad = lambda t: torch.cat([t, torch.zeros_like(t[:1])], 0)  # noqa: E731
    m2, con, op, ft = pad(means2d[order]), pad(conics[order]), pad(opac[order]), pad(feats[order])
    ly, lx = torch.meshgrid(torch.arange(tile, device=device, dtype=dtype),
                            torch.arange(tile, device=device, dtype=dtype), indexing="ij")
    lx, ly = lx.reshape(-1), ly.reshape(-1)
    P = tile * tile
    a = int(np.searchsorted(counts_sorted, 1))  # tiles without Gaussians stay empty
    outs_c, outs_a, done = [], [], []
    while a < n_tiles:
        lo, hi = a + 1, n_tiles  # largest group [a, b) whose padded size fits the budget
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (mid - a) * P * int(counts_sorted[mid - 1]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        b = lo
        ids = by_count[a:b]
        j = torch.arange(int(counts_sorted[b - 1]), device=device)
        slot = tile_start[ids][:, None] + j[None, :]
        valid = j[None, :] < per_tile[ids][:, None]
        lst = torch.where(valid, rank[slot.clamp(max=rank.numel() - 1)], order.numel())  # [T, M]
        px = ((ids % tw).to(dtype) * tile)[:, None] + lx[None, :] + 0.5  # [T, P]
        py = ((ids // tw).to(dtype) * tile)[:, None] + ly[None, :] + 0.5
        gm = m2[lst]  # [T, M, 2]
        gc = con[lst]
        dx = gm[:, None, :, 0] - px[:, :, None]
        dy = gm[:, None, :, 1] - py[:, :, None]
        sigma = 0.5 * (gc[:, None, :, 0] * dx * dx + gc[:, None, :, 2] * dy * dy) \
            + gc[:, None, :, 1] * dx * dy
        alpha = torch.clamp(op[lst][:, None, :] * torch.exp(-sigma), max=MAX_ALPHA)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        log_t = torch.log1p(-alpha)
        log_after = torch.cumsum(log_t, dim=-1)
        keep = (log_after > math.log(TRANSMITTANCE_STOP)).to(dtype)
        w = alpha * torch.exp(log_after - log_t) * keep
        outs_c.append(torch.bmm(w, ft[lst]))
        outs_a.append(w.sum(dim=-1, keepdim=True))
        done.append(ids)
        a = b
    col = torch.zeros(n_tiles, P, D, device=device, dtype=dtype)
    alp = torch.zeros(n_tiles, P, 1, device=device, dtype=dtype)
    if done:
        ids = torch.cat(done)
        col = col.index_put((ids,), torch.cat(outs_c))
        alp = alp.index_put((ids,), torch.cat(outs_a))
    col = col.reshape(th, tw, tile, tile, D).permute(0, 2, 1, 3, 4).reshape(th * tile, tw * tile, D)
    alp = alp.reshape(th, tw, tile, tile, 1).permute(0, 2, 1, 3, 4).reshape(th * tile, tw * tile, 1)
    return col[:height, :width], alp[:height, :width]


def rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
              sh_degree=None, near_plane=0.01, far_plane=1e10, eps2d=0.3, backgrounds=None,
              render_mode="RGB", rasterize_mode="classic", pixel_budget=1 << 21, **_ignored):
    """Render N Gaussians into C cameras; the arguments mirror ``gsplat.rasterization``.

    ``means`` [N,3], ``quats`` [N,4] (wxyz, any norm), ``scales`` [N,3] (activated),
    ``opacities`` [N] (activated), ``colors`` [N,D] or SH coefficients [N,K,3] with
    ``sh_degree``, ``viewmats`` [C,4,4] world-to-camera (OpenCV axes), ``Ks`` [C,3,3].
    ``render_mode`` is "RGB", "D", "ED", "RGB+D" or "RGB+ED" (ED: depth divided by alpha).
    ``pixel_budget`` bounds the pixel x Gaussian elements evaluated at once.
    Returns ``(colors [C,H,W,D'], alphas [C,H,W,1], info)``.
    """
    C = viewmats.shape[0]
    means2d, conics, depths, radii, opac = project(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, antialiased=rasterize_mode == "antialiased")
    if sh_degree is None:
        feats = colors if colors.dim() == 3 else colors[None].expand(C, -1, -1)
    else:
        camtoworlds = torch.inverse(viewmats)
        dirs = means[None, :, :] - camtoworlds[:, None, :3, 3]
        shs = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
        feats = torch.clamp_min(_spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], dim=-1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]
    renders, alphas = [], []
    for ci in range(C):
        col, alp = _composite_camera(means2d[ci], conics[ci], opac[ci], feats[ci], radii[ci],
                                     depths[ci], width, height, pixel_budget)
        renders.append(col)
        alphas.append(alp)
    render_colors = torch.stack(renders)
    render_alphas = torch.stack(alphas)
    if backgrounds is not None:
        bg = backgrounds
        if render_mode in ("RGB+D", "RGB+ED"):
            bg = torch.cat([bg, torch.zeros_like(bg[..., :1])], dim=-1)
        elif render_mode in ("D", "ED"):
            bg = torch.zeros_like(bg[..., :1])
        render_colors = render_colors + bg[:, None, None, :] * (1.0 - render_alphas)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat([
            render_colors[..., :-1],
            render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1)
    info = {
        "means2d": means2d, "radii": radii, "depths": depths, "conics": conics,
        "opacities": opac, "width": width, "height": height, "n_cameras": C,
        "n_batches": 1, "gaussian_ids": None, "camera_ids": None,
        "tile_size": 16, "tile_width": math.ceil(width / 16), "tile_height": math.ceil(height / 16),
    }
    return render_colors, render_alphas, info

