//! The receiver's side of the handshake: preamble, HELLO and, unless the
//! receiver runs with `--no-auth`, the AUTH exchange, after which the
//! session's frames are sealed. The end that connected proves first: a
//! listening receiver checks the sender's proof before it reveals its own
//! (it reveals nothing derived from its key to a peer that has not proved
//! it knows it); a receiver that connected to a listening sender
//! (`--connect`) proves first and then checks the sender's proof.

use anyhow::{Context, Result, bail};

use super::Session;
use crate::dest::Destination;
use crate::display;
use crate::error::{self, Code, protocol_bail};
use crate::frames;
use crate::key::{self, Key};
use crate::protocol::WireError;
use crate::protocol::auth::{Agreement, Approach, Transcript};
use crate::protocol::blocks::{MAX_STREAMS, TOKEN_LEN};
use crate::protocol::{Blocks, FRAME_HEADER_LEN, Hello, Message, NONCE_LEN, Preamble, Role};

impl Session {
    /// Runs the handshake on a connection that is `approach` for us. Any
    /// failure here happens before the session starts: nothing was
    /// written, and a listening caller may keep listening.
    pub fn handshake(&mut self, key: Option<&Key>, approach: Approach) -> Result<()> {
        frames::send_preamble(&self.sock)?;
        let theirs = self.reader.read_preamble()?;
        Preamble::ours().negotiate(&theirs)?;
        let hello = match self.reader.expect()? {
            Message::Hello(h) => h,
            Message::Error(e) => return Err(unauthenticated(&e)),
            other => protocol_bail!("expected HELLO, got {:?}", other.frame_type()),
        };
        if hello.role != Role::Sender {
            protocol_bail!("the peer is not a zcp sender");
        }
        if hello.checksum != self.algorithm {
            bail!(
                "the sender uses --checksum {} but this receiver uses --checksum {}; use the same on both ends",
                hello.checksum.name(),
                self.algorithm.name()
            );
        }
        match (key, hello.auth.is_some()) {
            // These texts go to an unauthenticated peer: they say nothing
            // about where this receiver's key comes from.
            (Some(_), false) => {
                return Err(error::coded(
                    Code::Auth,
                    format!(
                        "authentication required: this receiver accepts only senders that know its key (set {} or --key-file on the sender); the sender runs with --no-auth",
                        key::ENV
                    ),
                ));
            }
            (None, true) => {
                return Err(error::coded(
                    Code::Auth,
                    "this receiver runs with --no-auth and cannot prove it knows the sender's key: use --no-auth on the sender too, or give the receiver the key",
                ));
            }
            _ => {}
        }
        match hello.join {
            Some(token) if self.joins.knows(&token) => self.joining = Some(token),
            Some(_) => bail!("the sender asked to join a session this receiver does not have (it may have ended)"),
            None if self.busy => {
                bail!("the receiver is busy: it serves one transfer at a time (use -k to serve several)")
            }
            None => self.blocks = self.accept_blocks(hello.blocks, approach)?,
        }
        if hello.no_clobber && !self.no_clobber {
            self.no_clobber = true;
            self.reporter.detail("the sender asked for --no-clobber");
        }
        let sender_hello = self.reader.hello_body().to_vec();
        let nonce = match key {
            Some(_) => {
                let mut n = [0u8; NONCE_LEN];
                crate::sys::random_bytes(&mut n).context("generating a nonce")?;
                Some(n)
            }
            None => None,
        };
        let mut ours = Vec::new();
        self.encoder.push(
            &Message::Hello(Hello {
                role: Role::Receiver,
                checksum: self.algorithm,
                software: format!("zcp {}", env!("CARGO_PKG_VERSION")),
                // Tells the sender that status 3 (skipped) may come.
                no_clobber: self.no_clobber,
                auth: nonce,
                idle_timeout: Some(u32::try_from(self.idle_timeout.as_secs()).unwrap_or(u32::MAX)),
                blocks: self.blocks,
                session: self.token,
                join: None,
            }),
            &mut ours,
        );
        frames::write_all(std::os::fd::AsFd::as_fd(&self.sock), &ours).context("sending HELLO")?;
        if let Some(key) = key {
            let mut transcript = Transcript::new(&theirs.encode(), &Preamble::ours().encode());
            transcript.hello(&sender_hello);
            transcript.hello(&ours[FRAME_HEADER_LEN..]);
            let agreement = Agreement::new(key.bytes(), transcript.finish());
            let ours = Message::Auth(agreement.proof(Role::Receiver));
            if approach.proves_first() {
                self.encoder.send(&self.sock, &ours)?;
            }
            match self.reader.expect()? {
                Message::Auth(proof) if agreement.check(Role::Sender, &proof) => {}
                Message::Auth(_) if approach.proves_first() => {
                    return Err(error::coded(
                        Code::Auth,
                        "authentication failed: the sender's proof is wrong: it does not know this receiver's key (or another program answered on that port)",
                    ));
                }
                Message::Auth(_) => {
                    return Err(error::coded(
                        Code::Auth,
                        "authentication failed: the sender's key is not this receiver's (or the handshake was altered on the way)",
                    ));
                }
                Message::Error(e) => return Err(unauthenticated(&e)),
                other => protocol_bail!("expected AUTH, got {:?}", other.frame_type()),
            }
            if !approach.proves_first() {
                self.encoder.send(&self.sock, &ours)?;
            }
            let (sealer, opener) = agreement.channel(Role::Receiver);
            self.encoder.seal_with(sealer);
            self.reader.require_seals(opener);
        }
        self.reporter.detail(format!(
            "peer {} ({}), protocol {}, {}",
            self.peer,
            display::escape_text(&hello.software),
            crate::protocol::VERSION,
            match key {
                Some(key) => format!("authenticated with {}", key.origin),
                None => "not authenticated (--no-auth)".into(),
            }
        ));
        Ok(())
    }

    /// Block mode as this receiver accepts it: not into stdout (blocks may
    /// come in any order); more than one stream, with a token to join by,
    /// only when the sender connected to us (it opens the streams).
    fn accept_blocks(&mut self, asked: Option<Blocks>, approach: Approach) -> Result<Option<Blocks>> {
        let Some(asked) = asked else {
            return Ok(None);
        };
        if matches!(self.dest, Destination::Stdout) {
            self.reporter
                .detail("block mode declined: DEST is stdout, which takes bytes only in order");
            return Ok(None);
        }
        // Further streams connect to a receiver that listens.
        let streams = match approach {
            Approach::Accepted => asked.streams.min(MAX_STREAMS),
            Approach::Connected => 1,
        };
        if streams > 1 {
            let mut token = [0u8; TOKEN_LEN];
            crate::sys::random_bytes(&mut token).context("generating a session token")?;
            self.token = Some(token);
        }
        Ok(Some(Blocks { streams, ..asked }))
    }
}

/// The sender's ERROR before it proved it knows the key: anyone could have
/// sent it, so it may say "authentication failed" (5) but not claim an
/// integrity failure.
fn unauthenticated(e: &WireError) -> anyhow::Error {
    error::coded(
        Code::from_unauthenticated_peer_error(e.code),
        format!("sender: {}", display::peer_text(&e.message)),
    )
}
