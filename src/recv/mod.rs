//! `zcp recv`: resolve DEST, listen, accept one sender, agree on version
//! and checksum, receive its entries, answer each with a verdict, and exit
//! with the transfer's status.
//!
//! A failure that breaks the stream (disk full, a lying or vanished peer,
//! a protocol violation, Ctrl-C) is reported to the sender as an ERROR
//! before the connection closes, so both ends print the same reason.

mod entry;

use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::checksum::Algorithm;
use crate::cli::RecvArgs;
use crate::dest::Destination;
use crate::display;
use crate::engine::Policy;
use crate::engine::inbound::Lander;
use crate::error::{self, Code};
use crate::frames::{self, FrameReader};
use crate::net;
use crate::progress::Reporter;
use crate::protocol::{Hello, Message, Preamble, Role, WireError};
use crate::sys;

/// How one entry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Mismatch,
    Failed,
}

impl Outcome {
    /// Which outcome decides the exit status when entries differ: an
    /// integrity failure outranks any other failure.
    fn rank(self) -> u8 {
        match self {
            Outcome::Committed => 0,
            Outcome::Failed => 1,
            Outcome::Mismatch => 2,
        }
    }

    fn code(self) -> Code {
        match self {
            Outcome::Committed => Code::Success,
            Outcome::Mismatch => Code::Integrity,
            Outcome::Failed => Code::Failure,
        }
    }
}

/// Everything one connection needs.
pub struct Session {
    pub sock: TcpStream,
    pub reader: FrameReader,
    pub dest: Destination,
    pub lander: Lander,
    pub reporter: Reporter,
    pub algorithm: Algorithm,
    pub umask: u32,
    pub fsync: bool,
    /// How long the sender may take to complete the handshake.
    pub handshake_timeout: Duration,
    /// The sender's address, for messages.
    pub peer: String,
}

pub fn run(args: RecvArgs) -> Result<Code> {
    // umask(2) can only be read by changing it: do it before any thread.
    let umask = sys::read_umask();
    let dest = Destination::resolve(&args.dest)?;
    let listener = net::listen(&args.listen)?;
    let local = listener.local_addr().context("reading the bound address")?;
    eprintln!("zcp: listening on {}", net::show_addr(local));

    let (sock, peer_addr) = net::accept(&listener).context("waiting for a sender")?;
    drop(listener);
    let peer = net::show_addr(peer_addr);
    let reporter = Reporter::new(args.common.verbosity());
    reporter.detail(format!("connection from {peer}"));
    let mut session = Session {
        reader: FrameReader::new(sock.try_clone().context("duplicating the socket")?),
        sock,
        dest,
        lander: Lander::new(Policy::new(!args.common.no_zerocopy)),
        reporter,
        algorithm: args.common.checksum,
        umask,
        fsync: args.fsync,
        handshake_timeout: args.common.handshake_timeout(),
        peer: peer.clone(),
    };
    match session.serve() {
        Ok(code) => Ok(code),
        Err(err) => {
            session.reporter.finish();
            session.refuse(&err);
            Err(err.context(format!("receiving from {peer}")))
        }
    }
}

impl Session {
    /// Runs the handshake and the entry loop; returns the worst outcome.
    fn serve(&mut self) -> Result<Code> {
        self.handshake()?;
        let mut worst = Outcome::Committed;
        let mut entries = 0u64;
        loop {
            match self.reader.expect()? {
                Message::Entry(e) => {
                    if entries > 0 && !matches!(self.dest, Destination::Directory { .. }) {
                        bail!("the sender sent a second file, but DEST is a single file or stdout");
                    }
                    entries += 1;
                    let outcome = self.receive(e)?;
                    if outcome.rank() > worst.rank() {
                        worst = outcome;
                    }
                }
                Message::Done => {
                    frames::send(&self.sock, &Message::Done)?;
                    break;
                }
                Message::Error(e) => {
                    return Err(error::coded(
                        Code::from_peer_error(e.code),
                        format!("sender: {}", display::escape_text(&e.message)),
                    ));
                }
                other => bail!("protocol error: unexpected {:?} between files", other.frame_type()),
            }
        }
        if entries == 0 {
            bail!("the sender ended the session without sending a file");
        }
        Ok(worst.code())
    }

    fn handshake(&mut self) -> Result<()> {
        self.sock.set_read_timeout(Some(self.handshake_timeout))?;
        frames::send_preamble(&self.sock)?;
        let theirs = self.reader.read_preamble()?;
        Preamble::ours().negotiate(&theirs)?;
        let hello = match self.reader.expect()? {
            Message::Hello(h) => h,
            other => bail!("protocol error: expected HELLO, got {:?}", other.frame_type()),
        };
        if hello.role != Role::Sender {
            bail!("the peer is not a zcp sender");
        }
        if hello.checksum != self.algorithm {
            bail!(
                "the sender uses --checksum {} but this receiver uses --checksum {}; use the same on both ends",
                hello.checksum.name(),
                self.algorithm.name()
            );
        }
        self.reporter.detail(format!(
            "peer {} ({}), protocol {}",
            self.peer,
            display::escape_text(&hello.software),
            crate::protocol::VERSION
        ));
        frames::send(
            &self.sock,
            &Message::Hello(Hello {
                role: Role::Receiver,
                checksum: self.algorithm,
                software: format!("zcp {}", env!("CARGO_PKG_VERSION")),
            }),
        )?;
        self.sock.set_read_timeout(None)?;
        Ok(())
    }

    /// Tells the sender why we are giving up, then closes gently: our FIN
    /// goes out after the ERROR, and we drain what is in flight for a
    /// moment so that closing does not reset the connection before the
    /// sender has read the reason.
    fn refuse(&self, err: &anyhow::Error) {
        let code = match error::exit_code(err) {
            Code::Integrity => Code::Integrity,
            _ => Code::Failure,
        };
        let message = if sys::signals::interrupted() {
            "the receiver was interrupted".to_string()
        } else {
            format!("{err:#}")
        };
        let _ = frames::send(
            &self.sock,
            &Message::Error(WireError {
                code: code as u8,
                message,
            }),
        );
        let _ = self.sock.shutdown(Shutdown::Write);
        if sys::signals::interrupted() {
            return;
        }
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(250)));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sink = vec![0u8; 64 * 1024];
        while Instant::now() < deadline {
            match (&self.sock).read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
