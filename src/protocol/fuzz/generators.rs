//! Generators: valid messages of every frame type, and bodies built field
//! by field from random, often wrong, values.

use super::super::cursor::{put_digest, put_option};
use super::super::*;
use super::Rng;
use super::spec::SPEC_OPTIONS;
use crate::frames::READ_BUFFER;

/// Everything the generators know about one frame type: a valid message
/// of it, and a body built field by field from random, often wrong,
/// values.
#[derive(Clone, Copy)]
pub(super) struct Kind {
    pub(super) ty: FrameType,
    pub(super) valid: fn(&mut Rng) -> Message,
    pub(super) raw: fn(&mut Rng) -> Vec<u8>,
}

impl Kind {
    const fn new(ty: FrameType, valid: fn(&mut Rng) -> Message, raw: fn(&mut Rng) -> Vec<u8>) -> Kind {
        Kind { ty, valid, raw }
    }
}

/// Every frame type: a new one is one line here
/// (`every_frame_type_and_option_has_generators_and_a_spec_limit` fails until it is).
pub(super) const KINDS: &[Kind] = &[
    Kind::new(FrameType::Hello, valid_hello, raw_hello),
    Kind::new(FrameType::Entry, valid_entry, raw_entry),
    Kind::new(FrameType::Data, valid_data, |r| r.noise(16)),
    Kind::new(FrameType::Trailer, valid_trailer, raw_trailer),
    Kind::new(
        FrameType::Abort,
        |r| Message::Abort(Aborted::new(text(r, 1024), r.one_in(2))),
        |r| [raw_text(r), r.noise(2)].concat(),
    ),
    Kind::new(FrameType::Verdict, valid_verdict, raw_verdict),
    Kind::new(FrameType::Done, |_| Message::Done, |r| r.noise(2)),
    Kind::new(FrameType::Error, valid_error, |r| [r.fill(1), raw_text(r)].concat()),
    Kind::new(FrameType::Hole, |r| Message::Hole(u64_value(r).max(1)), raw_hole),
    Kind::new(FrameType::Auth, valid_auth, raw_auth),
    Kind::new(FrameType::Ping, |_| Message::Ping, |r| r.noise(2)),
    Kind::new(FrameType::Plan, valid_plan, raw_plan),
    Kind::new(FrameType::Block, valid_block, raw_block),
];

pub(super) type OptionGenerator = fn(&mut Rng) -> (u16, Vec<u8>);

/// HELLO options, right and wrong. A new option is one line here.
pub(super) const HELLO_OPTIONS: &[OptionGenerator] = &[
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
    |r| (tag::AUTH | r.pick(&[tag::CRITICAL, tag::CRITICAL, 0]), auth_value(r)),
    |r| (tag::IDLE_TIMEOUT | r.pick(&[0, 0, tag::CRITICAL]), idle_value(r)),
    |r| (tag::BLOCKS | r.pick(&[0, 0, tag::CRITICAL]), blocks_value(r)),
    |r| (tag::SESSION | r.pick(&[0, 0, tag::CRITICAL]), token_value(r)),
    |r| (tag::JOIN | r.pick(&[tag::CRITICAL, tag::CRITICAL, 0]), token_value(r)),
    |r| (unknown_tag(r), r.noise(16)),
    |r| (unknown_tag(r) | tag::CRITICAL, r.noise(16)),
];

/// An option tag the spec does not define.
fn unknown_tag(r: &mut Rng) -> u16 {
    loop {
        let tag = r.range(1, 0x7fff) as u16;
        if !SPEC_OPTIONS.contains(&tag) {
            return tag;
        }
    }
}

/// The AUTH option: mostly method 1 and a 32-byte nonce, sometimes another
/// method, a nonce one byte off, or nothing.
fn auth_value(r: &mut Rng) -> Vec<u8> {
    let method = if r.one_in(4) { r.pick(&[0, 2, 255]) } else { 1 };
    let n = if r.one_in(4) { r.pick(&[0, 31, 33, 64]) } else { 32 };
    match r.one_in(16) {
        true => vec![],
        false => [vec![method], r.fill(n)].concat(),
    }
}

/// The IDLE_TIMEOUT option: mostly a u32 at and around its limits,
/// sometimes 0 or of the wrong length.
fn idle_value(r: &mut Rng) -> Vec<u8> {
    if r.one_in(8) {
        let n = r.pick(&[0, 1, 3, 5, 8]);
        return r.fill(n);
    }
    let any = r.next() as u32;
    r.pick(&[0u32, 1, 2, 60, 3600, u32::MAX, any]).to_be_bytes().to_vec()
}

/// A valid BLOCKS option: a power of two from 1 MiB to 64 MiB, any
/// flags, 1 to 16 streams.
fn valid_blocks(r: &mut Rng) -> Blocks {
    Blocks {
        size: 1 << r.range(20, 26),
        resume: r.one_in(2),
        retry: r.one_in(2),
        streams: r.pick(&[1, 1, 2, 8, 15, 16]),
    }
}

/// The BLOCKS option: mostly valid, sometimes a block size, flags or
/// stream count out of the rules, or a value of the wrong length.
fn blocks_value(r: &mut Rng) -> Vec<u8> {
    if r.one_in(16) {
        let n = r.pick(&[0, 1, 5, 7, 12]);
        return r.fill(n);
    }
    let [a, b, c, d, mut flags, mut streams] = valid_blocks(r).encode();
    let mut size = u32::from_be_bytes([a, b, c, d]);
    match r.below(8) {
        0 => {
            let any = r.next() as u32;
            size = r.pick(&[
                0,
                1,
                1 << 19,
                (1 << 20) - 1,
                (1 << 20) + 1,
                3 << 20,
                1 << 27,
                1 << 31,
                any,
            ]);
        }
        1 => {
            let any = r.next() as u8;
            flags = r.pick(&[4, 7, 0x80, 0xff, any]);
        }
        2 => streams = r.pick(&[0, 17, 255]),
        _ => {}
    }
    [&size.to_be_bytes()[..], &[flags, streams]].concat()
}

/// A SESSION or JOIN token: mostly 16 bytes, sometimes one off or none.
fn token_value(r: &mut Rng) -> Vec<u8> {
    let n = if r.one_in(4) { r.pick(&[0, 1, 15, 17, 32]) } else { 16 };
    r.fill(n)
}

fn idle_timeout(r: &mut Rng) -> u32 {
    let any = r.next() as u32;
    r.pick(&[1, 2, 60, 3600, u32::MAX, any.max(1)])
}

/// Mostly one byte `0..=max` (one past the largest valid value when max is
/// the largest + 1), sometimes none or two.
fn small_value(r: &mut Rng, max: usize) -> Vec<u8> {
    let v = [r.range(0, max) as u8; 2];
    let n = r.pick(&[0, 1, 1, 1, 1, 1, 1, 2]);
    v[..n].to_vec()
}

const U64S: &[u64] = &[0, 1, 7, 8, 9, 1 << 32, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX];
pub(super) const U16S: &[u16] = &[
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
    let algorithm = r.pick(&[Algorithm::None, Algorithm::Sha256, Algorithm::Blake3]);
    digest_of(r, algorithm)
}

fn digest_of(r: &mut Rng, algorithm: Algorithm) -> Digest {
    match algorithm {
        Algorithm::None => Digest::None,
        Algorithm::Sha256 => Digest::Sha256(r.fill(32).try_into().unwrap()),
        Algorithm::Blake3 => Digest::Blake3(r.fill(32).try_into().unwrap()),
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

fn block_index(r: &mut Rng) -> u32 {
    let any = r.next() as u32;
    r.pick(&[0, 1, 2, 7, 1000, u32::MAX, any])
}

/// A PLAN: usually a few held blocks with digests of one algorithm (now
/// and then mixed), sometimes as many as fit in a frame.
fn valid_plan(r: &mut Rng) -> Message {
    let algorithm = r.pick(&[Algorithm::None, Algorithm::Sha256, Algorithm::Blake3]);
    let (count, mixed) = if r.one_in(64) {
        (Plan::capacity(algorithm), false)
    } else {
        (r.pick(&[0, 0, 1, 2, 5, 40]), r.one_in(8))
    };
    let held = (0..count)
        .map(|_| {
            let index = block_index(r);
            let digest = if mixed { digest(r) } else { digest_of(r, algorithm) };
            (index, digest)
        })
        .collect();
    Message::Plan(Plan {
        more: r.one_in(2),
        held,
    })
}

/// A PLAN body: a `more` byte that is sometimes not 0 or 1, a count that
/// is sometimes not the number of blocks listed, digests sometimes wrong.
fn raw_plan(r: &mut Rng) -> Vec<u8> {
    let n = r.pick(&[0u32, 1, 2, 3, 10]);
    let mut blocks = Vec::new();
    for _ in 0..n {
        blocks.extend(block_index(r).to_be_bytes());
        if r.one_in(8) {
            blocks.extend(raw_digest(r));
        } else {
            let mut d = Vec::new();
            put_digest(&digest(r), &mut d);
            blocks.extend(d);
        }
    }
    let count = match r.below(8) {
        0 => r.pick(&[n + 1, n.saturating_sub(1), 0x2aaa_aaab, 10_923, u32::MAX]),
        _ => n,
    };
    let mut body = vec![r.pick(&[0, 0, 1, 1, 2, 255])];
    body.extend(count.to_be_bytes());
    body.extend(blocks);
    if r.one_in(8) {
        body.extend(r.noise(8));
    }
    body
}

fn valid_block(r: &mut Rng) -> Message {
    let any = r.next() as u32 % (64 << 20) + 1;
    Message::Block(Block {
        entry: block_index(r),
        index: block_index(r),
        len: r.pick(&[1, 2, 4095, 1 << 20, 8 << 20, 64 << 20, any]),
        digest: digest(r),
    })
}

/// A BLOCK body: a length at and around its limits, a digest sometimes
/// wrong, sometimes bytes after it.
fn raw_block(r: &mut Rng) -> Vec<u8> {
    let any = r.next() as u32;
    let len: u32 = r.pick(&[0, 1, 1 << 20, 64 << 20, (64 << 20) + 1, u32::MAX, any]);
    let mut body = r.fill(8);
    body.extend(len.to_be_bytes());
    body.extend(raw_digest(r));
    if r.one_in(8) {
        body.extend(r.noise(4));
    }
    body
}

fn valid_data(r: &mut Rng) -> Message {
    let any = r.next() as u32 % (16 << 20) + 1;
    Message::Data(r.pick(&[1, 2, 65_536, 16 << 20, any]))
}

/// A HELLO as either end may send it: SESSION only from a receiver, JOIN
/// only from a sender.
pub(super) fn valid_hello(r: &mut Rng) -> Message {
    let role = r.pick(&[Role::Sender, Role::Receiver]);
    let token = |r: &mut Rng, from: Role| (role == from && r.one_in(2)).then(|| r.fill(16).try_into().unwrap());
    Message::Hello(Hello {
        role,
        checksum: r.pick(&[Algorithm::None, Algorithm::Sha256, Algorithm::Blake3]),
        software: text(r, 64),
        no_clobber: r.one_in(2),
        auth: r.one_in(2).then(|| r.fill(NONCE_LEN).try_into().unwrap()),
        idle_timeout: r.one_in(2).then(|| idle_timeout(r)),
        blocks: r.one_in(2).then(|| valid_blocks(r)),
        session: token(r, Role::Receiver),
        join: token(r, Role::Sender),
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

pub(super) fn valid_entry(r: &mut Rng) -> Message {
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
    let payload = match r.below(4) {
        _ if !file => Payload::None,
        0 => Payload::Sized(size),
        1 => Payload::Sparse(size),
        2 => Payload::Blocks {
            size,
            source: r.fill(16).try_into().unwrap(),
        },
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
        1 => r.next() as u8 & 0x3f,
        _ if kind == 1 => [0, 1, 9, 0x21][r.below(4)] | (r.next() as u8 & 0x16),
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
    // The source identity of a BLOCKED entry, sometimes cut short.
    if flags & 0x20 != 0 {
        let n = if r.one_in(8) { r.pick(&[0, 1, 15]) } else { 16 };
        b.extend(r.fill(n));
    }
    if r.one_in(8) {
        b.extend(r.noise(20));
    }
    b
}

pub(super) fn encode(m: &Message) -> Vec<u8> {
    let mut frame = Vec::new();
    m.encode(&mut frame);
    frame
}

/// A valid frame of a random type; DATA comes with its (short) payload.
pub(super) fn valid_frame(r: &mut Rng) -> Vec<u8> {
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
