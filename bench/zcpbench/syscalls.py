"""Counting system calls: the `strace -c -f -o FILE` prefix a tool runs
under for one extra, untimed run, and reading the total number of calls
back from the summary strace writes when the traced process ends."""

from __future__ import annotations

from pathlib import Path

from .common import RunError


def strace_argv(strace: str, summary: Path) -> list[str]:
    """Prefix for a command whose calls, its threads' and children's
    included (-f), are to be counted into `summary` (-c: a table, no log)."""
    return [strace, "-c", "-f", "-o", str(summary)]


def total_calls(summary: Path) -> int:
    """The `calls` column of the `total` row of an strace -c summary:

        % time     seconds  usecs/call     calls    errors syscall
        ------ ----------- ----------- --------- --------- ----------------
         99.10    0.512000          61      8310           splice
        ...
        100.00    0.516650          60      8563        12 total

    (the errors column may be empty)."""
    try:
        lines = summary.read_text(errors="replace").splitlines()
    except OSError as error:
        raise RunError(f"no strace summary {summary.name}: {error.strerror}") from None
    for line in reversed(lines):
        fields = line.split()
        if fields and fields[-1] == "total" and len(fields) >= 5:
            try:
                return int(fields[3])
            except ValueError:
                break
    raise RunError(f"strace summary {summary.name} has no total line")
