"""Bind-address policy and CURVE keys.

The server binds loopback by default. Any other address needs CURVE: the server's secret key
and a folder of authorised client public keys (``splatstage keys`` writes key pairs in
ZeroMQ's certificate format).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth


class BindRefused(ValueError):
    pass


def is_loopback_endpoint(endpoint: str) -> bool:
    if endpoint.startswith("ipc://") or endpoint.startswith("inproc://"):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_bind(endpoint: str, curve_enabled: bool) -> None:
    if not is_loopback_endpoint(endpoint) and not curve_enabled:
        raise BindRefused(
            f"refusing to bind {endpoint} without CURVE keys: only loopback is allowed unencrypted; "
            "run 'splatstage keys' and pass --curve-secret and --curve-clients"
        )


def generate_keys(folder: Path, name: str = "splatstage") -> tuple[Path, Path]:
    """Write ``name.key`` (public) and ``name.key_secret`` (secret, mode 0600) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def load_keys(path: Path) -> tuple[bytes, bytes | None]:
    """(public, secret) from a certificate file; secret is None for a public-only file."""
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read CURVE key file {path}: {exc}") from None
