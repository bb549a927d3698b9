//! Fake senders whose trees break PROTOCOL.md version 2: entries out of
//! depth-first order, paths through links, hard links to anything but an
//! earlier file entry, flags and targets the kind forbids, sparse payloads
//! that lie. The real receiver answers each with an ERROR, exits 1 with
//! one error line naming the peer, and leaves dst/ holding exactly what
//! the legal entries before it made: nothing staged, nothing outside.

use std::os::unix::fs::MetadataExt;

use super::*;

/// A sized regular file with its payload and true TRAILER.
fn file(path: &str, data: &[u8]) -> Vec<u8> {
    sized_file(path.as_bytes(), data)
}

/// As [`file`], marked LINKED: a hard link may name it.
fn linked(path: &str, data: &[u8]) -> Vec<u8> {
    let mut e = EntryBody::new(path.as_bytes());
    (e.flags, e.size) = (SIZE_KNOWN | LINKED, data.len() as u64);
    [e.frame(), data.to_vec(), trailer(data.len() as u64, &sha256(data))].concat()
}

fn dir(path: &str) -> Vec<u8> {
    EntryBody::dir(path.as_bytes()).frame()
}

fn symlink(path: &str, target: &str) -> Vec<u8> {
    EntryBody::symlink(path.as_bytes(), target.as_bytes()).frame()
}

fn hardlink(path: &str, target: &str) -> Vec<u8> {
    EntryBody::hardlink(path.as_bytes(), target.as_bytes()).frame()
}

/// Runs one case in a fresh env (`prepare` plants files in dst/ first):
/// each `setup` entry is committed, `bad` is answered with an ERROR of
/// code 8 (a protocol error), and dst/ ends as `want` (see [`dst_tree`]).
fn refuse(what: &str, prepare: impl FnOnce(&TestEnv), setup: &[Vec<u8>], bad: &[u8], want: &[&str]) -> TestEnv {
    let env = TestEnv::new();
    prepare(&env);
    refuse_in(env, what, setup, bad, want)
}

/// [`refuse`] in an env the caller made.
fn refuse_in(env: TestEnv, what: &str, setup: &[Vec<u8>], bad: &[u8], want: &[&str]) -> TestEnv {
    let steps: Vec<(Vec<u8>, u8)> = setup.iter().map(|s| (s.clone(), COMMITTED)).collect();
    let r = refused_after(&env, &steps, bad);
    assert_eq!(r.out.code(), 8, "{what}: exit status; stderr:\n{}", r.out.stderr);
    assert_failed(&r.out, 8, &["protocol error"]);
    assert_eq!(r.error.0, PROTOCOL, "{what}: ERROR code; text {:?}", r.error.1);
    assert_eq!(dst_tree(&env), want, "{what}: dst/ afterwards");
    let sentinel = std::fs::metadata(env.path("outside/sentinel")).unwrap();
    assert_eq!(sentinel.nlink(), 1, "{what}: the sentinel gained a hard link");
    env
}

fn nothing(_: &TestEnv) {}

#[test]
fn an_entry_whose_parent_the_session_did_not_open_is_refused() {
    let plant_nodir = |env: &TestEnv| std::fs::create_dir(env.dst("nodir")).unwrap();
    refuse("nodir/x", nothing, &[], &file("nodir/x", b"evil"), &[]);
    refuse("nodir/sub", nothing, &[], &dir("nodir/sub"), &[]);
    refuse("nodir/l", nothing, &[], &symlink("nodir/l", "x"), &[]);
    // A directory already in dst/ is not one the session created or entered.
    refuse(
        "existing nodir/x",
        plant_nodir,
        &[],
        &file("nodir/x", b"evil"),
        &["nodir/"],
    );
    refuse("a/b/c", nothing, &[dir("a")], &file("a/b/c", b"evil"), &["a/"]);
    refuse("f/x", nothing, &[file("f", b"file")], &file("f/x", b"evil"), &["f"]);
    refuse(
        "nodir/h",
        nothing,
        &[linked("f", b"f")],
        &hardlink("nodir/h", "f"),
        &["f"],
    );
    refuse(
        "d, e, d/h",
        nothing,
        &[dir("d"), linked("d/f", b"f"), dir("e")],
        &hardlink("d/h", "d/f"),
        &["d/", "d/f", "e/"],
    );
}

#[test]
fn an_entry_back_inside_a_closed_directory_is_refused() {
    refuse(
        "d, e, d/x",
        nothing,
        &[dir("d"), file("e", b"outside d")],
        &file("d/x", b"evil"),
        &["d/", "e"],
    );
    refuse("d, e/, d/x", nothing, &[dir("d"), dir("e")], &dir("d/x"), &["d/", "e/"]);
    refuse(
        "d, d/s, d/t, d/s/x",
        nothing,
        &[dir("d"), dir("d/s"), file("d/t", b"t")],
        &file("d/s/x", b"evil"),
        &["d/", "d/s/", "d/t"],
    );
    refuse(
        "d, d/s, e, d/y",
        nothing,
        &[dir("d"), dir("d/s"), symlink("e", "d")],
        &symlink("d/y", "evil"),
        &["d/", "d/s/", "e -> d"],
    );
}

#[test]
fn nothing_lands_through_a_symlink_entry() {
    let unique = format!("zcp-hostile-{}", std::process::id());
    for target in ["/tmp", "..", "../outside", ".", "d"] {
        let link = format!("d -> {target}");
        let bad: [(&str, Vec<u8>); 5] = [
            ("file", file(&format!("d/{unique}"), b"evil")),
            ("sentinel", file("d/sentinel", b"evil")),
            ("dir", dir(&format!("d/{unique}"))),
            ("symlink", symlink(&format!("d/{unique}"), "/")),
            ("hardlink", hardlink(&format!("d/{unique}"), "f")),
        ];
        for (what, bytes) in bad {
            let what = format!("{link}, then a {what} under d/");
            let setup = [linked("f", b"f"), symlink("d", target)];
            refuse(&what, nothing, &setup, &bytes, &[&link, "f"]);
            assert!(
                !std::path::Path::new("/tmp").join(&unique).exists(),
                "{what}: wrote into /tmp"
            );
        }
    }
}

#[test]
fn a_symlink_over_a_closed_directory_does_not_reopen_it() {
    // d/ is closed by the symlink d itself; whatever the receiver does with
    // the symlink, d/x must not land (through the link or in the old d/).
    for target in ["../outside", "/tmp"] {
        let env = TestEnv::new();
        let (out, _conn) = run_against(&env, recv_cmd(&env, &[], "dst"), |addr| {
            let mut p = checked_handshake(addr);
            p.send(&dir("d"));
            let v = parse_verdict(&p.expect_frame(VERDICT));
            assert_eq!((v.status, v.digest.len()), (COMMITTED, 0), "{v:?}");
            p.send(&symlink("d", target));
            let v = parse_verdict(&p.expect_frame(VERDICT));
            assert!(v.status == COMMITTED || v.status == FAILED, "{v:?}");
            p.send_lossy(&file("d/sentinel", b"evil"));
            match p.read_frame() {
                Some((ERROR, _)) => {}
                other => panic!("d/sentinel after the symlink d: {other:?}, not ERROR"),
            }
            p
        });
        // Two failures may be named: the symlink d (a directory is there)
        // and the protocol error for d/sentinel, which decides the exit
        // status; each names the peer.
        out.assert_code(8);
        let lines = out.error_lines();
        assert!((1..=2).contains(&lines.len()), "{}", out.stderr);
        assert!(lines.iter().all(|l| l.contains("127.0.0.1:")), "{}", out.stderr);
        assert!(lines.last().unwrap().contains("d/sentinel"), "{}", out.stderr);
        let tree = dst_tree(&env);
        assert!(
            tree == ["d/"] || tree == [format!("d -> {target}")],
            "dst/ afterwards: {tree:?}"
        );
    }
}

#[test]
fn hard_links_to_anything_but_an_earlier_file_entry_are_refused() {
    let setup = [
        linked("f", b"f"),
        dir("d"),
        linked("d/g", b"g"),
        symlink("s", "d"),
        symlink("o", "../outside"),
        symlink("sf", "f"),
        file("plain", b"not LINKED"),
    ];
    let want = ["d/", "d/g", "f", "o -> ../outside", "plain", "s -> d", "sf -> f"];
    let plant_never = |env: &TestEnv| std::fs::write(env.dst("never"), b"not sent").unwrap();
    for target in [
        "../outside/sentinel",
        "d/../../outside/sentinel",
        "/etc/passwd",
        "nothere",
        "s/g",
        "o/sentinel",
        "sf",
        "s",
        "d",
        "l",
        "./f",
        "d//g",
        "f/",
        "f\0",
        // A committed file, but not sent as LINKED: a protocol error.
        "plain",
    ] {
        refuse(target, nothing, &setup, &hardlink("l", target), &want);
    }
    // Absolute paths to the sentinel and to the very file f sent earlier.
    for name in ["outside/sentinel", "dst/f"] {
        let env = TestEnv::new();
        let absolute = env.path(name).to_string_lossy().into_owned();
        refuse_in(env, &absolute, &setup, &hardlink("l", &absolute), &want);
    }
    // On disk in dst/ but never sent: not an entry of this session.
    let mut with_never = want.to_vec();
    with_never.push("never");
    with_never.sort();
    refuse("never", plant_never, &setup, &hardlink("l", "never"), &with_never);
}

#[test]
fn flags_that_only_a_regular_file_may_carry_are_refused() {
    let with = |mut e: EntryBody, flags: u8, size: u64| {
        e.flags = flags;
        e.size = size;
        e.frame()
    };
    let d = || EntryBody::dir(b"x");
    let s = || EntryBody::symlink(b"x", b"f");
    let h = || EntryBody::hardlink(b"x", b"f");
    let cases: [(&str, Vec<u8>); 13] = [
        ("dir LINKED", with(d(), LINKED, 0)),
        ("symlink LINKED", with(s(), LINKED, 0)),
        ("hardlink LINKED", with(h(), LINKED, 0)),
        ("dir SIZE_KNOWN", with(d(), SIZE_KNOWN, 0)),
        ("dir SIZE_KNOWN 5", with(d(), SIZE_KNOWN, 5)),
        ("dir SPARSE", with(d(), SIZE_KNOWN | SPARSE, 0)),
        ("dir SPARSE alone", with(d(), SPARSE, 0)),
        ("symlink SIZE_KNOWN", with(s(), SIZE_KNOWN, 1)),
        ("symlink SPARSE", with(s(), SIZE_KNOWN | SPARSE, 1)),
        ("hardlink SIZE_KNOWN", with(h(), SIZE_KNOWN, 1)),
        ("hardlink SPARSE", with(h(), SIZE_KNOWN | SPARSE, 1)),
        ("file SPARSE without SIZE_KNOWN", with(EntryBody::new(b"x"), SPARSE, 0)),
        (
            "file SPARSE without SIZE_KNOWN, then DATA",
            [with(EntryBody::new(b"x"), SPARSE, 1), frame(DATA, b"x")].concat(),
        ),
    ];
    for (what, bytes) in cases {
        refuse(what, nothing, &[linked("f", b"f")], &bytes, &["f"]);
    }
}

#[test]
fn targets_the_kind_forbids_or_requires_are_refused() {
    let with_target = |mut e: EntryBody, target: &[u8]| {
        e.target = target.to_vec();
        e.frame()
    };
    let sized = {
        let mut e = EntryBody::new(b"x");
        (e.flags, e.size) = (SIZE_KNOWN, 4);
        e
    };
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "file with a target",
            [with_target(sized.clone(), b"f"), b"evil".to_vec()].concat(),
        ),
        (
            "stream with a target",
            with_target(EntryBody::new(b"x"), b"../outside/sentinel"),
        ),
        ("dir with a target", with_target(EntryBody::dir(b"x"), b"f")),
        (
            "symlink without a target",
            with_target(EntryBody::symlink(b"x", b""), b""),
        ),
        (
            "hardlink without a target",
            with_target(EntryBody::hardlink(b"x", b""), b""),
        ),
        (
            "symlink target of 4096 bytes",
            EntryBody::symlink(b"x", &[b'a'; 4096]).frame(),
        ),
        (
            "hardlink target of 4096 bytes",
            EntryBody::hardlink(b"x", &[b'a'; 4096]).frame(),
        ),
    ];
    for (what, bytes) in cases {
        refuse(what, nothing, &[linked("f", b"f")], &bytes, &["f"]);
    }
}

#[test]
fn sparse_payloads_that_break_their_size_are_refused() {
    let sparse = {
        let mut e = EntryBody::new(b"s");
        (e.flags, e.size) = (SIZE_KNOWN | SPARSE | HAS_MODE, 10);
        e.mode = 0o644;
        e.frame()
    };
    let zeros = |n| vec![0u8; n];
    let t = |n: u64, data: &[u8]| trailer(n, &sha256(data));
    let cases: [(&str, Vec<u8>); 13] = [
        ("DATA past size", frame(DATA, &[7; 11])),
        (
            "DATA then DATA past size",
            [frame(DATA, &[7; 10]), frame(DATA, &[7])].concat(),
        ),
        ("DATA then HOLE past size", [frame(DATA, &[7; 6]), hole(5)].concat()),
        ("HOLE past size", hole(11)),
        ("HOLE of u64::MAX", hole(u64::MAX)),
        ("HOLE then DATA past size", [hole(4), frame(DATA, &[7; 7])].concat()),
        ("full, then HOLE", [frame(DATA, &[7; 10]), hole(1)].concat()),
        ("empty HOLE", hole(0)),
        ("HOLE body too short", frame(HOLE, &[0, 0, 0, 1])),
        ("HOLE body empty", frame(HOLE, &[])),
        (
            "short of size, TRAILER says size",
            [hole(6), t(10, &zeros(10))].concat(),
        ),
        ("short of size, TRAILER says so", [hole(6), t(6, &zeros(6))].concat()),
        ("DATA of 0 bytes", header(DATA, 0)),
    ];
    let plant = |env: &TestEnv| std::fs::write(env.dst("s"), b"previous").unwrap();
    for (what, payload) in cases {
        let env = refuse(what, plant, &[], &[&sparse[..], &payload].concat(), &["s"]);
        assert_eq!(std::fs::read(env.dst("s")).unwrap(), b"previous", "{what}");
    }
}

#[test]
fn a_hard_link_to_a_file_that_was_not_committed_links_nothing() {
    // dst/secret was there before the session; the session's own LINKED
    // secret fails its digest (or is aborted), so the old file keeps the
    // name. A hard link to "secret" must not reach that old file: PROTOCOL.md
    // fails it with VERDICT status 2, and the session goes on.
    let mut sized = EntryBody::new(b"secret");
    (sized.flags, sized.size) = (SIZE_KNOWN | LINKED, 3);
    let mut stream = EntryBody::new(b"secret");
    stream.flags = LINKED;
    let bad_digest = [sized.frame(), b"new".to_vec(), trailer(3, &sha256(b"other"))].concat();
    let aborted = [stream.frame(), frame(DATA, b"new"), frame(ABORT, &text("gone"))].concat();
    // A mismatch outranks the partial transfer (3); otherwise partial (4).
    for (what, secret, status, code) in [("mismatch", bad_digest, MISMATCH, 3), ("aborted", aborted, FAILED, 4)] {
        let env = TestEnv::new();
        std::fs::write(env.dst("secret"), b"not from this session").unwrap();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = checked_handshake(addr);
            p.send(&secret);
            let v = parse_verdict(&p.expect_frame(VERDICT));
            assert_eq!(v.status, status, "{what}: {v:?}");
            p.send(&hardlink("copy", "secret"));
            let v = parse_verdict(&p.expect_frame(VERDICT));
            assert_eq!(v.status, FAILED, "{what}: the hard link's VERDICT {v:?}");
            commit(&mut p, b"after", b"the session goes on");
            end_session(p);
        });
        out.assert_code(code);
        assert_eq!(dst_tree(&env), ["after", "secret"], "{what}");
        let meta = std::fs::metadata(env.dst("secret")).unwrap();
        assert_eq!(meta.nlink(), 1, "{what}: the old secret got a second name");
        assert_eq!(std::fs::read(env.dst("secret")).unwrap(), b"not from this session");
    }
}
