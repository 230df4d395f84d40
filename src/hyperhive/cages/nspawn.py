"""The `nspawn` backend: systemd-nspawn with a private user namespace, as the agent's host uid.

- Root: a fresh, empty scaffold directory per start (`--directory`), holding only mountpoints,
  the `/bin /lib ...` links and a synthesized passwd/group; `/usr` and the `/etc` allowlist of the
  bwrap backend bound read-only, the agent's state/home/socket dirs at `/state`, `/home/agent`,
  `/run/hive`, `spec.binds` at their dests, the interpreter/venv/source (`runtime_ro_paths()`)
  and `spec.ro_paths` read-only at their own paths. nspawn adds its own `/proc`, `/sys` (ro),
  `/dev`, `/tmp` and `/run` tmpfs. `--ephemeral` was not needed: nothing is copied, and a
  scaffold per start lets two cages run at once (nspawn refuses two on one directory).
- `--private-users=U:1 --private-users-ownership=off`: a one-uid user namespace in which the
  cage's uid 0 *is* host uid U (`spec.uid`). Files the agent writes belong to U; no other host
  uid exists inside. architecture §8 names `--private-users=pick --private-users-ownership=chown`:
  measured here, `pick` maps the cage into a random 64K range, so the agent's own state dir
  (owned by U) shows up as `nobody` and is not writable, and `chown` refuses any range that is
  not 65536-aligned with 65536 ids ("Automatic UID/GID adjusting is only supported for UID/GID
  ranges starting at multiples of 2^16"). The one-uid map keeps the per-agent uid contract that
  bwrap has. With `spec.uid` None the cage's root is the daemon's uid (root), still inside a
  user namespace without host capabilities.
- `--register=no --keep-unit` (PID 1 here is not systemd; no D-Bus), `--as-pid2` (nspawn's stub
  init reaps), `--console=pipe`, `--link-journal=no`, `--private-network` for network "none".

Stop: nspawn SIGTERMed kills its container with SIGKILL at once, and nspawn SIGKILLed leaves the
container running, reparented to PID 1. So `terminate()` sends SIGTERM to the cage's payload
found through its cgroup (the agent gets its grace), and SIGKILL/exit kill everything left in
the cgroup (see `limits.CageCgroup`). Without a writable cgroup the handle falls back to
signalling nspawn, and a daemon killed with -9 can leave a container behind; the next start of
the same agent kills it (same cgroup).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
from hyperhive.cages.bwrap import ETC_ALLOWLIST
from hyperhive.cages.limits import cgroup_name

__all__ = ["NspawnCage", "NspawnHandle"]

NSPAWN = "systemd-nspawn"
_PROPAGATE = Path("/run/systemd/nspawn/propagate")

PASSWD = (
    f"root:x:0:0:hyperhive agent:{CAGE_HOME}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def _esc(path: str | Path) -> str:
    """nspawn's --bind syntax splits on ':'."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:")


def _scaffold(name: str, mounts: list[tuple[Path, str, bool]]) -> Path:
    """An empty root for one start: the `/bin`-style links, passwd/group, and a mountpoint for
    every bind (the root is mounted read-only, so nspawn cannot create them itself)."""
    root = Path(tempfile.mkdtemp(prefix=f"hyperhive-nspawn-{name}-"))
    root.chmod(0o755)  # the cage's uid must traverse its own root
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / link
        if host.is_symlink():
            (root / link).symlink_to(host.readlink())
        elif host.is_dir():
            (root / link).mkdir()
    for d in ("usr", "etc", "tmp", "run", "var", "dev", "proc", "sys", "root"):
        (root / d).mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    for src, dest, _ in mounts:
        target = root / dest.lstrip("/")
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
    # explicit modes: the daemon's umask is 077 and the cage's uid is not the owner (root)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            if not (Path(dirpath) / d).is_symlink():
                (Path(dirpath) / d).chmod(0o755)
        for f in filenames:
            if not (Path(dirpath) / f).is_symlink():
                (Path(dirpath) / f).chmod(0o644)
    return root


def _remove_scaffold(root: Path, machine: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
    # nspawn leaves /run/systemd/nspawn/propagate/<machine> when /run is not a tmpfs
    with contextlib.suppress(OSError):
        shutil.rmtree(_PROPAGATE / machine)


@functools.cache
def _probe() -> tuple[bool, str]:
    nspawn = shutil.which(NSPAWN)
    if nspawn is None:
        return False, "systemd-nspawn not found (install systemd-container)"
    if os.geteuid() != 0:
        return False, "systemd-nspawn needs a root daemon"
    root = _scaffold("probe", [])
    machine = f"hh-probe-{os.getpid()}"
    argv = [nspawn, "--quiet", "--register=no", "--keep-unit", f"--machine={machine}"]
    argv += ["--private-users=65534:1", "--private-users-ownership=off", "--read-only"]
    argv += [f"--directory={root}", "--resolv-conf=off", "--timezone=off"]
    argv += ["--bind-ro=/usr", "--as-pid2", "--console=pipe", "--link-journal=no", "--private-network", "true"]
    tested = "systemd-nspawn --register=no --keep-unit --private-users=65534:1 --as-pid2 --private-network true"
    try:
        r = subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`{tested}` failed: {exc}"
    finally:
        _remove_scaffold(root, machine)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()[-300:]
        return False, f"`{tested}` exited {r.returncode}: {err}"
    return True, f"`{tested}` works"


CAGE_ENV_FILE = "/etc/hyperhive/cage-env.json"  # loaded by cages/envexec.py inside the cage
PUBLIC_ENV = frozenset({"PATH", "LANG", "PYTHONUNBUFFERED", "HOME", "USER", "LOGNAME"})


def _public_env(key: str) -> bool:
    """Names and paths the core sets (fine on a command line); anything else may be a secret."""
    return key in PUBLIC_ENV or key.startswith("HYPERHIVE_")


def _cage_env(spec: CageSpec) -> dict[str, str]:
    env = base_env(spec)
    env[ENV_STATE] = CAGE_STATE
    env[ENV_RUN] = CAGE_RUN
    env["HOME"] = CAGE_HOME
    env["USER"] = env["LOGNAME"] = "root"
    for bind in spec.binds:
        if bind.env:
            env[bind.env] = bind.dest
    return env


def _stub_init(handle: CageHandle) -> int | None:
    """nspawn's stub init: the process of the cage's cgroup that is pid 1 in its namespace."""
    if handle.cgroup is None:
        return None
    for pid in sorted(handle.cgroup.pids()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                if len(ids) >= 2 and ids[-1] == "1":
                    return pid
    return None


class NspawnHandle(CageHandle):
    def _payload(self) -> list[int]:
        """The cage's processes inside its pid namespace, minus nspawn's stub init (pid 1)."""
        if self.cgroup is None:
            return []
        out = []
        for pid in self.cgroup.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] != "1":
                        out.append(pid)
        return out

    def terminate(self) -> None:
        payload = self._payload()
        if not payload:
            super().terminate()  # no cgroup: nspawn kills its container itself
            return
        for pid in payload:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


class NspawnCage(Cage):
    kind: ClassVar[str] = "nspawn"
    isolated: ClassVar[bool] = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return _probe()

    def handle_class(self) -> type[CageHandle]:
        return NspawnHandle

    def entry(self, handle: CageHandle) -> Entry:
        """nsenter into the namespaces of nspawn's stub init (pid 1 inside, found through the
        cage's cgroup), as root inside (the agent's host uid), cwd /state, the cage's env."""
        spec = handle.spec
        if spec is None or handle.proc.returncode is not None:
            raise CageError(f"cage {handle.name} is not running")
        init = _stub_init(handle)
        if init is None:
            raise CageError(f"cage {handle.name} has no process to enter (no cgroup, or still starting)")
        prefix = enter_argv(handle.name, handle.pid, 0, 0, CAGE_STATE, target=init)
        return Entry(prefix, _cage_env(spec), cage_shell(), entry_preexec(handle.cgroup))

    def build_argv(self, spec: CageSpec) -> tuple[list[str], dict[str, str]]:
        launch = self.prepare(spec)
        if launch.cleanup is not None:
            launch.cleanup()
        return launch.argv, launch.env

    def prepare(self, spec: CageSpec) -> Launch:
        if spec.network not in ("host", "none"):
            raise CageError(f"cage {spec.name}: unknown network mode {spec.network!r}")
        if os.geteuid() != 0:
            raise CageError("the nspawn cage needs a root daemon")
        uid = spec.uid if spec.uid is not None else os.geteuid()
        gid = spec.gid if spec.gid is not None else (spec.uid if spec.uid is not None else os.getegid())
        if gid != uid:
            raise CageError(f"cage {spec.name}: nspawn maps one id for uid and gid (uid {uid}, gid {gid})")
        env = _cage_env(spec)
        machine = f"hh-{cgroup_name(spec.name, spec.state_dir)}"
        args = [NSPAWN, "--quiet", "--register=no", "--keep-unit", f"--machine={machine}"]
        args += [f"--hostname={spec.name}", f"--private-users={uid}:1", "--private-users-ownership=off"]
        args += ["--as-pid2", "--console=pipe", "--link-journal=no", f"--chdir={CAGE_STATE}"]
        args += ["--read-only", "--resolv-conf=off", "--timezone=off"]
        if spec.network == "none":
            args.append("--private-network")
        mounts: list[tuple[Path, str, bool]] = [(Path("/usr"), "/usr", False)]
        for entry in ETC_ALLOWLIST:
            host = Path("/etc") / entry
            if host.exists():
                mounts.append((host, str(host), False))
        for src, dest in ((spec.state_dir, CAGE_STATE), (spec.home_dir, CAGE_HOME), (spec.run_dir, CAGE_RUN)):
            if not src.is_dir():
                raise CageError(f"cage {spec.name}: {src} (for {dest}) is not a directory")
            mounts.append((src, dest, True))
        seen: set[Path] = set()
        for p in [*runtime_ro_paths(), *spec.ro_paths]:
            p = Path(p).absolute()
            if p in seen or not p.exists():
                continue
            seen.add(p)
            mounts.append((p, str(p), False))
        for bind in spec.binds:
            if not bind.src.exists():
                raise CageError(f"cage {spec.name}: bind source {bind.src} does not exist")
            mounts.append((bind.src, bind.dest, bind.writable))
        for src, dest, writable in mounts:
            args.append(f"--{'bind' if writable else 'bind-ro'}={_esc(src)}:{_esc(dest)}")
        for key, value in env.items():
            if _public_env(key):
                args.append(f"--setenv={key}={value}")
        root = _scaffold(spec.name, mounts)
        argv = list(spec.argv)
        private = {k: v for k, v in env.items() if not _public_env(k)}
        if private:  # --agent-env values, tokens: never on nspawn's argv (/proc shows it to all)
            env_file = root / CAGE_ENV_FILE.lstrip("/")
            env_file.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
            env_file.parent.chmod(0o711)  # whatever the daemon's umask
            fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(private, f)
            os.chown(env_file, uid, uid)
            argv = [sys.executable, "-m", "hyperhive.cages.envexec", CAGE_ENV_FILE, "--", *argv]
        if spec.config_env:  # in the cage's own root, readable by its uid only, never on argv
            env_dir = root / CAGE_CONFIG_ENV.lstrip("/")
            env_dir.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
            env_dir.parent.chmod(0o711)
            fd = os.open(env_dir, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(spec.config_env, f)
            os.chown(env_dir, uid, uid)
            args.append(f"--setenv={ENV_CONFIG_ENV}={CAGE_CONFIG_ENV}")
        args += [f"--directory={root}", "--", *argv]
        host_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": env["LANG"]}
        return Launch(args, host_env, cleanup=functools.partial(_remove_scaffold, root, machine))
