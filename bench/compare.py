#!/usr/bin/env python3
"""Entry point of the comparison benchmark; run it through bench/compare.sh.

The benchmark lives in the zcpbench package next to this file (see its
__init__ for which module owns what). Only the Python 3 standard library is
used."""

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # leave no __pycache__ in the checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from zcpbench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
