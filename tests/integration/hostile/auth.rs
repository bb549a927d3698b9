//! Authentication on (the default: every zcp here has ZCP_KEY=TEST_KEY),
//! against the real binary: fake senders that do not know the key or
//! break the AUTH exchange (here), that tamper with sealed frames after it
//! (sealed.rs), and fake receivers that lie to a real sender
//! (sender.rs). The fake computes every proof and tag itself, from
//! PROTOCOL.md (peer/auth.rs).
//!
//! A receiver that refuses during the handshake has revealed nothing
//! (no AUTH of its own) and written nothing: it warns and keeps
//! listening, and a real sender with the key then succeeds. A failure
//! after the handshake ends a default receiver with its exit status.

use std::time::Duration;

use super::*;

mod sealed;
mod sender;

/// The key every zcp process in the tests holds (ZCP_KEY).
pub(super) const KEY: &[u8] = TEST_KEY.as_bytes();
/// A key that is not it.
const OTHER_KEY: &[u8] = b"not-the-test-key-0123456789abcdef";

/// `zcp recv -l 127.0.0.1:0 ARGS... DEST` with authentication on.
pub(super) fn auth_recv_cmd(env: &TestEnv, args: &[&str], dest: &str) -> Command {
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "-l", "127.0.0.1:0"])
        .args(args)
        .arg(dest);
    cmd
}

/// A connection a keyed receiver turned away during the handshake.
struct Turned {
    out: Finished,
    /// Every frame it sent after its HELLO, in order, until it closed.
    after_hello: Vec<(u8, Vec<u8>)>,
}

/// Starts a keyed receiver into dst/, lets `script` connect and misbehave
/// (it returns the connection once the receiver's HELLO has been read
/// from it), reads everything the receiver sends until it closes, then has
/// a real sender with the key send `alive`, which must succeed.
fn turned_away(env: &TestEnv, script: impl FnOnce(&str) -> Peer) -> Turned {
    let (out, after_hello) = run_against(env, auth_recv_cmd(env, &[], "dst"), |addr| {
        let mut p = script(addr);
        let mut frames = Vec::new();
        while let Some(f) = p.read_frame() {
            frames.push(f);
        }
        drop(p);
        env.still_serving(&[], addr);
        frames
    });
    Turned { out, after_hello }
}

/// The receiver answered with nothing but one unsealed ERROR with `code`
/// holding every needle (in particular no AUTH: nothing derived from the
/// key), warned once, naming the peer, with the same reason, kept
/// listening, and dst/ holds only what the real sender sent next.
fn assert_turned(env: &TestEnv, t: &Turned, code: u8, needles: &[&str]) {
    let kinds: Vec<u8> = t.after_hello.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [ERROR],
        "the receiver sent more than an ERROR: {:?}",
        t.after_hello
    );
    let (got, text) = parse_error(&t.after_hello[0].1);
    assert_eq!(got, code, "ERROR code; text {text:?}");
    assert_warned_once(&t.out, &[&["connection from 127.0.0.1:"], needles].concat());
    for needle in needles {
        assert!(text.contains(needle), "the ERROR text lacks {needle:?}: {text:?}");
    }
    assert_dst(env, &["alive"]);
    assert_eq!(std::fs::read(env.dst("alive")).unwrap(), b"alive\n");
}

/// The receiver served the real sender (exit 0, no error line) after
/// printing exactly one `...; still listening` warning holding every
/// needle.
fn assert_warned_once(out: &Finished, needles: &[&str]) {
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("zcp: warning:")).collect();
    assert_eq!(warnings.len(), 1, "want exactly one warning:\n{}", out.stderr);
    assert!(warnings[0].ends_with("; still listening"), "{}", warnings[0]);
    for needle in needles {
        assert!(
            warnings[0].contains(needle),
            "the warning lacks {needle:?}: {}",
            warnings[0]
        );
    }
    assert_no_escape_bytes(&out.stderr);
}

/// Preamble and a HELLO frame, as a fake sender opens.
fn opening(hello_frame: &[u8]) -> Vec<u8> {
    [our_preamble(), hello_frame.to_vec()].concat()
}

/// Sends `hello_frame` and reads the receiver's preamble and HELLO; then
/// the keys of that transcript, computed with `key`.
fn open_and_derive(addr: &str, hello_frame: &[u8], key: &[u8]) -> (Peer, Keys) {
    let (p, theirs) = Peer::open_with(addr, &opening(hello_frame));
    let t = transcript(&our_preamble(), &theirs.preamble, &hello_frame[5..], &theirs.body);
    (p, Keys::derive(key, &t))
}

/// A HELLO whose AUTH option carries `value` (method and nonce).
fn hello_with_auth_value(value: &[u8]) -> Vec<u8> {
    hello_options(&[
        (TAG_SOFTWARE, &b"fake-peer"[..]),
        (TAG_ROLE, &[ROLE_SENDER][..]),
        (TAG_CHECKSUM, &[SHA256][..]),
        (TAG_AUTH, value),
    ])
}

/// The honest twin of a refused case: `prove` (the same steps with the
/// right values, up to sending AUTH) is accepted by a fresh receiver,
/// which answers with its own proof and takes a file. So the refusal was
/// the receiver's doing, never a mistake in the fake.
fn honest_twin_is_accepted(prove: impl FnOnce(&str) -> (Peer, Keys)) {
    let env = TestEnv::new();
    let (out, _held) = run_against(&env, auth_recv_cmd(&env, &[], "dst"), |addr| {
        let (mut p, keys) = prove(addr);
        assert_eq!(p.expect_frame(AUTH), keys.receiver_proof, "the receiver's proof");
        let mut s = Sealed::sender(p, keys);
        s.send(&entry(b"twin", Some(4), Some(0o644)));
        s.send_raw(b"twin");
        s.send(&trailer(4, &sha256(b"twin")));
        assert_eq!(parse_verdict(&s.expect(VERDICT)).status, COMMITTED);
        s.send(&frame(DONE, &[]));
        s.expect(DONE);
        s
    });
    out.assert_code(0);
    assert_dst(&env, &["twin"]);
}

#[test]
fn a_sender_with_another_key_is_refused_before_the_receiver_proves_anything() {
    let prove = |addr: &str, key: &[u8]| {
        let (mut p, keys) = open_and_derive(addr, &hello_auth(ROLE_SENDER, SHA256, &nonce()), key);
        // The receiver waits for our proof: it sends nothing of its own.
        p.stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut byte = [0u8; 1];
        let early = std::io::Read::read(&mut p.stream, &mut byte);
        assert!(
            early
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "the receiver sent something before the sender's proof: {early:?} {byte:?}"
        );
        p.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        p.send(&frame(AUTH, &keys.sender_proof));
        (p, keys)
    };
    let env = TestEnv::new();
    let t = turned_away(&env, |addr| prove(addr, OTHER_KEY).0);
    assert_turned(
        &env,
        &t,
        5,
        &["authentication failed: the sender's key is not this receiver's"],
    );
    honest_twin_is_accepted(|addr| prove(addr, KEY));
}

#[test]
fn an_entry_in_place_of_auth_is_refused_unread() {
    let env = TestEnv::new();
    let t = turned_away(&env, |addr| {
        let (mut p, _) = Peer::open_with(addr, &opening(&hello_auth(ROLE_SENDER, SHA256, &nonce())));
        p.send(&sized_file(b"sneaked", b"no proof, just data"));
        p
    });
    // PROTOCOL.md: anything else in AUTH's place is a protocol error.
    assert_turned(&env, &t, PROTOCOL, &["protocol error: expected AUTH, got Entry"]);
}

#[test]
fn a_sender_hello_without_auth_is_refused_as_authentication_required() {
    let env = TestEnv::new();
    let t = turned_away(&env, |addr| {
        let mut p = Peer::connect(addr);
        p.send(&opening(&hello(ROLE_SENDER, SHA256)));
        assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
        p
    });
    assert_turned(&env, &t, 5, &["authentication required", "ZCP_KEY", "--no-auth"]);
}

#[test]
fn an_auth_option_with_another_method_or_a_short_nonce_is_refused() {
    let cases: [(Vec<u8>, &str); 4] = [
        ([&[2u8][..], &nonce()].concat(), "unknown authentication method 2"),
        ([&[0u8][..], &nonce()].concat(), "unknown authentication method 0"),
        ([&[METHOD_HMAC_SHA256][..], &nonce()[..31]].concat(), "32-byte nonce"),
        (vec![], "empty HELLO option AUTH"),
    ];
    for (value, needle) in cases {
        let env = TestEnv::new();
        let t = turned_away(&env, |addr| {
            let mut p = Peer::connect(addr);
            p.send(&opening(&hello_with_auth_value(&value)));
            assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
            p
        });
        assert_turned(&env, &t, PROTOCOL, &["protocol error", needle]);
    }
}

#[test]
fn auth_frames_of_31_or_33_bytes_are_refused() {
    for (len, needle) in [(31, "too short for proof"), (33, "exceeds the limit")] {
        let env = TestEnv::new();
        let t = turned_away(&env, |addr| {
            let (mut p, keys) = open_and_derive(addr, &hello_auth(ROLE_SENDER, SHA256, &nonce()), KEY);
            // The right proof, one byte short or with one more.
            let mut body = keys.sender_proof.to_vec();
            body.resize(len, 0);
            p.send(&frame(AUTH, &body));
            p
        });
        assert_turned(&env, &t, PROTOCOL, &["protocol error", needle]);
    }
}

#[test]
fn a_hello_altered_on_the_way_fails_the_proof() {
    // The sender asked for NO_CLOBBER and proved over that HELLO; someone
    // on the path stripped the option. The receiver reads a valid HELLO,
    // but the transcripts differ.
    let n = nonce();
    let with_no_clobber = hello_options(&[
        (TAG_SOFTWARE, &b"fake-peer"[..]),
        (TAG_ROLE, &[ROLE_SENDER][..]),
        (TAG_CHECKSUM, &[SHA256][..]),
        (TAG_NO_CLOBBER, &[][..]),
        (TAG_AUTH, &auth_value(&n)),
    ]);
    let stripped = hello_auth(ROLE_SENDER, SHA256, &n);
    // Sends `arrived`, proves over `proved`.
    let prove = |addr: &str, arrived: &[u8], proved: &[u8]| {
        let (mut p, theirs) = Peer::open_with(addr, &opening(arrived));
        let t = transcript(&our_preamble(), &theirs.preamble, &proved[5..], &theirs.body);
        let keys = Keys::derive(KEY, &t);
        p.send(&frame(AUTH, &keys.sender_proof));
        (p, keys)
    };
    let env = TestEnv::new();
    let t = turned_away(&env, |addr| prove(addr, &stripped, &with_no_clobber).0);
    assert_turned(&env, &t, 5, &["authentication failed"]);
    honest_twin_is_accepted(|addr| prove(addr, &with_no_clobber, &with_no_clobber));
}

#[test]
fn a_proof_from_another_connection_fails_because_each_receiver_nonce_is_fresh() {
    let sender_hello = hello_auth(ROLE_SENDER, SHA256, &nonce());
    // Opens a connection and computes the right proof for it.
    let record = |addr: &str| {
        let (p, theirs) = Peer::open_with(addr, &opening(&sender_hello));
        let t = transcript(&our_preamble(), &theirs.preamble, &sender_hello[5..], &theirs.body);
        (p, Keys::derive(KEY, &t), theirs)
    };
    let env = TestEnv::new();
    let (out, first_nonce_and_rest) = run_against(&env, auth_recv_cmd(&env, &[], "dst"), |addr| {
        // The first connection: its proof is never sent; the connection
        // goes away.
        let (p, keys, theirs) = record(addr);
        let recorded = keys.sender_proof;
        drop(p);
        // The second, with the very same HELLO, sends that proof.
        let (mut p, again) = Peer::open_with(addr, &opening(&sender_hello));
        p.send(&frame(AUTH, &recorded));
        let mut frames = Vec::new();
        while let Some(f) = p.read_frame() {
            frames.push(f);
        }
        drop(p);
        env.still_serving(&[], addr);
        ((auth_nonce(&theirs.options), auth_nonce(&again.options)), frames)
    });
    let ((first, second), frames) = first_nonce_and_rest;
    assert_ne!(first, second, "the receiver's nonce was reused");
    assert!(first != [0; NONCE_LEN] && second != [0; NONCE_LEN]);
    let kinds: Vec<u8> = frames.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [ERROR], "{frames:?}");
    let (code, text) = parse_error(&frames[0].1);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("zcp: warning:")).collect();
    assert_eq!(warnings.len(), 2, "{}", out.stderr);
    assert!(
        warnings.iter().all(|w| w.ends_with("; still listening")),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("authentication failed"), "{}", warnings[1]);
    assert_dst(&env, &["alive"]);
    // On the connection it was made for, the same proof is accepted.
    honest_twin_is_accepted(|addr| {
        let (mut p, keys, _) = record(addr);
        p.send(&frame(AUTH, &keys.sender_proof));
        (p, keys)
    });
}
