//! Block mode (docs/PROTOCOL.md, "Block mode" and "Further streams")
//! against the real binary. Here: fake senders whose blocks land, in any
//! order, verify or fail their digests, or are aborted, and what the
//! receiver keeps for a resume; refused.rs: blocks, entries and joins the
//! receiver must refuse; sealed.rs: BLOCK frames in an authenticated
//! session; sender.rs: fake receivers whose BLOCKS, PLAN or VERDICT lie
//! to the real sender. Every case checks the exit code, the one error line
//! naming the peer, and what is left in dst/: nothing under the final name
//! unless the file verified, and a partial (`.NAME.zcp-partial`) only
//! where resume keeps one.
//!
//! The fake senders use 1 MiB blocks (the smallest allowed) so the files
//! stay small; the real sender proposes 8 MiB blocks.

use std::time::{Duration, Instant};

use super::*;

mod refused;
mod sealed;
mod sender;

/// The fake sender's block size.
const BS: u32 = MIN_BLOCK;
/// The fake sender's file: four blocks, the last 5 bytes long.
const SIZE: usize = 3 * BS as usize + 5;
/// Its name, and the partial the receiver keeps it in.
const NAME: &str = "big";
const PARTIAL: &str = ".big.zcp-partial";
/// The fake sender's opaque identity of its source.
const SOURCE: [u8; SOURCE_ID_LEN] = *b"fake source id 1";
/// The receiver's --idle-timeout, in seconds.
const IDLE: u64 = 5;

/// `len` deterministic bytes, different for each `seed`.
fn contents(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `zcp recv --no-auth --idle-timeout 5 -l 127.0.0.1:0 ARGS... dst`.
fn blocks_recv(env: &TestEnv, args: &[&str]) -> Command {
    let idle = IDLE.to_string();
    let mut all = vec!["--idle-timeout", &idle];
    all.extend_from_slice(args);
    recv_cmd(env, &all, "dst")
}

/// A receiver from [`blocks_recv`] against the fake sender `script`
/// (see [`run_against`]).
fn against_blocks_receiver<T>(env: &TestEnv, script: impl FnOnce(&str) -> T) -> Finished {
    run_against(env, blocks_recv(env, &[]), script).0
}

/// What the receiver's HELLO said about block mode.
struct Accepted {
    blocks: BlocksOption,
    session: Option<Vec<u8>>,
}

/// Sends our preamble and `hello` and reads the receiver's preamble and
/// HELLO, checked against the spec: ROLE receiver, CHECKSUM sha256, and
/// when `hello` proposed BLOCKS, a BLOCKS with the same block size, no
/// flag that was not offered, at most the streams asked for, and SESSION
/// (16 bytes) exactly when it allows more than one stream.
fn open_session(addr: &str, hello: &[u8]) -> (Peer, Option<Accepted>) {
    let offered = find_blocks(&parse_hello(&hello[5..]));
    let mut p = Peer::connect(addr);
    p.send(&[our_preamble(), hello.to_vec()].concat());
    assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    let options = parse_hello(&p.expect_frame(HELLO));
    assert!(options.contains(&(TAG_ROLE, vec![ROLE_RECEIVER])), "ROLE: {options:?}");
    assert!(options.contains(&(TAG_CHECKSUM, vec![SHA256])), "CHECKSUM: {options:?}");
    let session = find_option(&options, TAG_SESSION);
    let Some(offered) = offered else {
        assert_eq!(find_blocks(&options), None, "BLOCKS nobody offered: {options:?}");
        assert_eq!(session, None, "SESSION without block mode: {options:?}");
        return (p, None);
    };
    let blocks = find_blocks(&options).unwrap_or_else(|| panic!("block mode declined: {options:?}"));
    assert_eq!(blocks.size, offered.size, "the receiver's block size");
    assert_eq!(blocks.flags & !offered.flags, 0, "flags not offered: {blocks:?}");
    assert!((1..=offered.streams).contains(&blocks.streams), "streams: {blocks:?}");
    match &session {
        Some(token) => {
            assert!(blocks.streams > 1, "SESSION with one stream: {options:?}");
            assert_eq!(token.len(), TOKEN_LEN, "SESSION: {options:?}");
        }
        None => assert_eq!(blocks.streams, 1, "more streams but no SESSION: {options:?}"),
    }
    (p, Some(Accepted { blocks, session }))
}

/// A fake sender's session in block mode with 1 MiB blocks, `flags` and
/// one stream; the receiver must accept exactly that.
fn blocks_handshake(addr: &str, flags: u8) -> Peer {
    let (p, accepted) = open_session(addr, &hello_blocks(ROLE_SENDER, BS, flags, 1));
    let accepted = accepted.unwrap();
    assert_eq!(
        accepted.blocks,
        BlocksOption {
            size: BS,
            flags,
            streams: 1
        }
    );
    p
}

/// [`blocks_handshake`] with `flags`, then the BLOCKED entry for [`NAME`]
/// ([`SIZE`] bytes), of which the receiver must hold no block yet.
fn fresh_blocked(addr: &str, flags: u8) -> Peer {
    let mut p = blocks_handshake(addr, flags);
    assert!(open_blocked(&mut p, SIZE).is_empty());
    p
}

/// Sends the BLOCKED entry for [`NAME`] and reads the receiver's answer,
/// which must be PLAN frames (the last with `more` = 0); returns the held
/// blocks they list.
fn open_blocked(p: &mut Peer, size: usize) -> Vec<Held> {
    p.send(&blocked_entry(NAME.as_bytes(), size as u64, SOURCE).frame());
    let mut held = Vec::new();
    loop {
        match p.read_frame() {
            Some((PLAN, body)) => {
                let plan = parse_plan(&body);
                held.extend(plan.held);
                if !plan.more {
                    return held;
                }
            }
            Some((VERDICT, body)) => panic!("VERDICT {:?} instead of a PLAN", parse_verdict(&body)),
            Some((ERROR, body)) => panic!("ERROR {:?} instead of a PLAN", parse_error(&body)),
            other => panic!("{other:?} instead of a PLAN"),
        }
    }
}

/// Sends block `index` of `data` (BLOCK frame, then its bytes) as a block
/// of BLOCKED entry `entry`.
fn send_block(p: &mut Peer, entry: u32, data: &[u8], index: u32) {
    let bytes = block_of(data, BS, index);
    p.send(&BlockBody::of(entry, index, bytes).frame());
    p.send(bytes);
}

/// The file digest of `data` in 1 MiB blocks.
fn digest_of(data: &[u8]) -> Vec<u8> {
    file_digest(data.len() as u64, BS, &block_digests(data, BS))
}

/// The TRAILER of a BLOCKED `data`: its size and its file digest.
fn blocked_trailer(data: &[u8]) -> Vec<u8> {
    trailer(data.len() as u64, &digest_of(data))
}

/// dst/ holds exactly `names`, and [`NAME`] among them holds `data`.
fn assert_landed(env: &TestEnv, names: &[&str], data: &[u8]) {
    assert_dst(env, names);
    assert!(
        std::fs::read(env.dst(NAME)).unwrap() == data,
        "{NAME} differs from the file sent"
    );
}

/// The receiver's next frame, which must be an ERROR: (code, text).
fn expect_error(p: &mut Peer) -> (u8, String) {
    match p.read_frame() {
        Some((ERROR, body)) => parse_error(&body),
        Some((VERDICT, body)) => panic!("answered with {:?} instead of ERROR", parse_verdict(&body)),
        Some((kind, body)) => panic!("answered with frame type {kind} {body:?} instead of ERROR"),
        None => panic!("the receiver closed without an ERROR"),
    }
}

/// The receiver's next frame, which must be a VERDICT with `status`.
fn expect_status(p: &mut Peer, status: u8) -> VerdictBody {
    let v = parse_verdict(&p.expect_frame(VERDICT));
    assert_eq!(v.status, status, "VERDICT status; text {:?}", v.text);
    v
}

/// A receiver (block mode) against a fake sender that runs `script` and
/// then must read an ERROR with code 8 holding every needle; the receiver
/// must exit 8 with one error line naming the peer and the same needles.
/// Returns how long the ERROR took after `script` returned. The fake
/// holds the connection open until the ERROR came, so the receiver cannot
/// have been reacting to its end.
fn assert_protocol_error(env: &TestEnv, needles: &[&str], script: impl FnOnce(&str) -> Peer) -> Duration {
    let (out, took) = run_against(env, blocks_recv(env, &[]), |addr| {
        let mut p = script(addr);
        let start = Instant::now();
        let (code, text) = expect_error(&mut p);
        let took = start.elapsed();
        assert_eq!(code, PROTOCOL, "ERROR code; text {text:?}");
        for needle in needles {
            assert!(text.contains(needle), "the ERROR text lacks {needle:?}: {text:?}");
        }
        took
    });
    assert_failed(&out, 8, needles);
    took
}

/// A second session with RESUME for the same file: the receiver's PLAN
/// must list exactly the blocks `held`, with their true digests (what it
/// recorded of the first session); the fake sends the others and the file
/// commits byte for byte, with no partial left.
fn resume_holds(env: &TestEnv, data: &[u8], held: &[u32]) {
    let out = against_blocks_receiver(env, |addr| {
        let mut p = blocks_handshake(addr, RESUME);
        let mut plan = open_blocked(&mut p, data.len());
        plan.sort_by_key(|h| h.index);
        let want: Vec<Held> = held
            .iter()
            .map(|&i| Held::sha256(i, &sha256(block_of(data, BS, i))))
            .collect();
        assert_eq!(plan, want, "the blocks the partial's record holds");
        for i in (0..block_count(data.len() as u64, BS)).filter(|i| !held.contains(i)) {
            send_block(&mut p, 0, data, i);
        }
        p.send(&blocked_trailer(data));
        let v = expect_status(&mut p, COMMITTED);
        assert_eq!((v.algorithm, v.digest), (SHA256, digest_of(data)));
        end_session(p);
    });
    out.assert_code(0);
    assert_landed(env, &[NAME], data);
}

#[test]
fn a_block_whose_digest_differs_fails_the_entry_naming_it() {
    for resume in [true, false] {
        let env = TestEnv::new();
        let data = contents(SIZE, 4);
        let out = against_blocks_receiver(&env, |addr| {
            let mut p = fresh_blocked(addr, if resume { RESUME } else { 0 });
            for i in 0..4 {
                let bytes = block_of(&data, BS, i);
                let mut b = BlockBody::of(0, i, bytes);
                if i == 1 {
                    // The right bytes, labelled with another digest.
                    b.digest = sha256(b"not block 1");
                }
                p.send(&b.frame());
                p.send(bytes);
            }
            p.send(&blocked_trailer(&data));
            let v = expect_status(&mut p, MISMATCH);
            assert!(v.text.contains("block 1"), "the VERDICT does not name the block: {v:?}");
            end_session(p);
        });
        assert_failed(&out, 3, &[NAME, "integrity check failed", "block 1"]);
        if resume {
            assert_dst(&env, &[PARTIAL]);
            resume_holds(&env, &data, &[0, 2, 3]);
        } else {
            assert_dst(&env, &[]);
        }
    }
}

#[test]
fn blocks_out_of_order_commit_the_file_with_its_file_digest() {
    let env = TestEnv::new();
    let data = contents(SIZE, 5);
    let out = against_blocks_receiver(&env, |addr| {
        let mut p = fresh_blocked(addr, 0);
        for i in [3, 1, 0] {
            send_block(&mut p, 0, &data, i);
        }
        // PING is allowed between blocks.
        p.send(&frame(PING, &[]));
        send_block(&mut p, 0, &data, 2);
        p.send(&blocked_trailer(&data));
        let v = expect_status(&mut p, COMMITTED);
        assert_eq!((v.algorithm, v.digest, v.text.as_str()), (SHA256, digest_of(&data), ""));
        end_session(p);
    });
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    assert_landed(&env, &[NAME], &data);
    let mode = std::fs::metadata(env.dst(NAME)).unwrap().mode() & 0o7777;
    assert_eq!(mode & !0o022, 0o644 & !0o022, "mode {mode:o}");
}

#[test]
fn a_file_digest_over_the_blocks_in_another_order_fails_integrity() {
    // Every block verifies, but the TRAILER's file digest lists their
    // digests swapped: it binds each block to its place.
    let env = TestEnv::new();
    let data = contents(SIZE, 11);
    let out = against_blocks_receiver(&env, |addr| {
        let mut p = fresh_blocked(addr, 0);
        for i in 0..4 {
            send_block(&mut p, 0, &data, i);
        }
        let mut digests = block_digests(&data, BS);
        digests.swap(0, 1);
        p.send(&trailer(SIZE as u64, &file_digest(SIZE as u64, BS, &digests)));
        let v = expect_status(&mut p, MISMATCH);
        assert_eq!(
            (v.algorithm, v.digest),
            (SHA256, digest_of(&data)),
            "the receiver's file digest"
        );
        end_session(p);
    });
    assert_failed(&out, 3, &[NAME, "integrity check failed", &hex(&digest_of(&data))]);
    assert_dst(&env, &[]);
}

#[test]
fn blocked_entries_answered_at_once_still_take_a_number() {
    // "BLOCKED entries are numbered from 0 in the order sent, counting
    // those answered with a VERDICT at once."
    let env = TestEnv::new();
    std::fs::write(env.dst("kept"), b"already here").unwrap();
    let data = contents(SIZE, 12);
    let out = against_blocks_receiver(&env, |addr| {
        let hello = hello_with(
            ROLE_SENDER,
            &[(TAG_NO_CLOBBER, &[]), (TAG_BLOCKS, &blocks_value(BS, 0, 1))],
        );
        let (mut p, _) = open_session(addr, &hello);
        p.send(&blocked_entry(b"kept", SIZE as u64, SOURCE).frame());
        expect_status(&mut p, SKIPPED);
        assert!(open_blocked(&mut p, SIZE).is_empty());
        for i in 0..4 {
            send_block(&mut p, 1, &data, i);
        }
        p.send(&blocked_trailer(&data));
        let v = expect_status(&mut p, COMMITTED);
        assert_eq!(v.digest, digest_of(&data));
        end_session(p);
    });
    out.assert_code(0);
    assert_landed(&env, &[NAME, "kept"], &data);
    assert_eq!(std::fs::read(env.dst("kept")).unwrap(), b"already here");
}

#[test]
fn an_abort_keeps_the_partial_only_when_the_source_did_not_change() {
    for (reason, kept) in [(Some(ABORT_CHANGED), false), (None, true)] {
        let env = TestEnv::new();
        let data = contents(SIZE, 6);
        let out = against_blocks_receiver(&env, |addr| {
            let mut p = fresh_blocked(addr, RESUME);
            send_block(&mut p, 0, &data, 0);
            send_block(&mut p, 0, &data, 2);
            p.send(&abort("it went away", reason));
            let v = expect_status(&mut p, FAILED);
            assert!(v.text.contains("it went away"), "{v:?}");
            end_session(p);
        });
        assert_failed(&out, 1, &[NAME, "aborted", "it went away"]);
        if kept {
            assert_dst(&env, &[PARTIAL]);
            resume_holds(&env, &data, &[0, 2]);
        } else {
            assert_dst(&env, &[]);
        }
    }
}
