//! Block mode for the fake peer, written from docs/PROTOCOL.md ("Block
//! mode", "Further streams", "PLAN", "BLOCK", "ABORT") and not from
//! src/protocol/blocks.rs: the HELLO options BLOCKS, SESSION and JOIN,
//! the BLOCKED entry flag, PLAN and BLOCK frames, the ABORT reason byte
//! and the file digest over block digests. Every field can be set to a
//! lie.

use sha2::Digest;

use super::*;

pub const PLAN: u8 = 12;
pub const BLOCK: u8 = 13;

/// HELLO option BLOCKS: `u32` block size, `u8` flags, `u8` streams.
pub const TAG_BLOCKS: u16 = 7;
/// HELLO option SESSION (receiver only): the 16-byte join token.
pub const TAG_SESSION: u16 = 8;
/// HELLO option JOIN (sender only, sent critical): the token joined.
pub const TAG_JOIN: u16 = 0x8009;
/// BLOCKS flags.
pub const RESUME: u8 = 1;
pub const RETRY: u8 = 2;
/// Length of the SESSION and JOIN tokens.
pub const TOKEN_LEN: usize = 16;

/// ENTRY flag: the file travels in blocks; a source identity follows the
/// target.
pub const BLOCKED: u8 = 32;
pub const SOURCE_ID_LEN: usize = 16;

/// The ABORT reason byte: the source changed while it was sent.
pub const ABORT_CHANGED: u8 = 1;

/// The smallest block size a peer may propose (1 MiB), which keeps test
/// files small.
pub const MIN_BLOCK: u32 = 1 << 20;
/// The block size zcp proposes (8 MiB).
pub const ZCP_BLOCK: u32 = 8 << 20;

/// The BLOCKS option's value.
pub fn blocks_value(size: u32, flags: u8, streams: u8) -> Vec<u8> {
    let mut v = size.to_be_bytes().to_vec();
    v.push(flags);
    v.push(streams);
    v
}

/// A decoded BLOCKS option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlocksOption {
    pub size: u32,
    pub flags: u8,
    pub streams: u8,
}

/// The one BLOCKS option among `options`, if any; panics if there are
/// several or its value is not 6 bytes.
pub fn find_blocks(options: &[(u16, Vec<u8>)]) -> Option<BlocksOption> {
    let found: Vec<_> = options.iter().filter(|(tag, _)| tag & 0x7fff == TAG_BLOCKS).collect();
    assert!(found.len() <= 1, "BLOCKS more than once: {options:?}");
    let (_, v) = found.first()?;
    assert_eq!(v.len(), 6, "BLOCKS value: {v:?}");
    Some(BlocksOption {
        size: u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
        flags: v[4],
        streams: v[5],
    })
}

/// The value of the option `tag` (critical bit ignored), if present.
pub fn find_option(options: &[(u16, Vec<u8>)], tag: u16) -> Option<Vec<u8>> {
    options
        .iter()
        .rev()
        .find(|(t, _)| t & 0x7fff == tag & 0x7fff)
        .map(|(_, v)| v.clone())
}

/// The standard HELLO (SOFTWARE, ROLE, CHECKSUM sha256) plus `extra`.
pub fn hello_with(role: u8, extra: &[(u16, &[u8])]) -> Vec<u8> {
    let role = [role];
    let mut options: Vec<(u16, &[u8])> = vec![
        (TAG_SOFTWARE, &b"fake-peer"[..]),
        (TAG_ROLE, &role[..]),
        (TAG_CHECKSUM, &[SHA256][..]),
    ];
    options.extend_from_slice(extra);
    hello_options(&options)
}

/// The standard HELLO with BLOCKS.
pub fn hello_blocks(role: u8, size: u32, flags: u8, streams: u8) -> Vec<u8> {
    hello_with(role, &[(TAG_BLOCKS, &blocks_value(size, flags, streams))])
}

/// A BLOCKED file entry at `path`: SIZE_KNOWN, HAS_MODE 0644, BLOCKED and
/// the source identity `source`.
pub fn blocked_entry(path: &[u8], size: u64, source: [u8; SOURCE_ID_LEN]) -> EntryBody {
    let mut e = EntryBody::new(path);
    (e.flags, e.size, e.mode) = (SIZE_KNOWN | HAS_MODE | BLOCKED, size, 0o644);
    e.source = Some(source);
    e
}

/// One held block in a PLAN: index, algorithm id, digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub index: u32,
    pub algorithm: u8,
    pub digest: Vec<u8>,
}

impl Held {
    /// A block held with a SHA-256 digest.
    pub fn sha256(index: u32, digest: &[u8]) -> Held {
        Held {
            index,
            algorithm: SHA256,
            digest: digest.to_vec(),
        }
    }
}

/// PLAN: `more`, a count, then each held block, exactly as given.
pub fn plan(more: bool, held: &[Held]) -> Vec<u8> {
    let mut b = vec![u8::from(more)];
    b.extend_from_slice(&(held.len() as u32).to_be_bytes());
    for h in held {
        b.extend_from_slice(&h.index.to_be_bytes());
        b.push(h.algorithm);
        b.push(h.digest.len() as u8);
        b.extend_from_slice(&h.digest);
    }
    frame(PLAN, &b)
}

/// A decoded PLAN body.
#[derive(Debug, PartialEq, Eq)]
pub struct PlanBody {
    pub more: bool,
    pub held: Vec<Held>,
}

/// Decodes a PLAN body; panics if the layout is off (the count must match
/// the blocks that fill the body exactly).
pub fn parse_plan(body: &[u8]) -> PlanBody {
    assert!(body.len() >= 5, "PLAN body too short: {body:?}");
    assert!(body[0] <= 1, "PLAN more is {}", body[0]);
    let count = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
    let mut rest = &body[5..];
    let mut held = Vec::new();
    for _ in 0..count {
        assert!(rest.len() >= 6, "PLAN block cut short: {body:?}");
        let n = usize::from(rest[5]);
        assert!(rest.len() >= 6 + n, "PLAN digest cut short: {body:?}");
        held.push(Held {
            index: u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            algorithm: rest[4],
            digest: rest[6..6 + n].to_vec(),
        });
        rest = &rest[6 + n..];
    }
    assert!(rest.is_empty(), "bytes after the last block of a PLAN: {body:?}");
    PlanBody {
        more: body[0] == 1,
        held,
    }
}

/// A decoded (or to be encoded) BLOCK body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockBody {
    pub entry: u32,
    pub index: u32,
    pub len: u32,
    pub algorithm: u8,
    pub digest: Vec<u8>,
}

impl BlockBody {
    /// Block `index` of BLOCKED entry `entry`: `bytes` long, with their
    /// SHA-256.
    pub fn of(entry: u32, index: u32, bytes: &[u8]) -> BlockBody {
        BlockBody {
            entry,
            index,
            len: bytes.len() as u32,
            algorithm: SHA256,
            digest: sha256(bytes),
        }
    }

    pub fn frame(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(14 + self.digest.len());
        b.extend_from_slice(&self.entry.to_be_bytes());
        b.extend_from_slice(&self.index.to_be_bytes());
        b.extend_from_slice(&self.len.to_be_bytes());
        b.push(self.algorithm);
        b.push(self.digest.len() as u8);
        b.extend_from_slice(&self.digest);
        frame(BLOCK, &b)
    }

    /// Decodes a BLOCK body; panics if the layout is off.
    pub fn parse(body: &[u8]) -> BlockBody {
        assert!(body.len() >= 14, "BLOCK body too short: {body:?}");
        let n = usize::from(body[13]);
        assert_eq!(body.len(), 14 + n, "BLOCK digest does not fill the body: {body:?}");
        let be = |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        BlockBody {
            entry: be(0),
            index: be(4),
            len: be(8),
            algorithm: body[12],
            digest: body[14..].to_vec(),
        }
    }
}

/// ABORT with `why` and, if given, the reason byte.
pub fn abort(why: &str, reason: Option<u8>) -> Vec<u8> {
    let mut b = text(why);
    b.extend(reason);
    frame(ABORT, &b)
}

/// Block `index` of `data` in blocks of `block_size` bytes (the last one
/// holds the rest).
pub fn block_of(data: &[u8], block_size: u32, index: u32) -> &[u8] {
    let start = index as usize * block_size as usize;
    &data[start..(start + block_size as usize).min(data.len())]
}

/// How many blocks a file of `size` bytes has.
pub fn block_count(size: u64, block_size: u32) -> u32 {
    size.div_ceil(u64::from(block_size)) as u32
}

/// The SHA-256 of every block of `data`, in order.
pub fn block_digests(data: &[u8], block_size: u32) -> Vec<Vec<u8>> {
    (0..block_count(data.len() as u64, block_size))
        .map(|i| sha256(block_of(data, block_size, i)))
        .collect()
}

/// The file digest of a BLOCKED file: `SHA-256("zcp v4 blocks" ‖ u64(size)
/// ‖ u32(block size) ‖ d0 ‖ … ‖ d(n−1))`.
pub fn file_digest(size: u64, block_size: u32, digests: &[Vec<u8>]) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    h.update(b"zcp v4 blocks");
    h.update(size.to_be_bytes());
    h.update(block_size.to_be_bytes());
    for d in digests {
        h.update(d);
    }
    h.finalize().to_vec()
}

/// The fake's block-mode encodings, byte for byte against PROTOCOL.md's
/// tables, so a failure elsewhere is never a bug in the fake.
#[test]
fn the_fake_peer_encodes_block_mode_as_protocol_md_says() {
    assert_eq!((PLAN, BLOCK, BLOCKED), (12, 13, 0x20));
    assert_eq!((TAG_BLOCKS, TAG_SESSION, TAG_JOIN), (7, 8, 0x8009));
    assert_eq!(
        (MIN_BLOCK, ZCP_BLOCK, TOKEN_LEN, SOURCE_ID_LEN),
        (1 << 20, 8 << 20, 16, 16)
    );
    assert_eq!(blocks_value(8 << 20, RESUME | RETRY, 4), [0, 0x80, 0, 0, 3, 4]);
    let options = parse_hello(&hello_blocks(ROLE_RECEIVER, MIN_BLOCK, RESUME, 2)[5..]);
    assert_eq!(
        find_blocks(&options),
        Some(BlocksOption {
            size: 1 << 20,
            flags: 1,
            streams: 2
        })
    );
    assert_eq!(find_option(&options, TAG_ROLE), Some(vec![ROLE_RECEIVER]));

    let e = blocked_entry(b"f", 5, [7; 16]);
    let want: Vec<u8> = [
        &[1u8, SIZE_KNOWN | HAS_MODE | BLOCKED][..],
        &0o644u32.to_be_bytes(),
        &[0, 0, 0, 0, 0, 0, 0, 5],
        &[0; 12], // mtime, nanos
        &[0, 1],
        b"f",
        &[0, 0], // no target
        &[7; 16],
    ]
    .concat();
    assert_eq!(e.body(), want);
    assert_eq!(EntryBody::parse(&want), e);

    let d = vec![0xAB; 32];
    let p = plan(true, &[Held::sha256(2, &d)]);
    let want: Vec<u8> = [&[PLAN, 0, 0, 0, 43, 1, 0, 0, 0, 1, 0, 0, 0, 2, 1, 32][..], &d].concat();
    assert_eq!(p, want);
    assert_eq!(
        parse_plan(&p[5..]),
        PlanBody {
            more: true,
            held: vec![Held::sha256(2, &d)]
        }
    );
    assert_eq!(plan(false, &[]), [PLAN, 0, 0, 0, 5, 0, 0, 0, 0, 0]);

    let b = BlockBody {
        entry: 1,
        index: 2,
        len: 3,
        algorithm: SHA256,
        digest: d.clone(),
    };
    let want: Vec<u8> = [&[BLOCK, 0, 0, 0, 46, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 32][..], &d].concat();
    assert_eq!(b.frame(), want);
    assert_eq!(BlockBody::parse(&want[5..]), b);
    assert_eq!(
        BlockBody::of(1, 2, b"abc"),
        BlockBody {
            len: 3,
            digest: sha256(b"abc"),
            ..b.clone()
        }
    );
    assert!(b.frame().len() - 5 <= 78, "BLOCK body limit");

    assert_eq!(abort("x", None), [ABORT, 0, 0, 0, 3, 0, 1, b'x']);
    assert_eq!(abort("x", Some(ABORT_CHANGED)), [ABORT, 0, 0, 0, 4, 0, 1, b'x', 1]);

    let data: Vec<u8> = (0..(2 * MIN_BLOCK + 5)).map(|i| i as u8).collect();
    assert_eq!(block_count(data.len() as u64, MIN_BLOCK), 3);
    assert_eq!(block_of(&data, MIN_BLOCK, 2), &data[2 << 20..]);
    let ds = block_digests(&data, MIN_BLOCK);
    let mut all = b"zcp v4 blocks".to_vec();
    all.extend_from_slice(&[0, 0, 0, 0, 0, 0x20, 0, 5, 0, 0x10, 0, 0]);
    for d in &ds {
        all.extend_from_slice(d);
    }
    assert_eq!(file_digest(data.len() as u64, MIN_BLOCK, &ds), sha256(&all));
}
