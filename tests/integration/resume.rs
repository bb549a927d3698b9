//! `send --resume`: a 256 MiB file whose transfer is cut by SIGKILL of the
//! sender or the receiver at several known steps (`ZCP_FAULT=CALL=STOP@N`
//! stops the process just before its Nth such call), then sent again. The
//! second transfer must end with identical bytes, send less than the whole
//! file (what the receiver verified before the kill stays), and never
//! reuse a partial whose source changed.

use std::process::Stdio;

use crate::env::*;

const SIZE: usize = 256 << 20;
const BLOCK: u64 = 8 << 20;

/// What the sender's closing line says was resumed, in bytes (0: nothing).
fn resumed_bytes(out: &Finished) -> u64 {
    let Some(line) = out.stderr.lines().find(|l| l.contains(" resumed)")) else {
        return 0;
    };
    // "... 152.00 MiB of 256.00 MiB (104.00 MiB resumed), ..."
    let end = line.find(" resumed)").unwrap();
    let start = line[..end].rfind('(').unwrap() + 1;
    let (number, unit) = line[start..end].split_once(' ').unwrap();
    let scale = match unit {
        "MiB" => 1u64 << 20,
        "GiB" => 1 << 30,
        other => panic!("unexpected unit {other} in {line}"),
    };
    (number.parse::<f64>().unwrap() * scale as f64) as u64
}

/// Bytes the sender moved with sendfile or read/write, from its -v line.
fn bytes_moved(out: &Finished) -> u64 {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("zcp: send big:"))
        .unwrap_or_else(|| panic!("no -v line:\n{}", out.stderr));
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u64>().ok())
        .filter(|n| *n >= 1 << 20)
        .sum()
}

fn partials(env: &TestEnv) -> Vec<String> {
    env.list("dst")
        .into_iter()
        .filter(|n| n.ends_with(".zcp-partial"))
        .collect()
}

/// Sends src/big again with --resume and checks that it completes, sends
/// at most what was missing, and reports what it kept. Returns the bytes
/// resumed.
fn resume_and_check(env: &TestEnv, extra: &[&str], what: &str) -> u64 {
    let rx = env.recv(&["dst"]);
    let mut args = vec!["--resume", "-v"];
    args.extend_from_slice(extra);
    args.push("src/big");
    let out = env.send(&args, &rx.addr);
    out.assert_code(0);
    let rr = rx.finish();
    rr.assert_code(0);
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert!(
        partials(env).is_empty(),
        "{what}: a partial is left: {:?}",
        env.list("dst")
    );
    let resumed = resumed_bytes(&out);
    assert_eq!(resumed % BLOCK, 0, "{what}: whole blocks are kept:\n{}", out.stderr);
    assert_eq!(
        bytes_moved(&out),
        SIZE as u64 - resumed,
        "{what}: only the missing blocks move:\n{}",
        out.stderr
    );
    if resumed > 0 {
        assert!(rr.stderr.contains("resuming big:"), "{what}:\n{}", rr.stderr);
    }
    resumed
}

#[test]
fn a_killed_sender_resumes_where_it_stopped() {
    let env = TestEnv::new();
    env.random_file("big", SIZE, 61);
    for step in [2, 13, 30] {
        let _ = std::fs::remove_file(env.dst("big"));
        let rx = env.recv(&["dst"]);
        let fault = format!("sendfile=STOP@{step}");
        let tx = env.start_send(
            &["--resume", "src/big"],
            &rx.addr,
            &[("ZCP_FAULT", &fault)],
            Stdio::null(),
        );
        let mut tx = tx.stopped();
        tx.kill(9);
        let _ = tx.finish();
        rx.finish().assert_code(7);
        assert!(!env.dst("big").exists(), "{fault}: nothing under the final name");
        assert_eq!(partials(&env).len(), 1, "{fault}: the partial is kept");
        let resumed = resume_and_check(&env, &[], &fault);
        // Blocks sent before the stop verified; the one cut short did not.
        assert!(resumed > 0, "{fault}: nothing was resumed");
        assert!(resumed <= (step - 1) * BLOCK, "{fault}: resumed {resumed}");
    }
}

/// Blocks in the record of dst's partial of `big`, as far as written.
fn recorded_blocks(env: &TestEnv) -> u64 {
    let len = std::fs::metadata(env.dst(".big.zcp-partial")).map_or(0, |m| m.len());
    // The record follows the file's bytes: a 40-byte header, then an
    // index, a SHA-256 digest and a 4-byte check per verified block, then
    // a 16-byte footer.
    len.saturating_sub(SIZE as u64 + 40 + 16) / 40
}

#[test]
fn a_killed_receiver_resumes_where_it_stopped() {
    let env = TestEnv::new();
    env.random_file("big", SIZE, 62);
    for blocks in [1, 12, 25] {
        let _ = std::fs::remove_file(env.dst("big"));
        let mut rx = env.recv(&["dst"]);
        // Paced, so the receiver is killed well before the end.
        let tx = env.start_send(&["--resume", "--limit", "64M", "src/big"], &rx.addr, &[], Stdio::null());
        while recorded_blocks(&env) < blocks {
            assert!(
                tx_running(&rx),
                "the receiver ended before {blocks} blocks were recorded"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        rx.run.kill(9);
        let _ = rx.finish();
        tx.finish().assert_code(7);
        assert!(
            !env.dst("big").exists(),
            "after {blocks} blocks: nothing under the final name"
        );
        let resumed = resume_and_check(&env, &[], &format!("receiver killed after {blocks} blocks"));
        assert!(
            resumed >= blocks * BLOCK,
            "after {blocks} blocks: resumed only {resumed}"
        );
    }
}

fn tx_running(rx: &Receiver) -> bool {
    let stat = format!("/proc/{}/stat", rx.run.child.id());
    std::fs::read_to_string(stat).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn resuming_works_with_read_write_forced() {
    let env = TestEnv::new();
    env.random_file("big", SIZE, 63);
    let rx = env.recv(&["dst", "--no-zerocopy"]);
    let tx = env.start_send(
        &["--resume", "--no-zerocopy", "src/big"],
        &rx.addr,
        &[("ZCP_FAULT", "write=STOP@200")],
        Stdio::null(),
    );
    let mut tx = tx.stopped();
    tx.kill(9);
    let _ = tx.finish();
    rx.finish().assert_code(7);
    let resumed = resume_and_check(&env, &["--no-zerocopy"], "read/write");
    assert!(resumed > 0, "nothing was resumed");
}

#[test]
fn a_changed_source_never_resumes_from_a_stale_partial() {
    let env = TestEnv::new();
    env.random_file("big", SIZE, 64);
    let rx = env.recv(&["dst"]);
    let tx = env.start_send(
        &["--resume", "src/big"],
        &rx.addr,
        &[("ZCP_FAULT", "sendfile=STOP@10")],
        Stdio::null(),
    );
    let mut tx = tx.stopped();
    tx.kill(9);
    let _ = tx.finish();
    rx.finish().assert_code(7);
    assert_eq!(partials(&env).len(), 1);
    // Same size, same mtime, new bytes at the start: only its identity
    // (inode and ctime) can tell.
    let mtime = std::fs::metadata(env.src("big")).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(env.src("big")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"changed", 0).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let resumed = resume_and_check(&env, &[], "changed source");
    assert_eq!(resumed, 0, "a changed source resumed from its old partial");
}

#[test]
fn a_source_that_shrinks_while_sent_in_blocks_is_aborted_and_leaves_nothing() {
    let env = TestEnv::new();
    env.random_file("big", 64 << 20, 65);
    let rx = env.recv(&["dst"]);
    let tx = env.start_send(
        &["--resume", "src/big"],
        &rx.addr,
        &[("ZCP_FAULT", "sendfile=STOP@3")],
        Stdio::null(),
    );
    let mut tx = tx.stopped();
    std::fs::OpenOptions::new()
        .write(true)
        .open(env.src("big"))
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    tx.resume();
    let out = tx.finish();
    out.assert_code(6).assert_stderr("changed while being sent");
    rx.finish().assert_code(1);
    assert!(env.list("dst").is_empty(), "left behind: {:?}", env.list("dst"));
}

#[test]
fn a_link_planted_under_the_partial_name_is_never_followed() {
    let env = TestEnv::new();
    env.random_file("big", 20 << 20, 66);
    let outside = env.path("outside");
    std::fs::write(&outside, b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, env.dst(".big.zcp-partial")).unwrap();
    let rx = env.recv(&["dst"]);
    env.send(&["--resume", "src/big"], &rx.addr).assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    assert!(partials(&env).is_empty());
}

#[test]
fn two_senders_never_land_in_the_same_partial() {
    let env = TestEnv::new();
    env.random_file("big", 64 << 20, 67);
    std::fs::create_dir_all(env.path("other")).unwrap();
    let other = env.path("other/big");
    std::fs::write(&other, vec![7u8; 40 << 20]).unwrap();
    let mut rx = env.recv(&["-k", "dst"]);
    // The first sender is paced, so the second comes while it lands.
    let first = env.start_send(&["--resume", "--limit", "16M", "src/big"], &rx.addr, &[], Stdio::null());
    while recorded_blocks_of(&env, 64 << 20) < 1 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let second = env.send(&["--resume", other.to_str().unwrap()], &rx.addr);
    second
        .assert_code(1)
        .assert_stderr("another transfer is receiving this file");
    first.finish().assert_code(0);
    rx.run.kill(2);
    rx.finish();
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert!(partials(&env).is_empty(), "{:?}", env.list("dst"));
}

#[test]
fn a_file_named_like_a_partial_is_never_touched() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    env.random_file("t/big", 20 << 20, 68);
    // Sorted before big: it is committed first, then big's partial would
    // have its name.
    std::fs::write(env.src("t/.big.zcp-partial"), b"notes").unwrap();
    let rx = env.recv(&["dst"]);
    let out = env.send(&["--resume", "-r", "src/t"], &rx.addr);
    let rr = rx.finish();
    out.assert_code(4).assert_stderr("not a partial file of zcp's");
    rr.assert_code(4);
    assert_eq!(std::fs::read(env.dst("t/.big.zcp-partial")).unwrap(), b"notes");
    assert!(!env.dst("t/big").exists());
}

#[test]
fn a_read_error_keeps_what_was_verified_and_a_resume_finishes() {
    let env = TestEnv::new();
    env.random_file("big", 64 << 20, 69);
    let rx = env.recv(&["dst"]);
    let out = env.send_with_env(&["--resume", "src/big"], &rx.addr, &[("ZCP_FAULT", "sendfile=EIO@5")]);
    out.assert_code(1).assert_stderr("Input/output error");
    rx.finish()
        .assert_code(1)
        .assert_stderr("its verified blocks are kept for a resume");
    assert_eq!(partials(&env).len(), 1);
    let rx = env.recv(&["dst"]);
    let out = env.send(&["--resume", "src/big"], &rx.addr);
    out.assert_code(0).assert_stderr("resumed)");
    rx.finish().assert_code(0);
    assert_same_file(&env.src("big"), &env.dst("big"));
    assert!(partials(&env).is_empty());
}

#[test]
fn a_partial_that_does_not_fit_leaves_nothing_behind() {
    let test = "a_partial_that_does_not_fit_leaves_nothing_behind";
    if !is_root() {
        return skip(test, "needs root to mount a tmpfs");
    }
    let env = TestEnv::new();
    env.random_file("big", 62 << 20, 81);
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    crate::limits::with_tmpfs(test, &small, "size=64m", || {
        std::fs::write(small.join("filler"), vec![0u8; 2 << 20]).unwrap();
        let rx = env.recv(&["small"]);
        let out = env.send(&["--resume", "src/big"], &rx.addr);
        out.assert_code(1).assert_stderr("No space left on device");
        rx.finish().assert_code(1);
        assert_eq!(env.list("small"), vec!["filler"]);
    });
}

/// [`recorded_blocks`] for a file of `size` bytes.
fn recorded_blocks_of(env: &TestEnv, size: u64) -> u64 {
    let len = std::fs::metadata(env.dst(".big.zcp-partial")).map_or(0, |m| m.len());
    len.saturating_sub(size + 40 + 16) / 40
}
