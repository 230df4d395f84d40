"""The `bwrap` backend: bubblewrap namespaces, run as the agent's own unprivileged host uid.

What the cage gets (architecture §8):

- user, pid, ipc, uts and cgroup namespaces (net too when `spec.network == "none"`, else the
  host's network via `--share-net`); `--die-with-parent`; never `--new-session` (it breaks job
  control in PTY shells);
- a tmpfs root holding only: `/usr` (ro) and the `/bin /lib /lib64 /sbin` links, a minimal `/etc`
  (see `ETC_ALLOWLIST`) with a synthesized passwd/group naming uid 1000 `agent`, fresh `/proc`,
  `/dev` and `/tmp`, the agent's state dir at `/state`, home at `/home/agent`, socket dir at
  `/run/hive` (all rw), each `spec.binds` entry at its dest, and read-only at their own paths the
  interpreter, the venv, the hyperhive source and `spec.ro_paths` (`runtime_ro_paths()`);
- uid/gid 1000 inside. When the daemon is root and `spec.uid` is set, bwrap itself runs as that
  host uid through `setpriv --reuid=U --regid=G --clear-groups --no-new-privs`, so uid 1000
  inside *is* host uid U: files the agent writes belong to U, and root inside the cage does not
  exist. With `spec.uid` None it runs as the daemon's own user.

Stop: bwrap dies of SIGTERM at once, and its pid-1 helper then takes the whole namespace down
with SIGKILL; the agent would get no grace. So bwrap is started with SIGTERM ignored and the
agent's argv behind `env --default-signal=TERM`: `stop()`'s SIGTERM reaches the agent only.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import ClassVar

from hyperhive.cages.base import (
    CAGE_CONFIG_ENV,
    CAGE_HOME,
    CAGE_RUN,
    CAGE_STATE,
    ENV_CONFIG_ENV,
    ENV_RUN,
    ENV_STATE,
    Cage,
    CageError,
    CageHandle,
    CageSpec,
    Entry,
    Launch,
    base_env,
    cage_shell,
    enter_argv,
    entry_preexec,
    runtime_ro_paths,
)

__all__ = ["CAGE_GID", "CAGE_UID", "ETC_ALLOWLIST", "BwrapCage"]

CAGE_UID = 1000
CAGE_GID = 1000

# /etc is not bound whole: the cage sees the name-service, DNS, TLS roots, linker cache,
# timezone, `alternatives` (the target of many /usr/bin links) and git/ssh/shell system config,
# and nothing else of the host's /etc (machine-id, the host's user list, service configs, any
# world-readable secret an admin left there). Entries missing on the host are skipped.
# passwd and group are synthesized (uid 1000 = agent, HOME=/home/agent) so tools that look the
# user up (git's ident fallback, node's os.userInfo(), `whoami`) work.
ETC_ALLOWLIST = (
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "protocols",
    "services",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "os-release",
    "gitconfig",
    "ssh/ssh_config",
    "ssh/ssh_config.d",
    "profile",
    "bash.bashrc",
    "inputrc",
    "terminfo",
)

PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"agent:x:{CAGE_UID}:{CAGE_GID}:hyperhive agent:{CAGE_HOME}:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nagent:x:{CAGE_GID}:\nnogroup:x:65534:\n"

BWRAP = "bwrap"
SETPRIV = "setpriv"
ENV_BIN = "/usr/bin/env"


def _root_links() -> list[str]:
    """`/bin`, `/lib`, ... as on the host: a symlink where the host has one (merged /usr),
    else a read-only bind of the directory."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", str(host.readlink()), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    return args


def _memfd(name: str, data: str) -> int:
    fd = os.memfd_create(name)
    os.write(fd, data.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@functools.cache
def _probe() -> tuple[bool, str]:
    bwrap = shutil.which(BWRAP)
    if bwrap is None:
        return False, "bwrap not found on PATH (install bubblewrap)"
    if not Path(ENV_BIN).exists():
        return False, f"{ENV_BIN} missing"
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", *_root_links()]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--uid", str(CAGE_UID)]
    argv += ["--gid", str(CAGE_GID), ENV_BIN, "--default-signal=TERM", "--", "true"]
    tested = "bwrap --unshare-all ... env --default-signal=TERM true"
    if os.geteuid() == 0:
        if shutil.which(SETPRIV) is None:
            return False, "running as root but setpriv (util-linux) is missing"
        argv = [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", *argv]
        tested = f"setpriv --reuid=65534 {tested}"
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`{tested}` failed: {exc}"
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()[-300:]
        return False, f"`{tested}` exited {r.returncode}: {err}"
    return True, f"`{tested}` works"


class BwrapCage(Cage):
    kind: ClassVar[str] = "bwrap"
    isolated: ClassVar[bool] = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return _probe()

    def _identity(self, spec: CageSpec) -> tuple[int, int] | None:
        """The host uid/gid to drop to, or None to run as the daemon's own user."""
        if spec.uid is None:
            return None
        if os.geteuid() != 0:
            if spec.uid == os.geteuid():
                return None
            raise CageError(
                f"cage {spec.name}: spec.uid={spec.uid} needs a root daemon (running as uid {os.geteuid()})"
            )
        return spec.uid, spec.gid if spec.gid is not None else spec.uid

    def _layout(self, spec: CageSpec) -> tuple[list[str], dict[str, str], list[Path]]:
        """The bwrap mount arguments, the cage env and every host source path bound."""
        env = base_env(spec)
        env[ENV_STATE] = CAGE_STATE
        env[ENV_RUN] = CAGE_RUN
        env["HOME"] = CAGE_HOME
        env["USER"] = env["LOGNAME"] = "agent"
        args = ["--ro-bind", "/usr", "/usr", *_root_links()]
        sources: list[Path] = [Path("/usr")]
        for entry in ETC_ALLOWLIST:
            host = Path("/etc") / entry
            if host.exists():
                args += ["--ro-bind", str(host), str(host)]
                sources.append(host.resolve())
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for src, dest in ((spec.state_dir, CAGE_STATE), (spec.home_dir, CAGE_HOME), (spec.run_dir, CAGE_RUN)):
            if not src.is_dir():
                raise CageError(f"cage {spec.name}: {src} (for {dest}) is not a directory")
            args += ["--bind", str(src), dest]
            sources.append(src.resolve())
        seen: set[Path] = set()
        for p in [*runtime_ro_paths(), *spec.ro_paths]:
            p = Path(p).absolute()
            if p in seen or not p.exists():
                continue
            seen.add(p)
            args += ["--ro-bind", str(p), str(p)]
            sources.append(p.resolve())
        for bind in spec.binds:
            if not bind.src.exists():
                raise CageError(f"cage {spec.name}: bind source {bind.src} does not exist")
            args += ["--bind" if bind.writable else "--ro-bind", str(bind.src), bind.dest]
            sources.append(bind.src.resolve())
            if bind.env:
                env[bind.env] = bind.dest
        return args, env, sources

    def entry(self, handle: CageHandle) -> Entry:
        """nsenter into the namespaces of the cage's pid 1 (bwrap's child), as uid/gid 1000 inside
        (the agent's host uid), cwd /state, with the cage's environment and cgroup."""
        spec = handle.spec
        if spec is None or handle.proc.returncode is not None:
            raise CageError(f"cage {handle.name} is not running")
        env = self._layout(spec)[1]
        prefix = enter_argv(handle.name, handle.pid, CAGE_UID, CAGE_GID, CAGE_STATE)
        return Entry(prefix, env, cage_shell(), entry_preexec(handle.cgroup))

    def build_argv(self, spec: CageSpec) -> tuple[list[str], dict[str, str]]:
        """The argv without the passwd/group files (those need fds: see `prepare`)."""
        launch = self._launch(spec, with_fds=False)
        return launch.argv, launch.env

    def prepare(self, spec: CageSpec) -> Launch:
        return self._launch(spec, with_fds=True)

    def _launch(self, spec: CageSpec, *, with_fds: bool) -> Launch:
        if spec.network not in ("host", "none"):
            raise CageError(f"cage {spec.name}: unknown network mode {spec.network!r}")
        mounts, env, sources = self._layout(spec)
        ident = self._identity(spec)
        argv = [BWRAP, "--unshare-all"]
        if spec.network == "host":
            argv.append("--share-net")
        argv += ["--die-with-parent", "--hostname", spec.name, *mounts]
        fds: tuple[int, ...] = ()
        if with_fds:
            pw, gr = _memfd("passwd", PASSWD), _memfd("group", GROUP)
            fds = (pw, gr)
            argv += ["--ro-bind-data", str(pw), "/etc/passwd", "--ro-bind-data", str(gr), "/etc/group"]
            if spec.config_env:
                ce = _memfd("config-env", json.dumps(spec.config_env))
                fds += (ce,)
                argv += ["--perms", "0400", "--ro-bind-data", str(ce), CAGE_CONFIG_ENV]
        if spec.config_env:
            env[ENV_CONFIG_ENV] = CAGE_CONFIG_ENV
        argv += ["--remount-ro", "/", "--chdir", CAGE_STATE, "--uid", str(CAGE_UID), "--gid", str(CAGE_GID)]
        argv += ["--", ENV_BIN, "--default-signal=TERM", "--", *spec.argv]
        preexec = None
        if ident is not None:
            uid, gid = ident
            argv = [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs", *argv]
            blocked = blocked_ancestors(sources, uid, gid)
            if blocked:
                preexec = functools.partial(unblock_in_child, blocked)
        return Launch(argv, env, pass_fds=fds, preexec=preexec, ignore_sigterm=True)


# ---- reaching bind sources under directories the agent's uid cannot traverse ----------------
#
# An unprivileged bwrap resolves every bind source as the agent's host uid. A source below a
# directory that uid cannot traverse (the interpreter under /root/.pyenv, /root being 0700, is
# the usual case) fails with "Can't find source path ...: Permission denied"; `--ro-bind-fd`
# does not help (bwrap 0.8 realpath()s /proc/self/fd/N and walks the same path). A root daemon
# fixes that in the child before dropping privileges: a private mount namespace (a slave of the
# host's: nothing leaks back), a fresh 0755 tmpfs over each blocked directory, and a bind of
# exactly the needed sources back into it. The cage still sees only what it binds; the host's
# directory keeps its mode and its contents.


_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_BIND = 4096
_MS_REC = 16384
_MS_SLAVE = 1 << 19


def _traversable(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocked_ancestors(sources: list[Path], uid: int, gid: int) -> dict[Path, list[Path]]:
    """For each source (already resolved), the topmost ancestor directory `uid:gid` (with no
    supplementary groups) cannot traverse → the sources below it that must be re-exposed."""
    out: dict[Path, list[Path]] = {}
    for src in sources:
        for anc in reversed(src.parents):  # "/" first
            if anc == src:
                break
            try:
                st = anc.stat()
            except OSError:
                break
            if not _traversable(st, uid, gid):
                out.setdefault(anc, [])
                if src not in out[anc]:
                    out[anc].append(src)
                break
    return out


def unblock_in_child(blocked: dict[Path, list[Path]]) -> None:
    """In the child, as root, before exec: the private-mount-namespace fix described above.
    Raises OSError (which fails the cage start with the reason)."""
    if not blocked:
        return
    os.umask(0o022)  # the scaffold must be traversable by the agent's uid (the daemon runs with 077)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None), "make / a slave mount")
    for anc, sources in sorted(blocked.items(), key=lambda kv: len(kv[0].parts)):
        # open the sources in this namespace (a bind from another namespace is EINVAL),
        # before the tmpfs hides them
        fds = [(src, os.open(src, os.O_PATH | os.O_CLOEXEC)) for src in sources]
        try:
            check(
                libc.mount(b"tmpfs", bytes(anc), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755"),
                f"tmpfs over {anc}",
            )
            for src, fd in fds:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    src.mkdir(mode=0o755, parents=True, exist_ok=True)
                else:
                    src.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                    os.close(os.open(src, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
                check(
                    libc.mount(f"/proc/self/fd/{fd}".encode(), bytes(src), None, _MS_BIND | _MS_REC, None),
                    f"bind {src} back",
                )
        finally:
            for _, fd in fds:
                os.close(fd)
