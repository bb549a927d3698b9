"""Servers a peer tool sends to: the rsync daemon and a private sshd.

Daemon owns what they share: a fresh config in a temp dir and a free
loopback port for each start, the process kept in the foreground (so this
script reaps it and its wait4 figures cover every child it reaped), its CPU
growth per transfer from /proc, waiting until it has reaped a transfer's
processes, an optional `strace -c -f` wrapper for the syscall-count run,
and stopping it and removing the config on every path out.

SshServer generates its host key and the client's key once (ssh-keygen into
a temp dir), writes its own sshd_config for each start (that port, those
keys, public-key login for this user only), and gives the scp command line
that logs in with them without touching ~/.ssh."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .common import LOOPBACK, BenchError, RunError, log
from .procs import Child, Children, child_pids, free_port, proc_cpu_s, wait_no_children, wait_until_listening
from .syscalls import strace_argv

# How long a stopped daemon may take to exit before it is killed.
STOP_GRACE_S = 5.0


class Daemon:
    """A server run in the foreground on 127.0.0.1 and a free port. start()
    and stop() may be repeated; stop() is safe at any time."""

    name = "daemon"

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet  # started for every run: no log line each time
        self.confdir: Path | None = None
        self.port = 0
        self._children = Children()
        self._launched: Child | None = None  # the daemon, or strace running it
        self._pid: int | None = None  # the daemon itself

    def configure(self, confdir: Path) -> list[str]:
        """Write this start's config into `confdir`; return the argv that
        runs the daemon on self.port in the foreground."""
        raise NotImplementedError

    def log_tail(self, lines: int = 3) -> str:
        return ""

    def start(self, strace: str | None = None, summary: Path | None = None) -> None:
        """Start on a fresh port; under `strace -c -f -o summary` if given."""
        self.confdir = Path(tempfile.mkdtemp(prefix=f"zcp-bench-{self.name.replace(' ', '-')}-"))
        self.port = free_port()
        argv = self.configure(self.confdir)
        if strace is not None and summary is not None:
            argv = strace_argv(strace, summary) + argv
        try:
            self._launched = self._children.spawn(argv)
            wait_until_listening(self.port, self._launched)
            self._pid = self._launched.pid
            if strace is not None:
                traced = child_pids(self._launched.pid)
                if len(traced) != 1:
                    raise RunError(f"strace runs {len(traced)} processes, expected the {self.name} alone")
                self._pid = traced[0]
        except RunError as error:
            tail = self.log_tail()
            self.stop()
            raise BenchError(f"{self.name} did not start: {error}" + (f"; {tail}" if tail else "")) from None
        if not self.quiet:
            log(f"{self.name} listening on {LOOPBACK}:{self.port} (config in {self.confdir})")

    def cpu_s(self) -> float:
        """CPU seconds of the daemon and every child it has reaped so far."""
        if self._launched is None or self._pid is None or self._launched.has_exited():
            raise RunError(f"the {self.name} is not running" + (f"; {self.log_tail()}" if self.log_tail() else ""))
        return proc_cpu_s(self._pid)

    def settle(self, timeout: float) -> bool:
        """Wait until the daemon has reaped the transfer's processes."""
        return self._pid is not None and wait_no_children(self._pid, timeout)

    @property
    def peak_rss_kib(self) -> int:
        """Peak RSS of the daemon and of every child it reaped (the larger
        one), known once stop() has reaped it; 0 before."""
        return self._launched.maxrss_kib if self._launched is not None and self._launched.reaped else 0

    def stop(self) -> None:
        """End the daemon (SIGTERM to the daemon itself, so that a wrapping
        strace sees it exit and writes its summary), reap it, remove the
        config."""
        if self._launched is not None and self._pid is not None and not self._launched.has_exited():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while not self._launched.has_exited() and time.monotonic() < deadline:
                time.sleep(0.01)
        self._children.stop_all()
        self._pid = None
        if self.confdir is not None:
            shutil.rmtree(self.confdir, ignore_errors=True)
            self.confdir = None


# --------------------------------------------------------------------------
# rsync daemon

RSYNC_MODULE = "bench"
RSYNCD_CONF = """\
# Written by the zcp benchmark for one run.
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


class RsyncDaemon(Daemon):
    """`rsync --daemon --no-detach` serving `root` read-write as module
    RSYNC_MODULE."""

    name = "rsync daemon"

    def __init__(self, rsync: str, root: Path, quiet: bool = False):
        super().__init__(quiet)
        self.rsync = rsync
        self.root = root

    @property
    def log_path(self) -> Path | None:
        return None if self.confdir is None else self.confdir / "rsyncd.log"

    def configure(self, confdir: Path) -> list[str]:
        conf = confdir / "rsyncd.conf"
        ids = RSYNCD_ROOT_IDS if os.geteuid() == 0 else ""
        conf.write_text(RSYNCD_CONF.format(log=self.log_path, module=RSYNC_MODULE, path=self.root, ids=ids))
        return [
            self.rsync, "--daemon", "--no-detach", f"--config={conf}",
            f"--address={LOOPBACK}", f"--port={self.port}",
        ]  # fmt: skip

    def url(self, relative: str) -> str:
        """rsync:// URL of a directory `relative` to the served root."""
        return f"rsync://{LOOPBACK}:{self.port}/{RSYNC_MODULE}/{relative}/"

    def log_tail(self, lines: int = 3) -> str:
        if self.log_path is None:
            return "no rsyncd log"
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return "no rsyncd log"
        return "rsyncd log: " + " | ".join(tail) if tail else "rsyncd log is empty"


# --------------------------------------------------------------------------
# sshd

SSHD_CONFIG = """\
# Written by the zcp benchmark for one run.
ListenAddress {address}
Port {port}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized}
AllowUsers {user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
LogLevel ERROR
Subsystem sftp {sftp}
"""
# Where sshd keeps its privilege separation (an empty root-owned directory);
# Debian's service creates it at boot, a machine without the service lacks it.
PRIVSEP_DIR = Path("/run/sshd")
SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/libexec/sftp-server")


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zcp-bench", "-f", str(path)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip


class SshServer(Daemon):
    """A private `sshd -D -e` that accepts the client key generated here,
    for this user only; scp_argv() is the matching client command."""

    name = "sshd"

    def __init__(self, sshd: str, scp: str):
        super().__init__(quiet=True)
        self.sshd, self.scp = sshd, scp
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.keydir = Path(tempfile.mkdtemp(prefix="zcp-bench-sshkeys-"))
        self._made_privsep = False
        self._log = self.keydir / "sshd.log"
        try:
            keygen(self.keydir / "host_key")
            keygen(self.keydir / "client_key")
        except subprocess.CalledProcessError as error:
            shutil.rmtree(self.keydir, ignore_errors=True)
            raise BenchError(f"ssh-keygen failed: {error.stderr.decode(errors='replace').strip()}") from None
        shutil.copy(self.keydir / "client_key.pub", self.keydir / "authorized_keys")
        if not PRIVSEP_DIR.exists() and os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755)
            self._made_privsep = True
        self.sftp = next((path for path in SFTP_SERVERS if os.access(path, os.X_OK)), "internal-sftp")

    def configure(self, confdir: Path) -> list[str]:
        conf = confdir / "sshd_config"
        conf.write_text(
            SSHD_CONFIG.format(
                address=LOOPBACK, port=self.port, host_key=self.keydir / "host_key",
                authorized=self.keydir / "authorized_keys", user=self.user, sftp=self.sftp,
            )
        )  # fmt: skip
        # sshd re-executes itself, so it must be named by an absolute path.
        return [self.sshd, "-D", "-e", "-f", str(conf), "-E", str(self._log)]

    def scp_argv(self, *extra: str) -> list[str]:
        """scp with this server's port and the generated client key; no
        user config, no prompts, known hosts kept in the key directory."""
        return [
            self.scp, "-q", "-F", "/dev/null", "-P", str(self.port), "-i", str(self.keydir / "client_key"),
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.keydir / 'known_hosts'}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", *extra,
        ]  # fmt: skip

    def target(self, path: Path) -> str:
        """scp's name of `path` on this server."""
        return f"{self.user}@{LOOPBACK}:{path}"

    def log_tail(self, lines: int = 3) -> str:
        try:
            tail = self._log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return "sshd log: " + " | ".join(tail) if tail else ""

    def close(self) -> None:
        """stop(), then remove the keys and the privilege separation
        directory if this made it."""
        self.stop()
        shutil.rmtree(self.keydir, ignore_errors=True)
        if self._made_privsep:
            with contextlib.suppress(OSError):
                PRIVSEP_DIR.rmdir()
            self._made_privsep = False
