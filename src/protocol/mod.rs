//! The zcp wire format, version 4: the preamble, frame headers and every
//! control message, with encoding, decoding and hard limits. It never
//! touches a socket or payload bytes; `frames` does the I/O.
//!
//! docs/PROTOCOL.md is the specification; this module implements it. Any
//! change here changes that document and, if incompatible, the version.
//! Decoding is total: every byte string yields a message or a
//! [`ProtocolError`], never a panic, and no length read from the peer is
//! used before it is checked against a limit.

use std::fmt;

pub mod auth;
pub mod blocks;
mod cursor;
mod entry;
mod path;

use crate::checksum::{Algorithm, Digest};
pub use blocks::{Block, Blocks, Plan};
use cursor::{Reader, lossy_text, put_digest, put_option, put_text, take_digest, take_text, truncate_utf8};
pub use entry::{Entry, EntryKind, Mtime, Payload};
pub use path::{LinkText, Name, RelPath};

/// First four bytes each side sends. The high bit of the first byte catches
/// 7-bit channels and text protocols, as in PNG.
pub const MAGIC: [u8; 4] = [0x89, b'Z', b'C', b'P'];
/// The newest protocol version this zcp speaks.
pub const VERSION: u16 = 4;
/// The oldest protocol version this zcp speaks.
pub const MIN_VERSION: u16 = 4;
pub const PREAMBLE_LEN: usize = 8;
pub const FRAME_HEADER_LEN: usize = 5;

/// Largest body of any control frame.
pub const MAX_CONTROL_LEN: u32 = 64 * 1024;
/// Largest body of a DATA frame (payload of a stream entry).
pub const MAX_DATA_LEN: u32 = 16 << 20;
/// Largest path component: NAME_MAX on Linux.
pub const MAX_NAME_LEN: usize = 255;
/// Largest relative path: PATH_MAX on Linux.
pub const MAX_PATH_LEN: usize = 4096;
/// Largest symbolic link text (PATH_MAX without the NUL).
pub const MAX_LINK_LEN: usize = 4095;
/// Largest human-readable message in ABORT, VERDICT and ERROR.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Bytes of fresh randomness each end puts in its HELLO when it
/// authenticates.
pub const NONCE_LEN: usize = 32;
/// Length of the proof in an AUTH frame (a full HMAC-SHA256).
pub const PROOF_LEN: usize = 32;
/// Length of the tag that ends every sealed frame (HMAC-SHA256 cut to 128
/// bits).
pub const TAG_LEN: usize = 16;
/// Largest HELLO SOFTWARE value.
const MAX_SOFTWARE_LEN: usize = 64;

/// Why a byte string is not a valid message. Carries no peer bytes except
/// through the escaped display of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

pub(crate) fn bad<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// The 8 bytes that open a connection in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub max_version: u16,
    pub min_version: u16,
}

impl Preamble {
    pub fn ours() -> Preamble {
        Preamble {
            max_version: VERSION,
            min_version: MIN_VERSION,
        }
    }

    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.max_version.to_be_bytes());
        out[6..8].copy_from_slice(&self.min_version.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; PREAMBLE_LEN]) -> Result<Preamble, ProtocolError> {
        if bytes[..4] != MAGIC {
            return bad(format!(
                "peer is not speaking the zcp protocol (it sent {})",
                crate::display::escape_bytes(&bytes[..])
            ));
        }
        let max_version = u16::from_be_bytes([bytes[4], bytes[5]]);
        let min_version = u16::from_be_bytes([bytes[6], bytes[7]]);
        if min_version > max_version {
            return bad(format!(
                "peer announced an empty version range {min_version}..{max_version}"
            ));
        }
        Ok(Preamble {
            max_version,
            min_version,
        })
    }

    /// The highest version both sides speak.
    pub fn negotiate(&self, peer: &Preamble) -> Result<u16, ProtocolError> {
        let version = self.max_version.min(peer.max_version);
        if version < self.min_version || version < peer.min_version {
            return bad(format!(
                "incompatible versions: peer speaks protocol {}..={}, this zcp {} speaks {}..={}",
                peer.min_version,
                peer.max_version,
                env!("CARGO_PKG_VERSION"),
                self.min_version,
                self.max_version
            ));
        }
        Ok(version)
    }
}

/// Frame types. Numbers are part of the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Hello = 1,
    Entry = 2,
    Data = 3,
    Trailer = 4,
    Abort = 5,
    Verdict = 6,
    Done = 7,
    Error = 8,
    Hole = 9,
    Auth = 10,
    Ping = 11,
    Plan = 12,
    Block = 13,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<FrameType> {
        Some(match b {
            1 => FrameType::Hello,
            2 => FrameType::Entry,
            3 => FrameType::Data,
            4 => FrameType::Trailer,
            5 => FrameType::Abort,
            6 => FrameType::Verdict,
            7 => FrameType::Done,
            8 => FrameType::Error,
            9 => FrameType::Hole,
            10 => FrameType::Auth,
            11 => FrameType::Ping,
            12 => FrameType::Plan,
            13 => FrameType::Block,
            _ => return None,
        })
    }

    fn max_len(self) -> u32 {
        match self {
            FrameType::Data => MAX_DATA_LEN,
            FrameType::Done | FrameType::Ping => 0,
            FrameType::Hole => 8,
            FrameType::Auth => PROOF_LEN as u32,
            // entry, index, length and the longest digest.
            FrameType::Block => 12 + 2 + 64,
            _ => MAX_CONTROL_LEN,
        }
    }
}

/// A decoded, limit-checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameType,
    pub len: u32,
}

impl FrameHeader {
    pub fn encode(kind: FrameType, len: u32) -> [u8; FRAME_HEADER_LEN] {
        let l = len.to_be_bytes();
        [kind as u8, l[0], l[1], l[2], l[3]]
    }

    /// Decodes a header of an unsealed frame.
    #[cfg(test)]
    pub fn decode(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, ProtocolError> {
        FrameHeader::decode_in(bytes, false)
    }

    /// Decodes a header; in a sealed session every frame but DATA also
    /// carries its tag, which `len` counts.
    pub fn decode_in(bytes: &[u8; FRAME_HEADER_LEN], sealed: bool) -> Result<FrameHeader, ProtocolError> {
        let Some(kind) = FrameType::from_byte(bytes[0]) else {
            return bad(format!("unknown frame type {}", bytes[0]));
        };
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let max = if sealed && kind != FrameType::Data {
            kind.max_len() + TAG_LEN as u32
        } else {
            kind.max_len()
        };
        if len > max {
            return bad(format!("{kind:?} frame of {len} bytes exceeds the limit of {max}"));
        }
        if kind == FrameType::Data && len == 0 {
            return bad("empty DATA frame");
        }
        Ok(FrameHeader { kind, len })
    }
}

/// Which end of the transfer a HELLO comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender = 0,
    Receiver = 1,
}

/// HELLO option tags. Bit 15 marks an option the peer must understand.
mod tag {
    pub const SOFTWARE: u16 = 1;
    pub const ROLE: u16 = 2;
    pub const CHECKSUM: u16 = 3;
    pub const NO_CLOBBER: u16 = 4;
    pub const AUTH: u16 = 5;
    pub const IDLE_TIMEOUT: u16 = 6;
    pub const BLOCKS: u16 = 7;
    pub const SESSION: u16 = 8;
    pub const JOIN: u16 = 9;
    pub const CRITICAL: u16 = 0x8000;
}

/// First message in each direction after the preamble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    pub checksum: Algorithm,
    /// Informational, e.g. "zcp 0.1.0"; shown in errors, never trusted.
    pub software: String,
    /// Sender only: the receiver must not replace anything that exists.
    pub no_clobber: bool,
    /// Present when this end authenticates with the shared key: its fresh
    /// nonce. Both ends must agree (both present or both absent).
    pub auth: Option<[u8; NONCE_LEN]>,
    /// Receiver only: the longest silence it tolerates from the sender
    /// during the session, in seconds (the sender sends PING when idle).
    pub idle_timeout: Option<u32>,
    /// Block mode: proposed by the sender, accepted by the receiver.
    pub blocks: Option<Blocks>,
    /// Receiver only, when it allows more than one stream: the token a
    /// further connection presents to join this session.
    pub session: Option<[u8; blocks::TOKEN_LEN]>,
    /// Sender only: this connection is a further stream of the session
    /// with this token.
    pub join: Option<[u8; blocks::TOKEN_LEN]>,
}

/// Ends an entry's payload with the sender's count and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub bytes: u64,
    pub digest: Digest,
}

/// The ABORT reason byte: the source changed while it was sent.
const ABORT_CHANGED: u8 = 1;

/// Why the sender gave up on an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted {
    pub text: String,
    /// The source changed while it was sent: nothing received of it can
    /// be used again (a kept partial is discarded).
    pub changed: bool,
}

impl Aborted {
    pub fn new(text: impl Into<String>, changed: bool) -> Aborted {
        Aborted {
            text: text.into(),
            changed,
        }
    }
}

/// The receiver's decision on one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictStatus {
    /// Verified and renamed onto its final name.
    Committed = 0,
    /// The digests differ; nothing was committed.
    Mismatch = 1,
    /// The receiver could not store it (message says why).
    Failed = 2,
    /// Not stored because something exists under its name (NO_CLOBBER).
    Skipped = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: VerdictStatus,
    /// The receiver's own digest of what it received (None when unverified
    /// or when it failed before finishing).
    pub digest: Digest,
    pub message: String,
}

/// A fatal error: the sender of it closes the connection afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The exit code the reporting side uses (see error.rs).
    pub code: u8,
    pub message: String,
}

/// Every control message. DATA appears only as its header: its body is
/// payload and moves by splice, never through this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Entry(Entry),
    Data(u32),
    /// A run of this many zero bytes in a sparse file, not sent.
    Hole(u64),
    Trailer(Trailer),
    Abort(Aborted),
    Verdict(Verdict),
    Done,
    Error(WireError),
    /// Proof of knowing the shared key (see docs/PROTOCOL.md).
    Auth([u8; PROOF_LEN]),
    /// Nothing to say yet: keeps an idle session alive.
    Ping,
    /// The blocks of a BLOCKED entry the receiver already holds.
    Plan(Plan),
    /// One block's header; its raw bytes follow.
    Block(Block),
}

impl Message {
    /// The frame type of this message.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Message::Hello(_) => FrameType::Hello,
            Message::Entry(_) => FrameType::Entry,
            Message::Data(_) => FrameType::Data,
            Message::Hole(_) => FrameType::Hole,
            Message::Trailer(_) => FrameType::Trailer,
            Message::Abort(_) => FrameType::Abort,
            Message::Verdict(_) => FrameType::Verdict,
            Message::Done => FrameType::Done,
            Message::Error(_) => FrameType::Error,
            Message::Auth(_) => FrameType::Auth,
            Message::Ping => FrameType::Ping,
            Message::Plan(_) => FrameType::Plan,
            Message::Block(_) => FrameType::Block,
        }
    }

    /// Appends the whole frame (header and body) to `out`. For `Data` only
    /// the header is written; the caller sends the payload after it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        match self {
            Message::Hello(h) => encode_hello(h, out),
            Message::Entry(e) => entry::encode(e, out),
            Message::Data(_) | Message::Done | Message::Ping => {}
            Message::Auth(proof) => out.extend_from_slice(proof),
            Message::Hole(n) => out.extend_from_slice(&n.to_be_bytes()),
            Message::Trailer(t) => {
                out.extend_from_slice(&t.bytes.to_be_bytes());
                put_digest(&t.digest, out);
            }
            Message::Abort(a) => {
                put_text(&a.text, out);
                if a.changed {
                    out.push(ABORT_CHANGED);
                }
            }
            Message::Verdict(v) => {
                out.push(v.status as u8);
                put_digest(&v.digest, out);
                put_text(&v.message, out);
            }
            Message::Error(e) => {
                out.push(e.code);
                put_text(&e.message, out);
            }
            Message::Plan(p) => p.encode(out),
            Message::Block(b) => b.encode(out),
        }
        let len = match self {
            Message::Data(n) => *n,
            _ => u32::try_from(out.len() - start - FRAME_HEADER_LEN).unwrap_or(u32::MAX),
        };
        out[start..start + FRAME_HEADER_LEN].copy_from_slice(&FrameHeader::encode(self.frame_type(), len));
    }

    /// Decodes a control frame's body. `header` must come from
    /// [`FrameHeader::decode`]; for DATA the body is not inspected.
    pub fn decode(header: FrameHeader, body: &[u8]) -> Result<Message, ProtocolError> {
        if header.kind != FrameType::Data && body.len() != header.len as usize {
            return bad("frame body length does not match its header");
        }
        let mut r = Reader::new(body);
        let msg = match header.kind {
            FrameType::Hello => Message::Hello(decode_hello(&mut r)?),
            FrameType::Entry => Message::Entry(entry::decode(&mut r)?),
            FrameType::Hole => {
                let n = r.u64("hole length")?;
                r.finish("HOLE")?;
                if n == 0 {
                    return bad("empty HOLE");
                }
                Message::Hole(n)
            }
            FrameType::Data => return Ok(Message::Data(header.len)),
            FrameType::Trailer => {
                let bytes = r.u64("trailer byte count")?;
                let digest = take_digest(&mut r)?;
                r.finish("TRAILER")?;
                Message::Trailer(Trailer { bytes, digest })
            }
            FrameType::Abort => {
                let text = take_text(&mut r)?;
                let changed = match r.is_empty() {
                    true => false,
                    false => match r.u8("abort reason")? {
                        ABORT_CHANGED => true,
                        other => return bad(format!("unknown ABORT reason {other}")),
                    },
                };
                r.finish("ABORT")?;
                Message::Abort(Aborted { text, changed })
            }
            FrameType::Verdict => {
                let status = match r.u8("verdict status")? {
                    0 => VerdictStatus::Committed,
                    1 => VerdictStatus::Mismatch,
                    2 => VerdictStatus::Failed,
                    3 => VerdictStatus::Skipped,
                    s => return bad(format!("unknown verdict status {s}")),
                };
                let digest = take_digest(&mut r)?;
                let message = take_text(&mut r)?;
                r.finish("VERDICT")?;
                Message::Verdict(Verdict {
                    status,
                    digest,
                    message,
                })
            }
            FrameType::Done => Message::Done,
            FrameType::Ping => Message::Ping,
            FrameType::Auth => {
                let proof = r.bytes(PROOF_LEN, "proof")?;
                r.finish("AUTH")?;
                let mut out = [0u8; PROOF_LEN];
                out.copy_from_slice(proof);
                Message::Auth(out)
            }
            FrameType::Error => {
                let code = r.u8("error code")?;
                let message = take_text(&mut r)?;
                r.finish("ERROR")?;
                Message::Error(WireError { code, message })
            }
            FrameType::Plan => Message::Plan(Plan::decode(&mut r)?),
            FrameType::Block => Message::Block(Block::decode(&mut r)?),
        };
        Ok(msg)
    }
}

fn encode_hello(h: &Hello, out: &mut Vec<u8>) {
    let software = truncate_utf8(&h.software, MAX_SOFTWARE_LEN);
    put_option(out, tag::SOFTWARE, software.as_bytes());
    put_option(out, tag::ROLE | tag::CRITICAL, &[h.role as u8]);
    put_option(out, tag::CHECKSUM | tag::CRITICAL, &[h.checksum.wire_id()]);
    if h.no_clobber {
        put_option(out, tag::NO_CLOBBER | tag::CRITICAL, &[]);
    }
    if let Some(nonce) = &h.auth {
        let mut value = Vec::with_capacity(1 + NONCE_LEN);
        value.push(AUTH_HMAC_SHA256);
        value.extend_from_slice(nonce);
        put_option(out, tag::AUTH | tag::CRITICAL, &value);
    }
    if let Some(seconds) = h.idle_timeout {
        put_option(out, tag::IDLE_TIMEOUT, &seconds.to_be_bytes());
    }
    if let Some(b) = &h.blocks {
        put_option(out, tag::BLOCKS, &b.encode());
    }
    if let Some(token) = &h.session {
        put_option(out, tag::SESSION, token);
    }
    if let Some(token) = &h.join {
        put_option(out, tag::JOIN | tag::CRITICAL, token);
    }
}

/// The AUTH option's method byte: challenge-response and sealing with
/// HMAC-SHA256 over a shared key.
const AUTH_HMAC_SHA256: u8 = 1;

fn decode_hello(r: &mut Reader<'_>) -> Result<Hello, ProtocolError> {
    let mut role = None;
    let mut checksum = None;
    let mut software = String::new();
    let mut no_clobber = false;
    let mut auth = None;
    let mut idle_timeout = None;
    let (mut blocks, mut session, mut join) = (None, None, None);
    while !r.is_empty() {
        let raw_tag = r.u16("option tag")?;
        let len = r.u16("option length")?;
        let value = r.bytes(usize::from(len), "option value")?;
        let one_byte = |what: &str| -> Result<u8, ProtocolError> {
            match value {
                [b] => Ok(*b),
                _ => bad(format!("HELLO option {what} must be one byte")),
            }
        };
        match raw_tag & !tag::CRITICAL {
            tag::SOFTWARE => software = lossy_text(value, MAX_SOFTWARE_LEN),
            tag::ROLE => {
                role = Some(match one_byte("role")? {
                    0 => Role::Sender,
                    1 => Role::Receiver,
                    other => return bad(format!("unknown role {other}")),
                })
            }
            tag::CHECKSUM => {
                let id = one_byte("checksum")?;
                checksum = Some(
                    Algorithm::from_wire_id(id)
                        .ok_or_else(|| ProtocolError(format!("unknown checksum algorithm {id}")))?,
                );
            }
            tag::NO_CLOBBER if value.is_empty() => no_clobber = true,
            tag::NO_CLOBBER => return bad("HELLO option NO_CLOBBER must be empty"),
            tag::AUTH => match value.split_first() {
                Some((&AUTH_HMAC_SHA256, nonce)) if nonce.len() == NONCE_LEN => {
                    let mut n = [0u8; NONCE_LEN];
                    n.copy_from_slice(nonce);
                    auth = Some(n);
                }
                Some((&AUTH_HMAC_SHA256, _)) => {
                    return bad(format!("HELLO option AUTH must carry a {NONCE_LEN}-byte nonce"));
                }
                Some((method, _)) => return bad(format!("unknown authentication method {method}")),
                None => return bad("empty HELLO option AUTH"),
            },
            tag::IDLE_TIMEOUT => match <[u8; 4]>::try_from(value) {
                Ok(b) if u32::from_be_bytes(b) > 0 => idle_timeout = Some(u32::from_be_bytes(b)),
                _ => return bad("HELLO option IDLE_TIMEOUT must be 4 bytes, at least 1 second"),
            },
            tag::BLOCKS => blocks = Some(Blocks::decode(value)?),
            tag::SESSION => session = Some(blocks::token(value, "SESSION")?),
            tag::JOIN => join = Some(blocks::token(value, "JOIN")?),
            unknown if raw_tag & tag::CRITICAL != 0 => {
                return bad(format!(
                    "peer requires option {unknown}, which this zcp does not understand"
                ));
            }
            _ => {} // optional and unknown: ignored, by design
        }
    }
    Ok(Hello {
        role: role.ok_or_else(|| ProtocolError("HELLO without a role".into()))?,
        checksum: checksum.ok_or_else(|| ProtocolError("HELLO without a checksum algorithm".into()))?,
        software,
        no_clobber,
        auth,
        idle_timeout,
        blocks,
        session,
        join,
    })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
