//! A zcp peer written by hand from docs/PROTOCOL.md (not from
//! src/protocol.rs), so the tests also check the specification against the
//! code. It can play either side and lie in any field.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

mod auth;
mod blocks;
pub use auth::*;
pub use blocks::*;

pub const MAGIC: [u8; 4] = [0x89, b'Z', b'C', b'P'];
pub const HELLO: u8 = 1;
pub const ENTRY: u8 = 2;
pub const DATA: u8 = 3;
pub const TRAILER: u8 = 4;
pub const ABORT: u8 = 5;
pub const VERDICT: u8 = 6;
pub const DONE: u8 = 7;
pub const ERROR: u8 = 8;
pub const HOLE: u8 = 9;

/// The only protocol version PROTOCOL.md (version 4) speaks.
pub const VERSION: u16 = 4;
/// An older version, which a version-4 peer must refuse.
pub const OLD_VERSION: u16 = 3;

pub const ROLE_SENDER: u8 = 0;
pub const ROLE_RECEIVER: u8 = 1;
pub const SHA256: u8 = 1;

pub const TAG_SOFTWARE: u16 = 1;
pub const TAG_ROLE: u16 = 0x8002;
pub const TAG_CHECKSUM: u16 = 0x8003;
/// Empty value. From the sender: do not replace; from the receiver: the
/// rule applies to this session (only then may it send status 3).
pub const TAG_NO_CLOBBER: u16 = 0x8004;

/// ERROR codes (the exit statuses they stand for) other than 3 and 5.
pub const FAILURE: u8 = 1;
pub const PROTOCOL: u8 = 8;

/// VERDICT statuses.
pub const COMMITTED: u8 = 0;
pub const MISMATCH: u8 = 1;
pub const FAILED: u8 = 2;
pub const SKIPPED: u8 = 3;

pub fn preamble(max: u16, min: u16) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&max.to_be_bytes());
    v.extend_from_slice(&min.to_be_bytes());
    v
}

pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Our preamble: exactly the current version.
pub fn our_preamble() -> Vec<u8> {
    preamble(VERSION, VERSION)
}

/// HELLO with exactly these (tag, value) options, in this order.
pub fn hello_options(options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (tag, value) in options {
        b.extend_from_slice(&tag.to_be_bytes());
        b.extend_from_slice(&(value.len() as u16).to_be_bytes());
        b.extend_from_slice(value);
    }
    frame(HELLO, &b)
}

pub fn hello(role: u8, checksum: u8) -> Vec<u8> {
    hello_options(&[
        (TAG_SOFTWARE, &b"fake-peer"[..]),
        (TAG_ROLE, &[role][..]),
        (TAG_CHECKSUM, &[checksum][..]),
    ])
}

/// The (tag, value) options of a HELLO body; panics if the layout is off.
pub fn parse_hello(body: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut rest = body;
    let mut options = Vec::new();
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "HELLO option header cut short: {body:?}");
        let tag = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        assert!(rest.len() >= 4 + len, "HELLO option value cut short: {body:?}");
        options.push((tag, rest[4..4 + len].to_vec()));
        rest = &rest[4 + len..];
    }
    options
}

pub const SIZE_KNOWN: u8 = 1;
pub const HAS_MODE: u8 = 2;
pub const HAS_MTIME: u8 = 4;
pub const SPARSE: u8 = 8;
/// A file later hard-link entries may name.
pub const LINKED: u8 = 16;

pub const KIND_FILE: u8 = 1;
pub const KIND_DIR: u8 = 2;
pub const KIND_SYMLINK: u8 = 3;
pub const KIND_HARDLINK: u8 = 4;

/// Bytes before the path: kind, flags, mode, size, mtime, nanos, path length.
pub const ENTRY_FIXED: usize = 28;

/// Every field of an ENTRY body, so a test can set (or lie in) any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryBody {
    pub kind: u8,
    pub flags: u8,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub nanos: u32,
    pub path: Vec<u8>,
    /// Link text (kind 3) or an earlier file's path (kind 4); empty otherwise.
    pub target: Vec<u8>,
    /// The source identity after the target, sent whenever it is Some
    /// (a BLOCKED entry carries one; a test may lie either way).
    pub source: Option<[u8; SOURCE_ID_LEN]>,
    /// Bytes after the target ("reserved for extensions").
    pub extension: Vec<u8>,
}

impl EntryBody {
    /// A regular file at `path` with no optional field set.
    pub fn new(path: &[u8]) -> EntryBody {
        EntryBody {
            kind: KIND_FILE,
            flags: 0,
            mode: 0,
            size: 0,
            mtime: 0,
            nanos: 0,
            path: path.to_vec(),
            target: Vec::new(),
            source: None,
            extension: Vec::new(),
        }
    }

    /// A directory at `path`, no optional field set.
    pub fn dir(path: &[u8]) -> EntryBody {
        EntryBody {
            kind: KIND_DIR,
            ..EntryBody::new(path)
        }
    }

    /// A symbolic link at `path` whose text is `target`.
    pub fn symlink(path: &[u8], target: &[u8]) -> EntryBody {
        EntryBody {
            kind: KIND_SYMLINK,
            target: target.to_vec(),
            ..EntryBody::new(path)
        }
    }

    /// A hard link at `path` to the earlier file entry `target`.
    pub fn hardlink(path: &[u8], target: &[u8]) -> EntryBody {
        EntryBody {
            kind: KIND_HARDLINK,
            target: target.to_vec(),
            ..EntryBody::new(path)
        }
    }

    /// The body's bytes (without the frame header).
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![self.kind, self.flags];
        b.extend_from_slice(&self.mode.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.mtime.to_be_bytes());
        b.extend_from_slice(&self.nanos.to_be_bytes());
        b.extend_from_slice(&(self.path.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.path);
        b.extend_from_slice(&(self.target.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.target);
        if let Some(source) = &self.source {
            b.extend_from_slice(source);
        }
        b.extend_from_slice(&self.extension);
        b
    }

    pub fn frame(&self) -> Vec<u8> {
        frame(ENTRY, &self.body())
    }

    /// Decodes an ENTRY body (the source identity only with BLOCKED);
    /// panics if the layout is off.
    pub fn parse(body: &[u8]) -> EntryBody {
        assert!(body.len() >= ENTRY_FIXED, "ENTRY body too short: {body:?}");
        let be = |at: usize, n: usize| body[at..at + n].iter().fold(0u64, |v, b| v << 8 | u64::from(*b));
        let path_len = be(26, 2) as usize;
        let at = ENTRY_FIXED + path_len;
        assert!(body.len() >= at + 2, "ENTRY path cut short: {body:?}");
        let target_len = be(at, 2) as usize;
        assert!(body.len() >= at + 2 + target_len, "ENTRY target cut short: {body:?}");
        let mut rest = at + 2 + target_len;
        let source = (body[1] & BLOCKED != 0).then(|| {
            assert!(
                body.len() >= rest + SOURCE_ID_LEN,
                "ENTRY source identity cut short: {body:?}"
            );
            rest += SOURCE_ID_LEN;
            body[rest - SOURCE_ID_LEN..rest].try_into().unwrap()
        });
        EntryBody {
            kind: body[0],
            flags: body[1],
            mode: be(2, 4) as u32,
            size: be(6, 8),
            mtime: be(14, 8) as i64,
            nanos: be(22, 4) as u32,
            path: body[ENTRY_FIXED..at].to_vec(),
            target: body[at + 2..at + 2 + target_len].to_vec(),
            source,
            extension: body[rest..].to_vec(),
        }
    }
}

/// ENTRY for a regular file; `size` None means a stream.
pub fn entry(path: &[u8], size: Option<u64>, mode: Option<u32>) -> Vec<u8> {
    let mut e = EntryBody::new(path);
    if let Some(size) = size {
        e.flags |= SIZE_KNOWN;
        e.size = size;
    }
    if let Some(mode) = mode {
        e.flags |= HAS_MODE;
        e.mode = mode;
    }
    e.frame()
}

/// HOLE: a run of `len` zero bytes in a SPARSE entry.
pub fn hole(len: u64) -> Vec<u8> {
    frame(HOLE, &len.to_be_bytes())
}

pub fn trailer(bytes: u64, digest: &[u8]) -> Vec<u8> {
    trailer_with(bytes, if digest.is_empty() { 0 } else { SHA256 }, digest)
}

/// TRAILER naming any algorithm id, whatever the digest's length.
pub fn trailer_with(bytes: u64, algorithm: u8, digest: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_be_bytes().to_vec();
    b.push(algorithm);
    b.push(digest.len() as u8);
    b.extend_from_slice(digest);
    frame(TRAILER, &b)
}

pub fn text(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

pub fn verdict(status: u8, digest: &[u8], message: &str) -> Vec<u8> {
    let mut b = vec![status, if digest.is_empty() { 0 } else { SHA256 }, digest.len() as u8];
    b.extend_from_slice(digest);
    b.extend_from_slice(&text(message));
    frame(VERDICT, &b)
}

pub fn error(code: u8, message: &str) -> Vec<u8> {
    let mut b = vec![code];
    b.extend_from_slice(&text(message));
    frame(ERROR, &b)
}

/// A `text` field that must fill `b` exactly; panics if it does not.
fn parse_text(b: &[u8]) -> String {
    assert!(b.len() >= 2, "text cut short: {b:?}");
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    assert_eq!(b.len(), 2 + len, "text length does not fill the frame: {b:?}");
    String::from_utf8_lossy(&b[2..]).into_owned()
}

/// A decoded VERDICT body.
#[derive(Debug)]
pub struct VerdictBody {
    pub status: u8,
    pub algorithm: u8,
    pub digest: Vec<u8>,
    pub text: String,
}

/// Decodes a VERDICT body; panics if the layout is off.
pub fn parse_verdict(body: &[u8]) -> VerdictBody {
    assert!(body.len() >= 5, "VERDICT body too short: {body:?}");
    let n = usize::from(body[2]);
    assert!(body.len() >= 3 + n + 2, "VERDICT digest cut short: {body:?}");
    VerdictBody {
        status: body[0],
        algorithm: body[1],
        digest: body[3..3 + n].to_vec(),
        text: parse_text(&body[3 + n..]),
    }
}

/// Decodes an ERROR body into (code, text); panics if the layout is off.
pub fn parse_error(body: &[u8]) -> (u8, String) {
    assert!(!body.is_empty(), "empty ERROR body");
    (body[0], parse_text(&body[1..]))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// One end of a connection with frame-level helpers.
pub struct Peer {
    pub stream: TcpStream,
}

impl Peer {
    pub fn connect(addr: &str) -> Peer {
        let stream = TcpStream::connect(addr).expect("fake sender connects");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Peer { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("fake peer writes");
    }

    /// Like send, but a receiver that already hung up is not an error.
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn read_exact_vec(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.stream.read_exact(&mut v).expect("fake peer reads");
        v
    }

    /// Reads a frame: (type, body). None at end of stream.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 5];
        if self.stream.read_exact(&mut h).is_err() {
            return None;
        }
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        Some((h[0], self.read_exact_vec(len)))
    }

    /// Reads frames until one of type `kind` arrives.
    pub fn expect_frame(&mut self, kind: u8) -> Vec<u8> {
        loop {
            match self.read_frame() {
                Some((k, body)) if k == kind => return body,
                Some(_) => {}
                None => panic!("connection closed before frame type {kind}"),
            }
        }
    }

    /// Sender side: preamble and HELLO out, the receiver's preamble and
    /// HELLO in.
    pub fn sender_handshake(addr: &str, checksum: u8) -> Peer {
        let mut p = Peer::connect(addr);
        p.send(&our_preamble());
        p.send(&hello(ROLE_SENDER, checksum));
        let pre = p.read_exact_vec(8);
        assert_eq!(&pre[..4], &MAGIC, "receiver preamble");
        let body = p.expect_frame(HELLO);
        assert!(!body.is_empty());
        p
    }

    /// Reads the rest of the stream until the peer closes.
    pub fn drain(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.stream.read_to_end(&mut v);
        v
    }
}

/// A fake receiver listening on loopback.
pub struct FakeReceiver {
    pub listener: TcpListener,
}

impl FakeReceiver {
    pub fn bind() -> FakeReceiver {
        FakeReceiver {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    pub fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// Accepts the sender; nothing is said yet.
    pub fn accept_raw(&self) -> Peer {
        let (stream, _) = self.listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Peer { stream }
    }

    /// Accepts the sender and completes the handshake, checking that the
    /// sender's preamble speaks exactly the current version and its HELLO says ROLE
    /// sender and CHECKSUM sha256.
    /// Without `-n`, the sender's HELLO must not carry NO_CLOBBER.
    pub fn accept(&self) -> Peer {
        let (p, options) = self.accept_with_options();
        assert!(
            !options.iter().any(|(tag, _)| *tag == TAG_NO_CLOBBER),
            "NO_CLOBBER unasked: {options:?}"
        );
        p
    }

    /// As [`FakeReceiver::accept`], returning the sender's HELLO options.
    pub fn accept_with_options(&self) -> (Peer, Vec<(u16, Vec<u8>)>) {
        self.accept_answering(&hello(ROLE_RECEIVER, SHA256))
    }

    /// As [`FakeReceiver::accept_with_options`], answering with `reply`
    /// (a HELLO frame) instead of the standard one.
    pub fn accept_answering(&self, reply: &[u8]) -> (Peer, Vec<(u16, Vec<u8>)>) {
        let mut p = self.accept_raw();
        p.send(&our_preamble());
        assert_eq!(p.read_exact_vec(8), our_preamble(), "sender preamble");
        let options = parse_hello(&p.expect_frame(HELLO));
        assert!(options.contains(&(TAG_ROLE, vec![ROLE_SENDER])), "ROLE: {options:?}");
        assert!(options.contains(&(TAG_CHECKSUM, vec![SHA256])), "CHECKSUM: {options:?}");
        p.send(reply);
        (p, options)
    }
}
