//! Limits of the receiving machine: a full file system (a small tmpfs,
//! when run as root), RLIMIT_FSIZE, /dev/full as stdout and a read-only
//! mount. Each is one clear error on both ends, and nothing is left under
//! a final name or staged.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::env::*;
use crate::failures::assert_dst;

#[test]
fn rlimit_fsize_refuses_a_sized_file_up_front() {
    let env = TestEnv::new();
    let src = env.random_file("big.bin", 4 << 20, 3);
    let mut cmd = Command::new("prlimit");
    cmd.current_dir(env.dir.path())
        .env("ZCP_KEY", TEST_KEY)
        .arg("--fsize=1048576")
        .arg(zcp_path())
        .args(["recv", "-l", "127.0.0.1:0", "dst"]);
    let rx = start_receiver(cmd);
    let tx = env.send(&[src.to_str().unwrap()], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(1)
        .assert_stderr("big.bin")
        .assert_stderr("File too large");
    tx.assert_code(1)
        .assert_stderr("receiver:")
        .assert_stderr("File too large");
    assert_dst(&env, &[]);
}

#[test]
fn rlimit_fsize_stops_a_stream_midway() {
    for extra in [&[][..], &["--no-zerocopy"][..]] {
        let env = TestEnv::new();
        let mut cmd = Command::new("prlimit");
        cmd.current_dir(env.dir.path())
            .env("ZCP_KEY", TEST_KEY)
            .arg("--fsize=1048576")
            .arg(zcp_path())
            .args(["recv", "-l", "127.0.0.1:0"])
            .args(extra)
            .arg("dst");
        let rx = start_receiver(cmd);
        let (tx, mut pipe) = env.send_from_pipe(extra, &rx.addr);
        let feeder = std::thread::spawn(move || {
            let _ = pipe.write_all(&vec![3u8; 4 << 20]);
        });
        let rr = rx.finish();
        let out = tx.finish();
        feeder.join().unwrap();
        rr.assert_code(1).assert_stderr("File too large");
        out.assert_code(1).assert_stderr("File too large");
        assert_dst(&env, &[]);
    }
}

#[test]
fn dev_full_as_stdout_is_an_error_on_both_ends() {
    let env = TestEnv::new();
    let src = env.random_file("a", 1 << 20, 3);
    let mut cmd = zcp();
    cmd.args(["recv", "-l", "127.0.0.1:0", "-"])
        .stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap());
    // start_receiver sets stdout to a pipe; build it by hand instead.
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    let addr = line.trim_end().strip_prefix("zcp: listening on ").unwrap().to_string();
    let tx = env.send(&[src.to_str().unwrap()], &addr);
    let status = wait_deadline(&mut child, "zcp recv - > /dev/full");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("No space left on device"), "{rest}");
    tx.assert_code(1).assert_stderr("No space left on device");
}

/// Mounts a tmpfs with `options` at `dir` for the duration of the closure
/// (skipping `test` if the mount fails).
pub fn with_tmpfs(test: &str, dir: &std::path::Path, options: &str, f: impl FnOnce()) {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "zcp-test", dir.to_str().unwrap()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return skip(test, "mounting a tmpfs failed");
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let _ = Command::new("umount").arg(dir).status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn a_full_filesystem_is_reported_and_cleaned_up() {
    if !is_root() {
        return skip(
            "a_full_filesystem_is_reported_and_cleaned_up",
            "needs root to mount a tmpfs",
        );
    }
    let env = TestEnv::new();
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    with_tmpfs(
        "a_full_filesystem_is_reported_and_cleaned_up",
        &small,
        "size=4m",
        || {
            // A sized file: fallocate says ENOSPC before any payload lands.
            let src = env.random_file("big.bin", 8 << 20, 4);
            let rx = env.recv(&["small"]);
            let tx = env.send(&[src.to_str().unwrap()], &rx.addr);
            let rr = rx.finish();
            rr.assert_code(1).assert_stderr("No space left on device");
            tx.assert_code(1).assert_stderr("No space left on device");
            assert!(env.list("small").is_empty(), "{:?}", env.list("small"));

            // A stream: ENOSPC in the middle of the splice.
            let rx = env.recv(&["small"]);
            let (tx, mut pipe) = env.send_from_pipe(&[], &rx.addr);
            let feeder = std::thread::spawn(move || {
                let _ = pipe.write_all(&vec![5u8; 8 << 20]);
            });
            let rr = rx.finish();
            let out = tx.finish();
            feeder.join().unwrap();
            rr.assert_code(1).assert_stderr("No space left on device");
            out.assert_code(1).assert_stderr("No space left on device");
            assert!(env.list("small").is_empty(), "{:?}", env.list("small"));

            // A large file that does not fit after one that did: the sender
            // reads past the first verdict to the receiver's reason.
            std::fs::create_dir_all(env.src("two")).unwrap();
            std::fs::write(env.src("two/a"), vec![1u8; 1 << 20]).unwrap();
            std::fs::write(env.src("two/z"), vec![2u8; 8 << 20]).unwrap();
            let rx = env.recv(&["small"]);
            let tx = env.send(&["-r", "src/two"], &rx.addr);
            rx.finish().assert_code(1).assert_stderr("No space left on device");
            tx.assert_code(1)
                .assert_stderr("receiver: receiving two/z")
                .assert_stderr("No space left on device");
            std::fs::remove_dir_all(env.path("small/two")).unwrap();

            // A tree of small files, placed on the receiver's second thread:
            // the file that did not fit is named, the ones before it are
            // whole, and nothing staged is left.
            std::fs::create_dir_all(env.src("many")).unwrap();
            for i in 0..1500 {
                std::fs::write(env.src("many").join(format!("f{i:04}")), vec![i as u8; 4096]).unwrap();
            }
            let rx = env.recv(&["small"]);
            let tx = env.send(&["-r", "src/many"], &rx.addr);
            let rr = rx.finish();
            rr.assert_code(1).assert_stderr("No space left on device");
            assert_eq!(rr.error_lines().len(), 1, "{}", rr.stderr);
            let line = &rr.error_lines()[0];
            // Named once: the file that failed, not also the entry being read.
            assert_eq!(line.matches("receiving many/f").count(), 1, "{line}");
            tx.assert_code(1).assert_stderr("No space left on device");
            // The sender names the same file as the receiver, not the one
            // it was sending when it heard.
            // "... receiving from PEER: receiving many/fNNNN: writing ..."
            let failed = line
                .split("receiving ")
                .nth(2)
                .and_then(|r| r.split(':').next())
                .unwrap();
            let sender_line = tx.error_lines().last().copied().unwrap_or_default().to_string();
            assert!(
                sender_line.starts_with(&format!("zcp: error: sending {failed} to ")),
                "{sender_line}\n{line}"
            );
            // The directory made before the failure has its own mode, not 0700.
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(env.path("small/many")), mode(env.src("many")));
            let landed = env.list("small/many");
            assert!(!landed.is_empty() && landed.len() < 1500, "{}", landed.len());
            for name in landed {
                assert!(name.starts_with('f'), "left behind: {name}");
                let i: usize = name[1..].parse().unwrap();
                let bytes = std::fs::read(env.path("small/many").join(&name)).unwrap();
                assert_eq!(bytes, vec![i as u8; 4096], "{name}");
            }
        },
    );
}

#[test]
fn a_read_only_destination_is_refused_before_listening() {
    if !is_root() {
        return skip(
            "a_read_only_destination_is_refused_before_listening",
            "needs root to mount a tmpfs",
        );
    }
    let env = TestEnv::new();
    let ro = env.path("ro");
    std::fs::create_dir(&ro).unwrap();
    let runs = [
        ("ro", "destination directory ro is not writable"),
        ("ro/f", "(ro) is not writable"),
    ];
    let test = "a_read_only_destination_is_refused_before_listening";
    with_tmpfs(test, &ro, "ro,size=1m", || {
        for (dest, needle) in runs {
            let mut cmd = zcp();
            cmd.current_dir(env.dir.path())
                .args(["recv", "-l", "127.0.0.1:0", dest])
                .stdin(Stdio::null());
            let out = Running::spawn(cmd, "zcp recv").finish();
            out.assert_code(1)
                .assert_stderr(needle)
                .assert_stderr("Read-only file system");
            assert!(!out.stderr.contains("listening"), "{}", out.stderr);
        }
    });
}
