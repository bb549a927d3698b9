//! Block mode in an authenticated session: BLOCK frames are sealed and
//! take a sequence number, the raw bytes after them are neither. A fake
//! sender that seals correctly gets a file through in blocks; bytes
//! altered on the way fail their block's digest; an unsealed BLOCK frame
//! is tampering (exit 5).

use super::super::auth::{KEY, auth_recv_cmd};
use super::*;

/// A keyed receiver: `zcp recv --idle-timeout 5 -l 127.0.0.1:0 dst`.
fn keyed_blocks_recv(env: &TestEnv) -> Command {
    auth_recv_cmd(env, &["--idle-timeout", &IDLE.to_string()], "dst")
}

/// The fake sender's HELLO with AUTH (a fresh nonce) and BLOCKS (1 MiB
/// blocks, no flags, one stream).
fn keyed_blocks_hello() -> Vec<u8> {
    hello_with(
        ROLE_SENDER,
        &[(TAG_AUTH, &auth_value(&nonce())), (TAG_BLOCKS, &blocks_value(BS, 0, 1))],
    )
}

#[test]
fn a_sealing_fake_sender_gets_blocks_through_and_altered_bytes_fail() {
    for altered in [false, true] {
        let env = TestEnv::new();
        let data = contents(SIZE, 9);
        let (out, _held) = run_against(&env, keyed_blocks_recv(&env), |addr| {
            let mut s = Peer::auth_sender_with(addr, KEY, &keyed_blocks_hello());
            s.send(&blocked_entry(NAME.as_bytes(), SIZE as u64, SOURCE).frame());
            assert_eq!(
                parse_plan(&s.expect(PLAN)),
                PlanBody {
                    more: false,
                    held: vec![]
                }
            );
            for i in [2, 0, 3, 1] {
                let bytes = block_of(&data, BS, i);
                s.send(&BlockBody::of(0, i, bytes).frame());
                if altered && i == 0 {
                    let mut b = bytes.to_vec();
                    b[12345] ^= 0x10;
                    s.send_raw(&b);
                } else {
                    s.send_raw(bytes);
                }
            }
            s.send(&blocked_trailer(&data));
            let v = parse_verdict(&s.expect(VERDICT));
            if altered {
                assert_eq!(v.status, MISMATCH, "{v:?}");
                assert!(v.text.contains("block 0"), "{v:?}");
            } else {
                assert_eq!((v.status, &v.digest), (COMMITTED, &digest_of(&data)), "{v:?}");
            }
            s.send(&frame(DONE, &[]));
            assert!(s.expect(DONE).is_empty());
            // ENTRY, four BLOCKs, TRAILER and DONE out; PLAN, VERDICT and
            // DONE back: the raw bytes take no sequence number.
            assert_eq!((s.out.seq, s.inn.seq), (7, 3));
            s
        });
        if altered {
            assert_failed(&out, 3, &[NAME, "integrity check failed", "block 0"]);
            assert_dst(&env, &[]);
        } else {
            out.assert_code(0);
            assert_landed(&env, &[NAME], &data);
        }
    }
}

#[test]
fn an_unsealed_block_frame_is_refused_as_tampering() {
    let env = TestEnv::new();
    let data = contents(SIZE, 10);
    let (out, _held) = run_against(&env, keyed_blocks_recv(&env), |addr| {
        let mut s = Peer::auth_sender_with(addr, KEY, &keyed_blocks_hello());
        s.send(&blocked_entry(NAME.as_bytes(), SIZE as u64, SOURCE).frame());
        s.expect(PLAN);
        let bytes = block_of(&data, BS, 0);
        s.send_raw(&BlockBody::of(0, 0, bytes).frame());
        s.p.send_lossy(bytes);
        let (code, text) = match s.read() {
            Some((ERROR, body)) => parse_error(&body),
            other => panic!("{other:?} instead of ERROR"),
        };
        assert_eq!(code, 5, "{text}");
        assert!(text.contains("Block frame #1 failed authentication"), "{text}");
        s
    });
    assert_failed(&out, 5, &["Block frame #1 failed authentication"]);
    assert_dst(&env, &[]);
}
