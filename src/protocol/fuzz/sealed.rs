//! Sealed sessions: once both ends have authenticated, every frame but
//! DATA carries a tag bound to its direction, its place in the stream, its
//! type and its body (`auth`). A session of valid frames sealed with a
//! random key and transcript must open, in order, to the same messages;
//! damaged once (a bit flipped in a header, a body or a tag, the stream cut
//! or extended, a frame dropped, duplicated or moved, the wrong key), it
//! must be refused, and no sealed message may ever be read out of its
//! place. DATA frames are not sealed (their payload is covered by the
//! sealed TRAILER's digest), so damage to them alone must go unseen.
//!
//! The expected outcome of every case comes from an oracle that knows what
//! a tag guarantees, without computing one: a sealed frame opens exactly
//! when it is, byte for byte, the frame the writer sealed at that place.

use std::cell::RefCell;
use std::net::TcpListener;

use super::super::auth::{Agreement, Opener};
use super::super::*;
use super::generators::{KINDS, encode, valid_entry};
use super::mutate::fix_frame_len;
use super::spec::{End, header_allowed};
use super::stream::through_socket;
use super::{Rng, run};
use crate::frames::READ_BUFFER;

/// One frame as the writer sent it and the message it carries.
struct Frame {
    bytes: Vec<u8>,
    message: Message,
}

impl Frame {
    fn sealed(&self) -> bool {
        !matches!(self.message, Message::Data(_))
    }
}

/// What one end wrote after authenticating: random frames, then DONE.
struct Session {
    agreement: Agreement,
    writer: Role,
    frames: Vec<Frame>,
}

fn other(role: Role) -> Role {
    match role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    }
}

impl Session {
    fn new(r: &mut Rng) -> Session {
        let key = r.noise(80);
        let agreement = Agreement::new(&key, r.fill(32).try_into().unwrap());
        let writer = r.pick(&[Role::Sender, Role::Receiver]);
        let (mut sealer, _) = agreement.channel(writer);
        let mut frames = Vec::new();
        for last in (0..r.below(9)).map(|_| false).chain([true]) {
            let (mut bytes, message) = if last {
                (encode(&Message::Done), Message::Done)
            } else {
                unsealed_frame(r)
            };
            let before = bytes.clone();
            sealer.seal(&mut bytes, 0);
            let tagged = bytes.len() - before.len();
            if let Message::Data(n) = message {
                assert_eq!(bytes, before, "a DATA header was sealed");
                bytes.extend(r.fill(n as usize));
            } else {
                // The frame as encoded, then the tag, which the length counts.
                assert_eq!((tagged, bytes[0]), (TAG_LEN, before[0]));
                assert_eq!(bytes[FRAME_HEADER_LEN..before.len()], before[FRAME_HEADER_LEN..]);
                let len = u32::from_be_bytes(bytes[1..FRAME_HEADER_LEN].try_into().unwrap());
                assert_eq!(len as usize, bytes.len() - FRAME_HEADER_LEN);
            }
            frames.push(Frame { bytes, message });
        }
        Session {
            agreement,
            writer,
            frames,
        }
    }

    /// What the other end reads with.
    fn opener(&self) -> Opener {
        self.agreement.channel(other(self.writer)).1
    }

    fn bytes(&self) -> Vec<u8> {
        self.frames.iter().map(|f| &f.bytes[..]).collect::<Vec<_>>().concat()
    }

    fn messages(&self) -> Vec<Message> {
        self.frames.iter().map(|f| f.message.clone()).collect()
    }

    fn sealed(&self) -> Vec<&Frame> {
        self.frames.iter().filter(|f| f.sealed()).collect()
    }
}

/// A valid frame before sealing (a DATA frame's header only) and the
/// message a reader decodes from it; now and then a control frame of the
/// largest size, an ENTRY padded in its reserved extension area.
fn unsealed_frame(r: &mut Rng) -> (Vec<u8>, Message) {
    let frame = match (r.pick(KINDS).valid)(r) {
        Message::Data(_) => {
            let n = if r.one_in(8) {
                r.range(1, READ_BUFFER + 5000)
            } else {
                r.range(1, 64)
            };
            return (encode(&Message::Data(n as u32)), Message::Data(n as u32));
        }
        _ if r.one_in(64) => {
            let mut entry = encode(&valid_entry(r));
            entry.resize(FRAME_HEADER_LEN + MAX_CONTROL_LEN as usize, 0x5a);
            fix_frame_len(&mut entry);
            entry
        }
        m => encode(&m),
    };
    let (hdr, body) = frame.split_first_chunk::<FRAME_HEADER_LEN>().unwrap();
    let message = Message::decode(FrameHeader::decode(hdr).unwrap(), body).unwrap();
    (frame, message)
}

/// What a reader of `bytes` must make of them if a sealed frame opens
/// exactly when it is the frame the writer sealed at that place (`sealed`,
/// in order; a tag makes anything else a forgery, but for a chance of
/// 2^-128): the messages, then the way the stream ends. Headers are
/// checked against the spec's limits, 16 bytes higher for the tag.
fn oracle(mut rest: &[u8], sealed: &[&Frame]) -> (Vec<Message>, End) {
    let mut messages = Vec::new();
    let mut next = sealed.iter();
    loop {
        if rest.is_empty() {
            return (messages, End::Clean);
        }
        let Some((hdr, tail)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return (messages, End::Truncated);
        };
        let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]);
        let decoded = FrameHeader::decode_in(hdr, true);
        if !header_allowed(hdr[0], len, true) {
            let Err(e) = decoded else {
                panic!("the sealed header {hdr:?} over the limits was accepted");
            };
            return (messages, End::Refused(e));
        }
        decoded.unwrap_or_else(|e| panic!("the sealed header {hdr:?} was refused: {e}"));
        let len = len as usize;
        let Some(after) = tail.get(len..) else {
            if hdr[0] == FrameType::Data as u8 {
                messages.push(Message::Data(len as u32));
            }
            return (messages, End::Truncated);
        };
        if hdr[0] == FrameType::Data as u8 {
            messages.push(Message::Data(len as u32));
        } else {
            match next.next() {
                Some(f) if f.bytes[..] == rest[..FRAME_HEADER_LEN + len] => messages.push(f.message.clone()),
                _ => return (messages, End::Forged),
            }
        }
        rest = after;
    }
}

/// Reads `bytes` in memory as [`FrameReader`] does once seals are required:
/// the header, then DATA as is or the body opened with `opener` and
/// decoded.
fn open_in_memory(mut rest: &[u8], mut opener: Opener) -> (Vec<Message>, End) {
    let mut messages = Vec::new();
    loop {
        if rest.is_empty() {
            return (messages, End::Clean);
        }
        let Some((hdr, tail)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return (messages, End::Truncated);
        };
        let header = match FrameHeader::decode_in(hdr, true) {
            Ok(h) => h,
            Err(e) => return (messages, End::Refused(e)),
        };
        let len = header.len as usize;
        if header.kind == FrameType::Data {
            messages.push(Message::Data(header.len));
            match tail.get(len..) {
                Some(after) => rest = after,
                None => return (messages, End::Truncated),
            }
            continue;
        }
        let Some((body, after)) = tail.split_at_checked(len) else {
            return (messages, End::Truncated);
        };
        let Ok(inner) = opener.open(header.kind, body) else {
            return (messages, End::Forged);
        };
        let header = FrameHeader {
            kind: header.kind,
            len: inner.len() as u32,
        };
        match Message::decode(header, inner) {
            Ok(m) => messages.push(m),
            Err(e) => return (messages, End::Refused(e)),
        }
        rest = after;
    }
}

/// What the seals can see of one damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Intact,
    /// Only DATA frames changed: payload bytes, or whole DATA frames
    /// dropped, duplicated, moved or added. Every sealed frame still opens.
    DataOnly,
    /// A DATA header changed, so what follows is read from the wrong
    /// place: only the rules for any damage apply.
    DataHeader,
    /// A sealed frame changed, moved or went missing, or the stream was
    /// cut or extended, or read with the wrong key. The reader must not
    /// read the whole session, and must end with an error unless the
    /// damage is at the very end (a cut at a frame boundary, the last
    /// frame dropped or turned into a DATA header).
    Sealed {
        may_end_clean: bool,
    },
}

/// A damaged session: its bytes, what the seals can see, and whether the
/// reader uses the wrong key.
struct Damaged {
    bytes: Vec<u8>,
    seen: Seen,
    wrong_key: bool,
}

fn damage(r: &mut Rng, s: &Session) -> Damaged {
    let frames: Vec<&[u8]> = s.frames.iter().map(|f| &f.bytes[..]).collect();
    let last = frames.len() - 1;
    let sealed_order =
        |order: &[usize]| -> Vec<usize> { order.iter().copied().filter(|&i| s.frames[i].sealed()).collect() };
    let original: Vec<usize> = (0..frames.len()).collect();
    let reorder = |order: Vec<usize>| {
        let bytes = order.iter().map(|&i| frames[i]).collect::<Vec<_>>().concat();
        let seen = if sealed_order(&order) == sealed_order(&original) {
            Seen::DataOnly
        } else {
            Seen::Sealed {
                may_end_clean: order.iter().all(|&i| i != last)
                    && sealed_order(&order) == sealed_order(&original[..last]),
            }
        };
        Damaged {
            bytes,
            seen,
            wrong_key: false,
        }
    };
    let whole = s.bytes();
    let plain = |bytes: Vec<u8>, seen| Damaged {
        bytes,
        seen,
        wrong_key: false,
    };
    match r.below(16) {
        0 | 1 => plain(whole, Seen::Intact),
        2..=5 => {
            // A bit flipped in a header, a body or a tag (DATA: a payload).
            let k = r.below(frames.len());
            let f = frames[k];
            let mut regions = vec![(0, FRAME_HEADER_LEN)];
            if s.frames[k].sealed() {
                regions.push((FRAME_HEADER_LEN, f.len() - TAG_LEN));
                regions.push((f.len() - TAG_LEN, f.len()));
            } else {
                regions.push((FRAME_HEADER_LEN, f.len()));
            }
            regions.retain(|(start, end)| start < end);
            let region = r.pick(&regions);
            let at = r.range(region.0, region.1 - 1);
            let start: usize = frames[..k].iter().map(|f| f.len()).sum();
            let mut bytes = whole;
            bytes[start + at] ^= 1 << r.below(8);
            let seen = match (s.frames[k].sealed(), at < FRAME_HEADER_LEN) {
                (false, false) => Seen::DataOnly,
                (false, true) => Seen::DataHeader,
                (true, _) => Seen::Sealed {
                    may_end_clean: k == last && at == 0 && bytes[start] == FrameType::Data as u8,
                },
            };
            plain(bytes, seen)
        }
        6 | 7 => {
            let at = r.below(whole.len());
            let boundary = (0..=frames.len()).any(|k| frames[..k].iter().map(|f| f.len()).sum::<usize>() == at);
            let mut bytes = whole;
            bytes.truncate(at);
            plain(
                bytes,
                Seen::Sealed {
                    may_end_clean: boundary,
                },
            )
        }
        8 => {
            let mut bytes = whole;
            let n = r.range(1, 16);
            bytes.extend(r.fill(n));
            plain(bytes, Seen::Sealed { may_end_clean: false })
        }
        9 => {
            let mut order = original.clone();
            order.remove(r.below(frames.len()));
            reorder(order)
        }
        10 => {
            let mut order = original.clone();
            let k = r.below(frames.len());
            order.insert(r.range(0, frames.len()), k);
            reorder(order)
        }
        11 | 12 => {
            let mut order = original.clone();
            let (a, b) = (r.below(frames.len()), r.below(frames.len()));
            order.swap(a, b);
            reorder(order)
        }
        13 => {
            // A DATA frame added between two frames.
            let k = r.range(0, frames.len());
            let n = r.range(1, 64);
            let data = [encode(&Message::Data(n as u32)), r.fill(n)].concat();
            let at: usize = frames[..k].iter().map(|f| f.len()).sum();
            let mut bytes = whole;
            bytes.splice(at..at, data);
            plain(bytes, Seen::DataOnly)
        }
        _ => Damaged {
            bytes: whole,
            seen: Seen::Sealed { may_end_clean: false },
            wrong_key: true,
        },
    }
}

/// A reader with the wrong key: the other direction's, or another
/// session's.
fn wrong_opener(r: &mut Rng, s: &Session) -> Opener {
    if r.one_in(2) {
        s.agreement.channel(s.writer).1
    } else {
        Agreement::new(&r.noise(80), r.fill(32).try_into().unwrap())
            .channel(other(s.writer))
            .1
    }
}

/// The rules for every damage, on what a reader gave: sealed messages only
/// in their place, and what the seals see of this damage.
fn check_seen(s: &Session, seen: Seen, messages: &[Message], end: &End) {
    let control =
        |ms: &[Message]| -> Vec<Message> { ms.iter().filter(|m| !matches!(m, Message::Data(_))).cloned().collect() };
    let (all, got) = (control(&s.messages()), control(messages));
    assert!(all.starts_with(&got), "a sealed message was read out of its place");
    let whole = *end == End::Clean && got == all;
    match seen {
        Seen::Intact => assert!(whole && messages == s.messages(), "{end:?}"),
        Seen::DataOnly => assert!(whole, "damage to DATA frames alone ended with {end:?}"),
        Seen::DataHeader => {}
        Seen::Sealed { may_end_clean } => {
            assert!(!whole, "a damaged session was read whole");
            assert!(may_end_clean || *end != End::Clean, "damage went unnoticed");
        }
    }
}

/// A case: the session, and its damage.
type Case = RefCell<Option<(Session, Damaged)>>;

fn generate(case: &Case) -> impl Fn(&mut Rng) -> Vec<u8> + '_ {
    |r| {
        let session = Session::new(r);
        let damaged = damage(r, &session);
        let bytes = damaged.bytes.clone();
        *case.borrow_mut() = Some((session, damaged));
        bytes
    }
}

/// The case `generate` made, the opener its reader uses, and what the
/// oracle expects.
fn take(case: &Case, r: &mut Rng) -> (Session, Damaged, Opener, (Vec<Message>, End)) {
    let (session, damaged) = case.borrow_mut().take().unwrap();
    let opener = match damaged.wrong_key {
        true => wrong_opener(r, &session),
        false => session.opener(),
    };
    let sealed = if damaged.wrong_key { vec![] } else { session.sealed() };
    let want = oracle(&damaged.bytes, &sealed);
    (session, damaged, opener, want)
}

/// 2,000 sessions of up to eight random valid frames and DONE, sealed by
/// one end with a random key and transcript and opened by the other in
/// memory: every frame opens, in order, to the message it was.
#[test]
fn sealed_sessions_open_in_order_to_the_same_messages() {
    let case = RefCell::new(None);
    let only_intact = |r: &mut Rng| {
        let session = Session::new(r);
        let bytes = session.bytes();
        *case.borrow_mut() = Some((
            session,
            Damaged {
                bytes: bytes.clone(),
                seen: Seen::Intact,
                wrong_key: false,
            },
        ));
        bytes
    };
    run("sealed_sessions", 0x5eed_0006, 2_000, only_intact, |bytes, r| {
        let (session, damaged, opener, want) = take(&case, r);
        assert_eq!(want, (session.messages(), End::Clean));
        assert_eq!(open_in_memory(bytes, opener), want);
        check_seen(&session, damaged.seen, &want.0, &want.1);
    });
}

/// 10,000 sealed sessions damaged once and opened in memory with the
/// session's `Opener`: the messages and the ending are the oracle's, and
/// no damage but to DATA frames goes unseen.
#[test]
fn damaged_sealed_sessions_are_refused() {
    let case = RefCell::new(None);
    run("damaged_sealed", 0x5eed_0007, 10_000, generate(&case), |bytes, r| {
        let (session, damaged, opener, want) = take(&case, r);
        let got = open_in_memory(bytes, opener);
        assert_eq!(got, want);
        check_seen(&session, damaged.seen, &got.0, &got.1);
    });
}

/// 1,000 sealed sessions, intact or damaged once, written in random pieces
/// to a loopback socket and read by `FrameReader` once `require_seals`
/// is on: the messages and the ending are the oracle's (an authentication
/// error where a tag does not check), and the reader never panics or
/// hangs.
#[test]
fn sealed_sessions_through_frame_reader() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let case = RefCell::new(None);
    run("sealed_streams", 0x5eed_0008, 1_000, generate(&case), |bytes, r| {
        let (session, damaged, opener, (want_messages, want_end)) = take(&case, r);
        let (messages, end, exact) = through_socket(&listener, bytes, r, Some(opener));
        assert_eq!(messages, want_messages);
        let closed_on_exact_read = exact && want_end == End::Clean && end == End::Truncated;
        assert!(
            end == want_end || closed_on_exact_read,
            "stream ended with {end:?}, not {want_end:?}"
        );
        check_seen(&session, damaged.seen, &messages, &want_end);
    });
}
