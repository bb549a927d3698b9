//! One entry of the JSON report: what this end knows of it when its
//! outcome is settled ([`Record`]), and how that is written
//! ([`Record::view`]). Names are bytes; the rule that keeps them lossless
//! in JSON, which must be UTF-8, is [`Name`]'s.

use std::borrow::Cow;

use serde::Serialize;

use crate::checksum::{Algorithm, Digest};
use crate::engine::{Mechanism, Report};
use crate::protocol::EntryKind;
use crate::tally::Outcome;

/// What an entry is, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    /// The sender's standard input (`-`); the receiver sees a file.
    Stdin,
}

impl Kind {
    pub fn of(kind: &EntryKind) -> Kind {
        match kind {
            EntryKind::File => Kind::File,
            EntryKind::Directory => Kind::Dir,
            EntryKind::Symlink(_) => Kind::Symlink,
            EntryKind::HardLink(_) => Kind::HardLink,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::HardLink => "hardlink",
            Kind::Stdin => "stdin",
        }
    }
}

/// How one entry ended, with what this end moved and computed for it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The path on the wire (as under DEST), raw.
    pub name: Vec<u8>,
    pub kind: Kind,
    pub outcome: Outcome,
    /// The payload's length: for a resumed file the whole file, of which
    /// `resumed` bytes were already at the receiver.
    pub bytes: u64,
    pub resumed: u64,
    /// This end's digest of the payload; `Digest::None` when there is none.
    pub digest: Digest,
    /// The digest is the file digest over block digests (blockhash.rs).
    pub in_blocks: bool,
    /// How this end moved the payload, when it moved one.
    pub mechanism: Option<&'static str>,
    pub error: Option<String>,
}

impl Record {
    /// An entry that moved no payload (yet): a directory, a link, or a
    /// file that failed before its bytes did.
    pub fn new(name: &[u8], kind: Kind, outcome: Outcome) -> Record {
        Record {
            name: name.to_vec(),
            kind,
            outcome,
            bytes: 0,
            resumed: 0,
            digest: Digest::None,
            in_blocks: false,
            mechanism: None,
            error: None,
        }
    }

    /// Notes how `bytes` of payload moved (`resumed` of them did not, they
    /// were at the receiver already), as `report` says.
    pub fn moved(&mut self, bytes: u64, resumed: u64, report: &Report) {
        self.bytes = bytes;
        self.resumed = resumed;
        self.in_blocks = report.block_size.is_some();
        self.mechanism = mechanism(report);
    }

    /// The entry as the report writes it.
    pub fn view(&self) -> View<'_> {
        let hex = match self.digest {
            Digest::None => None,
            ref d => Some(d.hex()),
        };
        let algorithm = match self.digest.algorithm() {
            Algorithm::None => None,
            a => Some(a.name()),
        };
        let name = Name::of(&self.name);
        View {
            name: name.text,
            name_bytes: name.bytes,
            kind: self.kind.name(),
            status: self.outcome.name(),
            bytes: self.bytes,
            resumed: self.resumed,
            digest_kind: hex.as_ref().map(|_| if self.in_blocks { "blocks" } else { "whole" }),
            digest: hex,
            algorithm,
            // An empty file committed names the path it took; an entry
            // that failed before any byte moved took none.
            mechanism: self
                .mechanism
                .filter(|_| self.bytes > self.resumed || self.outcome == Outcome::Committed),
            error: self.error.as_deref(),
        }
    }
}

/// The mechanism that moved an entry's payload: the one that moved all of
/// it, or `mixed` when two or more did. The bytes a receiver wrote from
/// the buffer that also held the frame before them do not count (a
/// payload's first few KiB, whatever moves the rest). None when nothing
/// was set to move a payload (an entry aborted before its bytes).
fn mechanism(report: &Report) -> Option<&'static str> {
    let moved: Vec<Mechanism> = [
        (report.by_sendfile, Mechanism::Sendfile),
        (report.by_splice, Mechanism::Splice),
        (report.by_read_write, Mechanism::ReadWrite),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, m)| m)
    .collect();
    match moved.as_slice() {
        [] if report.from_buffer > 0 => Some(Mechanism::ReadWrite.name()),
        [] if report.route.is_empty() => None,
        // Nothing moved (an empty file): the path that would have.
        [] => Some(report.primary().name()),
        [one] => Some(one.name()),
        _ => Some("mixed"),
    }
}

/// A name in JSON: the string itself when it is valid UTF-8 (control
/// characters escaped by the encoder, as JSON requires), else a readable
/// form with U+FFFD for each invalid sequence and, in `bytes`, every byte
/// of the name: lossless either way.
pub struct Name<'a> {
    pub text: Cow<'a, str>,
    pub bytes: Option<&'a [u8]>,
}

impl Name<'_> {
    pub fn of(raw: &[u8]) -> Name<'_> {
        match std::str::from_utf8(raw) {
            Ok(text) => Name {
                text: Cow::Borrowed(text),
                bytes: None,
            },
            Err(_) => Name {
                text: String::from_utf8_lossy(raw),
                bytes: Some(raw),
            },
        }
    }
}

/// One element of `files` (docs/JSON.md).
#[derive(Serialize)]
pub struct View<'a> {
    name: Cow<'a, str>,
    /// Only for a name that is not UTF-8: its bytes, as numbers.
    name_bytes: Option<&'a [u8]>,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    bytes: u64,
    resumed: u64,
    digest: Option<String>,
    algorithm: Option<&'static str>,
    digest_kind: Option<&'static str>,
    mechanism: Option<&'static str>,
    error: Option<&'a str>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn json(record: &Record) -> serde_json::Value {
        let text = serde_json::to_string(&record.view()).unwrap();
        assert!(!text.contains('\n'), "one line: {text}");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_utf8_name_is_itself_and_any_other_keeps_its_bytes() {
        let r = Record::new("caf\u{e9}/a\nb\u{1b}[0m".as_bytes(), Kind::File, Outcome::Committed);
        let v = json(&r);
        assert_eq!(v["name"], "caf\u{e9}/a\nb\u{1b}[0m");
        assert!(v["name_bytes"].is_null());
        let r = Record::new(b"a\xffb", Kind::File, Outcome::Committed);
        let v = json(&r);
        assert_eq!(v["name"], "a\u{fffd}b");
        assert_eq!(v["name_bytes"], serde_json::json!([97, 255, 98]));
    }

    #[test]
    fn the_mechanism_is_the_one_that_moved_all_of_it_or_mixed() {
        let report = |sendfile, splice, read_write, from_buffer| Report {
            by_sendfile: sendfile,
            by_splice: splice,
            by_read_write: read_write,
            from_buffer,
            route: "socket → pipe → file",
            ..Report::default()
        };
        assert_eq!(mechanism(&report(0, 90, 0, 10)), Some("splice"));
        assert_eq!(mechanism(&report(50, 0, 50, 0)), Some("mixed"));
        assert_eq!(mechanism(&report(0, 0, 0, 10)), Some("read/write"));
        // An empty file names the path it took; nothing set up, none.
        assert_eq!(mechanism(&report(0, 0, 0, 0)), Some("splice"));
        assert_eq!(mechanism(&Report::default()), None);
    }

    #[test]
    fn a_digest_says_what_it_is_a_digest_of() {
        let mut r = Record::new(b"f", Kind::File, Outcome::Committed);
        let v = json(&r);
        assert!(v["digest"].is_null() && v["algorithm"].is_null() && v["digest_kind"].is_null());
        r.digest = crate::checksum::digest_of(Algorithm::Sha256, b"abc");
        r.moved(
            3,
            0,
            &Report {
                by_sendfile: 3,
                block_size: Some(8 << 20),
                ..Report::default()
            },
        );
        let v = json(&r);
        assert_eq!(
            v["digest"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(v["algorithm"], "sha256");
        assert_eq!(v["digest_kind"], "blocks");
        assert_eq!(v["mechanism"], "sendfile");
        // A file that failed before a byte moved names no mechanism.
        let mut r = Record::new(b"f", Kind::File, Outcome::Failed);
        r.moved(
            0,
            0,
            &Report {
                route: "socket → pipe → file",
                ..Report::default()
            },
        );
        assert!(json(&r)["mechanism"].is_null());
    }
}
