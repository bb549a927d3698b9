"""The "limit" case: how closely `zcp send --limit RATE` holds a transfer
to RATE. One pseudo-random file (512 MiB by default) is sent over 127.0.0.1
at each limit (100M and 400M by default) and once without a limit for
reference, each verified and with --checksum none; one warm-up round and N
measured rounds interleaved, every output checked. Reported: achieved MiB/s against the limit as a ratio, and
the CPU each end spends, which shows that the kernel's pacing costs no
busy-waiting. Reuses the big case's transfer, timing and checks."""

from __future__ import annotations

import argparse
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

from . import bigfile
from .bigfile import Case, Run
from .bigreport import failure_lines
from .common import GiB, MiB, BenchError, human_size, machine_lines, marked_label, markdown_row, parse_size
from .tools import zcp_identity

DEFAULT_SIZE = 512 * MiB
DEFAULT_LIMITS = "100M,400M"
UNVERIFIED = ("--checksum", "none")


def parse_limits(text: str) -> list[int]:
    """'100M,400M' -> byte rates, as zcp reads them (powers of 1024)."""
    limits = [parse_size(part) for part in text.split(",") if part.strip()]
    if not limits:
        raise argparse.ArgumentTypeError("give at least one rate, e.g. 100M,400M")
    return limits


def cases_for(limits: list[int]) -> list[Case]:
    """Each limit, then no limit, verified (the default) and with
    --checksum none: without hashing on both ends the pacing alone sets
    the rate, so that row shows how exactly the kernel holds the limit."""
    cases = []
    for flags, suffix in (((), ""), (UNVERIFIED, " --checksum none")):
        tag = "-none" if flags else ""
        for rate in limits:
            shown = f"{rate // MiB}M" if rate % MiB == 0 else str(rate)
            label = f"zcp --limit {shown}{suffix}"
            cases.append(Case(f"limit-{rate}{tag}", label, "zcp", flags, ("--limit", str(rate))))
        cases.append(Case(f"limit-off{tag}", f"zcp, no limit{suffix}", "zcp", flags))
    return cases


@dataclass
class LimitSetup(bigfile.Setup):
    """The big case's setup, with a run timeout that allows for the
    slowest limit."""

    slowest: int = 0

    def run_timeout_s(self) -> float:
        return 30.0 + 2 * self.size / self.slowest


def prepare(args: argparse.Namespace, zcp: Path, nc: str, children) -> tuple[LimitSetup, list[Case], Path]:
    workdir = bigfile.make_workdir(args.dir)
    cases = cases_for(args.limits)
    needed = args.limit_size * (1 + len(cases)) + 64 * MiB
    try:
        source, digest = bigfile.case_source(workdir, args.limit_size, needed, "limit")
    except BenchError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    setup = LimitSetup(zcp, nc, workdir, source, args.limit_size, digest, children, slowest=min(args.limits))
    return setup, cases, workdir


def run_all(setup: LimitSetup, cases: list[Case], runs: int) -> list[Run]:
    """A warm-up round, then `runs` measured rounds, each case once per round."""

    def describe(run: Run) -> str:
        rate = setup.size / MiB / run.wall_s if run.wall_s else 0.0
        return f"{run.case.label:<40} {rate:8.1f} MiB/s"

    return bigfile.run_rounds(setup, cases, runs, bigfile.run_once, describe)


def case_limit(case: Case) -> int | None:
    return int(case.send_flags[1]) if case.send_flags else None


def row(setup: LimitSetup, case: Case, results: list[Run]) -> tuple[str, bool]:
    own = [r for r in results if r.case == case]
    good = [r for r in own if r.ok and not r.warmup]
    failures = sum(not r.ok for r in own)
    label = marked_label(case.label, failures, len(own))
    limit = case_limit(case)
    limit_cell = f"{limit / MiB:.0f}" if limit else "–"
    if not good:
        return markdown_row([label, limit_cell, "FAIL", "FAIL", "FAIL"]), False
    rates = [setup.size / MiB / r.wall_s for r in good]
    gib = setup.size / GiB
    median = statistics.median(rates)
    ratio = f"{median * MiB / limit:.3f}" if limit else "–"
    send_cpu = statistics.median(r.send_cpu_s / gib for r in good)
    recv_cpu = statistics.median(r.recv_cpu_s / gib for r in good)
    cells = [
        label,
        limit_cell,
        f"{median:.1f} ({min(rates):.1f}–{max(rates):.1f})",
        ratio,
        f"{send_cpu:.3f} + {recv_cpu:.3f}",
    ]
    return markdown_row(cells), failures == 0


def report(setup: LimitSetup, cases: list[Case], runs: int, results: list[Run]) -> tuple[str, bool]:
    lines = [
        "# zcp send --limit on 127.0.0.1",
        "",
        *machine_lines(),
        f"- file: {human_size(setup.size)} ({setup.size} bytes, pseudo-random, page-cached), sha256 verified",
        f"- runs: {runs} measured per case after 1 warm-up, cases interleaved round-robin",
        f"- zcp: {zcp_identity(setup.zcp)}",
        "",
        "| case | limit MiB/s | achieved MiB/s median (min–max) | achieved / limit | CPU-s/GiB send + recv |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    all_ok = True
    for case in cases:
        line, ok = row(setup, case, results)
        lines.append(line)
        all_ok &= ok
    lines += [
        "",
        "Achieved = file size / wall time from sender start until both ends exited (connection, "
        "handshake and the final verdict included). The limit is enforced by the kernel's TCP pacing "
        "(SO_MAX_PACING_RATE); a ratio near 1.000 means the limit holds, and a limit near or above "
        "the unlimited rate cannot be reached. Rows with --checksum none show the pacing alone; the "
        "verified rows add SHA-256 on both ends, which competes for the CPU.",
    ]
    lines += failure_lines(results)
    return "\n".join(lines) + "\n", all_ok

