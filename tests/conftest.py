"""Shared test setup: offline by construction, small CPU budgets."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address):  # type: ignore[no-untyped-def]
    """Refuse any connection that leaves this machine: tests must never reach the internet."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6):
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise OSError(f"test tried to reach {host!r}: tests run offline")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]

_real_getaddrinfo = socket.getaddrinfo


def _no_name_lookups(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Refuse to look up a name (a DNS query leaves the machine); addresses, localhost and this host pass."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and name not in ("localhost", socket.gethostname()):
        try:
            ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, f"test tried to look up {name!r}: tests run offline") from None
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _no_name_lookups  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)
    yield
