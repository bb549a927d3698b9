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

/// The BLOCKS option zcp proposes: 8 MiB blocks, resumable, 4 streams.
fn blocks() -> Blocks {
    Blocks {
        size: 8 << 20,
        resume: true,
        retry: false,
        streams: 4,
    }
}

fn blocked_entry() -> Entry {
    Entry {
        payload: Payload::Blocks {
            size: 3 << 30,
            source: *b"device+inode+tim",
        },
        ..entry()
    }
}

fn encoded(m: &Message) -> Vec<u8> {
    let mut frame = Vec::new();
    m.encode(&mut frame);
    frame
}

/// Sets the frame's length to that of the body after its header.
fn fix_len(frame: &mut [u8]) {
    let len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[1..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

/// Decodes a whole frame whose header announces the length of the body.
fn decode_frame(frame: &[u8]) -> Result<Message, ProtocolError> {
    let header = FrameHeader::decode(frame[..FRAME_HEADER_LEN].try_into().unwrap())?;
    Message::decode(header, &frame[FRAME_HEADER_LEN..])
}

/// A HELLO body with the required options and `option`.
fn hello_with(option: u16, value: &[u8]) -> Result<Hello, ProtocolError> {
    let mut body = Vec::new();
    put_option(&mut body, tag::ROLE | tag::CRITICAL, &[0]);
    put_option(&mut body, tag::CHECKSUM | tag::CRITICAL, &[1]);
    put_option(&mut body, option, value);
    decode_hello(&mut Reader::new(&body))
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
    roundtrip(Message::Hello(Hello {
        role: Role::Receiver,
        checksum: Algorithm::Sha256,
        software: "zcp 0.4.0".into(),
        no_clobber: false,
        auth: Some([3; NONCE_LEN]),
        idle_timeout: Some(60),
        blocks: Some(blocks()),
        session: Some([5; blocks::TOKEN_LEN]),
        join: None,
    }));
    roundtrip(Message::Hello(Hello {
        role: Role::Sender,
        checksum: Algorithm::None,
        software: String::new(),
        no_clobber: false,
        auth: None,
        idle_timeout: None,
        blocks: Some(Blocks {
            size: blocks::MIN_BLOCK_SIZE,
            resume: false,
            retry: true,
            streams: 1,
        }),
        session: None,
        join: Some([6; blocks::TOKEN_LEN]),
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
    roundtrip(Message::Entry(blocked_entry()));
    roundtrip(Message::Plan(Plan {
        more: false,
        held: vec![],
    }));
    roundtrip(Message::Plan(Plan {
        more: true,
        held: vec![
            (0, Digest::Sha256([1; 32])),
            (7, Digest::Sha256([2; 32])),
            (u32::MAX, Digest::None),
        ],
    }));
    for algorithm in [Algorithm::None, Algorithm::Sha256] {
        // As many held blocks as one frame takes.
        let digest = if algorithm == Algorithm::None {
            Digest::None
        } else {
            Digest::Sha256([4; 32])
        };
        let held: Vec<_> = (0..Plan::capacity(algorithm) as u32)
            .map(|i| (i, digest.clone()))
            .collect();
        roundtrip(Message::Plan(Plan { more: true, held }));
    }
    roundtrip(Message::Block(Block {
        entry: 3,
        index: 12,
        len: blocks::MAX_BLOCK_SIZE,
        digest: Digest::Sha256([8; 32]),
    }));
    roundtrip(Message::Block(Block {
        entry: 0,
        index: 0,
        len: 1,
        digest: Digest::None,
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
    roundtrip(Message::Abort(Aborted::new("source changed", false)));
    roundtrip(Message::Abort(Aborted::new("source changed", true)));
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

#[test]
fn blocks_options_outside_the_rules_are_refused() {
    let value = |size: u32, flags: u8, streams: u8| [&size.to_be_bytes()[..], &[flags, streams]].concat();
    let ok = hello_with(tag::BLOCKS, &value(8 << 20, 3, 16)).unwrap();
    assert_eq!(
        ok.blocks,
        Some(Blocks {
            size: 8 << 20,
            resume: true,
            retry: true,
            streams: 16
        })
    );
    for size in [
        0,
        1,
        1 << 19,
        (1 << 20) - 1,
        (1 << 20) + 1,
        3 << 20,
        1 << 27,
        1 << 31,
        u32::MAX,
    ] {
        let err = hello_with(tag::BLOCKS, &value(size, 0, 1)).unwrap_err();
        assert!(err.0.contains("block size"), "{size}: {err}");
    }
    for flags in [4, 8, 0x80, 0xff] {
        let err = hello_with(tag::BLOCKS, &value(1 << 20, flags, 1)).unwrap_err();
        assert!(err.0.contains("flags"), "{flags:#x}: {err}");
    }
    for streams in [0, 17, 255] {
        let err = hello_with(tag::BLOCKS, &value(1 << 20, 0, streams)).unwrap_err();
        assert!(err.0.contains("streams"), "{streams}: {err}");
    }
    for n in [0, 5, 7] {
        assert!(
            hello_with(tag::BLOCKS, &value(1 << 20, 0, 1).repeat(2)[..n]).is_err(),
            "{n} bytes"
        );
    }
}

#[test]
fn tokens_of_the_wrong_length_are_refused() {
    for option in [tag::SESSION, tag::JOIN | tag::CRITICAL] {
        let h = hello_with(option, &[9; 16]).unwrap();
        assert_eq!(h.session.or(h.join), Some([9; 16]));
        for n in [0, 1, 15, 17, 32] {
            let err = hello_with(option, &vec![9; n]).unwrap_err();
            assert!(err.0.contains("16 bytes"), "{option:#x} of {n} bytes: {err}");
        }
    }
}

#[test]
fn plans_and_blocks_outside_the_rules_are_refused() {
    let plan = encoded(&Message::Plan(Plan {
        more: false,
        held: vec![(1, Digest::Sha256([1; 32])), (2, Digest::Sha256([2; 32]))],
    }));
    let count_at = FRAME_HEADER_LEN + 1;
    for (count, ok) in [
        (2u32, true),
        (1, false),
        (3, false),
        (1 << 30, false),
        (u32::MAX, false),
    ] {
        let mut frame = plan.clone();
        frame[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
        assert_eq!(decode_frame(&frame).is_ok(), ok, "PLAN counting {count} of 2 blocks");
    }
    let mut more = plan.clone();
    more[FRAME_HEADER_LEN] = 2;
    assert!(decode_frame(&more).is_err(), "PLAN more = 2");

    let block = Block {
        entry: 1,
        index: 2,
        len: 1 << 20,
        digest: Digest::Sha256([3; 32]),
    };
    let frame = encoded(&Message::Block(block.clone()));
    assert_eq!(FrameType::Block.max_len() as usize, 78);
    for len in [0, blocks::MAX_BLOCK_SIZE + 1, u32::MAX] {
        let err = decode_frame(&encoded(&Message::Block(Block { len, ..block.clone() }))).unwrap_err();
        assert!(err.0.contains("block of"), "BLOCK of {len} bytes: {err}");
    }
    let mut trailing = frame.clone();
    trailing.push(0);
    fix_len(&mut trailing);
    assert!(decode_frame(&trailing).is_err(), "BLOCK with a byte after its digest");
    let mut oversized = frame.clone();
    oversized[1..FRAME_HEADER_LEN].copy_from_slice(&79u32.to_be_bytes());
    assert!(FrameHeader::decode(oversized[..FRAME_HEADER_LEN].try_into().unwrap()).is_err());
}

#[test]
fn blocked_entries_must_be_sized_unsparse_files_with_a_source_identity() {
    let frame = encoded(&Message::Entry(blocked_entry()));
    let flags_at = FRAME_HEADER_LEN + 1;
    assert_eq!(frame[flags_at] & 0x21, 0x21, "BLOCKED and SIZE_KNOWN");
    let refused = |mut frame: Vec<u8>, why: &str| {
        fix_len(&mut frame);
        assert!(decode_frame(&frame).is_err(), "{why} accepted");
    };
    let mut sparse = frame.clone();
    sparse[flags_at] |= 0x08;
    refused(sparse, "BLOCKED with SPARSE");
    let mut streamed = frame.clone();
    streamed[flags_at] &= !0x01;
    refused(streamed, "BLOCKED without SIZE_KNOWN");
    let mut directory = frame.clone();
    directory[FRAME_HEADER_LEN] = 2;
    directory[flags_at] &= !0x10; // not LINKED, which is refused on its own
    refused(directory, "a BLOCKED directory");
    for cut in [1, 8, 16] {
        refused(
            frame[..frame.len() - cut].to_vec(),
            "a BLOCKED entry without its source identity",
        );
    }
    // Bytes after the identity are the reserved extension area.
    let mut extended = frame.clone();
    extended.extend(b"reserved");
    fix_len(&mut extended);
    assert_eq!(decode_frame(&extended).unwrap(), Message::Entry(blocked_entry()));
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
    assert!(matches!(&m, Message::Abort(a) if a.text.len() <= MAX_MESSAGE_LEN && a.text.starts_with('\u{fffd}')));
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
        Message::Entry(blocked_entry()),
        Message::Plan(Plan {
            more: true,
            held: vec![(4, Digest::Sha256([5; 32])), (5, Digest::None)],
        }),
        Message::Block(Block {
            entry: 2,
            index: 9,
            len: 1 << 20,
            digest: Digest::Sha256([6; 32]),
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
