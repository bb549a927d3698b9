//! `send -P N`: large files over several connections of one session, each
//! joining it with the receiver's token and its own handshake. Files and
//! trees must arrive byte for byte, also with read/write forced, with
//! resume, and with a receiver that serves several senders at once.

use std::process::Stdio;

use crate::env::*;

/// src/t: big files whose sizes are not multiples of the 8 MiB block,
/// one of exactly one block, and small files and a link beside them.
fn tree(env: &TestEnv) {
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    env.random_file("t/a.bin", (20 << 20) + 123, 71);
    env.random_file("t/sub/b.bin", 8 << 20, 72);
    env.random_file("t/sub/c.bin", (17 << 20) - 1, 73);
    env.random_file("t/small.txt", 3000, 74);
    std::os::unix::fs::symlink("a.bin", env.src("t/link")).unwrap();
}

fn assert_same_tree(env: &TestEnv) {
    assert_eq!(env.tree("src/t"), env.tree("dst/t"));
    for rel in ["t/a.bin", "t/sub/b.bin", "t/sub/c.bin", "t/small.txt"] {
        assert_same_file(&env.src(rel), &env.dst(rel));
    }
}

#[test]
fn a_file_moves_over_four_streams() {
    let env = TestEnv::new();
    env.random_file("big", (100 << 20) + 7, 70);
    let rx = env.recv(&["-v", "dst"]);
    let out = env.send(&["-P", "4", "-v", "src/big"], &rx.addr);
    out.assert_code(0).assert_stderr("4 streams to");
    let rr = rx.finish();
    rr.assert_code(0);
    assert_eq!(rr.stderr.matches("further stream from").count(), 3, "{}", rr.stderr);
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert_eq!(env.list("dst"), vec!["big"]);
}

#[test]
fn a_tree_moves_over_four_streams_also_with_read_write_forced() {
    for forced in [false, true] {
        let env = TestEnv::new();
        tree(&env);
        let mut recv_args = vec!["dst"];
        let mut send_args = vec!["-P", "4", "-r", "src/t"];
        if forced {
            recv_args.push("--no-zerocopy");
            send_args.insert(0, "--no-zerocopy");
        }
        let rx = env.recv(&recv_args);
        let out = env.send(&send_args, &rx.addr);
        out.assert_code(0);
        rx.finish().assert_code(0);
        assert_same_tree(&env);
    }
}

#[test]
fn parallel_streams_resume_after_the_sender_was_killed() {
    let env = TestEnv::new();
    env.random_file("big", 96 << 20, 75);
    let rx = env.recv(&["dst"]);
    let tx = env.start_send(
        &["-P", "3", "--resume", "src/big"],
        &rx.addr,
        &[("ZCP_FAULT", "sendfile=STOP@6")],
        Stdio::null(),
    );
    let mut tx = tx.stopped();
    tx.kill(9);
    let _ = tx.finish();
    rx.finish().assert_code(7);
    assert!(!env.dst("big").exists());
    let rx = env.recv(&["dst"]);
    let out = env.send(&["-P", "3", "--resume", "src/big"], &rx.addr);
    out.assert_code(0).assert_stderr("resumed)");
    rx.finish().assert_code(0).assert_stderr("resuming big:");
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert_eq!(env.list("dst"), vec!["big"]);
}

#[test]
fn a_keep_open_receiver_serves_two_parallel_senders_at_once() {
    let env = TestEnv::new();
    env.random_file("one", 40 << 20, 76);
    env.random_file("two", 40 << 20, 77);
    let mut rx = env.recv(&["-k", "dst"]);
    let a = env.start_send(&["-P", "4", "src/one"], &rx.addr, &[], Stdio::null());
    let b = env.start_send(&["-P", "4", "src/two"], &rx.addr, &[], Stdio::null());
    a.finish().assert_code(0);
    b.finish().assert_code(0);
    rx.run.kill(2);
    rx.finish();
    assert_same_file(&env.src("one"), &env.dst("one"));
    assert_same_file(&env.src("two"), &env.dst("two"));
}

#[test]
fn another_sender_is_told_a_one_session_receiver_is_busy() {
    let env = TestEnv::new();
    env.random_file("big", 64 << 20, 78);
    env.random_file("other", 1000, 79);
    let rx = env.recv(&["dst"]);
    let mut tx = env.start_send(
        &["-P", "2", "--limit", "16M", "-v", "src/big"],
        &rx.addr,
        &[],
        Stdio::null(),
    );
    tx.await_stderr("the second stream", |s| s.contains("2 streams to"));
    let other = env.send(&["src/other"], &rx.addr);
    other.assert_code(1).assert_stderr("busy");
    tx.finish().assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert!(!env.dst("other").exists());
}

#[test]
fn a_listening_sender_uses_one_stream_and_says_so() {
    let env = TestEnv::new();
    env.random_file("big", 20 << 20, 80);
    let mut cmd = zcp();
    cmd.current_dir(env.path(""))
        .args(["send", "--listen", "127.0.0.1:0", "-P", "4", "src/big"]);
    let tx = start_listening(cmd, "zcp send --listen");
    let mut recv = zcp();
    recv.current_dir(env.path(""))
        .args(["recv", "--connect", &tx.addr, "dst"]);
    let rr = recv.output().unwrap();
    assert_eq!(rr.status.code(), Some(0), "{}", String::from_utf8_lossy(&rr.stderr));
    let out = tx.finish();
    out.assert_code(0).assert_stderr("one stream");
    assert_same_file(&env.src("big"), &env.dst("big"));
}

#[test]
fn a_sender_goes_on_with_the_streams_a_busy_receiver_takes() {
    let env = TestEnv::new();
    env.random_file("big", 30 << 20, 82);
    // One connection at a time: the first stream takes it.
    let mut rx = env.recv(&["-k", "--max-connections", "1", "dst"]);
    let out = env.send(&["-P", "3", "-v", "src/big"], &rx.addr);
    out.assert_code(0)
        .assert_stderr("going on with 1 of the 3 streams asked for (-P)")
        .assert_stderr("1 stream to");
    rx.run.kill(2);
    rx.finish();
    assert_same_file(&env.src("big"), &env.dst("big"));
}
