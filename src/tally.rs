//! How a transfer went, entry by entry: the outcome of each entry, the
//! totals both ends print, and the exit status they lead to (the same rule
//! on both ends, so they agree).

use crate::checksum::Algorithm;
use crate::display;
use crate::engine::Report;
use crate::error::Code;

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
    Failed,
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
    /// Bytes by mechanism, over all files.
    pub report: Report,
}

impl Totals {
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Committed => self.committed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Mismatch => self.mismatched += 1,
            Outcome::Failed => self.failed += 1,
        }
    }

    pub fn add_report(&mut self, r: &Report) {
        self.report.by_sendfile += r.by_sendfile;
        self.report.by_splice += r.by_splice;
        self.report.by_read_write += r.by_read_write;
        self.report.from_buffer += r.from_buffer;
    }

    /// The exit status: an integrity failure outranks any other; some
    /// entries failing while others arrived is a partial transfer.
    pub fn code(&self) -> Code {
        if self.mismatched > 0 {
            Code::Integrity
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

    /// Bytes, time, rate, verification, and what did not arrive.
    pub fn measures(&self, seconds: f64, algorithm: Algorithm) -> String {
        let mut line = format!(
            "{} in {seconds:.2} s ({}), {}",
            display::bytes(self.bytes),
            display::rate(self.bytes, seconds),
            verified(algorithm)
        );
        if self.skipped > 0 {
            line.push_str(&format!("; {} skipped (existing, --no-clobber)", self.skipped));
        }
        if self.failed + self.mismatched > 0 {
            line.push_str(&format!("; {} FAILED", self.failed + self.mismatched));
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
}
