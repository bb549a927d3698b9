//! Sources that change while they are being sent. The sender stops itself
//! just before its second sendfile call (`ZCP_FAULT=sendfile=STOP@2`), in
//! the middle of a file larger than one call; while it is stopped the test
//! really changes the file, then continues it. The sender must exit 6 and
//! name the change on one line, the receiver fail that entry, and nothing
//! of it may be left in DEST, under its name or staged.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Stdio;

use crate::env::{Finished, TestEnv, assert_same_file};

const MIB: u64 = 1 << 20;
/// More than one sendfile call (8 MiB): the second call is made in the
/// middle of the file, however much the first one moved.
const BIG: u64 = 9 * MIB;

const STOP: (&str, &str) = ("ZCP_FAULT", "sendfile=STOP@2");

/// Runs `zcp send ARGS...` into a receiver writing into dst/, and applies
/// `change` while the sender is stopped. Returns the sender's and the
/// receiver's results and the receiver's address.
fn send_changing(env: &TestEnv, args: &[&str], stdin: Stdio, change: impl FnOnce()) -> (Finished, Finished, String) {
    let rx = env.recv(&["dst"]);
    let addr = rx.addr.clone();
    let mut tx = env.start_send(args, &addr, &[STOP], stdin).stopped();
    change();
    tx.resume();
    let tx = tx.finish();
    (tx, rx.finish(), addr)
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).unwrap()
}

/// Writes different bytes over the whole file, keeping its size.
fn rewrite(f: &File) {
    let len = f.metadata().unwrap().len();
    let mut block = vec![0u8; MIB as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(MIB) as usize;
        f.read_exact_at(&mut block[..n], at).unwrap();
        block[..n].iter_mut().for_each(|b| *b = !*b);
        f.write_all_at(&block[..n], at).unwrap();
        at += n as u64;
    }
}

/// The files staged or left in `dir` that are not `expected`.
fn leftovers(env: &TestEnv, dir: &str, expected: &[&str]) -> Vec<String> {
    let mut left = env.list(dir);
    left.retain(|n| !expected.contains(&n.as_str()));
    left
}

/// One 9 MiB file sent on its own and changed by `change` half way: the
/// sender says `src/f.bin changed while being sent (WHAT)` on one line
/// that names the receiver, both ends fail, and dst/ stays empty.
fn single_file_changes(change: impl FnOnce(&File), what: &str) {
    let env = TestEnv::new();
    let src = env.random_file("f.bin", BIG as usize, 11);
    let (tx, rr, addr) = send_changing(&env, &["src/f.bin"], Stdio::null(), || change(&open_rw(&src)));
    tx.assert_code(6).assert_stderr(&format!(
        "zcp: error: sending f.bin to {addr}: src/f.bin changed while being sent ({what}); not committed, send it again\n"
    ));
    assert_eq!(tx.error_lines().len(), 1, "{}", tx.stderr);
    rr.assert_code(1)
        .assert_stderr("receiving f.bin from")
        .assert_stderr("the sender aborted it: src/f.bin changed while being sent");
    assert_eq!(leftovers(&env, "dst", &[]), Vec::<String>::new());
}

#[test]
fn a_file_that_grows_while_sent_exits_6() {
    single_file_changes(
        |f| f.write_all_at(&vec![b'+'; MIB as usize], BIG).unwrap(),
        &format!("size {BIG} → {} bytes", BIG + MIB),
    );
}

#[test]
fn a_file_that_shrinks_while_sent_exits_6() {
    // Cut below what the first call moved: sendfile meets end of file,
    // and the rest of the raw payload is padded to reach the ABORT.
    single_file_changes(
        |f| f.set_len(4 * MIB).unwrap(),
        &format!("size {BIG} → {} bytes", 4 * MIB),
    );
}

#[test]
fn a_file_rewritten_at_the_same_size_while_sent_exits_6() {
    single_file_changes(
        |f| {
            let before = f.metadata().unwrap();
            rewrite(f);
            let after = f.metadata().unwrap();
            // The kernel stamps a change after a stat with a fresh time
            // (multigrain timestamps); without them a rewrite within one
            // clock tick could not be told apart, by zcp or anyone.
            assert_ne!(
                (before.mtime(), before.mtime_nsec()),
                (after.mtime(), after.mtime_nsec()),
                "this file system's timestamps are too coarse for this test"
            );
        },
        &format!("modified in place, still {BIG} bytes"),
    );
}

#[test]
fn a_file_rewritten_with_its_mtime_put_back_exits_6() {
    // Only the ctime tells: size and mtime are as they were.
    single_file_changes(
        |f| {
            let mtime = f.metadata().unwrap().modified().unwrap();
            rewrite(f);
            f.set_modified(mtime).unwrap();
            assert_eq!(f.metadata().unwrap().modified().unwrap(), mtime);
        },
        &format!("its ctime changed, size and mtime kept at {BIG} bytes"),
    );
}

#[test]
fn stdin_redirected_from_a_file_that_grows_exits_6() {
    // A file as stdin is sent as a known-size range, by sendfile too.
    let env = TestEnv::new();
    let src = env.random_file("f.bin", BIG as usize, 12);
    let stdin = Stdio::from(File::open(&src).unwrap());
    let (tx, rr, addr) = send_changing(&env, &["-"], stdin, || {
        open_rw(&src).write_all_at(b"more", BIG).unwrap();
    });
    tx.assert_code(6).assert_stderr(&format!(
        "sending stdin to {addr}: stdin changed while being sent (size {BIG} → {} bytes); not committed",
        BIG + 4
    ));
    rr.assert_code(1).assert_stderr("the sender aborted it");
    assert_eq!(leftovers(&env, "dst", &[]), Vec::<String>::new());
}

/// A sparse file (9 MiB of data, then a hole up to 20 MiB) cut to `cut`
/// bytes while its data is being sent.
fn sparse_file_is_cut(cut: u64) {
    let env = TestEnv::new();
    let src = env.random_file("s.bin", BIG as usize, 13);
    let len = 20 * MIB;
    File::options().write(true).open(&src).unwrap().set_len(len).unwrap();
    let meta = std::fs::metadata(&src).unwrap();
    if meta.blocks() * 512 >= len {
        crate::env::skip("sparse_file_is_cut", "the file system does not keep holes");
        return;
    }
    let (tx, rr, addr) = send_changing(&env, &["src/s.bin"], Stdio::null(), || {
        open_rw(&src).set_len(cut).unwrap();
    });
    tx.assert_code(6).assert_stderr(&format!(
        "sending s.bin to {addr}: src/s.bin changed while being sent (size {len} → {cut} bytes); not committed"
    ));
    rr.assert_code(1).assert_stderr("the sender aborted it");
    assert_eq!(leftovers(&env, "dst", &[]), Vec::<String>::new());
}

#[test]
fn a_sparse_file_cut_inside_a_data_frame_exits_6() {
    // sendfile meets end of file inside a DATA frame: the frame is padded,
    // then the entry aborted, and the session ends normally.
    sparse_file_is_cut(4 * MIB);
}

#[test]
fn a_sparse_file_cut_after_its_data_was_sent_exits_6() {
    // All data goes out; the hole now lies past the end, so hashing it
    // meets end of file after the frames were sent.
    sparse_file_is_cut(BIG);
}

#[test]
fn one_changed_file_in_a_tree_exits_6_and_the_others_arrive() {
    // a (small, batched), b.bin (9 MiB: the second sendfile call is in
    // it), c.bin (by sendfile, after b.bin).
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    for (name, size, seed) in [("a", 1000, 21), ("b.bin", BIG as usize, 22), ("c.bin", 200_000, 23)] {
        let p = env.random_file(name, size, seed);
        std::fs::rename(p, env.src(&format!("t/{name}"))).unwrap();
    }
    let b = env.src("t/b.bin");
    let (tx, rr, addr) = send_changing(&env, &["-r", "src/t"], Stdio::null(), || rewrite(&open_rw(&b)));
    tx.assert_code(6).assert_stderr(&format!(
        "zcp: error: sending t/b.bin to {addr}: src/t/b.bin changed while being sent (modified in place, still {BIG} bytes); not committed, send it again\n"
    ));
    assert_eq!(tx.error_lines().len(), 1, "{}", tx.stderr);
    tx.assert_stderr("1 FAILED (1 changed while being sent)");
    // The receiver cannot know why the sender aborted: one entry failed,
    // the others arrived.
    rr.assert_code(4).assert_stderr("receiving t/b.bin from");
    assert_eq!(env.list("dst/t"), ["a", "c.bin"]);
    assert_same_file(&env.src("t/a"), &env.dst("t/a"));
    assert_same_file(&env.src("t/c.bin"), &env.dst("t/c.bin"));
}
