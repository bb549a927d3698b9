"""The tools under test: building or finding zcp (and whether it can send a
tree), finding or installing OpenBSD netcat, tar and rsync with apt-get, the
version lines quoted in reports, and the rsync daemon the tree case sends
to (config in a temp dir, one daemon for the whole benchmark)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import LOOPBACK, REPO, BenchError, RunError, git_revision, log
from .procs import Child, Children, free_port, proc_cpu_s, wait_no_children, wait_until_listening

RECURSIVE_UNSUPPORTED = "zcp send -r not supported by this build"


# --------------------------------------------------------------------------
# zcp


def build_zcp() -> Path:
    """The zcp binary: $ZCP_BIN, or a fresh `cargo build --release --locked`."""
    override = os.environ.get("ZCP_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BenchError(f"ZCP_BIN={override} is not an executable file")
        return path.resolve()
    if shutil.which("cargo") is None:
        raise BenchError("cargo not found: install Rust (https://rustup.rs) or set ZCP_BIN")
    log("building zcp: cargo build --release --locked")
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, stdout=sys.stderr, check=True)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    return (REPO / target_dir / "release" / "zcp").resolve()


def zcp_identity(zcp: Path) -> str:
    """`zcp --version`, plus the git commit when it was built from this tree."""
    version = subprocess.run(
        [str(zcp), "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    if os.environ.get("ZCP_BIN"):
        return f"{version} ({zcp})"
    revision = git_revision()
    return f"{version} (git {revision})" if revision else version


def zcp_sends_trees(zcp: Path) -> bool:
    """Whether `zcp send` has -r/--recursive (its --help mentions it)."""
    done = subprocess.run(
        [str(zcp), "send", "--help"], check=False, capture_output=True, text=True, timeout=10
    )
    return "--recursive" in done.stdout + done.stderr


# --------------------------------------------------------------------------
# Packages


def apt_install(package: str) -> None:
    if shutil.which("apt-get") is None:
        raise BenchError(f"{package} is missing and apt-get is not available: install {package}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise BenchError(f"installing {package} needs root: run as root or install sudo")
    log(f"installing {package} with apt-get")
    subprocess.run(sudo + ["apt-get", "update"], stdout=sys.stderr, check=True)
    subprocess.run(
        sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", package],
        stdout=sys.stderr,
        check=True,
    )


def first_line(argv: list[str]) -> str:
    """The first line a command prints (stderr first), '' if it cannot run."""
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stderr + done.stdout).strip().splitlines()
    return lines[0] if lines else ""


def netcat_banner(path: str) -> str:
    """The first line `nc -h` prints, which names the netcat variant."""
    return first_line([path, "-h"])


def find_openbsd_nc() -> str | None:
    for name in ("nc.openbsd", "nc"):
        path = shutil.which(name)
        if path and "OpenBSD netcat" in netcat_banner(path):
            return path
    return None


def ensure_openbsd_nc() -> str:
    """Path of an OpenBSD netcat, installing it first when needed."""
    path = find_openbsd_nc()
    if path is None:
        apt_install("netcat-openbsd")
        path = find_openbsd_nc()
    if path is None:
        raise BenchError("netcat-openbsd was installed but no OpenBSD `nc` is on PATH")
    return path


def ensure_command(name: str, package: str) -> str:
    """Path of `name`, installing `package` first when it is missing."""
    path = shutil.which(name)
    if path is None:
        apt_install(package)
        path = shutil.which(name)
    if path is None:
        raise BenchError(f"{package} was installed but `{name}` is not on PATH")
    return path


def version_line(path: str) -> str:
    """`tar --version`, `rsync --version`: their first line."""
    done = subprocess.run([path, "--version"], check=False, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else "unknown version"


# --------------------------------------------------------------------------
# rsync daemon

RSYNC_MODULE = "bench"
RSYNCD_CONF = """\
# Written by bench/compare.sh for one benchmark run.
use chroot = no
numeric ids = yes
reverse lookup = no
log file = {log}

[{module}]
    path = {path}
    read only = no
{ids}"""
# As root the daemon would switch to "nobody" unless told otherwise; as any
# other user it must not try to change ids at all (setgroups fails).
RSYNCD_ROOT_IDS = "    uid = 0\n    gid = 0\n"


class RsyncDaemon:
    """`rsync --daemon --no-detach` on 127.0.0.1 and a free port, serving
    `root` read-write as module RSYNC_MODULE. start() and stop() may be
    repeated; each start writes a fresh config in a temp dir that stop()
    removes. Its CPU per transfer is the growth of its own plus its reaped
    children's CPU time (/proc/PID/stat), so one daemon can serve many runs.
    Its peak RSS is known once it is stopped (peak_rss_kib)."""

    def __init__(self, rsync: str, root: Path):
        self.rsync = rsync
        self.root = root
        self.confdir: Path | None = None
        self.port = 0
        self._children = Children()
        self._daemon: Child | None = None

    @property
    def log_path(self) -> Path | None:
        return None if self.confdir is None else self.confdir / "rsyncd.log"

    def start(self) -> None:
        self.confdir = Path(tempfile.mkdtemp(prefix="zcp-compare-rsyncd-"))
        conf = self.confdir / "rsyncd.conf"
        conf.write_text(
            RSYNCD_CONF.format(
                log=self.log_path,
                module=RSYNC_MODULE,
                path=self.root,
                ids=RSYNCD_ROOT_IDS if os.geteuid() == 0 else "",
            )
        )
        self.port = free_port()
        argv = [
            self.rsync, "--daemon", "--no-detach", f"--config={conf}",
            f"--address={LOOPBACK}", f"--port={self.port}",
        ]  # fmt: skip
        try:
            self._daemon = self._children.spawn(argv)
            wait_until_listening(self.port, self._daemon)
        except RunError as error:
            raise BenchError(f"rsync daemon did not start: {error}; {self.log_tail()}") from None
        log(f"rsync daemon listening on {LOOPBACK}:{self.port} (config {conf})")

    def url(self, relative: str) -> str:
        """rsync:// URL of a directory `relative` to the served root."""
        return f"rsync://{LOOPBACK}:{self.port}/{RSYNC_MODULE}/{relative}/"

    def cpu_s(self) -> float:
        if self._daemon is None or self._daemon.has_exited():
            raise RunError(f"the rsync daemon is not running; {self.log_tail()}")
        return proc_cpu_s(self._daemon.pid)

    def settle(self, timeout: float) -> bool:
        """Wait until the daemon has reaped the transfer's processes."""
        return self._daemon is not None and wait_no_children(self._daemon.pid, timeout)

    def log_tail(self, lines: int = 3) -> str:
        if self.log_path is None:
            return "no rsyncd log"
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return "no rsyncd log"
        return "rsyncd log: " + " | ".join(tail) if tail else "rsyncd log is empty"

    @property
    def peak_rss_kib(self) -> int:
        """Peak RSS of the last daemon and of every child it reaped (wait4
        reports a process's own and its reaped children's high-water mark,
        the larger of the two), once stop() has reaped it; 0 before."""
        return self._daemon.maxrss_kib if self._daemon is not None else 0

    def stop(self) -> None:
        self._children.stop_all()
        if self.confdir is not None:
            shutil.rmtree(self.confdir, ignore_errors=True)
            self.confdir = None
