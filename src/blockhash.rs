//! Digests in block mode: the digest of one block of a file, read back
//! from the page cache with pread (the bytes themselves moved by
//! sendfile/splice), and the file digest, which is SHA-256 over the digests
//! of all blocks in order. Blocks can be hashed on several cores and in any
//! order, and a resumed file needs no re-reading of the blocks it kept.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::checksum::{Algorithm, Digest, HASH_CHUNK, State};
use crate::sys::{IoBuf, signals};

/// The label that opens the file digest (docs/PROTOCOL.md, "Block mode").
const FILE_DIGEST_LABEL: &[u8] = b"zcp v4 blocks";

/// Hashes `len` bytes of `file` from `start`, with `buf` as scratch.
/// A file that ends early is an UnexpectedEof error.
pub fn hash_range(file: &File, start: u64, len: u64, algorithm: Algorithm, buf: &mut IoBuf) -> io::Result<Digest> {
    if algorithm == Algorithm::None {
        return Ok(Digest::None);
    }
    if buf.len() < HASH_CHUNK {
        *buf = IoBuf::new(HASH_CHUNK);
    }
    let mut state = State::new(algorithm);
    let (mut at, end) = (start, start + len);
    while at < end {
        if signals::interrupted() {
            return Err(crate::error::interrupted_io());
        }
        let want = usize::try_from(end - at).unwrap_or(HASH_CHUNK).min(HASH_CHUNK);
        match file.read_at(&mut buf[..want], at) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at byte {at} while hashing it"),
                ));
            }
            Ok(n) => {
                state.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(state.finish())
}

/// The file digest of a file of `size` bytes in blocks of `block_size`,
/// from the digests of all its blocks in order.
pub fn file_digest<'a>(
    algorithm: Algorithm,
    size: u64,
    block_size: u32,
    blocks: impl IntoIterator<Item = &'a Digest>,
) -> Digest {
    if algorithm == Algorithm::None {
        return Digest::None;
    }
    let mut state = State::new(algorithm);
    state.update(FILE_DIGEST_LABEL);
    state.update(&size.to_be_bytes());
    state.update(&block_size.to_be_bytes());
    for d in blocks {
        state.update(d.as_bytes());
    }
    state.finish()
}

/// How many threads hash blocks: every core, and at least two so that
/// hashing overlaps the transfer even on one.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checksum::digest_of;
    use std::io::Write;

    #[test]
    fn a_range_hashes_like_its_bytes() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..700_001u32).map(|i| (i % 253) as u8).collect();
        f.write_all(&data).unwrap();
        let mut buf = IoBuf::new(0);
        let d = hash_range(&f, 1000, 600_000, Algorithm::Sha256, &mut buf).unwrap();
        assert_eq!(d, digest_of(Algorithm::Sha256, &data[1000..601_000]));
        let short = hash_range(&f, 700_000, 10, Algorithm::Sha256, &mut buf).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_file_digest_covers_size_block_size_and_order() {
        let a = digest_of(Algorithm::Sha256, b"a");
        let b = digest_of(Algorithm::Sha256, b"b");
        let one = file_digest(Algorithm::Sha256, 10, 1 << 20, [&a, &b]);
        assert_ne!(one, file_digest(Algorithm::Sha256, 10, 1 << 20, [&b, &a]));
        assert_ne!(one, file_digest(Algorithm::Sha256, 11, 1 << 20, [&a, &b]));
        assert_ne!(one, file_digest(Algorithm::Sha256, 10, 2 << 20, [&a, &b]));
        assert_eq!(file_digest(Algorithm::None, 10, 1 << 20, [&a]), Digest::None);
    }
}
