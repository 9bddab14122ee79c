"""Message types and the validation of their content (docs/protocol.md, "Message types").

``validate(msg)`` checks the content of a decoded message against its type's schema and
returns the content with defaults filled in. Unknown content fields are kept (a newer minor
version may add them); missing or mistyped known fields raise ``ProtocolError`` naming the
field, e.g. ``submit.content.params: must be an object``.
"""
from __future__ import annotations

from typing import Any, Callable

from .wire import Message, ProtocolError

REQUESTS = ("hello", "submit", "cancel", "status", "list_jobs", "fetch", "ping", "shutdown")
REPLIES = ("welcome", "accepted", "progress", "result", "error", "cancelled", "job", "jobs", "file", "pong", "bye")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
ERROR_CODES = (
    "bad_message", "version_mismatch", "unknown_type", "unknown_kind", "bad_params",
    "path_not_allowed", "not_found", "not_finished", "too_large", "forbidden",
    "job_failed", "job_crashed", "internal",
)

_NUM = (int, float)
_OPT = object()  # marker: field optional


def _str(max_len: int = 4096, min_len: int = 0) -> Callable[[Any], str | None]:
    def check(v):
        if not isinstance(v, str):
            return "must be a string"
        if not (min_len <= len(v) <= max_len):
            return f"must have {min_len}..{max_len} characters"
        return None
    return check


def _type(*types, nullable: bool = False):
    def check(v):
        if v is None and nullable:
            return None
        if isinstance(v, bool) and bool not in types:
            return f"must be {' or '.join(t.__name__ for t in types)}"
        if not isinstance(v, types):
            return f"must be {' or '.join(t.__name__ for t in types)}" + (" or null" if nullable else "")
        return None
    return check


def _fraction(v):
    if isinstance(v, bool) or not isinstance(v, _NUM) or not (0.0 <= v <= 1.0):
        return "must be a number in [0, 1]"
    return None


def _int_range(lo: int, hi: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
            return f"must be an integer in [{lo}, {hi}]"
        return None
    return check


def _one_of(values):
    def check(v):
        return None if v in values else f"must be one of {', '.join(values)}"
    return check


# field -> (checker, default or _OPT for optional-without-default, or ... for required)
REQ = ...
SCHEMAS: dict[str, dict[str, tuple]] = {
    "hello": {"client": (_str(128), "unknown"), "client_version": (_str(64), "")},
    "welcome": {
        "server_version": (_str(64), REQ), "device": (_str(256), REQ),
        "gpu_memory_gb": (_type(int, float, nullable=True), None),
        "kinds": (_type(dict), REQ), "max_message_bytes": (_type(int), REQ),
        "heartbeat_s": (_type(int, float), 2.0),
    },
    "submit": {"kind": (_str(64, 1), REQ), "params": (_type(dict), REQ), "watch": (_type(bool), True)},
    "accepted": {"state": (_one_of(JOB_STATES), REQ), "cached": (_type(bool), False), "kind": (_str(64), "")},
    "progress": {
        "stage": (_str(128), ""), "fraction": (_fraction, REQ), "message": (_str(1024), ""),
        "eta_s": (_type(int, float, nullable=True), None), "extra": (_type(dict), {}),
    },
    "result": {"state": (_one_of(("done",)), "done"), "files": (_type(list), []), "summary": (_type(dict), {})},
    "error": {"code": (_str(64, 1), REQ), "message": (_str(4096), REQ), "hint": (_str(4096), "")},
    "cancel": {},
    "cancelled": {"state": (_one_of(("cancelled",)), "cancelled")},
    "status": {"watch": (_type(bool), False)},
    "job": {"state": (_one_of(JOB_STATES), REQ), "kind": (_str(64), ""), "fraction": (_fraction, 0.0)},
    "list_jobs": {"limit": (_int_range(1, 10000), 100)},
    "jobs": {"jobs": (_type(list), REQ)},
    "fetch": {"file": (_type(str, nullable=True), None)},
    "file": {"name": (_str(1024, 1), REQ), "size": (_type(int), REQ), "sha256": (_str(64), "")},
    "ping": {"t": (_type(int, float), 0.0)},
    "pong": {"t": (_type(int, float), 0.0)},
    "shutdown": {"token": (_str(256), "")},
    "bye": {},
}
NEEDS_JOB_ID = ("accepted", "cancel", "cancelled", "status", "job", "fetch", "file", "result", "progress")


def validate(msg: Message) -> dict:
    """Validated content of ``msg`` with defaults filled in (unknown fields are kept)."""
    schema = SCHEMAS.get(msg.type)
    if schema is None:
        raise ProtocolError("header.type", f"unknown message type {msg.type!r}", code="unknown_type")
    if msg.type in NEEDS_JOB_ID and not msg.job_id:
        raise ProtocolError("header.job_id", f"is required for {msg.type}")
    content = dict(msg.content)
    for name, (check, default) in schema.items():
        if name not in content:
            if default is REQ:
                raise ProtocolError(f"{msg.type}.content.{name}", "is required")
            if default is not _OPT:
                content[name] = _copy(default)
            continue
        problem = check(content[name])
        if problem:
            raise ProtocolError(f"{msg.type}.content.{name}", problem)
    return content


def _copy(value):
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def error(code: str, message: str, hint: str = "", job_id: str | None = None, parent: str | None = None) -> Message:
    one_line = " ".join(str(message).split())
    return Message("error", {"code": code, "message": one_line, "hint": hint}, job_id=job_id, parent=parent)
