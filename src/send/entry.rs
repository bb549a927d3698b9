//! Sending one walked entry: its ENTRY frame, its payload by the cheapest
//! route, and its TRAILER.
//!
//! * Directories, links and small files are appended to an [`Outbox`] and
//!   written many at a time: a tree of small files costs one `write` per
//!   batch, not several syscalls per file.
//! * A larger file flushes the outbox and goes by `sendfile`, hashed from
//!   the page cache on a worker thread; a file with holes goes as DATA and
//!   HOLE frames found with SEEK_DATA/SEEK_HOLE; stdin goes as in the core.
//! * A file that changed while it was sent, or an input that failed to
//!   read, ends its entry with ABORT at a frame boundary: that entry fails,
//!   the session goes on. A file that ends early (it shrank) has the rest
//!   of its raw payload or DATA frame padded with zeros to get there; one
//!   that ends under the hashing thread has been sent whole and is
//!   aborted like any other change.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;

use anyhow::{Context, Result, anyhow};

use super::source::{Changed, Fingerprint, Source};
use super::walk::{Body, Item};
use crate::checksum::{Algorithm, Digest, FileHasher, Hashed, PipeHasher};
use crate::engine::{Policy, Report, outbound};
use crate::frames::{self, Encoder};
use crate::progress::Reporter;
use crate::protocol::{Aborted, Entry, EntryKind, MAX_DATA_LEN, Message, Payload, RelPath, Trailer, WireError};
use crate::sys;

/// Batched bytes are written once they reach this size.
const BATCH: usize = 256 * 1024;

/// Control frames and small payloads waiting to be written together.
pub struct Outbox {
    buf: Vec<u8>,
    /// Encodes (and, in an authenticated session, seals) every frame.
    encoder: Encoder,
}

impl Outbox {
    pub fn new(encoder: Encoder) -> Outbox {
        Outbox {
            buf: Vec::new(),
            encoder,
        }
    }

    pub(super) fn push(&mut self, msg: &Message) {
        self.encoder.push(msg, &mut self.buf);
    }

    /// Sends `msg` at once, after whatever is queued.
    pub fn send(&mut self, sock: &TcpStream, msg: &Message) -> Result<()> {
        self.push(msg);
        self.flush(sock)
    }

    /// Queues an entry for `path` that is aborted before any payload.
    pub fn push_aborted(&mut self, path: RelPath, why: &Abort) {
        self.push(&Message::Entry(Entry {
            kind: EntryKind::File,
            path,
            payload: Payload::Stream,
            mode: None,
            mtime: None,
            linked: false,
        }));
        self.push(&Message::Abort(why.wire()));
    }

    /// Queues DONE: no more entries.
    pub fn push_done(&mut self) {
        self.push(&Message::Done);
    }

    /// Writes everything queued.
    pub fn flush(&mut self, sock: &TcpStream) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = frames::write_all(sock.as_fd(), &self.buf).map_err(to_receiver);
        self.buf.clear();
        result
    }
}

/// Why the sender gave up on an entry; its text is the ABORT frame's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abort {
    /// The source changed while its bytes were being sent.
    Changed(Changed),
    /// The source could not be read or inspected.
    Failed(String),
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abort::Changed(changed) => changed.fmt(f),
            Abort::Failed(why) => f.write_str(why),
        }
    }
}

impl Abort {
    /// The ABORT frame that tells the receiver.
    pub fn wire(&self) -> Aborted {
        Aborted::new(self.to_string(), matches!(self, Abort::Changed(_)))
    }
}

/// What sending one entry produced on our side.
pub struct Sent {
    pub bytes: u64,
    pub digest: Digest,
    pub report: Report,
    /// Why we gave up on the entry (it was sent as ABORT).
    pub aborted: Option<Abort>,
    /// Bytes the receiver already held from an earlier session, not sent
    /// again (included in `bytes`).
    pub resumed: u64,
}

impl Sent {
    pub fn aborted(why: Abort) -> Sent {
        Sent {
            aborted: Some(why),
            ..Sent::nothing()
        }
    }

    pub(super) fn nothing() -> Sent {
        Sent {
            bytes: 0,
            digest: Digest::None,
            report: Report::default(),
            aborted: None,
            resumed: 0,
        }
    }
}

/// How an entry's payload is moved, shared by every kind of body.
pub struct Link<'a> {
    pub sock: &'a TcpStream,
    pub outbox: &'a mut Outbox,
    pub algorithm: Algorithm,
    pub policy: Policy,
    pub reporter: &'a Reporter,
    /// How long the input may stay idle before a PING goes out (the
    /// receiver's idle timeout allows it three of them).
    pub ping_every: Option<std::time::Duration>,
    /// Further connections of the session, which carry blocks too.
    pub streams: &'a mut [super::streams::Stream],
}

impl Link<'_> {
    /// Sends `item` (entry, payload, trailer).
    pub fn send(&mut self, item: Item) -> Result<Sent> {
        let entry = Message::Entry(item.entry);
        match item.body {
            Body::None => {
                self.outbox.push(&entry);
                self.batch_done()?;
                Ok(Sent::nothing())
            }
            Body::Small(data, digest) => {
                let n = data.len() as u64;
                self.outbox.push(&entry);
                self.outbox.buf.extend_from_slice(&data);
                self.outbox.push(&Message::Trailer(Trailer {
                    bytes: n,
                    digest: digest.clone(),
                }));
                self.batch_done()?;
                self.reporter.advance(n);
                Ok(Sent {
                    bytes: n,
                    digest,
                    report: Report {
                        by_read_write: n,
                        route: "file → buffer → socket (small file, batched)",
                        ..Report::default()
                    },
                    aborted: None,
                    resumed: 0,
                })
            }
            Body::File(file, len, fingerprint) => {
                self.start(&entry)?;
                self.file(&file, 0, len, &fingerprint, &item.shown)
            }
            Body::Sparse(file, len, fingerprint) => {
                self.start(&entry)?;
                self.sparse(&file, len, &fingerprint, &item.shown)
            }
            Body::Stream(source) => {
                self.start(&entry)?;
                match (source.range, source.fingerprint) {
                    (Some((start, len)), Some(fp)) => self.file(&source.file, start, len, &fp, &source.shown),
                    _ => self.stream(&source),
                }
            }
        }
    }

    /// Sends one control frame of the entry.
    pub(super) fn send_frame(&mut self, msg: &Message) -> Result<()> {
        self.outbox.send(self.sock, msg)
    }

    fn batch_done(&mut self) -> Result<()> {
        if self.outbox.buf.len() >= BATCH {
            self.outbox.flush(self.sock)?;
        }
        Ok(())
    }

    /// Flushes the batch, then sends `entry` on its own.
    fn start(&mut self, entry: &Message) -> Result<()> {
        self.outbox.push(entry);
        self.outbox.flush(self.sock)
    }

    /// Ends the payload: ABORT when we gave up on it (the source changed
    /// under us), else the TRAILER with our count and digest.
    pub(super) fn end(&mut self, sent: u64, digest: Digest, report: Report, aborted: Option<Abort>) -> Result<Sent> {
        match &aborted {
            Some(why) => self.send_frame(&Message::Abort(why.wire()))?,
            None => self.send_frame(&Message::Trailer(Trailer {
                bytes: sent,
                digest: digest.clone(),
            }))?,
        }
        Ok(Sent {
            bytes: sent,
            digest,
            report,
            aborted,
            resumed: 0,
        })
    }

    /// `len` raw bytes of `file` from `start` by sendfile.
    fn file(&mut self, file: &File, start: u64, len: u64, fingerprint: &Fingerprint, shown: &str) -> Result<Sent> {
        let hasher = FileHasher::spawn(file.try_clone()?, self.algorithm, start)?;
        let mut done = 0u64;
        let reporter = self.reporter;
        let sent = outbound::send_file(self.sock, file, start, len, self.policy, &mut |n| {
            done += n;
            hasher.advance(start + done);
            reporter.advance(n);
        });
        let report = match sent {
            Ok(report) => report,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // The file shrank under us. The receiver expects `len` raw
                // bytes: pad them with zeros to reach the frame boundary,
                // then abort this file alone; the session goes on.
                self.pad(len - done).map_err(to_receiver)?;
                drop(hasher);
                let why = Abort::Changed(fingerprint.ended(file, shown, done, len));
                return self.end(done, Digest::None, Report::default(), Some(why));
            }
            Err(e) if reading_failed(&e) => {
                // The file could not be read (EIO on a failing disk), not
                // the connection: pad and abort this file alone, so the
                // receiver hears why at once and the session goes on. If
                // the padding cannot be written the connection is the
                // problem after all.
                if self.pad(len - done).is_err() {
                    return Err(to_receiver(e));
                }
                drop(hasher);
                let why = Abort::Failed(format!("reading {shown}: {e}"));
                return self.end(done, Digest::None, Report::default(), Some(why));
            }
            Err(e) => return Err(to_receiver(e)),
        };
        let (digest, aborted) = vouch(self.catch_up(hasher), fingerprint, file, shown)?;
        self.end(done, digest, report, aborted)
    }

    /// Waits for the hash of a payload already sent, which may lag behind
    /// a fast link: the receiver, waiting for the TRAILER, hears PING
    /// meanwhile, so its idle timeout only cuts off a sender that is gone.
    fn catch_up(&mut self, hasher: FileHasher) -> io::Result<Hashed> {
        let (sock, outbox) = (self.sock, &mut *self.outbox);
        hasher.finish_calling(self.ping_every, || {
            outbox.send(sock, &Message::Ping).map_err(io::Error::other)
        })
    }

    /// Writes `n` zero bytes: the rest of a raw payload whose source
    /// ended early, which the receiver discards.
    pub(super) fn pad(&self, n: u64) -> std::io::Result<()> {
        pad(self.sock, n)
    }

    /// A file with holes: DATA frames for its data regions (each moved by
    /// sendfile), HOLE frames for the gaps.
    fn sparse(&mut self, file: &File, len: u64, fingerprint: &Fingerprint, shown: &str) -> Result<Sent> {
        let hasher = FileHasher::spawn(file.try_clone()?, self.algorithm, 0)?;
        let mut report = Report {
            route: "file → socket, holes skipped",
            ..Report::default()
        };
        if let Some(at) = self.regions(file, len, &hasher, &mut report, shown)? {
            drop(hasher);
            let why = Abort::Changed(fingerprint.ended(file, shown, at, len));
            return self.end(at, Digest::None, Report::default(), Some(why));
        }
        let (digest, aborted) = vouch(self.catch_up(hasher), fingerprint, file, shown)?;
        self.end(len, digest, report, aborted)
    }

    /// The frames of a sparse file up to `len`. Returns where the file
    /// ended if it shrank under us: a DATA frame it left short is padded
    /// with zeros, so the entry can still be aborted at a frame boundary.
    fn regions(
        &mut self,
        file: &File,
        len: u64,
        hasher: &FileHasher,
        report: &mut Report,
        shown: &str,
    ) -> Result<Option<u64>> {
        let mut at = 0u64;
        while at < len {
            let data = sys::next_data(file, at)
                .with_context(|| format!("looking for data in {shown}"))?
                .unwrap_or(len)
                .min(len);
            if data > at {
                self.send_frame(&Message::Hole(data - at))?;
                self.reporter.advance(data - at);
                at = data;
                hasher.advance(at);
                continue;
            }
            let Some(hole) = sys::next_hole(file, at).with_context(|| format!("looking for holes in {shown}"))? else {
                return Ok(Some(at));
            };
            let hole = hole.min(len);
            while at < hole {
                let n = (hole - at).min(u64::from(MAX_DATA_LEN));
                self.send_frame(&Message::Data(n as u32))?;
                let reporter = self.reporter;
                let mut moved = 0u64;
                let part = outbound::send_file(self.sock, file, at, n, self.policy, &mut |k| {
                    moved += k;
                    hasher.advance(at + moved);
                    reporter.advance(k);
                });
                match part {
                    Ok(part) => merge(report, &part),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.pad(n - moved).map_err(to_receiver)?;
                        return Ok(Some(at + moved));
                    }
                    Err(e) => return Err(to_receiver(e)),
                }
                at += n;
            }
        }
        Ok(None)
    }

    /// A pipe or other unsized input as DATA frames.
    fn stream(&mut self, source: &Source) -> Result<Sent> {
        let hasher = PipeHasher::spawn(self.algorithm, self.policy.pipe_size)?;
        let mut input = outbound::StreamSource::new(
            source.file.as_fd(),
            source.kind,
            &source.shown,
            hasher.input(),
            self.policy,
        );
        input.idle = self.ping_every;
        let mut total = 0u64;
        loop {
            let n = match input.fill(MAX_DATA_LEN as usize, self.sock) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.send_frame(&Message::Ping)?;
                    continue;
                }
                // The receiver went away, not the input: nobody to tell.
                Err(e) if outbound::hung_up(&e) => return Err(e.into()),
                Err(e) => {
                    // The session cannot go on without its input: at a frame
                    // boundary the receiver can be told why, in one ERROR.
                    let why = WireError {
                        code: 1,
                        message: format!("reading {}: {e}", source.shown),
                    };
                    let _ = self.send_frame(&Message::Error(why));
                    return Err(e).with_context(|| format!("reading {}", source.shown));
                }
            };
            if n == 0 {
                break;
            }
            self.send_frame(&Message::Data(u32::try_from(n)?))?;
            input.forward(self.sock, n).map_err(to_receiver)?;
            total += n as u64;
            self.reporter.advance(n as u64);
        }
        let report = std::mem::take(&mut input.report);
        drop(input);
        let hashed = hasher.finish().with_context(|| format!("hashing {}", source.shown))?;
        if self.algorithm != Algorithm::None && hashed.bytes != total {
            return Err(anyhow!(
                "hashed {} bytes of {} but sent {total}",
                hashed.bytes,
                source.shown
            ));
        }
        self.end(total, hashed.digest, report, None)
    }
}

/// Writes `n` zero bytes on `sock`: the rest of a raw payload whose
/// source ended early, which the receiver discards.
pub(super) fn pad(sock: &TcpStream, mut n: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 16];
    while n > 0 {
        let k = n.min(zeros.len() as u64) as usize;
        frames::write_all(sock.as_fd(), &zeros[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// An error writing to the socket (frames, `send_file`, `forward`; none
/// of them reads anything that could fail this way but the connection): a
/// broken pipe or a reset names the receiver, so that "sending stdin:
/// Broken pipe" is not mistaken for a failing input pipe.
pub(super) fn to_receiver(err: impl Into<anyhow::Error>) -> anyhow::Error {
    use std::io::ErrorKind;
    let err = err.into();
    let gone = err
        .chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .find(|e| matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset))
        .map(|e| e.to_string());
    match gone {
        Some(why) => anyhow!("the receiver closed the connection: {why}"),
        None => err,
    }
}

/// Whether the bytes of `file` just sent can be vouched for, once its
/// hashing thread is done: our digest if it is as it was when walked, else
/// why not. A file that ended under the hashing thread changed too.
fn vouch(
    hashed: io::Result<Hashed>,
    fingerprint: &Fingerprint,
    file: &File,
    shown: &str,
) -> Result<(Digest, Option<Abort>)> {
    let why = match (hashed, fingerprint.check(file, shown)) {
        (Ok(hashed), Ok(None)) => return Ok((hashed.digest, None)),
        (_, Ok(Some(changed))) => Abort::Changed(changed),
        (Err(e), _) if e.kind() == io::ErrorKind::UnexpectedEof => Abort::Changed(Changed::because(shown, e)),
        (Err(e), _) => return Err(e).with_context(|| format!("hashing {shown}")),
        (Ok(_), Err(e)) => Abort::Failed(format!("{e:#}")),
    };
    Ok((Digest::None, Some(why)))
}

/// Whether a failed `send_file` failed reading the file rather than
/// writing the socket or being interrupted: only EIO says so for sure.
pub(super) fn reading_failed(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EIO) && !crate::sys::signals::interrupted()
}

/// Adds one region's byte counts to a file's report.
pub(super) fn merge(into: &mut Report, part: &Report) {
    into.by_sendfile += part.by_sendfile;
    into.by_read_write += part.by_read_write;
    if into.fallback.is_none() {
        into.fallback.clone_from(&part.fallback);
    }
}
