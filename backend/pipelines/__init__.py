"""Pipelines: plain functions that do the work behind each job kind."""
