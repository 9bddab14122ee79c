"""Progress reporting and cancellation shared by every pipeline.

A pipeline receives a :class:`Progress` and calls ``stage()`` when it enters a named stage,
``update()`` as it advances within it and ``check()`` at safe points (``update`` checks too).
In-process callers pass a callback (the CLI draws a bar, or writes log lines when stderr is
not a terminal); the job server forwards the events to clients. Cancellation raises
:class:`Cancelled` inside the pipeline.

Every event carries ``eta_s``: the current stage's remaining time from the rate at which its
fraction advanced over the last :data:`RATE_WINDOW_S` seconds, plus the later stages' share
of the declared weights at the pace of the stages done so far. ``extra["stage_eta_s"]`` is
the current stage's part alone. ``warn()`` sends a message with ``extra["warning"]`` set.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterable

#: Seconds of recent progress the stage rate (and so the ETA) is measured over.
RATE_WINDOW_S = 30.0
#: A stage's ETA is given once it has run this long and advanced at all.
MIN_RATE_S = 1.0


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
        clock: Callable[[], float] = time.monotonic,
    ):
        self._callback = callback
        self._cancel = cancel_event or threading.Event()
        self.set_stages(stages or ())
        self._clock = clock
        self._stage = ""
        self._stage_fraction = 0.0
        self._start = clock()
        self._stage_start = self._start
        self._history: deque = deque()  # (time, stage fraction) over the last RATE_WINDOW_S
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
        self._stage_start = self._clock()
        self._history.clear()
        self._history.append((self._stage_start, 0.0))
        self._emit(message or name, force=True)

    def update(self, fraction: float, message: str = "", **extra) -> None:
        """Report ``fraction`` (0..1) of the current stage done; raises Cancelled if asked."""
        self.check()
        f = float(fraction)
        self._stage_fraction = 0.0 if f != f else min(max(f, 0.0), 1.0)
        now = self._clock()
        if len(self._history) > 1 and now - self._history[-2][0] < 0.25:
            self._history[-1] = (now, self._stage_fraction)  # keep the window's entries sparse
        else:
            self._history.append((now, self._stage_fraction))
        while len(self._history) > 2 and now - self._history[1][0] >= RATE_WINDOW_S:
            self._history.popleft()
        self._emit(message, force=False, extra=extra)

    def warn(self, message: str) -> None:
        """Send a warning (a one-line message with ``extra["warning"]``), whatever the rate limit."""
        self._emit(message, force=True, extra={"warning": " ".join(str(message).split())})

    @property
    def stage_name(self) -> str:
        return self._stage

    def stage_eta(self) -> float | None:
        """Seconds left in the current stage at its recent rate (None until it can be told)."""
        now = self._clock()
        if self._stage_fraction >= 1.0:
            return 0.0
        if now - self._stage_start < MIN_RATE_S or len(self._history) < 2:
            return None
        t0, f0 = self._history[0]
        t1, f1 = self._history[-1]
        if f1 <= f0 or t1 <= t0:
            return None
        rate = (f1 - f0) / (t1 - t0)
        # time since the last report counts as progress not yet reported
        return max(0.0, (1.0 - self._stage_fraction) / rate - (now - t1))

    def _overall(self) -> float:
        if self._total > 0 and self._stage in self._weights:
            off = self._offsets[self._stage]
            return (off + self._weights[self._stage] * self._stage_fraction) / self._total
        if self._total > 0:
            return self.fraction
        return self._stage_fraction

    def _emit(self, message: str, force: bool, extra: dict | None = None) -> None:
        self.fraction = max(self.fraction, min(1.0, self._overall()))
        now = self._clock()
        if not force and now - self._last_emit < self._min_interval and self._stage_fraction < 1.0:
            return
        self._last_emit = now
        stage_eta = self.stage_eta()
        eta = self._overall_eta(now, stage_eta)
        if self._callback is not None:
            event = {
                "stage": self._stage,
                "fraction": round(self.fraction, 6),
                "stage_fraction": round(self._stage_fraction, 6),
                "message": message,
                "eta_s": None if eta is None else round(eta, 2),
            }
            extra = dict(extra or {})
            if stage_eta is not None:
                extra["stage_eta_s"] = round(stage_eta, 2)
            if extra:
                event["extra"] = extra
            self._callback(event)

    def _overall_eta(self, now: float, stage_eta: float | None) -> float | None:
        """The current stage's ETA plus the later stages' weight at the pace so far."""
        if self._total > 0 and self._stage in self._weights:
            w = self._weights[self._stage]
            later = self._total - self._offsets[self._stage] - w
            done_before = self._offsets[self._stage]
            pace = None  # seconds per unit of weight, from the stages before this one
            if done_before > 0:
                pace = (self._stage_start - self._start) / done_before
            elif stage_eta is not None and self._stage_fraction > 0:
                pace = (now - self._stage_start + stage_eta) / w
            if stage_eta is not None and (later <= 0 or pace is not None):
                return stage_eta + (later * pace if later > 0 else 0.0)
        elif self._total <= 0 and stage_eta is not None:
            return stage_eta
        elapsed = now - self._start
        if self.fraction > 0.02:
            return max(0.0, elapsed * (1.0 - self.fraction) / self.fraction)
        return None
