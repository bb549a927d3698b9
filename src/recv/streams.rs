//! Further streams of a session (`zcp send -P N`): the connections that
//! join a session by its token, and the threads that land the blocks
//! arriving on them.
//!
//! Each further connection is accepted and authenticated like any other
//! (its own handshake, its own sealing keys); its HELLO names the session
//! it joins (JOIN). [`Joins`] routes it to that session, whose joiner
//! thread starts a stream thread for it. A stream thread lands each BLOCK
//! into the file being received ([`Current`]) with its own pipe, and hands
//! it to that file's hashing pool. A receiver serving one session keeps
//! accepting on its listener meanwhile, for joins only.

use std::collections::HashMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;
use std::time::Duration;

use anyhow::{Result, bail};

use super::blocks::Landing;
use super::connection::connection;
use super::sender_error;
use super::start::Setup;
use crate::engine::Policy;
use crate::engine::inbound::{Lander, Target};
use crate::error::{Carried, protocol_bail};
use crate::frames::FrameReader;
use crate::net;
use crate::progress::Reporter;
use crate::protocol::Message;
use crate::protocol::blocks::TOKEN_LEN;
use crate::serve::Ending;
use crate::sys::{self, signals};

pub type Token = [u8; TOKEN_LEN];

/// A connection that joined a session, after its handshake.
pub struct Joined {
    pub sock: TcpStream,
    pub reader: FrameReader,
    pub peer: String,
}

/// The sessions that take further streams, by token.
#[derive(Default)]
pub struct Joins {
    /// Each session's way to its joiner, and how many more streams it
    /// takes.
    open: Mutex<HashMap<Token, (Sender<Joined>, u8)>>,
}

impl Joins {
    fn lock(&self) -> MutexGuard<'_, HashMap<Token, (Sender<Joined>, u8)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a session with this token takes another stream.
    pub fn knows(&self, token: &Token) -> bool {
        self.lock().get(token).is_some_and(|(_, more)| *more > 0)
    }

    /// Hands a joined connection to its session, which takes no more
    /// than the streams it agreed to.
    pub fn deliver(&self, token: &Token, joined: Joined) -> Result<()> {
        let mut open = self.lock();
        match open.get_mut(token) {
            Some((_, 0)) => bail!("the session this connection joins has all the streams it agreed to"),
            Some((tx, more)) if tx.send(joined).is_ok() => {
                *more -= 1;
                Ok(())
            }
            _ => bail!("the session this connection joins has ended"),
        }
    }

    fn register(&self, token: Token, more: u8) -> Receiver<Joined> {
        let (tx, rx) = mpsc::channel();
        self.lock().insert(token, (tx, more));
        rx
    }

    fn forget(&self, token: &Token) {
        self.lock().remove(token);
    }
}

/// What the streams of a session share with its main thread.
pub struct Current {
    /// The BLOCKED entry being received, if any.
    landing: Mutex<Option<Arc<Landing>>>,
    /// How many BLOCKED entries the session has opened: a block of an
    /// earlier one (ended by ABORT) is drained, a later one is an error.
    opened: AtomicU32,
    /// The first error of a stream: it ends the session.
    failed: Mutex<Option<Carried>>,
    /// The main connection, shut down when a stream fails so the main
    /// thread stops waiting; and the streams, shut down when it ends.
    main: TcpStream,
    socks: Mutex<Vec<TcpStream>>,
    /// Stream threads still running.
    live: AtomicU32,
}

impl Current {
    pub fn new(main: TcpStream) -> Current {
        Current {
            landing: Mutex::new(None),
            opened: AtomicU32::new(0),
            failed: Mutex::new(None),
            main,
            socks: Mutex::new(Vec::new()),
            live: AtomicU32::new(0),
        }
    }

    /// Blocks of `landing` may now arrive on any stream.
    pub fn open(&self, landing: Arc<Landing>) {
        self.opened.fetch_max(landing.number + 1, Ordering::SeqCst);
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner) = Some(landing);
    }

    /// The entry ended: later blocks of it are drained.
    pub fn close(&self) {
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The first stream failure, if any.
    pub fn failure(&self) -> Option<Carried> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn fail(&self, why: Carried) {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.is_none() {
            *failed = Some(why);
            let _ = self.main.shutdown(Shutdown::Both);
        }
    }

    /// Ends every stream's reads (the session is over).
    pub fn shut_streams(&self) {
        for s in self.socks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// The further streams of one session, while it runs.
pub struct Streams {
    token: Token,
    joins: Arc<Joins>,
    pub current: Arc<Current>,
    /// Tells the acceptor of a one-session receiver to stop.
    stop: Arc<AtomicBool>,
}

impl Streams {
    /// Registers the session's token and starts, in `scope`, the thread
    /// that takes its joined connections (and, for a receiver serving one
    /// session, the one that accepts them).
    pub fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        setup: &'scope Setup,
        token: Token,
        more: u8,
        main: &TcpStream,
        reporter: &Reporter,
    ) -> Result<Streams> {
        let rx = setup.joins.register(token, more);
        let current = Arc::new(Current::new(main.try_clone()?));
        let stop = Arc::new(AtomicBool::new(false));
        let (policy, reporter) = (setup.policy, reporter.clone());
        let shared = Arc::clone(&current);
        scope.spawn(move || take_joins(scope, &rx, &shared, policy, &reporter));
        if let Some(listener) = &setup.listener {
            let stop = Arc::clone(&stop);
            scope.spawn(move || accept_joins(setup, listener, &stop));
        }
        Ok(Streams {
            token,
            joins: Arc::clone(&setup.joins),
            current,
            stop,
        })
    }

    /// Ends the streams: no more joins, every stream's reads cut (after a
    /// successful session each has ended on its DONE already).
    pub fn end(&self, wait_for_done: bool) {
        self.joins.forget(&self.token);
        self.stop.store(true, Ordering::SeqCst);
        if wait_for_done {
            // The sender sends DONE on each stream before the main one:
            // they end on their own, soon.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while self.current.live.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.current.shut_streams();
    }
}

/// Starts a stream thread for each connection that joins, until the
/// session forgets its token.
fn take_joins<'scope>(
    scope: &'scope Scope<'scope, '_>,
    rx: &Receiver<Joined>,
    current: &Arc<Current>,
    policy: Policy,
    reporter: &Reporter,
) {
    signals::block_in_this_thread();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(joined) => {
                if let Ok(s) = joined.sock.try_clone() {
                    current.socks.lock().unwrap_or_else(PoisonError::into_inner).push(s);
                }
                let (current, reporter) = (Arc::clone(current), reporter.clone());
                current.live.fetch_add(1, Ordering::SeqCst);
                scope.spawn(move || {
                    signals::block_in_this_thread();
                    let peer = joined.peer.clone();
                    if let Err(e) = stream(joined, &current, policy, &reporter) {
                        current.fail(Carried::new(&e, format!("a further stream from {peer}: {e:#}")));
                    }
                    current.live.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if signals::interrupted() {
            return;
        }
    }
}

/// Accepts further streams on the listener of a receiver that serves one
/// session, until `stop`. Each goes through the usual handshake; only
/// joins are taken (anything else is told the receiver is busy).
fn accept_joins(setup: &Setup, listener: &TcpListener, stop: &AtomicBool) {
    signals::block_in_this_thread();
    while !stop.load(Ordering::SeqCst) && !signals::interrupted() {
        match sys::readable_within(listener.as_fd(), Duration::from_millis(100)) {
            Ok(true) => {}
            _ => continue,
        }
        let Ok((sock, addr)) = net::accept(listener) else {
            continue;
        };
        match connection(setup, sock, net::show_addr(addr), false) {
            Ending::Joined => {}
            Ending::Turned(err) => crate::serve::turned_away(&err),
            Ending::Served(_) => {}
        }
    }
}

/// Lands the blocks that arrive on one further stream until its DONE.
fn stream(mut joined: Joined, current: &Current, policy: Policy, reporter: &Reporter) -> Result<()> {
    let mut lander = Lander::new(policy);
    loop {
        let block = match joined.reader.expect_exact()? {
            Message::Block(b) => b,
            Message::Ping => continue,
            Message::Done => return Ok(()),
            Message::Error(e) => return Err(sender_error(&e)),
            other => protocol_bail!("unexpected {:?} on a further stream", other.frame_type()),
        };
        let landing = current
            .landing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|l| l.number == block.entry);
        match landing {
            Some(landing) => landing.land(&mut joined.reader, &mut lander, &block, reporter)?,
            None if block.entry < current.opened.load(Ordering::SeqCst) => {
                // A block of an entry that already ended (aborted): read
                // and dropped.
                let mut report = lander.start_report(&Target::Discard);
                lander.land(
                    &mut joined.reader,
                    &mut Target::Discard,
                    u64::from(block.len),
                    &mut report,
                    &mut |_| {},
                )?;
            }
            None => protocol_bail!("a block of BLOCKED entry {}, which is not open", block.entry),
        }
    }
}
