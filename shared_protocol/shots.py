"""Shots for the batch queue (``splatstage batch SHOTS.json``): the file, its checks and the job
parameters of each shot's chain (camera solve -> reconstruction -> composite).

Standard library only: the add-on (which vendors ``shared_protocol``) writes the same entries
and submits the same jobs as the batch, so a job the add-on queued is the batch's too (the
server answers an identical request from its cache).

SHOTS.json::

    {"version": 1,
     "out": "shots-out",                     # optional; default: <SHOTS stem>-out beside the file
     "defaults": {"preview": true},          # optional; options every shot starts from
     "shots": [
       {"name": "sh010",                     # optional; default: the footage's name
        "footage": "clips/sh010.mp4",        # relative paths are relative to SHOTS.json
        "product": "bottle.glb",
        "placement": {"at_pixel": [240, 200], "at_frame": 0, "product_height": 0.25, "rotate": 30},
        "options": {"frames": 24, "device": "auto",
                    "poses": {...}, "reconstruct": {...}, "composite": {...}}}]}

``options``: ``preview`` (reduced settings for a CPU: solve and train at 240 px, 60 training
steps, the composite's preview), ``frames`` (solve and composite only the first N frames),
``device``, and per job kind extra job parameters that override the chain's own.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from shared_protocol.atomic import atomic_write_json

VERSION = 1
#: The jobs of a shot, in order, and the folder of the shot that each one's files go to.
STAGES = ("poses", "reconstruct", "composite")
STAGE_DIRS = {"poses": "solve", "reconstruct": "reconstruction", "composite": "composite"}
PLACEMENT_KEYS = ("at_pixel", "at_frame", "product_height", "rotate")
OPTION_KEYS = ("preview", "frames", "device") + STAGES
#: ``preview``: what the chain's jobs run with unless the shot's options say otherwise.
PREVIEW = {"poses": {"max_size": 240}, "reconstruct": {"steps": 60, "max_size": 240},
           "composite": {"preview": True}}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ShotError(ValueError):
    """A shot entry or shots file that cannot be used (one line naming the problem)."""


def load_shots(path: str | os.PathLike) -> tuple[list[dict], Path]:
    """The checked shots of a SHOTS.json (footage and product as absolute paths) and the output
    folder. A file that cannot be read raises ShotError; a shot entry with a problem comes back
    with its ``error`` set (one bad shot does not stop the others)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ShotError(f"{path}: cannot read the shots file ({' '.join(str(exc).split())})") from None
    if isinstance(doc, list):
        doc = {"shots": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("shots"), list):
        raise ShotError(f"{path}: expected a list of shots or an object with a 'shots' list")
    if doc.get("version", VERSION) != VERSION:
        raise ShotError(f"{path}: shots file version {doc.get('version')!r}; this splatstage reads {VERSION}")
    base = path.resolve().parent
    out = _out_dir(doc, path)
    defaults = doc.get("defaults") or {}
    shots, names = [], set()
    for i, entry in enumerate(doc["shots"]):
        try:
            if not isinstance(defaults, dict):
                raise ShotError("defaults must be an object")
            shot = check_shot(entry, base, defaults)
        except ShotError as exc:
            raw = entry if isinstance(entry, dict) else {}
            name = raw.get("name")
            name = name if isinstance(name, str) and _NAME.match(name) else f"shot{i + 1:03d}"
            shot = {"name": name, "error": str(exc)}
        if shot["name"] in names:
            shot = {"name": f"{shot['name']}-{i + 1}", "error": f"a second shot named {shot['name']!r}"}
        names.add(shot["name"])
        shots.append(shot)
    return shots, out


def check_shot(entry: Any, base: Path, defaults: dict | None = None) -> dict:
    """A shot entry checked and normalised (absolute paths, options merged over ``defaults``);
    raises ShotError naming the first problem. Input files must exist."""
    if not isinstance(entry, dict):
        raise ShotError("a shot must be an object")
    unknown = set(entry) - {"name", "footage", "product", "placement", "options"}
    if unknown:
        raise ShotError(f"unknown shot field {sorted(unknown)[0]!r}")
    shot: dict = {}
    for key in ("footage", "product"):
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            raise ShotError(f"{key} (a file path) is required")
        shot[key] = str(_abs(value, base))
        if not Path(shot[key]).exists():
            raise ShotError(f"{key} not found: {shot[key]}")
    name = entry.get("name", Path(shot["footage"]).stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ShotError(f"name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit), "
                        f"got {name!r}")
    shot["name"] = name
    placement = entry.get("placement") or {}
    if not isinstance(placement, dict) or set(placement) - set(PLACEMENT_KEYS):
        raise ShotError(f"placement takes only {', '.join(PLACEMENT_KEYS)}")
    pixel = placement.get("at_pixel")
    if pixel is not None and (not isinstance(pixel, list) or len(pixel) != 2 or not all(_finite(v) for v in pixel)):
        raise ShotError("placement.at_pixel must be [U, V]")
    for key in ("product_height", "rotate"):
        if placement.get(key) is not None and not _finite(placement[key]):
            raise ShotError(f"placement.{key} must be a number")
    if placement.get("at_frame") is not None and not _count(placement["at_frame"], 0):
        raise ShotError("placement.at_frame must be a frame index (0 or more)")
    shot["placement"] = {k: placement[k] for k in PLACEMENT_KEYS if placement.get(k) is not None}
    options = {**(defaults or {}), **(entry.get("options") or {})}
    if set(options) - set(OPTION_KEYS):
        raise ShotError(f"unknown option {sorted(set(options) - set(OPTION_KEYS))[0]!r}")
    if not isinstance(options.get("preview", False), bool):
        raise ShotError("options.preview must be true or false")
    if options.get("frames") is not None and not _count(options["frames"], 1):
        raise ShotError("options.frames must be a whole number of frames (1 or more)")
    if options.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise ShotError("options.device must be auto, cpu or cuda")
    for kind in STAGES:
        if not isinstance(options.get(kind, {}), dict):
            raise ShotError(f"options.{kind} must be an object of {kind} job parameters")
    shot["options"] = options
    return shot


def stage_params(shot: dict, stage: str, shot_dir: str | os.PathLike) -> dict:
    """The job parameters of one stage of a checked shot whose files go to ``shot_dir``: the
    solve reads the footage, the reconstruction the solve folder, the composite both folders."""
    opts = shot["options"]
    preview = PREVIEW[stage] if opts.get("preview") else {}
    device = {} if opts.get("device", "auto") == "auto" else {"device": opts["device"]}
    frames = opts.get("frames")
    folder = {s: str(Path(shot_dir) / d) for s, d in STAGE_DIRS.items()}
    if stage == "poses":
        own = {"input": shot["footage"], **({"stop": frames} if frames else {})}
    elif stage == "reconstruct":
        own = {"solve_dir": folder["poses"], **device}
    elif stage == "composite":
        own = {"video": shot["footage"], "product": shot["product"], "solve": folder["poses"],
               "reconstruction": folder["reconstruct"], **shot["placement"], **device,
               **({"max_frames": frames} if frames else {})}
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return {**preview, **own, **opts.get(stage, {})}


def add_shot(path: str | os.PathLike, entry: dict) -> Path:
    """Put ``entry`` into the shots file at ``path`` (created if missing), replacing a shot of
    the same name; written atomically. Paths are stored as given."""
    path = Path(path)
    doc: dict = {"version": VERSION, "shots": []}
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ShotError(f"{path}: cannot read the shots file ({' '.join(str(exc).split())})") from None
        if isinstance(doc, list):
            doc = {"version": VERSION, "shots": doc}
        if not isinstance(doc, dict) or not isinstance(doc.get("shots"), list):
            raise ShotError(f"{path}: not a shots file")
    doc["shots"] = [s for s in doc["shots"] if not (isinstance(s, dict) and s.get("name") == entry.get("name"))]
    doc["shots"].append(entry)
    return atomic_write_json(path, doc)


def output_folder(path: str | os.PathLike) -> Path:
    """The output folder of the shots file at ``path`` (its ``out``, or ``<stem>-out`` beside it)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        doc = None
    return _out_dir(doc, Path(path))


def _out_dir(doc, path: Path) -> Path:
    out = doc.get("out") if isinstance(doc, dict) else None
    base = path.resolve().parent
    return _abs(out, base) if isinstance(out, str) and out else base / f"{path.stem}-out"


def _abs(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo
