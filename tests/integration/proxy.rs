//! A TCP proxy that breaks connections on purpose, for `send --retries`:
//! it listens on 127.0.0.1:0, forwards each connection to the receiver,
//! and cuts the first ones (or all) once a given number of bytes from the
//! sender have gone through, with a reset (RST) or a close (FIN) to both
//! ends. Later connections are forwarded untouched.
//!
//! A cut can wait for the test's word ([`Proxy::cut_now`]): past the mark
//! the proxy then swallows the sender's bytes (so the sender is never held
//! up in a write and goes on reading verdicts), still passing the
//! receiver's verdicts back, until the test has seen what it waits for (a
//! verdict on the sender's stderr). Nothing here sleeps to synchronise.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How a connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// SO_LINGER 0 and close: both ends read a reset.
    Reset,
    /// shutdown and close: both ends read the end of the stream.
    Close,
}

/// Which connections are cut, and when.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub cut: Cut,
    /// Bytes from the sender forwarded before the cut.
    pub after: u64,
    /// How many connections, from the first, are cut.
    pub connections: usize,
    /// Swallow the sender's bytes past the mark until [`Proxy::cut_now`].
    pub on_cue: bool,
}

/// State shared by the proxy's threads.
#[derive(Default)]
struct Shared {
    accepted: AtomicUsize,
    cut: AtomicUsize,
    stop: AtomicBool,
    /// Set by [`Proxy::cut_now`].
    cue: Mutex<bool>,
    cued: Condvar,
}

pub struct Proxy {
    /// Where senders connect: `127.0.0.1:PORT`.
    pub addr: String,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy in front of the receiver at `target`.
    pub fn start(target: &str, plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let target = target.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if theirs.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let n = theirs.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let cut = (n < plan.connections).then_some(plan);
                let shared = Arc::clone(&theirs);
                std::thread::spawn(move || forward(client, server, cut, &shared));
            }
        });
        Proxy { addr, shared }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections cut so far.
    pub fn cut(&self) -> usize {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Lets a connection held at its mark ([`Plan::on_cue`]) be cut.
    pub fn cut_now(&self) {
        *self.shared.cue.lock().unwrap() = true;
        self.shared.cued.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut_now();
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Forwards one connection; `cut`: break it as planned.
fn forward(client: TcpStream, server: TcpStream, cut: Option<Plan>, shared: &Shared) {
    let cutting = Arc::new(AtomicBool::new(false));
    // The receiver's side, back to the sender: as it comes.
    let back = {
        let (from, to, cutting) = (
            server.try_clone().unwrap(),
            client.try_clone().unwrap(),
            Arc::clone(&cutting),
        );
        std::thread::spawn(move || pump(from, to, u64::MAX, &cutting))
    };
    let limit = cut.map_or(u64::MAX, |p| p.after);
    let moved = pump(
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        limit,
        &cutting,
    );
    let Some(plan) = cut.filter(|_| moved >= limit) else {
        let _ = back.join();
        return;
    };
    cutting.store(true, Ordering::SeqCst);
    let swallow = plan.on_cue.then(|| {
        let mut from = client.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut from, &mut std::io::sink()))
    });
    if plan.on_cue {
        let mut cue = shared.cue.lock().unwrap();
        while !*cue {
            cue = shared.cued.wait(cue).unwrap();
        }
    }
    if plan.cut == Cut::Reset {
        for s in [&client, &server] {
            socket2::SockRef::from(s).set_linger(Some(Duration::ZERO)).unwrap();
        }
    }
    // Ends the other threads' reads without a FIN; they then drop their
    // copies, so that ours are the last and closing them resets.
    let how = match plan.cut {
        Cut::Reset => Shutdown::Read,
        Cut::Close => Shutdown::Both,
    };
    let _ = client.shutdown(how);
    let _ = server.shutdown(how);
    let _ = back.join();
    if let Some(swallow) = swallow {
        let _ = swallow.join();
    }
    shared.cut.fetch_add(1, Ordering::SeqCst);
    drop((client, server));
}

/// Copies from `from` to `to` until the end of the stream or `limit`
/// bytes; returns how many it copied. At the end of the stream it passes
/// the FIN on, unless the connection is being cut.
fn pump(mut from: TcpStream, mut to: TcpStream, limit: u64, cutting: &AtomicBool) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut moved = 0u64;
    while moved < limit {
        let want = usize::try_from(limit - moved).unwrap_or(usize::MAX).min(buf.len());
        match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                moved += n as u64;
            }
        }
    }
    if moved < limit && !cutting.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
    moved
}
