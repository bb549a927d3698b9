//! The real `zcp send -r` against a fake receiver that checks every entry
//! against PROTOCOL.md version 2: legal paths, depth-first pre-order,
//! links sent as links (never followed), payloads whose TRAILER counts
//! and hashes exactly what was sent, and a failed VERDICT for one entry
//! making the sender fail while the others are committed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;

use super::*;

/// One entry as the fake receiver took it.
#[derive(Debug)]
struct Took {
    entry: EntryBody,
    /// The payload (holes as zeros) of a regular file.
    content: Vec<u8>,
}

/// Checks a path (or hard link target) from the sender against the path
/// rules; panics naming it if one is broken.
fn assert_legal_path(path: &[u8]) {
    let shown = String::from_utf8_lossy(path);
    assert!((1..=4096).contains(&path.len()), "path length: {shown:?}");
    for c in path.split(|b| *b == b'/') {
        assert!((1..=255).contains(&c.len()), "component length in {shown:?}");
        assert!(!c.contains(&0), "NUL in {shown:?}");
        assert!(c != b"." && c != b"..", "'.' or '..' in {shown:?}");
    }
}

/// The parent of a path: everything before its last `/`, or empty.
fn parent(path: &[u8]) -> &[u8] {
    path.iter().rposition(|b| *b == b'/').map_or(&[][..], |i| &path[..i])
}

/// Reads a regular file's payload in whichever form its flags announce,
/// then its TRAILER, which must count and hash exactly that payload.
fn take_payload(p: &mut Peer, e: &EntryBody) -> Vec<u8> {
    let mut content = Vec::new();
    if e.flags & SIZE_KNOWN != 0 && e.flags & SPARSE == 0 {
        content = p.read_exact_vec(usize::try_from(e.size).unwrap());
    }
    let trailer = loop {
        let (kind, body) = p.read_frame().expect("the sender closed inside an entry");
        match kind {
            DATA if e.flags & SIZE_KNOWN == 0 || e.flags & SPARSE != 0 => content.extend_from_slice(&body),
            HOLE if e.flags & SPARSE != 0 => {
                assert_eq!(body.len(), 8, "HOLE body");
                let n = u64::from_be_bytes(body.try_into().unwrap());
                assert!(n >= 1, "empty HOLE");
                content.resize(content.len() + usize::try_from(n).unwrap(), 0);
            }
            TRAILER => break body,
            other => panic!("frame type {other} inside {e:?}"),
        }
        if e.flags & SPARSE != 0 {
            assert!(content.len() as u64 <= e.size, "sparse payload runs past size: {e:?}");
        }
    };
    if e.flags & SIZE_KNOWN != 0 {
        assert_eq!(content.len() as u64, e.size, "payload length of {e:?}");
    }
    let want = trailer_with(content.len() as u64, SHA256, &sha256(&content));
    assert_eq!(trailer, want[5..], "TRAILER of {e:?}");
    content
}

/// Serves one `zcp send -r` session: checks each entry and its place in
/// the tree, answers it with `answer(entry)` (None: committed with the
/// right digest) and returns what it took when the sender sends DONE or
/// closes.
fn serve(fake: &FakeReceiver, answer: impl Fn(&EntryBody) -> Option<Vec<u8>>) -> (Peer, Vec<Took>) {
    let mut p = fake.accept();
    let mut took: Vec<Took> = Vec::new();
    let mut open: Vec<Vec<u8>> = Vec::new();
    while let Some((kind, body)) = p.read_frame() {
        if kind == DONE {
            p.send(&frame(DONE, &[]));
            break;
        }
        assert_eq!(kind, ENTRY, "expected ENTRY or DONE");
        let e = EntryBody::parse(&body);
        assert_legal_path(&e.path);
        assert_eq!(e.flags & !0x1f, 0, "unknown flags: {e:?}");
        assert!(e.flags & HAS_MTIME == 0 || e.nanos < 1_000_000_000, "{e:?}");
        assert!(!took.iter().any(|t| t.entry.path == e.path), "path sent twice: {e:?}");
        // Depth-first pre-order: the parent is on the stack of open directories.
        let up = parent(&e.path);
        while open
            .last()
            .is_some_and(|top| up != &top[..] && !up.starts_with(&[&top[..], b"/"].concat()))
        {
            open.pop();
        }
        assert!(
            up.is_empty() || open.last().is_some_and(|top| top == up),
            "{:?} comes outside its parent's open subtree (open: {open:?})",
            String::from_utf8_lossy(&e.path)
        );
        let content = match e.kind {
            KIND_FILE => {
                assert!(e.target.is_empty(), "a file with a target: {e:?}");
                take_payload(&mut p, &e)
            }
            KIND_DIR | KIND_SYMLINK | KIND_HARDLINK => {
                assert_eq!(e.flags & (SIZE_KNOWN | SPARSE | LINKED), 0, "{e:?}");
                if e.kind == KIND_DIR {
                    assert!(e.target.is_empty(), "a directory with a target: {e:?}");
                    open.push(e.path.clone());
                } else {
                    assert!((1..=4095).contains(&e.target.len()), "{e:?}");
                }
                if e.kind == KIND_HARDLINK {
                    assert_legal_path(&e.target);
                    let to = took.iter().find(|t| t.entry.path == e.target);
                    assert!(
                        to.is_some_and(|t| t.entry.kind == KIND_FILE && t.entry.flags & LINKED != 0),
                        "hard link to no earlier LINKED file: {e:?}"
                    );
                }
                Vec::new()
            }
            other => panic!("entry kind {other}: {e:?}"),
        };
        let reply = answer(&e).unwrap_or_else(|| {
            let digest = if e.kind == KIND_FILE {
                sha256(&content)
            } else {
                Vec::new()
            };
            verdict(COMMITTED, &digest, "")
        });
        p.send(&reply);
        took.push(Took { entry: e, content });
    }
    (p, took)
}

/// src/tree: directories (one empty), files, a sparse file, hard links and
/// symbolic links to a directory, an absolute path and nowhere.
fn make_tree(env: &TestEnv) {
    let tree = env.src("tree");
    for d in ["a/b", "a/empty"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    let f1 = std::fs::read(env.random_file("f1", 1000, 3)).unwrap();
    let f2 = std::fs::read(env.random_file("f2", 70_000, 5)).unwrap();
    std::fs::remove_file(env.src("f1")).unwrap();
    std::fs::remove_file(env.src("f2")).unwrap();
    std::fs::write(tree.join("a/f1"), f1).unwrap();
    std::fs::write(tree.join("a/b/f2"), f2).unwrap();
    std::fs::write(tree.join("z.txt"), b"zzz").unwrap();
    std::fs::write(tree.join("sp ace\nand newline"), b"odd name").unwrap();
    std::fs::write(tree.join("hard1"), b"two names").unwrap();
    std::fs::hard_link(tree.join("hard1"), tree.join("hard2")).unwrap();
    let sparse = std::fs::File::create(tree.join("sparse")).unwrap();
    sparse.set_len(2 << 20).unwrap();
    sparse.write_all_at(b"in the middle", 1 << 20).unwrap();
    std::os::unix::fs::symlink("a", tree.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", tree.join("abs")).unwrap();
    std::os::unix::fs::symlink("nowhere/at all", tree.join("dangling")).unwrap();
}

/// Runs `zcp send -r src/tree` against `serve` with `answer`; returns the
/// sender's outcome and what the fake took, keyed by the path relative to
/// the tree (a leading `tree/`, from a top-level `tree` directory entry,
/// is stripped).
fn send_tree(answer: impl Fn(&EntryBody) -> Option<Vec<u8>>) -> (Finished, BTreeMap<String, Took>, TestEnv) {
    let env = TestEnv::new();
    make_tree(&env);
    let fake = FakeReceiver::bind();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "--no-auth", "-r", "src/tree", &fake.addr()])
        .stdin(Stdio::null());
    let sender = Running::spawn(cmd, "zcp send -r");
    let (conn, took) = serve(&fake, answer);
    let out = sender.finish();
    drop(conn);
    assert_no_escape_bytes(&out.stderr);
    let top = took
        .first()
        .is_some_and(|t| t.entry.path == b"tree" && t.entry.kind == KIND_DIR);
    let mut by_path = BTreeMap::new();
    for t in took {
        let path = String::from_utf8(t.entry.path.clone()).unwrap();
        let rel = if top {
            path.strip_prefix("tree/").unwrap_or(&path).to_string()
        } else {
            path
        };
        by_path.insert(rel, t);
    }
    (out, by_path, env)
}

#[test]
fn a_tree_is_sent_depth_first_with_links_as_links() {
    let (out, took, env) = send_tree(|_| None);
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
    let tree = env.src("tree");
    let mut want: BTreeSet<String> = [
        "a", "a/f1", "a/b", "a/b/f2", "a/empty", "z.txt", "hard1", "hard2", "sparse", "link", "abs", "dangling",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    want.insert("sp ace\nand newline".into());
    if took.contains_key("tree") {
        want.insert("tree".into());
    }
    let got: BTreeSet<String> = took.keys().cloned().collect();
    assert_eq!(got, want, "the entries sent (a link followed would add link/...)");
    for (rel, t) in &took {
        let source = if rel == "tree" { tree.clone() } else { tree.join(rel) };
        let meta = std::fs::symlink_metadata(&source).unwrap();
        if meta.is_symlink() {
            assert_eq!(t.entry.kind, KIND_SYMLINK, "{rel}: {:?}", t.entry);
            let text = std::fs::read_link(&source).unwrap();
            assert_eq!(t.entry.target, text.as_os_str().as_encoded_bytes(), "{rel}: link text");
        } else if meta.is_dir() {
            assert_eq!(t.entry.kind, KIND_DIR, "{rel}: {:?}", t.entry);
        } else if t.entry.kind == KIND_HARDLINK {
            // Only for the second name of hard1/hard2, to the first one sent.
            let other = if rel == "hard2" { "hard1" } else { "hard2" };
            assert_eq!(meta.nlink(), 2, "{rel}: a hard link for a file with one name");
            assert_eq!(t.entry.target, took[other].entry.path, "{rel}: {:?}", t.entry);
        } else {
            assert_eq!(t.entry.kind, KIND_FILE, "{rel}: {:?}", t.entry);
            assert_eq!(t.content, std::fs::read(&source).unwrap(), "{rel}: payload");
        }
    }
}

#[test]
fn one_failed_verdict_fails_the_sender_while_the_rest_commit() {
    let failed = |e: &EntryBody| e.path.ends_with(b"a/b/f2");
    let (out, took, _env) = send_tree(|e| failed(e).then(|| verdict(FAILED, &[], "quota \u{1b}[2J")));
    assert!(took.contains_key("a/b/f2"), "the sender never sent a/b/f2");
    // Partial: both ends exit 4 (README, "Exit status").
    assert_failed(&out, 4, &["f2", "receiver: quota \\u{1b}[2J"]);
}

/// `zcp send ARGS src/f` against a fake receiver that answers the
/// handshake with `reply`, takes the file and answers it with `answer`;
/// returns the sender's outcome and the sender's HELLO options.
fn send_one(args: &[&str], reply: &[u8], answer: &[u8]) -> (Finished, Vec<(u16, Vec<u8>)>) {
    let env = TestEnv::new();
    env.random_file("f", 1000, 9);
    let data = std::fs::read(env.src("f")).unwrap();
    let fake = FakeReceiver::bind();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "--no-auth"])
        .args(args)
        .args(["src/f", &fake.addr()])
        .stdin(Stdio::null());
    let sender = Running::spawn(cmd, "zcp send");
    let (mut p, options) = fake.accept_answering(reply);
    let e = EntryBody::parse(&p.expect_frame(ENTRY));
    assert_eq!(take_payload(&mut p, &e), data);
    p.send(answer);
    p.expect_frame(DONE);
    p.send(&frame(DONE, &[]));
    let out = sender.finish();
    drop(p);
    (out, options)
}

fn no_clobber_hello() -> Vec<u8> {
    hello_options(&[
        (TAG_ROLE, &[ROLE_RECEIVER][..]),
        (TAG_CHECKSUM, &[SHA256][..]),
        (TAG_NO_CLOBBER, &[][..]),
    ])
}

#[test]
fn no_clobber_is_asked_for_in_hello_and_status_3_is_then_success() {
    let skipped = verdict(SKIPPED, &[], "exists");
    let (out, options) = send_one(&["-n"], &no_clobber_hello(), &skipped);
    assert!(
        options.contains(&(TAG_NO_CLOBBER, Vec::new())),
        "HELLO lacks an empty NO_CLOBBER (0x8004): {options:?}"
    );
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);

    // The receiver's own setting (its HELLO carries NO_CLOBBER, the sender
    // did not ask): PROTOCOL.md's HELLO table and README say this is a
    // skip too, and "the exit status stays 0".
    let (out, options) = send_one(&[], &no_clobber_hello(), &skipped);
    assert!(!options.iter().any(|(tag, _)| *tag == TAG_NO_CLOBBER), "{options:?}");
    out.assert_code(0);
    assert!(out.error_lines().is_empty(), "{}", out.stderr);
}

#[test]
fn a_source_path_beyond_the_protocol_limit_is_never_sent() {
    // src/deep/ nests 17 components of 250 bytes: its deepest entries have
    // paths over 4096 bytes, which no ENTRY may carry. `serve` panics on
    // an illegal path; the sender must fail those entries instead.
    let env = TestEnv::new();
    let component = "c".repeat(250);
    let script = format!(
        "cd src && mkdir deep && cd deep && for i in $(seq 17); do mkdir {component} && cd -P {component} || exit 9; done && echo deep > f"
    );
    let status = Command::new("sh")
        .current_dir(env.dir.path())
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "building the deep tree");
    std::fs::write(env.src("deep/shallow"), b"fine").unwrap();
    let fake = FakeReceiver::bind();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["send", "--no-auth", "-r", "src/deep", &fake.addr()])
        .stdin(Stdio::null());
    let sender = Running::spawn(cmd, "zcp send -r");
    let (conn, took) = serve(&fake, |_| None);
    let out = sender.finish();
    drop(conn);
    let _ = Command::new("rm")
        .current_dir(env.dir.path())
        .args(["-rf", "src/deep"])
        .status();
    assert!(
        took.iter().any(|t| t.entry.path.ends_with(b"shallow")),
        "shallow was not sent"
    );
    assert!(
        !took.iter().any(|t| t.entry.path.ends_with(b"/f")),
        "the deepest file was sent (under a legal path?)"
    );
    assert!([1, 4].contains(&out.code()), "exit {}: {}", out.code(), out.stderr);
    assert!(!out.error_lines().is_empty(), "{}", out.stderr);
}
