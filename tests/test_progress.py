"""Progress: weighted stages give a monotone overall fraction; cancel raises at the next check."""
import threading

import pytest

from backend.progress import Cancelled, Progress


def test_weighted_stages_advance_the_overall_fraction():
    events = []
    p = Progress(callback=events.append, stages=[("a", 1), ("b", 3)], min_interval=0)
    p.stage("a")
    p.update(1.0)
    assert events[-1]["fraction"] == pytest.approx(0.25)
    p.stage("b")
    p.update(0.5)
    assert events[-1]["fraction"] == pytest.approx(0.25 + 0.75 * 0.5)
    assert events[-1]["stage"] == "b" and events[-1]["stage_fraction"] == pytest.approx(0.5)
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions)


def test_stages_declared_later_and_unknown_stages_keep_the_fraction():
    p = Progress(min_interval=0)
    assert not p.has_stages
    p.set_stages([("x", 1), ("y", 1)])
    p.stage("x")
    p.update(1.0)
    p.stage("unlisted")
    p.update(0.1)
    assert p.fraction == pytest.approx(0.5)


def test_cancel_raises_at_the_next_update():
    ev = threading.Event()
    p = Progress(cancel_event=ev)
    p.stage("work")
    ev.set()
    with pytest.raises(Cancelled):
        p.update(0.5)


def test_nan_fraction_is_treated_as_zero():
    events = []
    p = Progress(callback=events.append, min_interval=0)
    p.stage("s")
    p.update(float("nan"))
    assert events[-1]["stage_fraction"] == 0.0
