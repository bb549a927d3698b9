"""The "tree" case: many small files over 127.0.0.1 into a new directory.

Owns the three tools' transfers of the source tree (zcp recv + zcp send -r;
`tar c | nc -N` into `nc -l | tar x`; `rsync -a -W` to an rsync daemon),
timing each from sender start until every process of both ends is done, the
CPU of both ends (wait4 for launched processes, /proc for the daemon), the
check of every output, N runs interleaved round-robin without warm-up, and
the markdown report with files/s and zcp's ratios to tar|nc and rsync."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import LOOPBACK, MiB, RunError, log, machine_lines, median, ratio_cell, thousands
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
from .daemons import RsyncDaemon
from .tools import RECURSIVE_UNSUPPORTED, netcat_banner, version_line, zcp_identity
from .treedata import TREE_NAME, TreeShape, Workspace, generate_tree, tree_paths, verify_tree


@dataclass(frozen=True)
class TreeTool:
    key: str  # output directory names
    label: str  # shown in the table


ZCP = TreeTool("zcp", "zcp send -r → zcp recv (sha256 verified)")
TARNC = TreeTool("tarnc", "tar c | nc -N → nc -l | tar x")
RSYNC = TreeTool("rsync", "rsync -a -W → rsync daemon")
TOOLS = (ZCP, TARNC, RSYNC)


@dataclass
class TreeSetup:
    """Everything a run needs that does not change between runs."""

    zcp: Path
    zcp_trees: bool  # whether this zcp build has send -r
    nc: str
    tar: str
    rsync: str
    daemon: RsyncDaemon
    workspace: Workspace
    shape: TreeShape
    manifest: dict[str, bytes]
    dirs: set[str]
    children: Children

    @property
    def source(self) -> Path:
        return self.workspace.root / "src" / TREE_NAME

    def output(self, tool: TreeTool, run_no: int) -> Path:
        return self.workspace.root / "out" / f"{tool.key}-{run_no}"

    def run_timeout_s(self) -> float:
        # Generous: even the ext4 trap's 0.75 ms/file must not kill a run.
        return 60.0 + self.shape.files * 0.002


@dataclass
class TreeRun:
    tool: TreeTool
    run_no: int
    wall_s: float = 0.0
    send_cpu_s: float = 0.0
    recv_cpu_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def connect_pipe(children: Children, left: list[str], right: list[str]) -> tuple[Child, Child]:
    """Start `left | right` (each reaped on its own, for its own CPU time)."""
    read_end, write_end = os.pipe()
    try:
        first = children.spawn(left, stdout=write_end)
        second = children.spawn(right, stdin=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    return first, second


def finish(setup: TreeSetup, run: TreeRun, senders: list[Child], receivers: list[Child], started: float) -> None:
    """Reap senders, then receivers (given a short grace if a sender
    failed); record wall time, CPU and failures."""
    everyone = senders + receivers
    with Watchdog(setup.run_timeout_s(), everyone) as watchdog:
        for child in senders:
            child.reap()
        if all(child.exit_code == 0 for child in senders):
            for child in receivers:
                child.reap()
        else:
            with Watchdog(RECEIVER_GRACE_S, receivers):
                for child in receivers:
                    child.reap()
    run.wall_s = time.perf_counter() - started
    run.send_cpu_s = sum(child.cpu_s for child in senders)
    run.recv_cpu_s = sum(child.cpu_s for child in receivers)
    if watchdog.fired:
        run.problems.append(f"timed out after {setup.run_timeout_s():.0f} s and was killed")
    run.problems += [child.failure() for child in everyone if child.exit_code != 0]


def run_zcp(setup: TreeSetup, run: TreeRun, out: Path) -> None:
    if not setup.zcp_trees:
        raise RunError(RECURSIVE_UNSUPPORTED)
    zcp = str(setup.zcp)
    receiver = setup.children.spawn([zcp, "recv", "-q", "-l", f"{LOOPBACK}:0", str(out)])
    port = announced_port(receiver.first_stderr_line(READY_TIMEOUT_S))
    started = time.perf_counter()
    sender = setup.children.spawn([zcp, "send", "-q", "-r", str(setup.source), f"{LOOPBACK}:{port}"])
    finish(setup, run, [sender], [receiver], started)


def run_tarnc(setup: TreeSetup, run: TreeRun, out: Path) -> None:
    port = free_port()
    nc_recv, tar_x = connect_pipe(
        setup.children, [setup.nc, "-l", LOOPBACK, str(port)], [setup.tar, "x", "-C", str(out)]
    )
    wait_until_listening(port, nc_recv)
    started = time.perf_counter()
    tar_c, nc_send = connect_pipe(
        setup.children,
        [setup.tar, "c", "-C", str(setup.source.parent), TREE_NAME],
        [setup.nc, "-N", LOOPBACK, str(port)],
    )
    finish(setup, run, [tar_c, nc_send], [nc_recv, tar_x], started)


def run_rsync(setup: TreeSetup, run: TreeRun, out: Path) -> None:
    daemon = setup.daemon
    before = daemon.cpu_s()
    started = time.perf_counter()
    target = daemon.url(out.relative_to(setup.workspace.root).as_posix())
    client = setup.children.spawn([setup.rsync, "-a", "-W", str(setup.source), target])
    finish(setup, run, [client], [], started)
    if not daemon.settle(setup.run_timeout_s()):
        run.problems.append("the rsync daemon's transfer processes did not end")
    run.wall_s = time.perf_counter() - started
    run.recv_cpu_s = daemon.cpu_s() - before
    if not run.ok:
        run.problems.append(daemon.log_tail())


def prepare(
    zcp: Path, zcp_trees: bool, nc: str, tar: str, rsync: str,
    workspace: Workspace, shape: TreeShape, children: Children,
) -> TreeSetup:  # fmt: skip
    """Generate the source tree in the workspace. The rsync daemon serving
    the workspace is the caller's to start and stop (setup.daemon)."""
    log(f"generating the source tree ({shape.describe()}) in {workspace.root}")
    began = time.perf_counter()
    (workspace.root / "src").mkdir()
    manifest = generate_tree(workspace.root / "src" / TREE_NAME, shape)
    os.sync()
    log(f"generated in {time.perf_counter() - began:.1f} s")
    dirs, _ = tree_paths(shape)
    daemon = RsyncDaemon(rsync, workspace.root)
    return TreeSetup(zcp, zcp_trees, nc, tar, rsync, daemon, workspace, shape, manifest, set(dirs), children)


RUNNERS = {ZCP: run_zcp, TARNC: run_tarnc, RSYNC: run_rsync}


def run_once(setup: TreeSetup, tool: TreeTool, run_no: int) -> TreeRun:
    """One copy of the tree by one tool into a new directory, then checks."""
    run = TreeRun(tool, run_no)
    out = setup.output(tool, run_no)
    out.mkdir(parents=True)
    try:
        RUNNERS[tool](setup, run, out)
    except RunError as error:
        run.problems.append(str(error))
    finally:
        setup.children.stop_all()
    if run.problems == [RECURSIVE_UNSUPPORTED]:
        return run
    # Flush this run's dirty pages now rather than during the next run.
    os.sync()
    run.problems += verify_tree(out, setup.manifest, setup.dirs)
    return run


def run_all(setup: TreeSetup, runs: int) -> list[TreeRun]:
    """`runs` rounds, each tool once per round; no warm-up."""
    results: list[TreeRun] = []
    for run_no in range(1, runs + 1):
        for tool in TOOLS:
            if tool is ZCP and not setup.zcp_trees and run_no > 1:
                continue
            run = run_once(setup, tool, run_no)
            results.append(run)
            rate = setup.shape.files / run.wall_s if run.wall_s else 0.0
            verdict = "ok" if run.ok else "FAIL: " + "; ".join(run.problems)
            log(f"tree run {run_no}/{runs}  {tool.label:<42} {run.wall_s:6.2f} s {rate:8.0f} files/s  {verdict}")
    return results


# --------------------------------------------------------------------------
# Report


def tree_report(setup: TreeSetup, runs: int, results: list[TreeRun]) -> tuple[str, bool]:
    """The markdown section for the tree case, and whether every run succeeded."""
    files = setup.shape.files
    good = {tool: [r for r in results if r.tool is tool and r.ok] for tool in TOOLS}
    seconds = {tool: median([r.wall_s for r in good[tool]]) for tool in TOOLS}
    rate = {tool: (files / s if s else None) for tool, s in seconds.items()}
    cpu = {tool: median([r.send_cpu_s + r.recv_cpu_s for r in good[tool]]) for tool in TOOLS}
    lines = [
        "# zcp vs tar|nc and rsync: many small files on 127.0.0.1",
        "",
        *machine_lines(),
        f"- tree: {setup.shape.describe()} ({setup.shape.payload / MiB:.1f} MiB, random contents), "
        "generated once; each run copies it into a new directory",
        f"- file system (source and outputs): {setup.workspace.describe()}",
        f"- runs: {runs} per tool, no warm-up, tools interleaved round-robin; medians shown; "
        "outputs kept until the end of the benchmark",
        f"- zcp: {zcp_identity(setup.zcp)}",
        f"- nc: {netcat_banner(setup.nc)}; tar: {version_line(setup.tar)}; rsync: {version_line(setup.rsync)}",
        "",
        "| tool | ok runs | seconds median (min–max) | files/s | CPU-s send + recv | "
        "files/s vs tar\\|nc | files/s vs rsync | CPU-s vs tar\\|nc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool in TOOLS:
        own = [r for r in results if r.tool is tool]
        walls = [r.wall_s for r in good[tool]]
        label = tool.label.replace("|", "\\|")
        if len(good[tool]) < len(own):
            label = f"**FAIL** {label}"
        if not walls:
            why = own[0].problems[0].replace("|", "\\|") if own and own[0].problems else "not run"
            lines.append(f"| {label} | 0 of {len(own)} | FAIL: {why} | " + " | ".join(["–"] * 5) + " |")
            continue
        send = median([r.send_cpu_s for r in good[tool]])
        recv = median([r.recv_cpu_s for r in good[tool]])
        cells = [
            label,
            f"{len(walls)} of {len(own)}",
            f"{seconds[tool]:.2f} ({min(walls):.2f}–{max(walls):.2f})",
            thousands(rate[tool]),
            f"{send:.2f} + {recv:.2f} = {cpu[tool]:.2f}",
            ratio_cell(rate[tool], rate[TARNC]),
            ratio_cell(rate[tool], rate[RSYNC]),
            ratio_cell(cpu[tool], cpu[TARNC]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Seconds run from sender start until every process of both ends has exited (for rsync: "
        "until the daemon has reaped its transfer processes). CPU-s is user+system time: sender = "
        "zcp send, tar c + nc, or the rsync client; receiver = zcp recv, nc -l + tar x, or the "
        "growth of the rsync daemon's own and reaped children's time (/proc, 10 ms ticks). "
        "Every output was checked: exactly the source's directories and files, each file's SHA-256.",
        "",
        f"zcp files/s: {ratio_cell(rate[ZCP], rate[TARNC])} tar|nc, {ratio_cell(rate[ZCP], rate[RSYNC])} rsync",
    ]
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", f"FAIL: {len(failed)} run(s) failed:"]
        lines += [f"- {r.tool.label} (run {r.run_no}): " + "; ".join(r.problems) for r in failed]
    return "\n".join(lines) + "\n", not failed
