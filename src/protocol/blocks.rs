//! Block mode (version 4): the HELLO options that turn it on (BLOCKS,
//! SESSION, JOIN), and the PLAN and BLOCK frames. A file sent in block
//! mode travels as fixed-size blocks, each with its own digest, which can
//! arrive in any order, on any of the session's connections, and be kept
//! across sessions to resume an interrupted transfer.

use super::cursor::{Reader, put_digest, take_digest};
use super::{MAX_CONTROL_LEN, ProtocolError, bad};
use crate::checksum::{Algorithm, Digest};

/// Smallest block size a peer may propose.
pub const MIN_BLOCK_SIZE: u32 = 1 << 20;
/// Largest block size a peer may propose.
pub const MAX_BLOCK_SIZE: u32 = 64 << 20;
/// Most connections one session may use (the first one included).
pub const MAX_STREAMS: u8 = 16;
/// Most blocks one file may have in block mode (8 TiB in 8 MiB blocks):
/// bounds what a receiver keeps per block. Larger files go the version 3
/// way.
pub const MAX_BLOCKS: u64 = 1 << 20;
/// Length of the token that joins a connection to a session.
pub const TOKEN_LEN: usize = 16;
/// Length of the sender's opaque identity of a source file.
pub const SOURCE_ID_LEN: usize = 16;

/// The BLOCKS option: from the sender, what it proposes; from the
/// receiver, what it accepts (a receiver that leaves the option out sends
/// every file the version 3 way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    /// Bytes per block, a power of two in MIN..=MAX_BLOCK_SIZE. The
    /// receiver echoes the sender's.
    pub size: u32,
    /// Partial files are kept when a session breaks, so a later session
    /// can resume them.
    pub resume: bool,
    /// The sender reconnects after a dropped connection: a receiver
    /// serving one session may wait for it.
    pub retry: bool,
    /// Connections: how many the sender wants (1..=16), or how many the
    /// receiver allows (1..=what was asked).
    pub streams: u8,
}

mod flag {
    pub const RESUME: u8 = 1;
    pub const RETRY: u8 = 2;
    pub const ALL: u8 = RESUME | RETRY;
}

impl Blocks {
    pub fn encode(&self) -> [u8; 6] {
        let s = self.size.to_be_bytes();
        let flags = if self.resume { flag::RESUME } else { 0 } | if self.retry { flag::RETRY } else { 0 };
        [s[0], s[1], s[2], s[3], flags, self.streams]
    }

    pub fn decode(value: &[u8]) -> Result<Blocks, ProtocolError> {
        let Ok([a, b, c, d, flags, streams]) = <[u8; 6]>::try_from(value) else {
            return bad("HELLO option BLOCKS must be 6 bytes");
        };
        let size = u32::from_be_bytes([a, b, c, d]);
        if !size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) {
            return bad(format!(
                "block size {size} is not a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
            ));
        }
        if flags & !flag::ALL != 0 {
            return bad(format!("unknown BLOCKS flags {flags:#04x}"));
        }
        if !(1..=MAX_STREAMS).contains(&streams) {
            return bad(format!("{streams} streams: must be 1 to {MAX_STREAMS}"));
        }
        Ok(Blocks {
            size,
            resume: flags & flag::RESUME != 0,
            retry: flags & flag::RETRY != 0,
            streams,
        })
    }

    /// How many blocks a file of `size` bytes has.
    pub fn count(&self, size: u64) -> u64 {
        block_count(size, self.size)
    }

    /// The offset and length of block `index` of a file of `size` bytes
    /// (None: there is no such block).
    pub fn span(&self, size: u64, index: u32) -> Option<(u64, u64)> {
        let start = u64::from(index) * u64::from(self.size);
        (start < size).then(|| (start, (size - start).min(u64::from(self.size))))
    }
}

/// How many blocks of `block_size` bytes a file of `size` bytes has.
pub fn block_count(size: u64, block_size: u32) -> u64 {
    size.div_ceil(u64::from(block_size))
}

/// A 16-byte value taken from a HELLO option.
pub fn token(value: &[u8], what: &str) -> Result<[u8; TOKEN_LEN], ProtocolError> {
    <[u8; TOKEN_LEN]>::try_from(value).or_else(|_| bad(format!("HELLO option {what} must be {TOKEN_LEN} bytes")))
}

/// The receiver's answer to a BLOCKED entry: the blocks it already holds,
/// verified, from an earlier session, with their digests. One PLAN frame
/// or several (`more`), then blocks flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Another PLAN frame for the same entry follows.
    pub more: bool,
    /// Held blocks: index and digest (Digest::None with checksum none).
    pub held: Vec<(u32, Digest)>,
}

impl Plan {
    /// How many held blocks fit in one frame.
    pub fn capacity(algorithm: Algorithm) -> usize {
        (MAX_CONTROL_LEN as usize - 8) / (4 + 2 + algorithm.digest_len())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.more));
        out.extend_from_slice(&u32::try_from(self.held.len()).unwrap_or(0).to_be_bytes());
        for (index, digest) in &self.held {
            out.extend_from_slice(&index.to_be_bytes());
            put_digest(digest, out);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Plan, ProtocolError> {
        let more = match r.u8("plan flag")? {
            0 => false,
            1 => true,
            other => return bad(format!("PLAN flag {other} is not 0 or 1")),
        };
        let count = r.u32("plan count")?;
        // Each held block takes at least 6 bytes: a count larger than the
        // rest of the frame could hold is a lie, caught before allocating.
        if u64::from(count) * 6 > r.remaining() as u64 {
            return bad(format!("PLAN lists {count} blocks in {} bytes", r.remaining()));
        }
        let mut held = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let index = r.u32("block index")?;
            held.push((index, take_digest(r)?));
        }
        r.finish("PLAN")?;
        Ok(Plan { more, held })
    }
}

/// Announces one block; exactly `len` raw bytes follow the frame and land
/// at `index` × block size in the file of BLOCKED entry `entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Which BLOCKED entry of the session (0 for the first).
    pub entry: u32,
    pub index: u32,
    pub len: u32,
    /// The sender's digest of the block's bytes.
    pub digest: Digest,
}

impl Block {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.entry.to_be_bytes());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        put_digest(&self.digest, out);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Block, ProtocolError> {
        let entry = r.u32("block entry")?;
        let index = r.u32("block index")?;
        let len = r.u32("block length")?;
        if len == 0 || len > MAX_BLOCK_SIZE {
            return bad(format!("block of {len} bytes"));
        }
        let digest = take_digest(r)?;
        r.finish("BLOCK")?;
        Ok(Block {
            entry,
            index,
            len,
            digest,
        })
    }
}
