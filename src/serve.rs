//! What a listening end does before its session, whichever end it is:
//! bind and say where (`zcp: listening on ADDR:PORT`), print the one-time
//! key it made when it was given none, and wait for the first peer that
//! completes the handshake (or, [`first_until`], until a deadline).
//!
//! A connection that fails before its session starts (not a zcp peer, a
//! wrong key, a handshake that takes too long) has moved nothing: it is
//! reported as a warning and the end goes on listening, so a port scanner
//! or a mistyped key cannot take a waiting zcp down.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::error;
use crate::key::Key;
use crate::net::{self, ListenSpec};
use crate::sys::{self, signals};

/// How one connection ended.
pub enum Ending<T> {
    /// It failed before its session started; nothing was moved.
    Turned(anyhow::Error),
    /// A session ran (or, for a sender, is ready to run), with this
    /// outcome.
    Served(T),
    /// It joined a session that is running as a further stream.
    Joined,
}

/// Binds the listening socket and prints `zcp: listening on ADDR:PORT`
/// (with the real port when port 0 was asked for).
pub fn bind(spec: &ListenSpec) -> Result<(TcpListener, SocketAddr)> {
    let listener = net::listen(spec)?;
    let local = listener.local_addr().context("reading the bound address")?;
    eprintln!("zcp: listening on {}", net::show_addr(local));
    Ok((listener, local))
}

/// Prints the one-time key of a listening end, `this` (`receiver` or
/// `sender`), and the command to paste on the other end: `with` says what
/// for (`send with`), `command` makes the command from this end's address.
pub fn announce(key: &Key, local: SocketAddr, this: &str, with: &str, command: impl FnOnce(&str) -> String) {
    let secret = String::from_utf8_lossy(key.bytes());
    let host = if local.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "HOST".into())
    } else {
        local.ip().to_string()
    };
    let target = if host.contains(':') {
        format!("[{host}]:{}", local.port())
    } else {
        format!("{host}:{}", local.port())
    };
    eprintln!("zcp: one-time key (valid until this {this} exits): {secret}");
    eprintln!("zcp: {with}: ZCP_KEY={secret} {}", command(&target));
}

/// Waits for connections until one gets past its handshake, and returns
/// what `connection` made of it. `connection` gets each accepted socket
/// and the peer's address; a connection it turns away is reported and the
/// next one awaited, unless SIGINT/SIGTERM ended it. `waiting_for` names
/// the peer for an error of the listener itself (`a sender`).
pub fn first<T>(
    listener: &TcpListener,
    waiting_for: &str,
    connection: impl FnMut(TcpStream, String) -> Ending<Result<T>>,
) -> Result<T> {
    first_until(listener, waiting_for, None, connection)?.context("internal error: stopped waiting without a deadline")
}

/// [`first`], giving up at `deadline` when there is one: None when no
/// peer got past its handshake by then.
pub fn first_until<T>(
    listener: &TcpListener,
    waiting_for: &str,
    deadline: Option<Instant>,
    mut connection: impl FnMut(TcpStream, String) -> Ending<Result<T>>,
) -> Result<Option<T>> {
    loop {
        if let Some(deadline) = deadline
            && !knocked_before(listener, deadline)?
        {
            return Ok(None);
        }
        signals::wake_on_interrupt(listener.as_fd());
        let accepted = net::accept(listener);
        signals::wake_nothing();
        if signals::interrupted() {
            return Err(error::interrupted_io().into());
        }
        let (sock, addr) = match accepted {
            Ok(a) => a,
            Err(e) if passing(&e) => {
                eprintln!("zcp: warning: accepting a connection: {e:#}; still listening");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("waiting for {waiting_for}"))),
        };
        match connection(sock, net::show_addr(addr)) {
            Ending::Turned(err) if !signals::interrupted() => turned_away(&err),
            Ending::Turned(err) => return Err(err),
            Ending::Served(result) => return result.map(Some),
            Ending::Joined => {}
        }
    }
}

/// Waits until a connection is ready to be accepted on `listener` (true)
/// or `deadline` passes (false); SIGINT/SIGTERM end the wait.
fn knocked_before(listener: &TcpListener, deadline: Instant) -> Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Short steps: a signal that lands outside poll still ends the
        // wait soon.
        let ready = sys::readable_within(listener.as_fd(), left.min(Duration::from_millis(100)));
        if signals::interrupted() {
            return Err(error::interrupted_io().into());
        }
        if ready.context("waiting for a connection")? {
            return Ok(true);
        }
    }
}

/// Whether an accept error is about one connection or a passing shortage
/// (descriptors, memory), not about the listener: worth trying again.
fn passing(err: &std::io::Error) -> bool {
    use nix::errno::Errno;
    sys::errno_of(err).is_some_and(|e| {
        matches!(
            e,
            Errno::EMFILE
                | Errno::ENFILE
                | Errno::ENOBUFS
                | Errno::ENOMEM
                | Errno::ECONNABORTED
                | Errno::EPROTO
                | Errno::EPERM
        )
    })
}

/// The one warning for a connection turned away.
pub fn turned_away(err: &anyhow::Error) {
    eprintln!(
        "zcp: warning: {}; still listening",
        crate::display::one_line(&format!("{err:#}"))
    );
}
