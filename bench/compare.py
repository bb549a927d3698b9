#!/usr/bin/env python3
"""Peer comparison: zcp against OpenBSD netcat on 127.0.0.1.

This script owns the repository's comparison benchmark, end to end:

* setup: builds zcp in release mode (unless ZCP_BIN names a binary) and
  installs OpenBSD netcat with apt-get when `nc` is missing or another
  variant;
* data: one work directory holding a pseudo-random source file, generated
  once and hashed once, plus one output file per case that every run of the
  case overwrites;
* measurement: four cases (zcp default, zcp --checksum none,
  zcp --no-zerocopy, nc), one warm-up and N measured runs each, interleaved
  round-robin; per run the wall time from sender start until both ends have
  exited and each end's CPU time and peak RSS from wait4(2);
* process handling: each tool is forked by a tiny `sh` launcher and adopted
  by this script as child subreaper, so wait4 reports the tool's own peak
  RSS (see LAUNCHER); every child is stopped on error, Ctrl-C or SIGTERM;
* verification: every run's output (warm-ups included) is compared with the
  source by size and SHA-256; a failure is printed as FAIL and makes the
  script exit 1;
* report: a markdown table on stdout, also written to --out, followed by the
  project's throughput targets and whether they were met.

Only the Python 3 standard library is used. Run it through bench/compare.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results-latest.md"
LOOPBACK = "127.0.0.1"

# How long a receiver may take to announce its port or start listening.
READY_TIMEOUT_S = 15.0
# Grace between SIGTERM and SIGKILL when ending a child.
KILL_GRACE_S = 5.0
# How long a receiver may outlive a failed sender before it is stopped.
RECEIVER_GRACE_S = 3.0
# Poll interval while waiting for nc to listen (outside the timed region).
LISTEN_POLL_S = 0.002


@dataclass(frozen=True)
class Case:
    """One configuration to measure."""

    key: str  # used in file names
    label: str  # shown in the table
    tool: str  # "zcp" or "nc"
    flags: tuple[str, ...] = ()


CASES = (
    Case("zcp", "zcp (default, sha256 verified)", "zcp"),
    Case("zcp-none", "zcp --checksum none", "zcp", ("--checksum", "none")),
    Case("zcp-nozc", "zcp --no-zerocopy", "zcp", ("--no-zerocopy",)),
    Case("nc", "nc (OpenBSD)", "nc"),
)
BASELINE = "nc"

# (case key, how the target names it, minimum GiB/s ratio to nc)
TARGETS = (
    ("zcp", "default verified", 1.3),
    ("zcp-none", "--checksum none", 3.0),
)
TARGET_CORES = 2
TARGETS_LINE = "targets on a 2-core machine: default verified >= 1.3x nc; --checksum none >= 3x nc"


class BenchError(Exception):
    """A problem that stops the whole benchmark (setup, missing tools)."""


class RunError(Exception):
    """A problem that fails one run; the benchmark goes on."""


# --------------------------------------------------------------------------
# Command line


def parse_size(text: str) -> int:
    """'1G', '64M', '512K', '1GiB' or a plain byte count -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (examples: 1G, 64M, 1048576)")
    number, unit = int(match.group(1)), match.group(2).upper()
    size = number * {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}[unit]
    if size <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return size


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/compare.sh",
        description="Compare zcp with OpenBSD netcat on 127.0.0.1 "
        "(throughput, CPU per GiB, peak RSS). Set ZCP_BIN to skip the cargo build.",
    )
    parser.add_argument("--size", type=parse_size, default=GiB, help="test file size (default 1G)")
    parser.add_argument("--runs", type=positive_int, default=3, help="measured runs per case (default 3)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="create the work directory here (default: $TMPDIR or /tmp)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"also write the report here (default {DEFAULT_OUT.relative_to(REPO)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def human_size(size: int) -> str:
    """1073741824 -> '1 GiB', 67108864 -> '64 MiB'."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size >= unit:
            return f"{size / unit:g} {name}"
    return f"{size} bytes"


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the report."""
    print(f"compare: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Setup: the two tools


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


def netcat_banner(path: str) -> str:
    """The first line `nc -h` prints, which names the netcat variant."""
    try:
        done = subprocess.run([path, "-h"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stderr + done.stdout).strip().splitlines()
    return lines[0] if lines else ""


def find_openbsd_nc() -> str | None:
    for name in ("nc.openbsd", "nc"):
        path = shutil.which(name)
        if path and "OpenBSD netcat" in netcat_banner(path):
            return path
    return None


def install_openbsd_nc() -> None:
    if shutil.which("apt-get") is None:
        raise BenchError("OpenBSD netcat is missing and apt-get is not available: install netcat-openbsd")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise BenchError("installing netcat-openbsd needs root: run as root or install sudo")
    log("installing netcat-openbsd with apt-get")
    subprocess.run(sudo + ["apt-get", "update"], stdout=sys.stderr, check=True)
    subprocess.run(
        sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "netcat-openbsd"],
        stdout=sys.stderr,
        check=True,
    )


def ensure_openbsd_nc() -> str:
    """Path of an OpenBSD netcat, installing it first when needed."""
    path = find_openbsd_nc()
    if path is None:
        install_openbsd_nc()
        path = find_openbsd_nc()
    if path is None:
        raise BenchError("netcat-openbsd was installed but no OpenBSD `nc` is on PATH")
    return path


# --------------------------------------------------------------------------
# Test data


def make_workdir(parent: Path | None) -> Path:
    """A fresh directory inside --dir, or inside $TMPDIR (or /tmp)."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="zcp-compare-", dir=parent))


def check_free_space(workdir: Path, size: int) -> None:
    """The source plus one output per case must fit."""
    needed = size * (1 + len(CASES)) + 64 * MiB
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise BenchError(
            f"{workdir} has {free / GiB:.1f} GiB free, the benchmark needs {needed / GiB:.1f} GiB (use --dir)"
        )


def generate_source(path: Path, size: int) -> None:
    """Write `size` pseudo-random bytes, fast.

    One 1 MiB block from os.urandom is written over and over, each time
    rotated by a fresh random offset and stamped with its index, so no two
    blocks are equal and nothing within a compressor's usual window repeats.
    (os.urandom for every byte would take ~4 s per GiB here.) The file is
    fsynced so its writeback does not overlap the measurements; its pages
    stay cached.
    """
    base = os.urandom(MiB)
    with open(path, "wb") as out:
        for index, offset in enumerate(range(0, size, MiB)):
            shift = int.from_bytes(os.urandom(3), "little") % MiB
            block = index.to_bytes(8, "little") + base[shift:] + base[:shift]
            out.write(block[: min(MiB, size - offset)])
        out.flush()
        os.fsync(out.fileno())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(4 * MiB)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while count := file.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


def reset_output(path: Path) -> None:
    """Truncate (or create) a case's output before a run, outside the timed
    region, so no end pays for freeing the previous run's pages."""
    with open(path, "wb"):
        pass


# --------------------------------------------------------------------------
# Child processes


# Peak RSS needs care. A child's ru_maxrss starts at the resident size of
# the process it was forked from, because exec records the old address
# space's high-water mark. Forked from this Python process, every tool would
# report ~15-30 MiB, far above the 2-5 MiB that nc and zcp really use. So
# each tool is forked by a small `sh` instead (about 1 MiB) that prints the
# tool's pid and exits at once; as a child subreaper this script inherits
# the orphaned tool and reaps it itself with wait4.
LAUNCHER_SH = "/bin/sh"
PID_MARKER = "compare.py-launched-pid:"
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

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.name = Path(argv[0]).name + " " + argv[1]
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
        queues, keep the rest for error reports."""
        launched = announced = False
        for raw in self._stderr_pipe:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not launched and line.startswith(PID_MARKER):
                self._pid.put(int(line[len(PID_MARKER) :]))
                launched = True
                continue
            self._stderr.append(line)
            if not announced:
                self._first_line.put(line)
                announced = True
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

    def spawn(self, argv: list[str], **kwargs) -> Child:
        child = Child(argv)
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


# --------------------------------------------------------------------------
# One run


@dataclass
class Run:
    """What one run of one case measured, and what went wrong in it."""

    case: Case
    warmup: bool
    wall_s: float = 0.0
    send_cpu_s: float = 0.0
    recv_cpu_s: float = 0.0
    send_rss_kib: int = 0
    recv_rss_kib: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Setup:
    """Everything a run needs that does not change between runs."""

    zcp: Path
    nc: str
    workdir: Path
    source: Path
    size: int
    digest: str
    children: Children

    def output(self, case: Case) -> Path:
        return self.workdir / f"out-{case.key}.bin"

    def run_timeout_s(self) -> float:
        # Generous: a hang has to end the run, a slow machine must not.
        return 30.0 + self.size / (16 * MiB)


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


def start_zcp(setup: Setup, case: Case, out: Path) -> tuple[Child, Callable[[], Child]]:
    """Start the zcp receiver; return it and a function starting the sender."""
    receiver = setup.children.spawn(
        [str(setup.zcp), "recv", "-q", "-l", f"{LOOPBACK}:0", *case.flags, str(out)]
    )
    port = announced_port(receiver.first_stderr_line(READY_TIMEOUT_S))

    def start_sender() -> Child:
        return setup.children.spawn(
            [str(setup.zcp), "send", "-q", *case.flags, str(setup.source), f"{LOOPBACK}:{port}"]
        )

    return receiver, start_sender


def start_nc(setup: Setup, out: Path) -> tuple[Child, Callable[[], Child]]:
    """Start `nc -l` writing to `out`; return it and a function starting the sender."""
    port = free_port()
    with open(out, "wb") as sink:
        receiver = setup.children.spawn([setup.nc, "-l", LOOPBACK, str(port)], stdout=sink)
    wait_until_listening(port, receiver)

    def start_sender() -> Child:
        with open(setup.source, "rb") as source:
            return setup.children.spawn([setup.nc, "-N", LOOPBACK, str(port)], stdin=source)

    return receiver, start_sender


def timed_transfer(setup: Setup, case: Case, run: Run) -> None:
    """Start the receiver, then time sender start until both have exited."""
    out = setup.output(case)
    if case.tool == "nc":
        receiver, start_sender = start_nc(setup, out)
    else:
        receiver, start_sender = start_zcp(setup, case, out)

    started = time.perf_counter()
    sender = start_sender()
    with Watchdog(setup.run_timeout_s(), [sender, receiver]) as watchdog:
        sender.reap()
        if sender.exit_code == 0:
            receiver.reap()
        else:
            # A receiver may wait forever for a sender that never connected.
            with Watchdog(RECEIVER_GRACE_S, [receiver]):
                receiver.reap()
    run.wall_s = time.perf_counter() - started

    run.send_cpu_s, run.recv_cpu_s = sender.cpu_s, receiver.cpu_s
    run.send_rss_kib, run.recv_rss_kib = sender.maxrss_kib, receiver.maxrss_kib
    if watchdog.fired:
        run.problems.append(f"timed out after {setup.run_timeout_s():.0f} s and was killed")
    for child in (sender, receiver):
        if child.exit_code != 0:
            run.problems.append(child.failure())


def verify_output(setup: Setup, case: Case) -> list[str]:
    """Size and SHA-256 of the case's output against the source."""
    out = setup.output(case)
    try:
        size = out.stat().st_size
    except FileNotFoundError:
        return [f"output {out.name} is missing"]
    if size != setup.size:
        return [f"output has {size} bytes, expected {setup.size}"]
    if sha256_file(out) != setup.digest:
        return ["output SHA-256 differs from the source"]
    return []


def run_once(setup: Setup, case: Case, warmup: bool) -> Run:
    """One transfer of one case: prepare, time, verify, settle."""
    run = Run(case, warmup)
    reset_output(setup.output(case))
    try:
        timed_transfer(setup, case, run)
    except RunError as error:
        run.problems.append(str(error))
    finally:
        setup.children.stop_all()
    run.problems += verify_output(setup, case)
    # Flush this run's dirty pages now rather than during the next run.
    os.sync()
    return run


def run_all(setup: Setup, runs: int) -> list[Run]:
    """A warm-up round, then `runs` measured rounds, each case once per round."""
    results: list[Run] = []
    for round_no in range(runs + 1):
        warmup = round_no == 0
        title = "warm-up" if warmup else f"run {round_no}/{runs}"
        for case in CASES:
            run = run_once(setup, case, warmup)
            results.append(run)
            rate = setup.size / GiB / run.wall_s if run.wall_s else 0.0
            verdict = "ok" if run.ok else "FAIL: " + "; ".join(run.problems)
            log(f"{title:>9}  {case.label:<32} {rate:6.2f} GiB/s  {verdict}")
    return results


# --------------------------------------------------------------------------
# Report


@dataclass
class Summary:
    """Medians of one case's measured runs (successful ones only)."""

    case: Case
    runs: int  # warm-up included
    failures: int
    rate: list[float]  # GiB/s per successful run
    cpu_total: list[float]  # CPU-s/GiB, sender + receiver
    cpu_send: list[float]
    cpu_recv: list[float]
    rss_send_mib: float
    rss_recv_mib: float

    @property
    def measured(self) -> bool:
        return bool(self.rate)


def summarize(case: Case, results: list[Run], size: int) -> Summary:
    own = [r for r in results if r.case == case]
    good = [r for r in own if r.ok and not r.warmup]
    gib = size / GiB
    return Summary(
        case=case,
        runs=len(own),
        failures=sum(not r.ok for r in own),
        rate=[gib / r.wall_s for r in good],
        cpu_total=[(r.send_cpu_s + r.recv_cpu_s) / gib for r in good],
        cpu_send=[r.send_cpu_s / gib for r in good],
        cpu_recv=[r.recv_cpu_s / gib for r in good],
        rss_send_mib=max((r.send_rss_kib for r in good), default=0) / KiB,
        rss_recv_mib=max((r.recv_rss_kib for r in good), default=0) / KiB,
    )


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def table_row(summary: Summary, baseline: Summary | None) -> str:
    label = summary.case.label
    if summary.failures:
        label = f"**FAIL** {label} ({summary.failures} of {summary.runs} runs failed)"
    if not summary.measured:
        return f"| {label} | " + " | ".join(["FAIL"] * 7) + " |"
    rate = statistics.median(summary.rate)
    cpu = statistics.median(summary.cpu_total)
    base_rate = median_or_none(baseline.rate) if baseline else None
    base_cpu = median_or_none(baseline.cpu_total) if baseline else None
    cells = [
        label,
        f"{rate:.2f} ({min(summary.rate):.2f}–{max(summary.rate):.2f})",
        f"{cpu:.3f}",
        f"{statistics.median(summary.cpu_send):.3f}",
        f"{statistics.median(summary.cpu_recv):.3f}",
        f"{summary.rss_send_mib:.1f} / {summary.rss_recv_mib:.1f}",
        fmt(ratio(rate, base_rate), ".2f", "x"),
        fmt(ratio(cpu, base_cpu), ".2f", "x"),
    ]
    return "| " + " | ".join(cells) + " |"


def results_table(summaries: list[Summary]) -> list[str]:
    baseline = next((s for s in summaries if s.case.key == BASELINE), None)
    lines = [
        "| case | GiB/s median (min–max) | CPU-s/GiB send+recv | sender CPU-s/GiB "
        "| receiver CPU-s/GiB | peak RSS send / recv MiB | GiB/s vs nc | CPU/GiB vs nc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [table_row(s, baseline) for s in summaries]
    return lines


def target_lines(summaries: list[Summary]) -> list[str]:
    by_key = {s.case.key: s for s in summaries}
    base_rate = median_or_none(by_key[BASELINE].rate)
    lines = [TARGETS_LINE]
    cores = os.cpu_count() or 0
    if cores != TARGET_CORES:
        lines.append(f"(this machine has {cores} cores; the targets are stated for {TARGET_CORES})")
    for key, name, minimum in TARGETS:
        summary = by_key[key]
        measured = ratio(median_or_none(summary.rate), base_rate)
        if measured is None or summary.failures:
            verdict = "NOT MET: case failed or nc failed, no valid ratio"
        elif measured >= minimum:
            verdict = f"{measured:.2f}x nc: met"
        else:
            verdict = f"{measured:.2f}x nc: NOT met"
        lines.append(f"- {name} >= {minimum:g}x nc: {verdict}")
    return lines


def failure_lines(results: list[Run]) -> list[str]:
    failed = [r for r in results if not r.ok]
    if not failed:
        return []
    lines = ["", f"FAIL: {len(failed)} run(s) failed:"]
    for run in failed:
        kind = "warm-up" if run.warmup else "measured"
        lines.append(f"- {run.case.label} ({kind}): " + "; ".join(run.problems))
    return lines


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def git_revision() -> str | None:
    """Short commit of this checkout, '-dirty' when tracked files changed."""
    if shutil.which("git") is None:
        return None

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO), *args], check=False, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def zcp_identity(zcp: Path) -> str:
    """`zcp --version`, plus the git commit when it was built from this tree."""
    version = subprocess.run(
        [str(zcp), "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    if os.environ.get("ZCP_BIN"):
        return f"{version} ({zcp})"
    revision = git_revision()
    return f"{version} (git {revision})" if revision else version


def header_lines(setup: Setup, runs: int) -> list[str]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "# zcp vs nc on 127.0.0.1",
        "",
        f"- date: {now}",
        f"- kernel: {os.uname().release}",
        f"- CPU: {cpu_model()} x {os.cpu_count()}",
        f"- file: {human_size(setup.size)} ({setup.size} bytes, pseudo-random, page-cached)",
        f"- runs: {runs} measured per case after 1 warm-up, cases interleaved round-robin",
        f"- zcp: {zcp_identity(setup.zcp)}",
        f"- nc: {netcat_banner(setup.nc)}",
        "",
    ]


def report(setup: Setup, runs: int, results: list[Run]) -> tuple[str, bool]:
    """The markdown report, and whether every run succeeded."""
    summaries = [summarize(case, results, setup.size) for case in CASES]
    lines = header_lines(setup, runs)
    lines += results_table(summaries)
    lines += [
        "",
        "Wall time runs from sender start until both ends exited; CPU is user+system of each "
        "process; peak RSS is the largest over the measured runs. Ratios are median/median: "
        "higher GiB/s and lower CPU/GiB are better.",
        "",
    ]
    lines += target_lines(summaries)
    lines += failure_lines(results)
    return "\n".join(lines) + "\n", all(r.ok for r in results)


# --------------------------------------------------------------------------
# Main


def raise_interrupt(signum, frame) -> None:
    """SIGTERM takes the same cleanup path as Ctrl-C."""
    raise KeyboardInterrupt


def prepare_data(args: argparse.Namespace, workdir: Path) -> tuple[Path, str]:
    check_free_space(workdir, args.size)
    source = workdir / "source.bin"
    log(f"generating a {human_size(args.size)} test file in {workdir}")
    generate_source(source, args.size)
    log("hashing the source (this also pulls it into the page cache)")
    return source, sha256_file(source)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupt)
    children = Children()
    workdir: Path | None = None
    try:
        become_subreaper()
        zcp = build_zcp()
        nc = ensure_openbsd_nc()
        workdir = make_workdir(args.dir)
        source, digest = prepare_data(args, workdir)
        setup = Setup(zcp, nc, workdir, source, args.size, digest, children)
        results = run_all(setup, args.runs)
        text, all_ok = report(setup, args.runs, results)
        print(text, end="")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"report written to {args.out}")
        return 0 if all_ok else 1
    except KeyboardInterrupt:
        log("interrupted: stopping receivers and senders")
        return 130
    except (BenchError, subprocess.CalledProcessError) as error:
        log(f"error: {error}")
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop_all()
        if workdir is not None:
            if args.keep:
                log(f"kept the work directory {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
