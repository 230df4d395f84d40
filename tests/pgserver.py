"""A throw-away PostgreSQL cluster for the tests: `initdb` + `pg_ctl` on a unix socket in a temp
dir (no TCP port), run as an unprivileged user when the tests run as root (PostgreSQL refuses
root). `PgCluster.database()` hands out a fresh database per caller."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

__all__ = ["PgCluster", "find_bin", "shared_cluster"]

USER = "hh_test"


def find_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: Debian keeps them under /usr/lib/postgresql/N/bin."""
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found is None:
            break
    else:
        return Path(shutil.which("pg_ctl") or "").resolve().parent
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    return next((r for r in roots if (r / "initdb").exists() and (r / "pg_ctl").exists()), None)


def _runas() -> tuple[list[str], int | None, int | None]:
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"], pw.pw_uid, pw.pw_gid
    raise RuntimeError("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


class PgCluster:
    def __init__(self, *, durable: bool = False) -> None:
        """`durable`: fsync on (benchmarks); the tests run without it, as nothing outlives them."""
        bindir = find_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="hhpg-", dir="/tmp"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.prefix, uid, gid = _runas()
        self.sock.mkdir()
        if uid is not None and gid is not None:
            os.chown(self.root, uid, gid)
            os.chown(self.sock, uid, gid)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                   "--no-instructions", *([] if durable else ["--no-sync"])])  # fmt: skip
        opts = f"-c listen_addresses='' -c unix_socket_directories={self.sock} -c max_connections=200"
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off"
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w",
                   "-t", "60", "start"])  # fmt: skip
        self.admin_url = f"postgresql:///postgres?host={self.sock}&user={USER}"

    def _run(self, argv: list[str]) -> None:
        out = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, check=False, cwd=self.root)
        if out.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:] if (self.root / "log").exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {out.stderr.strip()}\n{log}")

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql:///{name}?host={self.sock}&user={USER}"

    def stop(self) -> None:
        if self.data.exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


_SHARED: list[PgCluster] = []


def shared_cluster() -> PgCluster:
    """One cluster for the whole test process, started on first use and stopped at exit."""
    if not _SHARED:
        import atexit

        cluster = PgCluster()
        atexit.register(cluster.stop)
        _SHARED.append(cluster)
    return _SHARED[0]
