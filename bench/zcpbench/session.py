"""One benchmark session from start to every way out: a shared zcp key,
SIGTERM treated like Ctrl-C, this script as child subreaper (see procs),
and the cleanup. A session's body registers what it set up (work
directories, tmpfs, daemons) on an ExitStack as it goes; whatever path
leaves the body (success, a failed setup, Ctrl-C, SIGTERM), every child is
stopped and the stack unwound, newest first, with further signals ignored
so that a second Ctrl-C cannot cut the cleanup short."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from .common import BenchError, log
from .procs import Children, become_subreaper


def raise_interrupt(signum, frame) -> None:
    """SIGTERM takes the same cleanup path as Ctrl-C."""
    raise KeyboardInterrupt


def run(body: Callable[[Children, contextlib.ExitStack], int]) -> int:
    """Run `body(children, cleanup)`; its exit code, 130 when interrupted,
    1 when setup failed."""
    # zcp authenticates by default: both ends of every measured transfer
    # share one key, as users' transfers do.
    os.environ.setdefault("ZCP_KEY", secrets.token_hex(16))
    signal.signal(signal.SIGTERM, raise_interrupt)
    children = Children()
    cleanup = contextlib.ExitStack()
    try:
        become_subreaper()
        return body(children, cleanup)
    except KeyboardInterrupt:
        log("interrupted: stopping receivers and senders")
        return 130
    except (BenchError, subprocess.CalledProcessError) as error:
        log(f"error: {error}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        children.stop_all()
        cleanup.close()


def remove_later(cleanup: contextlib.ExitStack, path: Path, keep: bool) -> Path:
    """Register a work directory to be deleted at the end (or, with
    --keep, named in the log); return it."""

    def remove() -> None:
        if keep:
            log(f"kept the work directory {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)

    cleanup.callback(remove)
    return path
