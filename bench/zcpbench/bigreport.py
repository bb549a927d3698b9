"""The big case's report: medians per case, the markdown table against nc,
the project's throughput targets and whether they were met, and the list of
failed runs. The output format is the one compare.py always had."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

from .bigfile import BASELINE, CASES, TARGET_CORES, TARGETS, TARGETS_LINE, Case, Run, Setup
from .common import GiB, KiB, human_size, machine_lines, marked_label, markdown_row, median, ratio_cell
from .tools import netcat_banner, zcp_identity


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


def table_row(summary: Summary, baseline: Summary | None) -> str:
    label = marked_label(summary.case.label, summary.failures, summary.runs)
    if not summary.measured:
        return markdown_row([label] + ["FAIL"] * 7)
    rate = statistics.median(summary.rate)
    cpu = statistics.median(summary.cpu_total)
    base_rate = median(baseline.rate) if baseline else None
    base_cpu = median(baseline.cpu_total) if baseline else None
    cells = [
        label,
        f"{rate:.2f} ({min(summary.rate):.2f}–{max(summary.rate):.2f})",
        f"{cpu:.3f}",
        f"{statistics.median(summary.cpu_send):.3f}",
        f"{statistics.median(summary.cpu_recv):.3f}",
        f"{summary.rss_send_mib:.1f} / {summary.rss_recv_mib:.1f}",
        ratio_cell(rate, base_rate),
        ratio_cell(cpu, base_cpu),
    ]
    return markdown_row(cells)


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
    base_rate = median(by_key[BASELINE].rate)
    lines = [TARGETS_LINE]
    cores = os.cpu_count() or 0
    if cores != TARGET_CORES:
        lines.append(f"(this machine has {cores} cores; the targets are stated for {TARGET_CORES})")
    for key, name, minimum in TARGETS:
        summary = by_key[key]
        measured = ratio(median(summary.rate), base_rate)
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


def report_text(lines: list[str], results: list[Run]) -> tuple[str, bool]:
    """A report's `lines` and then the failed runs, as text; and whether
    every run succeeded."""
    lines = lines + failure_lines(results)
    return "\n".join(lines) + "\n", all(r.ok for r in results)


def header_lines(setup: Setup, runs: int) -> list[str]:
    return [
        "# zcp vs nc on 127.0.0.1",
        "",
        *machine_lines(),
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
    return report_text(lines, results)
