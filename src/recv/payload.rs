//! Reading one file's payload off the connection in whichever form the
//! ENTRY announced (raw bytes, DATA frames, DATA and HOLE frames) into a
//! landing target, up to its TRAILER or ABORT; and deciding the entry from
//! the trailer and the digest we computed.

use std::io;

use anyhow::{Result, bail};

use super::{Outcome, Session};
use crate::checksum::{Algorithm, Digest, Hashed};
use crate::display;
use crate::engine::Report;
use crate::engine::inbound::{Lander, Target};
use crate::error::protocol_bail;
use crate::frames::FrameReader;
use crate::protocol::{Entry, Message, Payload, Trailer, VerdictStatus};

/// A landed payload: how it ended, how many bytes, and how they moved.
pub struct Landed {
    pub end: PayloadEnd,
    pub bytes: u64,
    pub report: Report,
}

/// How a payload ended.
pub enum PayloadEnd {
    Trailer(Trailer),
    /// The sender gave up on this entry (message says why).
    Aborted(String),
}

/// Reads the frame that ends a payload.
pub fn read_end(reader: &mut FrameReader) -> Result<PayloadEnd> {
    loop {
        return match reader.expect()? {
            // The sender's hash is still catching up with what it sent.
            Message::Ping => continue,
            Message::Trailer(t) => Ok(PayloadEnd::Trailer(t)),
            Message::Abort(a) => Ok(PayloadEnd::Aborted(a.text)),
            Message::Error(e) => Err(super::sender_error(&e)),
            other => protocol_bail!("expected TRAILER, got {:?}", other.frame_type()),
        };
    }
}

/// Lands the payload of an entry and returns how it ended.
fn read_payload(
    reader: &mut FrameReader,
    lander: &mut Lander,
    payload: Payload,
    target: &mut Target<'_>,
    report: &mut Report,
    progress: &mut dyn FnMut(u64),
) -> Result<PayloadEnd> {
    let limit = match payload {
        Payload::None => return read_end(reader),
        Payload::Sized(n) => {
            lander.land(reader, target, n, report, progress)?;
            return read_end(reader);
        }
        Payload::Stream => u64::MAX,
        Payload::Sparse(n) => n,
        Payload::Blocks { .. } => bail!("internal error: a BLOCKED entry's payload read as a stream"),
    };
    let sparse = matches!(payload, Payload::Sparse(_));
    let mut at = 0u64;
    loop {
        let msg = reader.expect_exact()?;
        let len = match msg {
            Message::Data(n) => u64::from(n),
            // The sender's input is idle, or its hash is catching up.
            Message::Ping => continue,
            Message::Hole(n) if sparse => n,
            Message::Trailer(t) if sparse && at != limit => {
                let _ = t;
                protocol_bail!("the sparse payload ended after {at} of its {limit} bytes");
            }
            Message::Trailer(t) => return Ok(PayloadEnd::Trailer(t)),
            Message::Abort(a) => return Ok(PayloadEnd::Aborted(a.text)),
            Message::Error(e) => return Err(super::sender_error(&e)),
            other => protocol_bail!("unexpected {:?} inside a stream", other.frame_type()),
        };
        if len > limit - at {
            protocol_bail!("the payload runs past its announced size of {limit} bytes");
        }
        match msg {
            Message::Data(_) => lander.land(reader, target, len, report, progress)?,
            _ => {
                target.skip(len)?;
                progress(len);
            }
        }
        at += len;
    }
}

/// Says "after X of N bytes" for a payload that ended early, still as the
/// early end of stream it is (a lost connection).
pub fn short_read(err: anyhow::Error, landed: u64, size: Option<u64>) -> anyhow::Error {
    let eof = err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof)
    });
    if !eof {
        return err;
    }
    let said = match size {
        Some(n) => format!("the sender closed the connection after {landed} of {n} bytes"),
        None => format!("the sender closed the connection after {landed} bytes of a stream"),
    };
    io::Error::new(io::ErrorKind::UnexpectedEof, said).into()
}

impl Session {
    /// Lands an entry's payload in `target`, advancing the bar and telling
    /// `on_landed` each new total. Errors break the connection.
    pub fn land_payload(&mut self, entry: &Entry, mut target: Target<'_>, on_landed: &dyn Fn(u64)) -> Result<Landed> {
        self.flush()?;
        let mut report = self.lander.start_report(&target);
        let mut landed = 0u64;
        let reporter = &self.reporter;
        let end = read_payload(
            &mut self.reader,
            &mut self.lander,
            entry.payload,
            &mut target,
            &mut report,
            &mut |n| {
                landed += n;
                on_landed(landed);
                reporter.advance(n);
            },
        );
        Ok(Landed {
            end: end.map_err(|e| short_read(e, landed, entry.payload.size()))?,
            bytes: landed,
            report,
        })
    }

    /// Reads and drops the payload (and trailer) of a file we will not
    /// store. Directories and links have neither.
    /// A BLOCKED entry answered without a PLAN has none either.
    pub fn discard_payload(&mut self, entry: &Entry) -> Result<()> {
        if !matches!(entry.payload, Payload::None | Payload::Blocks { .. }) {
            self.land_payload(entry, Target::Discard, &|_| {})?;
        }
        Ok(())
    }

    /// Compares the sender's trailer with what we counted and hashed.
    /// Ok(true) when they match (or nothing is verified).
    fn check(&self, trailer: &Trailer, landed: u64, digest: &Digest) -> Result<bool> {
        if trailer.bytes != landed {
            protocol_bail!("the sender says it sent {} bytes but {landed} arrived", trailer.bytes);
        }
        if self.algorithm == Algorithm::None {
            return Ok(true);
        }
        if trailer.digest.algorithm() != self.algorithm {
            protocol_bail!("the trailer carries a {} digest", trailer.digest.algorithm().name());
        }
        Ok(trailer.digest == *digest)
    }

    /// Decides an entry whose payload has landed: an abort or a digest
    /// mismatch is reported (`lost` says what became of the bytes) and
    /// answered here; `Ok(None)` means it verified and may be committed.
    pub fn judge(
        &mut self,
        entry: &Entry,
        end: &PayloadEnd,
        bytes: u64,
        hashed: &Hashed,
        lost: &dyn Fn() -> String,
    ) -> Result<Option<Outcome>> {
        let trailer = match end {
            PayloadEnd::Trailer(t) => t,
            PayloadEnd::Aborted(why) => {
                let lost = lost();
                let why = display::peer_text(why);
                self.reporter.error(format!(
                    "receiving {} from {}: the sender aborted it: {why}; {lost}",
                    entry.path, self.peer
                ));
                self.verdict(
                    VerdictStatus::Failed,
                    Digest::None,
                    format!("aborted by the sender: {why}"),
                );
                return Ok(Some(Outcome::Failed));
            }
        };
        if self.check(trailer, bytes, &hashed.digest)? {
            return Ok(None);
        }
        let lost = lost();
        self.reporter.error(format!(
            "receiving {} from {}: integrity check failed: the {} of the {bytes} bytes received is {}, the sender's is {}; {lost}",
            entry.path,
            self.peer,
            self.algorithm.name(),
            hashed.digest.hex(),
            trailer.digest.hex()
        ));
        self.verdict(VerdictStatus::Mismatch, hashed.digest.clone(), "digest mismatch".into());
        Ok(Some(Outcome::Mismatch))
    }
}
