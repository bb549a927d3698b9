//! `--bind ADDR`: the connection comes from the chosen local address (the
//! other end names it as the peer), over IPv4 and IPv6, from a sender or
//! from a receiver that connects (`recv --connect`); an address this
//! machine does not have, or one of the wrong family, is an error that
//! names it; a malformed one is a usage error.

use std::process::Stdio;

use crate::env::*;

/// Sends a small file from `bind` to a receiver listening on `listen`;
/// returns what both ends printed with -v.
fn send_from(listen: &str, bind: &str) -> (Finished, Finished) {
    let env = TestEnv::new();
    let src = env.random_file("b.bin", 100_000, 3);
    let rx = env.recv_on(listen, &["-v", "dst"]);
    let tx = env.send(&["-v", "--bind", bind, src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0);
    rr.assert_code(0);
    assert_same_file(&src, &env.dst("b.bin"));
    (tx, rr)
}

#[test]
fn the_receiver_sees_the_bound_address_as_the_peer() {
    // All of 127/8 is loopback on Linux.
    let (tx, rr) = send_from("127.0.0.1:0", "127.0.0.2");
    rr.assert_stderr("zcp: connection from 127.0.0.2:")
        .assert_stderr("zcp: received b.bin from 127.0.0.2:");
    let line = tx.stderr.lines().find(|l| l.starts_with("zcp: connected to")).unwrap();
    assert!(
        line.contains(" from 127.0.0.2:") && line.ends_with(" (--bind)"),
        "{line}"
    );
}

#[test]
fn bind_works_over_ipv6() {
    if !have_ipv6() {
        return skip("bind_works_over_ipv6", "no IPv6 loopback");
    }
    for bind in ["::1", "[::1]"] {
        let (tx, rr) = send_from("[::1]:0", bind);
        rr.assert_stderr("zcp: connection from [::1]:");
        tx.assert_stderr(" from [::1]:");
    }
}

#[test]
fn an_address_this_machine_does_not_have_fails_naming_it() {
    let env = TestEnv::new();
    env.random_file("b.bin", 10, 3);
    // 192.0.2.0/24 is reserved for documentation (RFC 5737).
    let out = env.send(&["--bind", "192.0.2.1", "src/b.bin"], "127.0.0.1:9");
    out.assert_code(1);
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    out.assert_stderr("zcp: error: sending src/b.bin to 127.0.0.1:9: binding to 192.0.2.1 (--bind): ");
}

#[test]
fn an_address_of_the_other_family_is_a_clear_error() {
    let env = TestEnv::new();
    let src = env.random_file("b.bin", 10, 3);
    let src = src.to_str().unwrap();
    env.send(&["--bind", "::1", src], "127.0.0.1:9")
        .assert_code(1)
        .assert_stderr("--bind ::1 is an IPv6 address, but 127.0.0.1 is an IPv4 address")
        .assert_stderr("(bind an IPv4 address, or connect to an IPv6 one)");
    env.send(&["--bind", "127.0.0.1", src], "[::1]:9")
        .assert_code(1)
        .assert_stderr("--bind 127.0.0.1 is an IPv4 address, but ::1 is an IPv6 address");
}

/// Runs `zcp ARGS...`, expecting it to stop at the command line.
fn usage(args: &[&str]) -> Finished {
    let mut c = zcp();
    c.args(args).stdin(Stdio::null());
    Running::spawn(c, "zcp").finish()
}

#[test]
fn a_malformed_address_is_a_usage_error() {
    for bad in ["eth0", "127.0.0.1:80", "localhost", ""] {
        usage(&["send", "--bind", bad, "f", "127.0.0.1:9"])
            .assert_code(2)
            .assert_stderr(&format!("invalid value '{bad}' for '--bind <ADDR>': "))
            .assert_stderr("is not an IP address");
    }
    // A receiver binds only the connection it makes; a listening sender
    // takes its address in --listen.
    usage(&["recv", "--bind", "127.0.0.1", "-l", "127.0.0.1:0"])
        .assert_code(2)
        .assert_stderr(
            "zcp: error: --bind needs --connect: a receiver that listens chooses its address with -l ADDR:PORT",
        );
    usage(&["send", "--bind", "127.0.0.1", "--listen", "0", "f"])
        .assert_code(2)
        .assert_stderr("the argument '--bind <ADDR>' cannot be used with '--listen <[ADDR:]PORT>'");
}

#[test]
fn a_connecting_receiver_binds_too() {
    let env = TestEnv::new();
    let src = env.random_file("r.bin", 100_000, 4);
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "-v", "--listen", "127.0.0.1:0", "src/r.bin"])
        .stdin(Stdio::null());
    let tx = start_listening(cmd, "zcp send --listen");
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "--connect", &tx.addr, "--bind", "127.0.0.2", "dst"])
        .stdin(Stdio::null());
    let rr = Running::spawn(cmd, "zcp recv --connect").finish();
    let out = tx.finish();
    rr.assert_code(0);
    out.assert_code(0).assert_stderr("zcp: connection from 127.0.0.2:");
    assert_same_file(&src, &env.dst("r.bin"));
}
