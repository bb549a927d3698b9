//! `--raw` against real OpenBSD netcat on the other end, both ways, and
//! against zcp itself: bytes compared, files in place only after a clean
//! end of the stream, nothing left after a reset or an interruption, and
//! the options `--raw` cannot take refused. Without `nc` the netcat cases
//! say SKIPPED, unless ZCP_REQUIRE_NC=1 (as in .ci/run) makes that a
//! failure.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::env::*;

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

#[test]
fn raw_zcp_to_raw_zcp() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (9 << 20) + 3, 14);
    let rx = recv_raw(&env, &["dst/copy"]);
    send_raw(&env, &[src.to_str().unwrap()], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&src, &env.dst("copy"));
}

#[test]
fn no_clobber_keeps_what_is_there_and_takes_no_connection() {
    let env = TestEnv::new();
    std::fs::write(env.dst("out"), b"old").unwrap();
    let mut cmd = zcp();
    cmd.current_dir(env.path(""))
        .args(["recv", "--raw", "-n", "-l", "127.0.0.1:0", "dst/out"])
        .stdin(Stdio::null());
    let rr = Running::spawn(cmd, "zcp recv --raw -n").finish();
    rr.assert_code(0)
        .assert_stderr("skipped dst/out: it exists and --no-clobber keeps it");
    assert!(!rr.stderr.contains("listening on"), "{}", rr.stderr);
    assert_eq!(std::fs::read(env.dst("out")).unwrap(), b"old");
    assert_eq!(env.list("dst"), vec!["out"]);
}

#[test]
fn no_clobber_keeps_what_appeared_while_the_stream_came() {
    let env = TestEnv::new();
    let mut rx = recv_raw(&env, &["-v", "-n", "dst/out"]);
    let mut sock = TcpStream::connect(&rx.addr).unwrap();
    sock.write_all(&[3u8; 10_000]).unwrap();
    rx.run.await_stderr("the connection", |s| s.contains("connection from"));
    std::fs::write(env.dst("out"), b"old").unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    rx.finish()
        .assert_code(0)
        .assert_stderr("skipped dst/out: it exists and --no-clobber keeps it; the 10000 bytes");
    assert_eq!(std::fs::read(env.dst("out")).unwrap(), b"old");
    assert_eq!(env.list("dst"), vec!["out"]);
}

#[test]
fn a_zcp_sender_without_raw_is_refused_and_nothing_replaced() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 10_000, 19);
    std::fs::write(env.dst("out"), b"old").unwrap();
    let rx = recv_raw(&env, &["dst/out"]);
    // Not --raw: its handshake must not land in dst/out as the data.
    let tx = env.send(&["--timeout", "2", src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(8)
        .assert_stderr("protocol error: the peer is a zcp sender without --raw; use zcp recv without --raw");
    assert_ne!(tx.code(), 0, "{}", tx.stderr);
    assert_eq!(std::fs::read(env.dst("out")).unwrap(), b"old", "the old file stays");
    assert_eq!(env.list("dst"), vec!["out"], "no temporary left");
    // On stdout too, not one byte of the handshake.
    let rx = recv_raw(&env, &["-"]);
    env.send(&["--timeout", "2", src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(8).assert_stderr("zcp sender without --raw");
    assert!(rr.stdout.is_empty(), "{} bytes on stdout", rr.stdout.len());
}

#[test]
fn a_stream_shorter_than_the_magic_is_raw_data() {
    let env = TestEnv::new();
    for head in [&b""[..], b"\x89", b"\x89ZC"] {
        let rx = recv_raw(&env, &["dst/short"]);
        let mut sock = TcpStream::connect(&rx.addr).unwrap();
        sock.write_all(head).unwrap();
        sock.shutdown(std::net::Shutdown::Write).unwrap();
        rx.finish().assert_code(0);
        assert_eq!(std::fs::read(env.dst("short")).unwrap(), head);
    }
}

#[test]
fn a_zcp_receiver_without_raw_is_told_apart() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 10_000, 20);
    let mut rx = env.recv(&["--no-auth", "dst"]);
    let tx = send_raw(&env, &[src.to_str().unwrap()], &rx.addr);
    tx.assert_code(8)
        .assert_stderr("protocol error: the peer is a zcp receiver without --raw");
    assert!(!tx.stderr.contains("read and dropped"), "{}", tx.stderr);
    // The receiver turned the connection away and waits for the next.
    rx.run.kill(libc::SIGINT);
    rx.finish();
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
}

#[test]
fn a_silent_sender_times_out_into_a_stdout_pipe() {
    let env = TestEnv::new();
    // stdout is a pipe the test reads: the socket is spliced straight in.
    let rx = recv_raw(&env, &["-v", "--idle-timeout", "1", "-"]);
    let mut sock = TcpStream::connect(&rx.addr).unwrap();
    sock.write_all(b"0123456789").unwrap();
    // ... and then nothing, with the connection open.
    let rr = rx.finish();
    rr.assert_code(7)
        .assert_stderr("sent nothing for 1 s (--idle-timeout)")
        .assert_stderr("stdout has 10 bytes of an incomplete stream");
    assert_eq!(rr.stdout, b"0123456789");
    drop(sock);
}

/// The forced fallbacks of both raw ends (house rule: every zero-copy
/// path has one that is tested).
#[test]
fn recv_raw_rescues_the_bytes_in_its_pipe_when_the_file_refuses_splice() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (3 << 20) + 17, 22);
    // The second splice is pipe → file, with bytes already in the pipe.
    let fault = [("ZCP_FAULT", "splice=EINVAL@2")];
    let rx = env.recv_with_env("127.0.0.1:0", &["--raw", "-v", "dst/out"], &fault);
    send_raw(&env, &[src.to_str().unwrap()], &rx.addr).assert_code(0);
    rx.finish()
        .assert_code(0)
        .assert_stderr("read/write (socket → pipe → file)")
        .assert_stderr("splice is not supported for this destination (EINVAL");
    assert_same_file(&src, &env.dst("out"));
}

#[test]
fn send_raw_falls_back_to_read_write_when_sendfile_is_refused() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (3 << 20) + 17, 23);
    let rx = recv_raw(&env, &["dst/out"]);
    let fault = [("ZCP_FAULT", "sendfile=EINVAL")];
    env.send_with_env(&["--raw", "-v", src.to_str().unwrap()], &rx.addr, &fault)
        .assert_code(0)
        .assert_stderr("read/write (file → socket)")
        .assert_stderr("sendfile is not supported for this file and socket (EINVAL");
    rx.finish().assert_code(0);
    assert_same_file(&src, &env.dst("out"));
    // Refused after the first bytes went out by sendfile, there is no
    // falling back: the sender fails and resets, and nothing is kept.
    let src = env.random_file("b.bin", 20 << 20, 24);
    let rx = recv_raw(&env, &["dst/later"]);
    let fault = [("ZCP_FAULT", "sendfile=EINVAL@2")];
    env.send_with_env(&["--raw", src.to_str().unwrap()], &rx.addr, &fault)
        .assert_code(1)
        .assert_stderr("Invalid argument");
    rx.finish().assert_code(7).assert_stderr("Connection reset by peer");
    assert_eq!(env.list("dst"), vec!["out"]);
}

/// Closes `sock` with a reset (SO_LINGER 0).
fn reset(sock: TcpStream) {
    socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock);
}

#[test]
fn a_reset_leaves_nothing_under_the_final_name() {
    let env = TestEnv::new();
    std::fs::write(env.dst("kept"), b"old").unwrap();
    let mut rx = recv_raw(&env, &["-v", "dst/kept"]);
    let mut sock = TcpStream::connect(&rx.addr).unwrap();
    sock.write_all(&vec![7u8; 300_000]).unwrap();
    rx.run.await_stderr("the connection", |s| s.contains("connection from"));
    reset(sock);
    let rr = rx.finish();
    rr.assert_code(7)
        .assert_stderr("nothing written to dst/kept")
        .assert_stderr("Connection reset by peer");
    assert_eq!(std::fs::read(env.dst("kept")).unwrap(), b"old", "the old file stays");
    assert_eq!(env.list("dst"), vec!["kept"], "no temporary left");
}

#[test]
fn an_interrupted_raw_sender_resets_and_nothing_is_committed() {
    let env = TestEnv::new();
    let rx = recv_raw(&env, &["-v", "dst/out"]);
    let (mut tx, mut pipe) = env.send_from_pipe(&["--raw", "-v"], &rx.addr);
    pipe.write_all(&[1u8; 100_000]).unwrap();
    // The sender is connected and waits for more input.
    tx.await_stderr("the connection", |s| s.contains("connected to"));
    tx.kill(libc::SIGINT);
    let ts = tx.finish();
    drop(pipe);
    ts.assert_code(130);
    let rr = rx.finish();
    rr.assert_code(7).assert_stderr("Connection reset by peer");
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
}

#[test]
fn a_file_that_changes_while_sent_raw_is_reset_not_closed() {
    let env = TestEnv::new();
    // Larger than one sendfile call, so the second comes mid-file; the
    // sender stops itself just before it.
    let src = env.random_file("a.bin", (9 << 20) + 1, 18);
    let rx = recv_raw(&env, &["dst/out"]);
    let stop = [("ZCP_FAULT", "sendfile=STOP@2")];
    let mut tx = env
        .start_send(&["--raw", src.to_str().unwrap()], &rx.addr, &stop, Stdio::null())
        .stopped();
    let mut f = std::fs::OpenOptions::new().append(true).open(&src).unwrap();
    f.write_all(b"more").unwrap();
    drop(f);
    tx.resume();
    let ts = tx.finish();
    ts.assert_code(6).assert_stderr("changed while being sent");
    rx.finish().assert_code(7).assert_stderr("Connection reset by peer");
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
}

#[test]
fn a_reset_stays_a_network_failure_when_the_file_changed_too() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", (9 << 20) + 1, 21);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = [("ZCP_FAULT", "sendfile=STOP@2")];
    let tx = env.start_send(&["--raw", src.to_str().unwrap()], &addr, &stop, Stdio::null());
    let (sock, _) = listener.accept().unwrap();
    let reading = sock.try_clone().unwrap();
    let reader = std::thread::spawn(move || std::io::copy(&mut &reading, &mut std::io::sink()));
    let mut tx = tx.stopped();
    // Both at once while the sender is stopped: the file grows and the
    // peer resets the connection.
    let mut f = std::fs::OpenOptions::new().append(true).open(&src).unwrap();
    f.write_all(b"more").unwrap();
    drop(f);
    sock.shutdown(std::net::Shutdown::Read).unwrap();
    reader.join().unwrap().unwrap();
    reset(sock);
    tx.resume();
    tx.finish().assert_code(7);
}

#[test]
fn an_interrupted_raw_receiver_leaves_nothing() {
    let env = TestEnv::new();
    let mut rx = recv_raw(&env, &["-v", "dst/out"]);
    let mut sock = TcpStream::connect(&rx.addr).unwrap();
    sock.write_all(&[2u8; 100_000]).unwrap();
    rx.run.await_stderr("the connection", |s| s.contains("connection from"));
    rx.run.kill(libc::SIGINT);
    let rr = rx.finish();
    rr.assert_code(130);
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
    drop(sock);
}

/// A raw peer on a free loopback port that first sends `back`, then
/// reads everything until the sender's FIN, and returns what it read and
/// its socket, still open (the sender decides when the connection ends).
fn peer_that_stays(back: Vec<u8>) -> (String, std::thread::JoinHandle<(Vec<u8>, TcpStream)>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.write_all(&back).unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut sock, &mut got).unwrap();
        (got, sock)
    });
    (addr, peer)
}

/// After the sender exited: it closed the connection without a reset.
fn closed_cleanly(mut sock: TcpStream) {
    let mut rest = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut sock, &mut rest).unwrap(), 0);
}

#[test]
fn a_peer_that_never_closes_is_given_a_grace_period() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 200_000, 16);
    let (addr, peer) = peer_that_stays(Vec::new());
    let tx = send_raw(&env, &[src.to_str().unwrap()], &addr);
    tx.assert_code(0);
    assert_one_warning(
        &tx,
        &[
            "acknowledged all 200000 bytes",
            "did not close the connection within 5 s",
        ],
    );
    let (got, sock) = peer.join().unwrap();
    assert!(got == std::fs::read(&src).unwrap(), "the peer got other bytes");
    closed_cleanly(sock);
}

#[test]
fn what_the_peer_sends_back_is_read_and_dropped() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 1 << 20, 12);
    let (addr, peer) = peer_that_stays(vec![9u8; 70_000]);
    let tx = send_raw(&env, &[src.to_str().unwrap()], &addr);
    tx.assert_code(0);
    let warned = warnings(&tx.stderr);
    assert_eq!(warned.len(), 2, "{}", tx.stderr);
    assert_holds(warned[0], &["sent 70000 bytes", "read and dropped"]);
    let (got, sock) = peer.join().unwrap();
    assert!(got == std::fs::read(&src).unwrap(), "the peer got other bytes");
    closed_cleanly(sock);
}

#[test]
fn raw_takes_a_file_path_or_stdout_not_a_directory() {
    let env = TestEnv::new();
    for dest in [".", "dst"] {
        let mut cmd = zcp();
        cmd.current_dir(env.path(""))
            .args(["recv", "--raw", "-l", "127.0.0.1:0", dest]);
        let out = Running::spawn(cmd, "zcp recv --raw").finish();
        out.assert_code(2)
            .assert_stderr("is a directory, and a raw stream carries no name");
        assert!(!out.stderr.contains("listening on"), "{}", out.stderr);
    }
}

#[test]
fn raw_refuses_what_a_plain_stream_cannot_carry() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 10, 17);
    let a = src.to_str().unwrap();
    let cases: [(&[&str], &str); 16] = [
        (&["recv", "--raw", "-k", "out"], "takes one connection"),
        (
            &["recv", "--raw", "--max-connections", "2", "-k", "out"],
            "takes one connection",
        ),
        (&["recv", "--raw", "--checksum", "sha256", "out"], "verifies nothing"),
        (&["recv", "--raw", "--key-file", "k", "out"], "uses no key"),
        (&["recv", "--raw", "--timeout", "5", "out"], "no handshake"),
        (&["recv", "--raw", "--no-auth", "out"], "authenticates nobody anyway"),
        (&["send", "--raw", "--no-auth", a, "h:1"], "authenticates nobody anyway"),
        (&["send", "--raw", "-r", a, "h:1"], "one file or stdin"),
        (&["send", "--raw", "--resume", a, "h:1"], "no blocks to resume"),
        (&["send", "--raw", "--retries", "3", a, "h:1"], "a second connection"),
        (&["send", "--raw", "-P", "2", a, "h:1"], "on one connection"),
        (&["send", "--raw", "--name", "x", a, "h:1"], "sends no name"),
        (&["send", "--raw", "-n", a, "h:1"], "give -n to zcp recv --raw"),
        (&["send", "--raw", a, a, "h:1"], "exactly one SOURCE"),
        (&["send", "--raw", "--json", a, "h:1"], "no JSON report"),
        (&["recv", "--raw", "--json-file", "r.json", "out"], "no JSON report"),
    ];
    for (args, why) in cases {
        let out = zcp().current_dir(env.path("")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("zcp: error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?} lacks {why:?}: {stderr}");
    }
    let out = zcp()
        .current_dir(env.path(""))
        .args(["send", "--raw", "src", "h:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("src is a directory; --raw sends one file or stdin"));
}
