//! Property tests of the decoder, run with the normal test suite: random
//! frames, mutated valid frames and whole byte streams (read through
//! [`FrameReader`] from a loopback socket) must decode to messages or an
//! error, never a panic or a hang. Every accepted message must satisfy the
//! limits and path rules of docs/PROTOCOL.md, checked here independently of
//! the decoder's code, and re-encode to a frame that decodes to the same
//! message.
//!
//! Deterministic: case `n` of a test draws from a PRNG seeded with the
//! test's seed and `n`. A failing case prints both and its input in hex;
//! `ZCP_FUZZ_SEED=<seed> ZCP_FUZZ_CASE=<n>` reruns just that case, and
//! `ZCP_FUZZ_SCALE=<k>` runs k times the default number of cases.
//!
//! Generators are tables: a new frame type is one line in [`KINDS`] (and
//! its limit in [`SPEC_LIMITS`]), a new HELLO option one line in
//! [`HELLO_OPTIONS`] (and its tag in [`SPEC_OPTIONS`]), a new mutation one
//! entry in [`MUTATIONS`]; a test fails while a type or option is missing.
//!
//! Cases per run: 50,000 random frames, 50,000 mutated frames, 20,000 path
//! edits, 20,000 preambles and 2,000 streams over a socket.
#![allow(clippy::unwrap_used)]

use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::cursor::put_option;
use super::*;
use crate::frames::{FrameReader, READ_BUFFER};

// ---------------------------------------------------------------- driver

/// splitmix64: tiny, fast, and good enough to drive a fuzzer.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, case: u64) -> Rng {
        let mut rng = Rng(seed ^ case.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn fill(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Up to `max - 1` random bytes.
    fn noise(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.fill(n)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let parsed = match v.trim().strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.trim().parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn hex(bytes: &[u8]) -> String {
    const SHOWN: usize = 8192;
    let mut s: String = bytes.iter().take(SHOWN).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > SHOWN {
        s.push_str(&format!("... ({} more bytes)", bytes.len() - SHOWN));
    }
    s
}

/// Runs `cases` cases: `generate` makes an input, `check` asserts the
/// properties (drawing further choices from the same PRNG). A failure
/// prints how to rerun the case and the input in hex.
fn run(test: &str, seed: u64, cases: u64, generate: impl Fn(&mut Rng) -> Vec<u8>, check: impl Fn(&[u8], &mut Rng)) {
    let seed = env_u64("ZCP_FUZZ_SEED").unwrap_or(seed);
    let cases = match env_u64("ZCP_FUZZ_CASE") {
        Some(case) => case..case + 1,
        None => 0..cases * env_u64("ZCP_FUZZ_SCALE").unwrap_or(1),
    };
    for case in cases {
        let mut rng = Rng::new(seed, case);
        let input = generate(&mut rng);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input, &mut rng))) {
            eprintln!(
                "{test}: case {case} failed; rerun it with \
                 ZCP_FUZZ_SEED={seed:#x} ZCP_FUZZ_CASE={case} cargo test --bin zcp {test}\n\
                 input ({} bytes): {}",
                input.len(),
                hex(&input)
            );
            resume_unwind(panic);
        }
    }
}

// ------------------------------------------- the rules, from PROTOCOL.md

/// Frame types and the body lengths their headers may announce, copied
/// from the table in docs/PROTOCOL.md rather than from the decoder.
const SPEC_LIMITS: &[(u8, u32, u32)] = &[
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
/// NO_CLOBBER): a HELLO with any other critical option must be refused.
const SPEC_OPTIONS: &[u16] = &[1, 2, 3, 4];

fn spec_limits(type_byte: u8) -> Option<(u32, u32)> {
    SPEC_LIMITS.iter().find(|l| l.0 == type_byte).map(|l| (l.1, l.2))
}

/// The path rules: 1..=4096 bytes; components separated by single `/`
/// (so no leading, trailing or doubled `/`), each 1..=255 bytes, without
/// NUL, and neither `.` nor `..`.
fn path_ok(p: &[u8]) -> bool {
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
fn link_text_ok(t: &[u8]) -> bool {
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
        Message::Hello(h) => {
            assert!(h.software.len() <= 64, "SOFTWARE of {} bytes", h.software.len());
            let mut rest = body;
            while let Some((option, tail)) = rest.split_first_chunk::<4>() {
                let tag = u16::from_be_bytes([option[0], option[1]]);
                let critical_known = tag & 0x8000 == 0 || SPEC_OPTIONS.contains(&(tag & 0x7fff));
                assert!(critical_known, "accepted the unknown critical option {tag:#x}");
                rest = &tail[usize::from(u16::from_be_bytes([option[2], option[3]]))..];
            }
            assert!(rest.is_empty(), "{} bytes after the last HELLO option", rest.len());
        }
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
enum End {
    /// At a frame boundary.
    Clean,
    /// In the middle of a frame or a DATA payload.
    Truncated,
    Refused(ProtocolError),
}

/// Decodes frames one after another as a reader of `bytes` must, skipping
/// DATA payloads, and checks each header against the spec's limits and
/// each accepted message.
fn decode_frames(mut rest: &[u8]) -> (Vec<Message>, End) {
    let mut messages = Vec::new();
    loop {
        if rest.is_empty() {
            return (messages, End::Clean);
        }
        let Some((hdr, tail)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() else {
            return (messages, End::Truncated);
        };
        let announced = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]);
        let allowed = spec_limits(hdr[0]).is_some_and(|(lo, hi)| (lo..=hi).contains(&announced));
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
        match Message::decode(header, body) {
            Ok(m) => {
                check_accepted(&m, body);
                messages.push(m);
            }
            Err(e) => return (messages, End::Refused(e)),
        }
        rest = next;
    }
}

// ------------------------------------------------------------ generators

/// Everything the generators know about one frame type: a valid message
/// of it, and a body built field by field from random, often wrong,
/// values.
#[derive(Clone, Copy)]
struct Kind {
    ty: FrameType,
    valid: fn(&mut Rng) -> Message,
    raw: fn(&mut Rng) -> Vec<u8>,
}

impl Kind {
    const fn new(ty: FrameType, valid: fn(&mut Rng) -> Message, raw: fn(&mut Rng) -> Vec<u8>) -> Kind {
        Kind { ty, valid, raw }
    }
}

/// Every frame type: a new one is one line here
/// (`every_frame_type_and_option_has_generators_and_a_spec_limit` fails until it is).
const KINDS: &[Kind] = &[
    Kind::new(FrameType::Hello, valid_hello, raw_hello),
    Kind::new(FrameType::Entry, valid_entry, raw_entry),
    Kind::new(FrameType::Data, valid_data, |r| r.noise(16)),
    Kind::new(FrameType::Trailer, valid_trailer, raw_trailer),
    Kind::new(FrameType::Abort, |r| Message::Abort(text(r, 1024)), raw_text),
    Kind::new(FrameType::Verdict, valid_verdict, raw_verdict),
    Kind::new(FrameType::Done, |_| Message::Done, |r| r.noise(2)),
    Kind::new(FrameType::Error, valid_error, |r| [r.fill(1), raw_text(r)].concat()),
    Kind::new(FrameType::Hole, |r| Message::Hole(u64_value(r).max(1)), raw_hole),
    Kind::new(FrameType::Auth, valid_auth, raw_auth),
    Kind::new(FrameType::Ping, |_| Message::Ping, |r| r.noise(2)),
];

type OptionGenerator = fn(&mut Rng) -> (u16, Vec<u8>);

/// HELLO options, right and wrong. A new option is one line here.
const HELLO_OPTIONS: &[OptionGenerator] = &[
    |r| (tag::SOFTWARE | r.pick(&[0, tag::CRITICAL]), text(r, 80).into_bytes()),
    |r| {
        let n = r.pick(&[64, 65, 200]);
        (tag::SOFTWARE, r.fill(n))
    },
    |r| (tag::ROLE | tag::CRITICAL, small_value(r, 2)),
    |r| (tag::CHECKSUM | tag::CRITICAL, small_value(r, 2)),
    |r| {
        (
            tag::NO_CLOBBER | tag::CRITICAL,
            if r.one_in(4) { r.noise(3) } else { vec![] },
        )
    },
    |r| (r.range(5, 0x7fff) as u16, r.noise(16)),
    |r| (r.range(5, 0x7fff) as u16 | tag::CRITICAL, r.noise(16)),
];

/// Mostly one byte `0..=max` (one past the largest valid value when max is
/// the largest + 1), sometimes none or two.
fn small_value(r: &mut Rng, max: usize) -> Vec<u8> {
    let v = [r.range(0, max) as u8; 2];
    let n = r.pick(&[0, 1, 1, 1, 1, 1, 1, 2]);
    v[..n].to_vec()
}

const U64S: &[u64] = &[0, 1, 7, 8, 9, 1 << 32, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX];
const U16S: &[u16] = &[
    0, 1, 2, 31, 32, 33, 64, 255, 256, 1024, 1025, 4095, 4096, 4097, 0x8000, 0xffff,
];

fn u64_value(r: &mut Rng) -> u64 {
    if r.one_in(2) {
        r.pick(U64S)
    } else {
        let shift = r.below(64);
        r.next() >> shift
    }
}

/// UTF-8 text of about `max` bytes at most, sometimes exactly at or over.
fn text(r: &mut Rng, max: usize) -> String {
    let len = r.pick(&[0, 1, 10, 40, max, max + 1]);
    let mut s = String::new();
    while s.len() < len {
        s.push(r.pick(&['a', 'Z', ' ', '\n', '\\', 'é', '€', '😀', '\u{202e}']));
    }
    s
}

/// A `text` field: u16 length (usually right), then bytes that are often
/// not UTF-8.
fn raw_text(r: &mut Rng) -> Vec<u8> {
    let n = r.pick(&[0, 1, 5, 30, 1023, 1024, 1025]);
    let bytes: Vec<u8> = (0..n).map(|_| r.pick(b"ab \n\\\x00\x1b\xc3\xa9\xe2\x82\xff")).collect();
    let len = if r.one_in(16) { r.pick(U16S) } else { n as u16 };
    [&len.to_be_bytes()[..], &bytes].concat()
}

fn digest(r: &mut Rng) -> Digest {
    if r.one_in(2) {
        Digest::None
    } else {
        Digest::Sha256(r.fill(32).try_into().unwrap())
    }
}

fn raw_digest(r: &mut Rng) -> Vec<u8> {
    let id = r.pick(&[0, 1, 1, 2, 255]);
    let len = if r.one_in(4) {
        r.pick(&[0, 1, 31, 32, 33, 255])
    } else if id == 1 {
        32
    } else {
        0
    };
    [vec![id, len], r.fill(usize::from(len))].concat()
}

fn valid_trailer(r: &mut Rng) -> Message {
    Message::Trailer(Trailer {
        bytes: u64_value(r),
        digest: digest(r),
    })
}

fn raw_trailer(r: &mut Rng) -> Vec<u8> {
    [&u64_value(r).to_be_bytes()[..], &raw_digest(r)].concat()
}

fn raw_verdict(r: &mut Rng) -> Vec<u8> {
    [vec![r.pick(&[0, 1, 2, 3, 4, 255])], raw_digest(r), raw_text(r)].concat()
}

fn valid_error(r: &mut Rng) -> Message {
    Message::Error(WireError {
        code: r.next() as u8,
        message: text(r, 1024),
    })
}

fn raw_hole(r: &mut Rng) -> Vec<u8> {
    let n = r.pick(&[7, 8, 8, 8, 9]);
    r.fill(n)
}

fn valid_auth(r: &mut Rng) -> Message {
    Message::Auth(r.fill(32).try_into().unwrap())
}

fn raw_auth(r: &mut Rng) -> Vec<u8> {
    let n = r.pick(&[0, 31, 32, 32, 32, 33]);
    r.fill(n)
}

fn valid_data(r: &mut Rng) -> Message {
    let any = r.next() as u32 % (16 << 20) + 1;
    Message::Data(r.pick(&[1, 2, 65_536, 16 << 20, any]))
}

fn valid_hello(r: &mut Rng) -> Message {
    Message::Hello(Hello {
        role: r.pick(&[Role::Sender, Role::Receiver]),
        checksum: r.pick(&[Algorithm::None, Algorithm::Sha256]),
        software: text(r, 64),
        no_clobber: r.one_in(2),
        auth: None,
        idle_timeout: None,
    })
}

/// Usually the required options with valid values, then up to three
/// from [`HELLO_OPTIONS`], in random order.
fn raw_hello(r: &mut Rng) -> Vec<u8> {
    let mut options = Vec::new();
    for tag in [tag::ROLE, tag::CHECKSUM] {
        if !r.one_in(8) {
            options.push((tag | tag::CRITICAL, vec![r.below(2) as u8]));
        }
    }
    for _ in 0..r.below(4) {
        options.push(r.pick(HELLO_OPTIONS)(r));
    }
    let mut body = Vec::new();
    while !options.is_empty() {
        let (tag, value) = options.swap_remove(r.below(options.len()));
        put_option(&mut body, tag, &value);
    }
    if r.one_in(8) {
        body.extend(r.noise(5));
    }
    body
}

fn valid_verdict(r: &mut Rng) -> Message {
    let status = r.pick(&[
        VerdictStatus::Committed,
        VerdictStatus::Mismatch,
        VerdictStatus::Failed,
        VerdictStatus::Skipped,
    ]);
    Message::Verdict(Verdict {
        status,
        digest: digest(r),
        message: text(r, 1024),
    })
}

/// A path of exactly `len` bytes (len >= 1) with random component lengths,
/// valid unless `len` is over the limit.
fn path_of_len(r: &mut Rng, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    while p.len() < len {
        if !p.is_empty() {
            p.push(b'/');
        }
        let room = len - p.len();
        // Leave room for at least "/x" when the path goes on.
        let n = if room <= 255 {
            room
        } else {
            r.range(1, 255).min(room - 2)
        };
        let start = p.len();
        p.extend((0..n).map(|_| r.pick(b"abc.-_ \n\xff\xc3")));
        if matches!(&p[start..], b"." | b"..") {
            p[start] = b'a';
        }
    }
    p
}

fn valid_path(r: &mut Rng) -> Vec<u8> {
    let len = r.pick(&[1, 2, 3, 8, 20, 100, 255, 256, 4095, 4096]);
    path_of_len(r, len)
}

/// Path bytes that are often one rule away from valid.
fn raw_path(r: &mut Rng) -> Vec<u8> {
    if r.one_in(8) {
        let len = r.pick(&[4095, 4096, 4097]);
        return path_of_len(r, len);
    }
    let mut p = Vec::new();
    if r.one_in(16) {
        p.push(b'/');
    }
    for i in 0..r.range(1, 4) {
        if i > 0 {
            p.extend_from_slice(if r.one_in(16) { b"//" } else { b"/" });
        }
        match r.below(32) {
            0 => p.push(b'.'),
            1 => p.extend_from_slice(b".."),
            2 => {}
            3 => p.extend(vec![b'n'; r.pick(&[254, 255, 256])]),
            4 => p.extend_from_slice(b"a\0b"),
            _ => p.extend((0..r.range(1, 8)).map(|_| r.pick(b"abc.-_ \n\xff"))),
        }
    }
    if r.one_in(16) {
        p.push(b'/');
    }
    p
}

fn valid_entry(r: &mut Rng) -> Message {
    let kind = match r.below(4) {
        0 => EntryKind::File,
        1 => EntryKind::Directory,
        2 => {
            let len = r.pick(&[1, 5, 60, 4095]);
            EntryKind::Symlink(LinkText::new(&(0..len).map(|_| r.pick(b"/.ab\xff\n")).collect::<Vec<_>>()).unwrap())
        }
        _ => EntryKind::HardLink(RelPath::new(&valid_path(r)).unwrap()),
    };
    let file = kind == EntryKind::File;
    let size = u64_value(r) & (i64::MAX as u64);
    let payload = match r.below(3) {
        _ if !file => Payload::None,
        0 => Payload::Sized(size),
        1 => Payload::Sparse(size),
        _ => Payload::Stream,
    };
    Message::Entry(Entry {
        path: RelPath::new(&valid_path(r)).unwrap(),
        payload,
        mode: r.one_in(2).then(|| r.next() as u32 & 0o7777),
        mtime: r.one_in(2).then(|| Mtime {
            seconds: r.next() as i64,
            nanos: r.pick(&[0, 999_999_999, 12_345]),
        }),
        linked: file && r.one_in(2),
        kind,
    })
}

/// A u16 length field, usually the length of what follows.
fn length_field(r: &mut Rng, actual: usize) -> [u8; 2] {
    if r.one_in(16) {
        r.pick(U16S).to_be_bytes()
    } else {
        (actual as u16).to_be_bytes()
    }
}

/// Each field is usually valid for the kind and sometimes not.
fn raw_entry(r: &mut Rng) -> Vec<u8> {
    let kind = r.pick(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 0, 5, 255]);
    let flags = match r.below(8) {
        0 => r.next() as u8,
        1 => r.next() as u8 & 0x1f,
        _ if kind == 1 => [0, 1, 9][r.below(3)] | (r.next() as u8 & 0x16),
        _ => r.next() as u8 & 0x06,
    };
    let size = if r.one_in(8) {
        u64_value(r)
    } else {
        u64_value(r) & i64::MAX as u64
    };
    let nanos = if r.one_in(8) {
        r.pick(&[1_000_000_000, u32::MAX])
    } else {
        r.below(1_000_000_000) as u32
    };
    let mut b = vec![kind, flags];
    b.extend((r.next() as u32).to_be_bytes());
    b.extend(size.to_be_bytes());
    b.extend(r.next().to_be_bytes());
    b.extend(nanos.to_be_bytes());
    let path = raw_path(r);
    b.extend(length_field(r, path.len()));
    b.extend(&path);
    let target = match kind {
        3 => {
            let n = r.pick(&[0, 1, 10, 10, 10, 4095, 4096]);
            let mut t: Vec<u8> = r.fill(n).iter().map(|&c| if c == 0 { b'x' } else { c }).collect();
            if n > 0 && r.one_in(8) {
                let i = r.below(n);
                t[i] = 0;
            }
            t
        }
        4 => raw_path(r),
        _ if r.one_in(8) => b"t".to_vec(),
        _ => vec![],
    };
    b.extend(length_field(r, target.len()));
    b.extend(&target);
    if r.one_in(8) {
        b.extend(r.noise(20));
    }
    b
}

// ------------------------------------------------------------- mutations

type Mutation = fn(&mut Rng, &mut Vec<u8>, &[u8]);

/// Ways to damage an encoded frame; `other` is another valid frame to
/// splice with. A new mutation is one entry here.
const MUTATIONS: &[Mutation] = &[
    |r, f, _| {
        let i = r.below(f.len());
        f[i] ^= 1 << r.below(8);
    },
    |r, f, _| {
        let i = r.below(f.len());
        f[i] = if r.one_in(2) {
            r.next() as u8
        } else {
            r.pick(b"\x00\x01\x02\x03\x04\x09\x1f\x20./\x7f\x80\xff")
        };
    },
    |r, f, _| f.truncate(r.below(f.len() + 1)),
    |r, f, _| f.extend(r.noise(17)),
    |_, f, other| f.extend_from_slice(other),
    |r, f, other| {
        f.truncate(r.below(f.len() + 1));
        f.extend_from_slice(&other[r.below(other.len())..]);
    },
    |r, f, _| {
        // The frame's length field: 0, the type's limit, one past it, huge.
        let max = f.first().and_then(|t| spec_limits(*t)).map_or(65_536, |l| l.1);
        let any = r.next() as u32;
        let len = r.pick(&[0, 1, max.saturating_sub(1), max, max + 1, u32::MAX, any]);
        if f.len() >= FRAME_HEADER_LEN {
            f[1..5].copy_from_slice(&len.to_be_bytes());
        }
    },
    |r, f, _| {
        // An inner u16 length (path, target, text, option) at any offset.
        if f.len() >= 2 {
            let i = r.below(f.len() - 1);
            f[i..i + 2].copy_from_slice(&r.pick(U16S).to_be_bytes());
        }
    },
    |r, f, _| {
        let (a, b) = (r.below(f.len() + 1), r.below(f.len() + 1));
        f.drain(a.min(b)..a.max(b));
    },
    |r, f, _| {
        let a = r.below(f.len());
        let piece = f[a..r.range(a, f.len())].to_vec();
        let at = r.below(f.len() + 1);
        f.splice(at..at, piece);
    },
    |r, f, _| {
        if f.first() == Some(&(FrameType::Entry as u8)) {
            let field = r.below(2);
            let fix = !r.one_in(8);
            edit_entry_field(r, f, field, fix);
        }
    },
    |r, f, _| {
        if f.first() == Some(&(FrameType::Hello as u8)) {
            let (tag, value) = r.pick(HELLO_OPTIONS)(r);
            put_option(f, tag, &value);
            fix_frame_len(f);
        }
    },
];

fn mutate(r: &mut Rng, frame: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..r.range(1, 3) {
        if frame.is_empty() {
            break;
        }
        r.pick(MUTATIONS)(r, frame, other);
    }
}

fn fix_frame_len(f: &mut [u8]) {
    if f.len() >= FRAME_HEADER_LEN {
        let len = (f.len() - FRAME_HEADER_LEN) as u32;
        f[1..5].copy_from_slice(&len.to_be_bytes());
    }
}

/// Where the path (field 0) or target (field 1) of the ENTRY body that
/// starts at `start` in `f` is: the offset of its u16 length and the range
/// of its bytes.
fn entry_field(f: &[u8], start: usize, field: usize) -> Option<(usize, std::ops::Range<usize>)> {
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

const PATH_TOKENS: &[&[u8]] = &[b"/", b"//", b".", b"..", b"/./", b"/../", b"\0", b"x/", b"/x", b"y"];

/// Rewrites the path or target of an ENTRY frame by inserting a token,
/// replacing the whole field with one, or deleting a byte; with `fix`,
/// the field's length and the frame's are updated to match.
fn edit_entry_field(r: &mut Rng, f: &mut Vec<u8>, field: usize, fix: bool) -> Option<Vec<u8>> {
    let (len_at, range) = entry_field(f, FRAME_HEADER_LEN, field)?;
    let mut bytes = f[range.clone()].to_vec();
    match r.below(8) {
        0 => bytes = r.pick(PATH_TOKENS).to_vec(),
        1 if !bytes.is_empty() => {
            bytes.remove(r.below(bytes.len()));
        }
        2 => bytes.extend(vec![b'y'; r.pick(&[1, 255, 256, 4096])]),
        _ => {
            let at = r.below(bytes.len() + 1);
            bytes.splice(at..at, r.pick(PATH_TOKENS).iter().copied());
        }
    }
    f.splice(range, bytes.iter().copied());
    if fix {
        f[len_at..len_at + 2].copy_from_slice(&(bytes.len() as u16).to_be_bytes());
        fix_frame_len(f);
    }
    Some(bytes)
}

fn encode(m: &Message) -> Vec<u8> {
    let mut frame = Vec::new();
    m.encode(&mut frame);
    frame
}

/// A valid frame of a random type; DATA comes with its (short) payload.
fn valid_frame(r: &mut Rng) -> Vec<u8> {
    match (r.pick(KINDS).valid)(r) {
        Message::Data(_) => {
            let n = if r.one_in(4) {
                r.range(1, READ_BUFFER + 5000)
            } else {
                r.range(1, 64)
            };
            [&encode(&Message::Data(n as u32))[..], &r.fill(n)].concat()
        }
        m => encode(&m),
    }
}

// ----------------------------------------------------------------- tests

/// Fails when a frame type or HELLO option is added to the decoder or the
/// spec tables here without generators.
#[test]
fn every_frame_type_and_option_has_generators_and_a_spec_limit() {
    for b in 0..=u8::MAX {
        let Some(ty) = FrameType::from_byte(b) else {
            assert!(
                spec_limits(b).is_none(),
                "type {b} is in the spec table but not decoded"
            );
            continue;
        };
        assert!(spec_limits(b).is_some(), "{ty:?} has no limit in SPEC_LIMITS");
        let kind = KINDS.iter().find(|k| k.ty == ty);
        let kind = kind.unwrap_or_else(|| panic!("{ty:?} has no generators in KINDS"));
        assert_eq!((kind.valid)(&mut Rng::new(1, 1)).frame_type(), ty);
    }
    let generated: Vec<u16> = (0..100)
        .flat_map(|i| {
            HELLO_OPTIONS
                .iter()
                .map(move |option| option(&mut Rng::new(1, i)).0 & 0x7fff)
        })
        .collect();
    for tag in SPEC_OPTIONS {
        assert!(
            generated.contains(tag),
            "HELLO option {tag} has no generator in HELLO_OPTIONS"
        );
    }
}

#[test]
fn frame_headers_are_checked_against_the_spec_limits() {
    for b in 0..=u8::MAX {
        let max = spec_limits(b).map_or(65_536, |l| l.1);
        for len in [
            0,
            1,
            max.saturating_sub(1),
            max,
            max + 1,
            65_536,
            65_537,
            16 << 20,
            (16 << 20) + 1,
            u32::MAX,
        ] {
            let l = len.to_be_bytes();
            decode_frames(&[b, l[0], l[1], l[2], l[3]]);
        }
    }
    // A control frame of exactly the limit is read; one byte more is not.
    let mut entry = encode(&valid_entry(&mut Rng::new(2, 0)));
    entry.resize(FRAME_HEADER_LEN + 65_536, 0x5a); // reserved extension area
    fix_frame_len(&mut entry);
    let mut hello = encode(&valid_hello(&mut Rng::new(2, 1)));
    let pad = 65_536 - (hello.len() - FRAME_HEADER_LEN) - 4;
    put_option(&mut hello, 0x7000, &vec![7; pad]);
    fix_frame_len(&mut hello);
    for mut frame in [entry, hello] {
        assert!(matches!(decode_frames(&frame), (m, End::Clean) if m.len() == 1));
        frame.push(0);
        fix_frame_len(&mut frame);
        assert!(matches!(decode_frames(&frame), (m, End::Refused(_)) if m.is_empty()));
    }
}

/// 50,000 frames of a random type byte, announced length and body: bodies
/// built field by field, or pure noise, lengths at and around the limits.
#[test]
fn random_frames_decode_to_a_message_or_an_error() {
    let generate = |r: &mut Rng| {
        let type_byte = if r.one_in(8) {
            r.next() as u8
        } else {
            r.pick(KINDS).ty as u8
        };
        let mut body = match KINDS.iter().find(|k| k.ty as u8 == type_byte) {
            Some(kind) if !r.one_in(8) => (kind.raw)(r),
            _ => r.noise(64),
        };
        let (lo, hi) = spec_limits(type_byte).unwrap_or((0, 65_536));
        let len = match r.below(8) {
            0 => {
                let any = r.next() as u32;
                r.pick(&[lo, hi.saturating_sub(1), hi, hi + 1, u32::MAX, any])
            }
            1 => r.pick(&[0, 1, 8, 9]),
            _ => body.len() as u32,
        };
        if len != body.len() as u32 && len <= 65_536 && !r.one_in(8) {
            // The body the header announces: noise past the fields, or cut.
            body.resize_with(len as usize, || r.next() as u8);
        }
        let mut frame = vec![type_byte];
        frame.extend(len.to_be_bytes());
        frame.extend(body);
        frame
    };
    run("random_frames", 0x5eed_0001, 50_000, generate, |bytes, _| {
        decode_frames(bytes);
    });
}

/// 50,000 valid frames of every type, each damaged by one to three
/// mutations (see MUTATIONS) before decoding.
#[test]
fn mutated_frames_decode_to_a_message_or_an_error() {
    let generate = |r: &mut Rng| {
        let mut frame = encode(&(r.pick(KINDS).valid)(r));
        let other = valid_frame(r);
        mutate(r, &mut frame, &other);
        frame
    };
    run("mutated_frames", 0x5eed_0002, 50_000, generate, |bytes, _| {
        decode_frames(bytes);
    });
}

/// 20,000 valid ENTRY frames whose path or link target is edited (with
/// `/`, `//`, `.`, `..`, NUL, long components and paths): the decoder must
/// accept the edited entry exactly when the rules allow the new bytes.
#[test]
fn path_edits_are_accepted_exactly_when_the_rules_allow() {
    let generate = |r: &mut Rng| loop {
        let entry = valid_entry(r);
        let is_link =
            matches!(&entry, Message::Entry(e) if matches!(e.kind, EntryKind::Symlink(_) | EntryKind::HardLink(_)));
        let mut frame = encode(&entry);
        let field = if is_link { r.below(2) } else { 0 };
        if edit_entry_field(r, &mut frame, field, true).is_some() {
            return frame;
        }
    };
    run("path_edits", 0x5eed_0003, 20_000, generate, |frame, _| {
        let path = &frame[entry_field(frame, FRAME_HEADER_LEN, 0).unwrap().1];
        let target = &frame[entry_field(frame, FRAME_HEADER_LEN, 1).unwrap().1];
        let rules_allow = path_ok(path)
            && match frame[FRAME_HEADER_LEN] {
                3 => link_text_ok(target),
                4 => path_ok(target),
                _ => target.is_empty(),
            };
        let (messages, end) = decode_frames(frame);
        assert_eq!(
            messages.len() == 1,
            rules_allow,
            "path {path:?} target {target:?}: {end:?}"
        );
    });
}

/// 20,000 preambles: the magic, possibly damaged, and versions around the
/// ones spoken.
#[test]
fn random_preambles_decode_or_fail_cleanly() {
    let generate = |r: &mut Rng| {
        let mut p = MAGIC.to_vec();
        if r.one_in(4) {
            let i = r.below(4);
            p[i] = r.next() as u8;
        }
        for _ in 0..2 {
            let any = r.next() as u16;
            p.extend(r.pick(&[0u16, 1, 2, 3, 0xffff, any]).to_be_bytes());
        }
        p
    };
    run("preambles", 0x5eed_0004, 20_000, generate, |bytes, _| {
        let bytes: [u8; PREAMBLE_LEN] = bytes.try_into().unwrap();
        let (max, min) = (
            u16::from_be_bytes([bytes[4], bytes[5]]),
            u16::from_be_bytes([bytes[6], bytes[7]]),
        );
        match Preamble::decode(&bytes) {
            Ok(p) => {
                assert!(bytes[..4] == MAGIC && min <= max, "accepted {p:?}");
                assert_eq!(p.encode(), bytes);
                if let Ok(v) = Preamble::ours().negotiate(&p) {
                    assert!(
                        (MIN_VERSION..=VERSION).contains(&v) && (min..=max).contains(&v),
                        "{p:?} gave {v}"
                    );
                }
            }
            Err(e) => assert!(bytes[..4] != MAGIC || min > max, "refused {bytes:?}: {e}"),
        }
    });
}

/// What reading `bytes` as a session must give: the preamble, then frames.
fn expected_session(bytes: &[u8]) -> (Vec<Message>, End) {
    match bytes.split_first_chunk::<PREAMBLE_LEN>() {
        None => (vec![], End::Truncated),
        Some((p, rest)) => match Preamble::decode(p) {
            Ok(_) => decode_frames(rest),
            Err(e) => (vec![], End::Refused(e)),
        },
    }
}

/// Reads a session with [`FrameReader`] as zcp does, choosing buffered or
/// exact reads at random and taking DATA payloads from the buffer. The
/// flag says whether the last read was exact (a clean close is then an
/// early end).
fn read_session(sock: TcpStream, r: &mut Rng) -> (Vec<Message>, End, bool) {
    let end = |e: anyhow::Error| {
        if let Some(p) = e.downcast_ref::<ProtocolError>() {
            End::Refused(p.clone())
        } else if e
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof)
        {
            End::Truncated
        } else {
            panic!("reading the stream failed with neither a protocol error nor an early end: {e:#}")
        }
    };
    let mut reader = FrameReader::new(sock);
    let mut messages = Vec::new();
    if let Err(e) = reader.read_preamble() {
        return (messages, end(e), false);
    }
    loop {
        let _ = reader.has_frame();
        let exact = r.one_in(2);
        let next = if exact {
            reader.expect_exact().map(Some)
        } else {
            reader.next()
        };
        match next {
            Ok(None) => return (messages, End::Clean, false),
            Err(e) => return (messages, end(e), exact),
            Ok(Some(m)) => {
                let mut payload = if let Message::Data(n) = m { n as usize } else { 0 };
                messages.push(m);
                while payload > 0 {
                    let want = payload.min(r.range(1, READ_BUFFER));
                    if let Err(e) = reader.buffer_small(want) {
                        return (messages, end(e), false);
                    }
                    payload -= reader.take_buffered(want as u64).len();
                }
            }
        }
    }
}

/// 2,000 sessions (a preamble and up to eight frames, each possibly
/// damaged) written in random pieces to a loopback socket and read with
/// FrameReader: the messages and the way the stream ends must be those of
/// decoding the same bytes in memory, and reading must end (the socket
/// times out after 5 s, the whole read after 10 s).
#[test]
fn streams_through_frame_reader_match_decoding_in_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let generate = |r: &mut Rng| {
        let mut preamble = Preamble::ours().encode().to_vec();
        if r.one_in(8) {
            mutate(r, &mut preamble, &[0]);
        }
        let mut stream = preamble;
        for _ in 0..r.below(9) {
            let mut frame = valid_frame(r);
            if r.one_in(4) {
                let other = valid_frame(r);
                mutate(r, &mut frame, &other);
            }
            stream.extend(frame);
        }
        if r.one_in(8) {
            stream.truncate(r.below(stream.len() + 1));
        }
        stream
    };
    run("streams", 0x5eed_0005, 2_000, generate, |bytes, r| {
        let (want_messages, want_end) = expected_session(bytes);
        let mut writer = TcpStream::connect(addr).unwrap();
        let (reader, _) = listener.accept().unwrap();
        for sock in [&writer, &reader] {
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            sock.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        writer.set_nodelay(true).unwrap();
        let mut pieces = Vec::new();
        let mut rest = bytes.to_vec();
        while !rest.is_empty() {
            let most = if r.one_in(2) { 8 } else { 70_000 };
            let tail = rest.split_off(r.range(1, rest.len().min(most)));
            pieces.push(std::mem::replace(&mut rest, tail));
        }
        let write = std::thread::spawn(move || {
            // The reader may stop early and close: write errors are fine.
            for piece in pieces {
                if writer.write_all(&piece).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(Shutdown::Write);
        });
        // A watchdog, not just the socket timeout: a reader that spun on
        // end of stream would never time out.
        let (done, result) = mpsc::channel();
        let mut reader_rng = Rng(r.next());
        std::thread::spawn(move || done.send(read_session(reader, &mut reader_rng)));
        let (messages, end, exact) = match result.recv_timeout(Duration::from_secs(10)) {
            Ok(session) => session,
            Err(RecvTimeoutError::Timeout) => panic!("reading the session did not end within 10 s"),
            Err(RecvTimeoutError::Disconnected) => panic!("reading the session panicked"),
        };
        write.join().unwrap();
        assert_eq!(messages, want_messages);
        let closed_on_exact_read = exact && want_end == End::Clean && end == End::Truncated;
        assert!(
            end == want_end || closed_on_exact_read,
            "stream ended with {end:?}, not {want_end:?}"
        );
    });
}
