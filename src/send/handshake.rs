//! The sender's side of the handshake: preamble, HELLO and, unless the
//! sender runs with `--no-auth`, the AUTH exchange, after which every
//! frame is sealed. The end that connected proves first: a sender that
//! connected sends its proof and then checks the receiver's; a listening
//! sender (`--listen`) checks the receiver's proof before it reveals its
//! own. The receiver's reading half is handed to a [`Replies`] worker
//! once the receiver has accepted the session.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::receiver_said;
use super::replies::Replies;
use crate::checksum::Algorithm;
use crate::error::{self, Code, protocol_bail};
use crate::frames::{self, Encoder, FrameReader};
use crate::key::{self, Key};
use crate::protocol::auth::{Agreement, Approach, Transcript};
use crate::protocol::blocks::TOKEN_LEN;
use crate::protocol::{Blocks, FRAME_HEADER_LEN, Hello, Message, NONCE_LEN, Preamble, Role, WireError};

/// What this sender asks for in its HELLO.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub algorithm: Algorithm,
    pub no_clobber: bool,
    /// Block mode, when --resume, --retries or -P asks for it.
    pub blocks: Option<Blocks>,
    /// This connection joins the session with this token as a further
    /// stream.
    pub join: Option<[u8; TOKEN_LEN]>,
}

/// Preamble, HELLO and (unless --no-auth) AUTH exchange on a connection
/// that is `approach` for us, all within `timeout` from now; hands the
/// reading half to a [`Replies`] worker once the receiver has accepted
/// us.
pub fn handshake(
    sock: &TcpStream,
    offer: &Offer,
    key: Option<&Key>,
    approach: Approach,
    timeout: Duration,
) -> Result<Agreed> {
    let deadline = Instant::now() + timeout;
    exchange(sock, offer, key, approach, deadline).map_err(|err| {
        if timed_out(&err) && Instant::now() >= deadline {
            // Still a timed-out connection, for `--retries`.
            std::io::Error::new(
                ErrorKind::TimedOut,
                format!(
                    "the receiver did not complete the handshake within {} s (--timeout)",
                    timeout.as_secs()
                ),
            )
            .into()
        } else {
            err
        }
    })
}

/// Whether the handshake ended because a read reached the deadline.
fn timed_out(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::TimedOut)
    })
}

fn exchange(
    sock: &TcpStream,
    offer: &Offer,
    key: Option<&Key>,
    approach: Approach,
    deadline: Instant,
) -> Result<Agreed> {
    let nonce = key
        .map(|_| {
            let mut n = [0u8; NONCE_LEN];
            crate::sys::random_bytes(&mut n).map(|()| n)
        })
        .transpose()
        .context("generating a nonce")?;
    let Offer {
        algorithm, no_clobber, ..
    } = *offer;
    let mut encoder = Encoder::default();
    let mut opening = Preamble::ours().encode().to_vec();
    let hello_at = opening.len();
    encoder.push(
        &Message::Hello(Hello {
            role: Role::Sender,
            checksum: algorithm,
            software: format!("zcp {}", env!("CARGO_PKG_VERSION")),
            no_clobber,
            auth: nonce,
            idle_timeout: None,
            blocks: offer.blocks,
            session: None,
            join: offer.join,
        }),
        &mut opening,
    );
    frames::write_all(sock.as_fd(), &opening).context("sending HELLO")?;
    let mut reader = FrameReader::new(sock.try_clone()?);
    // The whole handshake, however the receiver trickles it, ends by then.
    reader.set_deadline(Some(deadline))?;
    let theirs = reader.read_preamble()?;
    Preamble::ours().negotiate(&theirs)?;
    let hello = match reader.expect()? {
        Message::Hello(h) if h.role != Role::Receiver => protocol_bail!("the peer is not a zcp receiver"),
        Message::Hello(h) if h.checksum != algorithm => bail!(
            "the receiver uses --checksum {} but this side uses --checksum {}",
            h.checksum.name(),
            algorithm.name()
        ),
        Message::Hello(h) => h,
        Message::Error(e) => return Err(unauthenticated_refusal(&e)),
        other => protocol_bail!("expected HELLO, the receiver sent {:?}", other.frame_type()),
    };
    match (key, hello.auth.is_some()) {
        (Some(key), true) => {
            let mut transcript = Transcript::new(&Preamble::ours().encode(), &theirs.encode());
            transcript.hello(&opening[hello_at + FRAME_HEADER_LEN..]);
            transcript.hello(reader.hello_body());
            let agreement = Agreement::new(key.bytes(), transcript.finish());
            let ours = Message::Auth(agreement.proof(Role::Sender));
            if approach.proves_first() {
                encoder.send(sock, &ours)?;
            }
            match reader.expect()? {
                Message::Auth(proof) if agreement.check(Role::Receiver, &proof) => {}
                Message::Auth(_) => {
                    // The peer has proved nothing: a listening sender tells
                    // it no more than a listening receiver would.
                    let (told, local) = match approach {
                        Approach::Connected => {
                            let why = "the receiver's proof is wrong: it does not know this sender's key";
                            (
                                why,
                                format!("authentication failed: {why} (or another program answered on that port)"),
                            )
                        }
                        Approach::Accepted => {
                            let why = "authentication failed: the receiver's key is not this sender's (or the handshake was altered on the way)";
                            (why, why.to_string())
                        }
                    };
                    let _ = encoder.send(sock, &refusal(told));
                    return Err(error::coded(Code::Auth, local));
                }
                Message::Error(e) => return Err(unauthenticated_refusal(&e)),
                other => protocol_bail!("expected AUTH, the receiver sent {:?}", other.frame_type()),
            }
            if !approach.proves_first() {
                encoder.send(sock, &ours)?;
            }
            let (sealer, opener) = agreement.channel(Role::Sender);
            encoder.seal_with(sealer);
            reader.require_seals(opener);
        }
        (Some(key), false) => {
            let why = "this sender authenticates, but the receiver runs with --no-auth";
            let _ = encoder.send(sock, &refusal(why));
            return Err(error::coded(
                Code::Auth,
                format!(
                    "the receiver runs with --no-auth, so it cannot prove it knows {}: pass --no-auth to send to it anyway",
                    key.origin
                ),
            ));
        }
        (None, true) => {
            return Err(error::coded(
                Code::Auth,
                format!(
                    "the receiver requires authentication: set {} to its key instead of --no-auth",
                    key::ENV
                ),
            ));
        }
        (None, false) => {}
    }
    // The receiver answered: from here on it may take as long as the data.
    reader.set_deadline(None)?;
    let blocks = agree_blocks(offer.blocks, hello.blocks)?;
    Ok(Agreed {
        blocks,
        session: hello.session.filter(|_| blocks.is_some_and(|b| b.streams > 1)),
        replies: Replies::spawn(reader, sock.try_clone()?)?,
        no_clobber: no_clobber || hello.no_clobber,
        encoder,
        idle_timeout: hello.idle_timeout.map(|s| Duration::from_secs(u64::from(s))),
    })
}

/// What the handshake settled.
pub struct Agreed {
    pub replies: Replies,
    /// NO_CLOBBER is in force (we asked, or the receiver applies it).
    pub no_clobber: bool,
    /// Encodes, and in an authenticated session seals, our frames.
    pub encoder: Encoder,
    /// The receiver's idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Block mode as the receiver accepted it (None: every file goes the
    /// version 3 way, e.g. to a receiver writing to stdout).
    pub blocks: Option<Blocks>,
    /// The token that joins further streams to this session.
    pub session: Option<[u8; TOKEN_LEN]>,
}

/// Block mode as both ends agreed: the receiver may accept fewer streams
/// and decline resume, but nothing we did not ask for.
fn agree_blocks(ours: Option<Blocks>, theirs: Option<Blocks>) -> Result<Option<Blocks>> {
    match (ours, theirs) {
        (Some(o), Some(t)) => {
            if t.size != o.size || t.streams > o.streams || (t.resume && !o.resume) || (t.retry && !o.retry) {
                protocol_bail!("the receiver answered block mode with terms this sender did not offer");
            }
            Ok(Some(t))
        }
        (None, Some(_)) => protocol_bail!("the receiver chose block mode, which this sender did not offer"),
        (_, None) => Ok(None),
    }
}

/// The receiver's ERROR before it proved it knows the key: anyone could
/// have sent it, so it may say "authentication failed" (5) but not claim
/// an integrity failure.
fn unauthenticated_refusal(e: &WireError) -> anyhow::Error {
    error::coded(Code::from_unauthenticated_peer_error(e.code), receiver_said(&e.message))
}

/// The ERROR that ends a session which failed to authenticate.
fn refusal(why: &str) -> Message {
    Message::Error(WireError {
        code: Code::Auth as u8,
        message: why.to_string(),
    })
}
