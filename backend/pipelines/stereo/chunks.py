"""Temporal chunks with overlap, so memory stays bounded for any clip length.

:func:`chunks` groups a frame stream into runs of ``size`` *core* frames, each loaded with
``overlap`` frames of context on both sides (fewer at the clip's ends). A frame whose output
depends only on frames within ``overlap`` of it therefore comes out exactly as if the whole
clip had been in memory. At most ``size + 2 * overlap`` frames are held at a time.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Iterator


@dataclass
class Chunk:
    """Frames ``start .. start + len(items) - 1`` of the stream; ``core`` indexes them (absolute)."""

    start: int
    items: list[Any]
    core_start: int
    core_stop: int

    def local(self, index: int) -> int:
        """Position of absolute frame ``index`` in ``items``."""
        return index - self.start

    def core(self) -> range:
        return range(self.core_start, self.core_stop)


def chunks(stream: Iterable[Any], size: int, overlap: int) -> Iterator[Chunk]:
    """Yield :class:`Chunk` s whose cores tile the stream in order without gaps or repeats."""
    if size < 1 or overlap < 0:
        raise ValueError(f"chunk size must be >= 1 and overlap >= 0, got {size}, {overlap}")
    buf: deque = deque()  # frames from buf_start on
    buf_start = 0
    next_core = 0
    n = 0
    for item in stream:
        buf.append(item)
        n += 1
        # a core of `size` frames is complete once `overlap` more frames follow it
        if n - next_core >= size + overlap:
            yield _make(buf, buf_start, next_core, next_core + size, overlap)
            next_core += size
            while buf_start < next_core - overlap:
                buf.popleft()
                buf_start += 1
    while next_core < n:
        stop = min(next_core + size, n)
        yield _make(buf, buf_start, next_core, stop, overlap)
        next_core = stop
        while buf_start < next_core - overlap:
            buf.popleft()
            buf_start += 1


def _make(buf: deque, buf_start: int, core_start: int, core_stop: int, overlap: int) -> Chunk:
    lo = max(buf_start, core_start - overlap)
    hi = min(buf_start + len(buf), core_stop + overlap)
    items = [buf[i - buf_start] for i in range(lo, hi)]
    return Chunk(lo, items, core_start, core_stop)
