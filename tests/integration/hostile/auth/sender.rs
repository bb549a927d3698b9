//! The real sender, with the key, against fake receivers: one that cannot
//! prove it knows the key gets no entry, one that does not authenticate is
//! refused, and after a correct exchange a verdict or DONE that is not
//! sealed by the receiver is never taken for success.

use super::*;

/// [`sender_against`] with the key.
fn against_keyed_sender<T>(size: usize, play: impl FnOnce(&FakeReceiver, &[u8]) -> T) -> Finished {
    sender_against(&[], size, play)
}

/// Every frame the sender sends until it closes, read as they come
/// (unsealed).
fn rest_of(p: &mut Peer) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Some(f) = p.read_frame() {
        frames.push(f);
    }
    frames
}

/// `frames` is one unsealed ERROR with code 5 holding `needle`, and
/// nothing else (no ENTRY, no AUTH).
fn assert_only_auth_error(frames: &[(u8, Vec<u8>)], needle: &str) {
    let kinds: Vec<u8> = frames.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [ERROR], "the sender sent more than an ERROR: {frames:?}");
    let (code, text) = parse_error(&frames[0].1);
    assert_eq!(code, 5, "ERROR code; text {text:?}");
    assert!(text.contains(needle), "the ERROR text lacks {needle:?}: {text:?}");
}

/// After a correct exchange: the sealed ENTRY, raw payload and sealed
/// TRAILER of f.txt, then the sealed DONE, all checked against the source.
fn take_sealed_file(s: &mut Sealed, data: &[u8]) {
    let e = EntryBody::parse(&s.expect(ENTRY));
    assert_eq!(
        (e.kind, e.flags & SIZE_KNOWN, e.size),
        (KIND_FILE, SIZE_KNOWN, data.len() as u64)
    );
    assert_eq!(e.path, b"f.txt");
    assert!(
        s.p.read_exact_vec(data.len()) == data,
        "the payload differs from the file"
    );
    assert_eq!(
        s.expect(TRAILER),
        trailer(data.len() as u64, &sha256(data))[5..],
        "TRAILER"
    );
    assert!(s.expect(DONE).is_empty());
    assert_eq!(s.inn.seq, 3, "ENTRY, TRAILER and DONE are sealed, the payload is not");
}

#[test]
fn the_sender_succeeds_against_a_correctly_sealing_fake_receiver() {
    let out = against_keyed_sender(100_000, |fake, data| {
        let mut s = fake.accept_auth(KEY);
        take_sealed_file(&mut s, data);
        s.send(&verdict(COMMITTED, &sha256(data), ""));
        s.send(&frame(DONE, &[]));
        s
    });
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
}

#[test]
fn a_receiver_that_cannot_prove_the_key_gets_no_entry() {
    let wrong: [fn(&Keys) -> Vec<u8>; 3] = [
        // Reflecting the sender's own proof needs no key.
        |k| k.sender_proof.to_vec(),
        // The right proof, one bit off.
        |k| {
            let mut p = k.receiver_proof.to_vec();
            p[31] ^= 0x80;
            p
        },
        // Another value derived from the key and transcript.
        |k| k.to_sender.to_vec(),
    ];
    for proof in wrong {
        let mut sent = Vec::new();
        let out = against_keyed_sender(5000, |fake, _| {
            let mut s = fake.accept_auth_proving(KEY, proof);
            sent = rest_of(&mut s.p);
            s
        });
        assert_failed(
            &out,
            5,
            &["authentication failed: the receiver's proof is wrong", "f.txt"],
        );
        assert_only_auth_error(&sent, "the receiver's proof is wrong");
    }
}

#[test]
fn a_receiver_hello_without_auth_is_refused_without_a_proof() {
    let mut sent = Vec::new();
    let mut options = Vec::new();
    let out = against_keyed_sender(5000, |fake, _| {
        let mut h = fake.accept_hello();
        options = h.options.clone();
        h.p.send(&hello(ROLE_RECEIVER, SHA256));
        sent = rest_of(&mut h.p);
        h.p
    });
    auth_nonce(&options);
    assert_failed(&out, 5, &["the receiver runs with --no-auth", "ZCP_KEY"]);
    assert_only_auth_error(&sent, "--no-auth");
}

/// A correct exchange and file, then `answer` in place of the receiver's
/// sealed VERDICT (given the keys and the file's bytes): the sender must
/// fail with exit 5 holding every needle.
fn assert_forged_reply_refused(answer: impl FnOnce(&Keys, &[u8]) -> Vec<u8>, needles: &[&str]) {
    let out = against_keyed_sender(20_000, |fake, data| {
        let mut s = fake.accept_auth(KEY);
        take_sealed_file(&mut s, data);
        let forged = answer(&s.keys, data);
        s.p.send_lossy(&forged);
        s
    });
    assert_failed(&out, 5, needles);
}

#[test]
fn an_unsealed_committed_verdict_is_not_success() {
    assert_forged_reply_refused(
        |_, data| [verdict(COMMITTED, &sha256(data), ""), frame(DONE, &[])].concat(),
        &["sending f.txt to 127.0.0.1:", "Verdict frame #0 failed authentication"],
    );
}

#[test]
fn a_committed_verdict_sealed_with_the_senders_direction_key_is_not_success() {
    assert_forged_reply_refused(
        |k, data| {
            let v = seal_at(&k.to_receiver, 0, &verdict(COMMITTED, &sha256(data), ""));
            [v, seal_at(&k.to_receiver, 1, &frame(DONE, &[]))].concat()
        },
        &["sending f.txt to 127.0.0.1:", "Verdict frame #0 failed authentication"],
    );
}

#[test]
fn a_forged_done_after_the_verdicts_fails_the_session() {
    // Every verdict is genuine; the end of the session is not.
    assert_forged_reply_refused(
        |k, data| {
            let v = seal_at(&k.to_sender, 0, &verdict(COMMITTED, &sha256(data), ""));
            let mut done = seal_at(&k.to_sender, 1, &frame(DONE, &[]));
            done[5] ^= 1;
            [v, done].concat()
        },
        &["127.0.0.1:", "Done frame #1 failed authentication"],
    );
}

#[test]
fn a_forged_done_in_place_of_the_verdict_fails_the_session() {
    assert_forged_reply_refused(
        |k, _| seal_at(&k.to_receiver, 0, &frame(DONE, &[])),
        &["sending f.txt to 127.0.0.1:", "Done frame #0 failed authentication"],
    );
}

#[test]
fn an_unsealed_error_injected_mid_payload_is_not_believed() {
    // 64 MiB: more than loopback buffers hold, so the sender is still
    // sending when the forged ERROR arrives, and the fake stops reading.
    let out = against_keyed_sender(64 << 20, |fake, data| {
        let mut s = fake.accept_auth(KEY);
        let e = EntryBody::parse(&s.expect(ENTRY));
        assert_eq!(e.size, data.len() as u64);
        s.p.read_exact_vec(1 << 20);
        s.p.send(&error(1, "disk on fire: stop sending now"));
        s
    });
    assert_failed(
        &out,
        5,
        &["sending f.txt to 127.0.0.1:", "Error frame #0 failed authentication"],
    );
    assert!(!out.stderr.contains("disk on fire"), "{}", out.stderr);
}
