//! Timeouts for one connection: a total deadline for the handshake, then
//! the longest silence tolerated from the sender during the session.
//!
//! A thread looks at the socket's intake (bytes received by the kernel,
//! bytes waiting to be read) a few times per timeout period, so the data
//! path needs no timers of its own. When the deadline passes, or the sender
//! has been silent for too long while nothing waits to be read, it shuts
//! down the socket's reading side: whatever read or splice is blocked returns at once, and
//! [`Watchdog::fired`] says why the connection ended. A deadline cannot be
//! stretched by sending a byte now and then (slowloris); silence is only
//! measured once the sender has authenticated, and not while the receiver
//! itself is busy with [`LocalWork`] (waiting for a hash, an fsync, files
//! being placed), when a sender with nothing left to send rightly waits.

use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sys;

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Handshake(Duration),
    Idle(Duration),
}

/// Counts the receiver's own long operations in progress; while any is,
/// the sender's silence is not held against it.
#[derive(Clone, Default)]
pub struct LocalWork(Arc<AtomicUsize>);

impl LocalWork {
    /// Runs `f` as local work.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        self.0.fetch_add(1, Ordering::SeqCst);
        let out = f();
        self.0.fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

const CALM: u8 = 0;
const HANDSHAKE_EXPIRED: u8 = 1;
const IDLE_EXPIRED: u8 = 2;

struct Shared {
    /// Set to stop the thread; the condvar wakes it.
    stop: Mutex<bool>,
    wake: Condvar,
    /// Once the handshake is done: silence is what counts.
    in_session: Mutex<bool>,
    fired: AtomicU8,
}

/// Watches one connection until dropped.
pub struct Watchdog {
    shared: Arc<Shared>,
    handshake: Duration,
    idle: Duration,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching `sock` (a clone the thread may shut down).
    pub fn spawn(sock: TcpStream, handshake: Duration, idle: Duration, work: LocalWork) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            in_session: Mutex::new(false),
            fired: AtomicU8::new(CALM),
        });
        let theirs = Arc::clone(&shared);
        let thread = sys::signals::spawn_worker("zcp-watch", move || watch(&theirs, &sock, handshake, idle, &work))?;
        Ok(Watchdog {
            shared,
            handshake,
            idle,
            thread: Some(thread),
        })
    }

    /// The handshake succeeded: from now on only silence counts.
    pub fn session_started(&self) {
        if let Ok(mut s) = self.shared.in_session.lock() {
            *s = true;
        }
    }

    /// The sender has said all it will say (DONE): what is left is the
    /// receiver's own work, which no timeout cuts short.
    pub fn stand_down(&self) {
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_all();
    }

    /// Whether (and why) the watchdog shut the connection down.
    pub fn fired(&self) -> Option<Fired> {
        match self.shared.fired.load(Ordering::SeqCst) {
            HANDSHAKE_EXPIRED => Some(Fired::Handshake(self.handshake)),
            IDLE_EXPIRED => Some(Fired::Idle(self.idle)),
            _ => None,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often the intake is sampled: a tenth of the shorter period, at
/// least every 50 ms and at most every second.
fn tick(handshake: Duration, idle: Duration) -> Duration {
    (handshake.min(idle) / 10).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

fn watch(shared: &Shared, sock: &TcpStream, handshake: Duration, idle: Duration, work: &LocalWork) {
    let tick = tick(handshake, idle);
    let deadline = Instant::now() + handshake;
    let mut last_intake = None;
    let mut quiet_since = Instant::now();
    let Ok(mut stop) = shared.stop.lock() else {
        return;
    };
    loop {
        // A stop that came before this thread first took the lock has
        // already notified: waiting would sleep a whole tick, and the
        // connection's end would wait for it.
        if *stop {
            return;
        }
        match shared.wake.wait_timeout(stop, tick) {
            Ok((guard, _)) => stop = guard,
            Err(_) => return,
        }
        if *stop {
            return;
        }
        let now = Instant::now();
        let in_session = shared.in_session.lock().map(|s| *s).unwrap_or(true);
        let expired = if !in_session {
            (now >= deadline).then_some(HANDSHAKE_EXPIRED)
        } else {
            let intake = sys::tcp_intake(sock.as_fd()).ok();
            let waiting = intake.is_some_and(|(_, unread)| unread > 0);
            // Without a byte count (old kernels) silence cannot be told
            // apart from a sender the receiver keeps up with: never idle.
            let received = intake.and_then(|(received, _)| received);
            let moved = received.is_none() || received != last_intake;
            last_intake = received;
            if waiting || moved || work.busy() {
                quiet_since = now;
            }
            (now.duration_since(quiet_since) >= idle).then_some(IDLE_EXPIRED)
        };
        if let Some(why) = expired {
            shared.fired.store(why, Ordering::SeqCst);
            // Only the reading side: the session can still tell the
            // sender why in an ERROR.
            let _ = sock.shutdown(Shutdown::Read);
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (s, c)
    }

    #[test]
    fn a_handshake_that_never_ends_is_cut_off() {
        let (server, _client) = pair();
        let dog = Watchdog::spawn(
            server.try_clone().unwrap(),
            Duration::from_millis(200),
            Duration::from_secs(60),
            LocalWork::default(),
        )
        .unwrap();
        let mut buf = [0u8; 1];
        // Blocks until the watchdog shuts the socket down.
        assert_eq!((&server).read(&mut buf).unwrap(), 0);
        assert_eq!(dog.fired(), Some(Fired::Handshake(Duration::from_millis(200))));
    }

    #[test]
    fn silence_in_a_session_is_cut_off() {
        let (server, _client) = pair();
        let dog = Watchdog::spawn(
            server.try_clone().unwrap(),
            Duration::from_secs(60),
            Duration::from_millis(300),
            LocalWork::default(),
        )
        .unwrap();
        dog.session_started();
        let mut buf = [0u8; 1];
        assert_eq!((&server).read(&mut buf).unwrap(), 0);
        assert_eq!(dog.fired(), Some(Fired::Idle(Duration::from_millis(300))));
    }

    #[test]
    fn local_work_holds_off_the_idle_timeout() {
        let (server, mut client) = pair();
        let work = LocalWork::default();
        let dog = Watchdog::spawn(
            server.try_clone().unwrap(),
            Duration::from_secs(60),
            Duration::from_millis(100),
            work.clone(),
        )
        .unwrap();
        dog.session_started();
        work.during(|| std::thread::sleep(Duration::from_millis(400)));
        assert_eq!(dog.fired(), None, "cut off while the receiver was busy");
        std::io::Write::write_all(&mut client, b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!((&server).read(&mut buf).unwrap(), 1);
    }

    #[test]
    fn a_dropped_watchdog_leaves_the_socket_alone() {
        let (server, mut client) = pair();
        drop(
            Watchdog::spawn(
                server.try_clone().unwrap(),
                Duration::from_millis(100),
                Duration::from_millis(100),
                LocalWork::default(),
            )
            .unwrap(),
        );
        std::io::Write::write_all(&mut client, b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!((&server).read(&mut buf).unwrap(), 1);
    }
}
