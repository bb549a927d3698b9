#!/usr/bin/env bash
# The zcp benchmark suite: zcp against its peers on 127.0.0.1, every output
# checked. One command for a fresh Debian machine (run as root: it installs
# missing peers with apt-get, mounts a tmpfs for the tree and runs a private
# sshd for scp, and removes all of it on the way out):
#
#   bench/run.sh                 full suite, about 15 minutes on 2 cores
#   bench/run.sh --quick         smoke run, about 2 minutes
#   bench/run.sh --only big1g,pipe --tools zcp,zcp-none,ref,nc
#   bench/run.sh --help          every switch
#
# Tools: zcp (default sha256, --checksum none, --no-zerocopy, --checksum
# blake3), the C reference bench/ref/zcp-ref.c (sendfile → splice, no
# hashing; compiled with gcc), OpenBSD nc, socat (default and -b1048576),
# rsync -W to an rsync daemon, scp to a private sshd. Workloads: a 1 GiB and
# a 4 GiB page-cached file, `cat FILE |` into each tool's stdin, and a tree of
# 100 000 × 4 KiB files (zcp send -r, tar|nc, tar|socat, rsync -a, scp -r).
# Per tool: GiB/s (files/s), CPU-s per GiB of both ends, peak RSS per end,
# syscalls per GiB (one extra run under strace -c -f), ratios to nc, and the
# project's targets with PASS/MISS. Writes bench/results-suite.md and the
# chart bench/results-suite.svg (--quick: bench/results-quick.*).
#
# Builds zcp with `cargo build --release --locked` unless ZCP_BIN names a
# binary. The code is the zcpbench package beside this script (Python 3
# standard library only), shared with bench/compare.sh.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing python3 with apt-get" >&2
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3 >&2
    else
        echo "run.sh: python3 is required (apt-get install python3)" >&2
        exit 1
    fi
fi
exec python3 "$(dirname "${BASH_SOURCE[0]}")/compare.py" suite "$@"
