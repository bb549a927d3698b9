//! Time limits on a connection: `--idle-timeout` against a sender that is
//! silent (an idle pipe kept alive by PINGs, a raw peer that stopped) and
//! `--timeout` as one deadline for the whole handshake, which a client
//! dripping its opening byte by byte cannot stretch.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;

#[test]
fn an_idle_pipe_is_kept_alive_by_the_senders_pings() {
    let env = TestEnv::new();
    let rx = env.recv(&["--idle-timeout", "1", "dst"]);
    let (before, after) = (bytes(256 << 10, 1), bytes(100_000, 2));
    let (tx, mut pipe) = env.send_from_pipe(&["--name", "slow"], &rx.addr);
    // More than a pipe holds: once written, the session runs.
    pipe.write_all(&before).unwrap();
    // The scenario itself: the input stays idle for three idle timeouts.
    std::thread::sleep(Duration::from_secs(3));
    pipe.write_all(&after).unwrap();
    drop(pipe);
    let out = tx.finish();
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    let rr = rx.finish();
    rr.assert_code(0);
    assert!(
        warnings(&rr.stderr).is_empty() && rr.error_lines().is_empty(),
        "{}",
        rr.stderr
    );
    assert_eq!(env.tree("dst"), ["slow"]);
    assert_eq!(std::fs::read(env.dst("slow")).unwrap(), [before, after].concat());
}

#[test]
fn a_sender_that_goes_silent_is_cut_off_after_the_idle_timeout() {
    // Silent right after the handshake, and halfway through a file.
    let half = bytes(50_000, 3);
    let cases: [(&str, Vec<u8>); 2] = [
        ("after the handshake", Vec::new()),
        (
            "in the middle of a file",
            [entry(b"stuck", Some(100_000), Some(0o644)), half].concat(),
        ),
    ];
    for (when, said) in cases {
        let env = TestEnv::new();
        let rx = env.recv(&["--no-auth", "--idle-timeout", "1", "dst"]);
        let mut p = Peer::sender_handshake(&rx.addr, SHA256);
        p.send(&said);
        // The ERROR says failure (1): a peer's ERROR is never a network
        // failure; the receiver itself exits 7, its connection timed out.
        expect_error_then_close(&mut p, 1, "the sender sent nothing for 1 s (--idle-timeout)");
        let out = rx.finish();
        out.assert_code(7);
        assert_eq!(out.error_lines().len(), 1, "{when}:\n{}", out.stderr);
        assert_holds(
            out.error_lines()[0],
            &[
                "receiving from 127.0.0.1:",
                "the sender sent nothing for 1 s (--idle-timeout)",
            ],
        );
        assert!(env.tree("dst").is_empty(), "{when}: {:?}", env.tree("dst"));
    }
}

#[test]
fn a_handshake_dripped_byte_by_byte_is_cut_off_at_the_deadline() {
    let env = TestEnv::new();
    let mut rx = env.recv(&["--no-auth", "--timeout", "2", "dst"]);
    // A valid opening (preamble and HELLO), which would complete the
    // handshake of a --no-auth receiver after some 20 s: one byte every
    // 500 ms, each well within any per-read timeout.
    let opening = [our_preamble(), hello(ROLE_SENDER, SHA256)].concat();
    let mut p = Peer::connect(&rx.addr);
    let mut drip = p.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let dripper = std::thread::spawn(move || {
        for byte in opening {
            if stopped.load(Ordering::SeqCst) || drip.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    expect_error_then_close(
        &mut p,
        1,
        "the sender did not complete the handshake within 2 s (--timeout)",
    );
    stop.store(true, Ordering::SeqCst);
    dripper.join().unwrap();
    rx.run.await_stderr_count("; still listening", 1);
    drop(p);

    env.still_serving(&["--no-auth"], &rx.addr);
    let out = rx.finish();
    out.assert_code(0);
    assert_one_warning(
        &out,
        &[
            "connection from 127.0.0.1:",
            "the sender did not complete the handshake within 2 s (--timeout)",
            "still listening",
        ],
    );
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    assert_eq!(env.tree("dst"), ["alive"]);
}

#[test]
fn a_receiver_dripping_its_handshake_is_cut_off_at_the_senders_deadline() {
    // The mirror case: a fake receiver answers with a valid preamble and
    // HELLO, one byte every 500 ms; the sender's --timeout 2 is one
    // deadline for the whole handshake, not a limit per read.
    let env = TestEnv::new();
    env.random_file("f", 1000, 1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let dripper = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let opening = [our_preamble(), hello(ROLE_RECEIVER, SHA256)].concat();
        for byte in opening {
            if stopped.load(Ordering::SeqCst) || conn.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let out = env.send(&["--no-auth", "--timeout", "2", "src/f"], &addr);
    stop.store(true, Ordering::SeqCst);
    dripper.join().unwrap();
    out.assert_code(7).assert_stderr(&format!(
        "sending src/f to {addr}: the receiver did not complete the handshake within 2 s (--timeout)"
    ));
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
}
