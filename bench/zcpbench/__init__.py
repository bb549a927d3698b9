"""zcpbench: the comparison benchmark behind bench/compare.sh.

Modules, each owning one responsibility (Python 3 standard library only):

* common    -- units, errors, logging, size parsing, machine and git facts
* procs     -- child processes: launcher, wait4 CPU/RSS, watchdog, ports,
               CPU of a daemon's reaped children via /proc
* tools     -- finding, building or installing zcp, OpenBSD nc, tar, rsync;
               the rsync daemon
* bigfile   -- the "big" case: one large file, zcp variants against nc
* bigreport -- the big case's markdown report and throughput targets
* limit     -- the "limit" case: zcp send --limit, achieved rate against the
               limit (reuses the big case's runs and checks)
* resume    -- the "resume" case: zcp send --resume after a break at half
               way (paced copy, receiver SIGKILLed, partial's record read
               back) against fresh copies; runs, checks and report
* parallel  -- the "parallel" case: zcp send -P N against one stream, nc
               and rsync to an rsync daemon (started per run for its peak
               RSS); runs, checks of each sender's mode, and report
* treedata  -- the "tree" case's data: tmpfs or disk workspace, the source
               tree, its manifest and the check of every output tree
* tree      -- the "tree" case: runs of zcp -r, tar|nc and rsync, and report
* main      -- command line and the order of everything
"""
