"""Child processes: how a tool is started, timed and stopped.

Owns the `sh` launcher and child-subreaper trick that makes wait4(2) report
each tool's own CPU time and peak RSS, the Child/Children bookkeeping that
stops every child on error or Ctrl-C, the Watchdog that turns a hang into a
failed run, the loopback port helpers, and reading the CPU time of a daemon
and the children it has reaped from /proc (for the rsync daemon)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .common import LOOPBACK, BenchError, RunError

# How long a receiver may take to announce its port or start listening.
READY_TIMEOUT_S = 15.0
# Grace between SIGTERM and SIGKILL when ending a child.
KILL_GRACE_S = 5.0
# How long a receiver may outlive a failed sender before it is stopped.
RECEIVER_GRACE_S = 3.0
# Poll interval while waiting for nc to listen (outside the timed region).
LISTEN_POLL_S = 0.002


# Peak RSS needs care. A child's ru_maxrss starts at the resident size of
# the process it was forked from, because exec records the old address
# space's high-water mark. Forked from this Python process, every tool would
# report ~15-30 MiB, far above the 2-5 MiB that nc and zcp really use. So
# each tool is forked by a small `sh` instead (about 1 MiB) that prints the
# tool's pid and exits at once; as a child subreaper this script inherits
# the orphaned tool and reaps it itself with wait4.
LAUNCHER_SH = "/bin/sh"
PID_MARKER = "zcpbench-launched-pid:"
PID_LINE = re.compile(re.escape(PID_MARKER.encode()) + rb"(\d+)\n")
# An asynchronous command gets /dev/null as stdin in a non-interactive
# shell, so the launcher hands its own stdin over explicitly through fd 3.
# It also ignores SIGINT, so Ctrl-C reaches the tools through this script's
# cleanup (Children.stop_all), not through the terminal.
LAUNCHER = f'exec 3<&0; "$@" 0<&3 3<&- & echo "{PID_MARKER}$!" >&2'
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt orphaned descendants (the launched tools), see LAUNCHER."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


class Child:
    """A tool started through LAUNCHER: its stderr is drained by a thread
    and it is reaped with os.wait4 for its own CPU time and peak RSS."""

    def __init__(self, argv: list[str], name: str | None = None):
        self.argv = argv
        self.name = name or Path(argv[0]).name + " " + argv[1]
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.cpu_s = 0.0
        self.maxrss_kib = 0
        self._lock = threading.Lock()
        self._reaped = False
        self._stderr: list[str] = []
        self._pid: queue.Queue[int | None] = queue.Queue(maxsize=1)
        self._first_line: queue.Queue[str | None] = queue.Queue(maxsize=1)
        self._stderr_pipe = None
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)

    def start(self, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) -> None:
        launcher = subprocess.Popen(
            [LAUNCHER_SH, "-c", LAUNCHER, "sh", *self.argv],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        self._stderr_pipe = launcher.stderr
        self._drain.start()
        with contextlib.suppress(queue.Empty):
            self.pid = self._pid.get(timeout=READY_TIMEOUT_S)
        # Once the launcher is reaped, the tool is this process's child.
        if launcher.wait() != 0 or self.pid is None:
            raise RunError(f"could not start {self.name} (launcher exited with {launcher.returncode})")

    def _drain_stderr(self) -> None:
        """Route the launcher's pid line and the tool's first line to their
        queues, keep the rest for error reports.

        The tool may write to stderr before the launcher's `echo`, and in
        several write(2) calls per line (zcp prints `listening on ADDR:PORT`
        in three), so the marker can land inside one of the tool's lines.
        The echo is one small, hence atomic, pipe write: until it has been
        found and cut out, nothing is split into lines."""
        launched = announced = False
        pending = b""
        while chunk := self._stderr_pipe.read1(65536):
            pending += chunk
            if not launched:
                match = PID_LINE.search(pending)
                if match is None:
                    continue
                self._pid.put(int(match.group(1)))
                launched = True
                pending = pending[: match.start()] + pending[match.end() :]
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                self._stderr.append(line)
                if not announced:
                    self._first_line.put(line)
                    announced = True
        if pending and launched:
            self._stderr.append(pending.decode("utf-8", "replace"))
        if not launched:
            self._pid.put(None)
        if not announced:
            self._first_line.put(None)

    def first_stderr_line(self, timeout: float) -> str:
        """The tool's first line on stderr (zcp recv announces its port)."""
        try:
            line = self._first_line.get(timeout=timeout)
        except queue.Empty:
            raise RunError(f"{self.name} printed nothing on stderr within {timeout:.0f} s") from None
        if line is None:
            raise RunError(f"{self.name} exited without printing anything on stderr")
        return line

    def stderr_lines(self) -> list[str]:
        """What the tool printed on stderr, line by line (complete once it
        has been reaped)."""
        return list(self._stderr)

    def has_exited(self) -> bool:
        """True once the process has exited; does not reap it."""
        with self._lock:
            if self._reaped or self.pid is None:
                return True
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is not None

    def reap(self) -> None:
        """Block until the process exits; record exit code, CPU and RSS."""
        _, status, usage = os.wait4(self.pid, 0)
        with self._lock:
            self._reaped = True
            self.exit_code = os.waitstatus_to_exitcode(status)
        self.cpu_s = usage.ru_utime + usage.ru_stime
        self.maxrss_kib = usage.ru_maxrss
        self._drain.join(timeout=5)
        if not self._drain.is_alive():
            self._stderr_pipe.close()

    def signal(self, signum: int) -> None:
        with self._lock:
            if self._reaped or self.pid is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; reap."""
        if self.pid is None:
            return
        if self.has_exited():
            if not self._reaped:
                self.reap()
            return
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while not self.has_exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.signal(signal.SIGKILL)
        self.reap()

    @property
    def reaped(self) -> bool:
        return self._reaped

    def failure(self) -> str:
        """How the tool ended, with its last stderr lines, for a report."""
        if self.exit_code is not None and self.exit_code < 0:
            ending = f"was killed by {signal.Signals(-self.exit_code).name}"
        else:
            ending = f"exited with {self.exit_code}"
        said = " | ".join(self._stderr[-5:])
        return f"{self.name} {ending}" + (f": {said}" if said else "")


class Children:
    """Every child this benchmark started, so none outlives it."""

    def __init__(self) -> None:
        self._all: list[Child] = []

    def spawn(self, argv: list[str], name: str | None = None, **kwargs) -> Child:
        child = Child(argv, name)
        self._all.append(child)
        child.start(**kwargs)
        return child

    def stop_all(self) -> None:
        for child in self._all:
            if not child.reaped:
                child.stop()
        self._all.clear()


class Watchdog:
    """Ends the given children if a run takes longer than `seconds`, so a
    hang shows up as a failed run instead of a stuck benchmark."""

    def __init__(self, seconds: float, children: list[Child]):
        self.fired = False
        self._children = children
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        for child in self._children:
            child.signal(signal.SIGTERM)
        time.sleep(KILL_GRACE_S)
        for child in self._children:
            child.signal(signal.SIGKILL)

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def free_port() -> int:
    """A port nothing listens on right now (nc needs one chosen for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def is_listening(port: int) -> bool:
    """Whether some socket listens on `port`, per /proc/net/tcp{,6}."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows, None)
                for row in rows:
                    fields = row.split()
                    if fields[1].endswith(suffix) and fields[3] == "0A":  # 0A = LISTEN
                        return True
        except FileNotFoundError:
            continue
    return False


def wait_until_listening(port: int, receiver: Child) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not is_listening(port):
        if receiver.has_exited():
            raise RunError(f"{receiver.name} exited before listening on port {port}")
        if time.monotonic() > deadline:
            raise RunError(f"{receiver.name} did not listen on port {port} within {READY_TIMEOUT_S:.0f} s")
        time.sleep(LISTEN_POLL_S)


def announced_port(line: str) -> int:
    match = re.search(r"listening on \S+:(\d+)\s*$", line)
    if not match:
        raise RunError(f"unexpected first stderr line from zcp recv: {line!r}")
    return int(match.group(1))


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of process `pid` plus all children it has reaped
    (utime + stime + cutime + cstime from /proc/PID/stat, clock-tick
    resolution)."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Pids whose parent is `pid` (zombies included: they are still there
    until `pid` reaps them)."""
    children_file = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(x) for x in children_file.read_text().split()]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_no_children(pid: int, timeout: float) -> bool:
    """Wait until `pid` has reaped every child; False on timeout."""
    deadline = time.monotonic() + timeout
    while child_pids(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(LISTEN_POLL_S)
    return True
