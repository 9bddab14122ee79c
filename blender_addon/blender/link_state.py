"""Main-thread side of the backend link: connection state, running jobs, the timer.

A single ``bpy.app.timers`` function drains :class:`..core.backend_link.BackendLink` events,
updates :data:`STATE`, dispatches finished jobs to their handlers, reports errors to Blender's
Info log and redraws the UI. Nothing here blocks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import bpy

from ..core.backend_link import BackendLink, LinkEvent

TICK_S = 0.1


@dataclass
class JobView:
    """What the panels and the status bar show for one job."""

    tag: str
    kind: str
    label: str
    job_id: str | None = None
    stage: str = "queued"
    fraction: float = 0.0
    message: str = ""
    eta_s: float | None = None
    status: str = "submitted"          # submitted, running, done, error, cancelled
    started: float = field(default_factory=time.monotonic)
    on_result: Callable[[LinkEvent], None] | None = None


@dataclass
class LinkState:
    link: BackendLink | None = None
    status: str = "disconnected"       # disconnected, connecting, connected
    welcome: dict = field(default_factory=dict)
    last_error: str = ""
    jobs: dict[str, JobView] = field(default_factory=dict)
    server_proc: object = None         # subprocess.Popen of a local backend
    reports: list[tuple[str, str]] = field(default_factory=list)   # (level, text) not yet shown

    def active_jobs(self) -> list[JobView]:
        return [j for j in self.jobs.values() if j.status in ("submitted", "running")]

    def job_of_kind(self, kind: str) -> JobView | None:
        views = [j for j in self.jobs.values() if j.kind == kind]
        return views[-1] if views else None


STATE = LinkState()


def _report(level: str, text: str) -> None:
    """Send a message to Blender's Info log (and the console)."""
    STATE.reports.append((level, text))
    print(f"Splatstage {level}: {text}")


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for win in wm.windows:
        for area in win.screen.areas:
            if area.type in {"VIEW_3D", "STATUSBAR"}:
                area.tag_redraw()


def handle_event(ev: LinkEvent) -> None:
    """Apply one link event to :data:`STATE` (main thread only)."""
    if ev.kind == "connected":
        STATE.status, STATE.welcome, STATE.last_error = "connected", dict(ev.content), ""
        _report("INFO", f"connected to {STATE.link.address if STATE.link else 'backend'} "
                        f"({ev.content.get('device', '?')})")
        return
    if ev.kind == "disconnected":
        STATE.status = "disconnected"
        msg = ev.content.get("message", "disconnected")
        hint = ev.content.get("hint")
        STATE.last_error = msg + (f" ({hint})" if hint else "")
        _report("ERROR", f"backend: {STATE.last_error}")
        return
    view = STATE.jobs.get(ev.job or "")
    if view is None:
        return
    if ev.job_id:
        view.job_id = ev.job_id
    if ev.kind == "submitted":
        view.status = "running"
    elif ev.kind == "progress":
        view.status = "running"
        view.stage = ev.content.get("stage") or view.stage
        view.fraction = float(ev.content.get("fraction") or 0.0)
        view.message = ev.content.get("message") or ""
        view.eta_s = ev.content.get("eta_s")
    elif ev.kind == "result":
        view.status, view.fraction, view.stage = "done", 1.0, "done"
        if view.on_result is not None:
            try:
                view.on_result(ev)
            except Exception as exc:  # noqa: BLE001 - a failing handler must not kill the timer
                view.status = "error"
                view.message = str(exc)
                _report("ERROR", f"{view.label}: {exc}")
                return
        _report("INFO", f"{view.label} finished")
    elif ev.kind == "error":
        view.status = "error"
        msg = ev.content.get("message", "failed")
        if msg.startswith(f"{view.kind}: "):  # the backend names the job kind; the label already does
            msg = msg[len(view.kind) + 2:]
        hint = ev.content.get("hint")
        view.message = msg + (f" ({hint})" if hint else "")
        _report("ERROR", f"{view.label}: {view.message}")
    elif ev.kind == "cancelled":
        view.status, view.message = "cancelled", "cancelled"
        _report("WARNING", f"{view.label} cancelled")


def tick() -> float | None:
    """The timer: drain events, flush reports, redraw. Returns the next interval."""
    link = STATE.link
    if link is not None:
        for ev in link.drain():
            try:
                handle_event(ev)
            except Exception as exc:  # noqa: BLE001
                print(f"Splatstage: event handling failed: {exc}")
        if STATE.status == "connecting" and not link.alive:
            STATE.status = "disconnected"
    _flush_reports()
    _redraw()
    return TICK_S


def _flush_reports() -> None:
    if not STATE.reports:
        return
    pending, STATE.reports = STATE.reports, []
    try:
        bpy.ops.splatstage.report("EXEC_DEFAULT", messages="\n".join(f"{lvl}\t{txt}" for lvl, txt in pending))
    except Exception:  # noqa: BLE001 - no window (e.g. during exit): console output suffices
        pass


def connect(address: str, server_key_file: str = "", client_key_file: str = "") -> None:
    """(Re)connect in the background; the result arrives as a connected/disconnected event."""
    disconnect()
    STATE.link = BackendLink(address, server_key_file=server_key_file, client_key_file=client_key_file)
    STATE.status = "connecting"
    STATE.last_error = ""
    STATE.link.start()
    ensure_timer()


def disconnect() -> None:
    if STATE.link is not None:
        STATE.link.stop(join_timeout=2.0)
        for ev in STATE.link.drain():
            if ev.kind not in ("connected", "disconnected"):
                handle_event(ev)
    STATE.link = None
    STATE.status = "disconnected"


def submit(kind: str, params: dict, label: str, fetch_to: str | None = None,
           on_result: Callable[[LinkEvent], None] | None = None) -> JobView:
    """Submit a job over the link; raises RuntimeError when not connected."""
    if STATE.link is None or STATE.status != "connected":
        raise RuntimeError("not connected to a backend (Backend panel: Connect)")
    tag = STATE.link.submit(kind, params, fetch_to=fetch_to)
    view = JobView(tag=tag, kind=kind, label=label, on_result=on_result)
    STATE.jobs[tag] = view
    ensure_timer()
    return view


def cancel(tag: str) -> None:
    if STATE.link is not None:
        STATE.link.cancel(tag)


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_S, persistent=True)


def shutdown() -> None:
    """Stop the link, the timer and any local backend (unregister and Blender exit)."""
    from ..core import local_backend

    disconnect()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    local_backend.stop(STATE.server_proc)
    STATE.server_proc = None
    STATE.jobs.clear()
    STATE.reports.clear()
