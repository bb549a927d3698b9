"""The tree case's data: where it lives, what it is, and how an output is
checked.

* Workspace: a tmpfs that this benchmark mounts (when root and RAM allows)
  or else a temp directory on disk; it holds the source tree and every
  output tree until the end of the benchmark, then is unmounted or deleted.
  Outputs are never deleted between runs: on this VM's journal-less ext4,
  creating many files within minutes of deleting many is 15-20x slower
  (see /work/shared/MEASUREMENTS.md, "the ext4 trap").
* The source tree: FILES files of FILE_SIZE random bytes (os.urandom) in
  DIRS directories, generated once, with a manifest of every file's SHA-256.
* verify_tree: an output must hold exactly the source tree (same
  directories, same files, same contents by SHA-256) and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .common import GiB, KiB, MiB, BenchError, filesystem_of, human_size, log

TREE_NAME = "tree"  # basename of the source tree: every tool recreates it
# Kernel memory per tmpfs file beyond its data pages (inode, dentry), rough.
TMPFS_OVERHEAD_PER_ENTRY = 2 * KiB
# RAM left free beyond what the tmpfs may fill.
RAM_MARGIN = 1 * GiB


@dataclass(frozen=True)
class TreeShape:
    files: int
    dirs: int
    file_size: int

    @property
    def payload(self) -> int:
        return self.files * self.file_size

    @property
    def per_dir(self) -> int:
        return -(-self.files // self.dirs)

    def allocated(self) -> int:
        """Bytes one copy occupies on a page-granular file system."""
        pages = -(-self.file_size // (4 * KiB))
        return self.files * pages * 4 * KiB + self.dirs * 4 * KiB

    def describe(self) -> str:
        return f"{self.files:,} files × {human_size(self.file_size)} in {self.dirs} directories".replace(",", " ")


def mem_available() -> int:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * KiB
    return 0


class Workspace:
    """The directory holding the source tree and all outputs."""

    def __init__(self, parent: Path | None, want_tmpfs: bool, shape: TreeShape, copies: int):
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="zcp-compare-tree-", dir=parent))
        self.mounted = False
        self.why_not_tmpfs = ""
        data = shape.allocated() * copies
        entries = (shape.files + shape.dirs + 1) * copies
        if not want_tmpfs:
            self.why_not_tmpfs = "--no-tmpfs"
        elif os.geteuid() != 0:
            self.why_not_tmpfs = "not root"
        elif data + entries * TMPFS_OVERHEAD_PER_ENTRY + RAM_MARGIN > mem_available():
            self.why_not_tmpfs = f"needs {human_size(data)} of RAM, {human_size(mem_available())} available"
        else:
            self._mount(data, entries)
        if not self.mounted:
            self._check_disk(data, entries)
        mount_point, self.fstype, self.device = filesystem_of(self.root)

    def _mount(self, data: int, entries: int) -> None:
        size_kib = (data + data // 10 + 64 * MiB) // KiB
        options = f"size={size_kib}k,nr_inodes={entries + entries // 10 + 1024},mode=0700"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "zcp-compare", str(self.root)],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode == 0:
            self.mounted = True
            self.mount_options = options
            log(f"mounted a tmpfs ({options}) on {self.root}")
        else:
            self.why_not_tmpfs = f"mount failed: {done.stderr.strip()}"
            log(f"could not mount a tmpfs, using the disk: {done.stderr.strip()}")

    def _check_disk(self, data: int, entries: int) -> None:
        stat = os.statvfs(self.root)
        free, inodes = stat.f_bavail * stat.f_frsize, stat.f_favail
        if free < data + 256 * MiB or (stat.f_files and inodes < entries + 1024):
            self.close(keep=False)
            raise BenchError(
                f"{self.root.parent} has {human_size(free)} and {inodes} inodes free; the tree case needs "
                f"{human_size(data)} and {entries} inodes (use --dir, fewer --files or fewer --runs)"
            )

    def describe(self) -> str:
        if self.mounted:
            return f"tmpfs mounted by the benchmark at {self.root} ({self.mount_options})"
        return f"{self.fstype} on {self.device}, temp dir {self.root} (no tmpfs: {self.why_not_tmpfs})"

    def close(self, keep: bool) -> None:
        if keep:
            how = f"; unmount it with `umount {self.root}`" if self.mounted else ""
            log(f"kept the tree workspace {self.root}{how}")
            return
        if self.mounted:
            done = subprocess.run(["umount", str(self.root)], check=False, capture_output=True, text=True)
            if done.returncode != 0:
                # Busy: some process outlived the benchmark. Detach the tmpfs
                # anyway; the kernel frees it once that process lets go.
                log(f"could not unmount {self.root} ({done.stderr.strip()}): detaching it with umount --lazy")
                subprocess.run(["umount", "--lazy", str(self.root)], check=False)
            self.mounted = False
        else:
            log(f"deleting {self.root}")
            shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()


def tree_paths(shape: TreeShape) -> tuple[list[str], list[str]]:
    """(directories, files) of the source tree, relative to its root."""
    dir_width, file_width = len(str(shape.dirs - 1)), len(str(shape.per_dir - 1))
    dirs = [f"d{d:0{dir_width}d}" for d in range(shape.dirs)]
    files = [f"{dirs[i // shape.per_dir]}/f{i % shape.per_dir:0{file_width}d}" for i in range(shape.files)]
    return dirs, files


def generate_tree(root: Path, shape: TreeShape) -> dict[str, bytes]:
    """Create the source tree under `root`; return its manifest (relative
    path -> SHA-256 digest). Directories are created even when empty."""
    dirs, files = tree_paths(shape)
    root.mkdir()
    for directory in dirs:
        (root / directory).mkdir()
    manifest: dict[str, bytes] = {}
    for relative in files:
        data = os.urandom(shape.file_size)
        with open(root / relative, "wb") as out:
            out.write(data)
        manifest[relative] = hashlib.sha256(data).digest()
    return manifest


def verify_tree(out: Path, manifest: dict[str, bytes], dirs: set[str]) -> list[str]:
    """Problems with output directory `out`: it must hold exactly
    TREE_NAME/ with the manifest's files and directories, byte for byte."""
    try:
        top = sorted(os.listdir(out))
    except OSError as error:
        return [f"cannot list {out}: {error.strerror}"]
    problems = []
    if top != [TREE_NAME]:
        extra = [name for name in top if name != TREE_NAME]
        if extra:
            problems.append(f"unexpected entries beside {TREE_NAME}/ in {out}: {', '.join(extra[:5])}")
        if TREE_NAME not in top:
            return problems + [f"{out}/{TREE_NAME} is missing"]
    root = out / TREE_NAME
    seen_files, seen_dirs, differ, odd = set(), set(), [], []
    for current, subdirs, names in os.walk(root):
        base = os.path.relpath(current, root)
        prefix = "" if base == "." else base + "/"
        seen_dirs.update(prefix + name for name in subdirs)
        for name in names:
            relative = prefix + name
            path = os.path.join(current, name)
            if os.path.islink(path) or not os.path.isfile(path):
                odd.append(relative)
                continue
            seen_files.add(relative)
            expected = manifest.get(relative)
            if expected is not None:
                with open(path, "rb") as file:
                    if hashlib.sha256(file.read()).digest() != expected:
                        differ.append(relative)
    missing = sorted(set(manifest) - seen_files)
    extra = sorted((seen_files - set(manifest)) | (seen_dirs - dirs)) + sorted(odd)
    missing_dirs = sorted(dirs - seen_dirs)
    for what, items in (
        ("files missing", missing),
        ("directories missing", missing_dirs),
        ("unexpected entries", extra),
        ("files with wrong contents", sorted(differ)),
    ):
        if items:
            problems.append(f"{len(items)} {what} (first: {TREE_NAME}/{items[0]})")
    return problems

