//! The receiver's verdicts, matched to the entries sent in order: each
//! entry's outcome, reported (a failed or skipped directory's subtree in
//! one line) and counted once over all the attempts of a transfer
//! (`--retries`), and the closing summary.

use std::time::Instant;

use super::entry::Abort;
use super::{Pending, Session, counted_entries, receiver_said};
use crate::checksum::{Algorithm, Digest};
use crate::display;
use crate::protocol::{EntryKind, Verdict, VerdictStatus};
use crate::report::{Kind, Record};
use crate::tally::{Outcome, verified};

impl Session<'_> {
    /// Counts an entry's outcome once over all attempts: an entry settled
    /// (committed or skipped) goes in the ledger, and one settled in an
    /// earlier attempt is not counted twice. `why` is what went wrong with
    /// it, for the JSON report.
    pub(super) fn tally(&mut self, p: &Pending, outcome: Outcome, why: Option<String>) {
        let settled = outcome.settled();
        if settled && p.again {
            return;
        }
        if settled && self.ledger.remember {
            self.ledger.done.insert(p.path.clone());
        }
        self.totals.count(outcome);
        self.totals.record(|| record_of(p, outcome, why));
    }

    /// When this try fails with `why`: the records of its entries that did
    /// not settle, the failed ones, those still waiting for a verdict and
    /// the one being sent (all failed), for the JSON report. None are kept
    /// without one.
    pub(super) fn unsettled(&mut self, why: &str) -> Vec<Record> {
        let Some(records) = &self.totals.records else {
            return Vec::new();
        };
        let failed = records.iter().filter(|r| !r.outcome.settled()).cloned();
        let waiting = self
            .pending
            .iter()
            .filter(|p| !p.again)
            .map(|p| record_of(p, Outcome::Failed, Some(why.to_string())));
        let cut_off = self.in_flight.take().map(|mut record| {
            record.error = Some(why.to_string());
            record
        });
        failed.chain(waiting).chain(cut_off).collect()
    }

    /// Decides one entry from its verdict and reports it; returns its
    /// outcome and, unless it was settled, why not.
    pub(super) fn judge(&mut self, p: &Pending, v: &Verdict) -> (Outcome, Option<String>) {
        let what = format!("sending {} to {}", p.path, self.peer);
        match v.status {
            _ if matches!(p.sent.aborted, Some(Abort::Changed(_))) => (Outcome::Changed, aborted(p)),
            _ if p.sent.aborted.is_some() => (Outcome::Failed, aborted(p)),
            VerdictStatus::Committed if v.digest == p.sent.digest => {
                self.committed(p);
                (Outcome::Committed, None)
            }
            VerdictStatus::Committed => {
                let why = format!(
                    "the receiver committed data whose digest {} is not ours {}",
                    v.digest.hex(),
                    p.sent.digest.hex()
                );
                self.reporter.error(format!("{what}: {why}"));
                (Outcome::Mismatch, Some(why))
            }
            VerdictStatus::Mismatch if v.digest == Digest::None => {
                // A file sent in blocks: the receiver names the block.
                let why = format!("integrity check failed: {}", receiver_said(&v.message));
                self.reporter.error(format!("{what}: {why}; nothing was committed"));
                (Outcome::Mismatch, Some(why))
            }
            VerdictStatus::Mismatch => {
                let why = format!(
                    "integrity check failed: the receiver's {} digest {} differs from ours {}",
                    self.algorithm.name(),
                    v.digest.hex(),
                    p.sent.digest.hex()
                );
                self.reporter.error(format!("{what}: {why}; nothing was committed"));
                (Outcome::Mismatch, Some(why))
            }
            VerdictStatus::Skipped if !self.no_clobber => {
                let why = format!(
                    "the receiver skipped it, but --no-clobber was not asked for: {}",
                    receiver_said(&v.message)
                );
                self.reporter.error(format!("{what}: {why}"));
                (Outcome::Failed, Some(why))
            }
            VerdictStatus::Skipped => {
                match &mut self.failed_dir {
                    Some((_, beneath, Gone::Skipped)) => {
                        *beneath += 1;
                        self.reporter
                            .detail(format!("skipped {}: {}", p.path, receiver_said(&v.message)));
                    }
                    _ => {
                        self.reporter
                            .note(format!("skipped {}: {}", p.path, receiver_said(&v.message)));
                        if p.kind == EntryKind::Directory && self.failed_dir.is_none() {
                            self.failed_dir = Some((p.path.clone(), 0, Gone::Skipped));
                        }
                    }
                }
                (Outcome::Skipped, None)
            }
            VerdictStatus::Failed => {
                let why = receiver_said(&v.message);
                match &mut self.failed_dir {
                    Some((_, beneath, Gone::Failed)) => {
                        *beneath += 1;
                        self.reporter.detail(format!("{what}: {why}"));
                    }
                    _ => {
                        self.reporter.error(format!("{what}: {why}"));
                        if p.kind == EntryKind::Directory && self.failed_dir.is_none() {
                            self.failed_dir = Some((p.path.clone(), 0, Gone::Failed));
                        }
                    }
                }
                (Outcome::Failed, Some(why))
            }
        }
    }

    /// Before the verdict on `path`: if it is outside the subtree of a
    /// directory the receiver could not make, says in one line how many
    /// entries beneath that directory failed with it.
    pub(super) fn leave_failed_dir(&mut self, path: &str) {
        let Some((dir, beneath, gone)) = &self.failed_dir else {
            return;
        };
        if path
            .strip_prefix(dir.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return;
        }
        match (*beneath, gone) {
            (0, _) => {}
            (n, Gone::Failed) => self.reporter.error(format!(
                "sending {dir}/... to {}: {} beneath {dir} failed with it (-v lists them)",
                self.peer,
                counted_entries(n),
            )),
            (n, Gone::Skipped) => self.reporter.note(format!(
                "skipped {dir}/...: {} beneath {dir} with it (--no-clobber; -v lists them)",
                counted_entries(n),
            )),
        }
        self.failed_dir = None;
    }

    fn committed(&mut self, p: &Pending) {
        if !p.again {
            match p.kind {
                EntryKind::File => self.totals.files += 1,
                EntryKind::Directory => self.totals.dirs += 1,
                EntryKind::Symlink(_) | EntryKind::HardLink(_) => self.totals.links += 1,
            }
        }
        if p.kind != EntryKind::File {
            return;
        }
        let (bytes, report) = (p.sent.bytes, &p.sent.report);
        if !p.again {
            // What moved in this session: blocks a resume found at the
            // receiver did not.
            self.totals.bytes += bytes - p.sent.resumed;
            self.totals.add_report(report);
        }
        if self.reporter.verbose() {
            self.reporter
                .detail(format_args!("send {}: {}", p.path, report.describe()));
            match report.block_size {
                _ if self.algorithm == Algorithm::None => {}
                Some(size) => self
                    .reporter
                    .detail(display::block_digest_line(&p.sent.digest, &p.raw, size)),
                None => self
                    .reporter
                    .detail_raw(&display::checksum_line(&p.sent.digest.hex(), &p.raw)),
            }
        }
        // Only a lone file gets its own closing line (see `summarize`).
        if self.totals.files > 1 {
            return;
        }
        let seconds = p.started.elapsed().as_secs_f64();
        let moved = bytes - p.sent.resumed;
        let amount = match p.sent.resumed {
            0 => display::bytes(bytes),
            kept => format!(
                "{} of {} ({} resumed)",
                display::bytes(moved),
                display::bytes(bytes),
                display::bytes(kept)
            ),
        };
        self.last_summary = Some(format!(
            "sent {} to {}: {amount} in {seconds:.2} s ({}), {}, {}",
            p.path,
            self.peer,
            display::rate_within(moved, seconds, self.limit),
            report.primary().name(),
            verified(self.algorithm)
        ));
    }

    /// The closing line: the file's own summary for a single file, else
    /// the totals (of every attempt, with how many reconnects it took).
    pub(super) fn summarize(&mut self, started: Instant) {
        let t = &self.ledger.carried;
        let reconnects = self.ledger.reconnects_note();
        if t.entries == 1
            && t.files == 1
            && let Some(line) = self.last_summary.take()
        {
            self.reporter.summary(format_args!("{line}{reconnects}"));
            return;
        }
        let seconds = started.elapsed().as_secs_f64();
        let line = format!(
            "sent {} to {}: {}{reconnects}",
            t.counts(),
            self.peer,
            t.measures(seconds, self.algorithm, self.limit)
        );
        self.reporter.detail(format!("send: {}", t.report.describe_totals()));
        self.reporter.summary(line);
    }
}

/// Why the sender gave up on an entry it aborted.
fn aborted(p: &Pending) -> Option<String> {
    p.sent.aborted.as_ref().map(ToString::to_string)
}

/// Why a directory's subtree did not arrive, for reporting it in one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    /// The receiver could not make the directory.
    Failed,
    /// Something else is in its place and --no-clobber keeps it.
    Skipped,
}

/// The JSON report's record of entry `p` with `outcome`.
fn record_of(p: &Pending, outcome: Outcome, why: Option<String>) -> Record {
    let kind = if p.stdin { Kind::Stdin } else { Kind::of(&p.kind) };
    let mut record = Record::new(&p.name, kind, outcome);
    if p.kind == EntryKind::File {
        record.moved(p.sent.bytes, p.sent.resumed, &p.sent.report);
    }
    record.digest = p.sent.digest.clone();
    record.error = why;
    record
}
