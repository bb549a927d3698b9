#!/usr/bin/env bash
# Compare zcp with OpenBSD netcat on 127.0.0.1: throughput, CPU per GiB and
# peak RSS of each end, every output verified by SHA-256.
#
#   bench/compare.sh [--size 1G] [--runs 3] [--dir DIR] [--out FILE] [--keep]
#
# Builds zcp with `cargo build --release --locked` unless ZCP_BIN names a
# binary, and installs netcat-openbsd with apt-get when needed. Everything
# else lives in compare.py (Python 3 standard library only).
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
    echo "compare.sh: python3 is required (apt-get install python3)" >&2
    exit 1
fi
exec python3 "$(dirname "${BASH_SOURCE[0]}")/compare.py" "$@"
