//! Authentication for the fake peer, written from docs/PROTOCOL.md
//! ("HELLO", "AUTH", "Authentication") and not from src/protocol/auth.rs:
//! HMAC-SHA256 built by hand from SHA-256 (RFC 2104), the transcript hash,
//! both proofs, the two per-direction seal keys, and sealing and opening
//! frames by sequence number. Every piece can be misused on purpose: seal
//! with any key or sequence number, prove over any transcript.

use std::io::Read;

use sha2::Digest;

use super::*;

pub const AUTH: u8 = 10;
pub const PING: u8 = 11;
/// HELLO option AUTH, sent critical: method, then a 32-byte nonce.
pub const TAG_AUTH: u16 = 0x8005;
pub const TAG_IDLE_TIMEOUT: u16 = 6;
/// The only AUTH method: HMAC-SHA256 over a shared key.
pub const METHOD_HMAC_SHA256: u8 = 1;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
/// Length of the tag that ends every sealed frame.
pub const TAG_LEN: usize = 16;

/// SHA-256's block size, which HMAC pads the key to.
const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104): H((K' ^ opad) ‖ H((K' ^ ipad) ‖ m)), where K'
/// is the key hashed if longer than a block, then padded with zeros.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let mut inner = sha2::Sha256::new();
    inner.update(pad(0x36));
    inner.update(message);
    let mut outer = sha2::Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer.finalize());
    out
}

/// `T = SHA-256("zcp v3 transcript" ‖ sender preamble ‖ receiver preamble
/// ‖ u32(len(HS)) ‖ HS ‖ u32(len(HR)) ‖ HR)`, HS and HR the HELLO bodies
/// exactly as sent.
pub fn transcript(sender_preamble: &[u8], receiver_preamble: &[u8], hs: &[u8], hr: &[u8]) -> [u8; 32] {
    let mut all = b"zcp v3 transcript".to_vec();
    all.extend_from_slice(sender_preamble);
    all.extend_from_slice(receiver_preamble);
    all.extend_from_slice(&(hs.len() as u32).to_be_bytes());
    all.extend_from_slice(hs);
    all.extend_from_slice(&(hr.len() as u32).to_be_bytes());
    all.extend_from_slice(hr);
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2::Sha256::digest(&all));
    out
}

/// `HMAC(K, label ‖ T)`: a proof or a seal key.
fn derive(key: &[u8], label: &str, t: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(key, &[label.as_bytes(), &t[..]].concat())
}

/// What one key and one transcript lead to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    /// What the sender's AUTH carries.
    pub sender_proof: [u8; PROOF_LEN],
    /// What the receiver's AUTH carries.
    pub receiver_proof: [u8; PROOF_LEN],
    /// Seals frames from the sender.
    pub to_receiver: [u8; 32],
    /// Seals frames from the receiver.
    pub to_sender: [u8; 32],
}

impl Keys {
    pub fn derive(key: &[u8], t: &[u8; 32]) -> Keys {
        Keys {
            sender_proof: derive(key, "zcp v3 sender proof", t),
            receiver_proof: derive(key, "zcp v3 receiver proof", t),
            to_receiver: derive(key, "zcp v3 seal sender to receiver", t),
            to_sender: derive(key, "zcp v3 seal receiver to sender", t),
        }
    }
}

/// `HMAC(Kdir, u64(seq) ‖ u8(type) ‖ u32(len(body)) ‖ body)`, first 16
/// bytes.
pub fn tag(kdir: &[u8; 32], seq: u64, kind: u8, body: &[u8]) -> [u8; TAG_LEN] {
    let mut m = seq.to_be_bytes().to_vec();
    m.push(kind);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&hmac_sha256(kdir, &m)[..TAG_LEN]);
    out
}

/// `frame` (header and body, as the builders above make them) sealed
/// with `kdir` at sequence number `seq`: the tag appended and counted in
/// the length.
pub fn seal_at(kdir: &[u8; 32], seq: u64, frame: &[u8]) -> Vec<u8> {
    assert!(frame.len() >= 5, "not a frame: {frame:?}");
    let (kind, body) = (frame[0], &frame[5..]);
    assert_eq!(
        u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize,
        body.len(),
        "seal whole frames only"
    );
    assert_ne!(kind, DATA, "DATA frames are never sealed");
    super::frame(kind, &[body, &tag(kdir, seq, kind, body)[..]].concat())
}

/// The frames one end writes, sealed in order.
pub struct Sealer {
    pub key: [u8; 32],
    /// The sequence number of the next frame.
    pub seq: u64,
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer { key, seq: 0 }
    }

    /// Seals `frame` as the next one (DATA passes through unsealed).
    pub fn seal(&mut self, frame: &[u8]) -> Vec<u8> {
        if frame[0] == DATA {
            return frame.to_vec();
        }
        let sealed = seal_at(&self.key, self.seq, frame);
        self.seq += 1;
        sealed
    }
}

/// The frames one end reads, checked in order.
pub struct Opener {
    pub key: [u8; 32],
    /// The sequence number the next frame must carry.
    pub seq: u64,
}

impl Opener {
    pub fn new(key: [u8; 32]) -> Opener {
        Opener { key, seq: 0 }
    }

    /// The body of a sealed frame without its tag; panics (naming the
    /// frame) if the tag is wrong.
    pub fn open(&mut self, kind: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() >= TAG_LEN, "frame type {kind} too short for a tag: {body:?}");
        let (inner, got) = body.split_at(body.len() - TAG_LEN);
        assert_eq!(
            got,
            tag(&self.key, self.seq, kind, inner),
            "frame type {kind} #{} does not carry the tag it must",
            self.seq
        );
        self.seq += 1;
        inner.to_vec()
    }
}

/// A fresh nonce from the kernel.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut n).unwrap();
    n
}

/// The AUTH option's value: method, then nonce.
pub fn auth_value(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    [&[METHOD_HMAC_SHA256][..], nonce].concat()
}

/// The standard HELLO with an AUTH option carrying `nonce`.
pub fn hello_auth(role: u8, checksum: u8, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    hello_options(&[
        (TAG_SOFTWARE, &b"fake-peer"[..]),
        (TAG_ROLE, &[role][..]),
        (TAG_CHECKSUM, &[checksum][..]),
        (TAG_AUTH, &auth_value(nonce)),
    ])
}

/// The nonce in a HELLO's AUTH option; panics unless there is exactly one,
/// sent critical, with method 1 and 32 bytes.
pub fn auth_nonce(options: &[(u16, Vec<u8>)]) -> [u8; NONCE_LEN] {
    let auth: Vec<_> = options.iter().filter(|(tag, _)| tag & 0x7fff == 5).collect();
    assert_eq!(auth.len(), 1, "one AUTH option: {options:?}");
    assert_eq!(auth[0].0, TAG_AUTH, "AUTH is sent critical");
    let value = &auth[0].1;
    assert_eq!(value.len(), 1 + NONCE_LEN, "AUTH value: {value:?}");
    assert_eq!(value[0], METHOD_HMAC_SHA256, "AUTH method");
    value[1..].try_into().unwrap()
}

/// A fake peer past the AUTH exchange: what it writes is sealed with
/// `out`, what it reads is opened with `inn`.
pub struct Sealed {
    pub p: Peer,
    pub keys: Keys,
    pub out: Sealer,
    pub inn: Opener,
}

impl Sealed {
    /// For the sender's end of a session with `keys`.
    pub fn sender(p: Peer, keys: Keys) -> Sealed {
        let (out, inn) = (Sealer::new(keys.to_receiver), Opener::new(keys.to_sender));
        Sealed { p, keys, out, inn }
    }

    /// For the receiver's end of a session with `keys`.
    pub fn receiver(p: Peer, keys: Keys) -> Sealed {
        let (out, inn) = (Sealer::new(keys.to_sender), Opener::new(keys.to_receiver));
        Sealed { p, keys, out, inn }
    }

    /// Seals `frame` as the next one and sends it (DATA goes as it is).
    pub fn send(&mut self, frame: &[u8]) {
        let sealed = self.out.seal(frame);
        self.p.send(&sealed);
    }

    /// Raw bytes (a payload, or a frame sealed by hand).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.p.send(bytes);
    }

    /// The next frame, opened: (type, body without the tag). None at the
    /// end of the stream; panics on a wrong tag.
    pub fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let (kind, body) = self.p.read_frame()?;
        Some((kind, self.inn.open(kind, &body)))
    }

    /// The next frame, which must be of type `kind`.
    pub fn expect(&mut self, kind: u8) -> Vec<u8> {
        match self.read() {
            Some((k, body)) if k == kind => body,
            Some((ERROR, body)) => panic!("ERROR {:?} instead of frame type {kind}", parse_error(&body)),
            other => panic!("{other:?} instead of frame type {kind}"),
        }
    }
}

/// What the receiver said in the handshake, before AUTH.
pub struct ReceiverHello {
    pub preamble: Vec<u8>,
    /// Its HELLO body exactly as it arrived.
    pub body: Vec<u8>,
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Peer {
    /// Sender side: sends `opening` (preamble and HELLO frame) and reads
    /// the receiver's preamble and HELLO (which must say ROLE receiver,
    /// CHECKSUM sha256 and carry AUTH with a nonce).
    pub fn open_with(addr: &str, opening: &[u8]) -> (Peer, ReceiverHello) {
        let mut p = Peer::connect(addr);
        p.send(opening);
        let preamble = p.read_exact_vec(8);
        assert_eq!(preamble, our_preamble(), "the receiver's preamble");
        let body = p.expect_frame(HELLO);
        let options = parse_hello(&body);
        assert!(options.contains(&(TAG_ROLE, vec![ROLE_RECEIVER])), "ROLE: {options:?}");
        assert!(options.contains(&(TAG_CHECKSUM, vec![SHA256])), "CHECKSUM: {options:?}");
        auth_nonce(&options);
        let idle = options
            .iter()
            .find(|(tag, _)| *tag == TAG_IDLE_TIMEOUT)
            .expect("IDLE_TIMEOUT");
        assert!(idle.1.len() == 4 && idle.1 != [0; 4], "IDLE_TIMEOUT: {idle:?}");
        (
            p,
            ReceiverHello {
                preamble,
                body,
                options,
            },
        )
    }

    /// The whole sender handshake with `key` and `hello_frame` as our
    /// HELLO: proves itself, checks the receiver's proof and returns the
    /// sealed session.
    pub fn auth_sender_with(addr: &str, key: &[u8], hello_frame: &[u8]) -> Sealed {
        let opening = [our_preamble(), hello_frame.to_vec()].concat();
        let (mut p, theirs) = Peer::open_with(addr, &opening);
        let t = transcript(&our_preamble(), &theirs.preamble, &hello_frame[5..], &theirs.body);
        let keys = Keys::derive(key, &t);
        p.send(&frame(AUTH, &keys.sender_proof));
        let proof = p.expect_frame(AUTH);
        assert_eq!(proof, keys.receiver_proof, "the receiver's proof");
        Sealed::sender(p, keys)
    }

    /// [`Peer::auth_sender_with`] with the standard HELLO and a fresh nonce.
    pub fn auth_sender(addr: &str, key: &[u8]) -> Sealed {
        Peer::auth_sender_with(addr, key, &hello_auth(ROLE_SENDER, SHA256, &nonce()))
    }
}

/// The sender's half of the handshake as a fake receiver saw it.
pub struct SenderHello {
    pub p: Peer,
    pub body: Vec<u8>,
    pub options: Vec<(u16, Vec<u8>)>,
}

impl FakeReceiver {
    /// Accepts the sender, sends our preamble, and reads its preamble and
    /// HELLO (ROLE sender, CHECKSUM sha256); nothing more is said.
    pub fn accept_hello(&self) -> SenderHello {
        let mut p = self.accept_raw();
        p.send(&our_preamble());
        assert_eq!(p.read_exact_vec(8), our_preamble(), "sender preamble");
        let body = p.expect_frame(HELLO);
        let options = parse_hello(&body);
        assert!(options.contains(&(TAG_ROLE, vec![ROLE_SENDER])), "ROLE: {options:?}");
        assert!(options.contains(&(TAG_CHECKSUM, vec![SHA256])), "CHECKSUM: {options:?}");
        assert!(
            !options.iter().any(|(tag, _)| tag & 0x7fff == TAG_IDLE_TIMEOUT),
            "IDLE_TIMEOUT is the receiver's: {options:?}"
        );
        SenderHello { p, body, options }
    }

    /// The receiver's handshake with `key`: answers with an AUTH HELLO,
    /// checks the sender's proof and answers it with `proof` (given the
    /// right keys), then returns the sealed session.
    pub fn accept_auth_proving(&self, key: &[u8], proof: impl FnOnce(&Keys) -> Vec<u8>) -> Sealed {
        let SenderHello { mut p, body, options } = self.accept_hello();
        auth_nonce(&options);
        let ours = hello_auth(ROLE_RECEIVER, SHA256, &nonce());
        p.send(&ours);
        let keys = Keys::derive(key, &transcript(&our_preamble(), &our_preamble(), &body, &ours[5..]));
        assert_eq!(p.expect_frame(AUTH), keys.sender_proof, "the sender's proof");
        p.send(&frame(AUTH, &proof(&keys)));
        Sealed::receiver(p, keys)
    }

    /// [`FakeReceiver::accept_auth_proving`] with the right proof.
    pub fn accept_auth(&self, key: &[u8]) -> Sealed {
        self.accept_auth_proving(key, |k| k.receiver_proof.to_vec())
    }
}

/// RFC 4231's test cases 1, 2 and 6 (a key longer than a block), and the
/// fake's sealing against the layout PROTOCOL.md gives, so a failure in
/// the cases that use them is never a bug in the fake.
#[test]
fn the_fake_peers_hmac_matches_rfc_4231_and_seals_as_protocol_md_says() {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    assert_eq!(
        hmac_sha256(&[0x0b; 20], b"Hi There").to_vec(),
        hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
    assert_eq!(
        hmac_sha256(b"Jefe", b"what do ya want for nothing?").to_vec(),
        hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
    assert_eq!(
        hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First").to_vec(),
        hex("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    );

    let t = transcript(b"12345678", b"abcdefgh", b"hs", b"hr");
    let mut want = b"zcp v3 transcript12345678abcdefgh".to_vec();
    want.extend_from_slice(&[0, 0, 0, 2, b'h', b's', 0, 0, 0, 2, b'h', b'r']);
    assert_eq!(t.to_vec(), sha256(&want));
    let keys = Keys::derive(b"k", &t);
    assert_eq!(
        keys.sender_proof,
        hmac_sha256(b"k", &[&b"zcp v3 sender proof"[..], &t].concat())
    );
    let all = [keys.sender_proof, keys.receiver_proof, keys.to_receiver, keys.to_sender];
    for (i, a) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|b| a != b), "derived values must differ");
    }

    let done = seal_at(&keys.to_sender, 7, &frame(DONE, &[]));
    let mac = hmac_sha256(&keys.to_sender, &[0, 0, 0, 0, 0, 0, 0, 7, DONE, 0, 0, 0, 0]);
    assert_eq!(done, [&[DONE, 0, 0, 0, 16][..], &mac[..16]].concat());
    let mut opener = Opener {
        key: keys.to_sender,
        seq: 7,
    };
    assert!(opener.open(DONE, &done[5..]).is_empty());
    assert_eq!(opener.seq, 8);
    let mut sealer = Sealer::new(keys.to_receiver);
    let ping = sealer.seal(&frame(PING, &[]));
    assert_eq!((ping.len(), sealer.seq), (5 + 16, 1));
    assert_eq!(sealer.seal(&frame(DATA, b"raw")), frame(DATA, b"raw"));
    assert_eq!(sealer.seq, 1, "DATA takes no sequence number");
}
