"""Splatstage backend: the job server and the pipelines (camera solve, reconstruction,
rendering, stereo, compositing). Pipelines are plain functions over arrays and files; the
server in :mod:`backend.server` is a thin layer that runs them in worker processes."""

__version__ = "0.1.0"
