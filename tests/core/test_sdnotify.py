"""sd_notify: the datagram systemd reads, to a path or an abstract socket; no socket, no send."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from hyperhive.core.sdnotify import sd_notify


def test_a_datagram_reaches_a_path_socket_and_an_abstract_one(short_dir: Path) -> None:
    path = short_dir / "notify"
    name = f"hh-notify-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as by_path, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:  # fmt: skip
        by_path.bind(str(path))
        abstract.bind("\0" + name)
        assert sd_notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": str(path)})
        assert by_path.recv(4096) == b"READY=1\nSTATUS=up"
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(4096) == b"STOPPING=1"


def test_without_a_socket_nothing_is_sent_and_nothing_raises(short_dir: Path) -> None:
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
