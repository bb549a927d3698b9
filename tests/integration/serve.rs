//! A receiver serving for real: `recv -k` with many senders at once,
//! misbehaving connections beside them, its connection limit and its end on
//! SIGINT/SIGTERM (crowd.rs); the shared key and `--no-auth` (keys.rs); the
//! handshake deadline and the idle timeout (timeouts.rs). Every case runs
//! the real binary over loopback and checks exit codes, messages and the
//! exact contents of dst/.
//!
//! Synchronisation is by what the peers can observe (a preamble read, a
//! pipe written, a line on stderr), never by sleeping; the only waits are
//! those that are the scenario itself (a silent pipe, a dripping client).

use crate::env::*;
use crate::peer::*;

mod crowd;
mod keys;
mod timeouts;

/// The key of a sender that does not know the receiver's.
const WRONG_KEY: &str = "wrong-key-but-long-enough-0123456789";

/// `zcp recv -k ARGS... dst`.
fn keep_open(env: &TestEnv, args: &[&str]) -> Receiver {
    let mut all = vec!["-k"];
    all.extend_from_slice(args);
    all.push("dst");
    env.recv(&all)
}

/// Sends `signal` to a keep-open receiver, which must exit 130 saying it
/// was interrupted, as its last line.
fn interrupt(mut rx: Receiver, signal: i32) -> Finished {
    rx.run.kill(signal);
    let out = rx.finish();
    out.assert_code(130);
    assert_eq!(
        out.stderr.lines().last(),
        Some("zcp: error: interrupted"),
        "the last line names the interruption:\n{}",
        out.stderr
    );
    out
}

/// The connection's next frame is an ERROR with `code` whose text holds
/// `needle`, and then the receiver closes it.
fn expect_error_then_close(p: &mut Peer, code: u8, needle: &str) {
    let (got, text) = parse_error(&p.expect_frame(ERROR));
    assert_eq!(got, code, "ERROR code; text {text:?}");
    assert!(text.contains(needle), "ERROR text {text:?} lacks {needle:?}");
    assert!(p.read_frame().is_none(), "the receiver said more after its ERROR");
}

/// `len` deterministic bytes, different for each `seed`.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}
