//! `zcp send --raw`: one file or stdin as plain bytes on one TCP
//! connection, for a peer that speaks no zcp (`nc -l`, socat, `zcp recv
//! --raw`): no handshake, no key, no name, no checksum. The bytes move as
//! in a zcp session: a regular file (also stdin redirected from one) with
//! sendfile, a pipe with splice, anything else with read/write.
//!
//! The end of the bytes is the end of the stream, so how the connection
//! ends is all the peer learns. After the last byte the sender shuts down
//! its sending side (FIN) and waits for the peer to close ([`closing`]);
//! when anything fails before (the input, a file that changed, Ctrl-C) it
//! resets the connection instead (RST), so a peer that looks (`zcp recv
//! --raw`; OpenBSD netcat and socat do not) can tell a cut stream from a
//! whole one.

use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::pace;
use super::source::Source;
use crate::cli::SendArgs;
use crate::display;
use crate::engine::outbound::{self, StreamSource};
use crate::engine::{Policy, Report};
use crate::error::{self, Code};
use crate::net::{self, HostPort, ListenSpec};
use crate::progress::Reporter;
use crate::protocol::MAGIC;
use crate::serve;
use crate::sys::{self, signals};

/// How long the peer may keep the connection open once its TCP has
/// acknowledged every byte (and our FIN): `nc -l` closes at once, socat
/// after half a second.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long the bytes still unacknowledged at the end may stay so before
/// the sender gives up: the peer has stopped reading.
const STALL: Duration = Duration::from_secs(60);

/// How often the wait for the close looks at the connection.
const CLOSE_POLL: Duration = Duration::from_millis(50);

pub fn run(args: &SendArgs) -> Result<Code> {
    let path = one_source(args)?;
    // Opened before any connection, so a missing file fails fast.
    let source = Source::open(path, None)?;
    let mut reporter = Reporter::new(args.common.verbosity());
    let (sock, peer) = match (&args.listen, &args.target) {
        (Some(spec), _) => accept(spec, &source.shown, &reporter)?,
        (None, Some(target)) => connect(args, target, &source.shown, &reporter)?,
        (None, None) => return Err(error::usage("no HOST:PORT to send to, and no --listen")),
    };
    let limit = args.limit.and_then(|rate| pace::pace(&[&sock], rate, &mut reporter));
    reporter.start("send", source.range.map(|(_, len)| len));
    let started = Instant::now();
    let policy = Policy::new(!args.common.no_zerocopy);
    let sending = format!("sending {} to {peer}", source.shown);
    let report = match pour(&sock, &source, policy, &reporter) {
        Ok(report) => report,
        Err(err) => {
            reporter.finish();
            net::reset(sock);
            return Err(err.context(sending));
        }
    };
    let bytes = report.by_sendfile + report.by_splice + report.by_read_write;
    let closed = sock
        .shutdown(Shutdown::Write)
        .context("shutting down the sending side")
        .and_then(|()| closing(&sock, &reporter));
    reporter.finish();
    let closed = match closed {
        Ok(closed) => closed,
        Err(err) => {
            net::reset(sock);
            return Err(err.context(format!("{sending} ({bytes} bytes sent)")));
        }
    };
    // Timed to when the peer had everything, not to when it closed.
    let seconds = closed.acked.duration_since(started).as_secs_f64();
    if closed.discarded > 0 {
        reporter.warn(format_args!(
            "{peer} sent {} bytes, which zcp send --raw read and dropped",
            closed.discarded
        ));
    }
    if !closed.by_peer {
        reporter.warn(format_args!(
            "{peer} acknowledged all {bytes} bytes but did not close the connection within {} s; closing it (whether its program read them all is unknown)",
            CLOSE_GRACE.as_secs()
        ));
    }
    reporter.detail(format_args!("send {}: {}", source.shown, report.describe()));
    reporter.note(format_args!(
        "sent {} to {peer}: {} in {seconds:.2} s ({}), {}, unverified (--raw)",
        source.shown,
        display::bytes(bytes),
        display::rate_within(bytes, seconds, limit),
        report.primary().name(),
    ));
    Ok(Code::Success)
}

/// The one SOURCE: a file or `-`; a directory, or more than one, is a
/// usage error.
fn one_source(args: &SendArgs) -> Result<&Path> {
    let [path] = args.sources.as_slice() else {
        return Err(error::usage(format!(
            "--raw sends exactly one SOURCE (a file, or - for stdin), not {}",
            args.sources.len()
        )));
    };
    if path.as_os_str() != "-" && path.is_dir() {
        return Err(error::usage(format!(
            "{} is a directory; --raw sends one file or stdin (for a tree: tar c DIR | zcp send --raw - HOST:PORT)",
            display::path(path)
        )));
    }
    Ok(path)
}

/// Connects to `target`.
fn connect(args: &SendArgs, target: &HostPort, shown: &str, reporter: &Reporter) -> Result<(TcpStream, String)> {
    let peer = target.to_string();
    let (sock, addr) = net::connect(target, args.bind).with_context(|| format!("sending {shown} to {peer}"))?;
    let to = net::show_resolved(&peer, addr);
    reporter.detail(format_args!("connected to {to}: a raw stream, no handshake"));
    Ok((sock, peer))
}

/// `--listen`: takes the first connection, whoever makes it.
fn accept(spec: &ListenSpec, shown: &str, reporter: &Reporter) -> Result<(TcpStream, String)> {
    let (listener, _) = serve::bind(spec)?;
    eprintln!("zcp: warning: --raw: {shown} goes to the first connection to this port, whoever makes it (no key)");
    let (sock, peer) = serve::first(&listener, "a connection", |sock, peer| {
        serve::Ending::Served(Ok((sock, peer)))
    })?;
    reporter.detail(format_args!("connection from {peer}: a raw stream, no handshake"));
    Ok((sock, peer))
}

/// Moves every byte of `source` to `sock`. A file that changed while it
/// was sent is an error (exit status 6): what went out is no version of it.
fn pour(sock: &TcpStream, source: &Source, policy: Policy, reporter: &Reporter) -> Result<Report> {
    let Some((start, len)) = source.range else {
        return stream(sock, source, policy, reporter);
    };
    let sent = outbound::send_file(sock, &source.file, start, len, policy, &mut |n| reporter.advance(n));
    // A failed send (a reset: exit status 7) is the failure, whatever the
    // file did meanwhile; only a file that ended early is its change.
    let sent = match sent {
        Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => return Err(e.into()),
        sent => sent,
    };
    let changed = match &source.fingerprint {
        Some(print) => print.check(&source.file, &source.shown)?,
        None => None,
    };
    if let Some(changed) = changed {
        return Err(error::coded(Code::SourceChanged, changed.to_string()));
    }
    Ok(sent?)
}

/// Moves a stream of unknown length (a pipe, a terminal) until its end.
fn stream(sock: &TcpStream, source: &Source, policy: Policy, reporter: &Reporter) -> Result<Report> {
    let mut input = StreamSource::new(source.file.as_fd(), source.kind, &source.shown, None, policy);
    // A raw peer may shut down its own sending side at once (`nc -N` with
    // nothing to send) and still read all we send.
    input.watch_peer = false;
    loop {
        let n = input
            .fill(usize::MAX, sock)
            .with_context(|| format!("reading {}", source.shown))?;
        if n == 0 {
            return Ok(input.report);
        }
        input.forward(sock, n)?;
        reporter.advance(n as u64);
    }
}

/// The first bytes the peer sent, kept until there are enough to tell
/// whether they open with zcp's preamble magic.
#[derive(Default)]
struct Head {
    bytes: [u8; MAGIC.len()],
    len: usize,
}

impl Head {
    /// Adds `more` and says whether the peer's bytes open with the magic:
    /// it is a zcp receiver without `--raw`.
    fn is_zcp(&mut self, more: &[u8]) -> bool {
        let had = self.len;
        let take = more.len().min(MAGIC.len() - had);
        self.bytes[had..had + take].copy_from_slice(&more[..take]);
        self.len += take;
        had < MAGIC.len() && self.len == MAGIC.len() && self.bytes == MAGIC
    }
}

/// How the wait for the peer's close ended.
struct Closed {
    /// The peer closed (or had shut down its side) and acknowledged every
    /// byte; false when it acknowledged everything but kept the
    /// connection open past [`CLOSE_GRACE`].
    by_peer: bool,
    /// Bytes the peer sent, read and dropped so that closing does not
    /// reset the connection.
    discarded: u64,
    /// When the peer's TCP had acknowledged every byte.
    acked: Instant,
}

/// After our FIN: waits until the peer has acknowledged every byte and
/// closed its side, which `nc -l` does once it has read everything. Bytes
/// the peer sends are read and dropped (unread ones would make our close
/// a reset). A peer that acknowledges everything but keeps the connection
/// open is given [`CLOSE_GRACE`]; one that stops acknowledging for
/// [`STALL`] has stopped reading, which is an error, and so is a reset.
/// A peer whose bytes open with zcp's preamble is a zcp receiver without
/// `--raw`, which took ours for a broken handshake: a protocol error
/// (exit status 8).
fn closing(sock: &TcpStream, reporter: &Reporter) -> Result<Closed> {
    let mut buf = [0u8; 16 * 1024];
    let mut head = Head::default();
    let mut discarded = 0u64;
    let mut peer_done = false;
    let mut unacked = usize::MAX;
    let mut moved = Instant::now();
    let mut all_acked: Option<Instant> = None;
    loop {
        if signals::interrupted() {
            return Err(error::interrupted_io().into());
        }
        if peer_done {
            std::thread::sleep(CLOSE_POLL);
        } else if sys::readable_within(sock.as_fd(), CLOSE_POLL).context("waiting for the peer to close")? {
            match sys::read_fd(sock.as_fd(), &mut buf) {
                Ok(0) => {
                    peer_done = true;
                    reporter.detail("the peer closed its side of the connection");
                }
                Ok(n) => {
                    if head.is_zcp(&buf[..n]) {
                        return Err(error::protocol(
                            "the peer is a zcp receiver without --raw: it answered with zcp's handshake and took none of the bytes; give it --raw, or send without --raw",
                        ));
                    }
                    discarded += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(
                        "the peer reset the connection before it closed it, so it may not have read everything",
                    ));
                }
            }
        }
        let now = sys::unacknowledged(sock.as_fd()).context("asking the kernel what the peer acknowledged")?;
        if now < unacked {
            unacked = now;
            moved = Instant::now();
        }
        if now > 0 {
            all_acked = None;
            if moved.elapsed() >= STALL {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the peer acknowledged none of the last {now} bytes for {} s: it stopped reading",
                        STALL.as_secs()
                    ),
                )
                .into());
            }
            continue;
        }
        let acked = *all_acked.get_or_insert_with(Instant::now);
        if peer_done || acked.elapsed() >= CLOSE_GRACE {
            return Ok(Closed {
                by_peer: peer_done,
                discarded,
                acked,
            });
        }
    }
}
