//! `--raw` against real OpenBSD netcat on the other end, both ways:
//! bytes compared, files in place only after a clean end of the stream.
//! The cases with zcp at both ends (resets, interruptions, fallbacks, the
//! options `--raw` refuses) are in between_zcps.rs. Without `nc` the
//! netcat cases say SKIPPED, unless ZCP_REQUIRE_NC=1 (as in .ci/run) makes
//! that a failure.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::env::*;

mod between_zcps;

/// Whether OpenBSD netcat is here; prints why a test is skipped when not.
fn have_nc(test: &str) -> bool {
    let banner = Command::new("nc")
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    if banner.contains("OpenBSD netcat") {
        return true;
    }
    assert!(
        std::env::var_os("ZCP_REQUIRE_NC").is_none_or(|v| v != "1"),
        "ZCP_REQUIRE_NC=1, but netcat-openbsd (nc) is not installed"
    );
    eprintln!("SKIPPED: netcat-openbsd (nc) not installed ({test})");
    false
}

/// `nc -l` on a free port of `host` (`127.0.0.1` or `::1`), with `args`
/// and stdin from `stdin`; returns it and the port it announced.
fn nc_listen(host: &str, args: &[&str], stdin: Stdio) -> (Running, u16) {
    let mut cmd = Command::new("nc");
    if host.contains(':') {
        cmd.arg("-6");
    }
    cmd.args(["-l", "-v", "-n"]).args(args).args([host, "0"]).stdin(stdin);
    let (run, first) = start_announcing(cmd, "nc -l");
    // "Listening on 127.0.0.1 40123"
    let port = first
        .trim_end()
        .strip_prefix("Listening on ")
        .and_then(|rest| rest.rsplit(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("nc -l did not say where it listens: {first:?}"));
    (run, port)
}

/// `nc -N HOST PORT < file`: sends the file and shuts down its side at
/// its end (FIN), as a raw receiver needs.
fn nc_send(host: &str, port: u16, file: &std::path::Path) -> Finished {
    let mut cmd = Command::new("nc");
    cmd.args(["-N", host, &port.to_string()])
        .stdin(std::fs::File::open(file).unwrap());
    Running::spawn(cmd, "nc -N").finish()
}

/// `zcp send --raw ARGS... ADDR` with stdin from /dev/null.
fn send_raw(env: &TestEnv, args: &[&str], addr: &str) -> Finished {
    let mut all = vec!["--raw"];
    all.extend_from_slice(args);
    env.send(&all, addr)
}

/// `zcp recv --raw -l 127.0.0.1:0 ARGS...`.
fn recv_raw(env: &TestEnv, args: &[&str]) -> Receiver {
    let mut all = vec!["--raw"];
    all.extend_from_slice(args);
    env.recv(&all)
}

/// `zcp send --raw` of a file to `nc -l` on `host`, which writes what it
/// gets to stdout: the same bytes, and a summary that says unverified.
fn file_to_nc(host: &str, size: usize, extra: &[&str]) -> (Finished, Finished) {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", size, size as u64 + 3);
    let (nc, port) = nc_listen(host, &[], Stdio::null());
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut args = extra.to_vec();
    args.push(src.to_str().unwrap());
    let tx = send_raw(&env, &args, &target);
    let got = nc.finish();
    tx.assert_code(0).assert_stderr("unverified (--raw)");
    got.assert_code(0);
    assert_eq!(got.stdout.len(), size);
    assert!(got.stdout == std::fs::read(&src).unwrap(), "nc got other bytes");
    (tx, got)
}

#[test]
fn a_file_goes_to_nc_listening() {
    if !have_nc("a_file_goes_to_nc_listening") {
        return;
    }
    for size in [0, 1, 65_537, (20 << 20) + 7] {
        let (tx, _) = file_to_nc("127.0.0.1", size, &["-v"]);
        tx.assert_stderr("sendfile (file → socket)");
    }
}

#[test]
fn a_file_goes_to_nc_by_read_write() {
    if !have_nc("a_file_goes_to_nc_by_read_write") {
        return;
    }
    let (tx, _) = file_to_nc("127.0.0.1", (3 << 20) + 5, &["-v", "--no-zerocopy"]);
    tx.assert_stderr("read/write because --no-zerocopy was given");
}

#[test]
fn a_file_goes_to_nc_over_ipv6() {
    if !have_nc("a_file_goes_to_nc_over_ipv6") {
        return;
    }
    if !have_ipv6() {
        return skip("a_file_goes_to_nc_over_ipv6", "no IPv6 loopback");
    }
    file_to_nc("::1", (2 << 20) + 1, &[]);
}

#[test]
fn stdin_from_a_pipe_goes_to_nc() {
    if !have_nc("stdin_from_a_pipe_goes_to_nc") {
        return;
    }
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (5 << 20) + 3, 11);
    let bytes = std::fs::read(&src).unwrap();
    // -N: nc shuts down its own side at once (its stdin is empty); the
    // sender must go on sending all the same.
    let (nc, port) = nc_listen("127.0.0.1", &["-N"], Stdio::null());
    let (tx, mut pipe) = env.send_from_pipe(&["--raw", "-v"], &format!("127.0.0.1:{port}"));
    pipe.write_all(&bytes).unwrap();
    drop(pipe);
    let tx = tx.finish();
    let got = nc.finish();
    tx.assert_code(0)
        .assert_stderr("splice (pipe → broker pipe → socket)")
        .assert_stderr("sent stdin to");
    got.assert_code(0);
    assert!(got.stdout == bytes, "nc got other bytes");
}

#[test]
fn nc_sends_a_file_into_recv_raw() {
    if !have_nc("nc_sends_a_file_into_recv_raw") {
        return;
    }
    for size in [0, 1, (20 << 20) + 9] {
        let env = TestEnv::new();
        let src = env.random_file("a.bin", size, 5);
        let rx = recv_raw(&env, &["-v", "dst/out.bin"]);
        nc_send("127.0.0.1", rx.port(), &src).assert_code(0);
        let rr = rx.finish();
        rr.assert_code(0)
            .assert_stderr("splice (socket → pipe → file)")
            .assert_stderr("into dst/out.bin:")
            .assert_stderr("unverified (--raw)");
        assert_one_warning(&rr, &["--raw", "anyone who can reach this port"]);
        assert_eq!(env.list("dst"), vec!["out.bin"], "exactly the file, no temporary");
        assert_same_file(&src, &env.dst("out.bin"));
    }
}

#[test]
fn nc_sends_into_recv_raw_by_read_write() {
    if !have_nc("nc_sends_into_recv_raw_by_read_write") {
        return;
    }
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (4 << 20) + 1, 6);
    let rx = recv_raw(&env, &["-v", "--no-zerocopy", "dst/out.bin"]);
    nc_send("127.0.0.1", rx.port(), &src).assert_code(0);
    rx.finish()
        .assert_code(0)
        .assert_stderr("read/write because --no-zerocopy was given");
    assert_same_file(&src, &env.dst("out.bin"));
}

#[test]
fn nc_sends_into_recv_raw_on_stdout() {
    if !have_nc("nc_sends_into_recv_raw_on_stdout") {
        return;
    }
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (6 << 20) + 2, 7);
    let rx = recv_raw(&env, &["-v", "-"]);
    nc_send("127.0.0.1", rx.port(), &src).assert_code(0);
    let rr = rx.finish();
    // stdout is a pipe here: the socket is spliced straight into it.
    rr.assert_code(0).assert_stderr("splice (socket → stdout pipe)");
    assert!(rr.stdout == std::fs::read(&src).unwrap(), "stdout holds other bytes");
    assert!(env.list("dst").is_empty());
}

#[test]
fn nc_without_n_never_ends_the_stream_so_nothing_is_written() {
    if !have_nc("nc_without_n_never_ends_the_stream_so_nothing_is_written") {
        return;
    }
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 100_000, 8);
    let rx = recv_raw(&env, &["--idle-timeout", "1", "dst/out.bin"]);
    // Without -N, nc never shuts down its side at the end of its input:
    // the receiver cannot know the stream is over, and gives up.
    let mut cmd = Command::new("nc");
    cmd.args(["127.0.0.1", &rx.port().to_string()])
        .stdin(std::fs::File::open(&src).unwrap());
    let nc = Running::spawn(cmd, "nc");
    let rr = rx.finish();
    rr.assert_code(7).assert_stderr("sent nothing for 1 s (--idle-timeout)");
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
    nc.finish();
}

#[test]
fn nc_gets_a_file_from_a_listening_raw_sender() {
    if !have_nc("nc_gets_a_file_from_a_listening_raw_sender") {
        return;
    }
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (3 << 20) + 4, 9);
    let mut cmd = zcp();
    cmd.current_dir(env.path(""))
        .args(["send", "--raw", "--listen", "127.0.0.1:0"])
        .arg(&src)
        .stdin(Stdio::null());
    let tx = start_listening(cmd, "zcp send --raw --listen");
    let mut cmd = Command::new("nc");
    cmd.args(["127.0.0.1", &tx.port().to_string()]).stdin(Stdio::null());
    let got = Running::spawn(cmd, "nc").finish();
    let ts = tx.finish();
    ts.assert_code(0).assert_stderr("unverified (--raw)");
    assert_one_warning(&ts, &["--raw", "first connection to this port"]);
    got.assert_code(0);
    assert!(got.stdout == std::fs::read(&src).unwrap(), "nc got other bytes");
}

#[test]
fn recv_raw_connects_to_nc_listening() {
    if !have_nc("recv_raw_connects_to_nc_listening") {
        return;
    }
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (2 << 20) + 5, 10);
    let (nc, port) = nc_listen("127.0.0.1", &["-N"], Stdio::from(std::fs::File::open(&src).unwrap()));
    let mut cmd = zcp();
    cmd.current_dir(env.path("")).args([
        "recv",
        "--raw",
        "--connect",
        &format!("127.0.0.1:{port}"),
        "dst/out.bin",
    ]);
    let rr = Running::spawn(cmd, "zcp recv --raw --connect").finish();
    rr.assert_code(0).assert_stderr("unverified (--raw)");
    nc.finish().assert_code(0);
    assert_same_file(&src, &env.dst("out.bin"));
}
