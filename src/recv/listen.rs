//! Listening for senders: what every connection shares ([`Setup`]), the
//! default loop that serves one transfer, and `--keep-open`, which serves
//! many senders at once, each on its own thread.
//!
//! A connection that fails before its session starts (not a zcp peer, a
//! wrong key, a handshake that takes too long) has written nothing: it is
//! reported as a warning and the receiver goes on listening, so a port
//! scanner or a mistyped key cannot take a waiting receiver down. Once a
//! session has started, the default receiver exits with its status; a
//! keep-open receiver reports it and goes on.

use std::collections::HashMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Session;
use super::watchdog::{Fired, Watchdog};
use crate::checksum::Algorithm;
use crate::cli::RecvArgs;
use crate::dest::Destination;
use crate::engine::Policy;
use crate::error::{self, Code};
use crate::frames;
use crate::key::{self, Key};
use crate::net;
use crate::progress::Verbosity;
use crate::protocol::{Message, Preamble, WireError};
use crate::sys::{self, signals};

/// What every connection of one receiver shares.
pub struct Setup {
    pub dest: Destination,
    /// None under --no-auth.
    pub key: Option<Key>,
    pub umask: u32,
    pub fsync: bool,
    pub no_clobber: bool,
    pub algorithm: Algorithm,
    pub policy: Policy,
    pub verbosity: Verbosity,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Whether a progress bar may be drawn (not with concurrent sessions).
    pub bars: bool,
}

pub fn run(args: RecvArgs) -> Result<Code> {
    // umask(2) can only be read by changing it: do it before any thread.
    let umask = sys::read_umask();
    let dest = Destination::resolve(&args.dest)?;
    if args.keep_open && matches!(dest, Destination::Stdout) {
        return Err(error::usage(
            "--keep-open cannot write to stdout: concurrent transfers would interleave (give a directory)",
        ));
    }
    let (key, one_time) = match key::choose(&args.common.auth)? {
        Some(k) => (Some(k), false),
        None if args.common.auth.no_auth => (None, false),
        None => (Some(key::one_time()?), true),
    };
    sys::raise_open_file_limit();
    let listener = net::listen(&args.listen)?;
    let local = listener.local_addr().context("reading the bound address")?;
    eprintln!("zcp: listening on {}", net::show_addr(local));
    match &key {
        Some(k) if one_time => announce(k, local),
        Some(_) => {}
        None => eprintln!("zcp: warning: --no-auth: anyone who can reach this port can write into the destination"),
    }
    let setup = Setup {
        dest,
        key,
        umask,
        fsync: args.fsync,
        no_clobber: args.no_clobber,
        algorithm: args.common.checksum,
        policy: Policy::new(!args.common.no_zerocopy),
        verbosity: args.common.verbosity(),
        handshake_timeout: args.common.handshake_timeout(),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        bars: !args.keep_open,
    };
    if args.keep_open {
        keep_open(listener, Arc::new(setup), usize::from(args.max_connections))
    } else {
        serve_one(&listener, &setup)
    }
}

/// Prints the one-time key and a command to paste on the sender.
fn announce(key: &Key, local: std::net::SocketAddr) {
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
    eprintln!("zcp: one-time key (valid until this receiver exits): {secret}");
    eprintln!("zcp: send with: ZCP_KEY={secret} zcp send FILE... {target}");
}

/// How one connection ended.
enum Ending {
    /// It failed before its session started; nothing was written.
    Turned(anyhow::Error),
    /// A session ran, with this status or error.
    Served(Result<Code>),
}

/// Default mode: serves the first sender that completes the handshake,
/// then exits with its status.
fn serve_one(listener: &TcpListener, setup: &Setup) -> Result<Code> {
    loop {
        signals::wake_on_interrupt(listener.as_fd());
        let accepted = net::accept(listener);
        signals::wake_nothing();
        if signals::interrupted() {
            return Err(error::interrupted_io().into());
        }
        let (sock, addr) = accepted.context("waiting for a sender")?;
        match connection(setup, sock, net::show_addr(addr), true) {
            Ending::Turned(err) if !signals::interrupted() => turned_away(&err),
            Ending::Turned(err) => return Err(err),
            Ending::Served(result) => return result,
        }
    }
}

fn turned_away(err: &anyhow::Error) {
    eprintln!(
        "zcp: warning: {}; still listening",
        crate::display::one_line(&format!("{err:#}"))
    );
}

/// `--keep-open`: serves senders until SIGINT/SIGTERM, at most `max` at
/// once; one more is told the receiver is busy.
fn keep_open(listener: TcpListener, setup: Arc<Setup>, max: usize) -> Result<Code> {
    let open: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
    let active = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    let mut next_id = 0u64;
    signals::wake_on_interrupt(listener.as_fd());
    loop {
        let accepted = net::accept(&listener);
        if signals::interrupted() {
            break;
        }
        let (sock, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, a connection reset before accept: the
                // listener itself is fine.
                eprintln!("zcp: warning: accepting a connection: {e:#}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        workers.retain(|w: &std::thread::JoinHandle<()>| !w.is_finished());
        let peer = net::show_addr(addr);
        if active.load(Ordering::SeqCst) >= max {
            busy(&sock, &peer, max);
            continue;
        }
        let id = next_id;
        next_id += 1;
        if let (Ok(mut map), Ok(clone)) = (open.lock(), sock.try_clone()) {
            map.insert(id, clone);
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (shared, registry, count) = (Arc::clone(&setup), Arc::clone(&open), Arc::clone(&active));
        let worker = signals::spawn_worker("zcp-conn", move || {
            let ending = connection(&shared, sock, peer, false);
            // The slot is free before the end is reported: a sender that
            // connects once it reads "still listening" is not turned away.
            if let Ok(mut map) = registry.lock() {
                map.remove(&id);
            }
            count.fetch_sub(1, Ordering::SeqCst);
            match ending {
                // Cut short by the interruption: no longer listening, and
                // nothing was written.
                Ending::Turned(_) if signals::interrupted() => {}
                Ending::Turned(err) => turned_away(&err),
                Ending::Served(Err(err)) => {
                    eprintln!("zcp: error: {}", crate::display::one_line(&format!("{err:#}")));
                }
                Ending::Served(Ok(_)) => {}
            }
        });
        match worker {
            Ok(w) => workers.push(w),
            Err(e) => {
                eprintln!("zcp: warning: cannot start a thread for {}: {e}", net::show_addr(addr));
                active.fetch_sub(1, Ordering::SeqCst);
                if let Ok(mut map) = open.lock() {
                    map.remove(&id);
                }
            }
        }
    }
    signals::wake_nothing();
    // Interrupted: end every connection's reads; each session cleans up
    // (staged files go) and tells its sender why.
    if let Ok(map) = open.lock() {
        for sock in map.values() {
            let _ = sock.shutdown(Shutdown::Read);
        }
    }
    for w in workers {
        let _ = w.join();
    }
    Err(error::interrupted_io().into())
}

/// Tells a sender over the limit why it is turned away.
fn busy(sock: &TcpStream, peer: &str, max: usize) {
    let mut out = Preamble::ours().encode().to_vec();
    Message::Error(WireError {
        code: Code::Failure as u8,
        message: format!("the receiver is busy: it serves {max} connections (--max-connections); try again later"),
    })
    .encode(&mut out);
    let _ = frames::write_all(sock.as_fd(), &out);
    let _ = sock.shutdown(Shutdown::Write);
    eprintln!("zcp: warning: turned away {peer}: already serving {max} connections (--max-connections)");
}

/// Handshake, then the session, for one accepted connection. `wake`: let
/// SIGINT end this connection's reads (only one connection can be woken
/// this way; keep-open shuts its connections down itself).
fn connection(setup: &Setup, sock: TcpStream, peer: String, wake: bool) -> Ending {
    let mut session = match Session::new(setup, sock, peer.clone()) {
        Ok(s) => s,
        Err(e) => return Ending::Turned(e.context(format!("connection from {peer}"))),
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
    let ending = match session.handshake(setup.key.as_ref()) {
        Err(err) => {
            let err = explain(err, watchdog.fired());
            session.refuse(&err);
            Ending::Turned(err.context(format!("connection from {peer}")))
        }
        Ok(()) => {
            watchdog.session_started();
            session.reporter.detail(format!("connection from {peer}"));
            let started = Instant::now();
            match session.serve(&watchdog) {
                Ok(code) => {
                    session.summarize_session(started);
                    Ending::Served(Ok(code))
                }
                Err(err) => {
                    let err = explain(err, watchdog.fired());
                    session.reporter.finish();
                    session.refuse(&err);
                    session.close_after_failure();
                    Ending::Served(Err(err.context(format!("receiving from {peer}"))))
                }
            }
        }
    };
    if wake {
        signals::wake_nothing();
    }
    ending
}

/// Names a timeout or an interruption for what it is: the watchdog (or
/// the interruption) shut the socket down, so the error at hand is only
/// "connection closed".
fn explain(err: anyhow::Error, fired: Option<Fired>) -> anyhow::Error {
    match fired {
        Some(Fired::Handshake(t)) => anyhow::anyhow!(
            "the sender did not complete the handshake within {} s (--timeout)",
            t.as_secs()
        ),
        Some(Fired::Idle(t)) => anyhow::anyhow!("the sender sent nothing for {} s (--idle-timeout)", t.as_secs()),
        // SIGINT/SIGTERM shut the socket down as well (the handler, or
        // keep-open's main thread), so the end of the stream was ours.
        None if signals::interrupted() => error::interrupted_io().into(),
        None => err,
    }
}
