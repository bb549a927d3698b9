"""The suite's tools (its table rows) and how each one is started to move
a workload over 127.0.0.1.

A Tool names its row for each kind of workload it takes part in (one file,
a stdin pipe, a tree of small files) and has a start function: it starts
the receiving end (or a fresh daemon: rsync, sshd) and returns a function
that starts the sending end, which the caller times.

A Launch is one transfer being started. It spawns each end's processes,
on the syscall-count run each under `strace -c -f` with its own summary
file; feeds the sender the workload (the file itself, `cat FILE |` or
`tar c DIR |`), points the receiver at the output (a file, or `| tar x`),
and remembers which process belongs to which end. `cat` feeding a pipe is
the workload, not the tool: it is timed with the sender but its CPU,
memory and calls are not counted."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .common import LOOPBACK, BenchError, RunError
from .daemons import Daemon, RsyncDaemon, SshServer
from .procs import READY_TIMEOUT_S, Child, Children, announced_port, free_port, wait_until_listening
from .syscalls import strace_argv

SEND, RECV = "send", "recv"
FILE, PIPE, TREE = "file", "pipe", "tree"


@dataclass
class Peers:
    """Paths of the programs the tools run, found, installed or built once."""

    zcp: Path
    nc: str = ""
    socat: str = ""
    rsync: str = ""
    tar: str = ""
    cat: str = ""
    strace: str = ""
    ref: Path | None = None
    ssh: SshServer | None = None


@dataclass
class Launch:
    """One transfer: `source` (a file or a tree's directory) of a `kind`
    of workload into `outdir`, below `root` (what an rsync daemon serves)."""

    peers: Peers
    children: Children
    kind: str
    source: Path
    outdir: Path
    root: Path
    trace_dir: Path | None = None  # set on the syscall-count run
    senders: list[Child] = field(default_factory=list)
    receivers: list[Child] = field(default_factory=list)
    helpers: list[Child] = field(default_factory=list)  # timed, not counted (cat)
    daemon: Daemon | None = None
    summaries: list[Path] = field(default_factory=list)

    @property
    def out_file(self) -> Path:
        """Where a file or pipe workload lands (named as its source)."""
        return self.outdir / self.source.name

    def _summary(self, end: str) -> Path:
        assert self.trace_dir is not None
        path = self.trace_dir / f"{end}-{len(self.summaries)}.strace"
        self.summaries.append(path)
        return path

    def spawn(self, end: str, argv: list[str], counted: bool = True, **kwargs) -> Child:
        """Start one process of `end` (SEND or RECV); `counted` ones are
        charged to the tool (and run under strace on the syscall run)."""
        name = f"{Path(argv[0]).name} {argv[1]}"
        if counted and self.trace_dir is not None:
            argv = strace_argv(self.peers.strace, self._summary(end)) + argv
        child = self.children.spawn(argv, name=name, **kwargs)
        if not counted:
            self.helpers.append(child)
        else:
            (self.senders if end == SEND else self.receivers).append(child)
        return child

    def connect(self, end: str, left: list[str], right: list[str], left_counted: bool = True) -> tuple[Child, Child]:
        """Start `left | right`, both of `end`."""
        read_end, write_end = os.pipe()
        try:
            first = self.spawn(end, left, counted=left_counted, stdout=write_end)
            second = self.spawn(end, right, stdin=read_end)
        finally:
            os.close(read_end)
            os.close(write_end)
        return first, second

    def spawn_fed(self, argv: list[str]) -> Child:
        """Start the sender `argv`, reading the workload on its stdin."""
        if self.kind == FILE:
            with open(self.source, "rb") as data:
                return self.spawn(SEND, argv, stdin=data)
        if self.kind == PIPE:
            return self.connect(SEND, [self.peers.cat, str(self.source)], argv, left_counted=False)[1]
        tar = [self.peers.tar, "c", "-C", str(self.source.parent), self.source.name]
        return self.connect(SEND, tar, argv)[1]

    def spawn_sink(self, argv: list[str]) -> Child:
        """Start the receiver `argv`, whose stdout is the output."""
        if self.kind == TREE:
            return self.connect(RECV, argv, [self.peers.tar, "x", "-C", str(self.outdir)])[0]
        with open(self.out_file, "wb") as sink:
            return self.spawn(RECV, argv, stdout=sink)

    def start_daemon(self, daemon: Daemon) -> None:
        """Start the receiving daemon for this transfer (the caller stops it)."""
        self.daemon = daemon
        try:
            if self.trace_dir is None:
                daemon.start()
            else:
                daemon.start(self.peers.strace, self._summary(RECV))
        except BenchError as error:
            raise RunError(str(error)) from None


StartSender = Callable[[], object]


@dataclass(frozen=True)
class Tool:
    """One row: its label per kind of workload (None: not run there)."""

    key: str
    start: Callable[[Tool, Launch], StartSender]
    file: str | None = None
    pipe: str | None = None
    tree: str | None = None
    flags: tuple[str, ...] = ()
    family: str = "peer"  # "zcp", "ref" or "peer" (the chart's colours)
    large: bool = True  # runs on the large file too (unless named with --tools)
    tree_sample: bool = False  # too slow for the whole tree: its runs move the sample

    def label(self, kind: str) -> str | None:
        return {FILE: self.file, PIPE: self.pipe, TREE: self.tree}[kind]


def start_zcp(tool: Tool, launch: Launch) -> StartSender:
    zcp = str(launch.peers.zcp)
    dest = launch.outdir if launch.kind == TREE else launch.out_file
    receiver = launch.spawn(RECV, [zcp, "recv", "-q", "-l", f"{LOOPBACK}:0", *tool.flags, str(dest)])
    to = f"{LOOPBACK}:{announced_port(receiver.first_stderr_line(READY_TIMEOUT_S))}"

    def send() -> None:
        if launch.kind == PIPE:
            launch.spawn_fed([zcp, "send", "-q", *tool.flags, "-", to])
        else:
            recursive = ["-r"] if launch.kind == TREE else []
            launch.spawn(SEND, [zcp, "send", "-q", *recursive, *tool.flags, str(launch.source), to])

    return send


def start_ref(tool: Tool, launch: Launch) -> StartSender:
    ref = str(launch.peers.ref)
    receiver = launch.spawn(RECV, [ref, "recv", LOOPBACK, "0", str(launch.out_file)])
    port = str(announced_port(receiver.first_stderr_line(READY_TIMEOUT_S)))

    def send() -> None:
        if launch.kind == PIPE:
            launch.spawn_fed([ref, "send", "-", LOOPBACK, port])
        else:
            launch.spawn(SEND, [ref, "send", str(launch.source), LOOPBACK, port])

    return send


def start_nc(tool: Tool, launch: Launch) -> StartSender:
    nc, port = launch.peers.nc, free_port()
    wait_until_listening(port, launch.spawn_sink([nc, "-l", LOOPBACK, str(port)]))
    return lambda: launch.spawn_fed([nc, "-N", LOOPBACK, str(port)])


def start_socat(tool: Tool, launch: Launch) -> StartSender:
    socat, port = launch.peers.socat, free_port()
    listen = f"TCP-LISTEN:{port},bind={LOOPBACK},reuseaddr"
    wait_until_listening(port, launch.spawn_sink([socat, *tool.flags, "-u", listen, "STDOUT"]))
    return lambda: launch.spawn_fed([socat, *tool.flags, "-u", "STDIN", f"TCP:{LOOPBACK}:{port}"])


def start_rsync(tool: Tool, launch: Launch) -> StartSender:
    rsync = launch.peers.rsync
    daemon = RsyncDaemon(rsync, launch.root, quiet=True)
    launch.start_daemon(daemon)
    url = daemon.url(launch.outdir.relative_to(launch.root).as_posix())
    flags = ["-a", "-W"] if launch.kind == TREE else ["-W"]
    return lambda: launch.spawn(SEND, [rsync, *flags, str(launch.source), url])


def start_scp(tool: Tool, launch: Launch) -> StartSender:
    ssh = launch.peers.ssh
    assert ssh is not None
    launch.start_daemon(ssh)
    if launch.kind == TREE:
        argv = ssh.scp_argv("-r", str(launch.source), ssh.target(launch.outdir))
    else:
        argv = ssh.scp_argv(str(launch.source), ssh.target(launch.out_file))
    return lambda: launch.spawn(SEND, argv)


UNVERIFIED = ("--checksum", "none")
ZCP = Tool("zcp", start_zcp, "zcp (default, sha256 verified)", "cat | zcp send - (sha256 verified)",
           "zcp send -r (sha256 verified)", family="zcp")  # fmt: skip
ZCP_NONE = Tool("zcp-none", start_zcp, "zcp --checksum none", "cat | zcp send - --checksum none",
                flags=UNVERIFIED, family="zcp")  # fmt: skip
ZCP_NOZC = Tool("zcp-nozc", start_zcp, "zcp --no-zerocopy (sha256 verified)", flags=("--no-zerocopy",), family="zcp")
ZCP_BLAKE3 = Tool("zcp-blake3", start_zcp, "zcp --checksum blake3", "cat | zcp send - --checksum blake3",
                  flags=("--checksum", "blake3"), family="zcp")  # fmt: skip
REF = Tool("ref", start_ref, "C reference: sendfile → splice, no hashing",
           "cat | C reference: splice stdin → socket → file", family="ref")  # fmt: skip
NC = Tool("nc", start_nc, "OpenBSD nc -N → nc -l", "cat | nc -N → nc -l", "tar c | nc -N → nc -l | tar x")
SOCAT = Tool("socat", start_socat, "socat (default 8 KiB buffer)", "cat | socat (default buffer)",
             "tar c | socat → socat | tar x", large=False)  # fmt: skip
SOCAT_1M = Tool("socat-1m", start_socat, "socat -b1048576", "cat | socat -b1048576", flags=("-b1048576",))
RSYNC = Tool("rsync", start_rsync, "rsync -W → rsync daemon", tree="rsync -a -W → rsync daemon")
SCP = Tool("scp", start_scp, "scp → sshd (OpenSSH defaults)", tree="scp -r → sshd (OpenSSH defaults)",
           large=False, tree_sample=True)  # fmt: skip
TOOLS = (ZCP, ZCP_NONE, ZCP_NOZC, ZCP_BLAKE3, REF, NC, SOCAT, SOCAT_1M, RSYNC, SCP)
BASELINE = NC  # nc for a file and a pipe, tar | nc for a tree
