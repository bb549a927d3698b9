//! After a correct AUTH exchange every frame but DATA is sealed: a fake
//! sender that knows the key sends frames that are unsealed, altered,
//! sealed for the other direction, replayed, dropped or out of sequence,
//! and the real receiver ends the session with exit 5 before it acts on
//! them. A correct fake gets its files through, which shows the fake
//! seals as the receiver expects.

use super::*;

/// A keyed receiver into dst/ against a fake sender that authenticates
/// correctly and then runs `script`; returns the receiver's outcome and
/// the sealed connection, dropped only after the receiver exited.
fn sealed_session(env: &TestEnv, script: impl FnOnce(&mut Sealed)) -> Finished {
    let (out, _held) = run_against(env, auth_recv_cmd(env, &[], "dst"), |addr| {
        let mut s = Peer::auth_sender(addr, KEY);
        script(&mut s);
        s
    });
    out
}

/// As [`sealed_session`], where `script` ends with something the receiver
/// must refuse: its next frame must be an ERROR, sealed in its own
/// sequence, with code 5 holding every needle, and it must exit 5 with
/// one error line naming the peer and the same reason.
fn assert_tampering_refused(env: &TestEnv, needles: &[&str], script: impl FnOnce(&mut Sealed)) {
    let mut error = None;
    let out = sealed_session(env, |s| {
        script(s);
        error = Some(match s.read() {
            Some((ERROR, body)) => parse_error(&body),
            Some((VERDICT, body)) => panic!("answered with {:?} instead of ERROR", parse_verdict(&body)),
            other => panic!("answered with {other:?} instead of ERROR"),
        });
    });
    let (code, text) = error.unwrap();
    assert_eq!(code, 5, "ERROR code; text {text:?}");
    for needle in needles {
        assert!(text.contains(needle), "the ERROR text lacks {needle:?}: {text:?}");
    }
    assert_failed(&out, 5, &[&["receiving from 127.0.0.1:"], needles].concat());
}

/// `len` deterministic bytes, different for each `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 8) as u8)
        .collect()
}

/// ENTRY of a sized file with mode 0644.
fn file_entry(path: &[u8], data: &[u8]) -> Vec<u8> {
    entry(path, Some(data.len() as u64), Some(0o644))
}

/// Sends a sized file, sealed, with its true digest, and expects it
/// committed (the VERDICT opened with the receiver's key).
fn commit_sealed(s: &mut Sealed, path: &[u8], data: &[u8]) {
    s.send(&file_entry(path, data));
    s.send_raw(data);
    s.send(&trailer(data.len() as u64, &sha256(data)));
    let v = parse_verdict(&s.expect(VERDICT));
    assert_eq!((v.status, v.digest, v.text.as_str()), (COMMITTED, sha256(data), ""));
}

#[test]
fn a_correctly_sealing_fake_sender_gets_its_files_through() {
    let env = TestEnv::new();
    let sized = pattern(200_000, 11);
    let streamed = pattern(70_000, 12);
    let out = sealed_session(&env, |s| {
        s.send(&frame(PING, &[]));
        commit_sealed(s, b"sized.bin", &sized);
        // A stream: unsealed DATA frames, a sealed PING between them.
        s.send(&entry(b"streamed.bin", None, Some(0o600)));
        s.send(&frame(DATA, &streamed[..50_000]));
        s.send(&frame(PING, &[]));
        s.send(&frame(DATA, &streamed[50_000..]));
        s.send(&trailer(streamed.len() as u64, &sha256(&streamed)));
        let v = parse_verdict(&s.expect(VERDICT));
        assert_eq!((v.status, v.digest), (COMMITTED, sha256(&streamed)));
        s.send(&frame(DONE, &[]));
        assert!(s.expect(DONE).is_empty());
        assert_eq!((s.out.seq, s.inn.seq), (7, 3), "frames sealed each way");
        assert!(s.p.read_frame().is_none(), "the receiver closes after DONE");
    });
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    assert_dst(&env, &["sized.bin", "streamed.bin"]);
    assert_eq!(std::fs::read(env.dst("sized.bin")).unwrap(), sized);
    assert_eq!(std::fs::read(env.dst("streamed.bin")).unwrap(), streamed);
}

#[test]
fn an_unsealed_entry_after_auth_is_refused() {
    let env = TestEnv::new();
    let data = b"sent in the clear";
    assert_tampering_refused(&env, &["Entry frame #0 failed authentication"], |s| {
        let clear = [
            file_entry(b"clear.txt", data),
            data.to_vec(),
            trailer(data.len() as u64, &sha256(data)),
        ];
        s.p.send_lossy(&clear.concat());
    });
    assert_dst(&env, &[]);
}

#[test]
fn a_sealed_entry_with_one_bit_flipped_in_its_path_is_refused() {
    let env = TestEnv::new();
    let data = b"meant for file.txt";
    assert_tampering_refused(&env, &["Entry frame #0 failed authentication"], |s| {
        let mut sealed = s.out.seal(&file_entry(b"file.txt", data));
        let at = 5 + ENTRY_FIXED;
        assert_eq!(sealed[at], b'f');
        sealed[at] ^= 1; // "gile.txt": still a valid name
        let rest = s.out.seal(&trailer(data.len() as u64, &sha256(data)));
        s.p.send_lossy(&[sealed, data.to_vec(), rest].concat());
    });
    assert_dst(&env, &[]);
}

#[test]
fn an_entry_sealed_with_the_receivers_direction_key_is_refused() {
    let env = TestEnv::new();
    let data = b"sealed the wrong way";
    assert_tampering_refused(&env, &["Entry frame #0 failed authentication"], |s| {
        let to_sender = s.keys.to_sender;
        let wrong_way = [
            seal_at(&to_sender, 0, &file_entry(b"wrong-way.txt", data)),
            data.to_vec(),
            seal_at(&to_sender, 1, &trailer(data.len() as u64, &sha256(data))),
        ];
        s.p.send_lossy(&wrong_way.concat());
    });
    assert_dst(&env, &[]);
}

#[test]
fn a_replayed_entry_is_refused_and_the_first_stays_as_committed() {
    let env = TestEnv::new();
    let data = b"committed once";
    assert_tampering_refused(&env, &["Entry frame #2 failed authentication"], |s| {
        let recorded = [
            s.out.seal(&file_entry(b"once.txt", data)),
            data.to_vec(),
            s.out.seal(&trailer(data.len() as u64, &sha256(data))),
        ]
        .concat();
        s.send_raw(&recorded);
        let v = parse_verdict(&s.expect(VERDICT));
        assert_eq!(v.status, COMMITTED, "{v:?}");
        s.p.send_lossy(&recorded);
    });
    assert_dst(&env, &["once.txt"]);
    assert_eq!(std::fs::read(env.dst("once.txt")).unwrap(), data);
}

#[test]
fn a_dropped_frame_breaks_the_next_one() {
    // A PING is sealed and lost; the entry after it carries number 1
    // where the receiver expects 0. Unsealed, it would be a valid file.
    let env = TestEnv::new();
    let data = b"after a lost ping";
    assert_tampering_refused(&env, &["Entry frame #0 failed authentication"], |s| {
        let _dropped = s.out.seal(&frame(PING, &[]));
        let after = [
            s.out.seal(&file_entry(b"after-drop.txt", data)),
            data.to_vec(),
            s.out.seal(&trailer(data.len() as u64, &sha256(data))),
        ];
        s.p.send_lossy(&after.concat());
    });
    assert_dst(&env, &[]);
}

#[test]
fn a_frame_carrying_a_later_sequence_number_is_refused() {
    // Correctly tagged, but as frame #5 when #2 is due (an attacker who
    // held back frames 2 to 4).
    let env = TestEnv::new();
    let data = b"from the future";
    assert_tampering_refused(&env, &["Entry frame #2 failed authentication"], |s| {
        commit_sealed(s, b"first.txt", b"first");
        let key = s.out.key;
        let later = [
            seal_at(&key, 5, &file_entry(b"later.txt", data)),
            data.to_vec(),
            seal_at(&key, 6, &trailer(data.len() as u64, &sha256(data))),
        ];
        s.p.send_lossy(&later.concat());
    });
    assert_dst(&env, &["first.txt"]);
    assert_eq!(std::fs::read(env.dst("first.txt")).unwrap(), b"first");
}

#[test]
fn a_sealed_trailer_with_the_digest_of_other_bytes_fails_integrity() {
    // The payload is never sealed: its digest, in the sealed TRAILER, is
    // what covers it. Bytes that do not match are not committed.
    let env = TestEnv::new();
    let data = b"the bytes that arrived";
    let out = sealed_session(&env, |s| {
        s.send(&file_entry(b"swapped.txt", data));
        s.send_raw(data);
        s.send(&trailer(data.len() as u64, &sha256(b"the bytes that were sent")));
        let v = parse_verdict(&s.expect(VERDICT));
        assert_eq!((v.status, v.digest), (MISMATCH, sha256(data)), "{:?}", v.text);
        s.send(&frame(DONE, &[]));
        assert!(s.expect(DONE).is_empty());
    });
    assert_failed(&out, 3, &["swapped.txt", "integrity"]);
    assert_dst(&env, &[]);
}

#[test]
fn a_sealed_done_before_any_entry_ends_an_empty_session() {
    // The receiver says why an empty session is a failure, in a sealed
    // ERROR instead of DONE (a sender stops reading at DONE).
    let env = TestEnv::new();
    let mut replies = Vec::new();
    let out = sealed_session(&env, |s| {
        s.send(&frame(DONE, &[]));
        while let Some(f) = s.read() {
            replies.push(f);
        }
    });
    let kinds: Vec<u8> = replies.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [ERROR], "{replies:?}");
    let (code, text) = parse_error(&replies[0].1);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("without sending a file"), "{text}");
    assert_failed(&out, 1, &["receiving from 127.0.0.1:", "without sending a file"]);
    assert_dst(&env, &[]);
}
