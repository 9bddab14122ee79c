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
link_state._report = lambda level, text: reports.append(f"{level}: {text}")  # capture Info reports
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
view = link_state.submit("sleep", {"seconds": 0.5, "steps": 5}, "Test sleep", on_result=lambda ev: called.append(ev))
run_timer(lambda: view.status in ("done", "error", "cancelled"), 20)
result.update(job_status=view.status, fraction=view.fraction, handler_called=bool(called),
              max_tick_ms=worst * 1000, reports=reports)
bpy.ops.splatstage.disconnect()
result["after_stop"] = STATE.status
json.dump(result, open(out_path, "w"))
