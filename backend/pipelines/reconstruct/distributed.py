"""Multi-GPU training on one host with gsplat's distributed rasterization.

``reconstruct_distributed(..., gpus=N)`` starts N ranks, one process and one GPU each, as
torchrun would (``python -m backend.pipelines.reconstruct.distributed RUN_DIR RANK``, NCCL over
a loopback TCP rendezvous), watches them, forwards rank 0's progress and stops them all if one
fails. Every rank owns a shard of the Gaussians (every N-th initial point, as in gsplat's example
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
metrics. Checkpoint/resume is single-GPU only.

On the CPU (the tests) ranks talk over gloo and render with the PyTorch rasterizer: every rank
gathers all Gaussians (:class:`GatherRows`), which gives the same images and gradients as
gsplat's exchange with more traffic.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from backend.progress import JobError, Progress

from ..splats_io import Splats, read_ply
from .adjust import pose_change
from .frames import FrameStore, load_frames
from .outputs import splat_payload, write_outputs, write_refined_cameras
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

    def _rasterize(self, means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs):
        parts = [means, quats, scales, opacities, colors]
        if self.world == 1:
            return super()._rasterize(*parts, viewmats, Ks, width, height, **kwargs)
        if self.backend == "gsplat":
            return super()._rasterize(*parts, viewmats, Ks, width, height, distributed=True, **kwargs)
        n = len(means)
        counts = gather_counts(n, self.world, self.device)
        widths = [t[0].numel() for t in parts]
        flat = GatherRows.apply(torch.cat([t.reshape(n, -1) for t in parts], 1), counts)
        full = [c.reshape(-1, *t.shape[1:]) for c, t in zip(flat.split(widths, 1), parts)]
        img, alpha, info = super()._rasterize(*full, viewmats, Ks, width, height, **kwargs)
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
class _Events:
    """What a rank tells the launcher, as files in the run folder: rank 0's progress events
    (JSON lines), a rank's JobError, rank 0's result."""

    def __init__(self, run_dir: Path, rank: int):
        self.run_dir, self.rank = Path(run_dir), rank

    def progress(self, event: dict) -> None:
        with open(self.run_dir / "progress.jsonl", "a") as f:
            f.write(json.dumps(event) + "\n")

    def error(self, exc: JobError) -> None:
        doc = {"message": exc.message, "code": exc.code, "hint": exc.hint}
        (self.run_dir / f"error-rank{self.rank}.json").write_text(json.dumps(doc))

    def done(self, files: list[str], metrics: dict) -> None:
        tmp = self.run_dir / "done.json.tmp"
        tmp.write_text(json.dumps({"files": files, "metrics": metrics}))
        os.replace(tmp, self.run_dir / "done.json")


def rank_main(run_dir: str | Path, rank: int) -> None:
    """Entry of one rank's process: reads the run folder the launcher wrote, trains its shard."""
    run_dir = Path(run_dir)
    with open(run_dir / "job.pkl", "rb") as f:
        job = pickle.load(f)
    world, cfg = job["world"], job["cfg"]
    device = torch.device(f"cuda:{rank}") if job["device"] == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    events = _Events(run_dir, rank)
    frames = _load_frames(run_dir / "frames.npy", device, job)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=job["init_method"],
                            rank=rank, world_size=world)
    try:
        dist.barrier()
        _train_rank(rank, world, device, frames, job, events)
    except JobError as exc:
        events.error(exc)
        raise
    finally:
        dist.destroy_process_group()


def _load_frames(path: Path, device: torch.device, job: dict) -> FrameStore:
    """The launcher's frames, on this rank's GPU when they fit ``frames_budget_gb`` (copied over
    one frame at a time), else in pinned host memory."""
    arr = np.load(path, mmap_mode="r")
    on = device.type == "cpu" or arr.nbytes <= job["frames_budget_gb"] * 1e9
    if device.type == "cuda" and on:
        images = torch.empty(arr.shape, dtype=torch.uint8, device=device)
        for i in range(len(arr)):
            images[i].copy_(torch.from_numpy(np.array(arr[i])))
    else:
        images = torch.from_numpy(np.array(arr))
        if device.type == "cuda":
            images = images.pin_memory()
    return FrameStore(images=images, K=job["K"], width=job["width"], height=job["height"], on_device=on)


def _train_rank(rank: int, world: int, device: torch.device, frames: FrameStore, job: dict,
                events: _Events) -> None:
    progress = Progress(callback=events.progress) if rank == 0 else Progress()
    cfg: TrainConfig = job["cfg"]
    solve: Solve = job["solve"]
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
    dist.barrier()  # every shard has arrived before any rank leaves the group
    if rank != 0:
        return
    progress.stage("write", "writing splats")
    parts = [s["splats"] for s in shards]
    splats = Splats(*(np.concatenate([getattr(p, k) for p in parts])
                      for k in ("means", "scales", "quats", "opacities", "sh0", "shN")))
    moved_t, moved_r = pose_change(solve.viewmats, views)
    peaks = [s["peak_gpu_mem_gb"] for s in shards]
    cuda = device.type == "cuda"
    metrics = {
        "psnr_holdout": ev["psnr"], "ssim_holdout": ev["ssim"], "psnr_init": init_psnr,
        "train_seconds": tr.train_seconds, "steps": cfg.steps, "steps_per_rank": tr.cfg.steps,
        "num_gaussians": len(splats), "gaussians_per_rank": [len(p) for p in parts],
        "world_size": world, "peak_gpu_mem_gb": max(peaks) if cuda else None,
        "peak_gpu_mem_gb_per_rank": peaks if cuda else None,
        "device": torch.cuda.get_device_name(device) if cuda else str(device),
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
    events.done(files, metrics)


# ------------------------------------------------------------------ the launcher ---------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ProgressTail:
    """Forwards rank 0's progress events (appended to progress.jsonl) to the caller's Progress."""

    def __init__(self, path: Path, progress: Progress):
        self.path, self.progress, self.offset, self.stage = path, progress, 0, None

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path) as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind("\n") + 1
        self.offset += len(chunk[:end].encode())
        for line in chunk[:end].splitlines():
            ev = json.loads(line)
            if ev.get("stage") and ev["stage"] != self.stage:
                self.stage = ev["stage"]
                self.progress.stage(ev["stage"], ev.get("message", ""))
            else:
                self.progress.update(ev.get("stage_fraction", 0.0), ev.get("message", ""),
                                     **(ev.get("extra") or {}))


def _die_with_parent() -> None:
    """In a rank, before exec: on Linux, receive SIGTERM when the launcher dies (a killed job
    must not leave ranks holding GPUs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _failure(run_dir: Path, procs: list[subprocess.Popen]) -> JobError:
    """The JobError a rank reported, else the last line of the first failed rank's log."""
    for r in range(len(procs)):
        err = run_dir / f"error-rank{r}.json"
        if err.is_file():
            doc = json.loads(err.read_text())
            return JobError(doc["message"], code=doc["code"], hint=doc["hint"])
    failed = [r for r, p in enumerate(procs) if p.returncode not in (0, None, -signal.SIGTERM)] or [0]
    log = (run_dir / f"rank{failed[0]}.log").read_text(errors="replace")
    sys.stderr.write(f"--- rank {failed[0]} of the multi-GPU training ---\n{log[-6000:]}\n")
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    return JobError(f"multi-GPU training failed on rank {failed[0]}: {lines[-1] if lines else 'no output'}",
                    code="train_failed")


def train_distributed(solve: Solve, frames: FrameStore, cfg: TrainConfig, world_size: int,
                      out_dir: str | Path, device: str = "cuda", frames_budget_gb: float = 4.0,
                      progress: Progress | None = None) -> tuple[list[str], dict]:
    """Train on ``world_size`` ranks, one process each (``device`` "cuda": one GPU each, NCCL;
    "cpu": gloo), started like torchrun would and watched until they end; write the outputs
    into ``out_dir``. ``frames`` are on the CPU; each rank moves them to its GPU within
    ``frames_budget_gb``. Returns ``(files, metrics)``."""
    progress = progress or Progress()
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    with tempfile.TemporaryDirectory(prefix="splatstage-ranks-") as tmp:
        run_dir = Path(tmp)
        np.save(run_dir / "frames.npy", frames.images.cpu().numpy())
        job = {"solve": solve, "cfg": cfg, "device": device, "out_dir": str(Path(out_dir).resolve()),
               "frames_budget_gb": frames_budget_gb, "world": world_size, "K": frames.K,
               "width": frames.width, "height": frames.height,
               "init_method": f"tcp://127.0.0.1:{_free_port()}"}
        with open(run_dir / "job.pkl", "wb") as f:
            pickle.dump(job, f)
        procs, logs = [], []
        try:
            for r in range(world_size):
                logs.append(open(run_dir / f"rank{r}.log", "wb"))
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", __name__, str(run_dir), str(r)], env=env, cwd=str(root),
                    stdout=logs[-1], stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None))
            tail = _ProgressTail(run_dir / "progress.jsonl", progress)
            while True:
                tail.poll()
                codes = [p.poll() for p in procs]
                if any(c not in (None, 0) for c in codes):
                    _stop(procs)
                    raise _failure(run_dir, procs)
                if all(c == 0 for c in codes):
                    break
                time.sleep(0.2)
            tail.poll()
        except BaseException:
            _stop(procs)
            raise
        finally:
            for f in logs:
                f.close()
        done = run_dir / "done.json"
        if not done.is_file():
            raise JobError("multi-GPU training ended without rank 0's result", code="train_failed")
        doc = json.loads(done.read_text())
    return doc["files"], doc["metrics"]


def reconstruct_distributed(solve_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, gpus: int,
                            device: str = "cuda", input_path: str | Path | None = None,
                            max_size: int | None = 1600, frames_budget_gb: float = 4.0,
                            progress: Progress | None = None):
    """:func:`backend.pipelines.reconstruct.reconstruct` on ``gpus`` GPUs of this host.
    Returns ``(files, payload arrays, metrics)``."""
    check_gpus(gpus, device)
    progress = progress or Progress()
    from backend.pipelines.reconstruct import load_solve_and_frames

    solve, _, frames = load_solve_and_frames(solve_dir, input_path, max_size, "cpu", frames_budget_gb, progress)
    files, metrics = train_distributed(solve, frames, cfg, gpus, out_dir, device=device,
                                       frames_budget_gb=frames_budget_gb, progress=progress)
    return files, splat_payload(read_ply(Path(out_dir) / "splats.ply")), metrics


__all__ = ["check_gpus", "shard", "frame_share", "rank_config", "GatherRows", "merge_owned_rows",
           "ShardedStrategy", "DistributedTrainer", "train_distributed", "reconstruct_distributed",
           "rank_main"]


if __name__ == "__main__":
    rank_main(sys.argv[1], int(sys.argv[2]))
