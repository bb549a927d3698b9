//! Transfers that must fail cleanly: a clear one-line error naming the file
//! and the peer, a non-zero exit, nothing under the final name, no staged
//! file left behind. Covers missing files, refused connections, killed and
//! interrupted peers and unusable destinations (full disks and other
//! limits are in limits.rs).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::env::*;

/// Asserts dst/ holds exactly `names` (so no `.zcp-*.part` is left).
pub fn assert_dst(env: &TestEnv, names: &[&str]) {
    assert_eq!(env.list("dst"), names, "destination directory contents");
}

#[test]
fn missing_source_file_fails_before_connecting() {
    let env = TestEnv::new();
    // Nothing listens on this port: the file error must come first.
    let out = env.send(&["src/nope.bin"], "127.0.0.1:9");
    out.assert_code(1).assert_stderr("opening src/nope.bin");
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
}

#[test]
fn a_closed_stdin_is_an_error_not_an_empty_file() {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    // `<&-`: zcp starts with fd 0 closed.
    let mut cmd = Command::new("sh");
    cmd.current_dir(env.dir.path())
        .args(["-c", "exec \"$0\" send - \"$1\" <&-", zcp_path(), &rx.addr])
        .env_remove("ZCP_FAULT")
        .env("ZCP_KEY", TEST_KEY)
        .stdin(Stdio::null());
    let out = Running::spawn(cmd, "zcp send - <&-").finish();
    out.assert_code(1);
    assert_eq!(
        out.error_lines(),
        ["zcp: error: reading stdin: standard input is closed"],
        "{}",
        out.stderr
    );
    // Nor when stdin is named by a path.
    for name in ["/dev/stdin", "/proc/self/fd/0"] {
        let mut cmd = Command::new("sh");
        cmd.current_dir(env.dir.path())
            .args(["-c", "exec \"$0\" send \"$1\" \"$2\" <&-", zcp_path(), name, &rx.addr])
            .env_remove("ZCP_FAULT")
            .env("ZCP_KEY", TEST_KEY)
            .stdin(Stdio::null());
        let out = Running::spawn(cmd, "zcp send /dev/stdin <&-").finish();
        out.assert_code(1);
        assert_eq!(
            out.error_lines(),
            [format!("zcp: error: reading {name}: standard input is closed")],
            "{}",
            out.stderr
        );
    }
    // The receiver got nothing from it: the next sender is its only one.
    let src = env.random_file("after", 10, 1);
    env.send(&[src.to_str().unwrap()], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_dst(&env, &["after"]);
}

#[test]
fn a_closed_stdout_is_refused_before_listening() {
    let env = TestEnv::new();
    // `>&-`: payload written there would vanish while both ends report success.
    let mut cmd = Command::new("sh");
    cmd.current_dir(env.dir.path())
        .args(["-c", "exec \"$0\" recv -l 127.0.0.1:0 - >&-", zcp_path()])
        .env_remove("ZCP_FAULT")
        .env("ZCP_KEY", TEST_KEY)
        .stdin(Stdio::null());
    let out = Running::spawn(cmd, "zcp recv - >&-").finish();
    out.assert_code(1);
    assert_eq!(
        out.error_lines(),
        ["zcp: error: destination -: standard output is closed"],
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);
}

#[test]
fn a_directory_source_without_r_is_a_usage_error() {
    let env = TestEnv::new();
    env.send(&["src"], "127.0.0.1:9")
        .assert_code(2)
        .assert_stderr("src is a directory; use -r");
}

#[test]
fn nothing_listening_names_the_peer() {
    let env = TestEnv::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.random_file("report.pdf", 10, 1);
    let out = env.send(&["src/report.pdf"], &format!("127.0.0.1:{port}"));
    out.assert_code(7);
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    assert!(
        out.error_lines()[0].starts_with(&format!(
            "zcp: error: sending src/report.pdf to 127.0.0.1:{port}: connecting: "
        )),
        "{}",
        out.stderr
    );
    out.assert_stderr("refused");

    // Several sources: the first and how many more.
    std::fs::create_dir(env.src("dir")).unwrap();
    let out = env.send(&["-r", "src/dir", "src/report.pdf", "-"], &format!("127.0.0.1:{port}"));
    out.assert_code(7).assert_stderr(&format!(
        "zcp: error: sending src/dir and 2 more to 127.0.0.1:{port}: connecting: "
    ));
}

/// Runs `zcp ARGS...`, expecting it to stop at the command line.
fn usage(args: &[&str]) -> Finished {
    let mut c = zcp();
    c.args(args).stdin(Stdio::null());
    Running::spawn(c, "zcp").finish()
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["send"],
        &["send", "file"],
        &["send", "file", "hostonly"],
        &["send", "file", "::1:7227"],
        &["send", "file", "host:99999"],
        &["send", "--checksum", "md5", "file", "h:1"],
        &["recv", "-l", "notaport"],
        &["recv", "--bogus"],
        &["send", "-q", "-v", "file", "h:1"],
        &["recv", "-q", "-v", "d"],
        &["recv", "--timeout", "0"],
        &["bench", "--size", "12X"],
        &["frob"],
    ];
    for args in cases {
        let out = usage(args);
        assert_eq!(out.code(), 2, "args {args:?}: {}", out.stderr);
        // One error line and one hint: no usage block, no blank lines.
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "args {args:?}: {}", out.stderr);
        assert!(lines[0].starts_with("zcp: error: "), "args {args:?}: {}", out.stderr);
        let help = match args.first() {
            Some(sub @ &("send" | "recv" | "bench")) => format!("Try 'zcp {sub} --help'"),
            _ => "Try 'zcp --help'".to_string(),
        };
        assert!(lines[1].starts_with(&help), "args {args:?}: {}", out.stderr);
    }
    usage(&["recv", "-q", "-v", "d"])
        .assert_stderr("zcp: error: the argument '--quiet' cannot be used with '--verbose'\n");
    usage(&["send", "--nmae", "x", "f", "h:1"]).assert_stderr("a similar argument exists: '--name'");
    usage(&["send"]).assert_stderr("not provided: <SOURCE>...\n");
    // A --name that is not a single path component is a usage error too.
    let env = TestEnv::new();
    let src = env.random_file("a", 1, 1);
    env.send(&["--name", "../x", src.to_str().unwrap()], "127.0.0.1:9")
        .assert_code(2)
        .assert_stderr("--name");
}

#[test]
fn checksum_settings_must_agree() {
    let env = TestEnv::new();
    let src = env.random_file("a", 1000, 1);
    let rx = env.recv(&["dst"]);
    let tx = env.send(&["--checksum", "none", src.to_str().unwrap()], &rx.addr);
    tx.assert_code(1).assert_stderr("--checksum");
    // Nothing was written: the receiver turned that sender away and
    // serves the next one.
    env.still_serving(&[], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(0)
        .assert_stderr("zcp: warning: connection from 127.0.0.1:")
        .assert_stderr("--checksum")
        .assert_stderr("still listening");
    assert_dst(&env, &["alive"]);
}

/// Waits until the receiver has a staged file open in dst/ (the transfer
/// is under way): a hidden `.zcp-*` name, or an unnamed O_TMPFILE file,
/// which only shows among the process's descriptors.
fn wait_for_staged(env: &TestEnv, rx: &Receiver) {
    let dst = env.dst("");
    let fds = format!("/proc/{}/fd", rx.run.child.id());
    for _ in 0..2000 {
        let open_in_dst = std::fs::read_dir(&fds)
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|target| target.starts_with(&dst) && target != dst);
        if open_in_dst {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the receiver never staged a file");
}

#[test]
fn sender_killed_mid_stream_leaves_nothing() {
    let env = TestEnv::new();
    std::fs::write(env.dst("keep.bin"), b"previous version").unwrap();
    let rx = env.recv(&["dst/keep.bin"]);
    let (mut tx, mut pipe) = env.send_from_pipe(&[], &rx.addr);
    pipe.write_all(&vec![7u8; 3 << 20]).unwrap();
    wait_for_staged(&env, &rx);
    tx.kill(9);
    drop(pipe);
    let rr = rx.finish();
    rr.assert_code(7).assert_stderr("closed the connection");
    assert_eq!(rr.error_lines().len(), 1, "{}", rr.stderr);
    assert_dst(&env, &["keep.bin"]);
    assert_eq!(std::fs::read(env.dst("keep.bin")).unwrap(), b"previous version");
}

#[test]
fn receiver_killed_mid_transfer_fails_the_sender() {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    let addr = rx.addr.clone();
    let (tx, mut pipe) = env.send_from_pipe(&[], &addr);
    pipe.write_all(&vec![1u8; 1 << 20]).unwrap();
    wait_for_staged(&env, &rx);
    let mut rx = rx;
    rx.run.kill(9);
    // Keep feeding until the sender notices; then end its input.
    let feeder = std::thread::spawn(move || {
        let chunk = vec![2u8; 1 << 16];
        for _ in 0..4096 {
            if pipe.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = tx.finish();
    feeder.join().unwrap();
    out.assert_code(7).assert_stderr(&addr);
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    let _ = rx.finish();
}

#[test]
fn unusable_destinations_are_refused_before_listening() {
    let env = TestEnv::new();
    let fifo = env.path("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (dest, needle) in [
        ("fifo", "is a pipe or fifo"),
        ("/dev/null", "is a character device"),
        ("no/such/dir/file", "no/such/dir"),
        ("missing-dir/", "does not exist"),
    ] {
        let mut cmd = zcp();
        cmd.current_dir(env.dir.path())
            .args(["recv", "-l", "127.0.0.1:0", dest])
            .stdin(Stdio::null());
        let out = Running::spawn(cmd, "zcp recv").finish();
        out.assert_code(1).assert_stderr(needle);
        assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
    }
}

#[test]
fn a_directory_in_the_way_fails_the_entry_on_both_ends() {
    let env = TestEnv::new();
    std::fs::create_dir(env.dst("taken")).unwrap();
    let src = env.random_file("taken", 1000, 1);
    let rx = env.recv(&["dst"]);
    let tx = env.send(&[src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(1).assert_stderr("taken");
    tx.assert_code(1).assert_stderr("receiver:");
    assert_dst(&env, &["taken"]);
    assert!(env.dst("taken").is_dir());
}

#[test]
fn sigint_to_the_receiver_removes_the_staged_file_and_exits_130() {
    let env = TestEnv::new();
    let mut rx = env.recv(&["dst"]);
    let (tx, mut pipe) = env.send_from_pipe(&[], &rx.addr);
    pipe.write_all(&vec![9u8; 1 << 20]).unwrap();
    wait_for_staged(&env, &rx);
    rx.run.kill(2);
    let rr = rx.finish();
    drop(pipe);
    let out = tx.finish();
    rr.assert_code(130);
    out.assert_code(1).assert_stderr("receiver");
    assert_dst(&env, &[]);
}

#[test]
fn sigterm_to_the_sender_exits_130() {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    let (mut tx, mut pipe) = env.send_from_pipe(&[], &rx.addr);
    pipe.write_all(&vec![9u8; 1 << 20]).unwrap();
    wait_for_staged(&env, &rx);
    tx.kill(15);
    let out = tx.finish();
    drop(pipe);
    let rr = rx.finish();
    out.assert_code(130);
    // One line on the receiver, carrying the sender's reason.
    rr.assert_code(1).assert_stderr("sender: reading stdin: interrupted");
    assert_eq!(rr.error_lines().len(), 1, "{}", rr.stderr);
    assert_dst(&env, &[]);
}

#[test]
fn receiver_gone_while_stdin_is_idle_is_noticed_without_more_input() {
    let env = TestEnv::new();
    let mut rx = env.recv(&["dst"]);
    let addr = rx.addr.clone();
    let (tx, mut pipe) = env.send_from_pipe(&[], &addr);
    pipe.write_all(&vec![1u8; 1 << 20]).unwrap();
    wait_for_staged(&env, &rx);
    rx.run.kill(9);
    // The pipe stays open and silent: the sender must still finish.
    let out = tx.finish();
    drop(pipe);
    out.assert_code(7).assert_stderr(&format!(
        "zcp: error: sending stdin to {addr}: the receiver closed the connection\n"
    ));
    assert!(!out.stderr.contains("reading stdin"), "{}", out.stderr);
    let _ = rx.finish();
}

#[test]
fn receiver_gone_while_stdin_flows_names_the_connection_not_stdin() {
    let env = TestEnv::new();
    let mut rx = env.recv(&["dst"]);
    let addr = rx.addr.clone();
    let (tx, mut pipe) = env.send_from_pipe(&[], &addr);
    let writer = std::thread::spawn(move || {
        let chunk = vec![3u8; 1 << 16];
        while pipe.write_all(&chunk).is_ok() {}
    });
    wait_for_staged(&env, &rx);
    rx.run.kill(9);
    let out = tx.finish();
    writer.join().unwrap();
    out.assert_code(7).assert_stderr(&format!(
        "zcp: error: sending stdin to {addr}: the receiver closed the connection"
    ));
    assert!(!out.stderr.contains("reading stdin"), "{}", out.stderr);
    let _ = rx.finish();
}

#[test]
fn a_silent_receiver_times_out_the_handshake() {
    let env = TestEnv::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let src = env.random_file("a", 10, 1);
    let out = env.send(&["--timeout", "1", src.to_str().unwrap()], &addr);
    out.assert_code(7).assert_stderr(&format!(
        "sending {} to {addr}: the receiver did not complete the handshake within 1 s (--timeout)",
        src.display()
    ));
    drop(silent);
}

#[test]
fn a_silent_sender_times_out_the_handshake() {
    let env = TestEnv::new();
    let rx = env.recv(&["--timeout", "1", "dst"]);
    let mut silent = std::net::TcpStream::connect(&rx.addr).unwrap();
    // The receiver gives up on it: its preamble, an ERROR, then the end.
    let mut said = Vec::new();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = silent.read_to_end(&mut said);
    assert!(
        String::from_utf8_lossy(&said).contains("did not complete the handshake within 1 s"),
        "{said:?}"
    );
    env.still_serving(&[], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(0)
        .assert_stderr("did not complete the handshake within 1 s (--timeout); still listening");
    assert_dst(&env, &["alive"]);
}

#[test]
fn a_port_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = zcp();
    cmd.args(["recv", "-l", &addr]).stdin(Stdio::null());
    let out = Running::spawn(cmd, "zcp recv").finish();
    out.assert_code(1).assert_stderr("Address already in use");
}
