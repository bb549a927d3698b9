//! `--raw` with zcp at both ends, or where netcat cannot show it: a
//! zcp peer that forgot `--raw`, forced fallbacks of the zero-copy paths,
//! resets, interruptions, a peer that never closes, `-n`, and the options
//! `--raw` refuses.

use super::*;

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
