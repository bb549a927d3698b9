"""The suite's report: one markdown table per workload (throughput,
CPU-seconds per GiB of both ends, peak RSS of each end, syscalls per GiB,
ratios to nc), the targets with measured value and PASS/MISS, the failed
runs, and the chart's panels (drawn by svgchart)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .common import GiB, KiB, markdown_row, median, ratio_cell, thousands
from .suiterun import MEASURED, STRACE, SuiteRun, Workload
from .suitetools import BASELINE, NC, REF, RSYNC, SCP, TREE, ZCP, ZCP_NONE, ZCP_NOZC, Tool
from .svgchart import Bar, Panel

SYSCALL_LIMIT = 5000  # per GiB, both ends of a zcp transfer
RSS_LIMIT_MIB = 16  # per zcp end


@dataclass
class Row:
    """One tool on one workload: medians of its successful measured runs."""

    workload: Workload
    tool: Tool
    runs: int  # every run, warm-up and strace run included
    failures: int
    rates: list[float]  # GiB/s (a tree: files/s)
    walls: list[float]
    cpu_send: list[float]  # CPU-s per GiB of payload
    cpu_recv: list[float]
    rss_send_mib: float
    rss_recv_mib: float
    syscalls_per_gib: float | None
    sample_files: int | None  # the timed runs moved a sample of this many files

    @property
    def rate(self) -> float | None:
        return median(self.rates)

    @property
    def cpu(self) -> float | None:
        return median([s + r for s, r in zip(self.cpu_send, self.cpu_recv)])

    @property
    def label(self) -> str:
        label = self.tool.label(self.workload.kind) or self.tool.key
        return f"{label} ({thousands(self.sample_files)}-file sample)" if self.sample_files else label


def summarize(workload: Workload, tool: Tool, results: list[SuiteRun]) -> Row:
    own = [r for r in results if r.workload is workload and r.tool is tool]
    good = [r for r in own if r.ok and r.phase == MEASURED]
    traced = [r for r in own if r.ok and r.phase == STRACE and r.syscalls is not None]
    return Row(
        workload=workload,
        tool=tool,
        runs=len(own),
        failures=sum(not r.ok for r in own),
        rates=[r.rate() for r in good],
        walls=[r.wall_s for r in good],
        cpu_send=[r.send_cpu_s / (r.moved / GiB) for r in good],
        cpu_recv=[r.recv_cpu_s / (r.moved / GiB) for r in good],
        rss_send_mib=max((r.send_rss_kib for r in good), default=0) / KiB,
        rss_recv_mib=max((r.recv_rss_kib for r in good), default=0) / KiB,
        syscalls_per_gib=traced[0].syscalls / (traced[0].moved / GiB) if traced else None,
        sample_files=good[0].files if good and good[0].moved != workload.size else None,
    )


def rate_text(row: Row) -> str:
    if row.workload.kind == TREE:
        return f"{thousands(row.rate)} ({thousands(min(row.rates))}–{thousands(max(row.rates))})"
    return f"{row.rate:.2f} ({min(row.rates):.2f}–{max(row.rates):.2f})"


def syscalls_text(row: Row) -> str:
    """Syscalls per GiB; for a tree also per file."""
    if row.syscalls_per_gib is None:
        return "–"
    text = thousands(row.syscalls_per_gib)
    if row.workload.kind == TREE:
        per_file = row.syscalls_per_gib * row.workload.size / GiB / row.workload.files
        text += f" ({per_file:.0f} per file)"
    return text


def table(rows: list[Row]) -> list[str]:
    """The markdown table of one workload's rows."""
    kind = rows[0].workload.kind
    unit = "files/s" if kind == TREE else "GiB/s"
    base_name = "tar\\|nc" if kind == TREE else "nc"
    base = next((r for r in rows if r.tool is BASELINE), None)
    lines = [
        f"| tool | {unit} median (min–max) | seconds | CPU-s/GiB send + recv = total | peak RSS send / recv MiB "
        f"| syscalls/GiB | {unit} vs {base_name} | CPU/GiB vs {base_name} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        label = row.label.replace("|", "\\|")
        if row.failures:
            label = f"**FAIL** {label} ({row.failures} of {row.runs} runs failed)"
        if row.rate is None:
            lines.append(markdown_row([label] + ["FAIL"] * 7))
            continue
        cells = [
            label,
            rate_text(row),
            f"{median(row.walls):.2f}",
            f"{median(row.cpu_send):.2f} + {median(row.cpu_recv):.2f} = {row.cpu:.2f}",
            f"{row.rss_send_mib:.1f} / {row.rss_recv_mib:.1f}",
            syscalls_text(row),
            ratio_cell(row.rate, base.rate if base else None, suffix="×"),
            ratio_cell(row.cpu, base.cpu if base else None, suffix="×"),
        ]
        lines.append(markdown_row(cells))
    return lines


# --------------------------------------------------------------------------
# Targets


Rows = dict[tuple[str, str], Row]  # (workload key, tool key) -> row


def ratio_target(rows: Rows, workload: str, tool: Tool, other: Tool, what: Callable[[Row], float | None],
                 minimum: float | None = None, maximum: float | None = None) -> tuple[str, str]:  # fmt: skip
    """(measured, verdict) of `what(tool) / what(other)` on `workload`."""
    mine, theirs = rows.get((workload, tool.key)), rows.get((workload, other.key))
    if mine is None or theirs is None:
        return "not measured", "–"
    a, b = what(mine), what(theirs)
    if a is None or b is None or not b or mine.failures or theirs.failures:
        return "no valid ratio (failed runs)", "MISS"
    value = a / b
    ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    return f"{value:.2f}×", "PASS" if ok else "MISS"


def syscall_target(rows: Rows, workload: str) -> tuple[str, str]:
    """The worst zero-copy zcp row of `workload` against SYSCALL_LIMIT
    (--no-zerocopy reads and writes by design)."""
    counted = [r for (w, _), r in rows.items() if w == workload and r.tool.family == "zcp" and r.tool is not ZCP_NOZC]
    counted = [r for r in counted if r.syscalls_per_gib is not None]
    if not counted:
        return "not measured", "–"
    worst = max(counted, key=lambda r: r.syscalls_per_gib or 0)
    assert worst.syscalls_per_gib is not None
    verdict = "PASS" if worst.syscalls_per_gib <= SYSCALL_LIMIT else "MISS"
    return f"{thousands(worst.syscalls_per_gib)} (worst: {worst.label})", verdict


def rss_target(rows: Rows) -> tuple[str, str]:
    measured = [r for r in rows.values() if r.tool.family == "zcp" and r.rate is not None]
    if not measured:
        return "not measured", "–"
    worst = max(measured, key=lambda r: max(r.rss_send_mib, r.rss_recv_mib))
    peak = max(worst.rss_send_mib, worst.rss_recv_mib)
    return f"{peak:.1f} MiB (worst: {worst.label}, {worst.workload.key})", "PASS" if peak <= RSS_LIMIT_MIB else "MISS"


def target_lines(rows: Rows, workloads: list[Workload]) -> list[str]:
    def rate(row: Row) -> float | None:
        return row.rate

    def cpu(row: Row) -> float | None:
        return row.cpu

    named = {w.key: w for w in workloads}

    def on(key: str) -> str:
        return f" ({named[key].title})" if key in named else f" ({key}, not run)"

    checks = [
        (f"zcp default ≥ 1.5× nc throughput{on('big1g')}", ratio_target(rows, "big1g", ZCP, NC, rate, 1.5)),
        (f"zcp default ≥ 3× scp throughput{on('big1g')}", ratio_target(rows, "big1g", ZCP, SCP, rate, 3.0)),
        (f"zcp --checksum none ≥ 0.95× the C reference's throughput{on('big1g')}",
         ratio_target(rows, "big1g", ZCP_NONE, REF, rate, 0.95)),
        (f"zcp --checksum none ≤ 1.1× the C reference's CPU/GiB{on('big1g')}",
         ratio_target(rows, "big1g", ZCP_NONE, REF, cpu, maximum=1.1)),
        (f"cat \\| zcp ≥ 2× cat \\| nc throughput{on('pipe')}", ratio_target(rows, "pipe", ZCP, NC, rate, 2.0)),
        (f"zcp send -r ≥ 1.0× tar \\| nc files/s{on('tree')}", ratio_target(rows, "tree", ZCP, NC, rate, 1.0)),
        (f"zcp send -r ≥ 2× rsync files/s{on('tree')}", ratio_target(rows, "tree", ZCP, RSYNC, rate, 2.0)),
    ]  # fmt: skip
    for key in ("big1g", "big4g", "pipe"):
        name = f"zcp ≤ {thousands(SYSCALL_LIMIT)} syscalls/GiB, both ends, zero-copy rows{on(key)}"
        checks.append((name, syscall_target(rows, key)))
    checks.append((f"≤ {RSS_LIMIT_MIB} MiB peak RSS per zcp end (every zcp row)", rss_target(rows)))
    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    lines += [markdown_row([name, measured.replace("|", "\\|"), verdict]) for name, (measured, verdict) in checks]
    return lines


def failure_lines(results: list[SuiteRun]) -> list[str]:
    failed = [r for r in results if not r.ok]
    if not failed:
        return []
    lines = ["", f"FAIL: {len(failed)} run(s) failed:"]
    for run in failed:
        label = run.tool.label(run.workload.kind) or run.tool.key
        lines.append(f"- {run.workload.key}, {label} ({run.phase}): " + "; ".join(run.problems))
    return lines


# --------------------------------------------------------------------------
# Chart


def panel(workload: Workload, rows: list[Row]) -> Panel:
    unit = "files/s" if workload.kind == TREE else "GiB/s"
    bars = []
    for row in rows:
        rate = row.rate
        if rate is None:
            text = ""
        elif workload.kind == TREE:
            text = f"{thousands(rate)} {unit}"
        else:
            text = f"{rate:.2f} {unit}"
        bars.append(Bar(row.label, rate, min(row.rates, default=None), max(row.rates, default=None),
                        row.tool.family, row.tool is BASELINE, text))  # fmt: skip
    return Panel(f"{workload.title} ({workload.key}), {unit}", bars)
