//! The rules every accepted message must obey, written out from
//! docs/PROTOCOL.md independently of the decoder's code, and a reference
//! reader that decodes a byte string frame by frame and checks each
//! accepted header and message against them.

use super::super::*;

/// Frame types and the body lengths their headers may announce, copied
/// from the table in docs/PROTOCOL.md rather than from the decoder. AUTH
/// and PING are those of version 3 (a body of exactly 32 bytes, and
/// empty), PLAN and BLOCK those of version 4. In a sealed session every
/// limit but DATA's is 16 bytes higher for the tag, which the reader
/// removes before decoding.
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
    (12, 0, 65_536),    // PLAN
    (13, 0, 78),        // BLOCK
];

/// HELLO option tags the spec defines (SOFTWARE, ROLE, CHECKSUM,
/// NO_CLOBBER, AUTH, IDLE_TIMEOUT, BLOCKS, SESSION, JOIN): a HELLO with
/// any other critical option must be refused.
pub(super) const SPEC_OPTIONS: &[u16] = &[1, 2, 3, 4, 5, 6, 7, 8, 9];

/// What a HELLO body says by the rules, option by option: `None` when the
/// option is absent; when it is repeated, the last one counts.
#[derive(Debug, Default)]
pub(super) struct SpecHello {
    role: Option<u8>,
    checksum: Option<u8>,
    software: Option<Vec<u8>>,
    no_clobber: bool,
    auth: Option<[u8; 32]>,
    idle_timeout: Option<u32>,
    /// BLOCKS: block size, flags, streams.
    blocks: Option<(u32, u8, u8)>,
    session: Option<[u8; 16]>,
    join: Option<[u8; 16]>,
}

/// The BLOCKS rules: a block size that is a power of two from 1 MiB to
/// 64 MiB, flags with no bit but RESUME (0) and RETRY (1), 1 to 16
/// streams.
fn blocks_ok(size: u32, flags: u8, streams: u8) -> bool {
    (20..=26).any(|shift| size == 1 << shift) && flags & !0b11 == 0 && (1..=16).contains(&streams)
}

/// The HELLO rules: a sequence of options (u16 tag, u16 length, value) to
/// the end of the body. SOFTWARE is text (cut to 64 bytes); ROLE is one
/// byte, 0 or 1; CHECKSUM one byte, 0 or 1; NO_CLOBBER empty; AUTH is 33
/// bytes, method 1 (HMAC-SHA256; any other method is refused) and a
/// 32-byte nonce; IDLE_TIMEOUT is a u32 of at least 1 second; BLOCKS is 6
/// bytes (u32 block size, u8 flags, u8 streams, see [`blocks_ok`]);
/// SESSION and JOIN are 16-byte tokens. An unknown option is ignored
/// unless critical (bit 15); ROLE and CHECKSUM are required. Which end may
/// send which option is the handshake's business, not the decoder's.
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
            (1, v) => hello.software = Some(v.to_vec()),
            (2, [role @ (0 | 1)]) => hello.role = Some(*role),
            (3, [id @ (0..=2)]) => hello.checksum = Some(*id),
            (4, []) => hello.no_clobber = true,
            (5, [1, nonce @ ..]) if nonce.len() == 32 => hello.auth = Some(nonce.try_into().unwrap()),
            (6, &[a, b, c, d]) if u32::from_be_bytes([a, b, c, d]) >= 1 => {
                hello.idle_timeout = Some(u32::from_be_bytes([a, b, c, d]));
            }
            (7, &[a, b, c, d, flags, streams]) if blocks_ok(u32::from_be_bytes([a, b, c, d]), flags, streams) => {
                hello.blocks = Some((u32::from_be_bytes([a, b, c, d]), flags, streams));
            }
            (8, token) if token.len() == 16 => hello.session = Some(token.try_into().unwrap()),
            (9, token) if token.len() == 16 => hello.join = Some(token.try_into().unwrap()),
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
        FrameType::Entry => entry_rules(body).map(|_| ()),
        FrameType::Plan => plan_rules(body).map(|_| ()),
        FrameType::Block => block_rules(body).map(|_| ()),
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
    assert_eq!(Some(h.role as u8), rules.role, "{h:?}");
    let checksum = match h.checksum {
        Algorithm::None => 0,
        Algorithm::Sha256 => 1,
        Algorithm::Blake3 => 2,
    };
    assert_eq!(Some(checksum), rules.checksum, "{h:?}");
    assert_eq!(h.no_clobber, rules.no_clobber);
    assert!(h.software.len() <= 64, "SOFTWARE of {} bytes", h.software.len());
    match rules.software {
        None => assert!(h.software.is_empty()),
        Some(value) => {
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
    assert_eq!(h.auth, rules.auth, "{h:?}");
    assert_eq!(h.idle_timeout, rules.idle_timeout, "{h:?}");
    let blocks = h
        .blocks
        .map(|b| (b.size, u8::from(b.resume) | u8::from(b.retry) << 1, b.streams));
    assert_eq!(blocks, rules.blocks, "{h:?}");
    assert_eq!(h.session, rules.session, "{h:?}");
    assert_eq!(h.join, rules.join, "{h:?}");
}

/// A cursor over a body for the rules here: takes fields or says which
/// one the body is too short for.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let Some((field, rest)) = self.0.split_at_checked(n) else {
            return Err(format!("no room for the {what}"));
        };
        self.0 = rest;
        Ok(field)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2, what)?.try_into().unwrap()))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    /// A digest: algorithm id, length, bytes; id 0 (none) with 0 bytes,
    /// id 1 (SHA-256) or 2 (BLAKE3) with 32.
    fn digest(&mut self) -> Result<(u8, &'a [u8]), String> {
        let id = self.u8("digest algorithm")?;
        let len = self.u8("digest length")?;
        let bytes = self.take(usize::from(len), "digest")?;
        match (id, len) {
            (0, 0) | (1 | 2, 32) => Ok((id, bytes)),
            _ => Err(format!("a digest of algorithm {id} and {len} bytes")),
        }
    }

    fn end(&self, what: &str) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the {what}")),
        }
    }
}

/// A decoded digest in its wire form: algorithm id and bytes.
fn wire_digest(d: &Digest) -> (u8, &[u8]) {
    match d {
        Digest::None => (0, &[]),
        Digest::Sha256(bytes) => (1, bytes),
        Digest::Blake3(bytes) => (2, bytes),
    }
}

/// What a PLAN body says by the rules: `more`, then each held block's
/// index and digest.
struct SpecPlan<'a> {
    more: bool,
    held: Vec<(u32, (u8, &'a [u8]))>,
}

/// The PLAN rules: u8 more (0 or 1), u32 count, then exactly `count`
/// blocks (u32 index, digest) and nothing after them.
fn plan_rules(body: &[u8]) -> Result<SpecPlan<'_>, String> {
    let mut f = Fields(body);
    let more = match f.u8("more flag")? {
        0 => false,
        1 => true,
        other => return Err(format!("more flag {other}")),
    };
    let count = f.u32("count")?;
    let mut held = Vec::new();
    for _ in 0..count {
        let index = f.u32("block index")?;
        held.push((index, f.digest()?));
    }
    f.end("held blocks")?;
    Ok(SpecPlan { more, held })
}

/// What a BLOCK body says by the rules: entry, index, length, digest.
type SpecBlock<'a> = (u32, u32, u32, (u8, &'a [u8]));

/// The BLOCK rules: u32 entry, u32 index, u32 length of 1 byte to 64 MiB,
/// a digest, nothing after it.
fn block_rules(body: &[u8]) -> Result<SpecBlock<'_>, String> {
    let mut f = Fields(body);
    let entry = f.u32("entry")?;
    let index = f.u32("block index")?;
    let len = f.u32("block length")?;
    if !(1..=64 << 20).contains(&len) {
        return Err(format!("a block of {len} bytes"));
    }
    let digest = f.digest()?;
    f.end("digest")?;
    Ok((entry, index, len, digest))
}

/// ENTRY flags.
const SIZE_KNOWN: u8 = 1;
const HAS_MODE: u8 = 2;
const HAS_MTIME: u8 = 4;
const SPARSE: u8 = 8;
const LINKED: u8 = 16;
const BLOCKED: u8 = 32;

/// What an ENTRY body says by the rules.
struct SpecEntry<'a> {
    kind: u8,
    flags: u8,
    mode: u32,
    size: u64,
    mtime: (i64, u32),
    path: &'a [u8],
    target: &'a [u8],
    /// The source identity, when BLOCKED.
    source: Option<&'a [u8]>,
}

/// The ENTRY rules: kind 1 to 4; flags SIZE_KNOWN, HAS_MODE, HAS_MTIME,
/// SPARSE, LINKED and BLOCKED only; mode, size, mtime seconds and
/// nanoseconds (under 10^9 with HAS_MTIME); a size of at most 2^63 - 1
/// with SIZE_KNOWN; a path under the path rules; a target (empty for a
/// file or directory, link text for a symbolic link, a path for a hard
/// link); with BLOCKED, a 16-byte source identity; then anything
/// (reserved for extensions). SIZE_KNOWN, SPARSE, LINKED and BLOCKED are
/// for regular files only; SPARSE needs SIZE_KNOWN; BLOCKED needs
/// SIZE_KNOWN and excludes SPARSE.
fn entry_rules(body: &[u8]) -> Result<SpecEntry<'_>, String> {
    let mut f = Fields(body);
    let kind = f.u8("kind")?;
    let flags = f.u8("flags")?;
    let mode = f.u32("mode")?;
    let size = f.u64("size")?;
    let seconds = f.u64("mtime seconds")? as i64;
    let nanos = f.u32("mtime nanoseconds")?;
    let len = f.u16("path length")?;
    let path = f.take(usize::from(len), "path")?;
    let len = f.u16("target length")?;
    let target = f.take(usize::from(len), "target")?;
    let source = match flags & BLOCKED {
        0 => None,
        _ => Some(f.take(16, "source identity")?),
    };
    let has = |flag: u8| flags & flag != 0;
    let target_ok = match kind {
        1 | 2 => target.is_empty(),
        3 => link_text_ok(target),
        4 => path_ok(target),
        _ => return Err(format!("kind {kind}")),
    };
    if flags & 0xc0 != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    if has(HAS_MTIME) && nanos >= 1_000_000_000 {
        return Err(format!("{nanos} nanoseconds"));
    }
    if has(SIZE_KNOWN) && size > i64::MAX as u64 {
        return Err(format!("size {size}"));
    }
    if !path_ok(path) || !target_ok {
        return Err(format!("path {path:?}, target {target:?}"));
    }
    if kind != 1 && flags & (SIZE_KNOWN | SPARSE | LINKED | BLOCKED) != 0 {
        return Err(format!("flags {flags:#x} on kind {kind}"));
    }
    if has(SPARSE) && !has(SIZE_KNOWN) || has(BLOCKED) && (!has(SIZE_KNOWN) || has(SPARSE)) {
        return Err(format!("flags {flags:#x}"));
    }
    Ok(SpecEntry {
        kind,
        flags,
        mode,
        size,
        mtime: (seconds, nanos),
        path,
        target,
        source,
    })
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
        Message::Abort(a) => {
            // The text, then the reason byte when the source changed.
            let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            assert!(len <= 1024, "text of {len} bytes");
            match &body[2 + len..] {
                [] => assert!(!a.changed),
                [1] => assert!(a.changed),
                rest => panic!("accepted an ABORT ending in {rest:?}"),
            }
        }
        Message::Verdict(v) => text_at(3 + v.digest.as_bytes().len(), &v.message),
        Message::Error(e) => text_at(1, &e.message),
        Message::Auth(_) => assert_eq!(body.len(), 32),
        Message::Ping => assert!(body.is_empty()),
        Message::Plan(p) => {
            let rules = plan_rules(body).unwrap_or_else(|e| panic!("accepted a PLAN that breaks the rules: {e}"));
            assert_eq!(p.more, rules.more);
            let held: Vec<_> = p.held.iter().map(|(index, d)| (*index, wire_digest(d))).collect();
            assert_eq!(held, rules.held);
        }
        Message::Block(b) => {
            let rules = block_rules(body).unwrap_or_else(|e| panic!("accepted a BLOCK that breaks the rules: {e}"));
            assert_eq!((b.entry, b.index, b.len, wire_digest(&b.digest)), rules);
        }
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
    let rules = entry_rules(body).unwrap_or_else(|err| panic!("accepted an ENTRY that breaks the rules: {err}"));
    let has = |flag: u8| rules.flags & flag != 0;
    let kind = match e.kind {
        EntryKind::File => 1,
        EntryKind::Directory => 2,
        EntryKind::Symlink(_) => 3,
        EntryKind::HardLink(_) => 4,
    };
    assert_eq!(kind, rules.kind, "{e:?}");
    assert_eq!(e.path.as_bytes(), rules.path);
    assert_eq!(entry_target(&e.kind), rules.target);
    // How the payload travels, by the flags as sent.
    let payload = match (has(SIZE_KNOWN), has(SPARSE), rules.source) {
        _ if kind != 1 => Payload::None,
        (true, false, Some(source)) => Payload::Blocks {
            size: rules.size,
            source: source.try_into().unwrap(),
        },
        (true, false, None) => Payload::Sized(rules.size),
        (true, true, None) => Payload::Sparse(rules.size),
        (false, false, None) => Payload::Stream,
        _ => unreachable!("the rules refuse flags {:#x}", rules.flags),
    };
    assert_eq!(e.payload, payload, "flags {:#x}", rules.flags);
    assert_eq!(e.mode, has(HAS_MODE).then_some(rules.mode & 0o7777), "{e:?}");
    let (seconds, nanos) = rules.mtime;
    assert_eq!(e.mtime, has(HAS_MTIME).then_some(Mtime { seconds, nanos }), "{e:?}");
    assert_eq!(e.linked, has(LINKED), "{e:?}");
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
