"""Busy machines: the camera solve's small NumPy work does not go through BLAS thread pools.

A thread pool's hand-off waits for a scheduler slot whenever another process holds the cores;
the affine tracker once made three OpenBLAS hand-offs per new track (a batched 6x6 inverse),
which slowed tracking by an order of magnitude beside a CPU-bound process
(benchmarks/poses_busy.py measures the solve alone and beside one). The templates' accuracy
is tested in test_affine_klt.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.pipelines.poses import affine_klt
from backend.threads import blas_threads, single_threaded_blas

REPO = Path(__file__).resolve().parents[1]


def _other_threads_switches() -> int:
    """Context switches so far of this process' threads other than the calling one."""
    total, me = 0, str(threading.get_native_id())
    for t in os.listdir("/proc/self/task"):
        if t == me:
            continue
        status = Path(f"/proc/self/task/{t}/status").read_text()
        for key in ("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"):
            total += int(status.split("\n" + key)[1].split()[0]) if ("\n" + key) in status else 0
    return total


def _textured(seed: int = 0, w: int = 320, h: int = 240) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 1.5)


def template_switches() -> int:
    """Context switches of the other threads of this process while 1500 affine templates are
    built (run in a fresh process, so the only other threads are the libraries' own pools)."""
    img = _textured(4, 640, 480)
    rng = np.random.default_rng(5)
    centres = rng.uniform(12, [628, 468], (1500, 2)).astype(np.float32)
    affine_klt.make_templates(img, centres[:10], 5)
    before = _other_threads_switches()
    affine_klt.make_templates(img, centres, 5)
    return _other_threads_switches() - before


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_template_building_does_not_hand_work_to_blas_threads():
    if max(blas_threads() or [1]) < 2:
        pytest.skip("BLAS runs on one thread here: there is no pool to hand work to")
    # a fresh process: threads that earlier tests left in this one (servers, clients' heartbeats)
    # switch on their own and are not what is measured
    code = "from tests.test_busy_machine import template_switches; print(template_switches())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    switches = int(out.stdout.split()[-1])
    # a batched np.linalg.inv made ~3 BLAS hand-offs per track (4500 here); a few stray
    # switches of unrelated threads (timers, other libraries' pools) are allowed
    assert switches < 300, switches


def test_the_solve_runs_with_blas_on_one_thread(monkeypatch):
    from backend.pipelines.poses import pipeline

    seen = []
    monkeypatch.setattr(pipeline, "_solve", lambda *a: seen.append(blas_threads()))
    outside = blas_threads()
    pipeline.solve("unused.mp4")
    assert seen and seen[0] and all(n == 1 for n in seen[0])
    assert blas_threads() == outside  # restored afterwards
    with single_threaded_blas():
        assert all(n == 1 for n in blas_threads())
