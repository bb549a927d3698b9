"""zcpbench: the benchmarks behind bench/run.sh (the suite) and
bench/compare.sh (one case at a time).

Modules, each owning one responsibility (Python 3 standard library only):

* common      -- units, errors, logging, size parsing, machine and git facts
* session     -- a run from start to every way out: signals, subreaper,
                 the cleanup stack
* procs       -- child processes: launcher, wait4 CPU/RSS, watchdog, ports,
                 CPU of a daemon's reaped children via /proc
* tools       -- finding, building or installing zcp and the peers (apt-get),
                 compiling the C reference (bench/ref/zcp-ref.c), versions
* daemons     -- the servers peers send to: rsync daemon, a private sshd
* syscalls    -- `strace -c -f` wrapping and its summary's total
* bigfile     -- the "big" case: one large file, zcp variants against nc
* bigreport   -- the big case's markdown report and throughput targets
* limit       -- the "limit" case: zcp send --limit, achieved rate against the
                 limit (reuses the big case's runs and checks)
* resume      -- the "resume" case: zcp send --resume after a break at half
                 way (paced copy, receiver SIGKILLed, partial's record read
                 back) against fresh copies; runs, checks and report
* parallel    -- the "parallel" case: zcp send -P N against one stream, nc
                 and rsync to an rsync daemon (started per run for its peak
                 RSS); runs, checks of each sender's mode, and report
* treedata    -- the tree's data: tmpfs or disk workspace, the source tree,
                 its manifest and the check of every output tree
* tree        -- the "tree" case: runs of zcp -r, tar|nc and rsync, and report
* main        -- compare.sh's command line and the order of its cases
* suite       -- run.sh's command line, setup and order of workloads
* suitetools  -- the suite's tools: how each starts on a file, pipe or tree
* suiterun    -- the suite's workloads, sources, samples, runs and checks
* suitereport -- the suite's tables, targets (PASS/MISS) and chart panels
* svgchart    -- a small SVG bar chart
"""
