"""httpx over a unix socket (an agent's `web.sock`) without building a TLS context on the loop.

httpx builds `ssl.create_default_context()` for every transport unless given one, and loading
the CA bundle takes ~100 ms of the event loop. A unix socket with an `http://` URL never uses
TLS, so every such transport shares one empty context made at import.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

__all__ = ["NO_TLS", "uds_transport"]

NO_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # never used for a handshake: http:// on a unix socket


def uds_transport(path: Path | str) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(uds=str(path), verify=NO_TLS)
