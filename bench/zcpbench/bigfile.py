"""The "big" case: one large pseudo-random file, sent by zcp (default,
--checksum none, --no-zerocopy) and by OpenBSD nc over 127.0.0.1.

Owns the case list and nc baseline, the work directory with the source file
(generated and hashed once) and one output file per case that every run
overwrites, one warm-up and N measured runs interleaved round-robin, and the
size + SHA-256 check of every output. The report is in bigreport. The
limit, resume and parallel cases reuse the source file, the transfers, the
checks and the rounds, and take zcp's block size and its sender's -v lines
from here."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .common import GiB, LOOPBACK, MiB, BenchError, RunError, human_size, log, parse_size
from .procs import (
    READY_TIMEOUT_S,
    RECEIVER_GRACE_S,
    Child,
    Children,
    Watchdog,
    announced_port,
    free_port,
    wait_until_listening,
)


@dataclass(frozen=True)
class Case:
    """One configuration to measure."""

    key: str  # used in file names
    label: str  # shown in the table
    tool: str  # "zcp" or "nc"
    flags: tuple[str, ...] = ()  # zcp: given to both ends
    send_flags: tuple[str, ...] = ()  # zcp: given to the sender only
    verbose: bool = False  # zcp: the sender gets -v instead of -q (its byte counts are read)


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

# zcp's block size in block mode (--resume, -P N): a larger file travels in
# blocks of 8 MiB, the last one shorter.
BLOCK = 8 * MiB

# `zcp send -v` says of each file "zcp: send NAME: ROUTE (...): ...".
SEND_LINE = "zcp: send "


def blocks_of(size: int) -> int:
    return -(-size // BLOCK)


def parse_size_of_blocks(text: str, minimum: int) -> int:
    """A size for a case that sends in blocks, at least `minimum`."""
    size = parse_size(text)
    if size < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {human_size(minimum)} ({minimum // BLOCK} blocks)")
    return size


def send_lines(lines: list[str]) -> list[str]:
    """The per-file lines among a zcp sender's -v lines."""
    return [line for line in lines if line.startswith(SEND_LINE)]


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


def start_zcp(setup: Setup, case: Case, out: Path) -> tuple[Child, Callable[[], Child]]:
    """Start the zcp receiver; return it and a function starting the sender."""
    receiver = setup.children.spawn(
        [str(setup.zcp), "recv", "-q", "-l", f"{LOOPBACK}:0", *case.flags, str(out)]
    )
    port = announced_port(receiver.first_stderr_line(READY_TIMEOUT_S))

    def start_sender() -> Child:
        talk = "-v" if case.verbose else "-q"
        return setup.children.spawn(
            [str(setup.zcp), "send", talk, *case.flags, *case.send_flags, str(setup.source), f"{LOOPBACK}:{port}"]
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


def timed_transfer(setup: Setup, case: Case, run: Run) -> Child:
    """Start the receiver, then time sender start until both have exited;
    return the (reaped) sender, whose stderr a caller may read."""
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
    return sender


def check_file(out: Path, size: int, digest: str) -> list[str]:
    """Problems with output `out`: its size and SHA-256 against the source's."""
    try:
        found = out.stat().st_size
    except FileNotFoundError:
        return [f"output {out.name} is missing"]
    if found != size:
        return [f"output has {found} bytes, expected {size}"]
    if sha256_file(out) != digest:
        return ["output SHA-256 differs from the source"]
    return []


def verify_output(setup: Setup, case: Case) -> list[str]:
    """Size and SHA-256 of the case's output against the source."""
    return check_file(setup.output(case), setup.size, setup.digest)


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


AnyRun = TypeVar("AnyRun", bound=Run)
AnySetup = TypeVar("AnySetup", bound=Setup)
AnyCase = TypeVar("AnyCase", bound=Case)


def run_rounds(
    setup: AnySetup,
    cases: Sequence[AnyCase],
    runs: int,
    run_once: Callable[[AnySetup, AnyCase, bool], AnyRun],
    describe: Callable[[AnyRun], str],
) -> list[AnyRun]:
    """A warm-up round, then `runs` measured rounds, each case once per
    round by `run_once`; each run logged as `describe(run)` and its verdict."""
    results: list[AnyRun] = []
    for round_no in range(runs + 1):
        warmup = round_no == 0
        title = "warm-up" if warmup else f"run {round_no}/{runs}"
        for case in cases:
            run = run_once(setup, case, warmup)
            results.append(run)
            verdict = "ok" if run.ok else "FAIL: " + "; ".join(run.problems)
            log(f"{title:>9}  {describe(run)}  {verdict}")
    return results


def gib_per_s(setup: Setup, run: Run) -> float:
    return setup.size / GiB / run.wall_s if run.wall_s else 0.0


def run_all(setup: Setup, runs: int) -> list[Run]:
    """A warm-up round, then `runs` measured rounds, each case once per round."""
    return run_rounds(
        setup, CASES, runs, run_once, lambda run: f"{run.case.label:<32} {gib_per_s(setup, run):6.2f} GiB/s"
    )


def prepare_data(args: argparse.Namespace, workdir: Path) -> tuple[Path, str]:
    check_free_space(workdir, args.size)
    source = workdir / "source.bin"
    log(f"generating a {human_size(args.size)} test file in {workdir}")
    generate_source(source, args.size)
    log("hashing the source (this also pulls it into the page cache)")
    return source, sha256_file(source)


def case_source(workdir: Path, size: int, needed: int, case: str) -> tuple[Path, str]:
    """For the `case` case (limit, resume, parallel): unless `needed` bytes
    are free in `workdir`, stop; otherwise generate the source file of
    `size` bytes there; return it and its SHA-256."""
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise BenchError(f"{workdir} has {free / GiB:.1f} GiB free, the {case} case needs {needed / GiB:.1f} GiB")
    source = workdir / "source.bin"
    log(f"{case} case: generating a {human_size(size)} test file in {workdir}")
    generate_source(source, size)
    return source, sha256_file(source)
