//! `send --retries`: a connection broken in the middle of a tree (by the
//! proxy in proxy.rs, with a reset or a close) is made again, the files
//! the receiver confirmed are not sent again, and a one-shot receiver
//! waits for the sender to come back; retries run out with the network
//! failure's status; streams, `--listen` and a wrong key are not retried.

use std::process::{Command, Stdio};

use crate::env::*;
use crate::proxy::{Cut, Plan, Proxy};

/// The files of src/t, in the order they are sent: large ones (sent by
/// sendfile) and small ones (batched).
pub const FILES: [(&str, usize); 6] = [
    ("t/a.bin", 4 << 20),
    ("t/b.txt", 1000),
    ("t/c.txt", 3000),
    ("t/d.bin", 4 << 20),
    ("t/sub/e.bin", 4 << 20),
    ("t/sub/f.txt", 10),
];

/// A test directory with src/t holding [`FILES`].
pub fn setup() -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    for (i, (name, size)) in FILES.iter().enumerate() {
        env.random_file(name, *size, i as u64 + 1);
    }
    env
}

/// dst/t is src/t, byte for byte, with nothing staged beside it.
fn assert_whole_tree(env: &TestEnv) {
    assert_eq!(env.tree("dst"), env.tree("src"));
    for (name, _) in FILES {
        assert_same_file(&env.src(name), &env.dst(name));
    }
}

/// The connection breaks in t/d.bin, after the receiver's verdicts on the
/// three files before it reached the sender.
fn a_broken_tree_transfer_goes_on_over_a_new_connection(cut: Cut) {
    let env = setup();
    let rx = env.recv(&["dst"]);
    let plan = Plan {
        cut,
        after: 6 << 20,
        connections: 1,
        on_cue: true,
    };
    let proxy = Proxy::start(&rx.addr, plan);
    let mut tx = env.start_send(
        &["-v", "--retries", "3", "-r", "src/t"],
        &proxy.addr,
        &[],
        Stdio::null(),
    );
    tx.await_stderr("the verdict on t/c.txt", |s| s.contains("zcp: send t/c.txt: "));
    proxy.cut_now();
    let out = tx.finish();
    out.assert_code(0);
    let rr = rx.finish();
    rr.assert_code(0);
    assert_whole_tree(&env);
    assert_eq!((proxy.accepted(), proxy.cut()), (2, 1));

    let target = format!("connection to {} lost (", proxy.addr);
    assert_one_warning(&out, &[&target, "); trying again in 1 s (retry 1 of 3)"]);
    // Each file went through once: the three confirmed before the break
    // were passed over the second time.
    for (name, _) in FILES {
        let sent = format!("zcp: send {name}: ");
        assert_eq!(out.stderr.matches(&sent).count(), 1, "{name}:\n{}", out.stderr);
    }
    out.assert_stderr("zcp: not sent again: 3 entries the receiver confirmed before the reconnect");
    let summary = lines_with(&out.stderr, "zcp: sent ");
    assert_eq!(summary.len(), 1, "{}", out.stderr);
    assert_holds(
        summary[0],
        &[
            "sent 6 files, 2 directories, 0 links to ",
            "verified (sha256); after 1 reconnect",
        ],
    );

    // The receiver waited, and its second session took only the rest.
    assert_one_warning(
        &rr,
        &[
            "connection from 127.0.0.1:",
            " lost (",
            "); waiting up to 120 s for it to reconnect (the sender uses --retries)",
        ],
    );
    assert!(rr.error_lines().is_empty(), "{}", rr.stderr);
    rr.assert_stderr("zcp: received 3 files, 2 directories, 0 links from ");
}

#[test]
fn a_reset_connection_is_made_again_and_only_the_rest_is_sent() {
    a_broken_tree_transfer_goes_on_over_a_new_connection(Cut::Reset);
}

#[test]
fn a_closed_connection_is_made_again_and_only_the_rest_is_sent() {
    a_broken_tree_transfer_goes_on_over_a_new_connection(Cut::Close);
}

#[test]
fn retries_run_out_with_the_network_failure_status() {
    let env = setup();
    // Long enough for the sender's waits of 1 s and 2 s, short for the
    // test: then it gives up.
    let rx = env.recv(&["--idle-timeout", "3", "dst"]);
    // Every connection breaks inside t/a.bin.
    let plan = Plan {
        cut: Cut::Reset,
        after: 1 << 20,
        connections: usize::MAX,
        on_cue: false,
    };
    let proxy = Proxy::start(&rx.addr, plan);
    let out = env.send(&["--retries", "2", "-r", "src/t"], &proxy.addr);
    out.assert_code(7);
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 2, "one warning per retry:\n{}", out.stderr);
    for (line, want) in warned.iter().zip(["in 1 s (retry 1 of 2)", "in 2 s (retry 2 of 2)"]) {
        assert_holds(line, &[&format!("connection to {} lost (", proxy.addr), want]);
    }
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    assert_holds(out.error_lines()[0], &[&proxy.addr]);
    assert_eq!(proxy.accepted(), 3);

    // Nobody came back within its idle timeout: the receiver gives up
    // with the broken session's status, leaving only whole files.
    let rr = rx.finish();
    rr.assert_code(7);
    assert_eq!(rr.error_lines().len(), 1, "{}", rr.stderr);
    for rel in env.tree("dst") {
        assert!(!rel.contains(".zcp-"), "staged file left: {rel}");
        if !rel.ends_with('/') {
            assert_same_file(&env.src(&rel), &env.dst(&rel));
        }
    }
}

#[test]
fn retries_are_refused_for_streams_and_a_listening_sender() {
    let env = TestEnv::new();
    // Nothing listens there: the usage error comes first.
    let (tx, stdin) = env.send_from_pipe(&["--retries", "3"], "127.0.0.1:9");
    drop(stdin);
    let out = tx.finish();
    out.assert_code(2);
    assert_eq!(
        out.error_lines(),
        [
            "zcp: error: --retries cannot send - (stdin): a stream cannot be read twice, so a broken transfer could not be sent again"
        ],
        "{}",
        out.stderr
    );

    let fifo = env.src("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = env.send(&["--retries", "1", "src/fifo"], "127.0.0.1:9");
    out.assert_code(2)
        .assert_stderr("--retries cannot send src/fifo: a stream cannot be read twice");

    let file = env.random_file("f", 10, 1);
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "--retries", "2", "--listen", "127.0.0.1:0"])
        .arg(&file)
        .stdin(Stdio::null());
    let out = Running::spawn(cmd, "zcp send --listen --retries").finish();
    out.assert_code(2)
        .assert_stderr("--retries needs the sender to connect");
}

#[test]
fn a_wrong_key_is_not_retried() {
    let env = setup();
    let rx = env.recv(&["dst"]);
    let out = env.send_with_env(
        &["--retries", "3", "-r", "src/t"],
        &rx.addr,
        &[("ZCP_KEY", "another-key-entirely-0123456789")],
    );
    out.assert_code(5);
    assert!(warnings(&out.stderr).is_empty(), "no retry:\n{}", out.stderr);
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    // The receiver turned it away and still waits for its sender.
    env.send(&["-r", "src/t"], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_whole_tree(&env);
}

#[test]
fn a_refused_connection_is_retried_and_ctrl_c_ends_the_wait() {
    let env = setup();
    // Nothing listens on the discard port.
    let mut tx = env.start_send(&["--retries", "5", "-r", "src/t"], "127.0.0.1:9", &[], Stdio::null());
    tx.await_stderr("the first retry", |s| s.contains("(retry 1 of 5)"));
    tx.kill(2);
    let out = tx.finish();
    out.assert_code(130);
    assert_one_warning(
        &out,
        &[
            "connection to 127.0.0.1:9 lost (Connection refused",
            "trying again in 1 s",
        ],
    );
}

#[test]
fn a_large_file_the_connection_broke_in_goes_on_from_its_verified_blocks() {
    let env = TestEnv::new();
    env.random_file("big", 64 << 20, 90);
    let rx = env.recv(&["dst"]);
    let plan = Plan {
        cut: Cut::Reset,
        after: 40 << 20,
        connections: 1,
        on_cue: false,
    };
    let proxy = Proxy::start(&rx.addr, plan);
    let out = env.send(&["-v", "--retries", "3", "src/big"], &proxy.addr);
    out.assert_code(0).assert_stderr("resuming big: the receiver holds");
    let rr = rx.finish();
    rr.assert_code(0).assert_stderr("resuming big:");
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert_eq!(env.list("dst"), vec!["big"]);
    // Only what was not verified before the cut moved the second time.
    let summary = lines_with(&out.stderr, "zcp: sent big");
    assert_eq!(summary.len(), 1, "{}", out.stderr);
    assert!(summary[0].contains(" resumed)"), "{}", summary[0]);
}
