//! Who proves first when the connection is turned around
//! (docs/PROTOCOL.md, "Authentication"): the end that connected. A fake
//! receiver connecting to a listening sender must prove first, and gets
//! ERROR code 5 and no proof for a wrong one; a real receiver that
//! connects to a fake listening sender proves first, and refuses a wrong
//! proof from it (and believes no integrity failure from a sender that
//! proved nothing).

use std::net::TcpListener;
use std::time::Duration;

use super::*;
use crate::peer::*;

/// The next frame, which must be of type `kind` (nothing is skipped).
fn next(p: &mut Peer, kind: u8) -> Vec<u8> {
    match p.read_frame() {
        Some((k, body)) if k == kind => body,
        Some((ERROR, body)) => panic!("ERROR {:?} instead of frame type {kind}", parse_error(&body)),
        other => panic!("{other:?} instead of frame type {kind}"),
    }
}

/// A fake receiver that connected to the sender at `addr`: the sender's
/// preamble and HELLO (with AUTH) read, our preamble and HELLO (with
/// AUTH) sent. Returns the peer and the keys of the session for `key`.
fn fake_receiver_opening(addr: &str, key: &[u8]) -> (Peer, Keys) {
    let mut p = Peer::connect(addr);
    let preamble = p.read_exact_vec(8);
    assert_eq!(preamble, our_preamble(), "the sender's preamble");
    let theirs = p.expect_frame(HELLO);
    let options = parse_hello(&theirs);
    assert!(options.contains(&(TAG_ROLE, vec![ROLE_SENDER])), "ROLE: {options:?}");
    auth_nonce(&options);
    let ours = hello_auth(ROLE_RECEIVER, SHA256, &nonce());
    p.send(&[our_preamble(), ours.clone()].concat());
    let keys = Keys::derive(key, &transcript(&preamble, &our_preamble(), &theirs, &ours[5..]));
    (p, keys)
}

/// A fake listening sender's end of the connection a receiver made.
fn accept(listener: &TcpListener) -> Peer {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    Peer { stream }
}

#[test]
fn a_listening_sender_proves_nothing_to_a_receiver_that_has_not_proved_first() {
    let env = TestEnv::new();
    let data = b"sent only to a receiver that proved it knows the key\n".to_vec();
    std::fs::write(env.src("f.txt"), &data).unwrap();
    let mut tx = listening_sender(&env, &["src/f.txt"]);
    let wrong: [fn(&Keys) -> Vec<u8>; 3] = [
        |_| vec![0; PROOF_LEN],
        // The sender's own proof, as a reflection would send it.
        |k| k.sender_proof.to_vec(),
        // The right proof, one bit off.
        |k| {
            let mut p = k.receiver_proof.to_vec();
            p[31] ^= 1;
            p
        },
    ];
    for (n, proof) in wrong.iter().enumerate() {
        let (mut p, keys) = fake_receiver_opening(&tx.addr, TEST_KEY.as_bytes());
        p.send(&frame(AUTH, &proof(&keys)));
        // The sender's only answer: ERROR 5, unsealed, then the end. Its
        // own proof never comes.
        let (code, text) = parse_error(&next(&mut p, ERROR));
        assert_eq!(code, 5, "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(p.read_frame().is_none(), "the sender said more after its ERROR");
        tx.run.await_stderr_count("; still listening", n + 1);
    }

    // The right proof is answered with the sender's, then the file, sealed.
    let (mut p, keys) = fake_receiver_opening(&tx.addr, TEST_KEY.as_bytes());
    p.send(&frame(AUTH, &keys.receiver_proof));
    assert_eq!(next(&mut p, AUTH), keys.sender_proof, "the sender's proof");
    let mut s = Sealed::receiver(p, keys);
    let e = EntryBody::parse(&s.expect(ENTRY));
    assert_eq!((&e.path[..], e.size), (&b"f.txt"[..], data.len() as u64));
    assert_eq!(s.p.read_exact_vec(data.len()), data);
    assert_eq!(s.expect(TRAILER), trailer(data.len() as u64, &sha256(&data))[5..]);
    assert_eq!(s.expect(DONE), b"");
    s.send(&verdict(COMMITTED, &sha256(&data), ""));
    s.send(&frame(DONE, &[]));
    let out = tx.finish();
    out.assert_code(0);
    assert_eq!(warnings(&out.stderr).len(), 3, "{}", out.stderr);
}

#[test]
fn a_receiver_that_connects_proves_first_and_refuses_a_wrong_proof() {
    let env = TestEnv::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let rx = Running::spawn(receiver_command(&env, &addr, &["dst"]), "zcp recv --connect");
    let mut p = accept(&listener);
    let ours = hello_auth(ROLE_SENDER, SHA256, &nonce());
    p.send(&[our_preamble(), ours.clone()].concat());
    let preamble = p.read_exact_vec(8);
    assert_eq!(preamble, our_preamble(), "the receiver's preamble");
    let theirs = next(&mut p, HELLO);
    let options = parse_hello(&theirs);
    assert!(options.contains(&(TAG_ROLE, vec![ROLE_RECEIVER])), "ROLE: {options:?}");
    auth_nonce(&options);
    let keys = Keys::derive(
        TEST_KEY.as_bytes(),
        &transcript(&our_preamble(), &preamble, &ours[5..], &theirs),
    );
    // The receiver's proof comes without ours.
    assert_eq!(next(&mut p, AUTH), keys.receiver_proof, "the receiver's proof");
    p.send(&frame(AUTH, &keys.receiver_proof));
    let (code, text) = parse_error(&next(&mut p, ERROR));
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("the sender's proof is wrong"), "{text}");
    let out = rx.finish();
    out.assert_code(5).assert_stderr(&format!(
        "zcp: error: receiving from {addr}: authentication failed: the sender's proof is wrong: it does not know this receiver's key"
    ));
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
}

#[test]
fn an_error_from_a_sender_that_proved_nothing_claims_no_integrity_failure() {
    // In place of its HELLO, so before any proof: code 3 would claim an
    // integrity failure, which only an authenticated sender may report.
    // A protocol error (8) keeps its code; no peer's ERROR is a network
    // failure (7) here: the connection did not break.
    for (code, exit) in [(3, 1), (5, 5), (1, 1), (8, 8), (7, 1)] {
        let env = TestEnv::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let rx = Running::spawn(receiver_command(&env, &addr, &["dst"]), "zcp recv --connect");
        let mut p = accept(&listener);
        p.send(&[our_preamble(), error(code, "made up")].concat());
        let out = rx.finish();
        out.assert_code(exit)
            .assert_stderr(&format!("zcp: error: receiving from {addr}: sender: made up"));
        assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
    }
}
