//! A listening sender and its keys: a receiver with the wrong key is
//! turned away and the sender waits for the right one; the one-time key
//! a sender without a key prints; `--no-auth` on both ends (and on one);
//! `--timeout` against a connection that says nothing.

use super::*;
use crate::peer::*;

/// The key of a receiver that does not know the sender's.
const WRONG_KEY: &str = "wrong-key-but-long-enough-0123456789";

#[test]
fn a_receiver_with_the_wrong_key_exits_5_and_the_sender_waits_for_the_right_one() {
    let env = TestEnv::new();
    let src = env.random_file("f", 100_000, 2);
    let mut tx = listening_sender(&env, &["src/f"]);
    let addr = tx.addr.clone();

    let mut wrong = receiver_command(&env, &addr, &["dst"]);
    wrong.env("ZCP_KEY", WRONG_KEY);
    let out = Running::spawn(wrong, "zcp recv --connect").finish();
    out.assert_code(5).assert_stderr(&format!(
        "zcp: error: receiving from {addr}: sender: authentication failed: the receiver's key is not this sender's"
    ));
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
    tx.run.await_stderr_count("; still listening", 1);

    connecting_receiver(&env, &addr, &["dst"]).assert_code(0);
    let out = tx.finish();
    out.assert_code(0);
    assert_one_warning(
        &out,
        &[
            "connection from 127.0.0.1:",
            "authentication failed: the receiver's key is not this sender's",
            "still listening",
        ],
    );
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    assert_eq!(env.list("dst"), ["f"]);
    assert_same_file(&src, &env.dst("f"));
}

#[test]
fn a_listening_sender_without_a_key_prints_a_one_time_key_for_recv_connect() {
    let env = TestEnv::new();
    let src = env.random_file("f", 70_000, 3);
    let mut cmd = sender_command(&env, &["src/f"]);
    cmd.env_remove("ZCP_KEY");
    let mut tx = start_listening(cmd, "zcp send --listen");
    let addr = tx.addr.clone();
    let text = tx
        .run
        .await_stderr("the command to paste", |s| s.contains("zcp: receive with: "));
    let key = one_time_key(&text, "sender");
    assert_eq!(
        lines_with(&text, "zcp: receive with: "),
        [format!(
            "zcp: receive with: ZCP_KEY={key} zcp recv --connect {addr} DEST"
        )]
    );

    // Only the end that listens makes a key: a receiver without one stops
    // before it connects.
    let mut keyless = receiver_command(&env, &addr, &["dst"]);
    keyless.env_remove("ZCP_KEY");
    Running::spawn(keyless, "zcp recv --connect")
        .finish()
        .assert_code(2)
        .assert_stderr("zcp: error: no key to authenticate with: set ZCP_KEY to the sender's key");

    let mut pasted = receiver_command(&env, &addr, &["dst"]);
    pasted.env("ZCP_KEY", &key);
    Running::spawn(pasted, "zcp recv --connect").finish().assert_code(0);
    let out = tx.finish();
    out.assert_code(0);
    assert!(warnings(&out.stderr).is_empty(), "{}", out.stderr);
    assert_same_file(&src, &env.dst("f"));
}

#[test]
fn no_auth_must_be_on_both_ends_of_a_turned_connection() {
    let env = TestEnv::new();
    let src = env.random_file("f", 70_000, 4);
    let mut cmd = sender_command(&env, &["--no-auth", "src/f"]);
    cmd.env_remove("ZCP_KEY");
    let mut tx = start_listening(cmd, "zcp send --listen");
    let addr = tx.addr.clone();

    // A receiver with a key refuses a sender that cannot prove it.
    connecting_receiver(&env, &addr, &["dst"])
        .assert_code(5)
        .assert_stderr("authentication required: this receiver accepts only senders that know its key");
    tx.run.await_stderr_count("; still listening", 1);
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));

    let mut open = receiver_command(&env, &addr, &["--no-auth", "dst"]);
    open.env_remove("ZCP_KEY");
    let rr = Running::spawn(open, "zcp recv --connect --no-auth").finish();
    rr.assert_code(0).assert_stderr(
        "zcp: warning: --no-auth: nothing proves who the sender is, and anyone on the path could alter what arrives",
    );
    let out = tx.finish();
    out.assert_code(0);
    assert_eq!(
        lines_with(&out.stderr, "zcp: warning: --no-auth: "),
        [
            "zcp: warning: --no-auth: anyone who can reach this port can receive the files, and anyone on the path could alter what arrives"
        ]
    );
    assert_one_warning(&out, &["connection from 127.0.0.1:", "still listening"]);
    assert!(!out.stderr.contains("one-time key"), "{}", out.stderr);
    assert_same_file(&src, &env.dst("f"));
}

#[test]
fn a_silent_connection_is_cut_off_at_the_listening_senders_timeout() {
    let env = TestEnv::new();
    let src = env.random_file("f", 10_000, 5);
    let mut tx = listening_sender(&env, &["--timeout", "1", "src/f"]);
    // Connects and says nothing: the sender has said its preamble and
    // HELLO, and closes once its deadline has passed.
    let mut silent = Peer::connect(&tx.addr);
    assert_eq!(silent.read_exact_vec(8), our_preamble(), "the sender's preamble");
    let hello = parse_hello(&silent.expect_frame(HELLO));
    assert!(hello.contains(&(TAG_ROLE, vec![ROLE_SENDER])), "{hello:?}");
    assert!(silent.read_frame().is_none(), "the sender said more than its HELLO");
    tx.run.await_stderr_count("; still listening", 1);
    drop(silent);

    connecting_receiver(&env, &tx.addr.clone(), &["dst"]).assert_code(0);
    let out = tx.finish();
    out.assert_code(0);
    assert_one_warning(
        &out,
        &[
            "connection from 127.0.0.1:",
            "the receiver did not complete the handshake within 1 s (--timeout)",
            "still listening",
        ],
    );
    assert_same_file(&src, &env.dst("f"));
}
