//! Adversarial peers: the hand-written fake peer (peer.rs, built from
//! docs/PROTOCOL.md) lies, breaks the protocol or tries to escape the
//! destination, against the real binary. Each case checks the exit code,
//! the message, and the exact state of the disk afterwards.

use std::process::Stdio;

use crate::env::*;
use crate::peer::*;

/// A real receiver into dst/ (plus `args`), a sentinel directory outside
/// it, and the fake sender's script. Returns the receiver's outcome after
/// checking that nothing outside dst/ changed.
fn against_receiver(env: &TestEnv, args: &[&str], script: impl FnOnce(&str)) -> Finished {
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let mut all = args.to_vec();
    all.push("dst");
    let rx = env.recv(&all);
    script(&rx.addr);
    let out = rx.finish();
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "something was written outside dst/"
    );
    assert_eq!(std::fs::read(outside.join("sentinel")).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read_dir(env.dir.path()).unwrap().count(),
        3,
        "only src/, dst/ and outside/ may exist"
    );
    out
}

/// Sends ENTRY, raw payload and TRAILER for a sized file.
fn send_sized(p: &mut Peer, name: &[u8], data: &[u8], digest: &[u8]) {
    p.send(&entry(name, Some(data.len() as u64), Some(0o644)));
    p.send(data);
    p.send(&trailer(data.len() as u64, digest));
}

/// The VERDICT status byte the receiver sent.
fn verdict_status(p: &mut Peer) -> u8 {
    p.expect_frame(VERDICT)[0]
}

fn assert_no_escape_bytes(text: &str) {
    assert!(!text.contains('\u{1b}'), "a raw ESC reached the terminal: {text:?}");
}

#[test]
fn a_peer_that_does_not_speak_zcp_is_refused() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::connect(addr);
        p.send_lossy(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        p.drain();
    });
    out.assert_code(1).assert_stderr("not speaking the zcp protocol");
    assert!(env.list("dst").is_empty());
}

#[test]
fn an_incompatible_version_range_is_refused() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::connect(addr);
        p.send_lossy(&preamble(9, 7));
        p.drain();
    });
    out.assert_code(1).assert_stderr("incompatible versions");
}

#[test]
fn hello_options_unknown_optional_is_ignored_unknown_critical_is_refused() {
    let with_option = |tag: u16| {
        let mut h = hello(ROLE_SENDER, SHA256);
        h.extend_from_slice(&tag.to_be_bytes());
        h.extend_from_slice(&3u16.to_be_bytes());
        h.extend_from_slice(b"new");
        let len = (h.len() - 5) as u32;
        h[1..5].copy_from_slice(&len.to_be_bytes());
        h
    };
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::connect(addr);
        p.send(&preamble(1, 1));
        p.send(&with_option(0x0077));
        p.read_exact_vec(8);
        p.expect_frame(HELLO);
        send_sized(&mut p, b"ok.txt", b"hello", &sha256(b"hello"));
        assert_eq!(verdict_status(&mut p), 0);
        p.send(&frame(DONE, &[]));
        p.expect_frame(DONE);
    });
    out.assert_code(0);
    assert_eq!(std::fs::read(env.dst("ok.txt")).unwrap(), b"hello");

    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::connect(addr);
        p.send(&preamble(1, 1));
        p.send(&with_option(0x8077));
        p.drain();
    });
    out.assert_code(1).assert_stderr("does not understand");
}

#[test]
fn a_peer_claiming_to_be_a_receiver_is_refused() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::connect(addr);
        p.send(&preamble(1, 1));
        p.send(&hello(ROLE_RECEIVER, SHA256));
        p.drain();
    });
    out.assert_code(1).assert_stderr("not a zcp sender");
}

#[test]
fn names_that_escape_or_break_the_rules_are_refused() {
    let long = vec![b'n'; 256];
    let cases: [(&[u8], &str); 8] = [
        (b"../x", "contains '/'"),
        (b"/abs", "contains '/'"),
        (b"a/b", "contains '/'"),
        (b".", "is not allowed"),
        (b"..", "is not allowed"),
        (b"", "empty file name"),
        (b"nul\0byte", "NUL"),
        (&long, "exceeds 255"),
    ];
    for (name, needle) in cases {
        let env = TestEnv::new();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = Peer::sender_handshake(addr, SHA256);
            p.send_lossy(&entry(name, Some(4), None));
            p.send_lossy(b"evil");
            p.drain();
        });
        out.assert_code(1).assert_stderr(needle);
        assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
        assert!(env.list("dst").is_empty(), "name {name:?}: {:?}", env.list("dst"));
    }
}

#[test]
fn unknown_entry_kinds_and_flags_are_refused() {
    for (patch_at, value, needle) in [
        (5usize, 9u8, "unsupported entry kind"),
        (6, 0x80, "unknown entry flags"),
    ] {
        let env = TestEnv::new();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = Peer::sender_handshake(addr, SHA256);
            let mut e = entry(b"f", Some(1), None);
            e[patch_at] = value;
            p.send_lossy(&e);
            p.drain();
        });
        out.assert_code(1).assert_stderr(needle);
        assert!(env.list("dst").is_empty());
    }
}

#[test]
fn oversized_and_unknown_frames_are_refused_from_the_header_alone() {
    let huge_entry = [ENTRY, 0, 1, 0x11, 0x70]; // 70000 bytes
    let huge_data = {
        let mut h = vec![DATA];
        h.extend_from_slice(&((16u32 << 20) + 1).to_be_bytes());
        h
    };
    for (header, needle) in [
        (huge_entry.to_vec(), "exceeds the limit"),
        (huge_data, "exceeds the limit"),
        (vec![42, 0, 0, 0, 0], "unknown frame type 42"),
    ] {
        let env = TestEnv::new();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = Peer::sender_handshake(addr, SHA256);
            if header[0] == DATA {
                p.send(&entry(b"s", None, None));
            }
            // Only the header: the receiver must not wait for the body.
            p.send(&header);
            p.expect_frame(ERROR);
        });
        out.assert_code(1).assert_stderr(needle);
        assert!(env.list("dst").is_empty());
    }
}

#[test]
fn a_wrong_digest_is_an_integrity_failure_and_keeps_the_old_file() {
    let env = TestEnv::new();
    std::fs::write(env.dst("report.pdf"), b"old version").unwrap();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::sender_handshake(addr, SHA256);
        send_sized(&mut p, b"report.pdf", b"new version", &sha256(b"something else"));
        assert_eq!(verdict_status(&mut p), 1, "VERDICT must say mismatch");
        p.send(&frame(DONE, &[]));
        p.expect_frame(DONE);
    });
    out.assert_code(3)
        .assert_stderr("integrity check failed")
        .assert_stderr("report.pdf");
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    assert_eq!(env.list("dst"), vec!["report.pdf"]);
    assert_eq!(std::fs::read(env.dst("report.pdf")).unwrap(), b"old version");
}

#[test]
fn trailers_that_lie_are_refused() {
    for (count_delta, digest_len, needle) in [
        (1i64, 32usize, "says it sent"),
        (-1, 32, "says it sent"),
        (0, 31, "digest"),
    ] {
        let env = TestEnv::new();
        let data = b"0123456789";
        let out = against_receiver(&env, &[], |addr| {
            let mut p = Peer::sender_handshake(addr, SHA256);
            p.send(&entry(b"t", Some(data.len() as u64), None));
            p.send(data);
            let digest = sha256(data);
            p.send_lossy(&trailer(
                (data.len() as i64 + count_delta) as u64,
                &digest[..digest_len],
            ));
            p.drain();
        });
        out.assert_code(1).assert_stderr(needle);
        assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
    }
}

#[test]
fn a_sender_that_vanishes_mid_payload_leaves_nothing() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::sender_handshake(addr, SHA256);
        p.send(&entry(b"half.bin", Some(1_000_000), None));
        p.send(&vec![1u8; 500_000]);
    });
    out.assert_code(1)
        .assert_stderr("half.bin")
        .assert_stderr("closed the connection after 500000 of 1000000 bytes");
    assert!(env.list("dst").is_empty());
}

#[test]
fn an_aborted_stream_is_discarded_and_its_reason_escaped() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::sender_handshake(addr, SHA256);
        p.send(&entry(b"s.log", None, None));
        p.send(&frame(DATA, b"some bytes"));
        p.send(&frame(ABORT, &text("disk read error \u{1b}[31m")));
        assert_eq!(verdict_status(&mut p), 2);
        p.send(&frame(DONE, &[]));
        p.expect_frame(DONE);
    });
    out.assert_code(1)
        .assert_stderr("aborted")
        .assert_stderr("disk read error");
    assert_no_escape_bytes(&out.stderr);
    assert!(env.list("dst").is_empty());
}

#[test]
fn a_name_with_terminal_escapes_arrives_but_is_shown_escaped() {
    let env = TestEnv::new();
    let name = b"evil\x1b[31mred";
    let out = against_receiver(&env, &["-v"], |addr| {
        let mut p = Peer::sender_handshake(addr, SHA256);
        send_sized(&mut p, name, b"x", &sha256(b"x"));
        assert_eq!(verdict_status(&mut p), 0);
        p.send(&frame(DONE, &[]));
        p.expect_frame(DONE);
    });
    out.assert_code(0).assert_stderr("evil\\u{1b}[31mred");
    assert_no_escape_bytes(&out.stderr);
    assert_eq!(env.list("dst"), vec!["evil\u{1b}[31mred"]);
}

#[test]
fn setuid_and_setgid_bits_are_never_applied() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let mut cmd = std::process::Command::new("sh");
    cmd.current_dir(env.dir.path())
        .arg("-c")
        .arg(format!("umask 022; exec {} recv -l 127.0.0.1:0 dst", zcp_path()));
    let rx = start_receiver(cmd);
    let mut p = Peer::sender_handshake(&rx.addr, SHA256);
    p.send(&entry(b"suid", Some(1), Some(0o6777)));
    p.send(b"x");
    p.send(&trailer(1, &sha256(b"x")));
    assert_eq!(verdict_status(&mut p), 0);
    p.send(&frame(DONE, &[]));
    rx.finish().assert_code(0);
    assert_eq!(std::fs::metadata(env.dst("suid")).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn a_second_file_for_a_single_file_destination_is_refused() {
    let env = TestEnv::new();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "-l", "127.0.0.1:0", "dst/one"]);
    let rx = start_receiver(cmd);
    let mut p = Peer::sender_handshake(&rx.addr, SHA256);
    send_sized(&mut p, b"a", b"first", &sha256(b"first"));
    assert_eq!(verdict_status(&mut p), 0);
    p.send_lossy(&entry(b"b", Some(6), None));
    p.send_lossy(b"second");
    p.drain();
    rx.finish().assert_code(1).assert_stderr("second file");
    assert_eq!(env.list("dst"), vec!["one"]);
    assert_eq!(std::fs::read(env.dst("one")).unwrap(), b"first");
}

#[test]
fn a_session_without_a_file_is_an_error() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = Peer::sender_handshake(addr, SHA256);
        p.send(&frame(DONE, &[]));
        p.drain();
    });
    out.assert_code(1).assert_stderr("without sending a file");
}

/// Runs the real `zcp send` of a small file against a fake receiver that
/// completes the handshake, reads the entry and payload, and then plays
/// `answer`. Returns the sender's outcome.
fn against_sender(answer: impl FnOnce(&mut Peer, &[u8])) -> Finished {
    let env = TestEnv::new();
    let data = b"the payload".to_vec();
    std::fs::write(env.src("f.txt"), &data).unwrap();
    let fake = FakeReceiver::bind();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "src/f.txt", &fake.addr()])
        .stdin(Stdio::null());
    let sender = Running::spawn(cmd, "zcp send");
    let mut p = fake.accept();
    let e = p.expect_frame(ENTRY);
    assert_eq!(&e[e.len() - 5..], b"f.txt", "ENTRY ends with the name");
    let payload = p.read_exact_vec(data.len());
    assert_eq!(payload, data);
    let t = p.expect_frame(TRAILER);
    assert_eq!(u64::from_be_bytes(t[..8].try_into().unwrap()), data.len() as u64);
    assert_eq!(&t[10..], &sha256(&data)[..], "TRAILER digest is SHA-256 of the payload");
    answer(&mut p, &data);
    sender.finish()
}

#[test]
fn the_sender_trusts_only_a_committed_verdict_with_its_own_digest() {
    against_sender(|p, _| {
        p.send(&verdict(1, &sha256(b"other"), "digest mismatch"));
        p.send_lossy(&frame(DONE, &[]));
    })
    .assert_code(3)
    .assert_stderr("integrity check failed");

    against_sender(|p, _| {
        p.send(&verdict(0, &sha256(b"other"), ""));
        p.send_lossy(&frame(DONE, &[]));
    })
    .assert_code(3)
    .assert_stderr("is not ours");

    against_sender(|p, data| {
        p.expect_frame(DONE);
        p.send(&verdict(0, &sha256(data), ""));
        p.send(&frame(DONE, &[]));
    })
    .assert_code(0);
}

#[test]
fn the_sender_reports_a_receiver_error_or_disappearance() {
    let out = against_sender(|p, _| p.send(&error(1, "disk on fire \u{1b}[2J")));
    out.assert_code(1).assert_stderr("receiver: disk on fire");
    assert_no_escape_bytes(&out.stderr);

    against_sender(|p, _| {
        let _ = p.stream.shutdown(std::net::Shutdown::Both);
    })
    .assert_code(1)
    .assert_stderr("without a verdict");
}

#[test]
fn the_sender_refuses_a_receiver_with_another_checksum() {
    let env = TestEnv::new();
    std::fs::write(env.src("f"), b"x").unwrap();
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "src/f", &addr])
        .stdin(Stdio::null());
    let sender = Running::spawn(cmd, "zcp send");
    let (stream, _) = fake.accept().unwrap();
    let mut p = Peer { stream };
    p.send(&preamble(1, 1));
    p.send(&hello(ROLE_RECEIVER, 0));
    sender.finish().assert_code(1).assert_stderr("--checksum none");
}
