"""Drive the add-on's backend link inside Blender: connect with the operator, submit a job
through ``link_state.submit``, and call the timer function the way ``bpy.app.timers`` would.

usage: python link_in_blender.py ADDRESS OUT.json
"""
import atexit
import json
import sys
import time

import bpy

import blender_addon
from blender_addon.blender import link_state
from blender_addon.blender.link_state import STATE

address, out_path = sys.argv[1:3]
blender_addon.register()
atexit.register(blender_addon.unregister)  # also on errors: bpy 4.x must not exit with classes registered
reports = []
_original_report = link_state._report


def _capture(level, text):
    reports.append(f"{level}: {text}")
    _original_report(level, text)


link_state._report = _capture


class Layout:
    """Stands in for a UI layout in background mode; records what a panel draws."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append((name, kwargs.get("text", args[1] if name == "prop" and len(args) > 1 else "")))
            if name in ("row", "column", "box", "split"):
                return Layout(self.log)
            if name == "operator":
                return type("Op", (), {})()
            return None
        return call

    active = True


def draw_panels():
    """Call every Splatstage panel's draw() and the status-bar entry; return what they drew."""
    from blender_addon import panels

    log = []
    for cls in panels.classes:
        fake_self = type("P", (), {"layout": Layout(log)})()
        cls.draw(fake_self, bpy.context)
    panels.draw_status_bar(type("H", (), {"layout": Layout(log)})(), bpy.context)
    return log
worst = 0.0


def run_timer(until, timeout):
    global worst
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        t0 = time.perf_counter()
        link_state.tick()
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.02)


bpy.ops.splatstage.connect(address=address)
run_timer(lambda: STATE.status != "connecting", 15)
result = {"status_after_connect": STATE.status, "device": STATE.welcome.get("device")}
called = []
view = link_state.submit("sleep", {"seconds": 1.0, "steps": 10}, "Test sleep", on_result=lambda ev: called.append(ev))
run_timer(lambda: view.status == "running" and view.fraction > 0, 20)
drawn_running = draw_panels()
run_timer(lambda: view.status in ("done", "error", "cancelled"), 20)
result.update(job_status=view.status, fraction=view.fraction, handler_called=bool(called),
              max_tick_ms=worst * 1000, reports=reports,
              drawn_running=[list(x) for x in drawn_running])
bpy.ops.splatstage.disconnect()
result["after_stop"] = STATE.status
json.dump(result, open(out_path, "w"))
