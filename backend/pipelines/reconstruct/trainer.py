"""Gaussian-splat training from a camera solve (gsplat on CUDA, pure PyTorch on CPU).

:func:`train` initialises Gaussians from the solve's sparse points, optimises them against
the footage with L1 + SSIM, densifies with a gsplat strategy, learns a per-frame affine colour
correction and (optionally) per-frame camera corrections, holds out every ``holdout_every``-th
frame for evaluation and checkpoints every ``checkpoint_every`` steps so that an interrupted
run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.progress import JobError, Progress

from ..splats_io import SH_C0, Splats
from .adam_step import adam_step
from .adjust import EXPOSURE_SPREAD_ON, Appearance, CameraAdjust, exposure_spread, pose_change
from .frames import FrameStore
from .losses import photometric_loss, psnr, ssim
from .raster import ensure_gsplat_cuda, rasterize, resolve_backend
from .scene import Solve, scene_scale
from .strategies import make_strategy


ERROR_GAIN = 4.0  # the strip's error panel shows 4 x |render - ground truth|
APPEARANCE_MODES = ("auto", "on", "off")


@dataclass
class TrainConfig:
    """Training options. ``fingerprint()`` covers those that change the result: a checkpoint
    resumes only under the same fingerprint. ``cap_max`` bounds the MCMC Gaussian count,
    ``backend`` picks the rasterizer ("auto": gsplat on CUDA, PyTorch on CPU)."""

    steps: int = 7000
    strategy: str = "default"
    sh_degree: int = 3
    sh_degree_interval: int = 1000
    ssim_lambda: float = 0.2
    holdout_every: int = 8
    appearance: str = "auto"
    refine_cameras: bool = False
    checkpoint_every: int = 1000
    eval_every: int = 500
    seed: int = 0
    init_opacity: float = 0.1
    max_init_points: int = 300_000
    cap_max: int = 1_000_000
    lr_scale: float = 1.0
    backend: str = "auto"
    cpu_threads: int | None = None
    coarse_to_fine: bool = False
    resolution_start: float = 0.25
    resolution_full_at: float = 0.5
    densify: dict = field(default_factory=dict)
    alpha_lambda: float = 0.0  # weight of L1(rendered alpha, frames.alphas) when the frames carry alphas

    def __post_init__(self):
        if isinstance(self.appearance, bool):
            self.appearance = "on" if self.appearance else "off"
        if self.appearance not in APPEARANCE_MODES:
            raise ValueError(f"appearance must be one of {APPEARANCE_MODES}, got {self.appearance!r}")
        if not 0.0 < self.resolution_start <= 1.0 or not 0.0 <= self.resolution_full_at <= 1.0:
            raise ValueError("resolution_start must be in (0, 1] and resolution_full_at in [0, 1]")

    def downscale_at(self, step: int) -> float:
        """Training-image downscale factor (>= 1) at ``step``. With ``coarse_to_fine`` the first
        30 % of the steps train at 1/4 of the resolution and the next 30 % at 1/2. Otherwise the
        resolution rises linearly from ``resolution_start`` of the full size at step 0 to the full
        size at ``resolution_full_at`` of the steps, in steps of 1/16 (so a few sizes recur)."""
        f = step / max(1, self.steps)
        if self.coarse_to_fine:
            return 4 if f < 0.3 else 2 if f < 0.6 else 1
        if self.resolution_start >= 1.0 or f >= self.resolution_full_at:
            return 1
        r = self.resolution_start + (1.0 - self.resolution_start) * f / max(self.resolution_full_at, 1e-9)
        r = max(self.resolution_start, math.floor(r * 16) / 16)
        return 1.0 / r if r < 1.0 else 1

    def fingerprint(self) -> str:
        d = asdict(self)
        for k in ("checkpoint_every", "eval_every", "cpu_threads"):
            d.pop(k)
        if not d["alpha_lambda"]:
            d.pop("alpha_lambda")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    splats: Splats
    metrics: dict
    viewmats: np.ndarray  # [F,4,4] final (refined) world-to-camera, OpenCV axes
    holdout: list[int]
    strip: np.ndarray | None  # uint8 [H, 3W, 3]: ground truth | render | 4 x abs error (worst held-out frame)
    history: list[dict]


def split_holdout(n: int, every: int) -> tuple[list[int], list[int]]:
    """Every ``every``-th frame (0, every, 2*every, ...) is held out; the rest train."""
    if every <= 1 or n < 2:
        return list(range(n)), []
    hold = [i for i in range(n) if i % every == 0]
    if len(hold) == n or not hold:
        return list(range(n)), []
    return [i for i in range(n) if i % every], hold


def _scaled(w: int, h: int, downscale: float) -> tuple[int, int]:
    """Image size at 1/``downscale`` of ``w`` x ``h`` (integer factors: floor, as pooling does)."""
    if downscale == int(downscale):
        return w // int(downscale), h // int(downscale)
    return max(1, round(w / downscale)), max(1, round(h / downscale))


def _knn_scale(points: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    if len(points) < 4:
        return np.full(len(points), 0.01)
    d, _ = cKDTree(points).query(points, k=4)
    return np.sqrt(np.mean(d[:, 1:] ** 2, axis=1)).clip(1e-7)


def init_params(solve: Solve, cfg: TrainConfig, device: torch.device) -> torch.nn.ParameterDict:
    pts, rgb = solve.points, solve.colors
    if len(pts) == 0:
        raise JobError(f"{solve.path.parent / 'points.ply'} has no points to start from", code="bad_input")
    rng = np.random.default_rng(cfg.seed)
    if len(pts) > cfg.max_init_points:
        keep = rng.choice(len(pts), cfg.max_init_points, replace=False)
        pts, rgb = pts[keep], rgb[keep]
    n = len(pts)
    k = (cfg.sh_degree + 1) ** 2 - 1
    scales = np.log(_knn_scale(pts))[:, None].repeat(3, 1)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    params = {
        "means": t(pts),
        "scales": t(scales),
        "quats": t(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))),
        "opacities": t(np.full(n, math.log(cfg.init_opacity / (1 - cfg.init_opacity)))),
        "sh0": t((rgb - 0.5) / SH_C0)[:, None, :],
        "shN": torch.zeros((n, k, 3), device=device),
    }
    return torch.nn.ParameterDict({k2: torch.nn.Parameter(v) for k2, v in params.items()})


def _optimizers(params, cfg: TrainConfig, scale: float):
    lr = {"means": 1.6e-4 * scale, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2,
          "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
    fused = next(iter(params.values())).device.type in ("cuda", "cpu")  # one-kernel Adam (torch >= 2.4)
    return {k: torch.optim.Adam([{"params": params[k], "lr": lr[k] * cfg.lr_scale, "name": k}],
                                eps=1e-15, fused=fused) for k in params}


def _as_splats(params) -> Splats:
    p = {k: v.detach().cpu().numpy() for k, v in params.items()}
    return Splats(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"][:, 0], p["shN"])


class Trainer:
    """Holds the optimisation state; :meth:`run` trains, :meth:`evaluate` renders held-out frames."""

    def __init__(self, solve: Solve, frames: FrameStore, cfg: TrainConfig, device: torch.device,
                 checkpoint_dir: Path | None = None, progress: Progress | None = None):
        self.solve, self.frames, self.cfg, self.device = solve, frames, cfg, device
        self.progress = progress or Progress()
        self.backend = resolve_backend(cfg.backend, device)
        if self.backend == "gsplat":
            ensure_gsplat_cuda()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        torch.manual_seed(cfg.seed)
        n = len(solve.sources)
        self.train_ids, self.hold_ids = split_holdout(n, cfg.holdout_every)
        self.viewmats0 = torch.as_tensor(solve.viewmats, dtype=torch.float32, device=device)
        self.Ks = torch.as_tensor(frames.K, dtype=torch.float32, device=device)
        self.scene_scale = scene_scale(solve.c2w)
        self.params = init_params(solve, cfg, device)
        self.optimizers = _optimizers(self.params, cfg, self.scene_scale)
        densify = dict(cfg.densify)
        if self.backend != "gsplat" and cfg.strategy == "default":
            # the PyTorch rasterizer has no absolute screen-space gradient: the plain one, at
            # gsplat's threshold for it
            densify.setdefault("absgrad", False)
            densify.setdefault("grow_grad2d", 2e-4)
        self.strategy = make_strategy(cfg.strategy, cfg.steps, cfg.cap_max, **densify)
        self.absgrad = bool(getattr(self.strategy, "absgrad", False))
        self.strategy.check_sanity(self.params, self.optimizers)
        if cfg.strategy == "default":
            self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        else:
            self.strategy_state = self.strategy.initialize_state()
        self.exposure_spread = None
        if cfg.appearance == "auto":
            self.exposure_spread = exposure_spread(solve, frames, self.train_ids)
        self.use_appearance = (cfg.appearance == "on" or (
            cfg.appearance == "auto" and self.exposure_spread is not None
            and self.exposure_spread > EXPOSURE_SPREAD_ON))
        self.appearance = Appearance(n).to(device)
        self.app_opt = torch.optim.Adam(self.appearance.parameters(), lr=1e-3 * cfg.lr_scale)
        self.cameras = CameraAdjust(n).to(device)
        self.cam_opt = torch.optim.Adam(self.cameras.parameters(), lr=1e-4 * cfg.lr_scale)
        self.step = 0
        self.history: list[dict] = []
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ rendering --------
    def sh_degree_at(self, step: int) -> int:
        return min(self.cfg.sh_degree, step // max(1, self.cfg.sh_degree_interval))

    def viewmats(self, frames) -> torch.Tensor:
        v = self.viewmats0[frames]
        if self.cfg.refine_cameras:
            v = self.cameras(v, frames)
        return v

    def render(self, frames: list[int], sh_degree: int | None = None, render_mode: str = "RGB",
               downscale: float = 1):
        """Render ``frames``; ``downscale`` > 1 renders at 1/downscale of the training size."""
        p = self.params
        colors = torch.cat([p["sh0"], p["shN"]], 1)
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        Ks, (w, h) = self.Ks[frames], (self.frames.width, self.frames.height)
        if downscale > 1:
            (w, h), (w0, h0) = _scaled(w, h, downscale), (w, h)
            Ks = Ks.clone()
            Ks[:, 0, :] *= w / w0  # pixel-corner origin: the image of a 1/downscale area pooling
            Ks[:, 1, :] *= h / h0
        return self._rasterize(p["means"], p["quats"], torch.exp(p["scales"]),
                               torch.sigmoid(p["opacities"]), colors, self.viewmats(frames), Ks, w, h,
                               sh_degree=deg, render_mode=render_mode,
                               **({"absgrad": True} if self.absgrad else {}))

    def _rasterize(self, means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs):
        """The rasterizer call behind :meth:`render` (multi-GPU training distributes it)."""
        return rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                         backend=self.backend, **kwargs)

    def _neighbours(self, i: int) -> list[int]:
        if not self.train_ids:
            return [i]
        ids = np.array(self.train_ids)
        d = np.abs(ids - i)
        return [int(x) for x in ids[d == d.min()]]

    @torch.no_grad()
    def evaluate(self, frames: list[int] | None = None, compensate: bool = True) -> dict:
        """PSNR/SSIM on ``frames`` (default: the held-out ones, else all training frames)."""
        frames = frames if frames is not None else (self.hold_ids or self.train_ids)
        ps, ss, worst = [], [], None
        for i in frames:
            img, _, _ = self.render([i])
            img = img[0, ..., :3]
            if self.use_appearance and compensate:
                img = (self.appearance(img, i) if i in self.train_ids
                       else self.appearance.blended(img, self._neighbours(i)))
            img = img.clamp(0, 1)
            gt = self.frames.get(i, self.device)
            ps.append(psnr(img, gt))
            ss.append(float(ssim(img, gt)))
            if worst is None or ps[-1] < worst[0]:
                worst = (ps[-1], i, img, gt)
        out = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "frames": list(frames)}
        if worst is not None:
            _, i, img, gt = worst
            err = (ERROR_GAIN * (img - gt).abs().mean(-1, keepdim=True)).clamp(0, 1).expand(-1, -1, 3)
            strip = torch.cat([gt, img, err], 1)
            out["strip"] = (strip * 255).round().byte().cpu().numpy()
            out["strip_frame"] = int(i)
        return out

    # ------------------------------------------------------------------ checkpoints ------
    def _ckpt_path(self) -> Path | None:
        return self.checkpoint_dir / "checkpoint.pt" if self.checkpoint_dir else None

    def save_checkpoint(self) -> None:
        path = self._ckpt_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "fingerprint": self.cfg.fingerprint(), "step": self.step,
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {k: (v.cpu() if torch.is_tensor(v) else v)
                               for k, v in self.strategy_state.items()},
            "appearance": self.appearance.state_dict(), "app_opt": self.app_opt.state_dict(),
            "cameras": self.cameras.state_dict(), "cam_opt": self.cam_opt.state_dict(),
            "rng": torch.get_rng_state(), "history": self.history, "train_seconds": self.train_seconds,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self) -> bool:
        path = self._ckpt_path()
        if path is None or not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("fingerprint") != self.cfg.fingerprint():
            return False
        for k, v in state["params"].items():
            self.params[k] = torch.nn.Parameter(v.to(self.device))
        self.optimizers = _optimizers(self.params, self.cfg, self.scene_scale)
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.strategy_state = {k: (v.to(self.device) if torch.is_tensor(v) else v)
                               for k, v in state["strategy_state"].items()}
        self.appearance.load_state_dict(state["appearance"])
        self.app_opt.load_state_dict(state["app_opt"])
        self.cameras.load_state_dict(state["cameras"])
        self.cam_opt.load_state_dict(state["cam_opt"])
        torch.set_rng_state(state["rng"].cpu())
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.train_seconds = float(state["train_seconds"])
        return True

    # ------------------------------------------------------------------ training ---------
    def _frame_for_step(self, step: int) -> int:
        n = len(self.train_ids)
        epoch = step // n
        if getattr(self, "_perm_epoch", None) != epoch:
            self._perm = np.random.default_rng(self.cfg.seed * 100_003 + epoch).permutation(n)
            self._perm_epoch = epoch
        return self.train_ids[self._perm[step % n]]

    def _means_lr(self, step: int) -> float:
        base = 1.6e-4 * self.scene_scale * self.cfg.lr_scale
        return base * (0.01 ** (step / max(1, self.cfg.steps)))

    def _target(self, i: int, downscale: float, alpha: bool = False) -> torch.Tensor:
        gt = (self.frames.get_alpha if alpha else self.frames.get)(i, self.device)
        if downscale == 1:
            return gt
        w, h = _scaled(gt.shape[1], gt.shape[0], downscale)
        if downscale == int(downscale):
            d = int(downscale)
            gt = gt[: h * d, : w * d].permute(2, 0, 1)[None]
            return torch.nn.functional.avg_pool2d(gt, d)[0].permute(1, 2, 0)
        gt = gt.permute(2, 0, 1)[None]
        return torch.nn.functional.interpolate(gt, size=(h, w), mode="area")[0].permute(1, 2, 0)

    def train_step(self, step: int) -> torch.Tensor:
        """One optimisation step; returns the loss as a 0-d tensor (not synchronised)."""
        cfg = self.cfg
        i = self._frame_for_step(step)
        ds = cfg.downscale_at(step)
        if ds > 1 and min(self.frames.width, self.frames.height) // ds < 16:
            ds = 1
        gt = self._target(i, ds)
        img, alpha, info = self.render([i], sh_degree=self.sh_degree_at(step), downscale=ds)
        img = img[0]
        if self.use_appearance:
            img = self.appearance(img, i)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
        loss = photometric_loss(img, gt, cfg.ssim_lambda)
        if cfg.alpha_lambda and self.frames.alphas is not None:
            loss = loss + cfg.alpha_lambda * torch.abs(alpha[0] - self._target(i, ds, alpha=True)).mean()
        if cfg.strategy == "mcmc":
            loss = loss + 0.01 * torch.sigmoid(self.params["opacities"]).mean() \
                + 0.01 * torch.exp(self.params["scales"]).mean()
        loss.backward()
        lr = self._means_lr(step)
        for g in self.optimizers["means"].param_groups:
            g["lr"] = lr
        adam_step(self.optimizers.values())
        if self.use_appearance:
            self.app_opt.step()
            self.app_opt.zero_grad(set_to_none=True)
        if cfg.refine_cameras:
            self.cam_opt.step()
            self.cam_opt.zero_grad(set_to_none=True)
        if cfg.strategy == "mcmc":
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step,
                                             info, lr=lr)
        else:
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step,
                                             info, packed=False)
        return loss.detach()

    def run(self) -> None:
        cfg, progress = self.cfg, self.progress
        if not self.train_ids:
            raise JobError("no training frames", code="bad_input")
        resumed = self.load_checkpoint()
        self.resumed_from = self.step  # steps this run did not train (restored from the checkpoint)
        progress.stage("train", f"resumed at step {self.step}" if resumed else "training")
        if self.step == 0:
            ev = self.evaluate()
            self.history.append({"step": 0, "psnr_holdout": ev["psnr"], "ssim_holdout": ev["ssim"]})
        t0 = time.perf_counter() - self.train_seconds
        last_loss = float("nan")
        work = self.work_done()
        while self.step < cfg.steps:
            loss = self.train_step(self.step)
            self.step += 1
            if self.step % 10 == 0 or self.step == cfg.steps or last_loss != last_loss or self.device.type == "cpu":
                last_loss = float(loss)
            self.train_seconds = time.perf_counter() - t0
            extra = {"step": self.step, "loss": round(last_loss, 6),
                     "num_gaussians": int(len(self.params["means"]))}
            if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                ev = self.evaluate([self.hold_ids[0]] if self.hold_ids else [self.train_ids[0]])
                extra["psnr_holdout"] = round(ev["psnr"], 3)
                self.history.append({"step": self.step, "psnr_holdout": ev["psnr"], "loss": last_loss,
                                     "num_gaussians": extra["num_gaussians"],
                                     "train_seconds": round(self.train_seconds, 3)})
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self.save_checkpoint()
            progress.update(work[self.step], f"step {self.step}/{cfg.steps} loss {last_loss:.4f}", **extra)
        self.train_seconds = time.perf_counter() - t0

    def work_done(self) -> np.ndarray:
        """Fraction of the training's work done after each step (index 0..steps): steps count in
        proportion to the pixels they render (coarse-to-fine steps are cheaper), so the
        progress' rate-based ETA holds across resolution changes."""
        w, h = self.frames.width, self.frames.height
        px = [max(1, int(w / d)) * max(1, int(h / d)) for d in map(self.cfg.downscale_at, range(self.cfg.steps))]
        cum = np.concatenate([[0.0], np.cumsum(px, dtype=np.float64)])
        return cum / cum[-1]


def train(solve: Solve, frames: FrameStore, cfg: TrainConfig, device: str | torch.device = "cpu",
          checkpoint_dir: Path | None = None, progress: Progress | None = None) -> TrainResult:
    """Train splats for ``solve`` on ``frames``; returns the splats, metrics and held-out strip."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    tr = Trainer(solve, frames, cfg, device, checkpoint_dir, progress)
    tr.run()
    (progress or Progress()).stage("evaluate")
    ev = tr.evaluate()
    init_psnr = tr.history[0]["psnr_holdout"] if tr.history and tr.history[0]["step"] == 0 else None
    with torch.no_grad():
        views = tr.viewmats(list(range(len(solve.sources)))).cpu().numpy().astype(np.float64)
    moved_t, moved_r = pose_change(solve.viewmats, views)
    metrics = {
        "psnr_holdout": ev["psnr"], "ssim_holdout": ev["ssim"],
        "psnr_init": init_psnr, "train_seconds": tr.train_seconds, "steps": cfg.steps,
        "resumed_from_step": tr.resumed_from, "steps_trained": cfg.steps - tr.resumed_from,
        "num_gaussians": int(len(tr.params["means"])),
        "peak_gpu_mem_gb": (torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "rasterizer": tr.backend, "strategy": cfg.strategy, "sh_degree": cfg.sh_degree,
        "holdout_frames": [solve.sources[i] for i in tr.hold_ids],
        "train_frames": len(tr.train_ids), "resolution": [frames.width, frames.height],
        "holdout_on_training_frames": not tr.hold_ids,
        "appearance": tr.use_appearance, "exposure_spread": tr.exposure_spread,
    }
    if cfg.refine_cameras:
        metrics["camera_refinement"] = {"max_translation": float(moved_t.max()),
                                        "mean_translation": float(moved_t.mean()),
                                        "max_rotation_deg": float(moved_r.max())}
    if tr.checkpoint_dir is not None and tr._ckpt_path().is_file():
        tr._ckpt_path().unlink()
        try:
            tr.checkpoint_dir.rmdir()
        except OSError:
            pass  # not empty: leave what else is there
    return TrainResult(splats=_as_splats(tr.params), metrics=metrics, viewmats=views,
                       holdout=tr.hold_ids, strip=ev.get("strip"), history=tr.history)
