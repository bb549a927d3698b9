//! Receiving one entry: into a staged file that is committed only after
//! the digests match, or onto stdout. Every entry ends with a VERDICT to
//! the sender; an error returned from here breaks the connection instead.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use super::{Outcome, Session};
use crate::checksum::{Algorithm, Digest, FileHasher, Hashed, PipeHasher};
use crate::dest::{Destination, Finish};
use crate::display;
use crate::engine::Report;
use crate::engine::inbound::{Lander, Target};
use crate::frames::{self, FrameReader};
use crate::protocol::{Entry, Message, Trailer, Verdict, VerdictStatus};
use crate::send::verified;
use crate::sys::{self, FdKind};

/// A landed payload: how it ended, how many bytes, and how they moved.
struct Landed {
    end: PayloadEnd,
    bytes: u64,
    report: Report,
}

/// How a payload ended.
enum PayloadEnd {
    Trailer(Trailer),
    /// The sender gave up on this entry (message says why).
    Aborted(String),
}

/// Lands the payload of an entry: `size` raw bytes, or DATA frames up to
/// the TRAILER. Returns how it ended.
fn read_payload(
    reader: &mut FrameReader,
    lander: &mut Lander,
    size: Option<u64>,
    target: &mut Target<'_>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64),
) -> Result<PayloadEnd> {
    match size {
        Some(n) => lander.land(reader, target, n, report, progress)?,
        None => loop {
            match reader.expect_exact()? {
                Message::Data(n) => lander.land(reader, target, u64::from(n), report, progress)?,
                Message::Trailer(t) => return Ok(PayloadEnd::Trailer(t)),
                Message::Abort(m) => return Ok(PayloadEnd::Aborted(m)),
                other => bail!("protocol error: unexpected {:?} inside a stream", other.frame_type()),
            }
        },
    }
    match reader.expect()? {
        Message::Trailer(t) => Ok(PayloadEnd::Trailer(t)),
        Message::Abort(m) => Ok(PayloadEnd::Aborted(m)),
        other => bail!("protocol error: expected TRAILER, got {:?}", other.frame_type()),
    }
}

/// Adds "after X of N bytes" to a payload that ended early.
fn short_read(err: anyhow::Error, landed: u64, size: Option<u64>) -> anyhow::Error {
    let eof = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof)
    });
    if !eof {
        return err;
    }
    match size {
        Some(n) => anyhow!("the sender closed the connection after {landed} of {n} bytes"),
        None => anyhow!("the sender closed the connection after {landed} bytes of a stream"),
    }
}

impl Session {
    /// Receives one entry, answers it with a verdict, and returns how it
    /// ended. Errors are fatal to the connection.
    pub fn receive(&mut self, entry: Entry) -> Result<Outcome> {
        let name = entry.name.to_string();
        let started = Instant::now();
        let result = match self.dest {
            Destination::Stdout => self.receive_stream(&entry, started),
            _ => self.receive_file(&entry, started),
        };
        result.with_context(|| format!("receiving {name}"))
    }

    fn verdict(&self, status: VerdictStatus, digest: Digest, message: String) -> Result<()> {
        frames::send(
            &self.sock,
            &Message::Verdict(Verdict {
                status,
                digest,
                message,
            }),
        )
    }

    /// Compares the sender's trailer with what we counted and hashed.
    /// Ok(true) when they match (or nothing is verified).
    fn check(&self, trailer: &Trailer, landed: u64, hashed: &Hashed) -> Result<bool> {
        if trailer.bytes != landed {
            bail!(
                "protocol error: the sender says it sent {} bytes but {landed} arrived",
                trailer.bytes
            );
        }
        if self.algorithm == Algorithm::None {
            return Ok(true);
        }
        if trailer.digest.algorithm() != self.algorithm {
            bail!(
                "protocol error: the trailer carries a {} digest",
                trailer.digest.algorithm().name()
            );
        }
        Ok(trailer.digest == hashed.digest)
    }

    /// Lands an entry's payload in `target`, drawing the bar (if `bar`) and
    /// telling `on_landed` each new total. Errors break the connection.
    fn land_payload(
        &mut self,
        entry: &Entry,
        mut target: Target<'_>,
        bar: bool,
        on_landed: &dyn Fn(u64),
    ) -> Result<Landed> {
        let mut report = self.lander.start_report(&target);
        if bar {
            self.reporter.start(&format!("recv {}", entry.name), entry.size);
        }
        let mut landed = 0u64;
        let reporter = &self.reporter;
        let end = read_payload(
            &mut self.reader,
            &mut self.lander,
            entry.size,
            &mut target,
            &mut report,
            &mut |n| {
                landed += n;
                on_landed(landed);
                reporter.advance(n);
            },
        );
        self.reporter.finish();
        Ok(Landed {
            end: end.map_err(|e| short_read(e, landed, entry.size))?,
            bytes: landed,
            report,
        })
    }

    /// Decides an entry whose payload has landed: an abort or a digest
    /// mismatch is reported (`lost` says what became of the bytes) and
    /// answered here; `Ok(None)` means it verified and may be committed.
    fn judge(&self, entry: &Entry, landed: &Landed, hashed: &Hashed, lost: &str) -> Result<Option<Outcome>> {
        let trailer = match &landed.end {
            PayloadEnd::Trailer(t) => t,
            PayloadEnd::Aborted(why) => {
                let why = display::escape_text(why);
                self.reporter.error(format!(
                    "receiving {} from {}: the sender aborted it: {why}; {lost}",
                    entry.name, self.peer
                ));
                self.verdict(
                    VerdictStatus::Failed,
                    Digest::None,
                    format!("aborted by the sender: {why}"),
                )?;
                return Ok(Some(Outcome::Failed));
            }
        };
        if self.check(trailer, landed.bytes, hashed)? {
            return Ok(None);
        }
        self.reporter.error(format!(
            "receiving {} from {}: integrity check failed: the {} of the {} bytes received is {}, the sender's is {}; {lost}",
            entry.name,
            self.peer,
            self.algorithm.name(),
            landed.bytes,
            hashed.digest.hex(),
            trailer.digest.hex()
        ));
        self.verdict(VerdictStatus::Mismatch, hashed.digest.clone(), "digest mismatch".into())?;
        Ok(Some(Outcome::Mismatch))
    }

    fn receive_file(&mut self, entry: &Entry, started: Instant) -> Result<Outcome> {
        let staged = self.dest.stage(&entry.name)?;
        let shown = display::path(staged.shown());
        if let Some(size) = entry.size.filter(|s| *s > 0) {
            match sys::fallocate(staged.file(), size) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                    self.reporter
                        .detail(format!("fallocate is not supported for {shown}; writing without it"));
                }
                Err(e) => return Err(e).with_context(|| format!("reserving {} for {shown}", display::bytes(size))),
            }
        }
        let hasher = FileHasher::spawn(staged.file().try_clone()?, self.algorithm, 0)?;
        let target = Target::File {
            file: staged.file(),
            offset: 0,
        };
        let landed = self
            .land_payload(entry, target, true, &|total| hasher.advance(total))
            .with_context(|| format!("writing {shown}"))?;
        let hashed = hasher.finish().with_context(|| format!("hashing {shown}"))?;
        if let Some(outcome) = self.judge(entry, &landed, &hashed, &format!("nothing was written to {shown}"))? {
            return Ok(outcome);
        }
        let finish = Finish {
            mode: entry.mode,
            mtime: entry.mtime,
            umask: self.umask,
            fsync: self.fsync,
        };
        let path = staged.shown().to_path_buf();
        if let Err(e) = staged.commit(&finish) {
            self.reporter
                .error(format!("receiving {} from {}: {e:#}", entry.name, self.peer));
            self.verdict(VerdictStatus::Failed, hashed.digest, format!("{e:#}"))?;
            return Ok(Outcome::Failed);
        }
        self.verdict(VerdictStatus::Committed, hashed.digest.clone(), String::new())?;
        self.summarize(entry, &landed, started, &hashed.digest, path.as_os_str().as_bytes());
        Ok(Outcome::Committed)
    }

    fn receive_stream(&mut self, entry: &Entry, started: Instant) -> Result<Outcome> {
        let stdout = std::io::stdout();
        let out = stdout.as_fd();
        let kind = sys::dup_file(out)
            .and_then(|f| f.metadata())
            .map(|m| FdKind::of(&m))
            .unwrap_or(FdKind::Unknown);
        if kind == FdKind::Pipe {
            sys::grow_pipe(out, self.lander.pipe_size());
        }
        let hasher = PipeHasher::spawn(self.algorithm, self.lander.pipe_size())?;
        let target = Target::Stream {
            out,
            out_is_pipe: kind == FdKind::Pipe,
            hash: hasher.input(),
        };
        // Payload going to the terminal and a bar on it would garble both.
        let bar = !stdout.is_terminal();
        let landed = self
            .land_payload(entry, target, bar, &|_| {})
            .context("writing to stdout")?;
        let hashed = hasher.finish().context("hashing stdout")?;
        let lost = format!("the {} bytes already written to stdout must be discarded", landed.bytes);
        if let Some(outcome) = self.judge(entry, &landed, &hashed, &lost)? {
            return Ok(outcome);
        }
        self.verdict(VerdictStatus::Committed, hashed.digest.clone(), String::new())?;
        self.summarize(entry, &landed, started, &hashed.digest, b"-");
        Ok(Outcome::Committed)
    }

    /// `-v` details and the summary line; `into` is the final path.
    fn summarize(&self, entry: &Entry, landed: &Landed, started: Instant, digest: &Digest, into: &[u8]) {
        let (bytes, report) = (landed.bytes, &landed.report);
        let seconds = started.elapsed().as_secs_f64();
        self.reporter.detail(format!("recv: {}", report.describe()));
        if self.algorithm != Algorithm::None {
            self.reporter.detail_raw(&display::checksum_line(&digest.hex(), into));
        }
        self.reporter.note(format!(
            "received {} from {} into {}: {} in {seconds:.2} s ({}), {}, {}",
            entry.name,
            self.peer,
            display::escape_bytes(into),
            display::bytes(bytes),
            display::rate(bytes, seconds),
            report.primary().name(),
            verified(self.algorithm)
        ));
    }
}
