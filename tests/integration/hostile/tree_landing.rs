//! Fake senders with legal but awkward version 2 trees: links whose text
//! points anywhere (stored verbatim, never followed), hard links, sparse
//! files, directories already in dst/, read-only directories, NO_CLOBBER.
//! What lands is exactly what the spec says, and nothing else.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// Sends a directory or link entry and expects its VERDICT: `status`, and
/// no digest ("The digest is empty for directories and links").
fn bare(p: &mut Peer, e: &EntryBody, status: u8) {
    p.send(&e.frame());
    let v = parse_verdict(&p.expect_frame(VERDICT));
    assert_eq!(v.status, status, "VERDICT for {e:?}; text {:?}", v.text);
    if status == COMMITTED {
        assert!(v.digest.is_empty(), "a digest for {e:?}: {v:?}");
    }
}

fn with_meta(mut e: EntryBody, mode: Option<u32>, mtime: Option<i64>) -> EntryBody {
    if let Some(mode) = mode {
        e.flags |= HAS_MODE;
        e.mode = mode;
    }
    if let Some(mtime) = mtime {
        e.flags |= HAS_MTIME;
        e.mtime = mtime;
    }
    e
}

#[test]
fn a_legal_tree_lands_with_links_stored_verbatim_and_never_followed() {
    let env = TestEnv::new();
    let mut before = None;
    let up = with_meta(
        EntryBody::symlink(b"top/up", b"../../outside/sentinel"),
        Some(0o777),
        Some(1_000_000),
    );
    let out = against_receiver(&env, &[], |addr| {
        // run_against planted the sentinel just now.
        before = Some(std::fs::metadata(env.path("outside/sentinel")).unwrap());
        let mut p = checked_handshake(addr);
        bare(&mut p, &with_meta(EntryBody::dir(b"top"), Some(0o755), None), COMMITTED);
        commit_linked(&mut p, b"top/a.txt", b"file a");
        bare(&mut p, &EntryBody::dir(b"top/sub"), COMMITTED);
        commit_linked(&mut p, b"top/sub/b", b"file b");
        bare(&mut p, &EntryBody::symlink(b"top/sub/self", b"../sub"), COMMITTED);
        bare(
            &mut p,
            &EntryBody::symlink(b"top/abs", b"/nonexistent/zcp-abs"),
            COMMITTED,
        );
        bare(
            &mut p,
            &EntryBody::symlink(b"top/dangling", b"nowhere/at all"),
            COMMITTED,
        );
        bare(&mut p, &up, COMMITTED);
        bare(&mut p, &EntryBody::symlink(b"top/root", b"/"), COMMITTED);
        bare(&mut p, &EntryBody::hardlink(b"top/hl", b"top/a.txt"), COMMITTED);
        commit(&mut p, b"top/z", b"after the links");
        // After top/ closed: a hard link to a file inside it.
        bare(&mut p, &EntryBody::hardlink(b"hl2", b"top/sub/b"), COMMITTED);
        end_session(p);
    });
    out.assert_code(0);
    assert_eq!(
        dst_tree(&env),
        [
            "hl2",
            "top/",
            "top/a.txt",
            "top/abs -> /nonexistent/zcp-abs",
            "top/dangling -> nowhere/at all",
            "top/hl",
            "top/root -> /",
            "top/sub/",
            "top/sub/b",
            "top/sub/self -> ../sub",
            "top/up -> ../../outside/sentinel",
            "top/z",
        ]
    );
    let ino = |rel: &str| std::fs::symlink_metadata(env.dst(rel)).unwrap().ino();
    assert_eq!(ino("top/hl"), ino("top/a.txt"), "top/hl is not a hard link");
    assert_eq!(ino("hl2"), ino("top/sub/b"), "hl2 is not a hard link");
    assert_eq!(std::fs::read(env.dst("hl2")).unwrap(), b"file b");
    // The link's mtime is the link's own; its mode was ignored, and neither
    // reached the sentinel it points at.
    let link = std::fs::symlink_metadata(env.dst("top/up")).unwrap();
    assert_eq!(link.mtime(), 1_000_000, "mtime of the link itself");
    let after = std::fs::metadata(env.path("outside/sentinel")).unwrap();
    let before = before.unwrap();
    assert_eq!(
        (after.mode(), after.mtime(), after.mtime_nsec()),
        (before.mode(), before.mtime(), before.mtime_nsec()),
        "the sentinel was touched through a link"
    );
}

/// One frame of a sparse payload: `Ok(data)` for DATA, `Err(n)` for a
/// HOLE of n bytes.
type Part<'a> = Result<&'a [u8], u64>;

/// The bytes a sparse payload stands for.
fn sparse_bytes(parts: &[Part]) -> Vec<u8> {
    let mut v = Vec::new();
    for part in parts {
        match part {
            Ok(data) => v.extend_from_slice(data),
            Err(n) => v.resize(v.len() + *n as usize, 0),
        }
    }
    v
}

/// Sends a SPARSE entry made of `parts`, with its true TRAILER.
fn send_sparse(p: &mut Peer, path: &[u8], parts: &[Part]) -> Vec<u8> {
    let content = sparse_bytes(parts);
    let mut e = EntryBody::new(path);
    (e.flags, e.size, e.mode) = (SIZE_KNOWN | SPARSE | HAS_MODE, content.len() as u64, 0o644);
    p.send(&e.frame());
    for part in parts {
        match part {
            Ok(data) => p.send(&frame(DATA, data)),
            Err(n) => p.send(&hole(*n)),
        }
    }
    p.send(&trailer(content.len() as u64, &sha256(&content)));
    content
}

#[test]
fn sparse_entries_land_with_their_holes() {
    let env = TestEnv::new();
    std::fs::write(env.dst("replaced"), b"old contents").unwrap();
    let mib = 1u64 << 20;
    let megabyte: Vec<u8> = (0..mib).map(|i| (i % 251) as u8 + 1).collect();
    let cases: [(&[u8], Vec<Part>); 6] = [
        (
            b"holes",
            vec![Err(4096), Ok(b"middle"), Err(10_000), Ok(b"x"), Err(5000)],
        ),
        (b"data-only", vec![Ok(b"no holes at all")]),
        (b"hole-only", vec![Err(123_456)]),
        (b"empty", vec![]),
        (b"replaced", vec![Ok(b"new"), Err(1)]),
        // 64 MiB logical, 1 MiB of data in the middle.
        (b"big", vec![Err(32 * mib), Ok(&megabyte), Err(31 * mib)]),
    ];
    let mut landed = Vec::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        for (path, parts) in &cases {
            let content = send_sparse(&mut p, path, parts);
            expect_verdict(&mut p, COMMITTED, &content);
            landed.push(content);
        }
        end_session(p);
    });
    out.assert_code(0);
    assert_dst(&env, &["big", "data-only", "empty", "hole-only", "holes", "replaced"]);
    for ((path, _), content) in cases.iter().zip(&landed) {
        let name = std::str::from_utf8(path).unwrap();
        assert_eq!(
            std::fs::metadata(env.dst(name)).unwrap().len(),
            content.len() as u64,
            "{name}"
        );
        assert_eq!(sha256_file(&env.dst(name)), hex(&sha256(content)), "{name}");
    }
    // Holes stay holes: 64 MiB logical, 1 MiB of data, a few MiB at most.
    let big = std::fs::metadata(env.dst("big")).unwrap();
    assert!(
        big.blocks() * 512 <= 4 * mib,
        "64 MiB sparse file with 1 MiB of data occupies {} bytes",
        big.blocks() * 512
    );
}

#[test]
fn an_existing_directory_is_entered_and_kept_and_files_replaced_only_when_verified() {
    let env = TestEnv::new();
    std::fs::create_dir(env.dst("d")).unwrap();
    for (name, data) in [("d/old.txt", "kept"), ("d/f", "old f"), ("d/h", "old h")] {
        std::fs::write(env.dst(name), data).unwrap();
    }
    let ino = std::fs::metadata(env.dst("d")).unwrap().ino();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        bare(&mut p, &EntryBody::dir(b"d"), COMMITTED);
        commit(&mut p, b"d/f", b"new f");
        send_sized(&mut p, b"d/h", b"new h", &sha256(b"something else"));
        expect_verdict(&mut p, MISMATCH, b"new h");
        commit(&mut p, b"d/new", b"new");
        end_session(p);
    });
    assert_failed(&out, 3, &["integrity check failed", "d/h"]);
    assert_eq!(dst_tree(&env), ["d/", "d/f", "d/h", "d/new", "d/old.txt"]);
    assert_eq!(std::fs::metadata(env.dst("d")).unwrap().ino(), ino, "d/ was replaced");
    for (name, data) in [
        ("d/old.txt", "kept"),
        ("d/f", "new f"),
        ("d/h", "old h"),
        ("d/new", "new"),
    ] {
        assert_eq!(std::fs::read_to_string(env.dst(name)).unwrap(), data, "{name}");
    }
}

#[test]
fn a_directory_gets_its_mode_and_mtime_after_its_contents() {
    let env = TestEnv::new();
    let dirs = [
        (b"ro".as_slice(), 0o555, 1_500_000_000),
        (b"ro/sub", 0o500, 1_400_000_000),
        // Still open at DONE: its subtree closes then.
        (b"last", 0o555, 1_300_000_000),
    ];
    let dir = |i: usize| with_meta(EntryBody::dir(dirs[i].0), Some(dirs[i].1), Some(dirs[i].2));
    let (out, ()) = run_against(&env, recv_cmd_umask_022(&env), |addr| {
        let mut p = checked_handshake(addr);
        bare(&mut p, &dir(0), COMMITTED);
        commit(&mut p, b"ro/f", b"inside a read-only directory");
        bare(&mut p, &dir(1), COMMITTED);
        commit(&mut p, b"ro/sub/g", b"deeper");
        bare(&mut p, &EntryBody::symlink(b"ro/sub/l", b"g"), COMMITTED);
        commit(&mut p, b"ro/h", b"after sub closed");
        bare(&mut p, &dir(2), COMMITTED);
        commit(&mut p, b"last/x", b"closed by DONE");
        end_session(p);
    });
    let tree = dst_tree(&env);
    let got: Vec<(u32, i64)> = dirs
        .iter()
        .map(|(path, _, _)| {
            let path = env.path("dst").join(std::str::from_utf8(path).unwrap());
            let meta = std::fs::metadata(&path).unwrap();
            // Writable again, so the temporary directory can be removed.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            (meta.mode() & 0o7777, meta.mtime())
        })
        .collect();
    out.assert_code(0);
    assert_eq!(
        tree,
        [
            "last/",
            "last/x",
            "ro/",
            "ro/f",
            "ro/h",
            "ro/sub/",
            "ro/sub/g",
            "ro/sub/l -> g"
        ]
    );
    assert_eq!(std::fs::read(env.dst("ro/sub/g")).unwrap(), b"deeper");
    let want: Vec<(u32, i64)> = dirs.iter().map(|(_, mode, mtime)| (*mode, *mtime)).collect();
    assert_eq!(got, want, "(mode, mtime) of ro/, ro/sub/, last/");
}

#[test]
fn no_clobber_skips_whatever_exists_and_lands_the_rest() {
    let env = TestEnv::new();
    std::fs::write(env.dst("keep.txt"), b"old").unwrap();
    std::fs::write(env.dst("keep-stream"), b"old stream").unwrap();
    std::fs::write(env.dst("keep-hl"), b"old hl").unwrap();
    std::os::unix::fs::symlink("old-target", env.dst("keep-link")).unwrap();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = no_clobber_handshake(addr);
        send_sized(&mut p, b"keep.txt", b"new", &sha256(b"new"));
        expect_verdict(&mut p, SKIPPED, b"new");
        p.send(&entry(b"keep-stream", None, None));
        p.send(&frame(DATA, b"new stream"));
        p.send(&trailer(10, &sha256(b"new stream")));
        expect_verdict(&mut p, SKIPPED, b"new stream");
        bare(&mut p, &EntryBody::symlink(b"keep-link", b"new-target"), SKIPPED);
        commit_linked(&mut p, b"new.txt", b"new file");
        bare(&mut p, &EntryBody::hardlink(b"keep-hl", b"new.txt"), SKIPPED);
        bare(&mut p, &EntryBody::dir(b"fresh"), COMMITTED);
        commit(&mut p, b"fresh/x", b"in a new directory");
        end_session(p);
    });
    // Status 3 is what the sender asked for: not a failure.
    out.assert_code(0);
    assert_eq!(
        dst_tree(&env),
        [
            "fresh/",
            "fresh/x",
            "keep-hl",
            "keep-link -> old-target",
            "keep-stream",
            "keep.txt",
            "new.txt"
        ]
    );
    for (name, data) in [
        ("keep.txt", "old"),
        ("keep-stream", "old stream"),
        ("keep-hl", "old hl"),
        ("new.txt", "new file"),
        ("fresh/x", "in a new directory"),
    ] {
        assert_eq!(std::fs::read_to_string(env.dst(name)).unwrap(), data, "{name}");
    }
    assert_eq!(std::fs::metadata(env.dst("keep-hl")).unwrap().nlink(), 1);
}

#[test]
fn a_directory_entry_never_enters_a_file_or_a_link_already_there() {
    let cases = [("file", "file/x"), ("dirlink", "dirlink/sentinel")];
    for ((name, child), vars) in cases.into_iter().flat_map(|c| RESOLVERS.map(|v| (c, v))) {
        let env = TestEnv::new();
        plant_sentinel(&env);
        std::fs::write(env.dst("file"), b"a file").unwrap();
        std::os::unix::fs::symlink("../outside", env.dst("dirlink")).unwrap();
        let (out, _conn) = run_against(&env, recv_cmd_with(&env, &[], "dst", vars), |addr| {
            let mut p = checked_handshake(addr);
            // "anything else under that name is a failure for this entry"
            bare(&mut p, &EntryBody::dir(name.as_bytes()), FAILED);
            // Whether or not the failed directory counts as open, nothing
            // may land under it.
            p.send_lossy(&sized_file(child.as_bytes(), b"evil"));
            match p.read_frame() {
                Some((ERROR, _)) => {}
                Some((VERDICT, body)) => {
                    let v = parse_verdict(&body);
                    assert_ne!(v.status, COMMITTED, "{child} committed");
                    p.send_lossy(&frame(DONE, &[]));
                }
                other => panic!("{child}: {other:?}"),
            }
            p.drain();
            p
        });
        out.assert_code(1);
        assert_eq!(dst_tree(&env), ["dirlink -> ../outside", "file"], "{name} {vars:?}");
        assert_eq!(std::fs::read(env.dst("file")).unwrap(), b"a file");
    }
}

#[test]
fn a_hard_link_target_is_not_found_through_a_link_swapped_in_during_the_session() {
    // Something else on the receiving machine replaces a directory of the
    // session with a link to the sentinel's directory after the LINKED
    // file in it was committed; resolving the hard link's target from
    // DEST must not follow it, with either resolver.
    for ((swapped, target, left), vars) in [
        ("d", "..", vec!["d -> .."]),
        ("d/outside", "../../outside", vec!["d/", "d/outside -> ../../outside"]),
    ]
    .into_iter()
    .flat_map(|c| RESOLVERS.map(|v| (c.clone(), v)))
    {
        let env = TestEnv::new();
        let (out, ()) = run_against(&env, recv_cmd_with(&env, &[], "dst", vars), |addr| {
            let mut p = checked_handshake(addr);
            bare(&mut p, &EntryBody::dir(b"d"), COMMITTED);
            bare(&mut p, &EntryBody::dir(b"d/outside"), COMMITTED);
            commit_linked(&mut p, b"d/outside/sentinel", b"the session's file");
            std::fs::remove_dir_all(env.dst(swapped)).unwrap();
            std::os::unix::fs::symlink(target, env.dst(swapped)).unwrap();
            p.send(&EntryBody::hardlink(b"l", b"d/outside/sentinel").frame());
            let v = parse_verdict(&p.expect_frame(VERDICT));
            assert_eq!(v.status, FAILED, "{swapped} {vars:?}: {v:?}");
            assert!(v.text.contains("never follows links"), "{swapped} {vars:?}: {v:?}");
            end_session(p);
        });
        out.assert_code(4);
        assert_eq!(dst_tree(&env), left, "{swapped} {vars:?}");
        let sentinel = std::fs::metadata(env.path("outside/sentinel")).unwrap();
        assert_eq!(
            sentinel.nlink(),
            1,
            "{swapped} {vars:?}: the sentinel gained a hard link"
        );
    }
}

#[test]
fn links_replace_what_is_already_there_and_sparse_files_reach_single_destinations() {
    let env = TestEnv::new();
    std::fs::write(env.dst("was-file"), b"old").unwrap();
    std::fs::write(env.dst("was-file2"), b"old").unwrap();
    std::os::unix::fs::symlink("old-target", env.dst("was-link")).unwrap();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        commit_linked(&mut p, b"f", b"the file");
        bare(&mut p, &EntryBody::hardlink(b"was-file", b"f"), COMMITTED);
        bare(&mut p, &EntryBody::symlink(b"was-file2", b"f"), COMMITTED);
        bare(&mut p, &EntryBody::symlink(b"was-link", b"new-target"), COMMITTED);
        end_session(p);
    });
    out.assert_code(0);
    assert_eq!(
        dst_tree(&env),
        ["f", "was-file", "was-file2 -> f", "was-link -> new-target"]
    );
    let ino = |rel: &str| std::fs::symlink_metadata(env.dst(rel)).unwrap().ino();
    assert_eq!(ino("was-file"), ino("f"));

    // A single-file destination and stdout take a sparse entry, holes
    // written as zeros where they cannot stay holes.
    let parts: [Part; 4] = [Err(3), Ok(b"sparse"), Err(70_000), Ok(b"end")];
    for dest in ["dst/one", "-"] {
        let env = TestEnv::new();
        let mut content = Vec::new();
        let (out, ()) = run_against(&env, recv_cmd(&env, &[], dest), |addr| {
            let mut p = checked_handshake(addr);
            content = send_sparse(&mut p, b"ignored-name", &parts);
            expect_verdict(&mut p, COMMITTED, &content);
            end_session(p);
        });
        out.assert_code(0);
        if dest == "-" {
            assert!(out.stdout == content, "stdout differs from the sparse payload");
            assert_dst(&env, &[]);
        } else {
            assert_dst(&env, &["one"]);
            assert_eq!(std::fs::read(env.dst("one")).unwrap(), content);
        }
    }
}

#[test]
fn a_no_clobber_receiver_says_so_in_hello_and_skips_without_being_asked() {
    let env = TestEnv::new();
    std::fs::write(env.dst("keep.txt"), b"old").unwrap();
    let out = against_receiver(&env, &["--no-clobber"], |addr| {
        let mut opening = our_preamble();
        opening.extend_from_slice(&hello(ROLE_SENDER, SHA256));
        let mut p = handshake_expecting(addr, &opening, true);
        send_sized(&mut p, b"keep.txt", b"new", &sha256(b"new"));
        expect_verdict(&mut p, SKIPPED, b"new");
        commit(&mut p, b"new.txt", b"new file");
        end_session(p);
    });
    out.assert_code(0);
    assert_dst(&env, &["keep.txt", "new.txt"]);
    assert_eq!(std::fs::read(env.dst("keep.txt")).unwrap(), b"old");
}
