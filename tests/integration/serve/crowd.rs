//! `recv -k`: many senders at once, misbehaving connections beside them,
//! the connection limit, and the end of it all on SIGINT/SIGTERM.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const SIGKILL: i32 = 9;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// A raw client the receiver has accepted: it read the receiver's
/// preamble, so a connection slot is taken and its handshake is running.
fn accepted(addr: &str) -> Peer {
    let mut p = Peer::connect(addr);
    assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    p
}

/// The process was killed by `signal` (it did not exit by itself).
fn assert_killed(out: &Finished, signal: i32) {
    assert_eq!(out.status.signal(), Some(signal), "{}", out.stderr);
}

/// What one good sender sends: its arguments (sources relative to the
/// test directory) and the files it must leave in dst/ (relative to src/
/// and dst/ alike).
struct Job {
    args: Vec<String>,
    files: Vec<String>,
}

/// 50 jobs: 40 single files from 4 KiB to almost 1 MiB, and every fifth
/// a small tree sent with -r (a file at its top, two in a subdirectory).
fn fifty_jobs(env: &TestEnv) -> Vec<Job> {
    (0..50u64)
        .map(|i| {
            if i % 5 == 0 {
                let t = format!("t{i:02}");
                std::fs::create_dir_all(env.src(&format!("{t}/sub"))).unwrap();
                let files = vec![format!("{t}/a"), format!("{t}/sub/b"), format!("{t}/sub/c")];
                for (n, f) in files.iter().enumerate() {
                    env.random_file(f, 1000 + 30_000 * n + i as usize, i * 10 + n as u64);
                }
                Job {
                    args: vec!["-r".into(), format!("src/{t}")],
                    files,
                }
            } else {
                let f = format!("f{i:02}");
                env.random_file(&f, (4 << 10) + (i as usize) * (20 << 10) + 7, i);
                Job {
                    args: vec![format!("src/{f}")],
                    files: vec![f],
                }
            }
        })
        .collect()
}

/// dst/ as [`TestEnv::tree`] shows it once every job has arrived.
fn expected_tree(jobs: &[Job]) -> Vec<String> {
    let mut want = Vec::new();
    for job in jobs {
        for f in &job.files {
            let mut at = 0;
            while let Some(slash) = f[at..].find('/') {
                want.push(format!("{}/", &f[..at + slash]));
                at += slash + 1;
            }
            want.push(f.clone());
        }
    }
    want.sort();
    want.dedup();
    want
}

#[test]
fn fifty_senders_at_once_beside_misbehaving_connections() {
    let env = TestEnv::new();
    let jobs = fifty_jobs(&env);
    // A long handshake deadline: the silent connection must still be
    // waiting when the receiver is interrupted, however slow the machine.
    let mut rx = keep_open(&env, &["--max-connections", "64", "--timeout", "600"]);
    let addr = rx.addr.clone();

    // Misbehaving connections, all open while the good senders run: one
    // that says nothing, one that speaks HTTP, a sender with the wrong
    // key, and a sender killed in the middle of its stream.
    let mut silent = accepted(&addr);
    let mut junk = Peer::connect(&addr);
    junk.send(b"GET / HTTP/1.1\r\nHost: zcp\r\n\r\n");
    let wrong = env.start_send(&["src/f01"], &addr, &[("ZCP_KEY", WRONG_KEY)], Stdio::null());
    let (mut midway, mut pipe) = env.send_from_pipe(&["--name", "midway"], &addr);

    let senders: Vec<Running> = jobs
        .iter()
        .map(|job| {
            let args: Vec<&str> = job.args.iter().map(String::as_str).collect();
            env.start_send(&args, &addr, &[], Stdio::null())
        })
        .collect();

    // The sender reads stdin only once its handshake is done, and a pipe
    // holds far less than 1 MiB: once this returns, its session runs.
    pipe.write_all(&bytes(1 << 20, 1)).unwrap();
    midway.kill(SIGKILL);
    let midway = midway.finish();
    assert_killed(&midway, SIGKILL);
    drop(pipe);

    assert_eq!(junk.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    expect_error_then_close(&mut junk, PROTOCOL, "not speaking the zcp protocol");

    for (job, sender) in jobs.iter().zip(senders) {
        let out = sender.finish();
        assert_eq!(out.code(), 0, "{:?}:\n{}", job.args, out.stderr);
        assert!(out.error_lines().is_empty(), "{:?}:\n{}", job.args, out.stderr);
    }
    wrong
        .finish()
        .assert_code(5)
        .assert_stderr("receiver: authentication failed: the sender's key is not this receiver's");

    // Everything the receiver will say before the interruption.
    rx.run.await_stderr_count("zcp: received ", jobs.len());
    rx.run.await_stderr_count("; still listening", 2);
    rx.run.await_stderr_count("zcp: error: ", 1);

    let out = interrupt(rx, SIGINT);
    // The silent connection, still in its handshake, is told why it ends.
    expect_error_then_close(&mut silent, 1, "the receiver was interrupted");

    assert_eq!(
        lines_with(&out.stderr, "zcp: received ").len(),
        jobs.len(),
        "{}",
        out.stderr
    );
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 2, "want two warnings:\n{}", out.stderr);
    let junk_line = warned.iter().find(|l| l.contains("not speaking the zcp protocol"));
    let key_line = warned.iter().find(|l| l.contains("authentication failed"));
    assert_holds(
        junk_line.expect("a warning for the junk"),
        &["127.0.0.1:", "still listening"],
    );
    assert_holds(
        key_line.expect("a warning for the wrong key"),
        &["the sender's key is not this receiver's", "still listening"],
    );
    let errors = out.error_lines();
    assert_eq!(errors.len(), 2, "want two error lines:\n{}", out.stderr);
    assert_holds(
        errors[0],
        &[
            "receiving from 127.0.0.1:",
            "midway",
            "the sender closed the connection",
        ],
    );

    // Every file arrived whole, and nothing else: no midway, no staged file.
    assert_eq!(env.tree("dst"), expected_tree(&jobs));
    for f in jobs.iter().flat_map(|j| &j.files) {
        assert_same_file(&env.src(f), &env.dst(f));
    }
}

#[test]
fn one_more_connection_than_allowed_is_told_the_receiver_is_busy() {
    let env = TestEnv::new();
    env.random_file("f", 100_000, 5);
    let mut rx = keep_open(&env, &["--max-connections", "1", "--timeout", "600"]);
    // Holds the only slot, in its handshake.
    let holder = accepted(&rx.addr);

    env.send(&["src/f"], &rx.addr)
        .assert_code(1)
        .assert_stderr("zcp: error: sending src/f to 127.0.0.1:")
        .assert_stderr("receiver: the receiver is busy: it serves 1 connections (--max-connections); try again later");
    drop(holder);
    // Its end frees the slot.
    rx.run.await_stderr_count("; still listening", 1);
    env.send(&["src/f"], &rx.addr).assert_code(0);

    let out = interrupt(rx, SIGINT);
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 2, "want two warnings:\n{}", out.stderr);
    assert_holds(
        warned[0],
        &[
            "turned away 127.0.0.1:",
            "already serving 1 connections (--max-connections)",
        ],
    );
    assert_holds(
        warned[1],
        &["connection closed before the peer said anything", "still listening"],
    );
    assert_eq!(out.error_lines(), ["zcp: error: interrupted"]);
    assert_eq!(env.tree("dst"), ["f"]);
    assert_same_file(&env.src("f"), &env.dst("f"));
}

#[test]
fn a_failing_session_leaves_the_one_beside_it_alone() {
    let env = TestEnv::new();
    // Two sendfile calls (8 MiB each at most): the second one fails.
    env.random_file("big", (8 << 20) + 4096, 6);
    let mut rx = keep_open(&env, &[]);
    let (first, second) = (bytes(1 << 20, 2), bytes(300_000, 3));

    // A stream in the middle of its transfer (see the crowd above).
    let (steady, mut pipe) = env.send_from_pipe(&["--name", "steady"], &rx.addr);
    pipe.write_all(&first).unwrap();

    // Beside it, a sender whose reads fail halfway through its file...
    env.send_with_env(
        &["--name", "broken", "src/big"],
        &rx.addr,
        &[("ZCP_FAULT", "sendfile=EIO@2")],
    )
    .assert_code(1)
    .assert_stderr("Input/output error");
    rx.run.await_stderr_count("zcp: error: ", 1);
    // ...and one killed halfway through its stream.
    let (mut killed, mut killed_pipe) = env.send_from_pipe(&["--name", "killed"], &rx.addr);
    killed_pipe.write_all(&bytes(1 << 20, 4)).unwrap();
    killed.kill(SIGKILL);
    assert_killed(&killed.finish(), SIGKILL);
    drop(killed_pipe);
    rx.run.await_stderr_count("zcp: error: ", 2);

    // The stream goes on and ends well, and a third sender is served.
    pipe.write_all(&second).unwrap();
    drop(pipe);
    steady.finish().assert_code(0);
    env.still_serving(&[], &rx.addr);

    let out = interrupt(rx, SIGTERM);
    let errors = out.error_lines();
    assert_eq!(errors.len(), 3, "want three error lines:\n{}", out.stderr);
    // The sender padded the payload and told the receiver why.
    assert_holds(
        errors[0],
        &[
            "receiving broken from 127.0.0.1:",
            "the sender aborted it: reading src/big: Input/output error",
            "nothing was written",
        ],
    );
    assert_holds(
        errors[1],
        &[
            "receiving from 127.0.0.1:",
            "killed",
            "the sender closed the connection",
        ],
    );
    assert!(warnings(&out.stderr).is_empty(), "{}", out.stderr);
    let received = lines_with(&out.stderr, "zcp: received ");
    assert_eq!(received.len(), 3, "{}", out.stderr);
    // The failed session's summary claims nothing was verified.
    let failed: Vec<_> = received.iter().filter(|l| l.contains("1 FAILED")).collect();
    assert_eq!(failed.len(), 1, "{}", out.stderr);
    assert!(!failed[0].contains("verified"), "{}", failed[0]);
    assert_eq!(env.tree("dst"), ["alive", "steady"]);
    assert_eq!(std::fs::read(env.dst("steady")).unwrap(), [first, second].concat());
}

#[test]
fn sigterm_in_the_middle_of_a_stream_removes_the_staged_file() {
    let env = TestEnv::new();
    // Named staging (no O_TMPFILE) for the session, so the staged file
    // is there to be seen, and to be seen gone.
    let mut rx = env.recv_with_env("127.0.0.1:0", &["-k", "dst"], &[("ZCP_FAULT", "tmpfile=EOPNOTSUPP")]);
    let (tx, mut pipe) = env.send_from_pipe(&["--name", "large"], &rx.addr);
    // Feeds the stream until the sender stops reading.
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let feeder = std::thread::spawn(move || {
        let chunk = bytes(1 << 16, 9);
        while pipe.write_all(&chunk).is_ok() {
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let staged = |env: &TestEnv| {
        env.list("dst")
            .iter()
            .any(|n| n.starts_with(".zcp-") && n.ends_with(".part"))
    };
    let start = std::time::Instant::now();
    while written.load(Ordering::SeqCst) < 4 << 20 || !staged(&env) {
        assert!(
            start.elapsed() < DEADLINE,
            "the stream did not get going: {:?}",
            env.list("dst")
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    rx.run.kill(SIGTERM);
    let out = rx.finish();
    out.assert_code(130);
    let errors = out.error_lines();
    assert_eq!(errors.len(), 2, "{}", out.stderr);
    assert_holds(errors[0], &["receiving from 127.0.0.1:", "interrupted"]);
    assert!(!errors[0].contains("closed"), "the sender is blamed: {}", errors[0]);
    assert_eq!(errors[1], "zcp: error: interrupted");
    tx.finish()
        .assert_code(1)
        .assert_stderr("zcp: error: sending large to 127.0.0.1:")
        .assert_stderr("receiver: the receiver was interrupted");
    feeder.join().unwrap();
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
}
