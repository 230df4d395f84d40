"""Dashboard sessions kept server-side (issue 9, item 5): a signed cookie is honoured only while
its session id has a live row in the store, so a logout survives a restart.

One `WebSessions` per daemon store (`sessions_of(services)`, its live set read at start by
`load_live()`), shared by the dashboard's guard
and the operator's `sessions` verb so both see the same live set. "Log out everywhere" revokes
every row and rotates the signing key (a new `session-secret` file, written atomically), so no
cookie signed before it verifies again, whatever the database says.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import weakref
from pathlib import Path
from typing import Any, Final

from itsdangerous import BadSignature, URLSafeTimedSerializer

from hyperhive.errors import NotFound, ProtocolError
from hyperhive.fsutil import read_or_create_secret
from hyperhive.store.base import Store

__all__ = ["SESSION_MAX_AGE", "WebSessions", "operator_verb", "public_rows", "rotate_secret", "sessions_of"]

SESSION_MAX_AGE: Final = 30 * 86400
TOUCH_EVERY: Final = 60.0  # seconds: last_seen is written at most this often per session
SECRET_BYTES: Final = 48

_BY_STORE: weakref.WeakKeyDictionary[Store, WebSessions] = weakref.WeakKeyDictionary()


def rotate_secret(path: Path, nbytes: int = SECRET_BYTES) -> str:
    """Replace the secret in `path` with a fresh one (0600, written aside then renamed over)."""
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return value


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())


class WebSessions:
    def __init__(self, store: Store, secret_file: Path) -> None:
        self.store = store
        self.secret_file = secret_file
        self._signer = URLSafeTimedSerializer(read_or_create_secret(secret_file, SECRET_BYTES), salt="hh-session")
        self._live: dict[str, float] = {}  # empty until load_live(): no cookie is honoured before
        self._pending: set[asyncio.Future[Any]] = set()

    async def load_live(self) -> None:
        """At daemon start: the sessions still live in the store."""
        since = time.time() - SESSION_MAX_AGE
        self._live.update({r["sid"]: r["last_seen"] for r in await self.store.sessions_active(since)})

    async def create(self, client: str, user_agent: str) -> tuple[str, str]:
        """A new session: (signed cookie value, csrf token). The row is committed first."""
        client, user_agent = _printable(client)[:100], _printable(user_agent)[:200]
        sid = secrets.token_urlsafe(16)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        await self.store.session_create(sid, now, client, user_agent, forget_before=now - SESSION_MAX_AGE)
        self._live[sid] = now
        return self._signer.dumps({"sid": sid, "csrf": csrf, "t": int(now)}), csrf

    def load(self, value: str | None) -> dict[str, Any] | None:
        """The session a cookie names, or None: bad signature, expired, or no live row."""
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str) or not isinstance(data.get("csrf"), str):
            return None
        if data["sid"] not in self._live:
            return None
        return data

    def seen(self, sid: str) -> None:
        """Record use for `hive sessions`, at most once a minute per session (fire and forget)."""
        now = time.time()
        last = self._live.get(sid)
        if last is None or now - last < TOUCH_EVERY:
            return
        self._live[sid] = now
        fut = asyncio.ensure_future(self.store.session_touch(sid, now))
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def revoke(self, sid: str) -> bool:
        self._live.pop(sid, None)
        now = time.time()
        return bool(await self.store.session_revoke(sid, now))

    async def revoke_all(self) -> int:
        """Log out everywhere: every row revoked, then a new signing key."""
        self._live.clear()
        now = time.time()
        count = await self.store.session_revoke_all(now)
        key = await asyncio.to_thread(rotate_secret, self.secret_file)
        self._signer = URLSafeTimedSerializer(key, salt="hh-session")
        self._live.clear()  # a login that raced the rotation was signed with the old key
        return int(count)

    async def active(self) -> list[dict[str, Any]]:
        since = time.time() - SESSION_MAX_AGE
        rows = await self.store.sessions_active(since)
        return [
            {**r, "last_seen": max(r["last_seen"], self._live.get(r["sid"], 0.0))}
            for r in rows
            if r["sid"] in self._live
        ]


def public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is shown of a session: a short id (never the whole sid), times and the client."""
    keys = ("created_at", "last_seen", "client", "user_agent")
    return [{"id": r["sid"][:8], **{k: r[k] for k in keys}} for r in rows]


async def operator_verb(services: Any, *, revoke: str | None, revoke_all: bool) -> dict[str, Any]:
    """The host verb `sessions`: list, revoke one by short id, or log out everywhere."""
    web = sessions_of(services)
    if revoke_all and revoke:
        raise ProtocolError("give revoke or revoke_all, not both")
    if revoke_all:
        return {"revoked": await web.revoke_all(), "key_rotated": True, "sessions": []}
    if revoke:
        matches = [r["sid"] for r in await web.active() if r["sid"].startswith(revoke)]
        if not matches:
            raise NotFound(f"no active session {revoke!r}")
        if len(matches) > 1:
            raise ProtocolError(f"session id {revoke!r} is ambiguous: give more of it")
        await web.revoke(matches[0])
        return {"revoked": 1, "key_rotated": False, "sessions": public_rows(await web.active())}
    return {"sessions": public_rows(await web.active())}


def sessions_of(services: Any) -> WebSessions:
    """The one WebSessions of this daemon (keyed by its store)."""
    store: Store = services.store
    found = _BY_STORE.get(store)
    if found is None:
        found = WebSessions(store, services.config.paths.session_secret_file)
        _BY_STORE[store] = found
    return found
