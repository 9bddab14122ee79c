"""``splatstage batch``: shots as chains of dependent jobs, resumable, one bad shot alone.

The chain logic runs first against a stand-in client that records what is submitted (fast);
then one short shot of the sample clip runs for real on a job server at preview settings, and
a re-run through the command line skips it.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.batch import run_batch
from backend.server.launch import ServerProcess
from shared_protocol.client import BackendError, BackendTimeout
from shared_protocol.shots import STAGES, ShotError, add_shot, check_shot, load_shots, stage_params

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "backend" / "samples"
OUTPUTS = {"poses": ["cameras.json", "points.ply"], "reconstruct": ["splats.ply"], "composite": ["composite.mp4"]}


class StandInServer:
    """Answers each job at once with its kind's files; a job whose footage name contains
    ``broken`` fails. Checks that every job's input folders are complete when it is submitted."""

    def __init__(self):
        self.submitted: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.problems: list[str] = []

    def connect(self):
        return StandInClient(self)


class StandInClient:
    def __init__(self, server: StandInServer):
        self.server = server
        self.jobs: dict[str, tuple[str, dict]] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def cancel(self, job_id):
        pass

    def submit(self, kind: str, params: dict) -> str:
        needs = {"reconstruct": [("solve_dir", "cameras.json")],
                 "composite": [("solve", "cameras.json"), ("reconstruction", "splats.ply")]}.get(kind, [])
        for key, name in needs:
            if not (Path(params[key]) / name).is_file():
                self.server.problems.append(f"{kind} submitted before {params[key]}/{name} was there")
        with self.server.lock:
            self.server.submitted.append((kind, params))
            job_id = f"job{len(self.server.submitted)}"
        self.jobs[job_id] = (kind, params)
        return job_id

    def wait(self, job_id: str, timeout=None):
        kind, params = self.jobs[job_id]
        if "broken" in params.get("input", "") + params.get("video", ""):
            raise BackendError("job_failed", f"{kind}: cannot decode the footage")
        files = [{"name": n} for n in OUTPUTS[kind]]
        return SimpleNamespace(content={"files": files, "summary": {"kind": kind, "nested": {"x": 1}}})

    def fetch_file(self, job_id: str, name: str, dest: Path):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(f"{job_id} {name}\n")
        return Path(dest)


def _shots_file(tmp_path: Path, shots: list[dict], **extra) -> Path:
    path = tmp_path / "shots.json"
    path.write_text(json.dumps({"version": 1, "shots": shots, **extra}))
    return path


@pytest.fixture
def inputs(tmp_path):
    for name in ("a.mp4", "b.mp4", "broken.mp4", "bottle.glb"):
        (tmp_path / name).write_bytes(name.encode())
    return tmp_path


def test_each_shot_is_a_chain_of_dependent_jobs_and_a_rerun_skips_what_is_finished(inputs):
    shots = [{"name": "sh010", "footage": "a.mp4", "product": "bottle.glb",
              "placement": {"at_pixel": [240, 200], "rotate": 30}, "options": {"frames": 12}},
             {"name": "sh020", "footage": "broken.mp4", "product": "bottle.glb"},
             {"name": "sh030", "footage": "b.mp4", "product": "missing.glb"},
             {"name": "sh040", "footage": "b.mp4", "product": "bottle.glb", "options": {"preview": True}}]
    path = _shots_file(inputs, shots)
    server, out = StandInServer(), inputs / "shots-out"
    log = io.StringIO()
    results = run_batch(path, "unused", connect=server.connect, stream=log)
    assert not server.problems, server.problems

    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["sh010", "sh020", "sh030", "sh040"]  # file order
    for name in ("sh010", "sh040"):
        r = by_name[name]
        assert r.state == "done" and r.ran == list(STAGES)
        assert r.output == str(out / name / "composite" / "composite.mp4")
        assert (out / name / "composite" / "composite.mp4").is_file()
        assert sorted(p.name for p in (out / name / "solve").iterdir()) == ["cameras.json", "points.ply"]
        assert not list((out / name).glob(".*"))  # no partial or old folders left
    assert by_name["sh020"].state == "failed" and by_name["sh020"].error == "poses: poses: cannot decode the footage"
    assert by_name["sh030"].state == "failed" and "product not found" in by_name["sh030"].error
    assert not (out / "sh020" / "solve").exists() and not (out / "sh030").exists()

    # the jobs' parameters: the shot's own folders, its placement, the preview settings
    jobs = {(k, p.get("input") or p.get("solve_dir") or p.get("video")): p for k, p in server.submitted}
    a, b = str(inputs / "a.mp4"), str(inputs / "b.mp4")
    assert jobs[("poses", a)] == {"input": a, "stop": 12}
    assert jobs[("reconstruct", str(out / "sh010" / "solve"))] == {"solve_dir": str(out / "sh010" / "solve")}
    assert jobs[("composite", a)] == {"video": a, "product": str(inputs / "bottle.glb"),
                                      "solve": str(out / "sh010" / "solve"),
                                      "reconstruction": str(out / "sh010" / "reconstruction"),
                                      "at_pixel": [240, 200], "rotate": 30, "max_frames": 12}
    assert jobs[("poses", b)] == {"input": b, "max_size": 240}
    assert jobs[("reconstruct", str(out / "sh040" / "solve"))]["steps"] == 60
    assert jobs[("composite", b)]["preview"] is True

    table = log.getvalue()
    assert "4 shots: 2 done, 0 skipped, 2 failed" in table and "sh030  failed" in table
    summary = json.loads((out / "summary.json").read_text())
    assert [s["state"] for s in summary["shots"]] == ["done", "failed", "failed", "done"]
    state = json.loads((out / "sh010" / "batch.json").read_text())
    assert list(state["stages"]) == list(STAGES) and state["stages"]["poses"]["summary"] == {"kind": "poses"}

    # Re-run: finished shots are skipped without a job; the failed one is tried again.
    server.submitted.clear()
    results = run_batch(path, "unused", connect=server.connect, stream=io.StringIO())
    assert [r.state for r in results] == ["skipped", "failed", "failed", "skipped"]
    assert [k for k, p in server.submitted] == ["poses"] and "broken" in server.submitted[0][1]["input"]

    # A changed placement re-runs only the composite; a changed training option the last two.
    shots[0]["placement"]["rotate"] = 45
    shots[3]["options"]["reconstruct"] = {"steps": 30}
    _shots_file(inputs, shots)
    server.submitted.clear()
    results = {r.name: r for r in run_batch(path, "unused", connect=server.connect, stream=io.StringIO())}
    assert results["sh010"].ran == ["composite"] and results["sh040"].ran == ["reconstruct", "composite"]
    assert sorted(k for k, _ in server.submitted) == ["composite", "composite", "poses", "reconstruct"]

    # The footage's content is part of the fingerprint: a new take re-runs the whole chain.
    (inputs / "a.mp4").write_bytes(b"another take")
    results = {r.name: r for r in run_batch(path, "unused", connect=server.connect, stream=io.StringIO())}
    assert results["sh010"].ran == list(STAGES) and results["sh040"].state == "skipped"


def test_bad_shot_entries_are_one_line_errors(inputs):
    good = {"footage": "a.mp4", "product": "bottle.glb"}
    for entry, needle in [({**good, "placement": {"at_pixel": [1]}}, "at_pixel must be [U, V]"),
                          ({**good, "options": {"frames": 0}}, "options.frames"),
                          ({**good, "options": {"speed": 2}}, "unknown option 'speed'"),
                          ({**good, "name": "../up"}, "name must be"),
                          ({**good, "extra": 1}, "unknown shot field 'extra'"),
                          ({"product": "bottle.glb"}, "footage (a file path) is required")]:
        with pytest.raises(ShotError) as info:
            check_shot(entry, inputs)
        assert needle in str(info.value) and "\n" not in str(info.value)
    shots, out = load_shots(_shots_file(inputs, [good, good]))  # two shots of one name
    assert shots[0]["name"] == "a" and "second shot named 'a'" in shots[1]["error"]
    assert out == inputs / "shots-out"
    (inputs / "shots.json").write_text("{not json")
    with pytest.raises(ShotError, match="cannot read the shots file"):
        load_shots(inputs / "shots.json")


def test_an_unreadable_file_is_one_line_and_an_unreachable_server_stops_before_writing(inputs):
    def batch(*args):
        return subprocess.run([sys.executable, "-m", "backend.cli", "batch", *map(str, args)], capture_output=True,
                              text=True, cwd=REPO, timeout=120)

    out = batch(inputs / "none.json", "--backend", "tcp://127.0.0.1:9")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot read the shots file" in out.stderr
    assert "Traceback" not in out.stderr

    def unreachable():  # what connect() raises when no server answers (test_cli: its one line)
        raise BackendTimeout("no answer from tcp://127.0.0.1:9")

    path = _shots_file(inputs, [{"footage": "a.mp4", "product": "bottle.glb"}])
    with pytest.raises(BackendTimeout):
        run_batch(path, "tcp://127.0.0.1:9", connect=unreachable, stream=io.StringIO())
    assert not (inputs / "shots-out").exists()


def test_add_shot_replaces_a_shot_of_the_same_name(inputs):
    path = inputs / "queue.json"
    add_shot(path, {"name": "sh010", "footage": "a.mp4", "product": "bottle.glb"})
    add_shot(path, {"name": "sh020", "footage": "b.mp4", "product": "bottle.glb"})
    add_shot(path, {"name": "sh010", "footage": "b.mp4", "product": "bottle.glb"})
    shots, _ = load_shots(path)
    assert [(s["name"], Path(s["footage"]).name) for s in shots] == [("sh020", "b.mp4"), ("sh010", "b.mp4")]


def test_a_short_shot_of_the_sample_clip_on_a_job_server(tmp_path):
    """Solve, reconstruction and composite of the first 10 frames at preview settings (small
    sizes, 10 training steps), beside a shot whose footage is not a video; a re-run skips the
    finished shot without a job and the exit status says one shot failed."""
    srv = ServerProcess(tmp_path, "--root", str(SAMPLES), "--cpu-workers", "2").start()
    try:
        (srv.root / "not_a_video.mp4").write_bytes(b"not a video")
        options = {"preview": True, "frames": 10, "poses": {"max_size": 160, "threads": 1},
                   "reconstruct": {"steps": 10, "max_size": 120, "threads": 1, "device": "cpu"},
                   "composite": {"max_frames": 2, "render_size": 120, "device": "cpu"}}
        path = srv.root / "shots.json"
        path.write_text(json.dumps({"version": 1, "out": "out", "shots": [
            {"name": "sample", "footage": str(SAMPLES / "sample_clip.mp4"), "product": str(SAMPLES / "product.glb"),
             "options": options},
            {"name": "bad", "footage": "not_a_video.mp4", "product": str(SAMPLES / "product.glb"),
             "options": options}]}))
        cmd = [sys.executable, "-m", "backend.cli", "batch", str(path), "--backend", srv.address]
        first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
        assert first.returncode == 1, first.stderr
        assert "2 shots: 1 done, 0 skipped, 1 failed" in first.stdout, first.stdout
        video = srv.root / "out" / "sample" / "composite" / "composite.mp4"
        from backend.media.video import probe

        assert probe(video).frame_count == 2
        solved = json.loads((srv.root / "out" / "sample" / "solve" / "cameras.json").read_text())
        assert solved["stats"]["n_frames"] == 10
        t0 = time.monotonic()
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
        assert "sample: skipped" in again.stdout and "2 shots: 0 done, 1 skipped, 1 failed" in again.stdout
        assert "sample: poses submitted" not in again.stdout and time.monotonic() - t0 < 60
        assert again.returncode == 1
    finally:
        srv.stop()
