//! Further streams (`-P N`): the connections a sender opens after the
//! first one, each joining the session by the token the receiver gave in
//! its HELLO, each with its own handshake and sealing keys. They carry
//! blocks only (see blocks.rs) and end with DONE.

use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

use super::handshake::{Offer, handshake};
use super::replies::Replies;
use crate::frames::Encoder;
use crate::key::Key;
use crate::net::{self, HostPort};
use crate::protocol::Message;
use crate::protocol::auth::Approach;

/// One further connection of the session.
pub struct Stream {
    pub sock: TcpStream,
    /// Seals what we write on it.
    pub encoder: Encoder,
    /// Reads what the receiver says on it (only ERROR is allowed), which
    /// shuts the socket down and so stops our writes.
    _replies: Replies,
}

impl Stream {
    /// Connects to `addr` (the address the first connection reached, not
    /// a new lookup) from `bind`, and joins the session (`offer.join`).
    pub fn open(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        offer: &Offer,
        key: Option<&Key>,
        timeout: Duration,
    ) -> Result<Stream> {
        let target = HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        let (sock, _) = net::connect(&target, bind).context("opening a further stream")?;
        let agreed = handshake(&sock, offer, key, Approach::Connected, timeout).context("joining a further stream")?;
        Ok(Stream {
            sock,
            encoder: agreed.encoder,
            _replies: agreed.replies,
        })
    }

    /// Sends `msg` on this stream.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        self.encoder.send(&self.sock, msg)
    }

    /// Ends the stream: DONE, then our side of the connection.
    pub fn finish(&mut self) -> Result<()> {
        self.send(&Message::Done)?;
        let _ = self.sock.shutdown(Shutdown::Write);
        Ok(())
    }
}
