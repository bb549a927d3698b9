//! Trees: `zcp send -r` against `zcp recv DIR` with real directories,
//! compared entry by entry (kind, bytes, mode, mtime, link text, holes)
//! with the source; the `cp -r` operand conventions; partial transfers;
//! --no-clobber; replacing into an existing tree.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use crate::env::*;

/// One entry of a tree as compared: path, kind and what must be equal.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub path: Vec<u8>,
    what: String,
    mode: u32,
    mtime: (i64, i64),
}

/// Every entry under `root`, sorted by path; links are not followed.
pub fn scan(root: &Path) -> Vec<Seen> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<Seen>) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let p = root.join(&r);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("link -> {:?}", std::fs::read_link(&p).unwrap())
            } else if ft.is_dir() {
                "dir".to_string()
            } else {
                format!("file {} {}", m.len(), sha256_file(&p))
            };
            // A symlink's mode is not meaningful on Linux.
            let mode = if ft.is_symlink() { 0 } else { m.mode() & 0o7777 };
            out.push(Seen {
                path: r.as_os_str().as_bytes().to_vec(),
                what,
                mode,
                mtime: (m.mtime(), m.mtime_nsec()),
            });
            if ft.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn set_mtime(p: &Path, seconds: i64) {
    let status = std::process::Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{seconds}.123456789"))
        .arg(p)
        .status()
        .unwrap();
    assert!(status.success());
}

/// src/tree with everything the issue lists: nested and empty
/// directories, empty and multi-MiB files, odd names, links of every
/// kind, a sparse file, and modes 0600/0755/0444.
pub fn build_tree(env: &TestEnv) -> std::path::PathBuf {
    let t = env.src("tree");
    for d in ["a/b/c", "empty", "ro"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("empty.txt"), b"").unwrap();
    std::fs::write(t.join("a/small.txt"), b"small file\n").unwrap();
    let big = env.random_file("big.tmp", (5 << 20) + 3, 99);
    std::fs::rename(&big, t.join("a/b/c/big.bin")).unwrap();
    for name in [
        &b"with space"[..],
        b"line\nbreak",
        b"-leading-dash",
        "ütf-8 ✓".as_bytes(),
        b"bad\xff\xfeutf8",
    ] {
        std::fs::write(t.join("a").join(OsStr::from_bytes(name)), name).unwrap();
    }
    symlink("small.txt", t.join("a/rel-link")).unwrap();
    symlink("/etc/hostname", t.join("abs-link")).unwrap();
    symlink("does/not/exist", t.join("dangling")).unwrap();
    symlink("../../outside", t.join("a/escape")).unwrap();
    let sparse = std::fs::File::create(t.join("sparse.img")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"island of data", 40 << 20).unwrap();
    drop(sparse);
    std::fs::hard_link(t.join("a/small.txt"), t.join("hard.txt")).unwrap();
    for (p, mode) in [("a/small.txt", 0o600), ("a/b/c/big.bin", 0o755), ("empty.txt", 0o444)] {
        std::fs::set_permissions(t.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Files first, then directories bottom-up, so no later write moves a
    // directory's mtime; the read-only directory last of all.
    let mut seconds = 1_000_000_000;
    for e in scan(&t).iter().rev() {
        seconds += 1;
        set_mtime(&t.join(OsStr::from_bytes(&e.path)), seconds);
    }
    std::fs::set_permissions(t.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&t.join("ro"), 999_999_999);
    t
}

/// Sends `args` (relative to the env) into a fresh receiver on dst/.
fn transfer(env: &TestEnv, send_args: &[&str], recv_args: &[&str]) -> (Finished, Finished) {
    let mut r = recv_args.to_vec();
    r.push("dst");
    let rx = env.recv(&r);
    let tx = env.send(send_args, &rx.addr);
    (tx, rx.finish())
}

fn roundtrip_tree(extra: &[&str]) {
    roundtrip_tree_with(extra, None);
}

/// A full tree both ways, with `ZCP_FAULT` set to `recv_fault` on the
/// receiver; returns the receiver's output.
fn roundtrip_tree_with(extra: &[&str], recv_fault: Option<&str>) -> Finished {
    let env = TestEnv::new();
    let src = build_tree(&env);
    let mut args = extra.to_vec();
    args.extend(["-r", "src/tree"]);
    let mut recv_args = vec!["-v"];
    recv_args.extend(extra);
    recv_args.push("dst");
    let vars: Vec<_> = recv_fault.map(|f| ("ZCP_FAULT", f)).into_iter().collect();
    let rx = env.recv_with_env("127.0.0.1:0", &recv_args, &vars);
    let tx = env.send(&args, &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0);
    rr.assert_code(0);
    assert_eq!(scan(&env.dst("tree")), scan(&src), "the received tree differs");
    let (s, d) = (env.dst("tree/hard.txt"), env.dst("tree/a/small.txt"));
    assert_eq!(std::fs::metadata(s).unwrap().ino(), std::fs::metadata(d).unwrap().ino());
    let sparse = std::fs::metadata(env.dst("tree/sparse.img")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "holes were filled: {} blocks",
        sparse.blocks()
    );
    assert!(!env.path("outside").exists());
    tx.assert_stderr("verified (sha256)");
    rr.assert_stderr("received 9 files, 6 directories, 5 links");
    let staged: Vec<_> = scan(&env.dst(""))
        .into_iter()
        .filter(|e| e.path.starts_with(b".zcp-"))
        .collect();
    assert!(staged.is_empty(), "staged files left: {staged:?}");
    rr
}

#[test]
fn a_tree_arrives_exactly_with_zero_copy() {
    roundtrip_tree(&[]);
}

#[test]
fn a_tree_arrives_exactly_with_read_write() {
    roundtrip_tree(&["--no-zerocopy"]);
}

#[test]
fn files_are_staged_unnamed_or_under_hidden_names_when_that_is_all_there_is() {
    // The receiver stages files unnamed (O_TMPFILE) where it can...
    let rr = roundtrip_tree_with(&[], None);
    rr.assert_stderr("staging files as ");
    // ...and under hidden temporary names when the probe finds no
    // O_TMPFILE, or when one directory's file system lacks it.
    let rr = roundtrip_tree_with(&[], Some("tmpfile=EOPNOTSUPP"));
    rr.assert_stderr("staging files as hidden .zcp-*.part files");
    roundtrip_tree_with(&[], Some("tmpfile=EOPNOTSUPP@3"));
}

#[test]
fn a_tree_arrives_exactly_when_openat2_is_unavailable() {
    // Where the kernel has openat2 the receiver uses it...
    let rr = roundtrip_tree_with(&[], None);
    rr.assert_stderr("resolving paths in DEST ");
    // ...and without it (an old kernel, or a seccomp filter) it walks one
    // component at a time: nested directories, symbolic and hard links
    // arrive all the same.
    for errno in ["ENOSYS", "EPERM", "E2BIG"] {
        let fault = format!("openat2={errno}");
        let rr = roundtrip_tree_with(&[], Some(&fault));
        rr.assert_stderr(&format!(
            "resolving paths in DEST one component at a time with openat(O_NOFOLLOW): \
             openat2 is not available ({errno}"
        ));
    }
}

#[test]
fn links_already_in_dest_are_never_followed_with_either_resolver() {
    for vars in RESOLVERS {
        let env = TestEnv::new();
        for t in ["t", "u"] {
            std::fs::create_dir_all(env.src(t).join("sub")).unwrap();
            std::fs::write(env.src(t).join("sub/f"), b"through a link?").unwrap();
            std::fs::write(env.src(t).join("g"), b"fine").unwrap();
        }
        std::fs::create_dir_all(env.path("outside")).unwrap();
        // A link where a top-level directory goes, and one inside a
        // directory that is entered.
        symlink("../outside", env.dst("u")).unwrap();
        std::fs::create_dir_all(env.dst("t")).unwrap();
        symlink("../../outside", env.dst("t/sub")).unwrap();
        let rx = env.recv_with_env("127.0.0.1:0", &["-v", "dst"], vars);
        let tx = env.send(&["-r", "src/t", "src/u"], &rx.addr);
        let rr = rx.finish();
        tx.assert_code(4);
        rr.assert_code(4)
            .assert_stderr("it exists and is a symbolic link (never followed)");
        assert!(env.list("outside").is_empty(), "{vars:?}: written outside DEST");
        assert_eq!(std::fs::read(env.dst("t/g")).unwrap(), b"fine", "{vars:?}");
        for link in ["u", "t/sub"] {
            let meta = std::fs::symlink_metadata(env.dst(link)).unwrap();
            assert!(meta.file_type().is_symlink(), "{vars:?}: {link} was replaced");
        }
    }
}

#[test]
fn a_verified_file_that_cannot_be_put_in_place_fails_alone() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    for name in ["1", "2", "3"] {
        std::fs::write(env.src("t").join(name), name).unwrap();
    }
    // The probe links once; with unnamed staging the second link is the
    // first file's, else the rename of a named one fails.
    let rx = env.recv_with_env("127.0.0.1:0", &["-v", "dst"], &[("ZCP_FAULT", "link=EIO@2,rename=EIO")]);
    let tx = env.send(&["-r", "src/t"], &rx.addr);
    let rr = rx.finish();
    tx.assert_code(4);
    rr.assert_code(4).assert_stderr("Input/output error");
    assert_eq!(rr.error_lines().len(), 1, "{}", rr.stderr);
    assert_eq!(env.list("dst/t").len(), 2, "{:?}", env.list("dst/t"));
}

#[test]
fn operands_follow_cp_r_conventions() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("d1/sub")).unwrap();
    std::fs::write(env.src("d1/sub/x"), b"x").unwrap();
    std::fs::create_dir_all(env.src("d2")).unwrap();
    std::fs::write(env.src("d2/y"), b"y").unwrap();
    std::fs::write(env.src("a.txt"), b"a").unwrap();
    let (tx, rr) = transfer(&env, &["-r", "src/a.txt", "src/d1", "src/d2/"], &[]);
    tx.assert_code(0);
    rr.assert_code(0);
    assert_eq!(env.list("dst"), ["a.txt", "d1", "d2"]);
    assert_eq!(std::fs::read(env.dst("d1/sub/x")).unwrap(), b"x");
    assert_eq!(std::fs::read(env.dst("d2/y")).unwrap(), b"y");

    // `.` sends a directory's contents, not the directory.
    let env = TestEnv::new();
    std::fs::write(env.src("only"), b"1").unwrap();
    let (tx, _) = transfer(&env, &["-r", "src/."], &[]);
    tx.assert_code(0);
    assert_eq!(env.list("dst"), ["only"]);

    // Two operands with the same name are refused before connecting.
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("x/same")).unwrap();
    std::fs::create_dir_all(env.src("y/same")).unwrap();
    env.send(&["-r", "src/x/same", "src/y/same"], "127.0.0.1:9")
        .assert_code(2)
        .assert_stderr("same name same");
}

#[test]
fn special_files_are_skipped_with_a_warning_and_links_followed_only_with_l() {
    let env = TestEnv::new();
    let t = env.src("t");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("real"), b"real bytes").unwrap();
    let fifo = t.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    symlink("real", t.join("link")).unwrap();
    let (tx, rr) = transfer(&env, &["-r", "src/t"], &[]);
    tx.assert_code(0).assert_stderr("warning: skipping src/t/fifo");
    rr.assert_code(0);
    assert_eq!(env.list("dst/t"), ["link", "real"]);
    assert!(
        std::fs::symlink_metadata(env.dst("t/link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let env2 = TestEnv::new();
    std::fs::rename(&t, env2.src("t")).unwrap();
    let (tx, _) = transfer(&env2, &["-r", "-L", "src/t"], &[]);
    tx.assert_code(0);
    let link = std::fs::symlink_metadata(env2.dst("t/link")).unwrap();
    assert!(link.file_type().is_file(), "-L sends what the link points to");
    assert_eq!(std::fs::read(env2.dst("t/link")).unwrap(), b"real bytes");
}

#[test]
fn an_unreadable_file_is_named_and_the_others_still_arrive() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    for name in ["1", "2", "3"] {
        std::fs::write(env.src("t").join(name), name).unwrap();
    }
    let rx = env.recv(&["dst"]);
    let tx = env.send_with_env(&["-r", "src/t"], &rx.addr, &[("ZCP_FAULT", "open=EACCES@2")]);
    let rr = rx.finish();
    tx.assert_code(4)
        .assert_stderr("src/t/2")
        .assert_stderr("Permission denied");
    assert_eq!(tx.error_lines().len(), 1, "{}", tx.stderr);
    // The receiver is told, fails the same entry, and agrees.
    rr.assert_code(4)
        .assert_stderr("t/2")
        .assert_stderr("Permission denied");
    assert_eq!(env.list("dst/t"), ["1", "3"]);
}

#[test]
fn what_the_sender_cannot_walk_is_failed_on_both_ends() {
    // With -L a dangling link cannot be inspected and a link to an
    // ancestor would loop: the receiver is told, so both ends say partial.
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    std::fs::write(env.src("t/sub/f"), b"f").unwrap();
    symlink("nowhere", env.src("t/dangling")).unwrap();
    symlink("..", env.src("t/sub/loop")).unwrap();
    let (tx, rr) = transfer(&env, &["-L", "-r", "src/t"], &[]);
    tx.assert_code(4)
        .assert_stderr("t/dangling")
        .assert_stderr("t/sub/loop");
    rr.assert_code(4)
        .assert_stderr("receiving t/dangling from")
        .assert_stderr("receiving t/sub/loop from")
        .assert_stderr("2 FAILED");
    assert_eq!(std::fs::read(env.dst("t/sub/f")).unwrap(), b"f");
    assert!(!env.dst("t/dangling").exists() && !env.dst("t/sub/loop").exists());
}

#[test]
fn a_file_that_shrinks_while_sent_fails_alone() {
    // The second sendfile call meets end of file, as if the file had been
    // truncated: the rest of its raw payload is padded and the file
    // aborted, and the files after it still arrive. A source that changed
    // is exit 6 on the sender; the receiver only knows the entry failed.
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    let big = env.random_file("a.bin", 20 << 20, 3);
    std::fs::rename(big, env.src("t/a.bin")).unwrap();
    std::fs::write(env.src("t/b"), b"after").unwrap();
    let rx = env.recv(&["dst"]);
    let tx = env.send_with_env(&["-r", "src/t"], &rx.addr, &[("ZCP_FAULT", "sendfile=EOF@2")]);
    let rr = rx.finish();
    tx.assert_code(6)
        .assert_stderr("t/a.bin")
        .assert_stderr("changed while being sent (it ended after 8388608 of 20971520 bytes); not committed");
    rr.assert_code(4).assert_stderr("the sender aborted it");
    assert_eq!(env.list("dst/t"), ["b"]);
    assert_eq!(std::fs::read(env.dst("t/b")).unwrap(), b"after");
}

#[test]
fn a_receiver_side_failure_is_partial_on_both_ends() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/blocked")).unwrap();
    std::fs::write(env.src("t/blocked/inner"), b"i").unwrap();
    std::fs::write(env.src("t/fine"), b"f").unwrap();
    std::fs::create_dir_all(env.dst("t")).unwrap();
    // A file where the directory should go.
    std::fs::write(env.dst("t/blocked"), b"in the way").unwrap();
    let (tx, rr) = transfer(&env, &["-r", "src/t"], &[]);
    tx.assert_code(4).assert_stderr("t/blocked");
    rr.assert_code(4).assert_stderr("not a directory");
    assert_eq!(std::fs::read(env.dst("t/fine")).unwrap(), b"f");
    assert_eq!(std::fs::read(env.dst("t/blocked")).unwrap(), b"in the way");
}

#[test]
fn no_clobber_skips_a_directory_whose_name_is_taken_and_everything_beneath_it() {
    // --no-clobber keeps what is in DEST: a file where a directory arrives
    // is kept, the subtree is skipped (not failed), and both ends exit 0,
    // saying so in one line for the subtree.
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/taken/deeper")).unwrap();
    for i in 0..3 {
        std::fs::write(env.src(&format!("t/taken/f{i}")), b"x").unwrap();
    }
    std::fs::write(env.src("t/taken/deeper/z"), b"z").unwrap();
    std::fs::write(env.src("t/fine"), b"f").unwrap();
    std::fs::create_dir_all(env.dst("t")).unwrap();
    std::fs::write(env.dst("t/taken"), b"kept").unwrap();
    let (tx, rr) = transfer(&env, &["-r", "src/t"], &["-n"]);
    for (out, end) in [(&tx, "sender"), (&rr, "receiver")] {
        out.assert_code(0);
        assert!(out.error_lines().is_empty(), "{end}:\n{}", out.stderr);
        assert!(out.stderr.contains("skipped t/taken: "), "{end}:\n{}", out.stderr);
        assert!(
            out.stderr
                .contains("skipped t/taken/...: 5 entries beneath t/taken with it"),
            "{end}:\n{}",
            out.stderr
        );
        assert!(out.stderr.contains("6 skipped"), "{end}:\n{}", out.stderr);
    }
    assert_eq!(std::fs::read(env.dst("t/taken")).unwrap(), b"kept");
    assert_eq!(std::fs::read(env.dst("t/fine")).unwrap(), b"f");
    assert_eq!(env.list("dst/t"), ["fine", "taken"]);
}

#[test]
fn a_directory_that_cannot_be_made_is_reported_once_with_what_it_takes_along() {
    // Six entries beneath a directory the receiver cannot make: one line
    // for the directory and one counting the rest, on each end; -v lists
    // each of them.
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/blocked/deeper")).unwrap();
    for i in 0..4 {
        std::fs::write(env.src(&format!("t/blocked/f{i}")), b"x").unwrap();
    }
    std::fs::write(env.src("t/blocked/deeper/z"), b"z").unwrap();
    std::fs::write(env.src("t/fine"), b"f").unwrap();
    std::fs::create_dir_all(env.dst("t")).unwrap();
    std::fs::write(env.dst("t/blocked"), b"in the way").unwrap();
    for verbose in [false, true] {
        let args: &[&str] = if verbose { &["-v"] } else { &[] };
        let (tx, rr) = transfer(&env, &[args, &["-r", "src/t"]].concat(), args);
        tx.assert_code(4);
        rr.assert_code(4);
        for (out, end) in [(&tx, "sending"), (&rr, "receiving")] {
            let lines = out.error_lines();
            assert_eq!(lines.len(), 2, "{end}:\n{}", out.stderr);
            assert!(lines[0].contains(&format!("{end} t/blocked ")), "{}", lines[0]);
            assert!(lines[1].contains(&format!("{end} t/blocked/... ")), "{}", lines[1]);
            assert!(
                lines[1].contains("6 entries beneath t/blocked failed with it"),
                "{}",
                lines[1]
            );
            let listed = out.stderr.lines().filter(|l| l.contains("could not be made")).count();
            assert_eq!(listed, if verbose { 6 } else { 0 }, "{end}:\n{}", out.stderr);
            assert!(out.stderr.contains("7 FAILED"), "{end}:\n{}", out.stderr);
        }
        assert_eq!(std::fs::read(env.dst("t/fine")).unwrap(), b"f");
        assert_eq!(std::fs::read(env.dst("t/blocked")).unwrap(), b"in the way");
    }
}

#[test]
fn a_receiver_message_naming_an_odd_file_is_escaped_once() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    std::fs::write(env.src("t/a\nb"), b"x").unwrap();
    // A directory where the file should go: the receiver fails it and
    // says so in a VERDICT that names it, escaped (`a\nb`).
    std::fs::create_dir_all(env.dst("t/a\nb/sub")).unwrap();
    let (tx, rr) = transfer(&env, &["-r", "src/t"], &[]);
    rr.assert_code(4).assert_stderr("t/a\\nb");
    tx.assert_code(4);
    let said: Vec<&str> = tx
        .error_lines()
        .into_iter()
        .filter_map(|l| l.split_once("receiver: ").map(|(_, m)| m))
        .collect();
    assert_eq!(said.len(), 1, "{}", tx.stderr);
    assert!(said[0].contains("t/a\\nb"), "{}", tx.stderr);
    assert!(!said[0].contains("\\\\"), "escaped twice: {}", tx.stderr);
}

#[test]
fn an_existing_tree_is_updated_in_place_and_no_clobber_keeps_it() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    std::fs::write(env.src("t/sub/new"), b"new version").unwrap();
    std::fs::write(env.src("t/other"), b"other").unwrap();
    std::fs::create_dir_all(env.dst("t/sub")).unwrap();
    std::fs::write(env.dst("t/sub/new"), b"old version").unwrap();
    std::fs::write(env.dst("t/sub/untouched"), b"not in the transfer").unwrap();

    let (tx, rr) = transfer(&env, &["-r", "src/t"], &["--no-clobber"]);
    tx.assert_code(0).assert_stderr("skipped t/sub/new");
    rr.assert_code(0);
    assert_eq!(std::fs::read(env.dst("t/sub/new")).unwrap(), b"old version");
    assert_eq!(std::fs::read(env.dst("t/other")).unwrap(), b"other");

    let (tx, rr) = transfer(&env, &["-r", "src/t"], &[]);
    tx.assert_code(0);
    rr.assert_code(0);
    assert_eq!(std::fs::read(env.dst("t/sub/new")).unwrap(), b"new version");
    assert_eq!(
        std::fs::read(env.dst("t/sub/untouched")).unwrap(),
        b"not in the transfer"
    );
    let mut left = env.list("dst/t/sub");
    left.retain(|n| n.starts_with(".zcp-"));
    assert!(left.is_empty(), "staged files left: {left:?}");
}

#[test]
fn no_clobber_over_an_earlier_copy_with_hard_links_skips_everything() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    std::fs::write(env.src("t/small"), b"one inode").unwrap();
    std::fs::write(env.src("t/big"), vec![7u8; 200_000]).unwrap();
    std::fs::hard_link(env.src("t/small"), env.src("t/small-again")).unwrap();
    std::fs::hard_link(env.src("t/big"), env.src("t/big-again")).unwrap();
    let (tx, rr) = transfer(&env, &["-r", "src/t"], &[]);
    tx.assert_code(0);
    rr.assert_code(0);
    let (tx, rr) = transfer(&env, &["-n", "-r", "src/t"], &[]);
    tx.assert_code(0).assert_stderr("skipped t/small-again");
    rr.assert_code(0);
    let ino = |p: &str| std::fs::metadata(env.dst(p)).unwrap().ino();
    assert_eq!(ino("t/small"), ino("t/small-again"));
    assert_eq!(ino("t/big"), ino("t/big-again"));
}

#[test]
fn a_tree_into_a_single_file_destination_is_refused() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    std::fs::write(env.src("t/f"), b"f").unwrap();
    let rx = env.recv(&["dst/newname"]);
    let tx = env.send(&["-r", "src/t"], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(1).assert_stderr("give a directory as DEST");
    tx.assert_code(1);
    assert!(env.list("dst").is_empty());
}
