"""The suite's workloads and runs.

A Workload is what is moved: one file (the "big1g" and "big4g" workloads),
a file read through `cat FILE |` ("pipe"), or a tree of small files
("tree"). Its Data is the source, generated once (a pseudo-random file,
fsynced and hashed, hence page-cached; or a tree with a manifest of every
file's SHA-256, on a tmpfs when root) and where the outputs go, plus a
smaller sample of the same kind: a file of at most --strace-size bytes
(1 GiB), or 1/TREE_SAMPLE of the tree. The syscall-count run moves the sample (under
strace the tools that make hundreds of thousands of calls per GiB slow
down 10-100 times; the calls scale with the bytes or files), and so do the
timed runs of tools too slow for the whole tree (scp -r).

run_workload() runs every tool on one workload: a warm-up round, N
measured rounds with the tools interleaved, then one untimed round with
both ends under `strace -c -f`. A run times sender start until every
process of both ends has exited (for a daemon: until it has reaped its
transfer processes), records each end's CPU (user+sys, from wait4; a
daemon's growth from /proc) and peak RSS, checks the output (size and
SHA-256, or the whole tree) and deletes it, then syncs."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import bigfile
from .common import GiB, MiB, RunError, human_size, log, thousands
from .procs import RECEIVER_GRACE_S, Children, Watchdog
from .suitetools import FILE, PIPE, TREE, Launch, Peers, Tool
from .syscalls import total_calls
from .treedata import TREE_NAME, TreeShape, generate_tree, tree_paths, verify_tree

WARMUP, MEASURED, STRACE = "warm-up", "measured", "strace"
# The syscall-count run of a tree (and every run of a tool marked
# tree_sample) moves 1/TREE_SAMPLE of its files.
TREE_SAMPLE = 20
# How much longer a run may take under strace before it counts as hung.
STRACE_SLOWDOWN = 4


@dataclass(frozen=True)
class Workload:
    key: str  # what --only names
    kind: str  # FILE, PIPE or TREE
    size: int  # bytes of payload (a tree: all its files' bytes)
    shape: TreeShape | None = None

    @property
    def files(self) -> int:
        return self.shape.files if self.shape else 1

    @property
    def title(self) -> str:
        if self.kind == TREE:
            assert self.shape is not None
            return f"tree: {self.shape.describe()}"
        if self.kind == PIPE:
            return f"stdin pipe: cat of a {human_size(self.size)} file"
        return f"{human_size(self.size)} file"

    def timeout_s(self) -> float:
        """Generous: a hang has to end a run, a slow tool must not."""
        if self.kind == TREE:
            return 120.0 + self.files * 0.005
        return 60.0 + self.size / (8 * MiB)


@dataclass
class Data:
    """A source, how outputs are checked, and where they go."""

    source: Path  # a file, or the tree's directory
    root: Path  # holds the outputs (what an rsync daemon serves)
    size: int  # bytes of payload
    files: int = 1
    digest: str = ""  # a file's SHA-256
    manifest: dict[str, bytes] = field(default_factory=dict)  # a tree's
    dirs: set[str] = field(default_factory=set)
    keep_outputs: bool = False  # a tree on ext4: see treedata's ext4 trap
    sample: Data | None = None  # the smaller source (None: this one)

    @property
    def is_tree(self) -> bool:
        return bool(self.manifest)

    def check(self, outdir: Path) -> list[str]:
        if self.is_tree:
            return verify_tree(outdir, self.manifest, self.dirs)
        return bigfile.check_file(outdir / self.source.name, self.size, self.digest)

    def for_run(self, tool: Tool, phase: str) -> Data:
        """What `tool` moves in a `phase` run: the sample or all of it."""
        sampled = phase == STRACE or (self.is_tree and tool.tree_sample)
        return self.sample if sampled and self.sample is not None else self


@dataclass
class SuiteRun:
    """What one run of one tool on one workload measured."""

    workload: Workload
    tool: Tool
    phase: str  # WARMUP, MEASURED or STRACE
    moved: int = 0  # bytes of payload (the sample's, if it moved the sample)
    files: int = 1
    wall_s: float = 0.0
    send_cpu_s: float = 0.0
    recv_cpu_s: float = 0.0
    send_rss_kib: int = 0
    recv_rss_kib: int = 0
    syscalls: int | None = None  # both ends, on the STRACE run
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def rate(self) -> float:
        """GiB/s, or files/s for a tree."""
        if not self.wall_s:
            return 0.0
        if self.workload.kind == TREE:
            return self.files / self.wall_s
        return self.moved / GiB / self.wall_s


@dataclass
class Bench:
    """What every run needs: the programs, the children, a temp dir for
    strace summaries."""

    peers: Peers
    children: Children
    scratch: Path
    count: int = 0  # runs so far, for unique output names

    def next_outdir(self, data: Data, tool: Tool) -> Path:
        self.count += 1
        outdir = data.root / "out" / f"{tool.key}-{self.count}"
        outdir.mkdir(parents=True)
        return outdir


def reap_all(launch: Launch, workload: Workload, timeout: float, run: SuiteRun) -> None:
    """Reap the sending end, then the receiving end (given a short grace
    if a sender failed), then wait for the daemon's transfer processes."""
    senders = launch.helpers + launch.senders
    everyone = senders + launch.receivers
    with Watchdog(timeout, everyone) as watchdog:
        for child in senders:
            child.reap()
        if all(child.exit_code == 0 for child in senders):
            for child in launch.receivers:
                child.reap()
        else:
            with Watchdog(RECEIVER_GRACE_S, launch.receivers):
                for child in launch.receivers:
                    child.reap()
    if launch.daemon is not None and not launch.daemon.settle(timeout):
        run.problems.append(f"the {launch.daemon.name}'s transfer processes did not end")
    if watchdog.fired:
        run.problems.append(f"timed out after {timeout:.0f} s and was killed")
    run.problems += [child.failure() for child in everyone if child.exit_code != 0]


def transfer(bench: Bench, workload: Workload, data: Data, tool: Tool, run: SuiteRun, outdir: Path) -> None:
    """Start, time and account one transfer; count its calls if traced."""
    trace_dir = Path(tempfile.mkdtemp(prefix="strace-", dir=bench.scratch)) if run.phase == STRACE else None
    launch = Launch(bench.peers, bench.children, workload.kind, data.source, outdir, data.root, trace_dir)
    timeout = workload.timeout_s() * (STRACE_SLOWDOWN if trace_dir else 1)
    try:
        start_sender = tool.start(tool, launch)
        before = launch.daemon.cpu_s() if launch.daemon else 0.0
        started = time.perf_counter()
        start_sender()
        reap_all(launch, workload, timeout, run)
        run.wall_s = time.perf_counter() - started
        if launch.daemon is not None:
            run.recv_cpu_s = launch.daemon.cpu_s() - before
            if not run.ok:
                run.problems.append(launch.daemon.log_tail())
    finally:
        bench.children.stop_all()
        if launch.daemon is not None:
            launch.daemon.stop()
    run.send_cpu_s = sum(child.cpu_s for child in launch.senders)
    run.recv_cpu_s += sum(child.cpu_s for child in launch.receivers)
    run.send_rss_kib = max((child.maxrss_kib for child in launch.senders), default=0)
    recv_rss = [child.maxrss_kib for child in launch.receivers]
    if launch.daemon is not None:
        recv_rss.append(launch.daemon.peak_rss_kib)
    run.recv_rss_kib = max(recv_rss, default=0)
    if trace_dir is not None:
        try:
            run.syscalls = sum(total_calls(summary) for summary in launch.summaries)
        finally:
            shutil.rmtree(trace_dir, ignore_errors=True)


def run_once(bench: Bench, workload: Workload, whole: Data, tool: Tool, phase: str) -> SuiteRun:
    """One transfer into a new directory, its check, and the cleanup."""
    data = whole.for_run(tool, phase)
    run = SuiteRun(workload, tool, phase, data.size, data.files)
    outdir = bench.next_outdir(data, tool)
    try:
        transfer(bench, workload, data, tool, run, outdir)
    except RunError as error:
        run.problems.append(str(error))
    run.problems += data.check(outdir)
    if not data.keep_outputs:
        # Deleted before it is written back: the next run neither competes
        # with this one's writeback nor finds the source out of the cache.
        shutil.rmtree(outdir, ignore_errors=True)
    os.sync()
    return run


def describe(run: SuiteRun) -> str:
    unit = "files/s" if run.workload.kind == TREE else "GiB/s"
    rate = f"{run.rate():8.0f}" if run.workload.kind == TREE else f"{run.rate():6.2f}"
    label = run.tool.label(run.workload.kind) or run.tool.key
    extra = f"  {run.syscalls} calls" if run.syscalls is not None else ""
    if run.moved != run.workload.size:
        moved = f"{thousands(run.files)} files" if run.files > 1 else human_size(run.moved)
        extra += f"  (sample: {moved})"
    return f"{run.workload.key:>6} {run.phase:>8}  {label:<46} {run.wall_s:7.2f} s {rate} {unit}{extra}"


def run_workload(bench: Bench, workload: Workload, data: Data, tools: list[Tool], runs: int,
                 count_calls: bool) -> list[SuiteRun]:  # fmt: skip
    """A warm-up round, `runs` measured rounds (each tool once per round,
    interleaved), then one strace round unless `count_calls` is off."""
    phases = [WARMUP] + [MEASURED] * runs + ([STRACE] if count_calls else [])
    began = time.perf_counter()
    results: list[SuiteRun] = []
    for phase in phases:
        for tool in tools:
            run = run_once(bench, workload, data, tool, phase)
            results.append(run)
            verdict = "ok" if run.ok else "FAIL: " + "; ".join(run.problems)
            log(f"{describe(run)}  {verdict}")
    log(f"workload {workload.key} done in {time.perf_counter() - began:.0f} s")
    return results


# --------------------------------------------------------------------------
# Sources


def file_data(workdir: Path, size: int, sample_size: int, sources: dict[int, Data]) -> Data:
    """The pseudo-random source file of `size` bytes in `workdir`, made
    (and hashed, which pulls it into the page cache) on first use, with its
    sample of `sample_size` bytes for the syscall-count run if smaller."""
    if size not in sources:
        source = workdir / f"source-{size}.bin"
        log(f"generating a {human_size(size)} test file in {workdir}")
        bigfile.generate_source(source, size)
        sources[size] = Data(source, workdir, size, digest=bigfile.sha256_file(source))
    data = sources[size]
    if size > sample_size and data.sample is None:
        data.sample = file_data(workdir, sample_size, sample_size, sources)
    return data


def make_tree(root: Path, name: str, shape: TreeShape, keep_outputs: bool) -> Data:
    """Generate a tree under `root`/`name`/TREE_NAME; outputs go to `root`/out."""
    log(f"generating the {name} tree ({shape.describe()}) in {root}")
    began = time.perf_counter()
    (root / name).mkdir()
    manifest = generate_tree(root / name / TREE_NAME, shape)
    os.sync()
    log(f"generated in {time.perf_counter() - began:.1f} s")
    dirs, _ = tree_paths(shape)
    source = root / name / TREE_NAME
    return Data(source, root, shape.payload, shape.files, manifest=manifest, dirs=set(dirs), keep_outputs=keep_outputs)


def sample_shape(shape: TreeShape) -> TreeShape:
    """1/TREE_SAMPLE of the files (at least one per directory, at most all)."""
    files = min(shape.files, max(shape.files // TREE_SAMPLE, shape.dirs))
    return TreeShape(files, shape.dirs, shape.file_size)


def tree_data(root: Path, shape: TreeShape, keep_outputs: bool) -> Data:
    """The source tree and its sample, both under `root`."""
    data = make_tree(root, "src", shape, keep_outputs)
    data.sample = make_tree(root, "sample", sample_shape(shape), keep_outputs)
    return data


def needed_bytes(workloads: list[Workload], sample_size: int) -> int:
    """Disk for the file workloads: each distinct source and sample, plus
    the largest once more for the one output that exists at a time."""
    sizes = {w.size for w in workloads if w.kind in (FILE, PIPE)}
    sizes |= {sample_size for size in sizes if size > sample_size}
    return sum(sizes) + max(sizes, default=0) + 256 * MiB
