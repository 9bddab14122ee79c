"""Multi-GPU training on one host with gsplat's distributed rasterization.

``reconstruct_distributed(..., gpus=N)`` starts N ranks (one process and one GPU each, NCCL).
Every rank owns a shard of the Gaussians (every N-th initial point, as in gsplat's example
trainer) and a share of the training frames (every N-th one). At each step every rank renders
one of its own frames with ``gsplat.rasterization(distributed=True)``, which exchanges the
projected Gaussians so that each image sees all ranks' Gaussians and the gradients flow back to
their owners (Zhao et al. 2024, "On Scaling Up 3D Gaussian Splatting Training"); each rank
densifies its own shard. N ranks see N images a step, so a run of ``steps`` images takes
``ceil(steps / N)`` steps, with the refinement, SH and learning-rate schedules scaled to that
and the Gaussians' learning rates scaled by sqrt(N) (gsplat's batch-size rule; Adam's betas and
eps as gsplat adjusts them). Per-frame colour and camera corrections are trained only by the
rank that owns the frame and are merged across ranks before every evaluation. Rank 0 gathers
the shards and writes the same outputs as single-GPU training, with ``world_size`` in the
metrics.

On the CPU (the tests) ranks talk over gloo and render with the PyTorch rasterizer: every rank
gathers all Gaussians (:class:`GatherRows`), which gives the same images and gradients as
gsplat's exchange with more traffic.
"""
from __future__ import annotations

import math
import queue as queue_mod
import socket
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from backend.progress import Cancelled, JobError, Progress

from ..splats_io import Splats, read_ply
from .adjust import pose_change
from .frames import FrameStore, load_frames
from .outputs import splat_payload, write_outputs, write_refined_cameras
from .raster import rasterize
from .scene import Solve, load_solve
from .trainer import Trainer, TrainConfig, _as_splats, _optimizers


def check_gpus(gpus, device: str) -> None:
    """One-line JobErrors for a ``--gpus`` request this machine cannot serve."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise JobError(f"reconstruct: --gpus must be a positive integer, got {gpus!r}", "bad_params")
    if gpus == 1:
        return
    if device != "cuda":
        raise JobError(f"reconstruct: --gpus {gpus} needs --device cuda (multi-GPU training runs on "
                       f"CUDA GPUs only)", "bad_params")
    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > present:
        raise JobError(f"reconstruct: --gpus {gpus} asked for, but this machine has {present} CUDA GPU"
                       f"{'' if present == 1 else 's'}", "bad_params")


def shard(n: int, rank: int, world: int) -> np.ndarray:
    """Indices of the ``n`` initial Gaussians that ``rank`` owns (every ``world``-th one)."""
    return np.arange(rank, n, world)


def frame_share(train_ids: list[int], rank: int, world: int) -> list[int]:
    """The training frames ``rank`` renders (every ``world``-th one)."""
    return list(train_ids[rank::world])


def rank_config(cfg: TrainConfig, world: int) -> TrainConfig:
    """A rank's schedule: ``world`` images a step, so ``ceil(steps / world)`` steps, with the SH
    and evaluation intervals scaled alike and the MCMC cap split between the ranks."""
    if world == 1:
        return replace(cfg, checkpoint_every=0)
    return replace(cfg, steps=math.ceil(cfg.steps / world), checkpoint_every=0,
                   sh_degree_interval=max(1, round(cfg.sh_degree_interval / world)),
                   eval_every=max(1, round(cfg.eval_every / world)) if cfg.eval_every else 0,
                   cap_max=max(1, cfg.cap_max // world))


# ------------------------------------------------------------------ collectives ---------
def gather_counts(n: int, world: int, device: torch.device) -> list[int]:
    if world == 1:
        return [n]
    t = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [int(x) for x in out]


class GatherRows(torch.autograd.Function):
    """Rows of every rank, concatenated in rank order (shards may differ in length). The
    gradient of a rank's rows is the sum over all ranks' gradients of the gathered tensor, as
    when each rank's loss is back-propagated into the owner's Gaussians."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        rank, m = dist.get_rank(), max(counts)
        pad = x.new_zeros((m, *x.shape[1:]))
        pad[:len(x)] = x
        bufs = [torch.empty_like(pad) for _ in counts]
        dist.all_gather(bufs, pad)
        ctx.counts, ctx.rank = list(counts), rank
        return torch.cat([b[:c] for b, c in zip(bufs, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.contiguous().clone()
        dist.all_reduce(g)
        off = sum(ctx.counts[:ctx.rank])
        return g[off:off + ctx.counts[ctx.rank]], None


def merge_owned_rows(tensors: list[torch.Tensor], owned: torch.Tensor, trained: torch.Tensor) -> None:
    """In place on every rank: rows (frames) in ``owned`` take this rank's values, rows trained by
    another rank take that rank's, rows trained by nobody (held-out frames) keep their values."""
    for t in tensors:
        shape = (-1,) + (1,) * (t.dim() - 1)
        mine = owned.to(t.dtype).view(shape)
        anyone = trained.to(t.dtype).view(shape)
        with torch.no_grad():
            total = (t * mine).contiguous()
            dist.all_reduce(total)
            t.copy_(total + t * (1.0 - anyone))


class ShardedStrategy:
    """Hands a gathered render's screen-space statistics to a gsplat strategy the way gsplat's
    distributed rasterization does: one row per camera of every rank, one column per Gaussian
    of this rank's shard."""

    def __init__(self, inner, rank: int, world: int):
        self.inner, self.rank, self.world = inner, rank, world

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step_pre_backward(self, params, optimizers, state, step, info):
        self.inner.step_pre_backward(params, optimizers, state, step, info)

    def step_post_backward(self, params, optimizers, state, step, info, **kwargs):
        counts = info.get("shard_counts")
        if counts is not None and info["means2d"].grad is not None \
                and step < getattr(self.inner, "refine_stop_iter", 0):
            info = self.local_info(info, counts)
        self.inner.step_post_backward(params, optimizers, state, step, info, **kwargs)

    def local_info(self, info: dict, counts: list[int]) -> dict:
        off, n = sum(counts[:self.rank]), counts[self.rank]
        rows = []
        for t in (info["means2d"].grad, info["radii"]):
            parts = [torch.empty_like(t) for _ in range(self.world)]
            dist.all_gather(parts, t.contiguous())
            rows.append(torch.cat(parts)[:, off:off + n])
        means2d = torch.zeros_like(rows[0], requires_grad=True)
        means2d.grad = rows[0].contiguous()
        out = dict(info)
        out.update(means2d=means2d, radii=rows[1].contiguous(), shard_counts=None)
        return out


# ------------------------------------------------------------------ the rank's trainer ---
class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one rank: its shard of the Gaussians, its share of the frames."""

    def __init__(self, solve: Solve, frames: FrameStore, cfg: TrainConfig, device: torch.device,
                 rank: int, world: int, progress: Progress | None = None):
        super().__init__(solve, frames, cfg, device, checkpoint_dir=None, progress=progress)
        self.rank, self.world = rank, world
        self.own_frames = frame_share(self.train_ids, rank, world)
        if not self.own_frames:
            raise JobError(f"{len(self.train_ids)} training frames cannot be shared by {world} GPUs",
                           code="bad_input")
        if world == 1:
            return
        keep = torch.as_tensor(shard(len(self.params["means"]), rank, world), device=device)
        self.params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.detach()[keep].clone()) for k, v in self.params.items()})
        self.optimizers = _optimizers(self.params, cfg, self.scene_scale)
        gain = math.sqrt(world)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] *= gain
                group["eps"] = 1e-15 / gain
                group["betas"] = (max(0.0, 1 - world * 0.1), max(0.0, 1 - world * 0.001))
        self.strategy.check_sanity(self.params, self.optimizers)
        if self.backend != "gsplat":
            self.strategy = ShardedStrategy(self.strategy, rank, world)
        n = len(solve.sources)
        self.owned = torch.zeros(n, dtype=torch.bool, device=device)
        self.owned[self.own_frames] = True
        self.trained = torch.zeros(n, dtype=torch.bool, device=device)
        self.trained[self.train_ids] = True

    def _frame_for_step(self, step: int) -> int:
        own, n = self.own_frames, len(self.own_frames)
        perm = np.random.default_rng(self.cfg.seed * 100_003 + step // n + 7919 * self.rank).permutation(n)
        return own[perm[step % n]]

    def _means_lr(self, step: int) -> float:
        return super()._means_lr(step) * math.sqrt(self.world)

    def render(self, frames: list[int], sh_degree: int | None = None, render_mode: str = "RGB",
               downscale: int = 1):
        if self.world == 1:
            more = {"downscale": downscale} if downscale != 1 else {}
            return super().render(frames, sh_degree, render_mode, **more)
        p = self.params
        deg = self.cfg.sh_degree if sh_degree is None else sh_degree
        parts = [p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                 torch.cat([p["sh0"], p["shN"]], 1)]
        views, Ks = self.viewmats(frames), self.Ks[frames]
        size = (self.frames.width, self.frames.height)
        if downscale > 1:
            size = (size[0] // downscale, size[1] // downscale)
            Ks = Ks.clone()
            Ks[:, :2, :] /= downscale
        if self.backend == "gsplat":
            return rasterize(*parts, views, Ks, *size, sh_degree=deg, render_mode=render_mode,
                             backend="gsplat", distributed=True)
        n = len(parts[0])
        counts = gather_counts(n, self.world, self.device)
        widths = [t[0].numel() for t in parts]
        flat = GatherRows.apply(torch.cat([t.reshape(n, -1) for t in parts], 1), counts)
        cols = flat.split(widths, 1)
        full = [c.reshape(-1, *t.shape[1:]) for c, t in zip(cols, parts)]
        img, alpha, info = rasterize(*full, views, Ks, *size, sh_degree=deg, render_mode=render_mode,
                                     backend=self.backend)
        info["shard_counts"] = counts
        return img, alpha, info

    def merge_frame_params(self) -> None:
        if self.world > 1:
            merge_owned_rows([self.appearance.A, self.appearance.b, self.cameras.delta],
                             self.owned, self.trained)

    def evaluate(self, frames: list[int] | None = None, compensate: bool = True) -> dict:
        self.merge_frame_params()
        return super().evaluate(frames, compensate)


# ------------------------------------------------------------------ one rank -------------
def _rank_device(rank: int, device: str) -> torch.device:
    return torch.device(f"cuda:{rank}") if device == "cuda" else torch.device("cpu")


def _rank_main(rank: int, world: int, init_method: str, job: dict) -> None:
    """Entry of each rank's process."""
    device = _rank_device(rank, job["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif job["cfg"].cpu_threads:
        torch.set_num_threads(job["cfg"].cpu_threads)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=init_method,
                            rank=rank, world_size=world)
    out: queue_mod.Queue = job["queue"]
    try:
        dist.barrier()
        _train_rank(rank, world, device, job)
    except JobError as exc:
        out.put(("error", rank, exc.message, exc.code, exc.hint))
        raise
    finally:
        dist.destroy_process_group()


def _frames_on(frames: FrameStore, device: torch.device, budget_gb: float) -> FrameStore:
    if device.type != "cuda":
        return frames
    on = frames.images.numel() <= budget_gb * 1e9
    images = frames.images.to(device) if on else frames.images.pin_memory()
    return replace(frames, images=images, on_device=on)


def _train_rank(rank: int, world: int, device: torch.device, job: dict) -> None:
    q = job["queue"]
    progress = Progress(callback=lambda ev: q.put(("progress", ev))) if rank == 0 else Progress()
    cfg: TrainConfig = job["cfg"]
    solve: Solve = job["solve"]
    frames = _frames_on(job["frames"], device, job["frames_budget_gb"])
    tr = DistributedTrainer(solve, frames, rank_config(cfg, world), device, rank, world, progress)
    tr.run()
    progress.stage("evaluate")
    ev = tr.evaluate()
    init_psnr = tr.history[0]["psnr_holdout"] if tr.history and tr.history[0]["step"] == 0 else None
    with torch.no_grad():
        views = tr.viewmats(list(range(len(solve.sources)))).cpu().numpy().astype(np.float64)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    mine = {"splats": _as_splats(tr.params), "peak_gpu_mem_gb": peak}
    shards = [None] * world if rank == 0 else None
    dist.gather_object(mine, shards, dst=0)
    if rank != 0:
        return
    progress.stage("write", "writing splats")
    parts = [s["splats"] for s in shards]
    splats = Splats(*(np.concatenate([getattr(p, k) for p in parts])
                      for k in ("means", "scales", "quats", "opacities", "sh0", "shN")))
    moved_t, moved_r = pose_change(solve.viewmats, views)
    peaks = [s["peak_gpu_mem_gb"] for s in shards]
    metrics = {
        "psnr_holdout": ev["psnr"], "ssim_holdout": ev["ssim"], "psnr_init": init_psnr,
        "train_seconds": tr.train_seconds, "steps": cfg.steps, "steps_per_rank": tr.cfg.steps,
        "num_gaussians": len(splats), "gaussians_per_rank": [len(p) for p in parts],
        "world_size": world,
        "peak_gpu_mem_gb": max(peaks) if device.type == "cuda" else None,
        "peak_gpu_mem_gb_per_rank": peaks if device.type == "cuda" else None,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "rasterizer": tr.backend, "strategy": cfg.strategy, "sh_degree": cfg.sh_degree,
        "holdout_frames": [solve.sources[i] for i in tr.hold_ids],
        "train_frames": len(tr.train_ids), "resolution": [frames.width, frames.height],
        "holdout_on_training_frames": not tr.hold_ids, "frames_on_device": frames.on_device,
    }
    if cfg.refine_cameras:
        metrics["camera_refinement"] = {"max_translation": float(moved_t.max()),
                                        "mean_translation": float(moved_t.mean()),
                                        "max_rotation_deg": float(moved_r.max())}
    out_dir = Path(job["out_dir"])
    files = write_outputs(out_dir, splats, metrics, ev.get("strip"))
    if cfg.refine_cameras:
        write_refined_cameras(solve, views, out_dir / "cameras_refined.json")
        files.append("cameras_refined.json")
    q.put(("done", files, metrics))


# ------------------------------------------------------------------ the launcher ---------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay(q, progress: Progress, state: dict) -> None:
    """Forward rank 0's progress events; keep errors and the final result in ``state``."""
    while True:
        try:
            msg = q.get_nowait()
        except queue_mod.Empty:
            return
        if msg[0] == "progress":
            ev = msg[1]
            if ev.get("stage") and ev["stage"] != state.get("stage"):
                state["stage"] = ev["stage"]
                progress.stage(ev["stage"], ev.get("message", ""))
            else:
                progress.update(ev.get("stage_fraction", 0.0), ev.get("message", ""), **(ev.get("extra") or {}))
        elif msg[0] == "error":
            state.setdefault("error", msg)
        elif msg[0] == "done":
            state["done"] = msg


def train_distributed(solve: Solve, frames: FrameStore, cfg: TrainConfig, world_size: int,
                      out_dir: str | Path, device: str = "cuda", frames_budget_gb: float = 4.0,
                      progress: Progress | None = None) -> tuple[list[str], dict]:
    """Train on ``world_size`` ranks (``device`` "cuda": one GPU each over NCCL; "cpu": gloo) and
    write the outputs into ``out_dir``. ``frames`` are on the CPU; each rank moves them to its
    GPU within ``frames_budget_gb``. Returns ``(files, metrics)``."""
    import torch.multiprocessing as mp

    progress = progress or Progress()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    frames.images.share_memory_()
    job = {"solve": solve, "frames": frames, "cfg": cfg, "device": device, "out_dir": str(out_dir),
           "frames_budget_gb": frames_budget_gb, "queue": q}
    init = f"tcp://127.0.0.1:{_free_port()}"
    pc = mp.start_processes(_rank_main, args=(world_size, init, job), nprocs=world_size, join=False,
                            start_method="spawn")
    state: dict = {}
    try:
        while not pc.join(timeout=0.25):
            _relay(q, progress, state)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
        time.sleep(0.2)
        _relay(q, progress, state)
        if "error" in state:
            _, rank, message, code, hint = state["error"]
            raise JobError(message, code=code, hint=hint) from None
        last = [ln for ln in str(exc).strip().splitlines() if ln.strip()][-1:] or ["no message"]
        raise JobError(f"multi-GPU training failed: {last[0].strip()}", code="train_failed") from None
    except (Cancelled, KeyboardInterrupt):
        for p in pc.processes:
            if p.is_alive():
                p.terminate()
        for p in pc.processes:
            p.join(10)
        raise
    deadline = time.monotonic() + 30
    while "done" not in state and time.monotonic() < deadline:
        _relay(q, progress, state)
        time.sleep(0.05)
    if "done" not in state:
        raise JobError("multi-GPU training ended without rank 0's result", code="train_failed")
    _, files, metrics = state["done"]
    return files, metrics


def reconstruct_distributed(solve_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, gpus: int,
                            device: str = "cuda", input_path: str | Path | None = None,
                            max_size: int | None = 1600, frames_budget_gb: float = 4.0,
                            progress: Progress | None = None):
    """:func:`backend.pipelines.reconstruct.reconstruct` on ``gpus`` GPUs of this host.
    Returns ``(files, payload arrays, metrics)``."""
    check_gpus(gpus, device)
    progress = progress or Progress()
    progress.stage("load", "reading the camera solve")
    solve = load_solve(solve_dir)
    src = Path(input_path) if input_path else solve.input_path()
    if src is None:
        raise JobError(f"{solve.path} does not record its footage; pass the video or image folder",
                       code="bad_input")
    frames = load_frames(src, solve.sources, solve.width, solve.height, solve.K, solve.k1, solve.k2,
                         max_size=max_size, device="cpu", progress=progress)
    files, metrics = train_distributed(solve, frames, cfg, gpus, out_dir, device=device,
                                       frames_budget_gb=frames_budget_gb, progress=progress)
    return files, splat_payload(read_ply(Path(out_dir) / "splats.ply")), metrics


__all__ = ["check_gpus", "shard", "frame_share", "rank_config", "GatherRows", "merge_owned_rows",
           "ShardedStrategy", "DistributedTrainer", "train_distributed", "reconstruct_distributed"]
