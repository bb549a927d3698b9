"""Command line and order of work of bench/compare.sh: parse the switches,
set up the tools, run the chosen cases (big file, many small files,
--limit, --resume, -P, or all but --resume and -P), print and save the
report. Everything set up is registered with the session (see session),
which cleans up on every path out."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from . import bigfile, bigreport, limit, parallel, resume, session, tree
from .common import GiB, KiB, MiB, REPO, log, parse_size, positive_int
from .procs import Children
from .tools import RECURSIVE_UNSUPPORTED, build_zcp, ensure_command, ensure_openbsd_nc, zcp_sends_trees
from .treedata import TreeShape, Workspace

DEFAULT_OUT = REPO / "bench" / "results-latest.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/compare.sh",
        description="Compare zcp with its peers on 127.0.0.1. Case 'big': one large file, zcp variants "
        "vs OpenBSD nc (throughput, CPU per GiB, peak RSS). Case 'tree': many small files, "
        "zcp send -r vs tar|nc and rsync to an rsync daemon (seconds, files/s, CPU). "
        "Case 'limit': zcp send --limit, achieved rate against the limit. "
        "Case 'resume': zcp send --resume after a break at half way, against a fresh copy "
        "(not part of 'all': it moves a 4 GiB file 4 ways per round). "
        "Case 'parallel': zcp send -P N against one stream, nc and rsync to an rsync daemon "
        "(not part of 'all': it moves a 4 GiB file 7 ways per round). "
        "Set ZCP_BIN to skip the cargo build.",
    )
    parser.add_argument(
        "--case",
        choices=("big", "tree", "limit", "resume", "parallel", "all"),
        default="all",
        help="which cases to run (default all: big, tree and limit)",
    )
    parser.add_argument("--runs", type=positive_int, default=3, help="measured runs per case (default 3)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="create the work directories here (default: $TMPDIR or /tmp)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"also write the report here (default {DEFAULT_OUT.relative_to(REPO)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directories (and tmpfs mount)")
    big = parser.add_argument_group("big case")
    big.add_argument("--size", type=parse_size, default=GiB, help="test file size (default 1G)")
    small = parser.add_argument_group("tree case")
    small.add_argument("--files", type=positive_int, default=100_000, help="files in the tree (default 100000)")
    small.add_argument("--dirs", type=positive_int, default=100, help="directories they are spread over (default 100)")
    small.add_argument("--file-size", type=parse_size, default=4 * KiB, help="size of each file (default 4K)")
    small.add_argument(
        "--no-tmpfs",
        action="store_true",
        help="keep the tree on disk (in --dir) even when root could mount a tmpfs",
    )
    paced = parser.add_argument_group("limit case")
    paced.add_argument(
        "--limit-size", type=parse_size, default=limit.DEFAULT_SIZE, help="test file size (default 512M)"
    )
    paced.add_argument(
        "--limits",
        type=limit.parse_limits,
        default=limit.parse_limits(limit.DEFAULT_LIMITS),
        help=f"comma-separated --limit rates, bytes per second (default {limit.DEFAULT_LIMITS})",
    )
    resumed = parser.add_argument_group("resume case")
    resumed.add_argument(
        "--resume-size",
        type=resume.parse_resume_size,
        default=resume.DEFAULT_SIZE,
        help=f"test file size (default 4G, at least {resume.MIN_SIZE // MiB}M)",
    )
    streams = parser.add_argument_group("parallel case")
    streams.add_argument(
        "--parallel-size",
        type=parallel.parse_parallel_size,
        default=parallel.DEFAULT_SIZE,
        help=f"test file size (default 4G, at least {parallel.MIN_SIZE // MiB}M)",
    )
    args = parser.parse_args(argv)
    if args.dirs > args.files:
        parser.error("--dirs must not exceed --files")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return session.run(lambda children, cleanup: run_cases(args, children, cleanup))


def run_cases(args: argparse.Namespace, children: Children, cleanup: contextlib.ExitStack) -> int:
    """Run the chosen cases; print and save the report; 0 if every run
    succeeded. Everything set up is registered on `cleanup`."""
    zcp = build_zcp()
    nc = ensure_openbsd_nc()
    sections: list[str] = []
    all_ok = True

    def workdir() -> Path:
        return session.remove_later(cleanup, bigfile.make_workdir(args.dir), args.keep)

    if args.case in ("big", "all"):
        big_dir = workdir()
        source, digest = bigfile.prepare_data(args, big_dir)
        setup = bigfile.Setup(zcp, nc, big_dir, source, args.size, digest, children)
        results = bigfile.run_all(setup, args.runs)
        text, ok = bigreport.report(setup, args.runs, results)
        sections.append(text)
        all_ok &= ok
    if args.case in ("limit", "all"):
        limit_setup, cases, limit_dir = limit.prepare(args, zcp, nc, children)
        session.remove_later(cleanup, limit_dir, args.keep)
        results = limit.run_all(limit_setup, cases, args.runs)
        text, ok = limit.report(limit_setup, cases, args.runs, results)
        sections.append(text)
        all_ok &= ok
    if args.case == "resume":
        resume_setup = resume.prepare(args, workdir(), zcp, nc, children)
        results = resume.run_all(resume_setup, args.runs)
        text, ok = resume.report(resume_setup, args.runs, results)
        sections.append(text)
        all_ok &= ok
    if args.case == "parallel":
        rsync = ensure_command("rsync", "rsync")
        parallel_setup = parallel.prepare(args, workdir(), zcp, nc, rsync, children)
        results = parallel.run_all(parallel_setup, args.runs)
        text, ok = parallel.report(parallel_setup, args.runs, results)
        sections.append(text)
        all_ok &= ok
    if args.case in ("tree", "all"):
        tar = ensure_command("tar", "tar")
        rsync = ensure_command("rsync", "rsync")
        zcp_trees = zcp_sends_trees(zcp)
        if not zcp_trees:
            log(f"{RECURSIVE_UNSUPPORTED} (`zcp send --help` does not mention --recursive): "
                "measuring the peers only, the zcp row will FAIL")  # fmt: skip
        shape = TreeShape(args.files, args.dirs, args.file_size)
        workspace = Workspace(args.dir, not args.no_tmpfs, shape, 1 + len(tree.TOOLS) * args.runs)
        cleanup.callback(workspace.close, args.keep)
        log(f"tree case file system: {workspace.describe()}")
        if workspace.fstype == "ext4":
            log("note: on journal-less ext4, creating many files soon after deleting many is slow")
        tree_setup = tree.prepare(zcp, zcp_trees, nc, tar, rsync, workspace, shape, children)
        cleanup.callback(tree_setup.daemon.stop)
        tree_setup.daemon.start()
        results = tree.run_all(tree_setup, args.runs)
        text, ok = tree.tree_report(tree_setup, args.runs, results)
        sections.append(text)
        all_ok &= ok
    text = "\n".join(sections)
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"report written to {args.out}")
    return 0 if all_ok else 1
