"""The systemd readiness protocol (sd_notify) without libsystemd: one datagram to the unix
socket named in NOTIFY_SOCKET. It is a dozen lines of a stable, documented protocol, so no
dependency (python-systemd needs libsystemd headers to build; the pure-Python shims are unmaintained)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["sd_notify"]

log = logging.getLogger(__name__)


def sd_notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=…") to the service manager. False when not run
    under a notify-type unit (no NOTIFY_SOCKET) or when the send failed (logged, never raised)."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET is neither a path nor an abstract socket: not notifying")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("could not notify the service manager: %s", exc)
        return False
    return True
