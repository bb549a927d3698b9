//! The sender's listening half: a worker thread that reads what the
//! receiver says (VERDICT, DONE, ERROR) while the main thread is busy
//! sending. A receiver that fails mid-transfer (disk full, bad name) sends
//! ERROR; this thread then shuts the socket down, which stops a running
//! sendfile at once, and the main thread reports the receiver's reason
//! instead of a bare "broken pipe".

use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::error::{self, Code};
use crate::frames::FrameReader;
use crate::protocol::{Message, Plan, Verdict, WireError};
use crate::sys::signals;

/// Something the receiver said, or how its side of the connection ended.
#[derive(Debug)]
pub enum Reply {
    Verdict(Verdict),
    /// The blocks of a BLOCKED entry the receiver already holds.
    Plan(Plan),
    Done,
    Error(WireError),
    /// The receiver closed the connection.
    Closed,
    /// Reading failed or the receiver broke the protocol (a frame that
    /// fails authentication keeps its exit status, 5).
    Broken(anyhow::Error),
}

/// Whether a [`Reply::Broken`] is a frame that failed authentication:
/// something on the path altered the connection. Unlike a connection that
/// merely broke, that is never overlooked.
pub fn forged(e: &anyhow::Error) -> bool {
    error::exit_code(e) == Code::Auth
}

pub struct Replies {
    rx: Receiver<Reply>,
    worker: Option<JoinHandle<()>>,
}

impl Replies {
    /// Starts reading replies from `reader` (which owns a clone of the
    /// socket); `sock` is shut down when the receiver reports an error.
    pub fn spawn(mut reader: FrameReader, sock: TcpStream) -> Result<Replies> {
        let (tx, rx) = mpsc::channel();
        let worker = signals::spawn_worker("zcp-replies", move || {
            loop {
                let reply = match reader.next() {
                    Ok(Some(Message::Verdict(v))) => Reply::Verdict(v),
                    Ok(Some(Message::Plan(p))) => Reply::Plan(p),
                    Ok(Some(Message::Done)) => Reply::Done,
                    Ok(Some(Message::Error(e))) => Reply::Error(e),
                    Ok(Some(other)) => Reply::Broken(error::protocol(format_args!(
                        "the receiver sent an unexpected {:?} message",
                        other.frame_type()
                    ))),
                    Ok(None) => Reply::Closed,
                    Err(e) => Reply::Broken(e),
                };
                let last = !matches!(reply, Reply::Verdict(_) | Reply::Plan(_));
                if matches!(reply, Reply::Error(_) | Reply::Broken(_)) {
                    let _ = sock.shutdown(Shutdown::Both);
                }
                if tx.send(reply).is_err() || last {
                    return;
                }
            }
        })?;
        Ok(Replies {
            rx,
            worker: Some(worker),
        })
    }

    /// A reply that has already arrived, without waiting.
    pub fn try_next(&self) -> Option<Reply> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Reply::Closed),
        }
    }

    /// The next reply; SIGINT/SIGTERM end the wait with `None`, as does
    /// `limit` running out.
    pub fn next(&self, limit: Option<Duration>) -> Option<Reply> {
        let start = Instant::now();
        loop {
            if signals::interrupted() {
                return None;
            }
            let step = Duration::from_millis(100);
            match self.rx.recv_timeout(step) {
                Ok(r) => return Some(r),
                Err(RecvTimeoutError::Disconnected) => return Some(Reply::Closed),
                Err(RecvTimeoutError::Timeout) => {
                    if limit.is_some_and(|l| start.elapsed() >= l) {
                        return None;
                    }
                }
            }
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        // The worker ends when the socket closes; do not wait for it here,
        // the process is about to exit or the socket is already shut down.
        drop(self.worker.take());
    }
}
