"""The "resume" case: what `zcp send --resume` saves after a break.

One pseudo-random file (4 GiB by default) crosses 127.0.0.1 four ways per
round: a fresh `zcp send --resume` copy, the same copy resumed after a break
at half way, a fresh zcp copy without --resume, and a fresh copy by OpenBSD
nc for scale. The break is made outside the timed region and is the same
every time: the sender is paced with --limit, and the receiver is SIGKILLed
as soon as the record at the end of its partial (`.NAME.zcp-partial`: the
file's bytes, then a 40-byte header, one 40-byte entry per verified 8 MiB
block and a 16-byte footer) holds half of the blocks. The record is then read back, and
the resumed run must send exactly the blocks it lacks, by the sender's -v
byte count. One warm-up round and N measured rounds, every output checked
by size and SHA-256. Reuses the big case's transfers and checks; the report
is at the end."""

from __future__ import annotations

import argparse
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import bigfile
from .bigfile import BLOCK, Case, Run, Setup, blocks_of, send_lines
from .bigreport import report_text
from .common import (
    GiB,
    KiB,
    LOOPBACK,
    MiB,
    RunError,
    human_size,
    machine_lines,
    marked_label,
    markdown_row,
    median,
    ratio_cell,
)
from .procs import READY_TIMEOUT_S, Child, Watchdog, announced_port
from .tools import netcat_banner, zcp_identity

DEFAULT_SIZE = 4 * GiB
# Eight blocks: the receiver records verified blocks in batches of up to 8,
# so a smaller file could finish before its record shows half of it.
MIN_SIZE = 128 * MiB

# The partial's layout (src/recv/partial.rs): the file's bytes, then the
# record header (magic, size, block size, source identity, algorithm), then
# one entry per verified block (of BLOCK bytes): u32 index (big-endian), a
# SHA-256 and a 4-byte check; then a 16-byte footer (the header's offset,
# a magic).
RECORD_MAGIC = b"zcpPART1"
RECORD_HEADER = 40
RECORD_ENTRY = 40
RECORD_FOOTER = 16

# The sender that is broken off runs paced, so its receiver records one
# batch of 8 blocks (64 MiB) every quarter second and the poll below sees
# the record reach half the blocks well before the next batch.
BREAK_LIMIT = 256 * MiB
BREAK_POLL_S = 0.005
# How long a sender may take to notice that its receiver was killed.
BREAK_SENDER_GRACE_S = 30.0

RESUME = ("--resume",)
FRESH = Case("resume-fresh", "zcp --resume, fresh copy", "zcp", send_flags=RESUME, verbose=True)
RESUMED = Case("resume-again", "zcp --resume, resumed after a break at 50 %", "zcp", send_flags=RESUME, verbose=True)
PLAIN = Case("resume-plain", "zcp without --resume, fresh copy", "zcp")
NC = Case("nc", "nc (OpenBSD), fresh copy", "nc")
CASES = (FRESH, RESUMED, PLAIN, NC)

# `zcp send -v`: "zcp: send NAME: sendfile (ROUTE): sendfile N bytes[, ...]".
MOVED = re.compile(r"\b(?:sendfile|splice|read/write) (\d+) bytes\b")
# The closing line of a resumed file: "... A of B (C resumed) in S s".
RESUMED_SUMMARY = re.compile(r"^zcp: sent .*: ([\d.]+ \S+) of ([\d.]+ \S+) \(([\d.]+ \S+) resumed\) in ")
UNITS = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": 1024 * GiB}


def parse_resume_size(text: str) -> int:
    """--resume-size: a size, at least MIN_SIZE."""
    return bigfile.parse_size_of_blocks(text, MIN_SIZE)


@dataclass
class ResumeRun(Run):
    """A run, plus what the sender says it sent and, for the resumed copy,
    how many blocks the record held after the break."""

    sent_bytes: int | None = None
    held_blocks: int | None = None


def block_len(size: int, index: int) -> int:
    return min(BLOCK, size - index * BLOCK)


def partial_of(out: Path) -> Path:
    return out.with_name(f".{out.name}.zcp-partial")


def clear_output(setup: Setup, case: Case) -> None:
    """No output and no partial: a fresh copy must not resume anything."""
    out = setup.output(case)
    for path in (out, partial_of(out)):
        path.unlink(missing_ok=True)


def read_record(partial: Path, size: int) -> set[int]:
    """Indexes of the blocks the partial's record holds as verified."""
    try:
        with open(partial, "rb") as file:
            file.seek(size)
            record = file.read()
    except FileNotFoundError:
        raise RunError(f"no partial {partial.name} after the break") from None
    header = record[:RECORD_HEADER]
    if len(header) < RECORD_HEADER or not header.startswith(RECORD_MAGIC):
        raise RunError(f"{partial.name} has no record past byte {size}")
    if int.from_bytes(header[8:16], "big") != size or int.from_bytes(header[16:20], "big") != BLOCK:
        raise RunError(f"the record in {partial.name} names another size or block size")
    entries = record[RECORD_HEADER:-RECORD_FOOTER]
    whole = len(entries) // RECORD_ENTRY
    indexes = (int.from_bytes(entries[i * RECORD_ENTRY : i * RECORD_ENTRY + 4], "big") for i in range(whole))
    return {index for index in indexes if index < blocks_of(size)}


def break_off(setup: Setup, case: Case) -> set[int]:
    """Start a paced `--resume` copy into the case's output and SIGKILL its
    receiver once the record holds half the blocks; return the blocks held."""
    out = setup.output(case)
    partial = partial_of(out)
    half = (blocks_of(setup.size) + 1) // 2
    wanted = setup.size + RECORD_HEADER + half * RECORD_ENTRY + RECORD_FOOTER
    receiver = setup.children.spawn([str(setup.zcp), "recv", "-q", "-l", f"{LOOPBACK}:0", str(out)])
    port = announced_port(receiver.first_stderr_line(READY_TIMEOUT_S))
    sender = setup.children.spawn(
        [str(setup.zcp), "send", "-q", *RESUME, "--limit", str(BREAK_LIMIT), str(setup.source), f"{LOOPBACK}:{port}"]
    )
    deadline = time.monotonic() + setup.run_timeout_s()
    while not recorded(partial, wanted):
        if sender.has_exited() or receiver.has_exited():
            ended = sender if sender.has_exited() else receiver
            ended.reap()
            raise RunError(f"the paced copy ended before its record held {half} blocks: {ended.failure()}")
        if time.monotonic() > deadline:
            raise RunError(f"the record held fewer than {half} blocks after {setup.run_timeout_s():.0f} s")
        time.sleep(BREAK_POLL_S)
    receiver.signal(signal.SIGKILL)
    receiver.reap()
    with Watchdog(BREAK_SENDER_GRACE_S, [sender]):
        sender.reap()
    check_break(receiver, sender, out)
    held = read_record(partial, setup.size)
    if len(held) < half:
        raise RunError(f"the record held {len(held)} blocks after the break, fewer than the {half} it showed")
    return held


def recorded(partial: Path, wanted: int) -> bool:
    try:
        return partial.stat().st_size >= wanted
    except FileNotFoundError:
        return False


def check_break(receiver: Child, sender: Child, out: Path) -> None:
    if receiver.exit_code != -signal.SIGKILL:
        raise RunError(f"the receiver was to be killed, but {receiver.failure()}")
    if sender.exit_code == 0:
        raise RunError("the sender reported success although its receiver was killed half way")
    if out.exists():
        raise RunError(f"{out.name} exists under its final name after the break")


def shows(amount: str, count: int) -> bool:
    """Whether zcp's rounded '128.00 MiB' stands for `count` bytes."""
    number, unit = amount.split()
    return abs(float(number) * UNITS[unit] - count) <= 0.005 * UNITS[unit]


def check_sent(run: ResumeRun, sender: Child, size: int, held: set[int] | None) -> None:
    """The sender's -v byte count against what it had to send: the whole
    file, or exactly the blocks missing from the record."""
    lines = sender.stderr_lines()
    counts = [sum(int(n) for n in MOVED.findall(line)) for line in send_lines(lines)]
    counts = [count for count in counts if count]
    if len(counts) != 1:
        run.problems.append(f"found {len(counts)} byte counts in the sender's -v output, expected 1")
        return
    run.sent_bytes = counts[0]
    summary = next((m for m in map(RESUMED_SUMMARY.match, lines) if m), None)
    if held is None:
        expected = size
        if summary:
            run.problems.append("a fresh copy says it resumed: " + summary.group(0))
    else:
        expected = size - sum(block_len(size, index) for index in held)
        if summary is None:
            run.problems.append("the resumed copy's closing line does not say 'resumed'")
        elif not shows(summary.group(1), run.sent_bytes):
            run.problems.append(f"closing line says {summary.group(1)} sent, -v says {run.sent_bytes} bytes")
    if run.sent_bytes != expected:
        run.problems.append(f"sent {run.sent_bytes} bytes, expected {expected}")


def run_once(setup: Setup, case: Case, warmup: bool) -> ResumeRun:
    """One run of one case: clear, break off first (resumed case, not
    timed), time, check the bytes sent and the output, settle."""
    run = ResumeRun(case, warmup)
    clear_output(setup, case)
    try:
        held = None
        if case is RESUMED:
            held = break_off(setup, case)
            run.held_blocks = len(held)
            setup.children.stop_all()
            os.sync()
        sender = bigfile.timed_transfer(setup, case, run)
        if case.verbose and run.ok:
            check_sent(run, sender, setup.size, held)
    except RunError as error:
        run.problems.append(str(error))
    finally:
        setup.children.stop_all()
    run.problems += bigfile.verify_output(setup, case)
    if run.ok and partial_of(setup.output(case)).exists():
        run.problems.append("the partial is still there after a complete copy")
    os.sync()
    return run


def prepare(args: argparse.Namespace, workdir: Path, zcp: Path, nc: str, children) -> Setup:
    """The source file in `workdir` (which the caller removes), hashed."""
    needed = args.resume_size * (1 + len(CASES)) + 64 * MiB
    source, digest = bigfile.case_source(workdir, args.resume_size, needed, "resume")
    return Setup(zcp, nc, workdir, source, args.resume_size, digest, children)


def run_all(setup: Setup, runs: int) -> list[ResumeRun]:
    """A warm-up round, then `runs` measured rounds, each case once per round."""

    def describe(run: ResumeRun) -> str:
        sent = "" if run.sent_bytes is None else f" {human_size(run.sent_bytes):>10} sent"
        return f"{run.case.label:<44} {run.wall_s:6.2f} s{sent}"

    return bigfile.run_rounds(setup, CASES, runs, run_once, describe)


# --------------------------------------------------------------------------
# Report


def spread(values: list[int]) -> str:
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def report(setup: Setup, runs: int, results: list[ResumeRun]) -> tuple[str, bool]:
    """The markdown section for the resume case, and whether every run succeeded."""
    good = {case: [r for r in results if r.case is case and r.ok and not r.warmup] for case in CASES}
    seconds = {case: median([r.wall_s for r in good[case]]) for case in CASES}
    sent = {case: median([setup.size if r.sent_bytes is None else r.sent_bytes for r in good[case]]) for case in CASES}
    held = [r.held_blocks for r in results if r.held_blocks is not None and not r.warmup]
    blocks = blocks_of(setup.size)
    lines = [
        "# zcp send --resume on 127.0.0.1",
        "",
        *machine_lines(),
        f"- file: {human_size(setup.size)} ({setup.size} bytes, pseudo-random, page-cached), "
        f"{blocks} blocks of {human_size(BLOCK)} with --resume",
        f"- break (not timed): a `zcp send --resume --limit {BREAK_LIMIT // MiB}M` copy, its receiver "
        f"SIGKILLed once the partial's record held {(blocks + 1) // 2} of {blocks} blocks; "
        f"held afterwards: {spread(held)} blocks",
        f"- runs: {runs} measured per case after 1 warm-up, cases interleaved round-robin",
        f"- zcp: {zcp_identity(setup.zcp)}",
        f"- nc: {netcat_banner(setup.nc)}",
        "",
        "| case | seconds median (min–max) | sent | sent / file size | CPU-s send + recv "
        "| seconds vs fresh --resume | seconds vs nc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in CASES:
        own = [r for r in results if r.case is case]
        label = marked_label(case.label, sum(not r.ok for r in own), len(own))
        walls = [r.wall_s for r in good[case]]
        if not walls:
            lines.append(markdown_row([label] + ["FAIL"] * 6))
            continue
        send = median([r.send_cpu_s for r in good[case]])
        recv = median([r.recv_cpu_s for r in good[case]])
        cells = [
            label,
            f"{seconds[case]:.2f} ({min(walls):.2f}–{max(walls):.2f})",
            human_size(int(sent[case])),
            f"{sent[case] / setup.size:.3f}",
            f"{send:.2f} + {recv:.2f} = {send + recv:.2f}",
            ratio_cell(seconds[case], seconds[FRESH]),
            ratio_cell(seconds[case], seconds[NC]),
        ]
        lines.append(markdown_row(cells))
    lines += [
        "",
        "Seconds run from sender start until both ends exited. Sent: the bytes the sender's -v line "
        "counts (zcp --resume rows; the resumed row must match the blocks missing from the record), "
        "the whole file for the other rows. CPU-s is user+system of each process. Every output was "
        "checked by size and SHA-256 against the source.",
        "",
        f"resumed after a break at 50 %: {ratio_cell(seconds[RESUMED], seconds[FRESH])} the time of a fresh "
        f"--resume copy, {ratio_cell(sent[RESUMED], setup.size, '.3f', '')} of the bytes; "
        f"{ratio_cell(seconds[RESUMED], seconds[NC])} the time of a fresh nc copy",
    ]
    return report_text(lines, results)
