#!/usr/bin/env python3
"""Entry point of the comparison benchmark (bench/compare.sh) and of the
benchmark suite (bench/run.sh, which passes `suite` first).

The benchmark lives in the zcpbench package next to this file (see its
__init__ for which module owns what). Only the Python 3 standard library is
used."""

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # leave no __pycache__ in the checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zcpbench import main, suite  # noqa: E402

if __name__ == "__main__":
    # `compare.py suite ...` is bench/run.sh, the benchmark suite.
    if sys.argv[1:2] == ["suite"]:
        sys.exit(suite.main(sys.argv[2:]))
    sys.exit(main.main(sys.argv[1:]))
