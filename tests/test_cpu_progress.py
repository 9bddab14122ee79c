"""On a CPU-only machine: rate-based ETAs, progress lines in non-interactive logs, the training
size option and the warning before long CPU training."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backend.pipeline_cli import Bar
from backend.progress import Progress

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_stage_eta_follows_the_recent_rate():
    clock, events = Clock(), []
    p = Progress(callback=events.append, stages=[("a", 1), ("b", 1)], min_interval=0, clock=clock)
    p.stage("a")
    p.update(1.0)
    p.stage("b")
    for i in range(1, 41):  # 1 % of the stage per second for 40 s
        clock.t = i
        p.update(i / 100)
    assert events[-1]["extra"]["stage_eta_s"] == pytest.approx(60.0, abs=0.01)
    for i in range(1, 61):  # then 0.5 % per second: after the 30 s window only that rate counts
        clock.t = 40 + i
        p.update(0.40 + 0.005 * i)
    assert events[-1]["extra"]["stage_eta_s"] == pytest.approx(0.30 / 0.005, abs=0.01)
    # stage a took no time, so nothing is added for later stages; a stage without updates has no ETA
    assert events[-1]["eta_s"] == pytest.approx(60.0, abs=0.01)
    p.stage("a")
    clock.t += 100
    p.update(0.0)
    assert "stage_eta_s" not in events[-1].get("extra", {})


def test_overall_eta_adds_later_stages_at_the_pace_so_far():
    clock, events = Clock(), []
    p = Progress(callback=events.append, stages=[("a", 1), ("b", 1), ("c", 2)], min_interval=0, clock=clock)
    p.stage("a")
    clock.t = 10.0
    p.update(1.0)  # 10 s per unit of weight
    p.stage("b")
    clock.t = 15.0
    p.update(0.5)  # 5 s more in b; c (weight 2) is expected to take 20 s
    assert events[-1]["extra"]["stage_eta_s"] == pytest.approx(5.0)
    assert events[-1]["eta_s"] == pytest.approx(25.0)


def test_log_lines_every_interval_with_the_stage_eta_and_warnings():
    clock, out = Clock(), io.StringIO()
    bar = Bar("reconstruct", interval=5.0, stream=out, clock=clock)
    p = Progress(callback=bar, stages=[("load", 1), ("train", 9)], min_interval=0, clock=clock)
    p.stage("load")
    p.update(1.0)
    p.warn("training on the CPU is estimated at 2h00m")
    p.stage("train", "training")
    for i in range(1, 101):  # a step every 0.5 s: 50 s of training
        clock.t = 0.5 * i
        p.update(i / 200, f"step {i}/200")
    lines = out.getvalue().splitlines()
    assert "reconstruct: warning: training on the CPU is estimated at 2h00m" in lines
    train = [ln for ln in lines if ln.startswith("reconstruct: train ")]
    assert 10 <= len(train) <= 12  # the stage's first line, then one per 5 s of the 50 s
    last = train[-1]
    assert re.search(r"train 50% \(step 100/200\); stage eta 50s; overall \d+%, eta 50s; elapsed 50s", last), last


def test_non_tty_log_of_a_real_job_has_progress_lines_with_an_eta(tmp_path):
    from backend.pipelines.reconstruct.synthetic_solve import analytic_solve

    solve = analytic_solve(tmp_path / "solve", n_gaussians=200, n_frames=6, width=32, height=24, seed=1)
    log = tmp_path / "log.txt"
    env = {**os.environ, "SPLATSTAGE_PROGRESS_INTERVAL": "0.05", "SPLATSTAGE_CACHE": str(tmp_path / "cache")}
    with log.open("w") as err:
        proc = subprocess.run([sys.executable, "-m", "backend.cli", "reconstruct", str(solve), "-o",
                               str(tmp_path / "out"), "--steps", "40", "--device", "cpu", "--sh-degree", "0",
                               "--threads", "1", "--checkpoint-every", "0"],
                              cwd=REPO, env=env, stderr=err, stdout=subprocess.PIPE, text=True, timeout=600)
    text = log.read_text()
    assert proc.returncode == 0, text
    train = [ln for ln in text.splitlines() if ln.startswith("reconstruct: train ")]
    assert len(train) >= 3, text  # more than the stage-change line: lines while training
    # the ETA of the whole job on every training line (the stage's own needs a second of the
    # stage, which a fast machine may not give this job; its arithmetic is tested above)
    assert all(re.search(r"eta \d+(m\d\ds|s); elapsed", ln) for ln in train[1:]), text
    assert "\r" not in text  # no terminal bar in a log


def test_train_size_sets_the_training_resolution(tmp_path):
    import argparse

    from backend.jobs import composite as composite_job
    from backend.jobs import reconstruct as job
    from backend.pipelines.reconstruct.synthetic_solve import analytic_solve

    solve = analytic_solve(tmp_path / "solve", n_gaussians=200, n_frames=8, width=64, height=48, seed=1)
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    args = parser.parse_args([str(solve), "--steps", "5", "--device", "cpu", "--sh-degree", "0",
                              "--train-size", "32", "--checkpoint-dir", str(tmp_path / "ck")])
    res = job.run(job.params_from_args(args), tmp_path / "out", Progress())
    assert res.summary["resolution"] == [32, 24]

    parser = argparse.ArgumentParser()
    composite_job.add_arguments(parser)
    clip = REPO / "backend" / "samples" / "sample_clip.mp4"
    product = REPO / "backend" / "samples" / "product.glb"
    params = composite_job.params_from_args(parser.parse_args([str(clip), str(product), "--train-size", "320"]))
    assert composite_job.request_from_params(params).settings.train_max_size == 320
    assert composite_job.request_from_params({**params, "train_size": None}).settings.train_max_size == 1600
    with pytest.raises(Exception) as e:
        composite_job.request_from_params({**params, "train_size": 4})
    assert getattr(e.value, "code", None) == "bad_params"


def test_long_cpu_training_is_warned_with_a_size_that_fits():
    from backend.pipelines.reconstruct import TrainConfig
    from backend.pipelines.reconstruct import estimate as est

    cfg = TrainConfig(steps=7000, coarse_to_fine=True)
    per_px = 1e-6  # injected: seconds per pixel of a training step (about 1h20m in all here)
    events = []
    seconds = est.warn_if_slow(Progress(callback=events.append), cfg, 1600, 900, "--preview", per_pixel_s=per_px)
    warnings = [e["extra"]["warning"] for e in events if "warning" in e.get("extra", {})]
    assert len(warnings) == 1 and "--preview" in warnings[0], events
    assert seconds == pytest.approx(est.train_seconds(per_px, cfg, 1600, 900)) and seconds > est.LIMIT_S
    size = int(re.search(r"--train-size (\d+)", warnings[0]).group(1))
    fits = lambda n: est.train_seconds(per_px, cfg, round(1600 * n / 1600), round(900 * n / 1600))  # noqa: E731
    assert size % 16 == 0 and fits(size) <= est.LIMIT_S < fits(size + 16)
    # a short job gets no warning; a tiny one is not even timed
    events.clear()
    assert est.warn_if_slow(Progress(callback=events.append), TrainConfig(steps=60), 240, 135, "--preview",
                            per_pixel_s=per_px) < est.LIMIT_S
    assert not [e for e in events if "warning" in e.get("extra", {})]
    assert est.warn_if_slow(Progress(), TrainConfig(steps=20), 48, 36, "--preview") is None


def test_reconstruct_job_warns_before_it_starts_training(tmp_path, monkeypatch):
    from backend.jobs import reconstruct as job
    from backend.pipelines.reconstruct import estimate as est
    from backend.pipelines.reconstruct.synthetic_solve import analytic_solve

    solve = analytic_solve(tmp_path / "solve", n_gaussians=200, n_frames=8, width=64, height=48, seed=1)
    monkeypatch.setattr(est, "MAX_PIXEL_STEP_S", 1.0)  # time even this tiny job...
    monkeypatch.setattr(est, "measure_pixel_step_cost", lambda sh: 0.5)  # ...and inject a slow machine
    events = []
    params = {"solve_dir": str(solve), "steps": 3, "device": "cpu", "sh_degree": 0, "max_size": 64,
              "checkpoint_dir": str(tmp_path / "ck")}
    res = job.run(params, tmp_path / "out", Progress(callback=events.append))
    i = next(k for k, e in enumerate(events) if "warning" in e.get("extra", {}))
    assert "fewer --steps" in events[i]["extra"]["warning"]
    assert all(e["stage"] != "train" for e in events[:i])
    cfg = job.train_config(params, 3, "default", 0)
    assert res.summary["train_estimate_s"] == pytest.approx(est.train_seconds(0.5, cfg, 64, 48), abs=0.1)
    assert est.train_seconds(0.5, cfg, 64, 48) >= 0.5 * 3 * 16 * 12  # at least 3 steps at a quarter size


def test_training_progress_counts_steps_by_their_pixels():
    from backend.pipelines.reconstruct import TrainConfig
    from backend.pipelines.reconstruct.trainer import Trainer

    class Fake:  # what work_done reads
        frames = type("F", (), {"width": 64, "height": 48})()
        cfg = TrainConfig(steps=100, coarse_to_fine=True)

    work = Trainer.work_done(Fake())
    # 30 steps at 16x12, 30 at 32x24, 40 at 64x48
    total = 30 * 192 + 30 * 768 + 40 * 3072
    assert work[0] == 0.0 and work[-1] == pytest.approx(1.0)
    assert work[30] == pytest.approx(30 * 192 / total) and work[60] == pytest.approx((30 * 192 + 30 * 768) / total)
    assert json.dumps(float(work[50]))
