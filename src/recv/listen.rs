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

use anyhow::Result;

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
use crate::serve::{self, Ending};
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
    let (listener, local) = serve::bind(&args.listen)?;
    match &key {
        Some(k) if one_time => serve::announce(k, local, "receiver", "send with", |target| {
            format!("zcp send FILE... {target}")
        }),
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

/// Default mode: serves the first sender that completes the handshake,
/// then exits with its status.
fn serve_one(listener: &TcpListener, setup: &Setup) -> Result<Code> {
    serve::first(listener, "a sender", |sock, peer| connection(setup, sock, peer, true))
}

/// The connections a keep-open receiver is serving: how many, and a handle
/// on each socket so an interruption can end them.
#[derive(Default)]
struct Slots {
    open: Mutex<HashMap<u64, TcpStream>>,
    next: AtomicUsize,
}

/// One connection's place among the [`Slots`]; dropping it (also when its
/// thread unwinds) gives the place back.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
}

impl Slots {
    fn count(&self) -> usize {
        self.open.lock().map_or(0, |m| m.len())
    }

    /// Takes a place for `sock`, unless `max` are taken.
    fn claim(self: &Arc<Slots>, sock: &TcpStream, max: usize) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        if open.len() >= max {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::SeqCst) as u64;
        open.insert(id, sock.try_clone().ok()?);
        Some(Slot {
            slots: Arc::clone(self),
            id,
        })
    }

    /// Shuts down `how` on every connection still served.
    fn shut_all(&self, how: Shutdown) {
        if let Ok(open) = self.open.lock() {
            for sock in open.values() {
                let _ = sock.shutdown(how);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.slots.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// How long connections get to finish after an interruption ended their
/// reads, before their writes are cut too (a sender that stopped reading
/// would otherwise hold the receiver).
const WIND_DOWN: Duration = Duration::from_secs(2);

/// `--keep-open`: serves senders until SIGINT/SIGTERM, at most `max` at
/// once; one more is told the receiver is busy.
fn keep_open(listener: TcpListener, setup: Arc<Setup>, max: usize) -> Result<Code> {
    let slots = Arc::new(Slots::default());
    let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let mut busy_notes = BusyNotes::default();
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
        workers.retain(|w| !w.is_finished());
        let peer = net::show_addr(addr);
        let Some(slot) = slots.claim(&sock, max) else {
            busy(&sock, max);
            busy_notes.note(&peer, max);
            continue;
        };
        let shared = Arc::clone(&setup);
        let worker = signals::spawn_worker("zcp-conn", move || {
            let ending = connection(&shared, sock, peer, false);
            // The slot is free before the end is reported: a sender that
            // connects once it reads "still listening" is not turned away.
            drop(slot);
            match ending {
                // Cut short by the interruption: no longer listening, and
                // nothing was written.
                Ending::Turned(_) if signals::interrupted() => {}
                Ending::Turned(err) => serve::turned_away(&err),
                Ending::Served(Err(err)) => {
                    eprintln!("zcp: error: {}", crate::display::one_line(&format!("{err:#}")));
                }
                Ending::Served(Ok(_)) => {}
            }
        });
        match worker {
            Ok(w) => workers.push(w),
            Err(e) => eprintln!("zcp: warning: cannot start a thread for {}: {e}", net::show_addr(addr)),
        }
    }
    signals::wake_nothing();
    // Interrupted: end every connection's reads; each session cleans up
    // (staged files go) and tells its sender why. One stuck writing to a
    // sender that stopped reading is cut off after WIND_DOWN.
    slots.shut_all(Shutdown::Read);
    let deadline = Instant::now() + WIND_DOWN;
    while slots.count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    slots.shut_all(Shutdown::Both);
    for w in workers {
        let _ = w.join();
    }
    Err(error::interrupted_io().into())
}

/// Warnings about senders turned away for being over the limit: at most
/// one a second, with how many there were, so a flood cannot flood the log.
#[derive(Default)]
struct BusyNotes {
    last: Option<Instant>,
    unsaid: u64,
}

impl BusyNotes {
    fn note(&mut self, peer: &str, max: usize) {
        self.unsaid += 1;
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        let more = match self.unsaid {
            1 => String::new(),
            n => format!(" (and {} more since the last such warning)", n - 1),
        };
        eprintln!("zcp: warning: turned away {peer}: already serving {max} connections (--max-connections){more}");
        self.last = Some(Instant::now());
        self.unsaid = 0;
    }
}

/// Tells a sender over the limit why it is turned away.
fn busy(sock: &TcpStream, max: usize) {
    let mut out = Preamble::ours().encode().to_vec();
    Message::Error(WireError {
        code: Code::Failure as u8,
        message: format!("the receiver is busy: it serves {max} connections (--max-connections); try again later"),
    })
    .encode(&mut out);
    let _ = frames::write_all(sock.as_fd(), &out);
    let _ = sock.shutdown(Shutdown::Write);
}

/// Handshake, then the session, for one accepted connection. `wake`: let
/// SIGINT end this connection's reads (only one connection can be woken
/// this way; keep-open shuts its connections down itself).
fn connection(setup: &Setup, sock: TcpStream, peer: String, wake: bool) -> Ending<Result<Code>> {
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
            // A sender that stops reading cannot hold a verdict write
            // forever either.
            if let Err(e) = session.sock.set_write_timeout(Some(setup.idle_timeout)) {
                session
                    .reporter
                    .detail(format_args!("no write timeout on the socket: {e}"));
            }
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
