"""Small file helpers: atomic writes, hashing of inputs, confinement of paths to roots."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable


_HASH_FULL_LIMIT = 64 << 20
_HASH_EDGE = 4 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_input(path: Path, h: "hashlib._Hash") -> None:
    """Feed a file's or folder's identity into ``h``: content for files up to 64 MiB; for larger
    files the size, modification time and first and last 4 MiB; folders recursively."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                h.update(str(child.relative_to(path)).encode() + b"\0")
                hash_input(child, h)
        return
    st = path.stat()
    h.update(f"{st.st_size}\0".encode())
    with open(path, "rb") as f:
        if st.st_size <= _HASH_FULL_LIMIT:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f"{st.st_mtime_ns}\0".encode())
            h.update(f.read(_HASH_EDGE))
            f.seek(-_HASH_EDGE, os.SEEK_END)
            h.update(f.read(_HASH_EDGE))


class PathNotAllowed(ValueError):
    pass


def confine(path: str, roots: Iterable[Path]) -> Path:
    """Resolve ``path`` (following symlinks) and require it to exist inside one of ``roots``."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise PathNotAllowed(f"{path!r} is not a valid path")
    resolved = Path(path).expanduser().resolve(strict=False)
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or root in resolved.parents:
            if not resolved.exists():
                raise FileNotFoundError(f"{path} does not exist")
            return resolved
    raise PathNotAllowed(f"{path} is outside the server's allowed roots")
