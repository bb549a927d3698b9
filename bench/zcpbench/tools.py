"""The tools under test: building or finding zcp (and whether it can send a
tree), finding or installing the peers with apt-get (OpenBSD netcat, tar,
rsync, socat, OpenSSH, strace, gcc), compiling the C reference
(bench/ref/zcp-ref.c), and the version lines quoted in reports. The servers
some peers send to (rsync daemon, sshd) are in daemons."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .common import REPO, BenchError, git_revision, log

RECURSIVE_UNSUPPORTED = "zcp send -r not supported by this build"


# --------------------------------------------------------------------------
# zcp


def build_zcp() -> Path:
    """The zcp binary: $ZCP_BIN, or a fresh `cargo build --release --locked`."""
    override = os.environ.get("ZCP_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BenchError(f"ZCP_BIN={override} is not an executable file")
        return path.resolve()
    if shutil.which("cargo") is None:
        raise BenchError("cargo not found: install Rust (https://rustup.rs) or set ZCP_BIN")
    log("building zcp: cargo build --release --locked")
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, stdout=sys.stderr, check=True)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
    return (REPO / target_dir / "release" / "zcp").resolve()


def zcp_identity(zcp: Path) -> str:
    """`zcp --version`, plus the git commit when it was built from this tree."""
    version = subprocess.run(
        [str(zcp), "--version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    revision = git_revision()
    if os.environ.get("ZCP_BIN"):
        built = f"; the checkout is at git {revision}" if revision else ""
        return f"{version} ({zcp}{built})"
    return f"{version} (git {revision})" if revision else version


def zcp_sends_trees(zcp: Path) -> bool:
    """Whether `zcp send` has -r/--recursive (its --help mentions it)."""
    done = subprocess.run(
        [str(zcp), "send", "--help"], check=False, capture_output=True, text=True, timeout=10
    )
    return "--recursive" in done.stdout + done.stderr


# --------------------------------------------------------------------------
# Packages


_apt_updated = False


def apt_install(*packages: str) -> None:
    """`apt-get install -y PACKAGES`, after one `apt-get update` per run."""
    global _apt_updated
    names = " ".join(packages)
    if shutil.which("apt-get") is None:
        raise BenchError(f"{names} missing and apt-get is not available: install {names}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise BenchError(f"installing {names} needs root: run as root or install sudo")
    if not _apt_updated:
        subprocess.run(sudo + ["apt-get", "update"], stdout=sys.stderr, check=True)
        _apt_updated = True
    log(f"installing {names} with apt-get")
    subprocess.run(
        sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", *packages],
        stdout=sys.stderr,
        check=True,
    )


def first_line(argv: list[str]) -> str:
    """The first line a command prints (stderr first), '' if it cannot run."""
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stderr + done.stdout).strip().splitlines()
    return lines[0] if lines else ""


def netcat_banner(path: str) -> str:
    """The first line `nc -h` prints, which names the netcat variant."""
    return first_line([path, "-h"])


def find_openbsd_nc() -> str | None:
    for name in ("nc.openbsd", "nc"):
        path = shutil.which(name)
        if path and "OpenBSD netcat" in netcat_banner(path):
            return path
    return None


def ensure_openbsd_nc() -> str:
    """Path of an OpenBSD netcat, installing it first when needed."""
    path = find_openbsd_nc()
    if path is None:
        apt_install("netcat-openbsd")
        path = find_openbsd_nc()
    if path is None:
        raise BenchError("netcat-openbsd was installed but no OpenBSD `nc` is on PATH")
    return path


def which(name: str) -> str | None:
    """shutil.which, also looking in the sbin directories (sshd is there,
    and they are not on every user's PATH)."""
    search = os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin"
    return shutil.which(name, path=search)


def ensure_command(name: str, package: str) -> str:
    """Path of `name`, installing `package` first when it is missing."""
    return ensure_commands({name: package})[name]


def ensure_commands(wanted: dict[str, str]) -> dict[str, str]:
    """Paths of the commands `wanted` names (command -> Debian package),
    installing the packages of the missing ones in one apt-get call."""
    missing = sorted({package for name, package in wanted.items() if which(name) is None})
    if missing:
        apt_install(*missing)
    paths = {}
    for name, package in wanted.items():
        path = which(name)
        if path is None:
            raise BenchError(f"{package} was installed but `{name}` is not on PATH")
        paths[name] = path
    return paths


def version_line(path: str) -> str:
    """`tar --version`, `rsync --version`: their first line."""
    done = subprocess.run([path, "--version"], check=False, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else "unknown version"


def tool_version(path: str) -> str:
    """The line of a tool's version output that names its version: `-V`
    for socat, ssh and strace, `--version` for the rest."""
    name = Path(path).name
    if name == "socat":
        done = subprocess.run([path, "-V"], check=False, capture_output=True, text=True)
        return next((line for line in done.stdout.splitlines() if "version" in line), "unknown version")
    if name in ("ssh", "strace"):
        return first_line([path, "-V"]) or "unknown version"
    return version_line(path)


# --------------------------------------------------------------------------
# The C reference

REF_SOURCE = REPO / "bench" / "ref" / "zcp-ref.c"


def build_ref(gcc: str, outdir: Path) -> Path:
    """Compile bench/ref/zcp-ref.c into `outdir`; return the binary."""
    binary = outdir / "zcp-ref"
    done = subprocess.run(
        [gcc, "-O2", "-Wall", "-Wextra", "-o", str(binary), str(REF_SOURCE)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"gcc could not build {REF_SOURCE.name}: {done.stderr.strip()[-500:]}")
    return binary
