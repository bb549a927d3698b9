//! `zcp send --limit RATE`: the kernel paces the socket (also the one a
//! listening sender accepts), the bytes still arrive intact by the usual
//! mechanism, `-v` and the summary say so, a kernel that refuses leaves
//! the transfer unpaced with a warning, and bad rates are usage errors. Nothing here measures time: the achieved rate
//! against the limit is the benchmark's business (bench/compare.sh).

use std::process::Stdio;

use crate::env::*;

/// Sends a file with `--limit 64M -v` (and `extra` on both ends), checks
/// that it arrived and what the sender said, and returns its stderr.
fn limited(extra: &[&str], vars: &[(&str, &str)]) -> String {
    let env = TestEnv::new();
    let src = env.random_file("paced.bin", (4 << 20) + 5, 11);
    let mut recv_args = extra.to_vec();
    recv_args.push("dst");
    let rx = env.recv(&recv_args);
    let mut send_args = vec!["-v", "--limit", "64M"];
    send_args.extend_from_slice(extra);
    send_args.push(src.to_str().unwrap());
    let tx = env.send_with_env(&send_args, &rx.addr, vars);
    let rr = rx.finish();
    tx.assert_code(0);
    rr.assert_code(0);
    assert_same_file(&src, &env.dst("paced.bin"));
    tx.stderr
}

#[test]
fn a_limited_transfer_is_paced_by_the_kernel_and_arrives_intact() {
    for (extra, mechanism) in [(&[][..], "sendfile"), (&["--no-zerocopy"][..], "read/write")] {
        let stderr = limited(extra, &[]);
        assert!(
            stderr.contains(
                "zcp: pacing: --limit 64.00 MiB/s (67108864 bytes/s) set with setsockopt(SO_MAX_PACING_RATE)"
            ),
            "{stderr}"
        );
        let summary = stderr.lines().find(|l| l.starts_with("zcp: sent paced.bin")).unwrap();
        assert!(summary.contains("MiB/s, limited to 64.00 MiB/s)"), "{summary}");
        assert!(
            summary.contains(&format!(", {mechanism}, verified (sha256)")),
            "{summary}"
        );
        assert!(!stderr.contains("warning"), "{stderr}");
    }
}

#[test]
fn a_kernel_that_refuses_pacing_leaves_the_transfer_unpaced_with_a_warning() {
    let stderr = limited(&[], &[("ZCP_FAULT", "pacing=ENOPROTOOPT")]);
    assert!(
        stderr.contains(
            "zcp: warning: --limit 64.00 MiB/s: the kernel refused setsockopt(SO_MAX_PACING_RATE): Protocol not available (os error 92); sending unpaced"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("limited to"), "{stderr}");
    assert!(!stderr.contains("zcp: pacing:"), "{stderr}");
}

#[test]
fn a_limit_on_a_stream_is_paced_too() {
    let env = TestEnv::new();
    let rx = env.recv(&["dst"]);
    let (tx, stdin) = env.send_from_pipe(&["-v", "--limit", "1G", "--name", "s"], &rx.addr);
    let data = vec![7u8; 3 << 20];
    let writer = std::thread::spawn(move || {
        let mut stdin = stdin;
        std::io::Write::write_all(&mut stdin, &data).unwrap();
    });
    let out = tx.finish();
    writer.join().unwrap();
    rx.finish().assert_code(0);
    out.assert_code(0)
        .assert_stderr("(1073741824 bytes/s) set with setsockopt(SO_MAX_PACING_RATE)")
        .assert_stderr("limited to 1.00 GiB/s");
    assert_eq!(std::fs::read(env.dst("s")).unwrap(), vec![7u8; 3 << 20]);
}

#[test]
fn a_listening_sender_paces_the_connection_it_accepts() {
    let env = TestEnv::new();
    let src = env.random_file("r.bin", (1 << 20) + 3, 5);
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "-v", "--limit", "64M", "--listen", "127.0.0.1:0", "src/r.bin"])
        .stdin(Stdio::null());
    let tx = start_listening(cmd, "zcp send --listen");
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "--connect", &tx.addr, "dst"])
        .stdin(Stdio::null());
    let rr = Running::spawn(cmd, "zcp recv --connect").finish();
    let out = tx.finish();
    rr.assert_code(0);
    out.assert_code(0)
        .assert_stderr("(67108864 bytes/s) set with setsockopt(SO_MAX_PACING_RATE)")
        .assert_stderr("limited to 64.00 MiB/s");
    assert_same_file(&src, &env.dst("r.bin"));
}

/// Runs `zcp ARGS...`, expecting it to stop at the command line.
fn usage(args: &[&str]) -> Finished {
    let mut c = zcp();
    c.args(args).stdin(Stdio::null());
    Running::spawn(c, "zcp").finish()
}

#[test]
fn bad_rates_are_usage_errors() {
    for (rate, why) in [
        ("0", "below the slowest rate, 1K"),
        ("100", "below the slowest rate, 1K"),
        ("fast", "invalid size"),
        ("10X", "invalid size unit"),
        ("", "invalid size"),
        ("100Mb", "looks like bits"),
        ("1Gbit/s", "looks like bits"),
    ] {
        let out = usage(&["send", "--limit", rate, "f", "127.0.0.1:9"]);
        out.assert_code(2)
            .assert_stderr(&format!("zcp: error: invalid value '{rate}' for '--limit <RATE>': "))
            .assert_stderr(why);
    }
}

#[test]
fn a_receiver_has_no_limit_and_says_where_it_belongs() {
    for args in [&["--limit", "100M"][..], &["--limit=100M"]] {
        let mut all = vec!["recv", "-l", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = usage(&all);
        out.assert_code(2);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{}", out.stderr);
        assert!(
            lines[0].starts_with("zcp: error: --limit is a sender option"),
            "{}",
            out.stderr
        );
        assert!(lines[0].ends_with("give --limit to zcp send"), "{}", out.stderr);
        assert_eq!(lines[1], "Try 'zcp recv --help' for more information.");
    }
}
