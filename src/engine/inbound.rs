//! Receiver side of the copy engine: lands exactly `n` payload bytes from
//! the connection in a file (at explicit offsets) or on an output stream,
//! or, for a raw stream (`zcp recv --raw`), everything up to its end.
//!
//! The zero-copy route is socket → pipe → destination with `splice`; the
//! pipe is grown to pipe-max-size, since with the default 64 KiB pipe the
//! same path measured at a quarter to half the speed. When stdout is a
//! pipe and nothing else needs the bytes, the socket is spliced straight
//! into it. A verified stream (stdout) is `tee`d into the hash pipe on its
//! way through our pipe.
//!
//! If the destination refuses splice after bytes are already in our pipe,
//! those bytes are read back out and written by hand before switching to
//! read/write, so a fallback never loses or reorders data.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::{Policy, RW_BUFFER, Report, clamp, disabled, peer_closed, settle, unsupported};
use crate::checksum;
use crate::frames::FrameReader;
use crate::sys::{self, IoBuf, Pipe, signals};

/// Where landed bytes go.
pub enum Target<'a> {
    /// A staged file, written at `offset`, which advances.
    File { file: &'a File, offset: u64 },
    /// An output stream (stdout). `hash` is the write end of a
    /// [`checksum::PipeHasher`] when verifying.
    Stream {
        out: BorrowedFd<'a>,
        out_is_pipe: bool,
        hash: Option<&'a File>,
    },
    /// Nowhere: the payload of an entry the receiver will not store is
    /// read off the connection and dropped, keeping the stream in step.
    Discard,
}

impl Target<'_> {
    fn direct(&self) -> bool {
        matches!(
            self,
            Target::Stream {
                out_is_pipe: true,
                hash: None,
                ..
            }
        )
    }

    /// Writes bytes that did not come through our pipe (control buffer,
    /// read/write path); `hashed` of them are already in the hash pipe.
    fn write(&mut self, bytes: &[u8], hashed: usize) -> io::Result<()> {
        match self {
            Target::File { file, offset } => {
                file.write_all_at(bytes, *offset)?;
                *offset += bytes.len() as u64;
                Ok(())
            }
            Target::Stream { out, hash, .. } => {
                write_out(*out, bytes)?;
                if let Some(h) = hash {
                    checksum::feed(h, &bytes[hashed.min(bytes.len())..])?;
                }
                Ok(())
            }
            Target::Discard => Ok(()),
        }
    }

    /// Accounts for a hole of `n` zero bytes: a file keeps it as a hole
    /// (the offset moves, nothing is written); a stream gets real zeros.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        match self {
            Target::File { offset, .. } => {
                *offset += n;
                Ok(())
            }
            Target::Stream { .. } => {
                static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(ZEROS.len() as u64) as usize;
                    self.write(&ZEROS[..k], 0)?;
                    left -= k as u64;
                }
                Ok(())
            }
            Target::Discard => Ok(()),
        }
    }
}

/// Writes all of `bytes` to an output stream that may be non-blocking.
fn write_out(out: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::write_fd(out, bytes) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote zero bytes")),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                settle(sys::wait_writable(out))?;
            }
            Err(e) => {
                settle(Err::<(), _>(e))?;
            }
        }
    }
    Ok(())
}

/// Waits until `sock` has something to read (bytes, its end, an error),
/// for as long as its read timeout (SO_RCVTIMEO, the idle timeout) lets a
/// read wait. Splicing the socket straight into a non-blocking stdout pipe
/// needs this: there EAGAIN would mean either a full stdout or a silent
/// peer, and only this way is it always the first.
fn await_input(sock: BorrowedFd<'_>) -> io::Result<()> {
    let Some(timeout) = socket2::SockRef::from(&sock).read_timeout()? else {
        return Ok(());
    };
    let deadline = Instant::now() + timeout;
    loop {
        if signals::interrupted() {
            return Err(crate::error::interrupted_io());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if sys::readable_within(sock, left)? {
            return Ok(());
        }
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for the peer",
            ));
        }
    }
}

/// Lands payloads for one connection; keeps its pipe and buffer between
/// entries.
pub struct Lander {
    policy: Policy,
    pipe: Option<Pipe>,
    buf: IoBuf,
}

/// Outcome of one splice round.
enum Round {
    /// Moved this many bytes to the destination.
    Moved(u64),
    /// The peer ended the stream; nothing was moved.
    End,
    /// The destination or socket does not support splice; switch over.
    Unsupported(String),
}

impl Lander {
    pub fn new(policy: Policy) -> Lander {
        Lander {
            policy,
            pipe: None,
            buf: IoBuf::new(0),
        }
    }

    /// The pipe capacity this lander asks for.
    pub fn pipe_size(&self) -> usize {
        self.policy.pipe_size
    }

    /// Whether `out` (stdout) is a pipe, which the socket can then be
    /// spliced straight into; such a pipe is grown to [`Lander::pipe_size`].
    pub fn ready_stream_out(&self, out: BorrowedFd<'_>) -> bool {
        let is_pipe = sys::dup_file(out)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| sys::FdKind::of(&m) == sys::FdKind::Pipe);
        if is_pipe {
            sys::grow_pipe(out, self.pipe_size());
        }
        is_pipe
    }

    /// A fresh report for an entry landing in `target`, with the route the
    /// zero-copy path takes and any reason it will not be used.
    pub fn start_report(&self, target: &Target<'_>) -> Report {
        let route = match target {
            Target::File { .. } => "socket → pipe → file",
            Target::Stream { .. } if target.direct() => "socket → stdout pipe",
            Target::Stream { hash: Some(_), .. } => "socket → pipe → stdout, tee → hash",
            Target::Stream { .. } => "socket → pipe → stdout",
            Target::Discard => "socket → discarded",
        };
        let fallback = if !self.policy.zerocopy {
            Some("--no-zerocopy was given".to_string())
        } else if disabled("splice") {
            Some("splice was refused earlier in this process".to_string())
        } else {
            None
        };
        Report {
            route,
            fallback,
            ..Report::default()
        }
    }

    fn scratch(&mut self, at_least: usize) -> &mut [u8] {
        if self.buf.len() < at_least.max(RW_BUFFER) {
            self.buf = IoBuf::new(at_least.max(RW_BUFFER));
        }
        &mut self.buf
    }

    /// Moves exactly `n` bytes from the connection to `target`, first any
    /// the reader already buffered, then from the socket. `progress` gets
    /// the size of every step, after the bytes reached the destination.
    pub fn land(
        &mut self,
        reader: &mut FrameReader,
        target: &mut Target<'_>,
        n: u64,
        report: &mut Report,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<()> {
        let early = reader.take_buffered(n);
        let left = n - early.len() as u64;
        if !early.is_empty() {
            target.write(early, 0)?;
            report.from_buffer += early.len() as u64;
            progress(early.len() as u64);
        }
        self.pump(reader.socket().as_fd(), target, Some(left), report, progress)
            .map(|_| ())
    }

    /// Moves everything `sock` delivers to `target` until the peer ends
    /// the stream (FIN), and returns how many bytes that was: a raw
    /// stream, which announces no length. `progress` as for [`Lander::land`].
    pub fn land_to_end(
        &mut self,
        sock: BorrowedFd<'_>,
        target: &mut Target<'_>,
        report: &mut Report,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<u64> {
        self.pump(sock, target, None, report, progress)
    }

    /// Moves `limit` bytes from `sock` to `target` (an early end of the
    /// stream is an error), or with no limit everything up to the end of
    /// the stream. Returns the bytes moved.
    fn pump(
        &mut self,
        sock: BorrowedFd<'_>,
        target: &mut Target<'_>,
        limit: Option<u64>,
        report: &mut Report,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let left = match limit {
                Some(n) => n - total,
                None => u64::MAX,
            };
            if left == 0 {
                return Ok(total);
            }
            if signals::interrupted() {
                return Err(crate::error::interrupted_io());
            }
            let round = if report.fallback.is_none() && !matches!(target, Target::Discard) {
                match self.splice_round(sock, target, left, report) {
                    Ok(round) => round,
                    Err(e) => {
                        // Whatever sits in the pipe belongs to a failed
                        // entry; never let it leak into another one.
                        self.pipe = None;
                        return Err(e);
                    }
                }
            } else {
                let want = clamp(left, RW_BUFFER);
                let buf = self.scratch(want);
                match settle(sys::read_fd(sock, &mut buf[..want]))? {
                    Some(0) => Round::End,
                    Some(k) => {
                        target.write(&self.buf[..k], 0)?;
                        report.by_read_write += k as u64;
                        Round::Moved(k as u64)
                    }
                    None => continue,
                }
            };
            match round {
                Round::Moved(k) => {
                    total += k;
                    progress(k);
                }
                Round::Unsupported(why) => report.fallback = Some(why),
                // An interruption ends reads by shutting the socket down
                // (signals::wake_on_interrupt): that end is not the peer's.
                Round::End if signals::interrupted() => return Err(crate::error::interrupted_io()),
                Round::End if limit.is_none() => return Ok(total),
                Round::End => return Err(peer_closed()),
            }
        }
    }

    /// One splice round: socket → (pipe →) destination. Returns how many
    /// bytes reached the destination.
    fn splice_round(
        &mut self,
        sock: BorrowedFd<'_>,
        target: &mut Target<'_>,
        left: u64,
        report: &mut Report,
    ) -> io::Result<Round> {
        if target.direct() {
            let Target::Stream { out, .. } = *target else {
                return Ok(Round::Moved(0));
            };
            await_input(sock)?;
            return match sys::splice(sock, None, out, None, clamp(left, self.policy.pipe_size), false) {
                Ok(0) => Ok(Round::End),
                Ok(k) => {
                    report.by_splice += k as u64;
                    Ok(Round::Moved(k as u64))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket had input (await_input), so only a
                    // non-blocking stdout pipe can be full.
                    settle(sys::wait_writable(out))?;
                    Ok(Round::Moved(0))
                }
                Err(e) => match unsupported("splice", &e, "this socket and stdout") {
                    Some(why) if report.by_splice == 0 => Ok(Round::Unsupported(why)),
                    _ => settle(Err::<usize, _>(e)).map(|_| Round::Moved(0)),
                },
            };
        }

        if self.pipe.is_none() {
            self.pipe = Some(Pipe::new(self.policy.pipe_size)?);
        }
        let Some(pipe) = self.pipe.as_ref() else {
            return Ok(Round::Moved(0));
        };
        let filled = match sys::splice(sock, None, &pipe.write, None, clamp(left, pipe.capacity), false) {
            Ok(0) => return Ok(Round::End),
            Ok(k) => k,
            Err(e) => {
                return match unsupported("splice", &e, "this socket") {
                    Some(why) if report.by_splice == 0 => Ok(Round::Unsupported(why)),
                    _ => settle(Err::<usize, _>(e)).map(|_| Round::Moved(0)),
                };
            }
        };
        // Drain the pipe. For a verified stream each step first tees the
        // bytes at the head of the pipe into the hash pipe, then splices
        // exactly those out; `teed` counts head bytes already duplicated,
        // so a partial splice never gets them hashed twice.
        let hash = match target {
            Target::Stream { hash, .. } => *hash,
            Target::File { .. } | Target::Discard => None,
        };
        let mut in_pipe = filled;
        let mut teed = 0usize;
        while in_pipe > 0 {
            let (call, step) = match (hash, &mut *target) {
                (Some(h), _) if teed == 0 => ("tee", sys::tee(&pipe.read, h, in_pipe, false).map(|t| (t, 0))),
                (_, Target::File { file, offset }) => (
                    "splice",
                    sys::splice(&pipe.read, None, *file, Some(offset), in_pipe, false).map(|k| (0, k)),
                ),
                (_, Target::Discard) => return Err(io::Error::other("internal error: splicing into nothing")),
                (_, Target::Stream { out, .. }) => {
                    let want = if hash.is_some() { teed } else { in_pipe };
                    (
                        "splice",
                        sys::splice(&pipe.read, None, *out, None, want, false).map(|k| (0, k)),
                    )
                }
            };
            match step {
                Ok((t, k)) => {
                    teed = teed + t - k.min(teed);
                    in_pipe -= k;
                    report.by_splice += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Target::Stream { out, .. } = target {
                        settle(sys::wait_writable(*out))?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    settle(Err::<(), _>(e))?;
                }
                Err(e) => {
                    let Some(why) = unsupported(call, &e, "this destination").filter(|_| report.by_splice == 0) else {
                        return Err(e);
                    };
                    // Rescue the bytes already in our pipe, in order.
                    self.rescue(target, in_pipe, teed)?;
                    report.by_read_write += in_pipe as u64;
                    report.fallback = Some(why);
                    return Ok(Round::Moved(filled as u64));
                }
            }
        }
        Ok(Round::Moved(filled as u64))
    }

    /// Reads `count` bytes back out of our pipe and writes them by hand;
    /// the first `hashed` of them were already tee'd into the hash pipe.
    fn rescue(&mut self, target: &mut Target<'_>, count: usize, hashed: usize) -> io::Result<()> {
        let Some(pipe) = self.pipe.take() else {
            return Ok(());
        };
        let buf = self.scratch(count);
        let mut got = 0;
        while got < count {
            match settle(sys::read_fd(pipe.read.as_fd(), &mut buf[got..count]))? {
                Some(0) => return Err(io::Error::other("pipe lost bytes during fallback")),
                Some(k) => got += k,
                None => {}
            }
        }
        target.write(&self.buf[..count], hashed)
    }
}
