//! The rules every accepted message must obey, written out from
//! docs/PROTOCOL.md independently of the decoder's code, and a reference
//! reader that decodes a byte string frame by frame and checks each
//! accepted header and message against them.

use super::super::*;

/// Frame types and the body lengths their headers may announce, copied
/// from the table in docs/PROTOCOL.md rather than from the decoder. AUTH
/// and PING are those of version 3 (a body of exactly 32 bytes, and
/// empty). In a sealed session every limit but DATA's is 16 bytes higher
/// for the tag, which the reader removes before decoding.
pub(super) const SPEC_LIMITS: &[(u8, u32, u32)] = &[
    (1, 0, 65_536),     // HELLO
    (2, 0, 65_536),     // ENTRY
    (3, 1, 16_777_216), // DATA
    (4, 0, 65_536),     // TRAILER
    (5, 0, 65_536),     // ABORT
    (6, 0, 65_536),     // VERDICT
    (7, 0, 0),          // DONE
    (8, 0, 65_536),     // ERROR
    (9, 0, 8),          // HOLE
    (10, 0, 32),        // AUTH
    (11, 0, 0),         // PING
];

/// HELLO option tags the spec defines (SOFTWARE, ROLE, CHECKSUM,
/// NO_CLOBBER, AUTH, IDLE_TIMEOUT): a HELLO with any other critical option
/// must be refused.
pub(super) const SPEC_OPTIONS: &[u16] = &[1, 2, 3, 4, 5, 6];

/// What a HELLO body says by the rules, option by option. A field is
/// `None` when its option is absent and `Some(None)` when it is repeated:
/// the spec does not say which occurrence counts, so only that the body is
/// accepted is checked then.
#[derive(Debug, Default)]
pub(super) struct SpecHello {
    role: Option<Option<u8>>,
    checksum: Option<Option<u8>>,
    software: Option<Option<Vec<u8>>>,
    no_clobber: bool,
    auth: Option<Option<[u8; 32]>>,
    idle_timeout: Option<Option<u32>>,
}

fn once<T>(field: &mut Option<Option<T>>, value: T) {
    *field = Some(if field.is_none() { Some(value) } else { None });
}

/// The HELLO rules: a sequence of options (u16 tag, u16 length, value) to
/// the end of the body. SOFTWARE is text (cut to 64 bytes); ROLE is one
/// byte, 0 or 1; CHECKSUM one byte, 0 or 1; NO_CLOBBER empty; AUTH is 33
/// bytes, method 1 (HMAC-SHA256; any other method is refused) and a
/// 32-byte nonce; IDLE_TIMEOUT is a u32 of at least 1 second. An unknown
/// option is ignored unless critical (bit 15); ROLE and CHECKSUM are
/// required.
pub(super) fn hello_rules(body: &[u8]) -> Result<SpecHello, String> {
    let mut hello = SpecHello::default();
    let mut rest = body;
    while !rest.is_empty() {
        let Some((option, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!("{} bytes after the last option", rest.len()));
        };
        let raw_tag = u16::from_be_bytes([option[0], option[1]]);
        let len = usize::from(u16::from_be_bytes([option[2], option[3]]));
        let Some((value, tail)) = tail.split_at_checked(len) else {
            return Err(format!("option {raw_tag:#x} of {len} bytes runs past the body"));
        };
        rest = tail;
        match (raw_tag & 0x7fff, value) {
            (1, v) => once(&mut hello.software, v.to_vec()),
            (2, [role @ (0 | 1)]) => once(&mut hello.role, *role),
            (3, [id @ (0 | 1)]) => once(&mut hello.checksum, *id),
            (4, []) => hello.no_clobber = true,
            (5, [1, nonce @ ..]) if nonce.len() == 32 => once(&mut hello.auth, nonce.try_into().unwrap()),
            (6, &[a, b, c, d]) if u32::from_be_bytes([a, b, c, d]) >= 1 => {
                once(&mut hello.idle_timeout, u32::from_be_bytes([a, b, c, d]));
            }
            (tag, v) if SPEC_OPTIONS.contains(&tag) => return Err(format!("option {tag} with the value {v:?}")),
            (tag, _) if raw_tag & 0x8000 != 0 => return Err(format!("unknown critical option {tag}")),
            _ => {}
        }
    }
    if hello.role.is_none() || hello.checksum.is_none() {
        return Err("no ROLE or no CHECKSUM".into());
    }
    Ok(hello)
}

/// Whether the decoder must accept a body of exactly the announced length,
/// for the types whose every rule the body shows; `None` for the others.
fn body_rules(kind: FrameType, body: &[u8]) -> Option<Result<(), String>> {
    let length = |n: usize| match body.len() == n {
        true => Ok(()),
        false => Err(format!("{kind:?} of {} bytes, not {n}", body.len())),
    };
    Some(match kind {
        FrameType::Hello => hello_rules(body).map(|_| ()),
        FrameType::Auth => length(32),
        FrameType::Done | FrameType::Ping => length(0),
        FrameType::Hole => length(8).and_then(|()| match body == [0; 8] {
            true => Err("empty HOLE".into()),
            false => Ok(()),
        }),
        _ => return None,
    })
}

fn check_hello(h: &Hello, body: &[u8]) {
    let rules = hello_rules(body).unwrap_or_else(|e| panic!("accepted a HELLO that breaks the rules: {e}"));
    let role = h.role as u8;
    let checksum = h.checksum.wire_id();
    assert!(rules.role.unwrap().is_none_or(|r| r == role), "{h:?}");
    assert!(rules.checksum.unwrap().is_none_or(|c| c == checksum), "{h:?}");
    assert_eq!(h.no_clobber, rules.no_clobber);
    assert!(h.software.len() <= 64, "SOFTWARE of {} bytes", h.software.len());
    match rules.software {
        None => assert!(h.software.is_empty()),
        Some(None) => {}
        Some(Some(value)) => {
            let text = String::from_utf8_lossy(&value);
            assert!(
                text.starts_with(&h.software) && (text.len() > 64 || text == h.software),
                "{h:?}"
            );
            assert!(
                text.len() <= 64 || h.software.len() > 60,
                "SOFTWARE cut too short: {h:?}"
            );
        }
    }
    match rules.auth {
        None => assert_eq!(h.auth, None),
        Some(nonce) => assert!(h.auth.is_some() && nonce.is_none_or(|n| h.auth == Some(n)), "{h:?}"),
    }
    match rules.idle_timeout {
        None => assert_eq!(h.idle_timeout, None),
        Some(t) => assert!(
            h.idle_timeout.is_some() && t.is_none_or(|t| h.idle_timeout == Some(t)),
            "{h:?}"
        ),
    }
}

pub(super) fn spec_limits(type_byte: u8) -> Option<(u32, u32)> {
    SPEC_LIMITS.iter().find(|l| l.0 == type_byte).map(|l| (l.1, l.2))
}

/// Whether a header may announce `len` bytes for this type, in an open or
/// a sealed session.
pub(super) fn header_allowed(type_byte: u8, len: u32, sealed: bool) -> bool {
    let tag = if sealed && type_byte != 3 { 16 } else { 0 };
    spec_limits(type_byte).is_some_and(|(lo, hi)| (lo..=hi + tag).contains(&len))
}

/// The path rules: 1..=4096 bytes; components separated by single `/`
/// (so no leading, trailing or doubled `/`), each 1..=255 bytes, without
/// NUL, and neither `.` nor `..`.
pub(super) fn path_ok(p: &[u8]) -> bool {
    if p.is_empty() || p.len() > 4096 {
        return false;
    }
    let mut start = 0;
    for i in 0..=p.len() {
        if i < p.len() && p[i] != b'/' {
            if p[i] == 0 {
                return false;
            }
            continue;
        }
        let component = &p[start..i];
        if component.is_empty() || component.len() > 255 || component == b"." || component == b".." {
            return false;
        }
        start = i + 1;
    }
    true
}

/// A symbolic link's text: 1..=4095 bytes without NUL, anything else goes.
pub(super) fn link_text_ok(t: &[u8]) -> bool {
    (1..=4095).contains(&t.len()) && !t.contains(&0)
}

/// What must hold for every message the decoder accepts, given the body
/// it came from: the rules of the spec, including those only the body can
/// show (decoding re-codes texts and drops unknown options), and a round
/// trip through the encoder.
fn check_accepted(m: &Message, body: &[u8]) {
    // A `text` field at `at`: within its limit, and the body's last field.
    let text_at = |at: usize, text: &str| {
        let len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
        assert!(
            len <= 1024 && body.len() == at + 2 + len,
            "text of {len} bytes in a body of {}",
            body.len()
        );
        assert!(text.len() <= 1024, "decoded text of {} bytes", text.len());
    };
    match m {
        Message::Hello(h) => check_hello(h, body),
        Message::Entry(e) => check_entry(e, body),
        Message::Data(n) => assert!((1..=16 << 20).contains(n)),
        Message::Hole(n) => assert!(*n >= 1 && body.len() == 8),
        Message::Trailer(t) => assert_eq!(body.len(), 10 + t.digest.as_bytes().len()),
        Message::Done => assert!(body.is_empty()),
        Message::Abort(text) => text_at(0, text),
        Message::Verdict(v) => text_at(3 + v.digest.as_bytes().len(), &v.message),
        Message::Error(e) => text_at(1, &e.message),
        Message::Auth(_) => assert_eq!(body.len(), 32),
        Message::Ping => assert!(body.is_empty()),
        // Checked by their own round trips until the oracle covers them.
        Message::Plan(_) | Message::Block(_) => {}
    }
    let mut frame = Vec::new();
    m.encode(&mut frame);
    let (hdr, body) = frame.split_first_chunk::<FRAME_HEADER_LEN>().unwrap();
    let header = FrameHeader::decode(hdr).unwrap_or_else(|e| panic!("{m:?} re-encodes to a bad header: {e}"));
    assert_eq!(header.kind, m.frame_type());
    let again = Message::decode(header, body).unwrap_or_else(|e| panic!("{m:?} re-encodes to a bad frame: {e}"));
    assert_eq!(&again, m, "the message changed in a round trip");
}

fn check_entry(e: &Entry, body: &[u8]) {
    let (path, target) = (e.path.as_bytes(), entry_target(&e.kind));
    assert!(path_ok(path), "accepted the path {path:?}");
    match &e.kind {
        EntryKind::Symlink(_) => assert!(link_text_ok(target), "accepted the link text {target:?}"),
        EntryKind::HardLink(_) => assert!(path_ok(target), "accepted the hard link target {target:?}"),
        EntryKind::File | EntryKind::Directory => assert!(target.is_empty()),
    }
    assert_eq!(&body[entry_field(body, 0, 0).unwrap().1], path);
    assert_eq!(&body[entry_field(body, 0, 1).unwrap().1], target);
    // Kind and flags as sent: SIZE_KNOWN 1, HAS_MODE 2, HAS_MTIME 4,
    // SPARSE 8, LINKED 16, only the last three for regular files.
    let (kind, flags) = (body[0], body[1]);
    let size = u64::from_be_bytes(body[6..14].try_into().unwrap());
    let file = e.kind == EntryKind::File;
    let sent_kind = match e.kind {
        EntryKind::File => 1,
        EntryKind::Directory => 2,
        EntryKind::Symlink(_) => 3,
        EntryKind::HardLink(_) => 4,
    };
    assert_eq!(kind, sent_kind);
    let payload = match (flags & 1 != 0, flags & 8 != 0) {
        (true, false) => Payload::Sized(size),
        (true, true) => Payload::Sparse(size),
        (false, false) if file => Payload::Stream,
        (false, false) => Payload::None,
        (false, true) => panic!("accepted SPARSE without SIZE_KNOWN"),
    };
    assert!(
        e.payload == payload && flags & !0x1f == 0,
        "{e:?} from flags {flags:#x}"
    );
    assert!(file || flags & 0x19 == 0, "{e:?} from flags {flags:#x}");
    assert!(size <= i64::MAX as u64 || flags & 1 == 0, "{e:?}");
    assert!(
        e.mode.is_some() == (flags & 2 != 0) && e.mode.is_none_or(|m| m <= 0o7777),
        "{e:?}"
    );
    assert!(
        e.mtime.is_some() == (flags & 4 != 0) && e.mtime.is_none_or(|t| t.nanos < 1_000_000_000),
        "{e:?}"
    );
    assert_eq!(e.linked, flags & 16 != 0);
}

fn entry_target(kind: &EntryKind) -> &[u8] {
    match kind {
        EntryKind::Symlink(t) => t.as_bytes(),
        EntryKind::HardLink(t) => t.as_bytes(),
        EntryKind::File | EntryKind::Directory => &[],
    }
}

/// How a stream of frames ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// At a frame boundary.
    Clean,
    /// In the middle of a frame or a DATA payload.
    Truncated,
    Refused(ProtocolError),
    /// A sealed frame whose tag does not check (sealed sessions only).
    Forged,
}

/// Decodes frames one after another as a reader of `bytes` must, skipping
/// DATA payloads, and checks each header against the spec's limits and
/// each accepted message.
pub(super) fn decode_frames(mut rest: &[u8]) -> (Vec<Message>, End) {
    let mut messages = Vec::new();
    loop {
        if rest.is_empty() {
            return (messages, End::Clean);
        }
        let Some((hdr, tail)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return (messages, End::Truncated);
        };
        let announced = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]);
        let allowed = header_allowed(hdr[0], announced, false);
        let header = match FrameHeader::decode(hdr) {
            Ok(h) => h,
            Err(e) => {
                assert!(!allowed, "refused the valid header {hdr:?}: {e}");
                return (messages, End::Refused(e));
            }
        };
        assert!(allowed, "accepted the header {hdr:?}, which breaks the limits");
        let len = header.len as usize;
        if header.kind == FrameType::Data {
            let m = Message::decode(header, &[]).unwrap();
            check_accepted(&m, &[]);
            messages.push(m);
            match tail.get(len..) {
                Some(next) => rest = next,
                None => return (messages, End::Truncated),
            }
            continue;
        }
        if tail.len() != len {
            assert!(
                Message::decode(header, tail).is_err(),
                "a body of the wrong length was accepted"
            );
        }
        let Some((body, next)) = tail.split_at_checked(len) else {
            return (messages, End::Truncated);
        };
        let decoded = Message::decode(header, body);
        if let Some(rules) = body_rules(header.kind, body) {
            assert_eq!(
                decoded.is_ok(),
                rules.is_ok(),
                "the decoder says {decoded:?}, the rules say {rules:?}"
            );
        }
        match decoded {
            Ok(m) => {
                check_accepted(&m, body);
                messages.push(m);
            }
            Err(e) => return (messages, End::Refused(e)),
        }
        rest = next;
    }
}

/// Where the path (field 0) or target (field 1) of the ENTRY body that
/// starts at `start` in `f` is: the offset of its u16 length and the range
/// of its bytes.
pub(super) fn entry_field(f: &[u8], start: usize, field: usize) -> Option<(usize, std::ops::Range<usize>)> {
    let mut at = start + 26;
    for i in 0..=field {
        let len = usize::from(u16::from_be_bytes(f.get(at..at + 2)?.try_into().ok()?));
        let bytes = at + 2..at + 2 + len;
        f.get(bytes.clone())?;
        if i == field {
            return Some((at, bytes));
        }
        at = bytes.end;
    }
    None
}
