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
        let mut target = Target::File {
            file: staged.file(),
            offset: 0,
        };
        let mut report = self.lander.start_report(&target);
        self.reporter.start(&format!("recv {}", entry.name), entry.size);
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
                hasher.advance(landed);
                reporter.advance(n);
            },
        )
        .map_err(|e| short_read(e, landed, entry.size))
        .with_context(|| format!("writing {shown}"))?;
        self.reporter.finish();

        let trailer = match end {
            PayloadEnd::Trailer(t) => t,
            PayloadEnd::Aborted(why) => {
                drop(staged);
                let why = display::escape_text(&why);
                self.reporter
                    .error(format!("receiving {}: the sender aborted it: {why}", entry.name));
                self.verdict(
                    VerdictStatus::Failed,
                    Digest::None,
                    format!("aborted by the sender: {why}"),
                )?;
                return Ok(Outcome::Failed);
            }
        };
        let hashed = hasher.finish().with_context(|| format!("hashing {shown}"))?;
        if !self.check(&trailer, landed, &hashed)? {
            drop(staged);
            self.reporter.error(format!(
                "receiving {} from {}: integrity check failed: {} of the received data is {}, the sender's is {}; \
                 nothing was written to {shown}",
                entry.name,
                self.peer,
                self.algorithm.name(),
                hashed.digest.hex(),
                trailer.digest.hex()
            ));
            self.verdict(VerdictStatus::Mismatch, hashed.digest, "digest mismatch".into())?;
            return Ok(Outcome::Mismatch);
        }
        let finish = Finish {
            mode: entry.mode,
            mtime: entry.mtime,
            umask: self.umask,
            fsync: self.fsync,
        };
        let shown_path = staged.shown().to_path_buf();
        if let Err(e) = staged.commit(&finish) {
            self.reporter
                .error(format!("receiving {} from {}: {e:#}", entry.name, self.peer));
            self.verdict(VerdictStatus::Failed, hashed.digest, format!("{e:#}"))?;
            return Ok(Outcome::Failed);
        }
        self.verdict(VerdictStatus::Committed, hashed.digest.clone(), String::new())?;
        self.summarize(
            entry,
            landed,
            started,
            &report,
            &hashed.digest,
            shown_path.as_os_str().as_bytes(),
        );
        Ok(Outcome::Committed)
    }

    fn receive_stream(&mut self, entry: &Entry, started: Instant) -> Result<Outcome> {
        let stdout = std::io::stdout();
        let out = stdout.as_fd();
        let kind = out
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .map(|m| FdKind::of(&m))
            .unwrap_or(FdKind::Unknown);
        if kind == FdKind::Pipe {
            sys::grow_pipe(out, self.lander.pipe_size());
        }
        let hasher = PipeHasher::spawn(self.algorithm, self.lander.pipe_size())?;
        let mut target = Target::Stream {
            out,
            out_is_pipe: kind == FdKind::Pipe,
            hash: hasher.input(),
        };
        let mut report = self.lander.start_report(&target);
        // Payload going to the terminal and a bar on it would garble both.
        if !std::io::stdout().is_terminal() {
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
                reporter.advance(n);
            },
        )
        .map_err(|e| short_read(e, landed, entry.size))
        .context("writing to stdout")?;
        self.reporter.finish();
        drop(target);

        let trailer = match end {
            PayloadEnd::Trailer(t) => t,
            PayloadEnd::Aborted(why) => {
                let why = display::escape_text(&why);
                self.reporter.error(format!(
                    "receiving {}: the sender aborted it after {landed} bytes were written to stdout: {why}",
                    entry.name
                ));
                self.verdict(
                    VerdictStatus::Failed,
                    Digest::None,
                    format!("aborted by the sender: {why}"),
                )?;
                return Ok(Outcome::Failed);
            }
        };
        let hashed = hasher.finish().context("hashing stdout")?;
        if !self.check(&trailer, landed, &hashed)? {
            self.reporter.error(format!(
                "receiving {} from {}: integrity check failed: the {landed} bytes written to stdout have {} {}, \
                 the sender's is {}; discard that output",
                entry.name,
                self.peer,
                self.algorithm.name(),
                hashed.digest.hex(),
                trailer.digest.hex()
            ));
            self.verdict(VerdictStatus::Mismatch, hashed.digest, "digest mismatch".into())?;
            return Ok(Outcome::Mismatch);
        }
        self.verdict(VerdictStatus::Committed, hashed.digest.clone(), String::new())?;
        self.summarize(entry, landed, started, &report, &hashed.digest, b"-");
        Ok(Outcome::Committed)
    }

    /// `-v` details and the summary line; `into` is the final path.
    fn summarize(&self, entry: &Entry, bytes: u64, started: Instant, report: &Report, digest: &Digest, into: &[u8]) {
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
