//! Either end killed with SIGKILL at many points of a tree transfer: what
//! DEST holds afterwards is always a subset of the source, each file whole
//! and byte-identical, an existing file either untouched or wholly
//! replaced, and nothing staged left behind. The kill points are chosen
//! with `ZCP_FAULT=CALL=STOP@N` (the process stops itself just before its
//! Nth such call), so each run kills at a known step, not at a moment.

use std::process::Stdio;

use crate::env::*;

const OLD: &[u8] = b"the previous version of t/b.bin";

/// src/t with files of several sizes (several sendfile calls each for the
/// large ones), and dst/t/b.bin holding an older version.
fn setup() -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    env.random_file("t/a.bin", 3 << 20, 1);
    env.random_file("t/b.bin", 2 << 20, 2);
    env.random_file("t/sub/c.bin", 1 << 20, 3);
    env.random_file("t/sub/d.txt", 3000, 4);
    env.random_file("t/z.bin", 4 << 20, 5);
    std::fs::create_dir_all(env.dst("t")).unwrap();
    std::fs::write(env.dst("t/b.bin"), OLD).unwrap();
    env
}

/// Every file under dst/ is whole: identical to its source, or the old
/// b.bin; no staged `.zcp-*` file anywhere.
fn assert_only_whole_files(env: &TestEnv, what: &str) {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &rel, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut files = Vec::new();
    walk(&env.path("dst"), "", &mut files);
    for rel in files {
        assert!(!rel.contains(".zcp-"), "{what}: staged file left: {rel}");
        let got = std::fs::read(env.dst(&rel)).unwrap();
        if rel == "t/b.bin" && got == OLD {
            continue;
        }
        let want = std::fs::read(env.src(&rel)).unwrap_or_else(|_| panic!("{what}: {rel} is not in the source"));
        assert!(
            got == want,
            "{what}: {rel} is not whole ({} of {} bytes)",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn a_sender_killed_at_any_step_leaves_only_whole_files() {
    for step in [1, 2, 3, 4] {
        let env = setup();
        let rx = env.recv(&["dst"]);
        let fault = format!("sendfile=STOP@{step}");
        let tx = env.start_send(&["-r", "src/t"], &rx.addr, &[("ZCP_FAULT", &fault)], Stdio::null());
        let mut tx = tx.stopped();
        tx.kill(9);
        let _ = tx.finish();
        let rr = rx.finish();
        // The connection broke: a network failure.
        rr.assert_code(7);
        assert_eq!(rr.error_lines().len(), 1, "{fault}:\n{}", rr.stderr);
        assert_only_whole_files(&env, &fault);
    }
}

#[test]
fn a_receiver_killed_at_any_step_leaves_only_whole_files() {
    for step in [1, 2, 4, 7, 12] {
        let env = setup();
        let rx = env.recv_with_env(
            "127.0.0.1:0",
            &["dst"],
            &[("ZCP_FAULT", &format!("splice=STOP@{step}"))],
        );
        let addr = rx.addr.clone();
        let tx = env.start_send(&["-r", "src/t"], &addr, &[], Stdio::null());
        let mut run = rx.run.stopped();
        run.kill(9);
        let _ = run.finish();
        let out = tx.finish();
        out.assert_code(7);
        assert_eq!(out.error_lines().len(), 1, "splice=STOP@{step}:\n{}", out.stderr);
        assert!(out.error_lines()[0].contains(&addr), "{}", out.stderr);
        assert_only_whole_files(&env, &format!("splice=STOP@{step}"));
    }
}
