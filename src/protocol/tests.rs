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
        path: RelPath::new("docs/résumé v2.pdf".as_bytes()).unwrap(),
        payload: Payload::Sized(1 << 40),
        mode: Some(0o640),
        mtime: Some(Mtime {
            seconds: -5,
            nanos: 999_999_999,
        }),
        linked: true,
    }
}

#[test]
fn every_message_roundtrips() {
    roundtrip(Message::Hello(Hello {
        role: Role::Sender,
        checksum: Algorithm::Sha256,
        software: "zcp 0.1.0".into(),
        no_clobber: true,
        auth: None,
        idle_timeout: None,
        blocks: None,
        session: None,
        join: None,
    }));
    roundtrip(Message::Hello(Hello {
        role: Role::Receiver,
        checksum: Algorithm::Sha256,
        software: String::new(),
        no_clobber: false,
        auth: Some([7; NONCE_LEN]),
        idle_timeout: Some(300),
        blocks: None,
        session: None,
        join: None,
    }));
    roundtrip(Message::Auth([9; PROOF_LEN]));
    roundtrip(Message::Ping);
    roundtrip(Message::Entry(entry()));
    roundtrip(Message::Entry(Entry {
        payload: Payload::Stream,
        mode: None,
        mtime: None,
        ..entry()
    }));
    roundtrip(Message::Entry(Entry {
        payload: Payload::Sparse(1 << 30),
        ..entry()
    }));
    for kind in [
        EntryKind::Directory,
        EntryKind::Symlink(LinkText::new(b"../../etc/passwd").unwrap()),
        EntryKind::HardLink(RelPath::new(b"docs/first").unwrap()),
    ] {
        roundtrip(Message::Entry(Entry {
            kind,
            payload: Payload::None,
            linked: false,
            ..entry()
        }));
    }
    roundtrip(Message::Hole(1 << 33));
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
    roundtrip(Message::Verdict(Verdict {
        status: VerdictStatus::Skipped,
        digest: Digest::None,
        message: "exists".into(),
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
    assert_eq!(ours.negotiate(&newer).unwrap(), VERSION);
    let v1 = Preamble {
        max_version: 1,
        min_version: 1,
    };
    assert!(ours.negotiate(&v1).is_err());
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
        assert!(RelPath::new(good).is_ok(), "{good:?} refused as a path");
    }
}

#[test]
fn paths_are_relative_and_made_of_safe_components() {
    let long = [b'x'; 4097];
    let long_component = [b'y'; 256];
    for bad_path in [
        &b""[..],
        b"/etc/passwd",
        b"../x",
        b"a/../b",
        b"a/./b",
        b"a//b",
        b"a/",
        b"a/b/",
        b"a\0b/c",
        &long,
        &long_component,
    ] {
        assert!(RelPath::new(bad_path).is_err(), "{bad_path:?} accepted");
    }
    let p = RelPath::new(b"a/b c/\xffd").unwrap();
    assert_eq!(p.parent(), b"a/b c");
    assert_eq!(p.file_name(), b"\xffd");
    let top = RelPath::new(b"top").unwrap();
    assert_eq!(top.parent(), b"");
    let joined = RelPath::join(Some(&top), &Name::new(b"n").unwrap()).unwrap();
    assert_eq!(joined.as_bytes(), b"top/n");
}

#[test]
fn entries_whose_flags_or_target_do_not_fit_their_kind_are_refused() {
    let encoded = |e: &Entry| {
        let mut b = Vec::new();
        Message::Entry(e.clone()).encode(&mut b);
        b
    };
    let decode = |frame: &[u8]| {
        let header = FrameHeader::decode(frame[..FRAME_HEADER_LEN].try_into().unwrap()).unwrap();
        Message::decode(header, &frame[FRAME_HEADER_LEN..])
    };
    // A directory with SIZE_KNOWN: flip the kind byte of a sized file.
    let mut dir_with_size = encoded(&entry());
    dir_with_size[FRAME_HEADER_LEN] = 2;
    assert!(decode(&dir_with_size).is_err());
    // A file with a target: flip the kind byte of a symlink.
    let link = Entry {
        kind: EntryKind::Symlink(LinkText::new(b"t").unwrap()),
        payload: Payload::None,
        linked: false,
        ..entry()
    };
    let mut file_with_target = encoded(&link);
    file_with_target[FRAME_HEADER_LEN] = 1;
    assert!(decode(&file_with_target).is_err());
    // A hard link whose target climbs out.
    let mut climbing = encoded(&Entry {
        kind: EntryKind::HardLink(RelPath::new(b"aa/b").unwrap()),
        payload: Payload::None,
        linked: false,
        ..entry()
    });
    let at = climbing.len() - 4;
    climbing[at..at + 2].copy_from_slice(b"..");
    assert!(decode(&climbing).is_err());
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

/// Invalid UTF-8 decodes to U+FFFD, three bytes per bad byte: a decoded
/// text must still fit the limit it has on the wire, or encoding it again
/// cuts it and the message changes in a round trip.
#[test]
fn decoded_texts_fit_their_wire_limits() {
    let mut body = (MAX_MESSAGE_LEN as u16).to_be_bytes().to_vec();
    body.extend([0xff; MAX_MESSAGE_LEN]);
    let header = FrameHeader {
        kind: FrameType::Abort,
        len: body.len() as u32,
    };
    let m = Message::decode(header, &body).unwrap();
    assert!(matches!(&m, Message::Abort(t) if t.len() <= MAX_MESSAGE_LEN && t.starts_with('\u{fffd}')));
    roundtrip(m);

    let mut body = Vec::new();
    put_option(&mut body, tag::SOFTWARE, &[0xff; 200]);
    put_option(&mut body, tag::ROLE, &[0]);
    put_option(&mut body, tag::CHECKSUM, &[1]);
    let h = decode_hello(&mut Reader::new(&body)).unwrap();
    assert!(h.software.len() <= MAX_SOFTWARE_LEN, "{}", h.software.len());
    roundtrip(Message::Hello(h));
}

/// Decoding must be total: truncations and random mutations of valid
/// frames produce errors or messages, never panics.
#[test]
fn decoding_survives_truncation_and_mutation() {
    let mut frames = Vec::new();
    for m in [
        Message::Entry(entry()),
        Message::Entry(Entry {
            kind: EntryKind::Symlink(LinkText::new(b"/x/y").unwrap()),
            payload: Payload::None,
            linked: false,
            ..entry()
        }),
        Message::Hole(5),
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
