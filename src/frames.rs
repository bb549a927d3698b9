//! Control-frame I/O over a TCP socket: reading the preamble and frames
//! through a small buffer, and writing whole frames.
//!
//! Reads are buffered so that many small frames cost one `read`. The
//! buffer may therefore hold the first bytes of a payload that follows a
//! frame; the copy engine takes them with [`FrameReader::take_buffered`]
//! before it splices the rest straight from the socket, so the stream never
//! goes out of step. At most one buffer's worth of an entry (64 KiB) moves
//! that way, and `-v` reports how much did. Inside a stream, where a DATA
//! payload follows almost every header, [`FrameReader::expect_exact`]
//! reads no byte beyond the frame it returns.
//!
//! Once both ends have authenticated, every frame but DATA is sealed:
//! [`Encoder`] appends the tags as it encodes, [`FrameReader`] checks and
//! strips them before decoding.
//!
//! Every loop here notices SIGINT/SIGTERM (EINTR with the flag set) and
//! returns `ErrorKind::Interrupted` instead of retrying.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;

use anyhow::{Context, Result};

use crate::error::{self, Code, interrupted_io};
use crate::protocol::auth::{Opener, Sealer};
use crate::protocol::{
    FRAME_HEADER_LEN, FrameHeader, FrameType, MAX_CONTROL_LEN, Message, PREAMBLE_LEN, Preamble, TAG_LEN,
};
use crate::sys::{self, IoBuf, signals};

/// An early end of stream, as an `UnexpectedEof` I/O error so callers can
/// recognise it and say how far the transfer got.
fn closed(what: &str) -> anyhow::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string()).into()
}

/// Size of the control read buffer: the most payload bytes a read asks
/// for at once.
pub const READ_BUFFER: usize = 64 * 1024;

/// What the buffer holds: a whole control frame body is read into it, and
/// in a sealed session the largest is 64 KiB and its tag, a little more
/// than READ_BUFFER.
const CAPACITY: usize = {
    let sealed = MAX_CONTROL_LEN as usize + TAG_LEN;
    if sealed > READ_BUFFER { sealed } else { READ_BUFFER }
};

/// Retries an I/O step on EINTR unless the process is being interrupted,
/// and names a socket timeout for what it is.
pub fn retry<T>(mut step: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match step() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if signals::interrupted() {
                    return Err(interrupted_io());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for the peer",
                ));
            }
            other => return other,
        }
    }
}

/// Reads frames from a socket.
pub struct FrameReader {
    sock: TcpStream,
    buf: IoBuf,
    start: usize,
    end: usize,
    /// Set once the session is authenticated: frames must carry tags.
    opener: Option<Opener>,
    /// The body of the last HELLO read, for the transcript.
    hello_body: Vec<u8>,
    /// When set, every read waits at most until then (a total deadline,
    /// which a peer trickling bytes cannot stretch).
    deadline: Option<std::time::Instant>,
}

impl FrameReader {
    pub fn new(sock: TcpStream) -> FrameReader {
        FrameReader {
            sock,
            buf: IoBuf::new(CAPACITY),
            start: 0,
            end: 0,
            opener: None,
            hello_body: Vec::new(),
            deadline: None,
        }
    }

    /// Makes every read end by `deadline` (None: no limit, and the
    /// socket's read timeout is cleared).
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) -> io::Result<()> {
        self.deadline = deadline;
        if deadline.is_none() {
            self.sock.set_read_timeout(None)?;
        }
        Ok(())
    }

    /// From now on every frame but DATA must carry a valid tag.
    pub fn require_seals(&mut self, opener: Opener) {
        self.opener = Some(opener);
    }

    /// The body of the last HELLO read, exactly as it arrived.
    pub fn hello_body(&self) -> &[u8] {
        &self.hello_body
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    /// How many bytes are buffered and not yet consumed.
    pub fn buffered(&self) -> u64 {
        self.buffered_len() as u64
    }

    /// Makes sure `n` bytes (n <= CAPACITY) are buffered, reading as
    /// much as the socket has (or, with `exact`, no more than needed).
    /// Returns false on a clean end of stream before any of them arrived.
    fn want(&mut self, n: usize, exact: bool) -> Result<bool> {
        debug_assert!(n <= self.buf.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start + n > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.buffered_len() < n {
            // Room is guaranteed: start + n <= len and end < start + n.
            if let Some(deadline) = self.deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for the peer").into());
                }
                self.sock.set_read_timeout(Some(left))?;
            }
            let fd = self.sock.as_fd();
            let limit = if exact { self.start + n } else { self.buf.len() };
            let got = retry(|| sys::read_fd(fd, &mut self.buf[self.end..limit]))?;
            if got == 0 {
                if self.buffered_len() == 0 {
                    return Ok(false);
                }
                return Err(closed(&format!(
                    "connection closed in the middle of a frame ({} of {n} bytes)",
                    self.buffered_len()
                )));
            }
            self.end += got;
        }
        Ok(true)
    }

    fn consume(&mut self, n: usize) -> &[u8] {
        let s = self.start;
        self.start += n;
        &self.buf[s..s + n]
    }

    /// Reads and checks the peer's preamble.
    pub fn read_preamble(&mut self) -> Result<Preamble> {
        if !self.want(PREAMBLE_LEN, false)? {
            return Err(closed("connection closed before the peer said anything"));
        }
        let bytes: [u8; PREAMBLE_LEN] = self.consume(PREAMBLE_LEN).try_into()?;
        Ok(Preamble::decode(&bytes)?)
    }

    /// The next message, or None on a clean close between frames. For DATA
    /// only the header is consumed: the payload is next on the stream.
    pub fn next(&mut self) -> Result<Option<Message>> {
        self.next_frame(false)
    }

    fn next_frame(&mut self, exact: bool) -> Result<Option<Message>> {
        if !self.want(FRAME_HEADER_LEN, exact)? {
            return Ok(None);
        }
        let hdr: [u8; FRAME_HEADER_LEN] = self.consume(FRAME_HEADER_LEN).try_into()?;
        let header = FrameHeader::decode_in(&hdr, self.opener.is_some())?;
        if header.kind == FrameType::Data {
            return Ok(Some(Message::Data(header.len)));
        }
        let len = header.len as usize;
        if !self.want(len, exact)? && len > 0 {
            return Err(closed(&format!(
                "connection closed in the middle of a {:?} frame",
                header.kind
            )));
        }
        let at = self.start;
        self.start += len;
        let mut body = &self.buf[at..at + len];
        if let Some(opener) = self.opener.as_mut() {
            body = opener
                .open(header.kind, body)
                .map_err(|e| error::coded(Code::Auth, e.to_string()))?;
        } else if header.kind == FrameType::Hello {
            self.hello_body = body.to_vec();
        }
        let header = FrameHeader {
            kind: header.kind,
            len: body.len() as u32,
        };
        Ok(Some(Message::decode(header, body)?))
    }

    /// Like [`next`](Self::next), but a close is an error.
    pub fn expect(&mut self) -> Result<Message> {
        self.next()?.ok_or_else(|| closed("connection closed by the peer"))
    }

    /// Like [`expect`](Self::expect), but reads nothing past the frame, so
    /// the payload of a DATA frame stays in the socket for splice.
    pub fn expect_exact(&mut self) -> Result<Message> {
        self.next_frame(true)?
            .ok_or_else(|| closed("connection closed by the peer"))
    }

    /// True when a whole frame is already buffered, so reading it will not
    /// block (the receiver flushes its queued verdicts before it blocks).
    pub fn has_frame(&self) -> bool {
        let b = &self.buf[self.start..self.end];
        if b.len() < FRAME_HEADER_LEN {
            return false;
        }
        // The length is the peer's and not checked yet: compare it with
        // what is buffered without adding to it.
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        b[0] == FrameType::Data as u8 || usize::try_from(len).is_ok_and(|len| b.len() - FRAME_HEADER_LEN >= len)
    }

    /// Buffers exactly `n` payload bytes (n <= READ_BUFFER) for small files,
    /// whose bytes mostly arrived with their header already; take them with
    /// [`FrameReader::take_buffered`]. On failure whatever did arrive stays
    /// buffered, so [`FrameReader::buffered`] says how far it got.
    pub fn buffer_small(&mut self, n: usize) -> Result<()> {
        if n == 0 || self.want(n, false)? {
            return Ok(());
        }
        Err(closed("connection closed by the peer"))
    }

    /// Takes up to `max` already-buffered bytes (payload that arrived with
    /// the preceding frame).
    pub fn take_buffered(&mut self, max: u64) -> &[u8] {
        let n = usize::try_from(max).unwrap_or(usize::MAX).min(self.buffered_len());
        self.consume(n)
    }
}

/// Writes all of `bytes` to `fd`, interrupt-aware.
pub fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = retry(|| sys::write_fd(fd, bytes))?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote zero bytes"));
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Encodes the frames one end writes, sealing them once the session is
/// authenticated.
#[derive(Default)]
pub struct Encoder {
    sealer: Option<Sealer>,
}

impl Encoder {
    /// From now on every frame but DATA is sealed.
    pub fn seal_with(&mut self, sealer: Sealer) {
        self.sealer = Some(sealer);
    }

    /// Appends `msg` as a whole frame (for DATA, only its header) to `out`.
    pub fn push(&mut self, msg: &Message, out: &mut Vec<u8>) {
        let start = out.len();
        msg.encode(out);
        if let Some(sealer) = self.sealer.as_mut() {
            sealer.seal(out, start);
        }
    }

    /// Sends one whole control message at once.
    pub fn send(&mut self, sock: &TcpStream, msg: &Message) -> Result<()> {
        let mut buf = Vec::with_capacity(64);
        self.push(msg, &mut buf);
        write_all(sock.as_fd(), &buf).with_context(|| format!("sending {:?}", msg.frame_type()))
    }
}

/// Sends our preamble.
pub fn send_preamble(sock: &TcpStream) -> Result<()> {
    write_all(sock.as_fd(), &Preamble::ours().encode()).context("sending the preamble")
}
