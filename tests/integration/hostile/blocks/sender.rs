//! The real sender (`zcp send --no-auth --resume`) against fake receivers
//! in block mode: it sends exactly the blocks a PLAN does not hold, takes
//! the held blocks' digests from the PLAN, and refuses a PLAN that does not
//! fit the file, a VERDICT that claims a file committed before any block,
//! and BLOCKS terms it did not offer.

use super::*;

/// 20 MiB and 5 bytes: three of zcp's 8 MiB blocks, the last 4 MiB + 5.
const SEND_SIZE: usize = (20 << 20) + 5;

/// What the real sender sent after its handshake: frames, and each BLOCK
/// with the raw bytes that followed it.
enum FromSender {
    Frame(u8, Vec<u8>),
    Block(BlockBody, Vec<u8>),
}

impl std::fmt::Debug for FromSender {
    /// A block's bytes are shown by their length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FromSender::Frame(kind, body) => write!(f, "frame type {kind} {body:?}"),
            FromSender::Block(b, bytes) => write!(f, "{b:?} and {} bytes", bytes.len()),
        }
    }
}

impl FromSender {
    fn kind(&self) -> u8 {
        match self {
            FromSender::Frame(k, _) => *k,
            FromSender::Block(..) => BLOCK,
        }
    }
}

/// Reads what the sender sends until `last` (a frame type) or the end of
/// the connection, taking each BLOCK's raw bytes after it; PINGs are
/// dropped. A sender that went on where it should have stopped sends
/// DONE and waits: read up to DONE so as not to wait with it.
fn read_sender(p: &mut Peer, last: Option<u8>) -> Vec<FromSender> {
    let mut got = Vec::new();
    while let Some((kind, body)) = p.read_frame() {
        let item = match kind {
            BLOCK => {
                let b = BlockBody::parse(&body);
                let bytes = p.read_exact_vec(b.len as usize);
                FromSender::Block(b, bytes)
            }
            PING => continue,
            _ => FromSender::Frame(kind, body),
        };
        got.push(item);
        if last == Some(kind) {
            break;
        }
    }
    got
}

/// Accepts `zcp send --no-auth --resume`, checks it proposed block mode as
/// zcp does (8 MiB blocks, RESUME, one stream, no JOIN), answers with
/// `reply` (a HELLO frame).
fn accept_offer(fake: &FakeReceiver, reply: &[u8]) -> Peer {
    let (p, options) = fake.accept_answering(reply);
    assert_eq!(
        find_blocks(&options),
        Some(BlocksOption {
            size: ZCP_BLOCK,
            flags: RESUME,
            streams: 1
        }),
        "the sender's BLOCKS: {options:?}"
    );
    assert_eq!(find_option(&options, TAG_JOIN), None, "{options:?}");
    p
}

/// Accepts the sender, agrees block mode as offered, and takes its
/// BLOCKED entry for f.txt, checked against the source.
fn take_blocked(fake: &FakeReceiver, data: &[u8]) -> Peer {
    let mut p = accept_offer(fake, &hello_blocks(ROLE_RECEIVER, ZCP_BLOCK, RESUME, 1));
    let e = EntryBody::parse(&p.expect_frame(ENTRY));
    assert_eq!(
        (e.kind, e.flags),
        (KIND_FILE, SIZE_KNOWN | HAS_MODE | HAS_MTIME | BLOCKED),
        "{e:?}"
    );
    assert_eq!(
        (e.size, &e.path[..], &e.target[..]),
        (data.len() as u64, &b"f.txt"[..], &[][..])
    );
    assert!(e.source.is_some() && e.extension.is_empty(), "{e:?}");
    p
}

/// `zcp send --no-auth --resume src/f.txt` (20 MiB + 5 bytes) against
/// `play`.
fn against_resuming_sender<T>(play: impl FnOnce(&FakeReceiver, &[u8]) -> T) -> Finished {
    sender_against(&["--no-auth", "--resume"], SEND_SIZE, play)
}

/// Ends our side of `p` and reads what the sender still sends, which
/// must hold no BLOCK, TRAILER or DONE: it stopped at `what`.
fn assert_sender_stops(p: &mut Peer, what: &str) {
    p.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let rest = read_sender(p, Some(DONE));
    assert!(
        rest.iter().all(|f| ![BLOCK, TRAILER, DONE].contains(&f.kind())),
        "the sender went on after {what}: {rest:?}"
    );
}

/// Builds PLAN frames from the file's bytes.
type MakePlan = fn(&[u8]) -> Vec<u8>;

#[test]
fn plans_that_do_not_fit_the_file_are_refused_by_the_sender() {
    let cases: [(MakePlan, &str); 3] = [
        (|d| plan(false, &[Held::sha256(3, &sha256(&d[..10]))]), "block 3"),
        (
            |_| {
                plan(
                    false,
                    &[Held {
                        index: 0,
                        algorithm: 0,
                        digest: Vec::new(),
                    }],
                )
            },
            "block 0",
        ),
        // Split over two frames: the bad one comes second.
        (
            |d| {
                [
                    plan(true, &[Held::sha256(0, &sha256(block_of(d, ZCP_BLOCK, 0)))]),
                    plan(false, &[Held::sha256(7, &sha256(b"x"))]),
                ]
                .concat()
            },
            "block 7",
        ),
    ];
    for (bad, needle) in cases {
        let out = against_resuming_sender(|fake, data| {
            let mut p = take_blocked(fake, data);
            p.send(&bad(data));
            // Nothing more comes: the sender need not wait for a reason.
            assert_sender_stops(&mut p, "a PLAN that does not fit");
            p
        });
        assert_failed(&out, 8, &["f.txt", "protocol error", "PLAN", needle]);
    }
}

#[test]
fn a_plan_that_names_a_block_twice_is_refused_by_the_sender() {
    let out = against_resuming_sender(|fake, data| {
        let mut p = take_blocked(fake, data);
        let d0 = sha256(block_of(data, ZCP_BLOCK, 0));
        p.send(&plan(false, &[Held::sha256(0, &d0), Held::sha256(0, &d0)]));
        assert_sender_stops(&mut p, "a PLAN naming block 0 twice");
        p
    });
    assert_failed(&out, 8, &["f.txt", "protocol error", "PLAN"]);
}

#[test]
fn a_committed_verdict_instead_of_a_plan_is_not_success() {
    let out = against_resuming_sender(|fake, data| {
        let mut p = take_blocked(fake, data);
        let digest = file_digest(data.len() as u64, ZCP_BLOCK, &block_digests(data, ZCP_BLOCK));
        p.send(&verdict(COMMITTED, &digest, ""));
        p.send_lossy(&frame(DONE, &[]));
        let rest = read_sender(&mut p, Some(DONE));
        assert!(
            rest.iter().all(|f| f.kind() != BLOCK),
            "the sender sent blocks after a VERDICT: {rest:?}"
        );
        p
    });
    assert_failed(&out, 8, &["f.txt", "protocol error"]);
}

#[test]
fn a_failed_verdict_instead_of_a_plan_ends_the_entry_without_blocks() {
    let out = against_resuming_sender(|fake, data| {
        let mut p = take_blocked(fake, data);
        p.send(&verdict(FAILED, &[], "no room"));
        let rest = read_sender(&mut p, Some(DONE));
        let kinds: Vec<u8> = rest.iter().map(FromSender::kind).collect();
        assert_eq!(kinds, [DONE], "{rest:?}");
        p.send(&frame(DONE, &[]));
        p
    });
    assert_failed(&out, 1, &["f.txt", "receiver: no room"]);
}

#[test]
fn the_sender_sends_exactly_the_blocks_the_plan_does_not_hold() {
    // Blocks 0 and 2 are held with digests the sender cannot have computed
    // itself: its file digest must take them from the PLAN.
    let held0 = sha256(b"the receiver's block 0");
    let held2 = sha256(b"the receiver's block 2");
    let out = against_resuming_sender(|fake, data| {
        let mut p = take_blocked(fake, data);
        p.send(&plan(false, &[Held::sha256(2, &held2), Held::sha256(0, &held0)]));
        let rest = read_sender(&mut p, Some(TRAILER));
        let block1 = block_of(data, ZCP_BLOCK, 1);
        let digest = file_digest(
            data.len() as u64,
            ZCP_BLOCK,
            &[held0.clone(), sha256(block1), held2.clone()],
        );
        match &rest[..] {
            [FromSender::Block(b, bytes), FromSender::Frame(TRAILER, t)] => {
                assert_eq!(*b, BlockBody::of(0, 1, block1), "the BLOCK frame");
                assert_eq!(bytes.len(), 8 << 20, "the bytes after it");
                assert!(bytes == block1, "block 1's bytes differ from the file's");
                assert_eq!(*t, trailer(data.len() as u64, &digest)[5..], "the TRAILER");
            }
            other => panic!("want one BLOCK and the TRAILER, got {other:?}"),
        }
        p.send(&verdict(COMMITTED, &digest, ""));
        p.expect_frame(DONE);
        p.send(&frame(DONE, &[]));
        p
    });
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
}

#[test]
fn block_mode_terms_the_sender_did_not_offer_are_refused() {
    let cases: [(&[&str], Vec<u8>); 4] = [
        (&["--resume"], hello_blocks(ROLE_RECEIVER, ZCP_BLOCK, RESUME, 2)),
        (&["--resume"], hello_blocks(ROLE_RECEIVER, ZCP_BLOCK, RESUME | RETRY, 1)),
        (&["--resume"], hello_blocks(ROLE_RECEIVER, 16 << 20, RESUME, 1)),
        (&[], hello_blocks(ROLE_RECEIVER, ZCP_BLOCK, 0, 1)),
    ];
    for (extra, reply) in cases {
        let args = [&["--no-auth"][..], extra].concat();
        let out = sender_against(&args, SEND_SIZE, |fake, _| {
            let (mut p, _) = fake.accept_answering(&reply);
            let rest = read_sender(&mut p, Some(DONE));
            assert!(
                rest.iter().all(|f| ![ENTRY, BLOCK].contains(&f.kind())),
                "the sender went on: {rest:?}"
            );
            p
        });
        assert_failed(&out, 8, &["protocol error", "block mode"]);
    }
}
