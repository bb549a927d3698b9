//! Authentication with a shared key: the proofs exchanged in AUTH frames
//! and the tags that seal every control frame after them
//! (docs/PROTOCOL.md, "Authentication").
//!
//! Both ends put a fresh nonce in their HELLO. A transcript hash covers both
//! preambles and both HELLO bodies exactly as sent, so no option (checksum,
//! NO_CLOBBER, the nonces themselves) can be changed on the way without the
//! proofs failing. From the key and the transcript each end derives two
//! proofs, one per role, and two sealing keys, one per direction. Proofs
//! are compared in constant time. The end that connected proves first
//! ([`Approach`]), whichever role it plays. Nothing here touches a socket.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};

use super::{FRAME_HEADER_LEN, FrameType, PROOF_LEN, ProtocolError, Role, TAG_LEN, bad};

type HmacSha256 = Hmac<Sha256>;

/// Domain separation labels: each derived value has its own.
const TRANSCRIPT: &[u8] = b"zcp v3 transcript";
const SENDER_PROOF: &[u8] = b"zcp v3 sender proof";
const RECEIVER_PROOF: &[u8] = b"zcp v3 receiver proof";
const TO_RECEIVER: &[u8] = b"zcp v3 seal sender to receiver";
const TO_SENDER: &[u8] = b"zcp v3 seal receiver to sender";

/// How this end came to the connection, which decides the order of the
/// proofs: the end that connected proves first, so an end that listens
/// reveals nothing derived from the key to a peer that has not proved it
/// knows it. Roles do not matter: usually the sender connects, but a
/// sender may listen (`zcp send --listen`) for a receiver to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approach {
    /// This end connected to a listening peer.
    Connected,
    /// This end listened and accepted the connection.
    Accepted,
}

impl Approach {
    /// Whether this end sends its proof before it has checked the peer's.
    pub fn proves_first(self) -> bool {
        self == Approach::Connected
    }
}

/// Hash of what both ends said before authenticating.
pub struct Transcript(Sha256);

impl Transcript {
    /// Starts with both preambles, the sender's first.
    pub fn new(sender_preamble: &[u8], receiver_preamble: &[u8]) -> Transcript {
        let mut h = Sha256::new();
        h.update(TRANSCRIPT);
        h.update(sender_preamble);
        h.update(receiver_preamble);
        Transcript(h)
    }

    /// Adds a HELLO body as sent (the sender's first), length-prefixed.
    pub fn hello(&mut self, body: &[u8]) {
        self.0.update((body.len() as u32).to_be_bytes());
        self.0.update(body);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// What one session's transcript and the shared key lead to.
pub struct Agreement {
    key: HmacSha256,
    transcript: [u8; 32],
}

impl Agreement {
    /// `key` may be any length (HMAC hashes long keys down).
    pub fn new(key: &[u8], transcript: [u8; 32]) -> Agreement {
        Agreement {
            key: keyed(key),
            transcript,
        }
    }

    fn derive(&self, label: &[u8]) -> HmacSha256 {
        let mut mac = self.key.clone();
        mac.update(label);
        mac.update(&self.transcript);
        mac
    }

    fn proof_label(role: Role) -> &'static [u8] {
        match role {
            Role::Sender => SENDER_PROOF,
            Role::Receiver => RECEIVER_PROOF,
        }
    }

    /// The proof that `role` sends in its AUTH frame.
    pub fn proof(&self, role: Role) -> [u8; PROOF_LEN] {
        self.derive(Self::proof_label(role)).finalize().into_bytes().into()
    }

    /// Whether `proof` is the one `role` must send (constant time).
    pub fn check(&self, role: Role, proof: &[u8; PROOF_LEN]) -> bool {
        self.derive(Self::proof_label(role)).verify_slice(proof).is_ok()
    }

    /// The sealing state for the end playing `me`: what it writes and
    /// what it reads.
    pub fn channel(&self, me: Role) -> (Sealer, Opener) {
        let to_receiver = keyed(&self.derive(TO_RECEIVER).finalize().into_bytes());
        let to_sender = keyed(&self.derive(TO_SENDER).finalize().into_bytes());
        let (out, inn) = match me {
            Role::Sender => (to_receiver, to_sender),
            Role::Receiver => (to_sender, to_receiver),
        };
        (Sealer { mac: out, seq: 0 }, Opener { mac: inn, seq: 0 })
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

/// The tag of one frame: HMAC(direction key, seq ‖ type ‖ body length ‖
/// body), cut to TAG_LEN bytes.
fn tag_mac(mac: &HmacSha256, seq: u64, kind: u8, body: &[u8]) -> HmacSha256 {
    let mut m = mac.clone();
    m.update(&seq.to_be_bytes());
    m.update(&[kind]);
    m.update(&(body.len() as u32).to_be_bytes());
    m.update(body);
    m
}

/// Seals the frames one end writes, in order.
pub struct Sealer {
    mac: HmacSha256,
    seq: u64,
}

impl Sealer {
    /// Seals the frame that starts at `start` in `buf` (header and body,
    /// as `Message::encode` wrote them): appends its tag and counts the tag
    /// in the header's length. DATA frames are not sealed: their bytes are
    /// covered by the entry's digest, which its sealed TRAILER carries.
    pub fn seal(&mut self, buf: &mut Vec<u8>, start: usize) {
        let kind = buf[start];
        if kind == FrameType::Data as u8 {
            return;
        }
        let body = &buf[start + FRAME_HEADER_LEN..];
        let tag = tag_mac(&self.mac, self.seq, kind, body).finalize().into_bytes();
        self.seq += 1;
        buf.extend_from_slice(&tag[..TAG_LEN]);
        let len = (buf.len() - start - FRAME_HEADER_LEN) as u32;
        buf[start + 1..start + FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// Checks the tags of the frames one end reads, in order.
pub struct Opener {
    mac: HmacSha256,
    seq: u64,
}

impl Opener {
    /// Checks the tag at the end of a sealed frame's `body` and returns
    /// the body without it. A frame that was altered, dropped, replayed or
    /// moved fails here, because the tag covers its position.
    pub fn open<'a>(&mut self, kind: FrameType, body: &'a [u8]) -> Result<&'a [u8], ProtocolError> {
        let Some(split) = body.len().checked_sub(TAG_LEN) else {
            return bad(format!("{kind:?} frame too short for its authentication tag"));
        };
        let (inner, tag) = body.split_at(split);
        if tag_mac(&self.mac, self.seq, kind as u8, inner)
            .verify_truncated_left(tag)
            .is_err()
        {
            return bad(format!(
                "{kind:?} frame #{} failed authentication: the connection was altered on the way",
                self.seq
            ));
        }
        self.seq += 1;
        Ok(inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::{Aborted, FrameHeader, Message};

    fn agreement(key: &[u8]) -> Agreement {
        let mut t = Transcript::new(b"\x89ZCP\0\x03\0\x03", b"\x89ZCP\0\x03\0\x03");
        t.hello(b"sender hello");
        t.hello(b"receiver hello");
        Agreement::new(key, t.finish())
    }

    #[test]
    fn proofs_check_only_with_the_same_key_and_role() {
        let a = agreement(b"correct horse");
        let b = agreement(b"correct horse");
        let wrong = agreement(b"battery staple");
        let p = a.proof(Role::Sender);
        assert!(b.check(Role::Sender, &p));
        assert!(!b.check(Role::Receiver, &p), "a proof is bound to its role");
        assert!(!wrong.check(Role::Sender, &p));
        assert_ne!(a.proof(Role::Sender), a.proof(Role::Receiver));
    }

    #[test]
    fn the_transcript_binds_every_hello_byte() {
        let mut t = Transcript::new(b"\x89ZCP\0\x03\0\x03", b"\x89ZCP\0\x03\0\x03");
        t.hello(b"sender hellO");
        t.hello(b"receiver hello");
        let other = Agreement::new(b"k", t.finish());
        assert!(!agreement(b"k").check(Role::Sender, &other.proof(Role::Sender)));
    }

    fn sealed(sealer: &mut Sealer, msg: &Message) -> Vec<u8> {
        let mut buf = Vec::new();
        msg.encode(&mut buf);
        sealer.seal(&mut buf, 0);
        buf
    }

    fn open(opener: &mut Opener, frame: &[u8]) -> Result<Message, ProtocolError> {
        let header = FrameHeader::decode_in(frame[..FRAME_HEADER_LEN].try_into().unwrap(), true)?;
        let inner = opener.open(header.kind, &frame[FRAME_HEADER_LEN..])?;
        let header = FrameHeader {
            kind: header.kind,
            len: inner.len() as u32,
        };
        Message::decode(header, inner)
    }

    #[test]
    fn sealed_frames_open_in_order_and_only_in_order() {
        let a = agreement(b"k");
        let (mut seal, _) = a.channel(Role::Sender);
        let (_, mut opener) = a.channel(Role::Receiver);
        let first = sealed(&mut seal, &Message::Abort(Aborted::new("one", false)));
        let second = sealed(&mut seal, &Message::Done);
        // Dropping the first frame breaks the second.
        let (_, mut skipped) = a.channel(Role::Receiver);
        assert!(open(&mut skipped, &second).is_err());
        assert_eq!(
            open(&mut opener, &first).unwrap(),
            Message::Abort(Aborted::new("one", false))
        );
        // Replaying the first breaks it.
        assert!(open(&mut opener, &first).is_err());
    }

    #[test]
    fn a_flipped_bit_or_the_wrong_direction_fails() {
        let a = agreement(b"k");
        let (mut seal, mut own_opener) = a.channel(Role::Sender);
        let frame = sealed(&mut seal, &Message::Abort(Aborted::new("hello", true)));
        for i in FRAME_HEADER_LEN..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 1;
            let (_, mut opener) = a.channel(Role::Receiver);
            assert!(open(&mut opener, &bad).is_err(), "flip at {i} accepted");
        }
        assert!(open(&mut own_opener, &frame).is_err(), "directions have their own keys");
    }

    #[test]
    fn data_frames_are_left_alone() {
        let (mut seal, _) = agreement(b"k").channel(Role::Sender);
        let mut buf = Vec::new();
        Message::Data(5).encode(&mut buf);
        let before = buf.clone();
        seal.seal(&mut buf, 0);
        assert_eq!(buf, before);
    }
}
