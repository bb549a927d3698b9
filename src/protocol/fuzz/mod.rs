//! Property tests of the decoder, run with the normal test suite: random
//! frames, mutated valid frames and whole byte streams (read through
//! [`FrameReader`] from a loopback socket) must decode to messages or an
//! error, never a panic or a hang. Every accepted message must satisfy the
//! limits and path rules of docs/PROTOCOL.md, checked here independently of
//! the decoder's code, and re-encode to a frame that decodes to the same
//! message; for HELLO, ENTRY, PLAN, BLOCK, AUTH, HOLE, DONE and PING the
//! rules also say which bodies must be accepted, and the decoder must
//! agree. Sealed sessions (after authentication) must open to the
//! messages sealed, in order, and refuse any damage to a sealed frame.
//!
//! Deterministic: case `n` of a test draws from a PRNG seeded with the
//! test's seed and `n`. A failing case prints both and its input in hex;
//! `ZCP_FUZZ_SEED=<seed> ZCP_FUZZ_CASE=<n>` reruns just that case, and
//! `ZCP_FUZZ_SCALE=<k>` runs k times the default number of cases.
//!
//! Generators are tables: a new frame type is one line in
//! [`generators::KINDS`] (and its limit in [`spec::SPEC_LIMITS`]), a new
//! HELLO option one line in [`generators::HELLO_OPTIONS`] (and its tag in
//! [`spec::SPEC_OPTIONS`]), a new mutation one entry in
//! [`mutate::MUTATIONS`]; a test fails while a type or option is missing.
//!
//! - `generators`: valid and raw generators for every frame type and option
//! - `spec`: the rules from docs/PROTOCOL.md and a reference reader
//! - `mutate`: ways to damage a frame
//! - `stream`: sessions through [`FrameReader`] over a loopback socket
//! - `sealed`: sealed sessions, intact and damaged, against an oracle
//! - here: the driver and the tests of single frames and preambles
//!
//! Cases per run: 50,000 random frames, 50,000 mutated frames, 20,000 path
//! edits, 20,000 preambles, 2,000 streams over a socket, 2,000 intact and
//! 10,000 damaged sealed sessions in memory and 1,000 sealed sessions over
//! a socket.
//!
//! [`FrameReader`]: crate::frames::FrameReader
#![allow(clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use super::cursor::put_option;
use super::*;
use generators::{HELLO_OPTIONS, KINDS, encode, valid_entry, valid_frame, valid_hello};
use mutate::{edit_entry_field, fix_frame_len, mutate};
use spec::{End, SPEC_OPTIONS, decode_frames, entry_field, header_allowed, link_text_ok, path_ok, spec_limits};

mod generators;
mod mutate;
mod sealed;
mod spec;
mod stream;

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
    // The options the decoder understands, found by probing every tag:
    // an unknown optional option is ignored, a known one changes the
    // HELLO or is refused for some value.
    let mut base = Vec::new();
    put_option(&mut base, tag::ROLE | tag::CRITICAL, &[0]);
    put_option(&mut base, tag::CHECKSUM | tag::CRITICAL, &[0]);
    let plain = decode_hello(&mut cursor::Reader::new(&base));
    let probes: [&[u8]; 4] = [&[], &[0xff; 3], &[1; 33], &[0, 0, 0, 1]];
    let understood: Vec<u16> = (1..0x8000)
        .filter(|&tag| {
            probes.iter().any(|value| {
                let mut body = base.clone();
                put_option(&mut body, tag, value);
                decode_hello(&mut cursor::Reader::new(&body)) != plain
            })
        })
        .collect();
    assert_eq!(
        understood, SPEC_OPTIONS,
        "the decoder understands options that SPEC_OPTIONS does not list, or the reverse"
    );
}

/// A HELLO with the required options (a receiver's, SHA-256) and this
/// one, read by the reference reader: the HELLO if it is accepted.
fn hello_with(option: u16, value: &[u8]) -> Option<Hello> {
    let mut body = Vec::new();
    put_option(&mut body, tag::ROLE | tag::CRITICAL, &[1]);
    put_option(&mut body, tag::CHECKSUM | tag::CRITICAL, &[1]);
    put_option(&mut body, option, value);
    match decode_one(FrameType::Hello, &body)? {
        Message::Hello(h) => Some(h),
        other => panic!("a HELLO frame decoded to {other:?}"),
    }
}

/// A frame of this type and body, read by the reference reader: the
/// message if it is accepted.
fn decode_one(kind: FrameType, body: &[u8]) -> Option<Message> {
    let mut frame = vec![kind as u8];
    frame.extend((body.len() as u32).to_be_bytes());
    frame.extend(body);
    let (messages, end) = decode_frames(&frame);
    assert_eq!(messages.len() == 1, end == End::Clean);
    messages.into_iter().next()
}

/// The options and frames of version 3, at and around their rules: AUTH
/// is method 1 and a 32-byte nonce, IDLE_TIMEOUT a non-zero u32, an AUTH
/// frame's body a 32-byte proof, PING empty; other methods are refused.
#[test]
fn version_3_options_and_frames_follow_the_rules() {
    for critical in [0, tag::CRITICAL] {
        for method in [0u8, 1, 2, 3, 0x7f, 0x80, 255] {
            for n in [0, 1, 16, 31, 32, 33, 64] {
                let nonce: Vec<u8> = (0..n as u8).collect();
                let got = hello_with(tag::AUTH | critical, &[&[method][..], &nonce].concat());
                let ok = method == 1 && n == 32;
                assert_eq!(got.is_some(), ok, "AUTH method {method} with a {n}-byte nonce");
                if let Some(h) = got {
                    assert_eq!(h.auth.map(Vec::from), Some(nonce));
                }
            }
        }
        assert!(hello_with(tag::AUTH | critical, &[]).is_none(), "empty AUTH option");
        for value in [&[][..], &[0], &[0, 0, 1], &[0, 0, 0, 0, 1], &[0; 8]] {
            assert!(
                hello_with(tag::IDLE_TIMEOUT | critical, value).is_none(),
                "IDLE_TIMEOUT {value:?}"
            );
        }
        for seconds in [0, 1, 2, 300, u32::MAX] {
            let got = hello_with(tag::IDLE_TIMEOUT | critical, &seconds.to_be_bytes());
            assert_eq!(got.is_some(), seconds >= 1, "IDLE_TIMEOUT of {seconds} s");
            if let Some(h) = got {
                assert_eq!(h.idle_timeout, Some(seconds));
            }
        }
    }
    for (kind, ok_len) in [(FrameType::Auth, 32), (FrameType::Ping, 0)] {
        for len in 0..=50u32 {
            let mut frame = FrameHeader::encode(kind, len).to_vec();
            frame.extend((0..len).map(|i| i as u8));
            let (messages, end) = decode_frames(&frame);
            assert_eq!(messages.len() == 1, len == ok_len, "{kind:?} of {len} bytes: {end:?}");
        }
    }
}

/// The options and frames of version 4, at and around their rules: BLOCKS
/// is a block size that is a power of two from 1 MiB to 64 MiB, flags
/// RESUME (bit 0) and RETRY (bit 1) only and 1 to 16 streams; SESSION and
/// JOIN are 16-byte tokens; a PLAN lists exactly as many blocks as it
/// counts, as many as fit in 64 KiB; a BLOCK is 1 byte to 64 MiB long. An
/// ENTRY's BLOCKED flag is checked with every other flag, kind and length
/// of source identity by the reference reader's own rules.
#[test]
fn version_4_options_and_frames_follow_the_rules() {
    const MIB: u32 = 1 << 20;
    let valid_sizes = [MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB, 64 * MIB];
    let blocks = |size: u32, flags: u8, streams: u8| [&size.to_be_bytes()[..], &[flags, streams]].concat();
    for critical in [0, tag::CRITICAL] {
        let sizes = (0..32).flat_map(|k| [(1u32 << k) - 1, 1 << k, (1 << k) + 1]);
        for size in sizes.chain([3 * MIB, 24 * MIB, u32::MAX]) {
            let got = hello_with(tag::BLOCKS | critical, &blocks(size, 0, 1));
            assert_eq!(got.is_some(), valid_sizes.contains(&size), "block size {size}");
        }
        for flags in 0..=u8::MAX {
            let got = hello_with(tag::BLOCKS | critical, &blocks(8 * MIB, flags, 4));
            assert_eq!(got.is_some(), flags <= 3, "BLOCKS flags {flags:#x}");
            if let Some(h) = got {
                let b = h.blocks.unwrap();
                assert_eq!(
                    (b.size, b.resume, b.retry, b.streams),
                    (8 * MIB, flags & 1 != 0, flags & 2 != 0, 4)
                );
            }
        }
        for streams in 0..=u8::MAX {
            let got = hello_with(tag::BLOCKS | critical, &blocks(64 * MIB, 3, streams));
            assert_eq!(got.is_some(), (1..=16).contains(&streams), "{streams} streams");
            if let Some(h) = got {
                assert_eq!(h.blocks.map(|b| b.streams), Some(streams));
            }
        }
        let value = blocks(MIB, 1, 16);
        for n in 0..=12 {
            let value: Vec<u8> = value.iter().copied().cycle().take(n).collect();
            assert_eq!(
                hello_with(tag::BLOCKS | critical, &value).is_some(),
                n == 6,
                "BLOCKS of {n} bytes"
            );
        }
        for option in [tag::SESSION, tag::JOIN] {
            for n in 0..=40u8 {
                let token: Vec<u8> = (100..100 + n).collect();
                let got = hello_with(option | critical, &token);
                assert_eq!(got.is_some(), n == 16, "option {option} of {n} bytes");
                if let Some(h) = got {
                    let (session, join) = (h.session.map(Vec::from), h.join.map(Vec::from));
                    let want = Some(token);
                    assert!(if option == tag::SESSION {
                        session == want
                    } else {
                        join == want
                    });
                }
            }
        }
    }

    // PLAN: the count against the blocks listed, the `more` byte.
    let held = |n: u32, digest: &[u8]| -> Vec<u8> {
        (0..n)
            .flat_map(|i| [&(i * 3).to_be_bytes()[..], digest].concat())
            .collect()
    };
    let sha = [&[1, 32][..], &[0xab; 32]].concat();
    for digest in [&[0, 0][..], &sha, &[1, 0], &[0, 32], &[2, 0], &[1, 31]] {
        let valid_digest = digest.len() == 2 + usize::from(digest[1]) && matches!(digest[..2], [0, 0] | [1, 32]);
        for more in 0..=3u8 {
            for listed in 0..=4 {
                for count in [0, 1, 2, 3, 4, 5, 10_923, 1 << 30, u32::MAX] {
                    let body = [&[more][..], &count.to_be_bytes(), &held(listed, digest)].concat();
                    let ok = more <= 1 && count == listed && (listed == 0 || valid_digest);
                    let got = decode_one(FrameType::Plan, &body);
                    assert_eq!(got.is_some(), ok, "PLAN more {more} count {count} listing {listed}");
                    if let Some(Message::Plan(p)) = got {
                        assert_eq!((p.more, p.held.len()), (more == 1, listed as usize));
                    }
                }
            }
        }
    }
    // As many held blocks as fit in a control frame, and one more.
    for (digest, fit) in [(&[0, 0][..], (65_536 - 5) / 6), (&sha, (65_536 - 5) / 38)] {
        for (count, ok) in [(fit, true), (fit + 1, false)] {
            let mut frame = FrameHeader::encode(FrameType::Plan, 0).to_vec();
            frame.push(0);
            frame.extend((count as u32).to_be_bytes());
            frame.extend(held(count as u32, digest));
            fix_frame_len(&mut frame);
            let (messages, end) = decode_frames(&frame);
            assert_eq!(messages.len() == 1, ok, "PLAN of {count} blocks: {end:?}");
        }
        let algorithm = if digest.len() == 2 {
            Algorithm::None
        } else {
            Algorithm::Sha256
        };
        assert!(
            Plan::capacity(algorithm) <= fit as usize,
            "a full PLAN of {algorithm:?} digests does not fit"
        );
    }

    // BLOCK: its length, its digest, nothing after it.
    for len in [0, 1, 2, 4096, MIB, 64 * MIB - 1, 64 * MIB, 64 * MIB + 1, u32::MAX] {
        for digest in [&[0, 0][..], &sha, &[1, 0], &[0, 32], &[2, 0], &[1, 32]] {
            for extra in [&[][..], &[0]] {
                let body = [
                    &7u32.to_be_bytes()[..],
                    &9u32.to_be_bytes(),
                    &len.to_be_bytes(),
                    digest,
                    extra,
                ]
                .concat();
                let valid_digest =
                    digest.len() == 2 + usize::from(digest[1]) && matches!(digest[..2], [0, 0] | [1, 32]);
                let ok = (1..=64 * MIB).contains(&len) && valid_digest && extra.is_empty();
                let got = decode_one(FrameType::Block, &body);
                assert_eq!(
                    got.is_some(),
                    ok,
                    "BLOCK of {len} bytes, digest {digest:?}, extra {extra:?}"
                );
                if let Some(Message::Block(b)) = got {
                    assert_eq!((b.entry, b.index, b.len), (7, 9, len));
                }
            }
        }
    }

    // ENTRY: every kind and flag byte, with a source identity of any
    // length after the target (the reference reader checks each case).
    let mut accepted_blocked = 0;
    for (kind, target) in [(1u8, &b""[..]), (2, b""), (3, b"t"), (4, b"a/b")] {
        for flags in 0..=u8::MAX {
            for source in [0, 1, 15, 16, 17, 40] {
                let mut body = vec![kind, flags];
                body.extend([0; 24]);
                body.extend(1u16.to_be_bytes());
                body.push(b'p');
                body.extend((target.len() as u16).to_be_bytes());
                body.extend(target);
                body.extend(vec![0x5a; source]);
                if let Some(Message::Entry(e)) = decode_one(FrameType::Entry, &body) {
                    accepted_blocked += usize::from(matches!(e.payload, Payload::Blocks { .. }));
                }
            }
        }
    }
    // Kind 1 with BLOCKED and SIZE_KNOWN, each with or without HAS_MODE,
    // HAS_MTIME and LINKED, and 16, 17 or 40 bytes after the target (the
    // bytes after the identity are the reserved extension area).
    assert_eq!(accepted_blocked, 8 * 3);
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
            for len in [0, 15, 16, 17].map(|extra| len.saturating_add(extra)) {
                let l = len.to_be_bytes();
                let hdr = [b, l[0], l[1], l[2], l[3]];
                assert_eq!(
                    FrameHeader::decode_in(&hdr, true).is_ok(),
                    header_allowed(b, len, true),
                    "sealed header {hdr:?}"
                );
            }
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
