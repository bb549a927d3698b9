//! Sender side of the copy engine: moves a file range or a stream onto the
//! socket.
//!
//! * [`send_file`]: `sendfile` in [`SENDFILE_CHUNK`] calls; read/write with
//!   `pread` as the fallback.
//! * [`StreamSource`]: a pipe (stdin) of unknown length, moved in chunks
//!   that the caller frames. With a hash pipe, `tee` duplicates each chunk
//!   into it and `splice` then moves the same bytes to the socket; without
//!   one, `splice` stages the chunk in a broker pipe first, because the
//!   frame header must announce the chunk's length before its bytes.
//!   While the input is idle it waits in `poll` together with the socket,
//!   so a receiver that gives up is noticed even if the producer is silent.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use super::{Policy, RW_BUFFER, Report, SENDFILE_CHUNK, clamp, disabled, settle, unsupported};
use crate::checksum;
use crate::display;
use crate::frames::write_all;
use crate::sys::{self, FdKind, IoBuf, Pipe, signals};

/// The error for a source file that ended before its announced size.
fn shrank(sent: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("source changed while being sent: it ended after {sent} of {len} bytes"),
    )
}

/// What [`StreamSource::fill`] fails with when the receiver hung up while
/// the input was idle: the connection failed, not the input.
#[derive(Debug)]
struct HungUp;

impl std::fmt::Display for HungUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the receiver closed the connection")
    }
}

impl std::error::Error for HungUp {}

/// True if `err` is [`StreamSource::fill`] noticing that the receiver
/// hung up, rather than a failure to read the input.
pub fn hung_up(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<HungUp>())
}

/// Sends bytes `[start, start + len)` of `file` to `sock`. `progress` gets
/// the size of every step, after the bytes were handed to the socket.
pub fn send_file(
    sock: &TcpStream,
    file: &File,
    start: u64,
    len: u64,
    policy: Policy,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Report> {
    let mut report = Report {
        route: "file → socket",
        ..Report::default()
    };
    let mut zerocopy = policy.zerocopy && !disabled("sendfile");
    if !policy.zerocopy {
        report.fallback = Some("--no-zerocopy was given".into());
    } else if !zerocopy {
        report.fallback = Some("sendfile was refused earlier in this process".into());
    }
    let end = start + len;
    let mut off = start;
    let mut buf: Option<IoBuf> = None;
    while off < end {
        if signals::interrupted() {
            return Err(crate::error::interrupted_io());
        }
        if zerocopy {
            let before = off;
            let count = clamp(end - off, SENDFILE_CHUNK);
            match settle(sys::sendfile(sock, file, &mut off, count)) {
                Ok(Some(0)) => return Err(shrank(off - start, len)),
                Ok(Some(n)) => {
                    report.by_sendfile += n as u64;
                    progress(n as u64);
                }
                Ok(None) => {
                    // EINTR: the kernel may still have sent some bytes.
                    if off > before {
                        report.by_sendfile += off - before;
                        progress(off - before);
                    }
                }
                Err(e) => match unsupported("sendfile", &e, "this file and socket") {
                    Some(why) if report.by_sendfile == 0 => {
                        off = before;
                        report.fallback = Some(why);
                        zerocopy = false;
                    }
                    _ => return Err(e),
                },
            }
        } else {
            let buf = buf.get_or_insert_with(|| IoBuf::new(RW_BUFFER));
            let want = clamp(end - off, buf.len());
            let n = match settle(file.read_at(&mut buf[..want], off))? {
                Some(0) => return Err(shrank(off - start, len)),
                Some(n) => n,
                None => continue,
            };
            write_all(sock.as_fd(), &buf[..n])?;
            off += n as u64;
            report.by_read_write += n as u64;
            progress(n as u64);
        }
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamMode {
    /// tee into the hash pipe, then splice from the input.
    Tee,
    /// splice into a broker pipe, then splice from it.
    Broker,
    /// read into a buffer (and feed the hash pipe), then write.
    ReadWrite,
}

/// A stream of unknown length (stdin) sent in chunks:
/// `let n = src.fill(max)?;` then announce `n`, then `src.forward(sock, n)`.
pub struct StreamSource<'a> {
    input: BorrowedFd<'a>,
    hash: Option<&'a File>,
    mode: StreamMode,
    broker: Option<Pipe>,
    chunk: usize,
    buf: Option<IoBuf>,
    pub report: Report,
    /// How long to wait for input before `fill` returns TimedOut, so the
    /// caller can tell the receiver the session is alive.
    pub idle: Option<std::time::Duration>,
    /// Whether `fill` fails when the peer shuts down its sending side while
    /// the input is idle: a zcp receiver never does that mid-session, but a
    /// raw peer may do it at once (`nc -N` whose own stdin is empty) and
    /// still read everything we send.
    pub watch_peer: bool,
}

/// What a stream input that is not a pipe is, for `-v`: its route and the
/// reason it moves by read/write, e.g. ("character device → socket",
/// "stdin is the character device /dev/null, and zero-copy needs ...").
/// `name` is how messages show the input (`stdin` or its path).
fn not_a_pipe(name: &str, input: BorrowedFd<'_>, kind: FdKind) -> (&'static str, String) {
    const WHY: &str = "and zero-copy needs a regular file (sendfile) or a pipe (splice)";
    let (route, noun) = match kind {
        FdKind::CharDevice if input.is_terminal() => ("terminal → socket", "terminal"),
        FdKind::CharDevice => ("character device → socket", "character device"),
        FdKind::BlockDevice => ("block device → socket", "block device"),
        FdKind::Socket => ("socket → socket", "socket"),
        FdKind::Regular => ("file → socket", "regular file"),
        other => return ("input → socket", format!("{name} is {}, {WHY}", other.describe())),
    };
    // Name the device behind stdin: /dev/null, /dev/pts/3.
    let device = matches!(kind, FdKind::CharDevice | FdKind::BlockDevice)
        .then(|| sys::fd_path(input))
        .flatten()
        .map(|p| display::path(&p))
        .filter(|p| p != name);
    let why = match device {
        Some(path) => format!("{name} is the {noun} {path}, {WHY}"),
        None => format!("{name} is a {noun}, {WHY}"),
    };
    (route, why)
}

impl<'a> StreamSource<'a> {
    /// `name` shows the input in messages (`stdin` or its path); `hash` is
    /// the write end of a [`checksum::PipeHasher`], if verifying.
    pub fn new(
        input: BorrowedFd<'a>,
        kind: FdKind,
        name: &str,
        hash: Option<&'a File>,
        policy: Policy,
    ) -> StreamSource<'a> {
        let mut report = Report {
            route: if hash.is_some() {
                "pipe → socket, tee → hash"
            } else {
                "pipe → broker pipe → socket"
            },
            ..Report::default()
        };
        let not_pipe = (kind != FdKind::Pipe).then(|| not_a_pipe(name, input, kind));
        if let Some((route, _)) = &not_pipe {
            report.route = route;
        }
        let mode = if !policy.zerocopy {
            report.fallback = Some("--no-zerocopy was given".into());
            StreamMode::ReadWrite
        } else if let Some((_, why)) = not_pipe {
            report.fallback = Some(why);
            StreamMode::ReadWrite
        } else if disabled("splice") {
            report.fallback = Some("splice was refused earlier in this process".into());
            StreamMode::ReadWrite
        } else if hash.is_some() {
            StreamMode::Tee
        } else {
            StreamMode::Broker
        };
        let mut chunk = RW_BUFFER;
        if mode != StreamMode::ReadWrite {
            // A bigger input pipe lets each chunk carry up to its capacity.
            chunk = sys::grow_pipe(input, policy.pipe_size);
        }
        StreamSource {
            input,
            hash,
            mode,
            broker: None,
            chunk,
            buf: None,
            report,
            idle: None,
            watch_peer: true,
        }
    }

    fn moved_any(&self) -> bool {
        self.report.by_splice + self.report.by_read_write > 0
    }

    fn fall_back(&mut self, why: String) {
        self.report.fallback = Some(why);
        self.mode = StreamMode::ReadWrite;
    }

    /// Waits for the next chunk and returns its length (at most `max`);
    /// 0 means end of stream. The chunk stays staged until `forward`.
    /// Fails if the peer on `sock` hangs up while the input is idle.
    pub fn fill(&mut self, max: usize, sock: &TcpStream) -> io::Result<usize> {
        // First try without blocking; when nothing is ready, wait for input
        // or a hang-up, then let the call block (at most on the output pipe).
        let mut nonblock = self.mode != StreamMode::ReadWrite;
        loop {
            if signals::interrupted() {
                return Err(crate::error::interrupted_io());
            }
            if !nonblock && self.wait_for_input(sock)? {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, HungUp));
            }
            let step = match self.mode {
                StreamMode::Tee => match self.hash {
                    Some(hash) => sys::tee(self.input, hash, max.min(self.chunk), nonblock),
                    None => Err(io::Error::other("tee without a hash pipe")),
                },
                StreamMode::Broker => {
                    if self.broker.is_none() {
                        let pipe = Pipe::new(self.chunk)?;
                        self.chunk = self.chunk.min(pipe.capacity);
                        self.broker = Some(pipe);
                    }
                    match &self.broker {
                        Some(b) => sys::splice(self.input, None, &b.write, None, max.min(self.chunk), nonblock),
                        None => Err(io::Error::other("no broker pipe")),
                    }
                }
                StreamMode::ReadWrite => {
                    let buf = self.buf.get_or_insert_with(|| IoBuf::new(RW_BUFFER));
                    let want = max.min(buf.len());
                    sys::read_fd(self.input, &mut buf[..want])
                }
            };
            match step {
                Ok(n) => {
                    if let (StreamMode::ReadWrite, Some(hash), Some(buf)) = (self.mode, self.hash, &self.buf) {
                        checksum::feed(hash, &buf[..n])?;
                    }
                    return Ok(n);
                }
                // Nothing ready (or the input is non-blocking): wait.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => nonblock = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    settle(Err::<(), _>(e))?;
                }
                Err(e) => {
                    let call = if self.mode == StreamMode::Tee { "tee" } else { "splice" };
                    match unsupported(call, &e, "this input") {
                        Some(why) if self.mode != StreamMode::ReadWrite && !self.moved_any() => self.fall_back(why),
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// Waits until the input is readable; true if the peer hung up first
    /// (only looked at with `watch_peer`).
    fn wait_for_input(&self, sock: &TcpStream) -> io::Result<bool> {
        let peer = self.watch_peer.then(|| sock.as_fd());
        loop {
            match settle(sys::wait_input_or_hangup(self.input, peer, self.idle))? {
                Some(hung) => return Ok(hung),
                None => continue,
            }
        }
    }

    /// Moves the `n` bytes staged by the last `fill` to `sock`.
    pub fn forward(&mut self, sock: &TcpStream, n: usize) -> io::Result<()> {
        match self.mode {
            StreamMode::ReadWrite => {
                let buf = self.buf.as_ref().ok_or_else(|| io::Error::other("no staged chunk"))?;
                write_all(sock.as_fd(), &buf[..n])?;
                self.report.by_read_write += n as u64;
                Ok(())
            }
            StreamMode::Tee | StreamMode::Broker => {
                let from = match (&self.broker, self.mode) {
                    (Some(b), StreamMode::Broker) => b.read.as_fd(),
                    _ => self.input,
                };
                let mut left = n;
                while left > 0 {
                    match settle(sys::splice(from, None, sock, None, left, false)) {
                        Ok(Some(0)) => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the input pipe lost staged bytes",
                            ));
                        }
                        Ok(Some(k)) => {
                            left -= k;
                            self.report.by_splice += k as u64;
                        }
                        Ok(None) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => sys::wait_writable(sock.as_fd())?,
                        Err(e) => match unsupported("splice", &e, "this socket") {
                            Some(why) if !self.moved_any() => {
                                // Nothing went out yet: read the staged bytes
                                // and send them by hand from now on. They are
                                // already in the hash pipe (tee) if hashing.
                                self.report.fallback = Some(why);
                                self.mode = StreamMode::ReadWrite;
                                let buf = self.buf.insert(IoBuf::new(RW_BUFFER.max(left)));
                                let mut got = 0;
                                while got < left {
                                    match settle(sys::read_fd(from, &mut buf[got..left]))? {
                                        Some(0) => return Err(io::Error::other("the input pipe lost staged bytes")),
                                        Some(k) => got += k,
                                        None => {}
                                    }
                                }
                                write_all(sock.as_fd(), &buf[..left])?;
                                self.report.by_read_write += left as u64;
                                return Ok(());
                            }
                            _ => return Err(e),
                        },
                    }
                }
                Ok(())
            }
        }
    }
}
