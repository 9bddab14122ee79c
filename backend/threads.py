"""Thread limits for stages made of many small native calls.

NumPy's OpenBLAS starts a thread pool sized to the machine and hands work to it even for tiny
problems (each 6x6 solve of a batched ``np.linalg.inv`` wakes its threads). Each hand-off waits
until the woken thread actually runs; on an idle machine that is microseconds, but while
another process keeps every core busy it is a scheduler time slice, and a stage that makes
thousands of such calls slows by an order of magnitude. The camera solve's NumPy work is all
small (per-track patches, 6x6 systems, per-frame poses), so it runs with BLAS on one thread;
its large parallel work is pycolmap's, which keeps its own threads.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with every loaded BLAS library limited to one thread (restored after)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def blas_threads() -> list[int]:
    """The thread counts of the loaded BLAS libraries (for checks and reports)."""
    from threadpoolctl import threadpool_info

    return [int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"]
