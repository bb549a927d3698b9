//! One connection to one sender: the watchdog, the handshake, then the
//! session, for a connection the receiver accepted (listen.rs) or made
//! itself to a listening sender ([`dial`], `--connect`). A session that
//! broke with a sender that said it will reconnect (`send --retries`) is
//! marked so: a receiver serving one session waits for it.

use std::io;
use std::net::{IpAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};

use super::Session;
use super::start::Setup;
use super::streams::{Joined, Streams};
use super::watchdog::{Fired, Watchdog};
use crate::error::{self, Code};
use crate::net::{self, HostPort};
use crate::protocol::auth::Approach;
use crate::report::{Closing, Facts};
use crate::serve::Ending;
use crate::sys::signals;

/// `--connect`: connects to a sender that listens at `target` (from
/// `bind`, when given) and runs one session with it; a failed handshake
/// is this receiver's error.
pub fn dial(setup: &Setup, target: &HostPort, bind: Option<IpAddr>, closing: &mut Closing) -> Result<Code> {
    let peer = target.to_string();
    let (sock, _) = net::connect(target, bind).with_context(|| format!("receiving from {peer}"))?;
    match connection(setup, sock, peer, true) {
        Ending::Turned(err) => Err(err),
        Ending::Served(ended) => {
            closing.facts(ended.facts);
            ended.result
        }
        Ending::Joined => Err(anyhow::anyhow!("internal error: a receiver that connected was joined")),
    }
}

/// How a session ended.
pub struct Ended {
    pub result: Result<Code>,
    /// The sender, for messages.
    pub peer: String,
    /// The connection broke, and the sender announced it would connect
    /// again (RETRY in its HELLO).
    pub rejoins: bool,
    /// What the JSON report says of the session.
    pub facts: Facts,
}

/// Handshake, then the session, for one connection. `wake`: let
/// SIGINT end this connection's reads (only one connection can be woken
/// this way; keep-open shuts its connections down itself).
pub fn connection(setup: &Setup, sock: TcpStream, peer: String, wake: bool) -> Ending<Ended> {
    // Until the session starts, errors name the connection; a receiver
    // that connected names it as it will for the session.
    let turned = match setup.approach {
        Approach::Accepted => format!("connection from {peer}"),
        Approach::Connected => format!("receiving from {peer}"),
    };
    let mut session = match Session::new(setup, sock, peer.clone()) {
        Ok(s) => s,
        Err(e) => return Ending::Turned(e.context(turned)),
    };
    let watchdog = match session
        .sock
        .try_clone()
        .and_then(|s| Watchdog::spawn(s, setup.handshake_timeout, setup.idle_timeout, session.local.clone()))
    {
        Ok(w) => w,
        Err(e) => return Ending::Turned(anyhow::Error::new(e).context(format!("watching {peer}"))),
    };
    if wake {
        signals::wake_on_interrupt(session.sock.as_fd());
    }
    let ending = match session.handshake(setup.key.as_ref(), setup.approach) {
        Err(err) => {
            let err = explain(err, watchdog.fired());
            session.refuse(&err);
            Ending::Turned(err.context(turned))
        }
        Ok(()) if session.joining.is_some() => {
            drop(watchdog);
            join(setup, session, peer)
        }
        Ok(()) => {
            watchdog.session_started();
            // A sender that stops reading cannot hold a verdict write
            // forever either.
            if let Err(e) = session.sock.set_write_timeout(Some(setup.idle_timeout)) {
                session
                    .reporter
                    .detail(format_args!("no write timeout on the socket: {e}"));
            }
            session.reporter.detail(format!("connection from {peer}"));
            let started = Instant::now();
            let one = setup.listener.is_some();
            if one {
                setup.serving.store(true, Ordering::SeqCst);
            }
            let served = std::thread::scope(|scope| {
                if let (Some(token), Some(blocks)) = (session.token, session.blocks) {
                    let more = blocks.streams - 1;
                    match Streams::start(scope, setup, token, more, &session.sock, &session.reporter) {
                        Ok(streams) => session.streams = Some(streams),
                        Err(e) => return Err(e.context("starting further streams")),
                    }
                }
                let mut served = session.serve(&watchdog);
                if let Some(streams) = &session.streams {
                    streams.end(served.is_ok());
                    // A failed stream shut the main connection down: its
                    // reason is the one to tell.
                    if let (Err(_), Some(why)) = (&served, streams.current.failure()) {
                        served = Err(why.error());
                    }
                }
                served
            });
            if one {
                setup.serving.store(false, Ordering::SeqCst);
            }
            let (result, rejoins) = match served {
                Ok(code) => {
                    session.summarize_session(started);
                    (Ok(code), false)
                }
                Err(err) => {
                    let err = explain(err, watchdog.fired());
                    // Before our ERROR and close, which end the stream
                    // whoever broke it.
                    let rejoins = session.blocks.is_some_and(|b| b.retry) && broke(&err, &session.sock);
                    session.reporter.finish();
                    session.refuse(&err);
                    session.close_after_failure();
                    (Err(err.context(format!("receiving from {peer}"))), rejoins)
                }
            };
            Ending::Served(Ended {
                result,
                peer: peer.clone(),
                rejoins,
                facts: session.facts(started),
            })
        }
    };
    if wake {
        signals::wake_nothing();
    }
    ending
}

/// Hands a connection whose handshake joined a running session to that
/// session as a further stream.
fn join(setup: &Setup, session: Session, peer: String) -> Ending<Ended> {
    let Some(token) = session.joining else {
        return Ending::Turned(anyhow::anyhow!("internal error: not a joining connection"));
    };
    session.reporter.detail(format!("further stream from {peer}"));
    let joined = Joined {
        sock: session.sock,
        reader: session.reader,
        peer: peer.clone(),
    };
    match setup.joins.deliver(&token, joined) {
        Ok(()) => Ending::Joined,
        Err(e) => Ending::Turned(e.context(format!("connection from {peer}"))),
    }
}

/// Names a timeout or an interruption for what it is: the watchdog (or
/// the interruption) shut the socket down, so the error at hand is only
/// "connection closed". A timeout stays an I/O error that timed out: the
/// connection's failure (exit status 7).
fn explain(err: anyhow::Error, fired: Option<Fired>) -> anyhow::Error {
    match fired {
        Some(Fired::Handshake(t)) => io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the sender did not complete the handshake within {} s (--timeout)",
                t.as_secs()
            ),
        )
        .into(),
        Some(Fired::Idle(t)) => error::idle_cut(t),
        // SIGINT/SIGTERM shut the socket down as well (the handler, or
        // keep-open's main thread), so the end of the stream was ours.
        None if signals::interrupted() => error::interrupted_io().into(),
        None => err,
    }
}

/// Whether the session ended with `err` because the connection broke: the
/// error says so, or (for an error that decides nothing itself) the
/// sender's end is already closed or reset, whatever this end was doing
/// when it failed.
fn broke(err: &anyhow::Error, sock: &TcpStream) -> bool {
    error::connection_lost(err) || (!error::deliberate(err) && hung_up(sock))
}

/// Whether a read on `sock` would meet the end of the stream or an error
/// at once, without taking anything from it.
fn hung_up(sock: &TcpStream) -> bool {
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let gone = match sock.peek(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
    };
    let _ = sock.set_nonblocking(false);
    gone
}
