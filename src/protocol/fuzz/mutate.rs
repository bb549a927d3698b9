//! Ways to damage an encoded frame.

use super::super::cursor::put_option;
use super::super::*;
use super::Rng;
use super::generators::{HELLO_OPTIONS, U16S};
use super::spec::{entry_field, spec_limits};

pub(super) type Mutation = fn(&mut Rng, &mut Vec<u8>, &[u8]);

/// Ways to damage an encoded frame; `other` is another valid frame to
/// splice with. A new mutation is one entry here.
pub(super) const MUTATIONS: &[Mutation] = &[
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
        // An ENTRY's payload flag set or cleared; BLOCKED usually with
        // the source identity added or removed to match.
        if f.first() == Some(&(FrameType::Entry as u8)) && f.len() > FRAME_HEADER_LEN + 1 {
            let bit = r.pick(&[1, 8, 16, 32, 32]);
            f[FRAME_HEADER_LEN + 1] ^= bit;
            let blocked = f[FRAME_HEADER_LEN + 1] & 32 != 0;
            if let Some((_, target)) = entry_field(f, FRAME_HEADER_LEN, 1).filter(|_| bit == 32 && !r.one_in(4)) {
                let at = target.end;
                if blocked {
                    f.splice(at..at, r.fill(16));
                } else {
                    f.drain(at..f.len().min(at + 16));
                }
                fix_frame_len(f);
            }
        }
    },
    |r, f, _| {
        // A PLAN's count, one off or far too large for the frame.
        if f.first() == Some(&(FrameType::Plan as u8)) && f.len() >= FRAME_HEADER_LEN + 5 {
            let at = FRAME_HEADER_LEN + 1;
            let count = u32::from_be_bytes(f[at..at + 4].try_into().unwrap());
            let wrong = r.pick(&[count.wrapping_add(1), count.wrapping_sub(1), 10_923, 1 << 30, u32::MAX]);
            f[at..at + 4].copy_from_slice(&wrong.to_be_bytes());
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

pub(super) fn mutate(r: &mut Rng, frame: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..r.range(1, 3) {
        if frame.is_empty() {
            break;
        }
        r.pick(MUTATIONS)(r, frame, other);
    }
}

pub(super) fn fix_frame_len(f: &mut [u8]) {
    if f.len() >= FRAME_HEADER_LEN {
        let len = (f.len() - FRAME_HEADER_LEN) as u32;
        f[1..5].copy_from_slice(&len.to_be_bytes());
    }
}

const PATH_TOKENS: &[&[u8]] = &[b"/", b"//", b".", b"..", b"/./", b"/../", b"\0", b"x/", b"/x", b"y"];

/// Rewrites the path or target of an ENTRY frame by inserting a token,
/// replacing the whole field with one, or deleting a byte; with `fix`,
/// the field's length and the frame's are updated to match.
pub(super) fn edit_entry_field(r: &mut Rng, f: &mut Vec<u8>, field: usize, fix: bool) -> Option<Vec<u8>> {
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
