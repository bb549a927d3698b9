//! End-to-end verification: the checksum algorithms (SHA-256, the default;
//! BLAKE3, several times faster per core; none), their digests, and the
//! two hashing workers that run beside a transfer on their own thread.
//!
//! * [`FileHasher`] hashes a file range that the transfer has already moved
//!   (sendfile'd from it, or spliced into it): the data loop reports each
//!   new frontier with [`FileHasher::advance`] and the worker `pread`s up to
//!   it from the page cache. Nothing is added to the data path itself.
//! * [`PipeHasher`] drains a pipe that the data loop `tee`s (or, on the
//!   read/write path, writes) the stream into; used where there is no file
//!   to re-read: stdin on the sender, stdout on the receiver.
//!
//! With [`Algorithm::None`] both workers are inert and produce
//! [`Digest::None`].

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::sys::{self, IoBuf, Pipe, signals};

/// Bytes hashed per pread: 1 024 preads per GiB, a third of each end's
/// syscalls. At 256 KiB (which stays in L2 while the hash runs over it) the
/// preads alone were 4 096 per GiB, for no CPU saved that could be measured.
pub(crate) const HASH_CHUNK: usize = 1 << 20;

/// How payload bytes are verified end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// SHA-256, computed on both ends and compared before commit.
    Sha256,
    /// BLAKE3: the same guarantee, several times faster per core.
    Blake3,
    /// No verification (trusted links only); summaries say "unverified".
    None,
}

impl Algorithm {
    /// The algorithm's number on the wire (docs/PROTOCOL.md).
    pub fn wire_id(self) -> u8 {
        match self {
            Algorithm::None => 0,
            Algorithm::Sha256 => 1,
            Algorithm::Blake3 => 2,
        }
    }

    pub fn from_wire_id(id: u8) -> Option<Algorithm> {
        match id {
            0 => Some(Algorithm::None),
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Blake3),
            _ => None,
        }
    }

    /// Length of this algorithm's digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::None => 0,
            Algorithm::Sha256 | Algorithm::Blake3 => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::None => "none",
            Algorithm::Sha256 => "sha256",
            Algorithm::Blake3 => "blake3",
        }
    }
}

/// A finished digest, tagged with its algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    None,
    Sha256([u8; 32]),
    Blake3([u8; 32]),
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Digest::None => Algorithm::None,
            Digest::Sha256(_) => Algorithm::Sha256,
            Digest::Blake3(_) => Algorithm::Blake3,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Digest::None => &[],
            Digest::Sha256(d) | Digest::Blake3(d) => d,
        }
    }

    /// Rebuilds a digest from its wire form; `None` if the length does not
    /// match the algorithm.
    pub fn from_parts(algorithm: Algorithm, bytes: &[u8]) -> Option<Digest> {
        match algorithm {
            Algorithm::None => bytes.is_empty().then_some(Digest::None),
            Algorithm::Sha256 => Some(Digest::Sha256(bytes.try_into().ok()?)),
            Algorithm::Blake3 => Some(Digest::Blake3(bytes.try_into().ok()?)),
        }
    }

    /// Lower-case hex, as printed by sha256sum.
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.as_bytes().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// The running state of one hash computation.
pub(crate) enum State {
    None,
    Sha256(Box<Sha256>),
    Blake3(Box<blake3::Hasher>),
}

impl State {
    pub(crate) fn new(algorithm: Algorithm) -> State {
        match algorithm {
            Algorithm::None => State::None,
            Algorithm::Sha256 => State::Sha256(Box::new(Sha256::new())),
            Algorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            State::None => {}
            State::Sha256(h) => h.update(bytes),
            State::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    pub(crate) fn finish(self) -> Digest {
        match self {
            State::None => Digest::None,
            State::Sha256(h) => Digest::Sha256(h.finalize().into()),
            State::Blake3(h) => Digest::Blake3(*h.finalize().as_bytes()),
        }
    }
}

/// Hashes a byte slice in one go (small files, tests).
pub fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
    let mut s = State::new(algorithm);
    s.update(bytes);
    s.finish()
}

/// The result of a hashing worker: the digest and how many bytes it covered.
pub struct Hashed {
    pub digest: Digest,
    pub bytes: u64,
}

fn interrupted_error() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "interrupted")
}

fn join_worker(handle: JoinHandle<io::Result<Hashed>>) -> io::Result<Hashed> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
}

/// Hashes `file` from a start offset up to a frontier that the data loop
/// advances.
pub struct FileHasher {
    frontier: Option<Sender<u64>>,
    cancel: Arc<AtomicBool>,
    worker: Option<JoinHandle<io::Result<Hashed>>>,
    /// Disconnects when the worker ends, so waiting for it can time out.
    ended: Option<mpsc::Receiver<()>>,
}

impl FileHasher {
    /// Starts a worker hashing `file` from offset `start` (its own
    /// descriptor, read with pread, so the data loop's file position is
    /// untouched). Frontiers are absolute offsets.
    pub fn spawn(file: File, algorithm: Algorithm, start: u64) -> io::Result<FileHasher> {
        let cancel = Arc::new(AtomicBool::new(false));
        if algorithm == Algorithm::None {
            return Ok(FileHasher {
                frontier: None,
                cancel,
                worker: None,
                ended: None,
            });
        }
        let (tx, rx) = mpsc::channel();
        let (alive, ended) = mpsc::channel::<()>();
        let stop = Arc::clone(&cancel);
        let worker = signals::spawn_worker("zcp-hash", move || {
            let _alive = alive;
            hash_file_behind(file, algorithm, start, &rx, &stop)
        })?;
        Ok(FileHasher {
            frontier: Some(tx),
            cancel,
            worker: Some(worker),
            ended: Some(ended),
        })
    }

    /// Tells the worker that bytes `[start, end)` are final and may be hashed.
    pub fn advance(&self, end: u64) {
        if let Some(tx) = &self.frontier {
            let _ = tx.send(end);
        }
    }

    /// Like [`finish`](Self::finish), calling `idle` whenever `every`
    /// passes while the worker is still behind (the sender keeps the
    /// receiver informed while its hash catches up).
    pub fn finish_calling(
        mut self,
        every: Option<Duration>,
        mut idle: impl FnMut() -> io::Result<()>,
    ) -> io::Result<Hashed> {
        self.frontier = None;
        if let (Some(every), Some(ended)) = (every, &self.ended) {
            while let Err(mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(every) {
                idle()?;
            }
        }
        self.finish()
    }

    /// Waits for the worker to hash everything up to the last frontier.
    pub fn finish(mut self) -> io::Result<Hashed> {
        self.frontier = None;
        match self.worker.take() {
            Some(w) => join_worker(w),
            None => Ok(Hashed {
                digest: Digest::None,
                bytes: 0,
            }),
        }
    }
}

impl Drop for FileHasher {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.frontier = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn hash_file_behind(
    file: File,
    algorithm: Algorithm,
    start: u64,
    frontier: &Receiver<u64>,
    cancel: &AtomicBool,
) -> io::Result<Hashed> {
    let mut state = State::new(algorithm);
    let mut buf = IoBuf::new(HASH_CHUNK);
    let mut hashed: u64 = start;
    let mut end: u64 = start;
    let mut open = true;
    loop {
        // Take the newest frontier without waiting, or wait if caught up.
        loop {
            let next = if hashed < end || !open {
                frontier.try_recv().ok()
            } else {
                match frontier.recv() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        open = false;
                        None
                    }
                }
            };
            match next {
                Some(v) => end = end.max(v),
                None => break,
            }
        }
        if hashed >= end {
            if open {
                continue;
            }
            return Ok(Hashed {
                digest: state.finish(),
                bytes: hashed - start,
            });
        }
        if cancel.load(Ordering::Relaxed) || signals::interrupted() {
            return Err(interrupted_error());
        }
        let want = usize::try_from(end - hashed).unwrap_or(HASH_CHUNK).min(HASH_CHUNK);
        let n = match file.read_at(&mut buf[..want], hashed) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ended at byte {hashed} while hashing it"),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        state.update(&buf[..n]);
        hashed += n as u64;
    }
}

/// Hashes everything written into a pipe until its write end is closed.
pub struct PipeHasher {
    input: Option<File>,
    worker: Option<JoinHandle<io::Result<Hashed>>>,
}

impl PipeHasher {
    /// Creates the pipe (grown to `pipe_size`) and starts the worker.
    /// Returns an inert hasher for [`Algorithm::None`].
    pub fn spawn(algorithm: Algorithm, pipe_size: usize) -> io::Result<PipeHasher> {
        if algorithm == Algorithm::None {
            return Ok(PipeHasher {
                input: None,
                worker: None,
            });
        }
        let Pipe { read, write, .. } = Pipe::new(pipe_size)?;
        let worker = signals::spawn_worker("zcp-hash", move || hash_pipe(read, algorithm))?;
        Ok(PipeHasher {
            input: Some(write),
            worker: Some(worker),
        })
    }

    /// The pipe's write end: whatever goes in here is hashed, in order.
    /// `None` when not verifying.
    pub fn input(&self) -> Option<&File> {
        self.input.as_ref()
    }

    /// Closes the pipe and waits for the digest of all bytes written.
    pub fn finish(mut self) -> io::Result<Hashed> {
        self.input = None;
        match self.worker.take() {
            Some(w) => join_worker(w),
            None => Ok(Hashed {
                digest: Digest::None,
                bytes: 0,
            }),
        }
    }
}

impl Drop for PipeHasher {
    fn drop(&mut self) {
        // Closing the write end ends the worker's read loop.
        self.input = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn hash_pipe(mut pipe: File, algorithm: Algorithm) -> io::Result<Hashed> {
    let mut state = State::new(algorithm);
    let mut buf = IoBuf::new(HASH_CHUNK);
    let mut hashed: u64 = 0;
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => {
                return Ok(Hashed {
                    digest: state.finish(),
                    bytes: hashed,
                });
            }
            Ok(n) => {
                state.update(&buf[..n]);
                hashed += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `bytes` into a hashing pipe (read/write paths and bytes
/// that arrived in the control buffer).
pub fn feed(input: &File, bytes: &[u8]) -> io::Result<()> {
    use std::os::fd::AsFd;
    let mut done = 0;
    while done < bytes.len() {
        match sys::write_fd(input.as_fd(), &bytes[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !signals::interrupted() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn sha256_of_abc_matches_the_standard_vector() {
        assert_eq!(digest_of(Algorithm::Sha256, b"abc").hex(), ABC_SHA256);
    }

    #[test]
    fn blake3_of_abc_matches_the_standard_vector() {
        assert_eq!(
            digest_of(Algorithm::Blake3, b"abc").hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(Algorithm::from_wire_id(2), Some(Algorithm::Blake3));
    }

    #[test]
    fn file_hasher_follows_the_frontier() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let h = FileHasher::spawn(f.try_clone().unwrap(), Algorithm::Sha256, 0).unwrap();
        for end in [10, 300_000, 999_999, 1_000_003] {
            h.advance(end);
        }
        let out = h.finish().unwrap();
        assert_eq!(out.bytes, 1_000_003);
        assert_eq!(out.digest, digest_of(Algorithm::Sha256, &data));
    }

    #[test]
    fn pipe_hasher_hashes_what_is_fed() {
        let h = PipeHasher::spawn(Algorithm::Sha256, 1 << 16).unwrap();
        feed(h.input().unwrap(), b"a").unwrap();
        feed(h.input().unwrap(), b"bc").unwrap();
        let out = h.finish().unwrap();
        assert_eq!(out.bytes, 3);
        assert_eq!(out.digest.hex(), ABC_SHA256);
    }

    #[test]
    fn none_is_inert() {
        let h = PipeHasher::spawn(Algorithm::None, 1 << 16).unwrap();
        assert!(h.input().is_none());
        assert_eq!(h.finish().unwrap().digest, Digest::None);
        assert_eq!(Digest::from_parts(Algorithm::Sha256, &[0; 31]), None);
    }
}
