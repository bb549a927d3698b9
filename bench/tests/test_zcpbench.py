"""Checks of the benchmark code that need no benchmark run: both entry
points parse their switches, strace summaries are read right, the chart is
well-formed SVG, targets get the verdicts they should, and the C reference
compiles and copies a file over 127.0.0.1 byte for byte.

    PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s bench/tests
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

from zcpbench import suitereport, svgchart, syscalls, tools  # noqa: E402
from zcpbench.common import GiB, RunError  # noqa: E402
from zcpbench.suiterun import Workload  # noqa: E402
from zcpbench.suitetools import FILE, NC, REF, SCP, ZCP, ZCP_NONE, ZCP_NOZC  # noqa: E402

SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 99.10    0.512000          61      8310           splice
  0.90    0.004650          18       253        12 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.516650          60      8563        12 total
"""


class EntryPoints(unittest.TestCase):
    def test_help(self) -> None:
        for script in ("run.sh", "compare.sh"):
            done = subprocess.run([str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertIn("usage:", done.stdout)

    def test_bad_switch(self) -> None:
        done = subprocess.run([str(BENCH / "run.sh"), "--only", "nonesuch"], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        self.assertEqual(done.returncode, 2)
        self.assertIn("big1g", done.stderr)


class Strace(unittest.TestCase):
    def test_total(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s"
            path.write_text(SUMMARY)
            self.assertEqual(syscalls.total_calls(path), 8563)
            path.write_text(SUMMARY.replace("        12 total", "           total"))
            self.assertEqual(syscalls.total_calls(path), 8563)
            path.write_text(SUMMARY.splitlines()[0])
            with self.assertRaises(RunError):
                syscalls.total_calls(path)
            with self.assertRaises(RunError):
                syscalls.total_calls(Path(tmp) / "missing")


class Chart(unittest.TestCase):
    def test_well_formed(self) -> None:
        bars = [
            svgchart.Bar("zcp <default>", 1.5, 1.2, 1.7, "zcp", text="1.50 GiB/s"),
            svgchart.Bar("nc", 0.6, 0.5, 0.7, baseline=True, text="0.60 GiB/s"),
            svgchart.Bar("failed & gone", None),
        ]
        svg = svgchart.chart("title", "sub & title", [svgchart.Panel("1 GiB file", bars)])
        root = ET.fromstring(svg)
        texts = [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]
        self.assertIn("zcp <default>", texts)
        self.assertIn("FAIL", texts)
        # Bars are drawn to scale: zcp's is 2.5 times the baseline's.
        bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("height") == str(svgchart.BAR_H)]
        zcp = [float(r.get("width")) for r in bars if r.get("fill") == svgchart.COLOURS["zcp"]]
        base = [float(r.get("width")) for r in bars if r.get("fill") == svgchart.BASELINE_COLOUR]
        self.assertEqual(len(zcp), 1)
        self.assertEqual(len(base), 1)
        self.assertAlmostEqual(zcp[0] / base[0], 2.5, places=2)


def row(workload: Workload, tool, rate: float, cpu: float, syscalls_per_gib: float = 1000.0,
        rss: float = 4.0, failures: int = 0) -> suitereport.Row:  # fmt: skip
    return suitereport.Row(workload, tool, 5, failures, [rate] * 3, [1.0] * 3, [cpu / 2] * 3, [cpu / 2] * 3,
                           rss, rss, syscalls_per_gib, None)  # fmt: skip


class Targets(unittest.TestCase):
    def test_verdicts(self) -> None:
        big = Workload("big1g", FILE, GiB)
        rows = {
            ("big1g", "zcp"): row(big, ZCP, 0.9, 2.0),
            ("big1g", "nc"): row(big, NC, 0.6, 2.5),
            ("big1g", "scp"): row(big, SCP, 0.1, 8.0),
            ("big1g", "zcp-none"): row(big, ZCP_NONE, 1.9, 0.9, syscalls_per_gib=6000, rss=17),
            ("big1g", "ref"): row(big, REF, 2.0, 0.8),
            ("big1g", "zcp-nozc"): row(big, ZCP_NOZC, 0.8, 2.4, syscalls_per_gib=9000),
        }
        lines = suitereport.target_lines(rows, [big])
        text = "\n".join(lines)
        self.assertIn("| zcp default ≥ 1.5× nc throughput (1 GiB file) | 1.50× | PASS |", text)
        self.assertIn("| zcp default ≥ 3× scp throughput (1 GiB file) | 9.00× | PASS |", text)
        self.assertIn("reference's throughput (1 GiB file) | 0.95× | PASS |", text)
        self.assertIn("reference's CPU/GiB (1 GiB file) | 1.12× | MISS |", text)
        self.assertIn("| 6 000 (worst: zcp --checksum none) | MISS |", text)
        self.assertIn("| 17.0 MiB (worst: zcp --checksum none, big1g) | MISS |", text)
        self.assertIn("(pipe, not run) | not measured | – |", text)
        rows[("big1g", "nc")] = row(big, NC, 0.6, 2.5, failures=1)
        self.assertIn("| no valid ratio (failed runs) | MISS |", "\n".join(suitereport.target_lines(rows, [big])))


@unittest.skipUnless(shutil.which("gcc"), "needs gcc")
class Reference(unittest.TestCase):
    def test_copies_a_file(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            ref = tools.build_ref(shutil.which("gcc") or "gcc", work)
            source, out = work / "source.bin", work / "out.bin"
            source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
            receiver = subprocess.Popen([str(ref), "recv", "127.0.0.1", "0", str(out)], stderr=subprocess.PIPE,
                                        text=True)  # fmt: skip
            try:
                line = receiver.stderr.readline()
                self.assertRegex(line, r"^zcp-ref: listening on 127\.0\.0\.1:\d+$")
                port = line.rsplit(":", 1)[1].strip()
                sent = subprocess.run([str(ref), "send", str(source), "127.0.0.1", port], timeout=60)
                self.assertEqual(sent.returncode, 0)
                self.assertEqual(receiver.wait(timeout=60), 0)
            finally:
                receiver.kill()
                receiver.wait()
                receiver.stderr.close()
            self.assertEqual(out.read_bytes(), source.read_bytes())


if __name__ == "__main__":
    unittest.main()
