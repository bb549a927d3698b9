//! Listening for senders: the default loop, which serves one transfer
//! (serve.rs waits for the first sender that completes its handshake),
//! and `--keep-open`, which serves many senders at once, each on its own
//! thread.
//!
//! A connection that fails before its session starts (not a zcp peer, a
//! wrong key, a handshake that takes too long) has written nothing: it is
//! reported as a warning and the receiver goes on listening, so a port
//! scanner or a mistyped key cannot take a waiting receiver down. Once a
//! session has started, the default receiver exits with its status; a
//! keep-open receiver reports it and goes on.
//!
//! One exception: when the connection of a session breaks and its sender
//! said it will reconnect (`send --retries`), the default receiver waits
//! for a sender again, for at most its idle timeout. The next session's
//! status is then the receiver's; if nobody comes, the broken one's is.

use std::collections::HashMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::connection::{Ended, connection};
use super::start::Setup;
use crate::error::{self, Code};
use crate::frames;
use crate::net;
use crate::progress::Reporter;
use crate::protocol::{Message, Preamble, WireError};
use crate::report::{self, Closing, Facts};
use crate::serve::{self, Ending};
use crate::sys::signals;

/// Default mode: serves the first sender that completes the handshake,
/// then exits with its status (waiting for it again when its connection
/// broke and it said it would reconnect).
pub fn serve_one(listener: &TcpListener, setup: &Setup, closing: &mut Closing) -> Result<Code> {
    let mut deadline = None;
    let mut broken = None;
    // The facts of a session that broke, which the next one carries on.
    let mut earlier: Option<Facts> = None;
    loop {
        let served = serve::first_until(listener, "a sender", deadline, |sock, peer| {
            match connection(setup, sock, peer, true) {
                Ending::Served(ended) => Ending::Served(Ok(ended)),
                Ending::Turned(err) => Ending::Turned(err),
                Ending::Joined => Ending::Joined,
            }
        });
        // However the wait ends (Ctrl-C included), the report keeps what
        // the broken session settled.
        let served = match served {
            Ok(served) => served,
            Err(err) => {
                if let Some(facts) = earlier {
                    closing.facts(facts);
                }
                return Err(err);
            }
        };
        let mut ended = match (served, broken.take()) {
            (Some(ended), _) => ended,
            // Nobody came back in time.
            (None, Some(err)) => {
                if let Some(facts) = earlier {
                    closing.facts(facts);
                }
                return Err(err);
            }
            (None, None) => return Err(anyhow::anyhow!("internal error: stopped waiting for a sender")),
        };
        if let Some(facts) = earlier.take() {
            ended.facts = ended.facts.after(facts);
        }
        match ended {
            Ended {
                result: Err(err),
                peer,
                rejoins: true,
                facts,
            } => {
                let wait = setup.idle_timeout;
                Reporter::without_bar(setup.verbosity).warn(format_args!(
                    "connection from {peer} lost ({}); waiting up to {} s for it to reconnect (the sender uses --retries)",
                    crate::display::one_line(&err.root_cause().to_string()),
                    wait.as_secs()
                ));
                deadline = Some(Instant::now() + wait);
                broken = Some(err);
                earlier = Some(facts);
            }
            ended => {
                closing.facts(ended.facts);
                return ended.result;
            }
        }
    }
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
pub fn keep_open(listener: TcpListener, setup: Arc<Setup>, max: usize) -> Result<Code> {
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
                Ending::Served(ended) => {
                    report::conclude(&ended.result, shared.sink.as_deref(), Some(&ended.facts));
                }
                Ending::Joined => {}
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
