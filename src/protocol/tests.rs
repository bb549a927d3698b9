//! Unit tests of the wire format: round trips, limits, and decoding that
//! survives truncated and mutated frames.
#![allow(clippy::unwrap_used)]

use super::cursor::{Reader, put_option};
use super::*;

fn roundtrip(m: Message) {
    let mut buf = Vec::new();
    m.encode(&mut buf);
    let header = FrameHeader::decode(buf[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
    let decoded = Message::decode(header, &buf[FRAME_HEADER_LEN..]).unwrap();
    assert_eq!(decoded, m);
}

fn entry() -> Entry {
    Entry {
        kind: EntryKind::File,
        name: Name::new("résumé v2.pdf".as_bytes()).unwrap(),
        size: Some(1 << 40),
        mode: Some(0o640),
        mtime: Some(Mtime {
            seconds: -5,
            nanos: 999_999_999,
        }),
    }
}

#[test]
fn every_message_roundtrips() {
    roundtrip(Message::Hello(Hello {
        role: Role::Sender,
        checksum: Algorithm::Sha256,
        software: "zcp 0.1.0".into(),
    }));
    roundtrip(Message::Entry(entry()));
    roundtrip(Message::Entry(Entry {
        size: None,
        mode: None,
        mtime: None,
        ..entry()
    }));
    roundtrip(Message::Trailer(Trailer {
        bytes: 7,
        digest: Digest::Sha256([9; 32]),
    }));
    roundtrip(Message::Abort("source changed".into()));
    roundtrip(Message::Verdict(Verdict {
        status: VerdictStatus::Mismatch,
        digest: Digest::None,
        message: "digest mismatch".into(),
    }));
    roundtrip(Message::Done);
    roundtrip(Message::Error(WireError {
        code: 1,
        message: "no space".into(),
    }));
}

#[test]
fn preamble_checks_magic_and_versions() {
    let ours = Preamble::ours();
    assert_eq!(Preamble::decode(&ours.encode()).unwrap(), ours);
    assert!(Preamble::decode(b"GET / HT").is_err());
    let future = Preamble {
        max_version: 9,
        min_version: 7,
    };
    let err = ours.negotiate(&future).unwrap_err();
    assert!(err.0.contains("incompatible"), "{err}");
    let newer = Preamble {
        max_version: 5,
        min_version: 1,
    };
    assert_eq!(ours.negotiate(&newer).unwrap(), 1);
}

#[test]
fn names_must_be_single_safe_components() {
    for bad_name in [&b""[..], b".", b"..", b"a/b", b"/etc", b"a\0b", &[b'x'; 256]] {
        assert!(Name::new(bad_name).is_err(), "{bad_name:?} accepted");
    }
    for good in [
        &b"a"[..],
        b"...",
        b" x ",
        b"-rf",
        b"\xff\xfe",
        b"line\nbreak",
        &[b'x'; 255],
    ] {
        assert!(Name::new(good).is_ok(), "{good:?} refused");
    }
}

#[test]
fn oversized_frames_are_refused_before_reading_them() {
    let h = FrameHeader::encode(FrameType::Entry, MAX_CONTROL_LEN + 1);
    assert!(FrameHeader::decode(&h).is_err());
    let h = FrameHeader::encode(FrameType::Data, MAX_DATA_LEN + 1);
    assert!(FrameHeader::decode(&h).is_err());
    assert!(FrameHeader::decode(&[99, 0, 0, 0, 0]).is_err());
    assert!(FrameHeader::decode(&FrameHeader::encode(FrameType::Done, 1)).is_err());
}

#[test]
fn hello_ignores_unknown_optional_options_but_not_critical_ones() {
    let mut body = Vec::new();
    put_option(&mut body, 77, b"future");
    put_option(&mut body, tag::ROLE, &[0]);
    put_option(&mut body, tag::CHECKSUM, &[1]);
    let h = decode_hello(&mut Reader::new(&body)).unwrap();
    assert_eq!(h.role, Role::Sender);
    put_option(&mut body, 78 | tag::CRITICAL, b"");
    assert!(decode_hello(&mut Reader::new(&body)).is_err());
}

/// Decoding must be total: truncations and random mutations of valid
/// frames produce errors or messages, never panics.
#[test]
fn decoding_survives_truncation_and_mutation() {
    let mut frames = Vec::new();
    for m in [
        Message::Entry(entry()),
        Message::Trailer(Trailer {
            bytes: 1,
            digest: Digest::Sha256([1; 32]),
        }),
        Message::Verdict(Verdict {
            status: VerdictStatus::Committed,
            digest: Digest::Sha256([2; 32]),
            message: "ok".into(),
        }),
    ] {
        let mut b = Vec::new();
        m.encode(&mut b);
        frames.push(b);
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for frame in &frames {
        let body = &frame[FRAME_HEADER_LEN..];
        let header = FrameHeader::decode(frame[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
        for cut in 0..body.len() {
            let h = FrameHeader {
                len: cut as u32,
                ..header
            };
            let _ = Message::decode(h, &body[..cut]);
        }
        for _ in 0..20_000 {
            let mut m = body.to_vec();
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
            let _ = Message::decode(header, &m);
        }
    }
}
