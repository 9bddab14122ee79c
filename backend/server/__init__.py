"""The job server: a ZeroMQ ROUTER that runs jobs in worker processes (docs/protocol.md)."""
