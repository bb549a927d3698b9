//! What the real receiver refuses in block mode: blocks that are
//! missing, repeated, beyond the file, of the wrong length, for another
//! entry or before any PLAN; BLOCKED entries it cannot take; a PLAN or an
//! unknown ABORT reason from a sender; and joins to sessions it does not
//! have. Each is a protocol error (exit 1, the ERROR and the error line
//! naming it), except a join refused in the handshake, which leaves the
//! receiver serving.

use std::time::Duration;

use super::*;

#[test]
fn a_trailer_before_every_block_is_a_protocol_error_naming_the_missing_block() {
    let env = TestEnv::new();
    let data = contents(SIZE, 1);
    let took = assert_protocol_error(&env, &["protocol error", "block 2"], |addr| {
        let mut p = fresh_blocked(addr, 0);
        for i in [0, 1, 3] {
            send_block(&mut p, 0, &data, i);
        }
        p.send(&blocked_trailer(&data));
        p
    });
    // On one connection nothing else can bring block 2: waiting for the
    // idle timeout instead would take 5 s.
    assert!(took < Duration::from_secs(IDLE), "the receiver took {took:?} to notice");
    assert_dst(&env, &[]);
}

/// How a fake sender breaks the rules of block mode after its handshake.
type Breach = fn(&mut Peer, &[u8]);
/// What, the BLOCKS flags, the breach, the needles, what dst/ holds after.
type BreachCase = (
    &'static str,
    u8,
    Breach,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn blocks_out_of_place_are_protocol_errors() {
    let cases: [BreachCase; 12] = [
        (
            "sent twice",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                send_block(p, 0, d, 0);
                send_block(p, 0, d, 1);
                p.send_lossy(&BlockBody::of(0, 0, block_of(d, BS, 0)).frame());
                p.send_lossy(block_of(d, BS, 0));
            },
            &["block 0", "twice"],
            &[],
        ),
        (
            "held, sent again",
            RESUME,
            |p, d| {
                assert_eq!(open_blocked(p, SIZE).len(), 1);
                p.send_lossy(&BlockBody::of(0, 3, block_of(d, BS, 3)).frame());
                p.send_lossy(block_of(d, BS, 3));
            },
            &["block 3", "twice"],
            &[PARTIAL],
        ),
        (
            "beyond the file",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                send_block(p, 0, d, 0);
                p.send_lossy(&BlockBody::of(0, 4, b"12345").frame());
                p.send_lossy(b"12345");
            },
            &["block 4", "beyond the end of the file"],
            &[],
        ),
        (
            "the last block one byte long",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                let long = [block_of(d, BS, 3), b"!"].concat();
                p.send_lossy(&BlockBody::of(0, 3, &long).frame());
                p.send_lossy(&long);
            },
            &["block 3", "6 bytes long, not 5"],
            &[],
        ),
        (
            "a full block cut short",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                let short = &block_of(d, BS, 1)[..1000];
                p.send_lossy(&BlockBody::of(0, 1, short).frame());
                p.send_lossy(short);
            },
            &["block 1", "1000 bytes long, not 1048576"],
            &[],
        ),
        (
            "another entry",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                let bytes = block_of(d, BS, 0);
                p.send_lossy(&BlockBody::of(1, 0, bytes).frame());
                p.send_lossy(bytes);
            },
            &["BLOCKED entry 1", "entry 0 is open"],
            &[],
        ),
        (
            "a digest of another algorithm",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                let bytes = block_of(d, BS, 0);
                let mut b = BlockBody::of(0, 0, bytes);
                (b.algorithm, b.digest) = (0, Vec::new());
                p.send_lossy(&b.frame());
                p.send_lossy(bytes);
            },
            &["block 0", "none"],
            &[],
        ),
        (
            "a digest cut short",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                let bytes = block_of(d, BS, 0);
                let mut b = BlockBody::of(0, 0, bytes);
                b.digest.pop();
                p.send_lossy(&b.frame());
                p.send_lossy(bytes);
            },
            &["digest of 31 bytes"],
            &[],
        ),
        (
            "a block of no bytes",
            0,
            |p, _| {
                open_blocked(p, SIZE);
                p.send_lossy(&BlockBody::of(0, 0, b"").frame());
            },
            &["block of 0 bytes"],
            &[],
        ),
        (
            "a TRAILER of another size",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                for i in 0..4 {
                    send_block(p, 0, d, i);
                }
                p.send_lossy(&trailer(SIZE as u64 - 1, &digest_of(d)));
            },
            &["says it sent 3145732 bytes of a 3145733-byte file"],
            &[],
        ),
        (
            "before any PLAN",
            0,
            |p, d| {
                let bytes = block_of(d, BS, 0);
                p.send_lossy(&BlockBody::of(0, 0, bytes).frame());
                p.send_lossy(bytes);
            },
            &["unexpected", "Block"],
            &[],
        ),
        (
            "after the entry's VERDICT",
            0,
            |p, d| {
                open_blocked(p, SIZE);
                for i in 0..4 {
                    send_block(p, 0, d, i);
                }
                p.send(&blocked_trailer(d));
                expect_status(p, COMMITTED);
                p.send_lossy(&BlockBody::of(0, 0, block_of(d, BS, 0)).frame());
                p.send_lossy(block_of(d, BS, 0));
            },
            &["unexpected", "Block"],
            &[NAME],
        ),
    ];
    let data = contents(SIZE, 2);
    for (what, flags, breach, needles, left) in cases {
        let env = TestEnv::new();
        if flags & RESUME != 0 {
            // A partial of the first session holding block 3.
            first_session_keeping_block_3(&env, &data);
        }
        let needles = [&["protocol error"], needles].concat();
        assert_protocol_error(&env, &needles, |addr| {
            let mut p = blocks_handshake(addr, flags);
            breach(&mut p, &data);
            p
        });
        assert_dst(&env, left);
        if left == [NAME] {
            assert!(std::fs::read(env.dst(NAME)).unwrap() == data, "{what}");
        }
    }
}

/// A session with RESUME that lands block 3 of `data`, then ends in
/// ABORT without a reason: the receiver keeps the partial.
fn first_session_keeping_block_3(env: &TestEnv, data: &[u8]) {
    let out = against_blocks_receiver(env, |addr| {
        let mut p = blocks_handshake(addr, RESUME);
        assert!(open_blocked(&mut p, data.len()).is_empty());
        send_block(&mut p, 0, data, 3);
        p.send(&abort("read error", None));
        expect_status(&mut p, FAILED);
        end_session(p);
    });
    out.assert_code(1);
    assert_dst(env, &[PARTIAL]);
}

#[test]
fn blocked_entries_the_receiver_must_refuse() {
    let sized_blocked = |flags: u8| {
        let mut e = blocked_entry(NAME.as_bytes(), SIZE as u64, SOURCE);
        e.flags = flags;
        e.frame()
    };
    let mut dir = EntryBody::dir(b"d");
    dir.flags = BLOCKED;
    dir.source = Some(SOURCE);
    let mut cut = blocked_entry(NAME.as_bytes(), SIZE as u64, SOURCE);
    cut.source = None;
    let mut cut_short = cut.clone();
    cut_short.extension = SOURCE[..15].to_vec();
    let agreed = hello_blocks(ROLE_SENDER, BS, 0, 1);
    let plain = hello(ROLE_SENDER, SHA256);
    let cases: [(&Vec<u8>, Vec<u8>, &[&str]); 7] = [
        (
            &plain,
            blocked_entry(NAME.as_bytes(), SIZE as u64, SOURCE).frame(),
            &["BLOCKED", "block mode was not agreed"],
        ),
        (
            &agreed,
            sized_blocked(SIZE_KNOWN | SPARSE | BLOCKED),
            &["BLOCKED", "SPARSE"],
        ),
        (&agreed, sized_blocked(BLOCKED), &["BLOCKED", "SIZE_KNOWN"]),
        (&agreed, dir.frame(), &["directory", "BLOCKED"]),
        (&agreed, cut.frame(), &["source identity"]),
        (&agreed, cut_short.frame(), &["source identity"]),
        (&agreed, plan(false, &[]), &["unexpected", "Plan"]),
    ];
    for (hello, bad, needles) in cases {
        let env = TestEnv::new();
        let needles = [&["protocol error"], needles].concat();
        assert_protocol_error(&env, &needles, |addr| {
            let (mut p, _) = open_session(addr, hello);
            p.send_lossy(&bad);
            p
        });
        assert_dst(&env, &[]);
    }
}

#[test]
fn a_plan_from_the_sender_among_blocks_is_a_protocol_error() {
    let env = TestEnv::new();
    let data = contents(SIZE, 3);
    assert_protocol_error(&env, &["protocol error", "unexpected", "Plan"], |addr| {
        let mut p = blocks_handshake(addr, 0);
        open_blocked(&mut p, SIZE);
        send_block(&mut p, 0, &data, 0);
        p.send_lossy(&plan(false, &[Held::sha256(1, &sha256(block_of(&data, BS, 1)))]));
        p
    });
    assert_dst(&env, &[]);
}

#[test]
fn an_abort_with_an_unknown_reason_is_a_protocol_error() {
    let env = TestEnv::new();
    let data = contents(SIZE, 7);
    assert_protocol_error(&env, &["protocol error", "ABORT reason 2"], |addr| {
        let mut p = blocks_handshake(addr, RESUME);
        open_blocked(&mut p, SIZE);
        send_block(&mut p, 0, &data, 0);
        p.send_lossy(&abort("why not", Some(2)));
        p
    });
    // The session ended with the entry incomplete: with resume its
    // partial stays, and nothing is under the final name.
    assert_dst(&env, &[PARTIAL]);
}

/// The HELLO of a further stream joining the session `token` (BLOCKS as
/// on a first connection that asked for two streams).
fn join_hello(token: &[u8]) -> Vec<u8> {
    hello_with(ROLE_SENDER, &[(TAG_BLOCKS, &blocks_value(BS, 0, 2)), (TAG_JOIN, token)])
}

/// Connects as a further stream of the session `token`: preamble and
/// HELLO out, the receiver's preamble in (its HELLO, or ERROR, is next).
fn join(addr: &str, token: &[u8]) -> Peer {
    let mut p = Peer::connect(addr);
    p.send(&[our_preamble(), join_hello(token)].concat());
    assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    p
}

/// A [`join`] to the session `token` that the receiver must refuse with
/// an ERROR of code 1; returns the ERROR's text.
fn join_refused(addr: &str, token: &[u8]) -> String {
    let mut p = join(addr, token);
    let (code, text) = expect_error(&mut p);
    assert_eq!(code, 1, "{text}");
    text
}

/// A fake sender's first connection, in block mode with two streams
/// agreed, and its BLOCKED entry for [`NAME`] open with no block held;
/// returns it and the session's token.
fn two_stream_session(addr: &str) -> (Peer, Vec<u8>) {
    let (mut p, accepted) = open_session(addr, &hello_blocks(ROLE_SENDER, BS, 0, 2));
    let accepted = accepted.unwrap();
    assert_eq!(accepted.blocks.streams, 2);
    let token = accepted.session.unwrap();
    assert!(open_blocked(&mut p, SIZE).is_empty());
    (p, token)
}

#[test]
fn a_join_with_an_unknown_token_is_refused_and_the_receiver_keeps_serving() {
    let env = TestEnv::new();
    let joining = join_hello(b"no such session!");
    let r = refused(&env, false, &[our_preamble(), joining].concat());
    assert_refused(&env, &r, FAILURE, &["join a session", "does not have"]);
}

#[test]
fn a_join_with_a_wrong_token_is_refused_while_the_session_goes_on() {
    let env = TestEnv::new();
    let data = contents(SIZE, 8);
    let out = against_blocks_receiver(&env, |addr| {
        let (mut p, token) = two_stream_session(addr);
        let mut wrong = token.clone();
        wrong[0] ^= 1;
        let text = join_refused(addr, &wrong);
        assert!(text.contains("does not have"), "{text}");
        let mut stream = join(addr, &token);
        let options = parse_hello(&stream.expect_frame(HELLO));
        assert!(options.contains(&(TAG_ROLE, vec![ROLE_RECEIVER])), "ROLE: {options:?}");
        send_block(&mut stream, 0, &data, 1);
        send_block(&mut stream, 0, &data, 3);
        stream.send(&frame(DONE, &[]));
        send_block(&mut p, 0, &data, 2);
        send_block(&mut p, 0, &data, 0);
        p.send(&blocked_trailer(&data));
        let v = expect_status(&mut p, COMMITTED);
        assert_eq!(v.digest, digest_of(&data));
        end_session(p);
        assert!(stream.read_frame().is_none(), "the receiver closes a stream after DONE");
    });
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    assert_one_warning(&out, &["127.0.0.1:", "does not have"]);
    assert_landed(&env, &[NAME], &data);
}

#[test]
fn a_join_beyond_the_streams_agreed_is_refused() {
    // The receiver allowed two streams: the first connection and one
    // further stream. "The sender may then open up to streams − 1 further
    // connections."
    let env = TestEnv::new();
    let data = contents(SIZE, 13);
    let out = against_blocks_receiver(&env, |addr| {
        let (mut p, token) = two_stream_session(addr);
        let mut stream = join(addr, &token);
        stream.expect_frame(HELLO);
        join_refused(addr, &token);
        for i in 0..4 {
            send_block(&mut stream, 0, &data, i);
        }
        stream.send(&frame(DONE, &[]));
        p.send(&blocked_trailer(&data));
        expect_status(&mut p, COMMITTED);
        end_session(p);
    });
    out.assert_code(0);
    assert_landed(&env, &[NAME], &data);
}
