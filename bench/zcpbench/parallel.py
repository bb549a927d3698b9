"""The "parallel" case: `zcp send -P N` against one stream, nc and rsync.

One pseudo-random file (4 GiB by default) crosses 127.0.0.1 seven ways per
round: zcp without -P (one stream, whole-file SHA-256 on one helper thread
per end), `zcp -P 1 --resume` (one stream in hashed 8 MiB blocks: `-P 1`
alone is the one-stream default), `-P 2`, `-P 4`, `-P 4 --checksum none`,
OpenBSD nc, and `rsync -W` to an rsync daemon. Each zcp sender runs with -v,
and its lines must show the mode the row claims (blocks or not, and
`N streams to HOST:PORT`). One warm-up round and N measured rounds, every
output checked by size and SHA-256, then deleted, so that only the source
and one output take disk space and page cache at any time. The rsync daemon
is started afresh for each of its runs: stopped, its wait4 figures give the
peak RSS of its transfer processes. Reuses the big case's transfers and
checks; the report is at the end."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import bigfile
from .bigfile import BLOCK, Case, Run, Setup, blocks_of, gib_per_s, send_lines
from .bigreport import report_text
from .common import GiB, KiB, MiB, RunError, human_size, machine_lines, marked_label, markdown_row, median, ratio_cell
from .procs import Watchdog
from .daemons import RsyncDaemon
from .tools import netcat_banner, version_line, zcp_identity

DEFAULT_SIZE = 4 * GiB
# zcp sends files larger than one block in blocks; eight blocks give four
# streams two blocks each.
MIN_SIZE = 8 * BLOCK

UNVERIFIED = ("--checksum", "none")


@dataclass(frozen=True)
class ParallelCase(Case):
    """A case, plus the mode a zcp sender's -v lines must show."""

    streams: int = 1  # connections the sender must announce (1: no announcement)
    blocks: bool = False  # whether the file must travel in blocks


def zcp_case(key: str, label: str, send_flags: tuple[str, ...], streams: int = 1, blocks: bool = True,
             flags: tuple[str, ...] = ()) -> ParallelCase:  # fmt: skip
    return ParallelCase(key, label, "zcp", flags, send_flags, verbose=True, streams=streams, blocks=blocks)


ONE = zcp_case("par-one", "zcp, one stream (no -P)", (), blocks=False)
CASES = (
    ONE,
    zcp_case("par-1", "zcp -P 1 --resume (1 stream, blocks)", ("-P", "1", "--resume")),
    zcp_case("par-2", "zcp -P 2", ("-P", "2"), streams=2),
    zcp_case("par-4", "zcp -P 4", ("-P", "4"), streams=4),
    zcp_case("par-4-none", "zcp -P 4 --checksum none", ("-P", "4"), streams=4, flags=UNVERIFIED),
    ParallelCase("nc", "nc (OpenBSD)", "nc"),
    ParallelCase("rsync", "rsync -W → rsync daemon", "rsync"),
)
NC = CASES[-2]
RSYNC = CASES[-1]

# `zcp send -v`: "zcp: 4 streams to HOST:PORT" when -P opened more than one
# connection, and "zcp: send NAME: sendfile (file → socket, in blocks): ..."
# for a file sent in blocks.
STREAMS = re.compile(r"^zcp: (\d+) streams to \S+$")
IN_BLOCKS = ", in blocks)"


def parse_parallel_size(text: str) -> int:
    """--parallel-size: a size, at least MIN_SIZE."""
    return bigfile.parse_size_of_blocks(text, MIN_SIZE)


@dataclass
class ParallelSetup(Setup):
    """The big case's setup, plus rsync. Every case's output lands in a
    directory of its own, which a run starts empty and ends without."""

    rsync: str = ""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def outdir(self, case: Case) -> Path:
        return self.workdir / f"out-{case.key}"

    def output(self, case: Case) -> Path:
        # rsync names the file after its source; zcp and nc are told this name.
        return self.outdir(case) / self.source.name


def check_mode(case: ParallelCase, lines: list[str]) -> list[str]:
    """Whether the zcp sender's -v lines show the streams and blocks the
    row claims."""
    problems = []
    announced = [int(m.group(1)) for m in map(STREAMS.match, lines) if m]
    expected = [case.streams] if case.streams > 1 else []
    if announced != expected:
        shown = ", ".join(f"{n} streams" for n in announced) or "no streams line"
        problems.append(f"the sender's -v shows {shown}, expected {case.streams} stream(s)")
    sends = send_lines(lines)
    if len(sends) != 1:
        problems.append(f"found {len(sends)} 'send' lines in the sender's -v output, expected 1")
    elif (IN_BLOCKS in sends[0]) != case.blocks:
        problems.append(f"expected the file {'in' if case.blocks else 'not in'} blocks: {sends[0]}")
    return problems


def rsync_transfer(setup: ParallelSetup, case: Case, run: Run) -> None:
    """`rsync -W SOURCE rsync://.../out-rsync/` to a daemon started for this
    run; timed from client start until the daemon has reaped the transfer's
    processes. Receiver CPU is the daemon's growth (/proc), its peak RSS
    the stopped daemon's wait4 figure, which covers its reaped children."""
    daemon = RsyncDaemon(setup.rsync, setup.workdir)
    try:
        daemon.start()
        before = daemon.cpu_s()
        started = time.perf_counter()
        argv = [setup.rsync, "-W", str(setup.source), daemon.url(setup.outdir(case).name)]
        client = setup.children.spawn(argv)
        with Watchdog(setup.run_timeout_s(), [client]) as watchdog:
            client.reap()
        if not daemon.settle(setup.run_timeout_s()):
            run.problems.append("the rsync daemon's transfer processes did not end")
        run.wall_s = time.perf_counter() - started
        run.send_cpu_s, run.send_rss_kib = client.cpu_s, client.maxrss_kib
        run.recv_cpu_s = daemon.cpu_s() - before
        if watchdog.fired:
            run.problems.append(f"timed out after {setup.run_timeout_s():.0f} s and was killed")
        if client.exit_code != 0:
            run.problems += [client.failure(), daemon.log_tail()]
    finally:
        daemon.stop()
    run.recv_rss_kib = daemon.peak_rss_kib


def clear_output(setup: ParallelSetup, case: Case) -> None:
    """Remove the case's output directory (output, partial, temp files)."""
    shutil.rmtree(setup.outdir(case), ignore_errors=True)


def run_once(setup: ParallelSetup, case: ParallelCase, warmup: bool) -> Run:
    """One transfer of one case into an empty directory: time, check the
    sender's mode and the output, then delete the output and settle."""
    run = Run(case, warmup)
    clear_output(setup, case)
    setup.outdir(case).mkdir()
    try:
        if case is RSYNC:
            rsync_transfer(setup, case, run)
        else:
            sender = bigfile.timed_transfer(setup, case, run)
            if case.tool == "zcp" and run.ok:
                run.problems += check_mode(case, sender.stderr_lines())
    except RunError as error:
        run.problems.append(str(error))
    finally:
        setup.children.stop_all()
    run.problems += bigfile.verify_output(setup, case)
    # Deleted before it is written back: the next run neither competes with
    # this one's writeback nor finds the source pushed out of the cache.
    clear_output(setup, case)
    os.sync()
    return run


def prepare(args: argparse.Namespace, workdir: Path, zcp: Path, nc: str, rsync: str, children) -> ParallelSetup:
    """The source file in `workdir` (which the caller removes), hashed."""
    needed = 2 * args.parallel_size + 256 * MiB
    source, digest = bigfile.case_source(workdir, args.parallel_size, needed, "parallel")
    return ParallelSetup(zcp, nc, workdir, source, args.parallel_size, digest, children, rsync, os.getloadavg())


def run_all(setup: ParallelSetup, runs: int) -> list[Run]:
    """A warm-up round, then `runs` measured rounds, each case once per round."""

    def describe(run: Run) -> str:
        return f"{run.case.label:<38} {run.wall_s:6.2f} s {gib_per_s(setup, run):5.2f} GiB/s"

    return bigfile.run_rounds(setup, CASES, runs, run_once, describe)


# --------------------------------------------------------------------------
# Report


@dataclass
class Row:
    """Medians of one case's successful measured runs."""

    case: ParallelCase
    runs: int  # warm-up included
    failures: int
    walls: list[float]
    cpu_send: float | None  # CPU-s per GiB
    cpu_recv: float | None
    rss_send_mib: float
    rss_recv_mib: float

    @property
    def seconds(self) -> float | None:
        return median(self.walls)


def summarize(case: ParallelCase, results: list[Run], size: int) -> Row:
    own = [r for r in results if r.case is case]
    good = [r for r in own if r.ok and not r.warmup]
    gib = size / GiB
    return Row(
        case=case,
        runs=len(own),
        failures=sum(not r.ok for r in own),
        walls=[r.wall_s for r in good],
        cpu_send=median([r.send_cpu_s / gib for r in good]),
        cpu_recv=median([r.recv_cpu_s / gib for r in good]),
        rss_send_mib=max((r.send_rss_kib for r in good), default=0) / KiB,
        rss_recv_mib=max((r.recv_rss_kib for r in good), default=0) / KiB,
    )


def table_line(row: Row, rows: dict[ParallelCase, Row], gib: float) -> str:
    label = marked_label(row.case.label, row.failures, row.runs)
    if row.seconds is None:
        return markdown_row([label] + ["FAIL"] * 8)

    def rate(of: Row) -> float | None:
        return gib / of.seconds if of.seconds else None

    cells = [
        label,
        f"{row.seconds:.2f} ({min(row.walls):.2f}–{max(row.walls):.2f})",
        f"{rate(row):.2f}",
        f"{row.cpu_send:.2f}",
        f"{row.cpu_recv:.2f}",
        f"{row.rss_send_mib:.1f} / {row.rss_recv_mib:.1f}",
        ratio_cell(row.seconds, rows[ONE].seconds),
        ratio_cell(rate(row), rate(rows[NC])),
        ratio_cell(rate(row), rate(rows[RSYNC])),
    ]
    return markdown_row(cells)


def per_core_lines(rows: dict[ParallelCase, Row]) -> list[str]:
    """What one fully busy core sustains per end (1 / CPU-s per GiB), the
    figure that carries over to a link where the ends have their own cores."""
    lines = [
        "GiB per CPU-second (1 / CPU-s per GiB), what one busy core moves per end "
        "(on loopback the sender is also charged for most of the TCP receive work):"
    ]
    for case in CASES:
        row = rows[case]
        if case.tool != "zcp" or not row.cpu_send or not row.cpu_recv:
            continue
        lines.append(f"- {case.label}: sender {1 / row.cpu_send:.2f}, receiver {1 / row.cpu_recv:.2f}")
    return lines


def load_text(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def report(setup: ParallelSetup, runs: int, results: list[Run]) -> tuple[str, bool]:
    """The markdown section for the parallel case, and whether every run succeeded."""
    rows = {case: summarize(case, results, setup.size) for case in CASES}
    gib = setup.size / GiB
    lines = [
        "# zcp send -P N on 127.0.0.1",
        "",
        *machine_lines(),
        f"- load average (1 / 5 / 15 min): {load_text(setup.load_before)} before the runs, "
        f"{load_text(os.getloadavg())} after them",
        f"- file: {human_size(setup.size)} ({setup.size} bytes, pseudo-random, page-cached), "
        f"{blocks_of(setup.size)} blocks of {human_size(BLOCK)} in block mode",
        f"- runs: {runs} measured per case after 1 warm-up, cases interleaved round-robin; "
        "each output deleted after its check",
        f"- zcp: {zcp_identity(setup.zcp)}",
        f"- nc: {netcat_banner(setup.nc)}; rsync: {version_line(setup.rsync)}",
        "",
        "| case | seconds median (min–max) | GiB/s | sender CPU-s/GiB | receiver CPU-s/GiB "
        "| peak RSS send / recv MiB | seconds vs one stream | GiB/s vs nc | GiB/s vs rsync |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [table_line(rows[case], rows, gib) for case in CASES]
    lines += [
        "",
        "Seconds run from sender start until both ends exited (for rsync: until the daemon had "
        "reaped its transfer processes); GiB/s = file size / median seconds. CPU is user+system of "
        "each end (the rsync daemon's growth, its reaped children included). Peak RSS is the largest "
        "over the measured runs, per process (rsync's receiver: the largest of the daemon's "
        "processes). Without -P, and with `-P 1` alone, zcp sends the file as one stream with a "
        "whole-file SHA-256 on one helper thread per end; `--resume` makes that one stream carry "
        "hashed blocks, and also has the receiver fdatasync each batch of verified blocks before "
        "recording them (the -P rows without --resume do not sync). Each zcp row's sender -v "
        "output was checked for the streams and blocks the row names, and every output by size "
        "and SHA-256 against the source.",
        "",
    ]
    lines += per_core_lines(rows)
    return report_text(lines, results)
