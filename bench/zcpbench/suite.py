"""bench/run.sh: the benchmark suite. Command line, setup of every tool
(apt-get for missing peers, gcc for the C reference, a private sshd), the
workloads in order, and the report: markdown (bench/results-suite.md) and
chart (bench/results-suite.svg); a --quick run writes results-quick.*
instead. Cleanup on every path out is the session's (see session)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from . import bigfile, session, suitereport
from .common import GiB, KiB, MiB, REPO, BenchError, filesystem_of, human_size, load_average, log
from .common import cpu_model, machine_lines, memory_total, parse_size, positive_int, thousands, utc_now
from .daemons import SshServer
from .procs import Children
from .suiterun import Bench, Data, SuiteRun, Workload, file_data, needed_bytes, run_workload
from .suiterun import sample_shape, tree_data
from .suitetools import FILE, PIPE, REF, SCP, TOOLS, TREE, Peers, Tool
from .svgchart import chart
from .tools import build_ref, build_zcp, ensure_commands, ensure_openbsd_nc, netcat_banner, tool_version
from .tools import zcp_identity
from .treedata import TreeShape, Workspace

WORKLOADS = ("big1g", "big4g", "pipe", "tree")
FULL = {"size": GiB, "large_size": 4 * GiB, "pipe_size": GiB, "files": 100_000, "dirs": 100, "runs": 3,
        "strace_size": GiB}  # fmt: skip
QUICK = {"size": 128 * MiB, "large_size": 256 * MiB, "pipe_size": 128 * MiB, "files": 5_000, "dirs": 50, "runs": 1,
         "strace_size": 64 * MiB}  # fmt: skip


def key_list(choices: list[str]) -> Callable[[str], list[str]]:
    """A parser of comma-separated keys out of `choices`."""

    def parse(text: str) -> list[str]:
        keys = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [key for key in keys if key not in choices]
        if unknown or not keys:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}")
        return keys

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="The zcp benchmark suite: zcp (default, --checksum none, --no-zerocopy, --checksum "
        "blake3), a C reference of its zero-copy path, OpenBSD nc, socat, rsync to an rsync daemon and "
        "scp to a private sshd, over 127.0.0.1 with a warm page cache; a 1 GiB file, a 4 GiB file, a "
        "stdin pipe and a tree of 100 000 × 4 KiB files. A warm-up run, the median of 3, every output "
        "checked, and one extra run under strace -c -f for syscalls per GiB. Installs missing peers "
        "with apt-get. Set ZCP_BIN to skip the cargo build. A full run takes about 15 minutes on 2 cores; "
        "the report says how long it took.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run, about 2 minutes: 128M/256M files, 5000-file tree, 1 measured run "
                        "(sizes given explicitly still apply); report to bench/results-quick.*")  # fmt: skip
    parser.add_argument("--only", type=key_list(list(WORKLOADS)), default=list(WORKLOADS),
                        help=f"workloads to run, comma-separated (default {','.join(WORKLOADS)})")  # fmt: skip
    tool_keys = [tool.key for tool in TOOLS]
    parser.add_argument("--tools", type=key_list(tool_keys),
                        help=f"tools to run, comma-separated (default all: {','.join(tool_keys)}); "
                        "ratios need nc")  # fmt: skip
    parser.add_argument("--runs", type=positive_int, help="measured runs per tool (default 3, --quick 1)")
    parser.add_argument("--size", type=parse_size, help="big1g: file size (default 1G)")
    parser.add_argument("--large-size", type=parse_size, help="big4g: file size (default 4G)")
    parser.add_argument("--pipe-size", type=parse_size, help="pipe: bytes through cat (default 1G)")
    parser.add_argument("--files", type=positive_int, help="tree: files (default 100000)")
    parser.add_argument("--dirs", type=positive_int, help="tree: directories they are spread over (default 100)")
    parser.add_argument("--file-size", type=parse_size, default=4 * KiB, help="tree: size of each file (default 4K)")
    parser.add_argument("--strace-size", type=parse_size,
                        help="largest file the syscall-count run moves (default 1G, --quick 64M)")  # fmt: skip
    parser.add_argument("--no-strace", action="store_true", help="skip the syscall-count runs")
    parser.add_argument("--no-tmpfs", action="store_true", help="tree on disk (in --dir) even as root")
    parser.add_argument("--dir", type=Path, help="work directory parent (default $TMPDIR or /tmp)")
    parser.add_argument("--out", type=Path, help="markdown report (default bench/results-suite.md)")
    parser.add_argument("--svg", type=Path, help="chart (default: the report's name with .svg)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (and tmpfs mount)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.tools_given = args.tools is not None
    if args.tools is None:
        args.tools = tool_keys
    if args.dirs > args.files:
        parser.error("--dirs must not exceed --files")
    if args.out is None:
        args.out = REPO / "bench" / ("results-quick.md" if args.quick else "results-suite.md")
    if args.svg is None:
        args.svg = args.out.with_suffix(".svg")
    args.argv = argv
    return args


def workloads_of(args: argparse.Namespace) -> list[Workload]:
    shape = TreeShape(args.files, args.dirs, args.file_size)
    every = {
        "big1g": Workload("big1g", FILE, args.size),
        "big4g": Workload("big4g", FILE, args.large_size),
        "pipe": Workload("pipe", PIPE, args.pipe_size),
        "tree": Workload("tree", TREE, shape.payload, shape),
    }
    return [every[key] for key in WORKLOADS if key in args.only]


def tools_for(args: argparse.Namespace, workload: Workload) -> list[Tool]:
    """The chosen tools that take part in `workload`: on the large file
    only those marked large, unless named with --tools."""
    return [
        tool
        for tool in TOOLS
        if tool.key in args.tools
        and tool.label(workload.kind) is not None
        and (workload.key != "big4g" or tool.large or args.tools_given)
    ]


def notes(args: argparse.Namespace, workload: Workload) -> list[str]:
    """What a workload's table does not say by itself."""
    lines = []
    if workload.key == "big4g" and not args.tools_given:
        left = [tool.label(FILE) for tool in TOOLS if not tool.large and tool.key in args.tools]
        if left:
            lines.append(f"Left out here (slow: measured on the smaller file only; name them with --tools "
                         f"to include them): {'; '.join(str(label) for label in left)}.")  # fmt: skip
    if args.no_strace:
        return lines
    if workload.kind == TREE:
        assert workload.shape is not None
        sample = thousands(sample_shape(workload.shape).files)
        lines.append(f"Syscalls/GiB come from runs of a {sample}-file sample of the same shape.")
    elif workload.size > args.strace_size:
        lines.append(f"Syscalls/GiB come from runs of a {human_size(args.strace_size)} file.")
    return lines


def setup_peers(args: argparse.Namespace, workloads: list[Workload], scratch: Path,
                cleanup: contextlib.ExitStack) -> tuple[Peers, list[str]]:  # fmt: skip
    """Find, install or build every program the chosen runs need; return
    them and the version lines for the report."""
    used = {tool for workload in workloads for tool in tools_for(args, workload)}
    keys = {tool.key for tool in used}
    wanted = {"cat": "coreutils"}
    if any(w.kind == TREE for w in workloads):
        wanted["tar"] = "tar"
    if keys & {"socat", "socat-1m"}:
        wanted["socat"] = "socat"
    if "rsync" in keys:
        wanted["rsync"] = "rsync"
    if SCP in used:
        wanted.update({"sshd": "openssh-server", "scp": "openssh-client", "ssh": "openssh-client",
                       "ssh-keygen": "openssh-client"})  # fmt: skip
    if not args.no_strace:
        wanted["strace"] = "strace"
    if REF in used:
        wanted["gcc"] = "gcc"
    peers = Peers(zcp=build_zcp())
    if "nc" in keys:
        peers.nc = ensure_openbsd_nc()
    paths = ensure_commands(wanted)
    for name in ("socat", "rsync", "tar", "cat", "strace"):
        setattr(peers, name, paths.get(name, ""))
    if REF in used:
        peers.ref = build_ref(paths["gcc"], scratch)
    if SCP in used:
        peers.ssh = SshServer(paths["sshd"], paths["scp"])
        cleanup.callback(peers.ssh.close)
    versions = [f"- zcp: {zcp_identity(peers.zcp)}"]
    if peers.nc:
        versions.append(f"- nc: {netcat_banner(peers.nc)}")
    for name in ("socat", "rsync", "ssh", "tar", "strace", "gcc"):
        if name in paths:
            versions.append(f"- {name}: {tool_version(paths[name])}")
    return peers, versions


def header(args: argparse.Namespace, load_before: str, began: float, places: list[str],
           versions: list[str]) -> list[str]:  # fmt: skip
    strace = "" if args.no_strace else ", then 1 untimed run with both ends under `strace -c -f` (syscalls)"
    minutes = (time.monotonic() - began) / 60
    return [
        "# zcp benchmark suite: zcp and its peers on 127.0.0.1",
        "",
        *machine_lines(),
        f"- RAM: {memory_total()}; load average (1 / 5 / 15 min): {load_before} before, {load_average()} after",
        *places,
        f"- runs: 1 warm-up and {args.runs} measured per tool, tools interleaved round-robin, medians shown"
        f"{strace}; every output checked (size and SHA-256, or every file of the tree)",
        *versions,
        f"- command: `{' '.join(['bench/run.sh', *args.argv])}`, {minutes:.1f} minutes in all",
        "",
    ]


METHOD = [
    "Seconds run from sender start until every process of both ends has exited (for rsync and scp: "
    "until the daemon has reaped its transfer processes). CPU is user+system time of every process "
    "of each end per GiB of payload: the sender is zcp send, the C reference, nc, socat, tar c + nc, "
    "the rsync client or scp + ssh; the receiver is zcp recv, nc -l (+ tar x), socat, or the growth "
    "of the rsync daemon's or sshd's time with its reaped children (/proc, 10 ms ticks). `cat` "
    "feeding the pipe workload is timed but not counted. Peak RSS is the largest process of each "
    "end over the measured runs (a daemon: the largest of it and its children). Syscalls/GiB is the "
    "total of both ends' `strace -c -f` counts in the extra run, per GiB of payload. On loopback the "
    "sender is charged for most of the TCP receive work.",
]


def report(args, workloads, results: list[SuiteRun], head: list[str]) -> tuple[str, str, bool]:
    """(markdown, svg, every run ok)."""
    rows: suitereport.Rows = {}
    sections, panels = [], []
    for workload in workloads:
        own = [suitereport.summarize(workload, tool, results) for tool in tools_for(args, workload)]
        rows.update({(workload.key, row.tool.key): row for row in own})
        sections += [f"## {workload.title} ({workload.key})", "", *suitereport.table(own), ""]
        sections += [line for note in notes(args, workload) for line in (note, "")]
        panels.append(suitereport.panel(workload, own))
    lines = head + METHOD + ["", "## Targets", ""] + suitereport.target_lines(rows, workloads) + [""]
    lines += [f"![throughput per tool and workload]({args.svg.name})", ""] + sections
    lines += suitereport.failure_lines(results)
    subtitle = f"127.0.0.1, {cpu_model()} × {os.cpu_count()}, median of {args.runs} after a warm-up, {utc_now()}"
    svg = chart("zcp benchmark suite: throughput per tool", subtitle, panels)
    return "\n".join(lines) + "\n", svg, all(r.ok for r in results)


def run_suite(args: argparse.Namespace, children: Children, cleanup: contextlib.ExitStack) -> int:
    began = time.monotonic()
    load_before = load_average()
    workloads = workloads_of(args)
    scratch = session.remove_later(cleanup, bigfile.make_workdir(args.dir), args.keep)
    peers, versions = setup_peers(args, workloads, scratch, cleanup)
    bench = Bench(peers, children, scratch)
    files = [w for w in workloads if w.kind != TREE]
    needed = needed_bytes(files, args.strace_size)
    if files and shutil.disk_usage(scratch).free < needed:
        raise BenchError(f"{scratch} has too little free space: the file workloads need {human_size(needed)}")
    mount, fstype, device = filesystem_of(scratch)
    places = [f"- file workloads: source and output on {fstype} ({device} on {mount}), {scratch}"] if files else []
    sources: dict[int, Data] = {}
    results: list[SuiteRun] = []
    for workload in workloads:
        tools = tools_for(args, workload)
        if workload.kind == TREE:
            assert workload.shape is not None
            tmpfs = not args.no_tmpfs and os.geteuid() == 0
            # the source, its sample, and one output at a time (or all of them)
            copies = 3 if tmpfs else 2 + len(tools) * (args.runs + 2)
            workspace = Workspace(args.dir, not args.no_tmpfs, workload.shape, copies)
            cleanup.callback(workspace.close, args.keep)
            places.append(f"- tree workload: {workspace.describe()}")
            data = tree_data(workspace.root, workload.shape, keep_outputs=not tmpfs)
        else:
            data = file_data(scratch, workload.size, args.strace_size, sources)
        log(f"workload {workload.key}: {workload.title}, {len(tools)} tools")
        results += run_workload(bench, workload, data, tools, args.runs, not args.no_strace)
    text, svg, ok = report(args, workloads, results, header(args, load_before, began, places, versions))
    print(text, end="")
    for path, content in ((args.out, text), (args.svg, svg)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    log(f"report written to {args.out}, chart to {args.svg}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return session.run(lambda children, cleanup: run_suite(args, children, cleanup))
