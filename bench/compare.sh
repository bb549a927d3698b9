#!/usr/bin/env bash
# Compare zcp with its peers on 127.0.0.1, one case at a time; every output
# is verified. The whole suite in one command is bench/run.sh.
#
#   bench/compare.sh [--case big|tree|limit|resume|parallel|all] [--runs 3] [--dir DIR] [--out FILE] [--keep]
#                    [--size 1G]                                        (big case)
#                    [--files 100000] [--dirs 100] [--file-size 4K] [--no-tmpfs]  (tree case)
#                    [--limit-size 512M] [--limits 100M,400M]           (limit case)
#                    [--resume-size 4G]                                 (resume case)
#                    [--parallel-size 4G]                               (parallel case)
#
# Case "big" (one large file): zcp default, --checksum none, --no-zerocopy
# and OpenBSD nc; throughput, CPU per GiB and peak RSS of each end.
# Case "tree" (many small files into a new directory): zcp send -r, tar c|nc
# into nc -l|tar x, and rsync -a -W to an rsync daemon; seconds, files/s and
# CPU-seconds of both ends. As root the tree lives on a tmpfs this script
# mounts (and unmounts); otherwise in a temp dir under --dir. Case "limit":
# zcp send --limit at each rate and without a limit, verified and with
# --checksum none; achieved MiB/s against the limit as a ratio, and CPU of
# both ends. Case "resume": zcp send --resume of a file that a paced copy
# left half done (its receiver SIGKILLed once the partial's record held half
# the blocks), against a fresh --resume copy, a fresh copy without --resume
# and nc; seconds, bytes re-sent and CPU of both ends. Case "parallel":
# zcp without -P, -P 1 --resume (one stream in blocks), -P 2, -P 4 and
# -P 4 --checksum none, against nc and rsync -W to an rsync daemon; seconds,
# GiB/s, CPU per GiB and peak RSS of each end. The default, "all", runs big,
# tree and limit; resume and parallel move a 4 GiB file four and seven ways
# per round, so they run only when asked for.
#
# Builds zcp with `cargo build --release --locked` unless ZCP_BIN names a
# binary, and installs netcat-openbsd (and, for the tree and parallel cases,
# rsync) with apt-get when needed. Everything else lives in compare.py and
# the zcpbench package beside it (Python 3 standard library only).
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
    echo "compare.sh: python3 is required (apt-get install python3)" >&2
    exit 1
fi
exec python3 "$(dirname "${BASH_SOURCE[0]}")/compare.py" "$@"
