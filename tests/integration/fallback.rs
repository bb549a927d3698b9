//! Every zero-copy path and its read/write fallback: `-v` names the
//! mechanism that moved the bytes, `--no-zerocopy` forces read/write, and
//! `ZCP_FAULT` makes the kernel calls fail with chosen errnos so each
//! fallback (and each refusal to fall back) is exercised for real. Also
//! the named staging that replaces O_TMPFILE: 0600 until committed.

use std::io::Write;
use std::process::Stdio;

use crate::env::*;

/// Which end gets the injected fault.
#[derive(Clone, Copy)]
enum Side {
    Sender,
    Receiver,
}

struct Case<'a> {
    /// ZCP_FAULT value and the side it applies to.
    fault: Option<(Side, &'a str)>,
    /// Extra arguments for both ends.
    both_args: &'a [&'a str],
    /// Send from stdin as a pipe instead of a file.
    stdin_pipe: bool,
    /// Receive to stdout (`-`) instead of dst/.
    to_stdout: bool,
    size: usize,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Case {
            fault: None,
            both_args: &[],
            stdin_pipe: false,
            to_stdout: false,
            size: (3 << 20) + 17,
        }
    }
}

/// Runs one verbose transfer and returns (sender, receiver, env, source).
fn run(case: &Case<'_>) -> (Finished, Finished, TestEnv, std::path::PathBuf) {
    let env = TestEnv::new();
    let src = env.random_file("data.bin", case.size, 77);
    let mut rcmd = zcp();
    rcmd.current_dir(env.dir.path())
        .args(["recv", "-v", "-l", "127.0.0.1:0"])
        .args(case.both_args)
        .arg(if case.to_stdout { "-" } else { "dst" });
    let mut scmd = zcp();
    scmd.current_dir(env.dir.path())
        .args(["send", "-v"])
        .args(case.both_args);
    match case.fault {
        Some((Side::Receiver, f)) => {
            rcmd.env("ZCP_FAULT", f);
        }
        Some((Side::Sender, f)) => {
            scmd.env("ZCP_FAULT", f);
        }
        None => {}
    }
    let rx = start_receiver(rcmd);
    let mut feeder = None;
    if case.stdin_pipe {
        scmd.args(["--name", "data.bin", "-", &rx.addr]);
        let mut cat = std::process::Command::new("cat")
            .arg(&src)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        scmd.stdin(Stdio::from(cat.stdout.take().unwrap()));
        feeder = Some(cat);
    } else {
        scmd.arg(&src).arg(&rx.addr).stdin(Stdio::null());
    }
    let tx = Running::spawn(scmd, "zcp send").finish();
    let rr = rx.finish();
    if let Some(mut cat) = feeder {
        cat.wait().unwrap();
    }
    (tx, rr, env, src)
}

/// Runs `case`, expects success and identical bytes; returns the outputs.
fn run_ok(case: &Case<'_>) -> (Finished, Finished) {
    let (tx, rr, env, src) = run(case);
    tx.assert_code(0);
    rr.assert_code(0);
    if case.to_stdout {
        assert_eq!(rr.stdout, std::fs::read(&src).unwrap(), "stdout payload");
    } else {
        assert_eq!(env.list("dst"), vec!["data.bin"]);
        assert_same_file(&src, &env.dst("data.bin"));
    }
    (tx, rr)
}

#[test]
fn verbose_names_the_zero_copy_mechanisms() {
    let (tx, rr) = run_ok(&Case::default());
    tx.assert_stderr("sendfile (file → socket)");
    rr.assert_stderr("splice (socket → pipe → file)");
    let (tx, rr) = run_ok(&Case {
        stdin_pipe: true,
        to_stdout: true,
        ..Case::default()
    });
    tx.assert_stderr("splice (pipe → socket, tee → hash)");
    rr.assert_stderr("splice (socket → pipe → stdout, tee → hash)");
}

/// `zcp send -v - ADDR` with `stdin` into a fresh receiver; returns the
/// sender's outcome and what arrived.
fn send_verbose_stdin(stdin: Stdio) -> (Finished, Vec<u8>) {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "-v", "-", &rx.addr])
        .stdin(stdin);
    let tx = Running::spawn(cmd, "zcp send -v -").finish();
    rx.finish().assert_code(0);
    tx.assert_code(0);
    let got = std::fs::read(env.dst("stdin")).unwrap();
    (tx, got)
}

#[test]
fn verbose_says_what_stdin_is_and_why_it_moved_as_it_did() {
    let why = ", and zero-copy needs a regular file (sendfile) or a pipe (splice)";
    let null = std::fs::File::open("/dev/null").unwrap();
    let (tx, got) = send_verbose_stdin(Stdio::from(null));
    assert!(got.is_empty());
    tx.assert_stderr("send stdin: read/write (character device → socket): no payload bytes")
        .assert_stderr(&format!(
            "read/write because stdin is the character device /dev/null{why}"
        ));
    assert!(!tx.stderr.contains("pipe →"), "{}", tx.stderr);

    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.write_all(b"from a socket").unwrap();
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    let (tx, got) = send_verbose_stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    assert_eq!(got, b"from a socket");
    tx.assert_stderr("send stdin: read/write (socket → socket): read/write 13 bytes")
        .assert_stderr(&format!("read/write because stdin is a socket{why}"));

    let env = TestEnv::new();
    let file = env.random_file("in", 1000, 9);
    let (tx, _) = send_verbose_stdin(Stdio::from(std::fs::File::open(file).unwrap()));
    tx.assert_stderr("send stdin: sendfile (file → socket): sendfile 1000 bytes");
    assert!(!tx.stderr.contains("because"), "{}", tx.stderr);
}

#[test]
fn verbose_prints_a_sha256sum_compatible_line() {
    let (tx, rr) = run_ok(&Case::default());
    let env = TestEnv::new();
    let want = sha256_file(&env.random_file("data.bin", Case::default().size, 77));
    assert!(
        tx.stderr
            .lines()
            .any(|l| l.starts_with(&want) && l.ends_with("data.bin")),
        "{}",
        tx.stderr
    );
    assert!(rr.stderr.contains(&format!("{want}  dst/data.bin")), "{}", rr.stderr);
}

#[test]
fn stdout_pipe_without_verification_is_spliced_directly() {
    let (_, rr) = run_ok(&Case {
        to_stdout: true,
        both_args: &["--checksum", "none"],
        ..Case::default()
    });
    rr.assert_stderr("splice (socket → stdout pipe)");
}

#[test]
fn no_zerocopy_forces_read_write_on_both_ends() {
    let env = TestEnv::new();
    let src = env.random_file("n.bin", 1 << 20, 5);
    let rx = env.recv(&["-v", "--no-zerocopy", "dst"]);
    let tx = env.send(&["-v", "--no-zerocopy", src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0)
        .assert_stderr("read/write because --no-zerocopy was given");
    rr.assert_code(0)
        .assert_stderr("read/write because --no-zerocopy was given");
    assert_same_file(&src, &env.dst("n.bin"));
}

#[test]
fn unsupported_sendfile_falls_back_to_read_write() {
    for errno in ["EINVAL", "ENOSYS", "EOPNOTSUPP", "EPERM"] {
        let fault = format!("sendfile={errno}");
        let (tx, _) = run_ok(&Case {
            fault: Some((Side::Sender, &fault)),
            ..Case::default()
        });
        tx.assert_stderr("read/write (file → socket)")
            .assert_stderr(&format!("sendfile is not supported for this file and socket ({errno}"));
    }
}

#[test]
fn unsupported_tee_on_stdin_falls_back_to_read_write() {
    let (tx, _) = run_ok(&Case {
        fault: Some((Side::Sender, "tee=EINVAL")),
        stdin_pipe: true,
        ..Case::default()
    });
    tx.assert_stderr("read/write (pipe → socket, tee → hash)")
        .assert_stderr("tee is not supported for this input (EINVAL");
}

#[test]
fn unsupported_splice_from_the_socket_falls_back_on_the_receiver() {
    let (_, rr) = run_ok(&Case {
        fault: Some((Side::Receiver, "splice=EINVAL")),
        ..Case::default()
    });
    rr.assert_stderr("read/write (socket → pipe → file)")
        .assert_stderr("splice is not supported for this socket (EINVAL");
}

/// The second receiver splice is pipe → file: bytes are already in the
/// pipe and must be rescued in order, not lost.
#[test]
fn a_destination_refusing_splice_keeps_the_bytes_already_in_the_pipe() {
    let (_, rr) = run_ok(&Case {
        fault: Some((Side::Receiver, "splice=EINVAL@2")),
        ..Case::default()
    });
    rr.assert_stderr("splice is not supported for this destination (EINVAL");
    let (_, rr) = run_ok(&Case {
        fault: Some((Side::Receiver, "tee=EOPNOTSUPP")),
        to_stdout: true,
        ..Case::default()
    });
    rr.assert_stderr("tee is not supported for this destination (EOPNOTSUPP");
}

#[test]
fn a_stdin_pipe_refusing_splice_to_the_socket_is_rescued() {
    // First splice on the sender is stdin → socket after the tee.
    let (tx, _) = run_ok(&Case {
        fault: Some((Side::Sender, "splice=EINVAL")),
        stdin_pipe: true,
        ..Case::default()
    });
    tx.assert_stderr("splice is not supported for this socket (EINVAL");
}

#[test]
fn other_errors_are_errors_not_fallbacks() {
    for (side, fault) in [(Side::Sender, "sendfile=EIO"), (Side::Receiver, "splice=EIO")] {
        let (tx, rr, env, _) = run(&Case {
            fault: Some((side, fault)),
            ..Case::default()
        });
        assert_eq!(tx.code(), 1, "{fault}: {}", tx.stderr);
        assert_eq!(rr.code(), 1, "{fault}: {}", rr.stderr);
        // Both ends name the failing read (the sender aborts the file and
        // says why), or the receiver's failing write.
        tx.assert_stderr("Input/output error");
        rr.assert_stderr("Input/output error");
        assert!(env.list("dst").is_empty(), "{fault}: {:?}", env.list("dst"));
    }
}

#[test]
fn not_supported_after_the_first_byte_is_an_error() {
    // 20 MiB needs three 8 MiB sendfile calls; the second one fails.
    let (tx, rr, env, _) = run(&Case {
        fault: Some((Side::Sender, "sendfile=EINVAL@2")),
        size: 20 << 20,
        ..Case::default()
    });
    tx.assert_code(1).assert_stderr("Invalid argument");
    // The sender could not say why in the middle of the payload: for the
    // receiver, the connection closed early.
    rr.assert_code(7);
    assert!(env.list("dst").is_empty());
    let (_, rr, env, _) = run(&Case {
        fault: Some((Side::Receiver, "splice=EINVAL@5")),
        ..Case::default()
    });
    rr.assert_code(1).assert_stderr("Invalid argument");
    assert!(env.list("dst").is_empty());
}

#[test]
fn a_filesystem_without_fallocate_still_receives() {
    let (_, rr) = run_ok(&Case {
        fault: Some((Side::Receiver, "fallocate=EOPNOTSUPP")),
        ..Case::default()
    });
    rr.assert_stderr("fallocate is not supported");
}

#[test]
fn a_named_temporary_stays_0600_until_it_is_committed() {
    // Without O_TMPFILE the receiver stages under a hidden name that
    // others could open: while the stream is still open (the test holds
    // the sender's stdin) that file must be 0600, and only the committed
    // file gets the final mode (0644 under umask 022).
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let mut rcmd = std::process::Command::new("sh");
    rcmd.current_dir(env.dir.path())
        .env_remove("ZCP_BLESS")
        .env("NO_COLOR", "1")
        .env("ZCP_KEY", TEST_KEY)
        .env("ZCP_FAULT", "tmpfile=EOPNOTSUPP")
        .arg("-c")
        .arg(format!("umask 022; exec {} recv -v -l 127.0.0.1:0 dst", zcp_path()));
    let rx = start_receiver(rcmd);
    let (tx, mut stdin) = env.send_from_pipe(&["--name", "stream.bin"], &rx.addr);
    let first = vec![b'a'; 100_000];
    stdin.write_all(&first).unwrap();
    let started = std::time::Instant::now();
    let temp = loop {
        if let Some(name) = env.list("dst").into_iter().find(|n| n.starts_with(".zcp-")) {
            break env.dst(&name);
        }
        assert!(started.elapsed() < DEADLINE, "no staged file appeared in dst/");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let staged_mode = std::fs::metadata(&temp).unwrap().permissions().mode() & 0o7777;
    assert_eq!(staged_mode, 0o600, "the staged {temp:?} while it is written");
    stdin.write_all(b"the rest").unwrap();
    drop(stdin);
    tx.finish().assert_code(0);
    rx.finish()
        .assert_code(0)
        .assert_stderr("staging files as hidden .zcp-*.part files");
    assert_eq!(env.list("dst"), ["stream.bin"]);
    let meta = std::fs::metadata(env.dst("stream.bin")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!(meta.len(), first.len() as u64 + 8);
}
