"""Shared basics: units, the two error kinds, progress logging, command-line
value parsers, facts about the machine and the checkout for report headers,
and the medians, ratios and table rows the reports are made of."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

REPO = Path(__file__).resolve().parent.parent.parent
LOOPBACK = "127.0.0.1"


class BenchError(Exception):
    """A problem that stops the whole benchmark (setup, missing tools)."""


class RunError(Exception):
    """A problem that fails one run; the benchmark goes on."""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the report."""
    print(f"compare: {message}", file=sys.stderr, flush=True)


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


def human_size(size: int) -> str:
    """1073741824 -> '1 GiB', 67108864 -> '64 MiB'."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size >= unit:
            return f"{size / unit:g} {name}"
    return f"{size} bytes"


def thousands(number: float) -> str:
    """100000 -> '100 000' (the style of docs and MEASUREMENTS.md)."""
    return f"{number:,.0f}".replace(",", " ")


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine_lines() -> list[str]:
    """A report header's date, kernel and CPU lines."""
    return [
        f"- date: {utc_now()}",
        f"- kernel: {os.uname().release}",
        f"- CPU: {cpu_model()} x {os.cpu_count()}",
    ]


def memory_total() -> str:
    """MemTotal from /proc/meminfo, in GiB."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) * KiB / GiB:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    """'1.20 / 0.90 / 0.75' (1, 5 and 15 minutes)."""
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


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


def filesystem_of(path: Path) -> tuple[str, str, str]:
    """(mount point, file system type, device) holding `path`, from
    /proc/self/mounts (the longest mount point that is a prefix)."""
    target = os.path.realpath(path)
    best = ("/", "unknown", "unknown")
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                device, mount_point, fstype = line.split()[:3]
                mount_point = mount_point.replace("\\040", " ")
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best[0]):
                    best = (mount_point, fstype, device)
    except OSError:
        pass
    return best


def median(values: list[float]) -> float | None:
    """The median, or None when there are no values."""
    return statistics.median(values) if values else None


def ratio_cell(value: float | None, base: float | None, spec: str = ".2f", suffix: str = "x") -> str:
    """`value / base` for a table cell; 'n/a' when either is missing (or base is 0)."""
    return "n/a" if value is None or not base else f"{value / base:{spec}}{suffix}"


def marked_label(label: str, failures: int, runs: int) -> str:
    """A table row's label, marked **FAIL** with a count when runs failed."""
    return f"**FAIL** {label} ({failures} of {runs} runs failed)" if failures else label


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
