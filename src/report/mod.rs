//! The machine-readable report (`--json`, `--json-file`): one JSON object
//! on one line for each transfer, written when it ends, however it ends.
//! docs/JSON.md documents every field; [`SCHEMA`] changes when a field's
//! meaning does.
//!
//! The ends gather what the object says as they go ([`Facts`], with each
//! entry's [`Record`] kept in [`Totals`]); this module only turns that into
//! JSON and writes it ([`Sink`]), after the `zcp: error:` line of a
//! failure ([`conclude`]), so that with `--json` the object is the last
//! line of stderr: `main` for the whole run ([`Closing`]), a `recv -k`
//! receiver for each of its sessions as it ends.

mod record;

pub use record::{Kind, Record};

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::checksum::Algorithm;
use crate::cli::CommonArgs;
use crate::display;
use crate::error::{self, Code};
use crate::tally::Totals;

/// The version of the report's shape, the object's `schema`.
pub const SCHEMA: u32 = 1;

/// Which end wrote the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Send,
    Recv,
}

/// What one end knows of a transfer when it ends.
#[derive(Debug)]
pub struct Facts {
    pub role: Role,
    /// The other end, once known: as typed when this end connected, its
    /// address when it connected to us.
    pub peer: Option<String>,
    pub algorithm: Algorithm,
    /// When the first session started, if one did.
    pub started: Option<Instant>,
    /// From then to the end of the last session; 0 when none started.
    pub seconds: f64,
    /// Connections made again (`send --retries`).
    pub retries: u32,
    /// TCP connections the session used (`-P`).
    pub streams: u8,
    pub totals: Totals,
}

impl Facts {
    /// Facts of a transfer that has not started.
    pub fn new(role: Role, algorithm: Algorithm, streams: u8) -> Facts {
        Facts {
            role,
            peer: None,
            algorithm,
            started: None,
            seconds: 0.0,
            retries: 0,
            streams,
            totals: Totals::default(),
        }
    }

    /// The facts of a session that took over from `earlier`, whose
    /// connection broke: what `earlier` settled for good comes first,
    /// except the entries this session received again, and the time
    /// counts from its start.
    pub fn after(self, earlier: Facts) -> Facts {
        let mut totals = earlier.totals.settled();
        if let (Some(mut records), Some(later)) = (totals.records.take(), &self.totals.records) {
            let again: HashSet<&[u8]> = later.iter().map(|r| r.name.as_slice()).collect();
            records.retain(|r| {
                let kept = !again.contains(r.name.as_slice());
                if !kept {
                    totals.forget(r);
                }
                kept
            });
            totals.records = Some(records);
        }
        totals.add(&self.totals);
        let (started, seconds) = match (earlier.started, self.started) {
            (Some(first), Some(last)) => (
                Some(first),
                last.saturating_duration_since(first).as_secs_f64() + self.seconds,
            ),
            _ => (self.started, self.seconds),
        };
        Facts {
            started,
            seconds,
            totals,
            ..self
        }
    }

    /// The report, for a transfer that ended with `code` (and `error`, the
    /// message of the error that ended it).
    fn object<'a>(&'a self, code: Code, error: Option<&'a str>) -> Object<'a> {
        let t = &self.totals;
        let rate = if self.seconds > 0.0 {
            (t.bytes as f64 / self.seconds) as u64
        } else {
            0
        };
        Object {
            schema: SCHEMA,
            zcp: env!("CARGO_PKG_VERSION"),
            role: match self.role {
                Role::Send => "send",
                Role::Recv => "recv",
            },
            peer: self.peer.as_deref(),
            status: code.name(),
            exit_code: code as u8,
            error,
            algorithm: self.algorithm.name(),
            verified: self.algorithm != Algorithm::None && t.committed > 0 && t.mismatched == 0,
            bytes: t.bytes,
            seconds: (self.seconds * 1000.0).round() / 1000.0,
            rate,
            retries: self.retries,
            streams: self.streams,
            mechanism: Mechanisms {
                sendfile: t.report.by_sendfile,
                splice: t.report.by_splice,
                read_write: t.report.by_read_write,
                from_buffer: t.report.from_buffer,
            },
            counts: Counts {
                files: t.files,
                dirs: t.dirs,
                links: t.links,
                committed: t.committed,
                skipped: t.skipped,
                failed: t.failed,
                mismatched: t.mismatched,
                changed: t.changed,
            },
            files: t.records.iter().flatten().map(Record::view).collect(),
        }
    }
}

/// The object, field by field (docs/JSON.md).
#[derive(Serialize)]
struct Object<'a> {
    schema: u32,
    zcp: &'static str,
    role: &'static str,
    peer: Option<&'a str>,
    status: &'static str,
    exit_code: u8,
    error: Option<&'a str>,
    algorithm: &'static str,
    verified: bool,
    bytes: u64,
    seconds: f64,
    rate: u64,
    retries: u32,
    streams: u8,
    mechanism: Mechanisms,
    counts: Counts,
    files: Vec<record::View<'a>>,
}

/// Payload bytes this end moved, by mechanism.
#[derive(Serialize)]
struct Mechanisms {
    sendfile: u64,
    splice: u64,
    read_write: u64,
    /// Receiver: written from the buffer that also held the frame before.
    from_buffer: u64,
}

#[derive(Serialize)]
struct Counts {
    files: u64,
    dirs: u64,
    links: u64,
    committed: u64,
    skipped: u64,
    failed: u64,
    mismatched: u64,
    changed: u64,
}

/// Where the report goes.
#[derive(Debug)]
pub enum Sink {
    /// `--json`: stderr, as its last line.
    Stderr,
    /// `--json-file`: one line per report.
    File(Mutex<File>),
}

impl Sink {
    /// The sink the options ask for, if any. The file is created (or
    /// emptied) now, so a path that cannot be written fails before
    /// anything is sent. It may not be one of the transfer's `operands`
    /// (a SOURCE or DEST) or lie inside one, which it would overwrite or
    /// be overwritten by.
    pub fn open(args: &CommonArgs, operands: &[PathBuf]) -> Result<Option<Arc<Sink>>> {
        if args.json {
            return Ok(Some(Arc::new(Sink::Stderr)));
        }
        let Some(path) = &args.json_file else {
            return Ok(None);
        };
        if let Some(operand) = operands.iter().find(|o| o.as_os_str() != "-" && within(path, o)) {
            return Err(error::usage(format!(
                "--json-file {} is {} {}, which this transfer reads or writes: write the report elsewhere",
                display::path(path),
                if same_file(path, operand) {
                    "the same file as"
                } else {
                    "inside"
                },
                display::path(operand),
            )));
        }
        let file = File::create(path).with_context(|| format!("opening --json-file {}", display::path(path)))?;
        Ok(Some(Arc::new(Sink::File(Mutex::new(file)))))
    }

    /// Writes the report of a transfer that ended with `code` (and
    /// `error`). A report that cannot be written is said on stderr: the
    /// transfer's exit status stands.
    fn write(&self, facts: &Facts, code: Code, error: Option<&str>) {
        let mut line = match serde_json::to_string(&facts.object(code, error)) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("zcp: warning: cannot encode the JSON report: {e}");
                return;
            }
        };
        line.push('\n');
        let written = match self {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(file) => {
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                file.write_all(line.as_bytes()).and_then(|()| file.flush())
            }
        };
        if let Err(e) = written {
            eprintln!("zcp: warning: cannot write the JSON report: {e}");
        }
    }
}

/// Whether `path` is the file `operand` names, or lies beneath the
/// directory it names (`operand` need not exist yet).
fn within(path: &Path, operand: &Path) -> bool {
    if same_file(path, operand) {
        return true;
    }
    match (place(path), std::fs::canonicalize(operand)) {
        (Some(path), Ok(dir)) => path.starts_with(dir),
        _ => false,
    }
}

/// Whether `a` and `b` are one file: the same inode when both exist, the
/// same place when neither does.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        (Err(_), Err(_)) => place(a).is_some_and(|a| place(b) == Some(a)),
        _ => false,
    }
}

/// Where `path` is or would be: its directory resolved, and its name.
fn place(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(name))
}

/// The report `main` writes as zcp exits, after its error line: the sink
/// and the facts an end left here.
#[derive(Default)]
pub struct Closing {
    sink: Option<Arc<Sink>>,
    facts: Option<Facts>,
}

impl Closing {
    /// Where the report goes (None: nowhere).
    pub fn sink(&mut self, sink: Option<Arc<Sink>>) {
        self.sink = sink;
    }

    /// What the report says: the facts of the transfer as it ended.
    pub fn facts(&mut self, facts: Facts) {
        self.facts = Some(facts);
    }

    /// Ends the run with `result`: see [`conclude`].
    pub fn conclude(self, result: &Result<Code>) -> Code {
        conclude(result, self.sink.as_deref(), self.facts.as_ref())
    }
}

/// Ends a transfer that ended with `result`: prints the `zcp: error:`
/// line of a failure, then writes the report of `facts` to `sink`, if
/// both are there (so with `--json` the report is stderr's last line).
/// Returns the exit status.
pub fn conclude(result: &Result<Code>, sink: Option<&Sink>, facts: Option<&Facts>) -> Code {
    let (code, message) = match result {
        Ok(code) => (*code, None),
        Err(err) => (error::exit_code(err), Some(error::message(err))),
    };
    // Held (it is reentrant) so that another session of a `recv -k`
    // ending at the same moment cannot come between the error line and
    // its report.
    let _stderr = std::io::stderr().lock();
    if let Some(message) = &message {
        eprintln!("zcp: error: {message}");
    }
    if let (Some(sink), Some(facts)) = (sink, facts) {
        sink.write(facts, code, message.as_deref());
    }
    code
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tally::Outcome;

    fn facts(entries: &[(&str, Kind, Outcome)]) -> Facts {
        let mut facts = Facts::new(Role::Recv, Algorithm::Sha256, 1);
        facts.totals = Totals::keeping(true);
        for (name, kind, outcome) in entries {
            facts.totals.entries += 1;
            facts.totals.count(*outcome);
            if *outcome == Outcome::Committed {
                match kind {
                    Kind::Dir => facts.totals.dirs += 1,
                    _ => facts.totals.files += 1,
                }
            }
            facts.totals.record(|| Record::new(name.as_bytes(), *kind, *outcome));
        }
        facts
    }

    fn json(facts: &Facts, code: Code, error: Option<&str>) -> serde_json::Value {
        serde_json::to_value(facts.object(code, error)).unwrap()
    }

    #[test]
    fn a_session_after_a_broken_one_counts_each_entry_once() {
        use Kind::*;
        use Outcome::*;
        let broken = facts(&[("t", Dir, Committed), ("t/a", File, Committed), ("t/b", File, Failed)]);
        let next = facts(&[("t", Dir, Committed), ("t/b", File, Committed)]);
        let all = next.after(broken);
        let v = json(&all, all.totals.code(), None);
        let names: Vec<&str> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["t/a", "t", "t/b"]);
        assert_eq!(v["counts"]["committed"], 3);
        assert_eq!(v["counts"]["dirs"], 1);
        assert_eq!(v["counts"]["files"], 2);
        assert_eq!(v["counts"]["failed"], 0);
        assert_eq!(v["status"], "success");
    }

    #[test]
    fn the_status_and_error_are_the_ends() {
        let f = facts(&[]);
        let v = json(&f, Code::Interrupted, Some("sending x: interrupted"));
        assert_eq!(v["status"], "interrupted");
        assert_eq!(v["exit_code"], 130);
        assert_eq!(v["error"], "sending x: interrupted");
        assert_eq!(v["verified"], false, "nothing was committed");
        assert_eq!(v["rate"], 0);
        assert_eq!(v["schema"], SCHEMA);
        assert!(v["peer"].is_null());
    }
}
