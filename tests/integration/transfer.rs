//! Transfers that must succeed: sizes from empty to 256 MiB over IPv4 and
//! IPv6 loopback, with the zero-copy path and with read/write forced; stdin
//! and stdout in their pipe and file forms; every kind of destination.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use crate::env::*;

/// Sends src/`name` of `size` bytes into dst/ and checks bytes, name and
/// metadata. `extra` goes to both ends (e.g. --no-zerocopy).
fn roundtrip(listen: &str, size: usize, extra: &[&str]) {
    let env = TestEnv::new();
    let name = format!("f{size}.bin");
    let src = env.random_file(&name, size, size as u64 + 7);
    let mut recv_args = extra.to_vec();
    recv_args.push("dst");
    let rx = env.recv_on(listen, &recv_args);
    let mut send_args = extra.to_vec();
    send_args.push(src.to_str().unwrap());
    let tx = env.send(&send_args, &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0);
    rr.assert_code(0);
    assert_eq!(env.list("dst"), vec![name.clone()], "exactly the file, no temp left");
    assert_same_file(&src, &env.dst(&name));
    let (ms, md) = (
        std::fs::metadata(&src).unwrap(),
        std::fs::metadata(env.dst(&name)).unwrap(),
    );
    assert_eq!(md.mtime(), ms.mtime());
    assert_eq!(md.mtime_nsec(), ms.mtime_nsec());
    tx.assert_stderr("verified (sha256)");
    rr.assert_stderr("verified (sha256)");
}

const ODD_SIZES: [usize; 7] = [0, 1, 4095, 65_537, (1 << 20) + 7, (8 << 20) + 13, (17 << 20) + 3];

#[test]
fn odd_sizes_over_ipv4_zero_copy() {
    for size in ODD_SIZES {
        roundtrip("127.0.0.1:0", size, &[]);
    }
}

#[test]
fn odd_sizes_over_ipv4_read_write() {
    for size in ODD_SIZES {
        roundtrip("127.0.0.1:0", size, &["--no-zerocopy"]);
    }
}

#[test]
fn odd_sizes_over_ipv6() {
    if !have_ipv6() {
        return skip("odd_sizes_over_ipv6", "no IPv6 loopback");
    }
    for size in [0, 1, 65_537, (8 << 20) + 13] {
        roundtrip("[::1]:0", size, &[]);
        roundtrip("[::1]:0", size, &["--no-zerocopy"]);
    }
}

#[test]
fn large_random_file_zero_copy() {
    roundtrip("127.0.0.1:0", 256 << 20, &[]);
}

#[test]
fn large_random_file_read_write() {
    roundtrip("127.0.0.1:0", 256 << 20, &["--no-zerocopy"]);
}

#[test]
fn checksum_none_is_reported_as_unverified() {
    let env = TestEnv::new();
    let src = env.random_file("a", 3 << 20, 1);
    let rx = env.recv(&["--checksum", "none", "dst"]);
    let tx = env.send(&["--checksum", "none", src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0).assert_stderr("unverified");
    rr.assert_code(0).assert_stderr("unverified");
    assert_same_file(&src, &env.dst("a"));
}

/// Pipes `data` into `zcp send ... -` and returns the outcome.
fn send_stdin_pipe(env: &TestEnv, args: &[&str], addr: &str, data: &[u8]) -> Finished {
    let (run, mut stdin) = env.send_from_pipe(args, addr);
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        // Small writes, like a producer such as tar, exercise many chunks.
        for chunk in data.chunks(10_240) {
            if stdin.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let out = run.finish();
    writer.join().unwrap();
    out
}

#[test]
fn stdin_pipe_to_directory_with_and_without_zero_copy() {
    for extra in [&[][..], &["--no-zerocopy"][..], &["--checksum", "none"][..]] {
        let env = TestEnv::new();
        let data: Vec<u8> = (0..5_000_003u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut ra = extra.to_vec();
        ra.push("dst");
        let rx = env.recv(&ra);
        let mut sa = extra.to_vec();
        sa.extend(["--name", "stream.bin"]);
        let tx = send_stdin_pipe(&env, &sa, &rx.addr, &data);
        let rr = rx.finish();
        tx.assert_code(0);
        rr.assert_code(0);
        assert_eq!(
            std::fs::read(env.dst("stream.bin")).unwrap(),
            data,
            "extra args {extra:?}"
        );
    }
}

#[test]
fn a_name_may_start_with_a_hyphen() {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    let tx = send_stdin_pipe(&env, &["--name", "-dash"], &rx.addr, b"stream");
    rx.finish().assert_code(0);
    tx.assert_code(0);
    assert_eq!(std::fs::read(env.dst("-dash")).unwrap(), b"stream");

    let src = env.random_file("f", 100, 3);
    let rx = env.recv(&["dst"]);
    let tx = env.send(&["--name", "-v", src.to_str().unwrap()], &rx.addr);
    rx.finish().assert_code(0);
    tx.assert_code(0);
    assert_same_file(&src, &env.dst("-v"));
}

#[test]
fn empty_stdin_pipe_makes_an_empty_file() {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    let tx = send_stdin_pipe(&env, &[], &rx.addr, b"");
    rx.finish().assert_code(0);
    tx.assert_code(0);
    assert_eq!(std::fs::read(env.dst("stdin")).unwrap(), b"");
}

#[test]
fn stdin_redirected_from_a_file_is_sent_with_sendfile_from_its_offset() {
    let env = TestEnv::new();
    let src = env.random_file("whole", 2 << 20, 3);
    let mut f = std::fs::File::open(&src).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1000)).unwrap();
    let rx = env.recv(&["-v", "dst"]);
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "-v", "--name", "tail.bin", "-", &rx.addr])
        .stdin(Stdio::from(f));
    let tx = Running::spawn(cmd, "zcp send -").finish();
    let rr = rx.finish();
    tx.assert_code(0).assert_stderr("sendfile (file → socket)");
    rr.assert_code(0);
    let whole = std::fs::read(&src).unwrap();
    assert_eq!(std::fs::read(env.dst("tail.bin")).unwrap(), &whole[1000..]);
}

/// Runs `zcp recv -` with stdout as given, sends `src`, returns the outcome.
fn recv_to_stdout(env: &TestEnv, stdout: Stdio, extra: &[&str], src: &std::path::Path) -> (Finished, Finished) {
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "-l", "127.0.0.1:0"])
        .args(extra)
        .arg("-");
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    let addr = line.trim_end().strip_prefix("zcp: listening on ").unwrap().to_string();
    let mut sa = extra.to_vec();
    sa.push(src.to_str().unwrap());
    let tx = env.send(&sa, &addr);
    let status = wait_deadline(&mut child, "zcp recv -");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    (
        tx,
        Finished {
            status,
            stdout: Vec::new(),
            stderr: line + &rest,
        },
    )
}

#[test]
fn file_to_stdout_when_stdout_is_a_file() {
    for extra in [&[][..], &["--no-zerocopy"][..], &["--checksum", "none"][..]] {
        let env = TestEnv::new();
        let src = env.random_file("s", (3 << 20) + 5, 9);
        let out = env.path("out.bin");
        let (tx, rr) = recv_to_stdout(&env, Stdio::from(std::fs::File::create(&out).unwrap()), extra, &src);
        tx.assert_code(0);
        rr.assert_code(0);
        assert_same_file(&src, &out);
    }
}

#[test]
fn file_to_stdout_when_stdout_is_a_pipe() {
    for extra in [&[][..], &["--no-zerocopy"][..], &["--checksum", "none"][..]] {
        let env = TestEnv::new();
        let src = env.random_file("s", (5 << 20) + 1, 11);
        let rx = env.recv(&[extra, &["-v", "-"][..]].concat());
        let mut sa = extra.to_vec();
        sa.push(src.to_str().unwrap());
        let tx = env.send(&sa, &rx.addr);
        let rr = rx.finish();
        tx.assert_code(0);
        rr.assert_code(0);
        assert_eq!(rr.stdout, std::fs::read(&src).unwrap(), "extra args {extra:?}");
        // stdout carries only the payload; everything else is on stderr.
        assert!(rr.stderr.contains("received s"));
    }
}

#[test]
fn dest_file_path_ignores_the_wire_name_and_replaces_atomically() {
    let env = TestEnv::new();
    let src = env.random_file("wire-name.bin", 100_000, 5);
    std::fs::write(env.dst("target.bin"), b"old contents").unwrap();
    let rx = env.recv(&["dst/target.bin"]);
    let tx = env.send(&[src.to_str().unwrap()], &rx.addr);
    rx.finish().assert_code(0);
    tx.assert_code(0);
    assert_eq!(env.list("dst"), vec!["target.bin"]);
    assert_same_file(&src, &env.dst("target.bin"));
}

#[test]
fn dest_new_file_name_in_existing_directory() {
    let env = TestEnv::new();
    let src = env.random_file("x", 10, 5);
    let rx = env.recv(&["dst/new-name"]);
    env.send(&[src.to_str().unwrap()], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&src, &env.dst("new-name"));
}

#[test]
fn dest_symlink_is_replaced_not_followed() {
    let env = TestEnv::new();
    let outside = env.path("outside.txt");
    std::fs::write(&outside, b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, env.dst("link")).unwrap();
    let src = env.random_file("x", 1000, 5);
    let rx = env.recv(&["dst/link"]);
    env.send(&[src.to_str().unwrap()], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(env.dst("link")).unwrap().is_file());
    assert_same_file(&src, &env.dst("link"));
}

#[test]
fn default_dest_is_the_working_directory() {
    let env = TestEnv::new();
    let src = env.random_file("here.bin", 4096, 5);
    let mut cmd = zcp();
    cmd.current_dir(env.path("dst")).args(["recv", "-l", "127.0.0.1:0"]);
    let rx = start_receiver(cmd);
    env.send(&[src.to_str().unwrap()], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&src, &env.dst("here.bin"));
}

#[test]
fn mode_is_kept_without_special_bits_and_with_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    for (mode, want) in [(0o600, 0o600), (0o755, 0o755), (0o444, 0o444), (0o4777, 0o755)] {
        let name = format!("m{mode:o}");
        let src = env.random_file(&name, 10, 1);
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(mode)).unwrap();
        // The receiver runs under umask 022 (set through the shell).
        let mut cmd = std::process::Command::new("sh");
        cmd.current_dir(env.dir.path())
            .env_remove("ZCP_FAULT")
            .env("ZCP_KEY", TEST_KEY)
            .arg("-c")
            .arg(format!("umask 022; exec {} recv -l 127.0.0.1:0 dst", zcp_path()));
        let rx = start_receiver(cmd);
        env.send(&[src.to_str().unwrap()], &rx.addr).assert_code(0);
        rx.finish().assert_code(0);
        let got = std::fs::metadata(env.dst(&name)).unwrap().mode() & 0o7777;
        assert_eq!(got, want, "mode {mode:o}");
    }
}

#[test]
fn odd_names_arrive_unchanged() {
    let env = TestEnv::new();
    for name in ["with space", "-leading-dash", "ünïcödé", "tab\there"] {
        let src = env.src(name);
        std::fs::write(&src, name.as_bytes()).unwrap();
        let rx = env.recv(&["dst"]);
        env.send(&[src.to_str().unwrap()], &rx.addr).assert_code(0);
        rx.finish().assert_code(0);
        assert_eq!(std::fs::read(env.dst(name)).unwrap(), name.as_bytes());
    }
}

#[test]
fn a_hostname_target_resolves() {
    let env = TestEnv::new();
    let src = env.random_file("h", 1234, 5);
    let rx = env.recv(&["dst"]);
    let tx = env.send(&[src.to_str().unwrap()], &format!("localhost:{}", rx.port()));
    rx.finish().assert_code(0);
    tx.assert_code(0);
    assert_same_file(&src, &env.dst("h"));
}

#[test]
fn the_default_listener_is_dual_stack() {
    let env = TestEnv::new();
    let src = env.random_file("d", 1234, 5);
    let rx = env.recv_on("0", &["dst"]);
    assert!(
        rx.addr.starts_with("[::]:") || rx.addr.starts_with("0.0.0.0:"),
        "{}",
        rx.addr
    );
    let tx = env.send(&[src.to_str().unwrap()], &format!("127.0.0.1:{}", rx.port()));
    rx.finish().assert_code(0);
    tx.assert_code(0);
    assert_same_file(&src, &env.dst("d"));
}
