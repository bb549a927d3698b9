//! The connection turned around: `zcp send --listen` waits and `zcp recv
//! --connect` connects to it, for when only the sender can be reached. A
//! file, a tree and stdin arrive as they do the usual way (this file);
//! the keys, `--no-auth`, the sender's handshake deadline, and the order
//! of the proofs, checked with fake peers (keys.rs, order.rs).
//!
//! Synchronisation is by what the processes print (the `listening on`
//! line, a warning), never by sleeping.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use crate::env::*;
use crate::tree::{build_tree, scan};

mod keys;
mod order;

/// `zcp send --listen 127.0.0.1:0 ARGS...` in the env's directory, stdin
/// from /dev/null, not started.
fn sender_command(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Starts a sender listening on a free loopback port with `args`.
fn listening_sender(env: &TestEnv, args: &[&str]) -> Receiver {
    start_listening(sender_command(env, args), "zcp send --listen")
}

/// `zcp recv --connect ADDR ARGS...` in the env's directory, not started.
fn receiver_command(env: &TestEnv, addr: &str, args: &[&str]) -> Command {
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "--connect", addr])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Runs `zcp recv --connect ADDR ARGS...` to its end.
fn connecting_receiver(env: &TestEnv, addr: &str, args: &[&str]) -> Finished {
    Running::spawn(receiver_command(env, addr, args), "zcp recv --connect").finish()
}

#[test]
fn a_file_goes_to_the_receiver_that_connects() {
    let env = TestEnv::new();
    let src = env.random_file("f.bin", (3 << 20) + 5, 1);
    let tx = listening_sender(&env, &["src/f.bin"]);
    let addr = tx.addr.clone();
    let rr = connecting_receiver(&env, &addr, &["dst"]);
    let out = tx.finish();
    // The receiver names the sender as it was given.
    rr.assert_code(0)
        .assert_stderr(&format!("zcp: received f.bin from {addr} into dst/f.bin: "))
        .assert_stderr("verified (sha256)");
    out.assert_code(0)
        .assert_stderr("zcp: sent f.bin to 127.0.0.1:")
        .assert_stderr("verified (sha256)");
    assert!(warnings(&out.stderr).is_empty(), "{}", out.stderr);
    assert_eq!(env.list("dst"), ["f.bin"], "exactly the file, nothing staged left");
    assert_same_file(&src, &env.dst("f.bin"));
    let (ms, md) = (
        std::fs::metadata(&src).unwrap(),
        std::fs::metadata(env.dst("f.bin")).unwrap(),
    );
    assert_eq!((md.mtime(), md.mtime_nsec()), (ms.mtime(), ms.mtime_nsec()));
}

#[test]
fn a_tree_goes_to_the_receiver_that_connects() {
    let env = TestEnv::new();
    let src = build_tree(&env);
    let tx = listening_sender(&env, &["-r", "src/tree"]);
    let rr = connecting_receiver(&env, &tx.addr, &["-v", "dst"]);
    let out = tx.finish();
    rr.assert_code(0)
        .assert_stderr("received 9 files, 6 directories, 5 links");
    out.assert_code(0).assert_stderr("verified (sha256)");
    // Every entry: kind, bytes, mode, mtime and link text.
    assert_eq!(scan(&env.dst("tree")), scan(&src), "the received tree differs");
    let (a, b) = (env.dst("tree/hard.txt"), env.dst("tree/a/small.txt"));
    assert_eq!(std::fs::metadata(a).unwrap().ino(), std::fs::metadata(b).unwrap().ino());
    assert!(!env.path("outside").exists());
}

#[test]
fn stdin_goes_to_the_stdout_of_the_receiver_that_connects() {
    let env = TestEnv::new();
    let data: Vec<u8> = (0..(1 << 20) + 77)
        .map(|i: u32| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect();
    let mut cmd = sender_command(&env, &["--name", "piped", "-"]);
    cmd.stdin(Stdio::piped());
    let mut tx = start_listening(cmd, "zcp send --listen -");
    let mut pipe = tx.run.child.stdin.take().unwrap();
    let rx = Running::spawn(receiver_command(&env, &tx.addr, &["-"]), "zcp recv --connect -");
    // More than a pipe holds: written only as the session runs.
    pipe.write_all(&data).unwrap();
    drop(pipe);
    let rr = rx.finish();
    let out = tx.finish();
    rr.assert_code(0);
    out.assert_code(0).assert_stderr("zcp: sent piped to 127.0.0.1:");
    assert!(rr.stdout == data, "stdout differs from what went into stdin");
    assert!(env.list("dst").is_empty());
}

#[test]
fn the_turned_forms_are_checked_on_the_command_line() {
    let cases: [(&[&str], &str); 6] = [
        (&["send", "--listen", "0"], "not provided: <SOURCE>...\n"),
        (&["send", "h:1"], "not provided: <SOURCE>...\n"),
        (
            &["send", "--listen", "nope", "f"],
            "invalid value 'nope' for '--listen <[ADDR:]PORT>'",
        ),
        (
            &["recv", "--connect", "h:1", "-k"],
            "'--connect <HOST:PORT>' cannot be used with '--keep-open'",
        ),
        (
            &["recv", "--connect", "h:1", "-l", "1"],
            "'--connect <HOST:PORT>' cannot be used with '--listen",
        ),
        (
            &["recv", "--connect", "nohost"],
            "invalid value 'nohost' for '--connect <HOST:PORT>'",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = zcp();
        cmd.args(args).stdin(Stdio::null());
        let out = Running::spawn(cmd, "zcp").finish();
        out.assert_code(2).assert_stderr(needle);
        assert_eq!(out.stderr.lines().count(), 2, "{args:?}: {}", out.stderr);
    }
    // With --listen a HOST:PORT left at the end is a SOURCE like the
    // others, and the error says so; nothing listened.
    let env = TestEnv::new();
    env.random_file("f", 10, 6);
    let out = Running::spawn(sender_command(&env, &["src/f", "127.0.0.1:7227"]), "zcp send").finish();
    out.assert_code(1).assert_stderr(
        "zcp: error: opening 127.0.0.1:7227 (with --listen every operand is a SOURCE: the receiver connects to this sender): ",
    );
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);
}
