//! A zcp peer written by hand from docs/PROTOCOL.md (not from
//! src/protocol.rs), so the tests also check the specification against the
//! code. It can play either side and lie in any field.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

pub const MAGIC: [u8; 4] = [0x89, b'Z', b'C', b'P'];
pub const HELLO: u8 = 1;
pub const ENTRY: u8 = 2;
pub const DATA: u8 = 3;
pub const TRAILER: u8 = 4;
pub const ABORT: u8 = 5;
pub const VERDICT: u8 = 6;
pub const DONE: u8 = 7;
pub const ERROR: u8 = 8;

pub const ROLE_SENDER: u8 = 0;
pub const ROLE_RECEIVER: u8 = 1;
pub const SHA256: u8 = 1;

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

pub fn hello(role: u8, checksum: u8) -> Vec<u8> {
    let mut b = Vec::new();
    for (tag, value) in [
        (1u16, &b"fake-peer"[..]),
        (0x8002, &[role][..]),
        (0x8003, &[checksum][..]),
    ] {
        b.extend_from_slice(&tag.to_be_bytes());
        b.extend_from_slice(&(value.len() as u16).to_be_bytes());
        b.extend_from_slice(value);
    }
    frame(HELLO, &b)
}

/// ENTRY for a regular file; `size` None means a stream.
pub fn entry(name: &[u8], size: Option<u64>, mode: Option<u32>) -> Vec<u8> {
    let mut flags = 0u8;
    if size.is_some() {
        flags |= 1;
    }
    if mode.is_some() {
        flags |= 2;
    }
    let mut b = vec![1, flags];
    b.extend_from_slice(&mode.unwrap_or(0).to_be_bytes());
    b.extend_from_slice(&size.unwrap_or(0).to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
    b.extend_from_slice(name);
    frame(ENTRY, &b)
}

pub fn trailer(bytes: u64, digest: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_be_bytes().to_vec();
    b.push(if digest.is_empty() { 0 } else { SHA256 });
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
        p.send(&preamble(1, 1));
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

    /// Accepts the sender and completes the handshake.
    pub fn accept(&self) -> Peer {
        let (stream, _) = self.listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut p = Peer { stream };
        p.send(&preamble(1, 1));
        let pre = p.read_exact_vec(8);
        assert_eq!(&pre[..4], &MAGIC, "sender preamble");
        p.expect_frame(HELLO);
        p.send(&hello(ROLE_RECEIVER, SHA256));
        p
    }
}
