"""Progress reporting and cancellation shared by every pipeline.

A pipeline receives a :class:`Progress` and calls ``stage()`` when it enters a named stage,
``update()`` as it advances within it and ``check()`` at safe points (``update`` checks too).
In-process callers pass a callback (the CLI draws a bar); the job server forwards the events
to clients. Cancellation raises :class:`Cancelled` inside the pipeline.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable


class Cancelled(Exception):
    """The job was cancelled; raised from ``Progress.check``."""


class JobError(Exception):
    """A user-facing failure: a one-line ``message``, a stable ``code`` and an optional ``hint``.

    Pipelines raise this for bad input (corrupt video, too few frames, ...). Anything else that
    escapes a pipeline is reported as ``code="internal"``.
    """

    def __init__(self, message: str, code: str = "job_failed", hint: str = ""):
        super().__init__(message)
        self.message = " ".join(str(message).split())
        self.code = code
        self.hint = hint


class Progress:
    """Stage-aware progress with an ETA.

    ``stages`` is an optional list of ``(name, weight)``; the overall fraction then advances
    through the stages in proportion to their weights. Unknown stage names get no weight.
    """

    def __init__(
        self,
        callback: Callable[[dict], None] | None = None,
        cancel_event: threading.Event | None = None,
        stages: Iterable[tuple[str, float]] | None = None,
        min_interval: float = 0.1,
    ):
        self._callback = callback
        self._cancel = cancel_event or threading.Event()
        self.set_stages(stages or ())
        self._stage = ""
        self._stage_fraction = 0.0
        self._start = time.monotonic()
        self._last_emit = 0.0
        self._min_interval = min_interval
        self.fraction = 0.0

    def set_stages(self, stages: Iterable[tuple[str, float]]) -> None:
        """Declare the pipeline's stages and their weights (before the first ``stage()``)."""
        self._weights: dict[str, float] = {}
        self._offsets: dict[str, float] = {}
        total = 0.0
        for name, weight in stages:
            self._offsets[name] = total
            self._weights[name] = float(weight)
            total += float(weight)
        self._total = total

    @property
    def has_stages(self) -> bool:
        return self._total > 0

    # -- cancellation -------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled")

    # -- reporting ----------------------------------------------------------------------
    def stage(self, name: str, message: str = "") -> None:
        self.check()
        self._stage = name
        self._stage_fraction = 0.0
        self._emit(message or name, force=True)

    def update(self, fraction: float, message: str = "", **extra) -> None:
        """Report ``fraction`` (0..1) of the current stage done; raises Cancelled if asked."""
        self.check()
        f = float(fraction)
        self._stage_fraction = 0.0 if f != f else min(max(f, 0.0), 1.0)
        self._emit(message, force=False, extra=extra)

    def _overall(self) -> float:
        if self._total > 0 and self._stage in self._weights:
            off = self._offsets[self._stage]
            return (off + self._weights[self._stage] * self._stage_fraction) / self._total
        if self._total > 0:
            return self.fraction
        return self._stage_fraction

    def _emit(self, message: str, force: bool, extra: dict | None = None) -> None:
        self.fraction = max(self.fraction, min(1.0, self._overall()))
        now = time.monotonic()
        if not force and now - self._last_emit < self._min_interval and self._stage_fraction < 1.0:
            return
        self._last_emit = now
        elapsed = now - self._start
        eta = None
        if self.fraction > 0.02:
            eta = max(0.0, elapsed * (1.0 - self.fraction) / self.fraction)
        if self._callback is not None:
            event = {
                "stage": self._stage,
                "fraction": round(self.fraction, 6),
                "stage_fraction": round(self._stage_fraction, 6),
                "message": message,
                "eta_s": None if eta is None else round(eta, 2),
            }
            if extra:
                event["extra"] = extra
            self._callback(event)
