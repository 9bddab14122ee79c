"""Multipart message encoding: a JSON header frame, then one raw frame per array.

``encode`` returns the list of frames to send; ``decode`` validates a received list of frames
and returns a :class:`Message`. Nothing is allocated from a declared size until it has been
checked against the bytes actually received, and only plain numeric dtypes are accepted.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import PROTOCOL_MAJOR, PROTOCOL_VERSION

ALLOWED_DTYPES = ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")
ZERO_COPY_THRESHOLD = 64 * 1024
MAX_HEADER_BYTES = 1 << 20
MAX_RANK = 8
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION_RE = re.compile(r"^(\d{1,4})\.(\d{1,4})$")


class ProtocolError(ValueError):
    """A message that does not follow the protocol; ``field`` names what is wrong."""

    def __init__(self, field_name: str, problem: str, code: str = "bad_message"):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.code = code
        self.msg_id: str | None = None  # set when the header's msg_id was readable


@dataclass
class Message:
    type: str
    content: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    job_id: str | None = None
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent: str | None = None
    protocol: str = PROTOCOL_VERSION


def new_id() -> str:
    return uuid.uuid4().hex


def _wire_dtype(arr: np.ndarray) -> tuple[np.ndarray, str]:
    dt = arr.dtype
    if dt.byteorder == ">":
        arr = arr.astype(dt.newbyteorder("<"))
        dt = arr.dtype
    code = dt.str
    if code not in ALLOWED_DTYPES:
        raise ProtocolError("arrays", f"dtype {dt} is not allowed on the wire (allowed: {', '.join(ALLOWED_DTYPES)})")
    return arr, code


def encode(msg: Message) -> list:
    """Frames for ``msg``: header bytes, then the arrays (C-contiguous, zero-copy when large)."""
    descriptors = []
    frames: list = []
    for name, arr in msg.arrays.items():
        arr = np.asarray(arr)
        arr, code = _wire_dtype(arr)
        arr = np.ascontiguousarray(arr).reshape(arr.shape)  # keeps 0-d arrays 0-d
        descriptors.append({"name": str(name), "dtype": code, "shape": list(arr.shape)})
        frames.append(arr if arr.nbytes > ZERO_COPY_THRESHOLD else arr.tobytes())
    header = {
        "protocol": msg.protocol,
        "type": msg.type,
        "msg_id": msg.msg_id,
        "job_id": msg.job_id,
        "parent": msg.parent,
        "content": msg.content,
        "buffers": descriptors,
    }
    try:
        raw = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as exc:
        raise ProtocolError("content", f"not JSON-serialisable without NaN/Infinity ({exc})") from None
    return [raw, *frames]


def _frame_bytes(frame) -> memoryview:
    """A memoryview of a received frame (zmq.Frame, bytes or buffer)."""
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf).cast("B")


def check_version(version: Any, field_name: str = "header.protocol") -> tuple[int, int]:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ProtocolError(field_name, f"must be a 'MAJOR.MINOR' string, got {version!r}")
    major, minor = (int(x) for x in version.split("."))
    if major != PROTOCOL_MAJOR:
        raise ProtocolError(
            field_name,
            f"protocol version {version} is not compatible with this side's {PROTOCOL_VERSION} "
            f"(major versions differ); upgrade the older of client and server",
            code="version_mismatch",
        )
    return major, minor


def decode(frames: list, max_bytes: int | None = None) -> Message:
    """Validate and decode received frames. Raises :class:`ProtocolError` naming the field."""
    if not frames:
        raise ProtocolError("frames", "empty message")
    views = [_frame_bytes(f) for f in frames]
    total = sum(v.nbytes for v in views)
    if max_bytes is not None and total > max_bytes:
        raise ProtocolError("frames", f"message of {total} bytes exceeds the limit of {max_bytes}", code="too_large")
    head = views[0]
    if head.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError("header", f"{head.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(head.tobytes().decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("header", f"not valid UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("header", "must be a JSON object")
    try:
        return _decode_header(header, views, frames)
    except ProtocolError as exc:
        mid = header.get("msg_id")
        exc.msg_id = mid if isinstance(mid, str) and _ID_RE.match(mid) else None
        raise


def _decode_header(header: dict, views: list, frames: list) -> Message:
    check_version(header.get("protocol"))
    mtype = header.get("type")
    if not isinstance(mtype, str) or not (1 <= len(mtype) <= 32):
        raise ProtocolError("header.type", "must be a non-empty string of at most 32 characters")
    msg_id = header.get("msg_id")
    if not isinstance(msg_id, str) or not _ID_RE.match(msg_id):
        raise ProtocolError("header.msg_id", "must match [A-Za-z0-9_-]{1,64}")
    for key in ("job_id", "parent"):
        val = header.get(key)
        if val is not None and (not isinstance(val, str) or not _ID_RE.match(val)):
            raise ProtocolError(f"header.{key}", "must be null or match [A-Za-z0-9_-]{1,64}")
    content = header.get("content", {})
    if not isinstance(content, dict):
        raise ProtocolError("header.content", "must be a JSON object")
    descs = header.get("buffers", [])
    if not isinstance(descs, list):
        raise ProtocolError("header.buffers", "must be a list")
    if len(descs) != len(views) - 1:
        raise ProtocolError("header.buffers", f"describes {len(descs)} buffers but {len(views) - 1} frames follow")
    arrays: dict[str, np.ndarray] = {}
    for i, (desc, frame, view) in enumerate(zip(descs, frames[1:], views[1:])):
        name, dtype, shape = _check_descriptor(desc, f"header.buffers[{i}]")
        if name in arrays:
            raise ProtocolError(f"header.buffers[{i}].name", f"duplicate name {name!r}")
        expected = dtype.itemsize * math.prod(shape)
        if expected != view.nbytes:
            raise ProtocolError(f"header.buffers[{i}]", f"declares {expected} bytes but the frame holds {view.nbytes}")
        arr = np.frombuffer(view, dtype=dtype) if expected else np.zeros(0, dtype=dtype)
        arrays[name] = arr.reshape(shape)
    return Message(type=mtype, content=content, arrays=arrays, job_id=header.get("job_id"),
                   msg_id=msg_id, parent=header.get("parent"), protocol=header["protocol"])


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _check_descriptor(desc: Any, where: str) -> tuple[str, np.dtype, tuple[int, ...]]:
    if not isinstance(desc, dict):
        raise ProtocolError(where, "must be an object with name, dtype, shape")
    name = desc.get("name")
    if not isinstance(name, str) or not (1 <= len(name) <= 128):
        raise ProtocolError(f"{where}.name", "must be a string of 1..128 characters")
    code = desc.get("dtype")
    if code not in ALLOWED_DTYPES:
        raise ProtocolError(f"{where}.dtype", f"must be one of {', '.join(ALLOWED_DTYPES)}")
    shape = desc.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise ProtocolError(f"{where}.shape", f"must be a list of at most {MAX_RANK} integers")
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0 or d > 1 << 40:
            raise ProtocolError(f"{where}.shape", "dimensions must be integers in [0, 2**40]")
    return name, np.dtype(code), tuple(shape)
