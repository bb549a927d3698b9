//! How a transfer went, entry by entry: the outcome of each entry, the
//! totals both ends print, and the exit status they lead to (the same rule
//! on both ends, so they agree; only the sender can know that a source
//! changed, and the receiver counts that entry as failed). With a JSON
//! report asked for, the totals also keep each entry's [`Record`].

use crate::checksum::Algorithm;
use crate::display;
use crate::engine::Report;
use crate::error::Code;
use crate::report::{Kind, Record};

/// "verified (sha256)" or "unverified (--checksum none)".
pub fn verified(algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::None => "unverified (--checksum none)".into(),
        a => format!("verified ({})", a.name()),
    }
}

/// How one entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Not stored: something exists under its name (--no-clobber).
    Skipped,
    Mismatch,
    /// Aborted by the sender because its source changed while being sent.
    Changed,
    Failed,
}

impl Outcome {
    /// The entry's `status` in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Skipped => "skipped",
            Outcome::Mismatch => "mismatch",
            Outcome::Changed => "changed",
            Outcome::Failed => "failed",
        }
    }

    /// Whether the entry is settled for good: committed, or kept out by
    /// --no-clobber.
    pub fn settled(self) -> bool {
        matches!(self, Outcome::Committed | Outcome::Skipped)
    }
}

/// What the session received, for the summary and the exit status.
#[derive(Debug, Default)]
pub struct Totals {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    pub committed: u64,
    pub skipped: u64,
    pub failed: u64,
    pub mismatched: u64,
    /// Aborted because the source changed while being sent (sender only).
    pub changed: u64,
    /// Bytes by mechanism, over all files.
    pub report: Report,
    /// Each entry with an outcome, in order, when a JSON report will list
    /// them (None: not kept).
    pub records: Option<Vec<Record>>,
}

impl Totals {
    /// Empty totals that keep each entry's record when `records` is set.
    pub fn keeping(records: bool) -> Totals {
        Totals {
            records: records.then(Vec::new),
            ..Totals::default()
        }
    }

    /// Keeps an entry's record, if records are kept (`record` is only
    /// called then).
    pub fn record(&mut self, record: impl FnOnce() -> Record) {
        if let Some(records) = &mut self.records {
            records.push(record());
        }
    }

    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Committed => self.committed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Mismatch => self.mismatched += 1,
            Outcome::Changed => self.changed += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn add_report(&mut self, r: &Report) {
        self.report.by_sendfile += r.by_sendfile;
        self.report.by_splice += r.by_splice;
        self.report.by_read_write += r.by_read_write;
        self.report.from_buffer += r.from_buffer;
    }

    /// Adds `other`'s counts to these (a transfer over several
    /// connections, `send --retries`).
    pub fn add(&mut self, other: &Totals) {
        self.entries += other.entries;
        self.files += other.files;
        self.dirs += other.dirs;
        self.links += other.links;
        self.bytes += other.bytes;
        self.committed += other.committed;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.mismatched += other.mismatched;
        self.changed += other.changed;
        self.add_report(&other.report);
        if let (Some(mine), Some(theirs)) = (&mut self.records, &other.records) {
            mine.extend(theirs.iter().cloned());
        }
    }

    /// What a connection that broke settled for good: the entries
    /// committed or skipped, and what they moved. The others are sent
    /// again over the next connection and counted there.
    pub fn settled(&self) -> Totals {
        let mut kept = Totals {
            entries: self.committed + self.skipped,
            files: self.files,
            dirs: self.dirs,
            links: self.links,
            bytes: self.bytes,
            committed: self.committed,
            skipped: self.skipped,
            records: self
                .records
                .as_ref()
                .map(|r| r.iter().filter(|r| r.outcome.settled()).cloned().collect()),
            ..Totals::default()
        };
        kept.add_report(&self.report);
        kept
    }

    /// Takes back the counts of `record`, an entry settled in an earlier
    /// session that a later one received again (a receiver whose sender
    /// reconnected sends directories again): the transfer counts it once.
    /// The bytes it moved stay counted: they did move.
    pub fn forget(&mut self, record: &Record) {
        self.entries = self.entries.saturating_sub(1);
        match record.outcome {
            Outcome::Committed => {
                self.committed = self.committed.saturating_sub(1);
                let kind = match record.kind {
                    Kind::File | Kind::Stdin => &mut self.files,
                    Kind::Dir => &mut self.dirs,
                    Kind::Symlink | Kind::HardLink => &mut self.links,
                };
                *kind = kind.saturating_sub(1);
            }
            Outcome::Skipped => self.skipped = self.skipped.saturating_sub(1),
            Outcome::Mismatch | Outcome::Changed | Outcome::Failed => {}
        }
    }

    /// The exit status, by precedence: an integrity failure outranks any
    /// other; then a source that changed while being sent (even if every
    /// other entry arrived: sending again is the remedy, and 6 says so);
    /// then some entries failing while others arrived (partial); then
    /// failure. Network (7) and protocol (8) failures are never an
    /// entry's outcome: they end the session with an error, whose code is
    /// the exit status instead.
    pub fn code(&self) -> Code {
        if self.mismatched > 0 {
            Code::Integrity
        } else if self.changed > 0 {
            Code::SourceChanged
        } else if self.failed > 0 && self.committed + self.skipped > 0 {
            Code::Partial
        } else if self.failed > 0 {
            Code::Failure
        } else {
            Code::Success
        }
    }

    /// "9 files, 1 directory, 5 links".
    pub fn counts(&self) -> String {
        format!(
            "{}, {}, {}",
            counted(self.files, "file", "files"),
            counted(self.dirs, "directory", "directories"),
            counted(self.links, "link", "links")
        )
    }

    /// Bytes, time, rate (and the `--limit` it was held to), verification,
    /// and what did not arrive.
    pub fn measures(&self, seconds: f64, algorithm: Algorithm, limit: Option<u64>) -> String {
        let mut line = format!(
            "{} in {seconds:.2} s ({})",
            display::bytes(self.bytes),
            display::rate_within(self.bytes, seconds, limit),
        );
        // "verified" only when something was: not for a session whose
        // every entry failed.
        if self.committed + self.skipped > 0 || self.failed + self.mismatched + self.changed == 0 {
            line.push_str(&format!(", {}", verified(algorithm)));
        }
        if self.skipped > 0 {
            line.push_str(&format!("; {} skipped (existing, --no-clobber)", self.skipped));
        }
        let failed = self.failed + self.mismatched + self.changed;
        if failed > 0 {
            line.push_str(&format!("; {failed} FAILED"));
        }
        if self.changed > 0 {
            line.push_str(&format!(" ({} changed while being sent)", self.changed));
        }
        line
    }
}

/// "1 file", "2 files".
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_use_the_singular_for_one() {
        let t = Totals {
            files: 1,
            dirs: 2,
            links: 0,
            ..Totals::default()
        };
        assert_eq!(t.counts(), "1 file, 2 directories, 0 links");
    }

    #[test]
    fn the_exit_status_follows_the_precedence() {
        let code = |outcomes: &[Outcome]| {
            let mut t = Totals::default();
            for o in outcomes {
                t.count(*o);
            }
            t.code()
        };
        use Outcome::*;
        assert_eq!(code(&[]), Code::Success);
        assert_eq!(code(&[Committed, Skipped]), Code::Success);
        assert_eq!(code(&[Failed]), Code::Failure);
        assert_eq!(code(&[Failed, Committed]), Code::Partial);
        assert_eq!(code(&[Changed]), Code::SourceChanged);
        assert_eq!(code(&[Changed, Committed, Committed]), Code::SourceChanged);
        assert_eq!(code(&[Changed, Failed, Committed]), Code::SourceChanged);
        assert_eq!(code(&[Changed, Mismatch, Committed]), Code::Integrity);
    }

    #[test]
    fn a_broken_connection_keeps_only_what_it_settled() {
        let mut first = Totals {
            entries: 4,
            files: 1,
            bytes: 10,
            ..Totals::default()
        };
        first.count(Outcome::Committed);
        first.count(Outcome::Skipped);
        first.count(Outcome::Failed);
        let mut all = first.settled();
        assert_eq!((all.entries, all.files, all.bytes, all.failed), (2, 1, 10, 0));
        let mut second = Totals {
            entries: 2,
            files: 2,
            bytes: 5,
            ..Totals::default()
        };
        second.count(Outcome::Committed);
        second.count(Outcome::Committed);
        all.add(&second);
        assert_eq!((all.entries, all.files, all.bytes, all.committed), (4, 3, 15, 3));
        assert_eq!(all.code(), Code::Success);
    }

    #[test]
    fn changed_entries_count_as_failed_and_say_why() {
        let mut t = Totals::default();
        t.count(Outcome::Changed);
        t.count(Outcome::Failed);
        let line = t.measures(1.0, Algorithm::Sha256, None);
        assert!(line.ends_with("; 2 FAILED (1 changed while being sent)"), "{line}");
    }
}
