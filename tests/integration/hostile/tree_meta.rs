//! Fake senders that use the metadata and naming freedom of version 2
//! against the receiver: special mode bits on directories, a hard link
//! that tries to re-mode or re-date its file, NO_CLOBBER over existing
//! directories, entries landing on an existing directory, ENTRY
//! extensions after the target and odd bytes in every component.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::*;

/// Sends a directory or link entry and returns its VERDICT, which for
/// status 0 carries no digest.
fn send_bare(p: &mut Peer, e: &EntryBody) -> VerdictBody {
    p.send(&e.frame());
    let v = parse_verdict(&p.expect_frame(VERDICT));
    if v.status == COMMITTED {
        assert!(v.digest.is_empty(), "a digest for {e:?}: {v:?}");
    }
    v
}

#[test]
fn special_bits_never_reach_directories_and_a_hard_link_cannot_remode_its_file() {
    let env = TestEnv::new();
    let mut special = EntryBody::dir(b"special");
    (special.flags, special.mode) = (HAS_MODE, 0o7777);
    let mut file = EntryBody::new(b"special/f");
    (file.flags, file.size, file.mode) = (SIZE_KNOWN | HAS_MODE | HAS_MTIME | LINKED, 2, 0o640);
    file.mtime = 1_200_000_000;
    let mut link = EntryBody::hardlink(b"l", b"special/f");
    (link.flags, link.mode, link.mtime) = (HAS_MODE | HAS_MTIME, 0o6777, 1_700_000_000);
    let (out, ()) = run_against(&env, recv_cmd_umask_022(&env), |addr| {
        let mut p = checked_handshake(addr);
        assert_eq!(send_bare(&mut p, &special).status, COMMITTED);
        p.send(&file.frame());
        p.send(b"ff");
        p.send(&trailer(2, &sha256(b"ff")));
        expect_verdict(&mut p, COMMITTED, b"ff");
        assert_eq!(send_bare(&mut p, &link).status, COMMITTED);
        end_session(p);
    });
    out.assert_code(0);
    assert_eq!(dst_tree(&env), ["l", "special/", "special/f"]);
    let dir = std::fs::metadata(env.dst("special")).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o755, "directory mode {:o}", dir.mode());
    // "Mode and mtime are the file's": the link entry's fields change nothing.
    let (f, l) = (
        std::fs::metadata(env.dst("special/f")).unwrap(),
        std::fs::metadata(env.dst("l")).unwrap(),
    );
    assert_eq!(l.ino(), f.ino(), "l is not a hard link of special/f");
    assert_eq!((f.mode() & 0o7777, f.mtime()), (0o640, 1_200_000_000), "the file's own");
}

#[test]
fn no_clobber_still_enters_an_existing_directory() {
    let env = TestEnv::new();
    std::fs::create_dir(env.dst("d")).unwrap();
    std::fs::write(env.dst("d/keep"), b"old").unwrap();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = no_clobber_handshake(addr);
        // Entering is not replacing: the HELLO table limits NO_CLOBBER to
        // files and links.
        let v = send_bare(&mut p, &EntryBody::dir(b"d"));
        assert_eq!(v.status, COMMITTED, "{v:?}");
        send_sized(&mut p, b"d/keep", b"new", &sha256(b"new"));
        expect_verdict(&mut p, SKIPPED, b"new");
        commit(&mut p, b"d/new", b"new file");
        end_session(p);
    });
    out.assert_code(0);
    assert_eq!(dst_tree(&env), ["d/", "d/keep", "d/new"]);
    assert_eq!(std::fs::read(env.dst("d/keep")).unwrap(), b"old");
}

#[test]
fn a_file_or_link_entry_never_replaces_an_existing_directory() {
    for kind in [KIND_FILE, KIND_SYMLINK] {
        let env = TestEnv::new();
        std::fs::create_dir(env.dst("d")).unwrap();
        std::fs::write(env.dst("d/inside"), b"kept").unwrap();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = checked_handshake(addr);
            if kind == KIND_FILE {
                send_sized(&mut p, b"d", b"a file", &sha256(b"a file"));
                let v = parse_verdict(&p.expect_frame(VERDICT));
                assert_eq!(v.status, FAILED, "{v:?}");
            } else {
                let v = send_bare(&mut p, &EntryBody::symlink(b"d", b"../outside"));
                assert_eq!(v.status, FAILED, "{v:?}");
            }
            commit(&mut p, b"other", b"arrives");
            end_session(p);
        });
        // One entry failed, one was committed: partial.
        assert_failed(&out, 4, &["127.0.0.1:"]);
        assert_eq!(dst_tree(&env), ["d/", "d/inside", "other"], "kind {kind}");
    }
}

#[test]
fn extensions_after_the_target_and_odd_bytes_in_components_are_legal() {
    let env = TestEnv::new();
    let odd: &[u8] = b"line\nbreak \xff\\ -rf";
    let inner = [odd, b"/", odd].concat();
    let file_path = [&inner[..], b"/.zcp-0123.part"].concat();
    let mut link = EntryBody::symlink(&[odd, b"/link"].concat(), b"..\x01/\xfe");
    link.extension = b"reserved for extensions".to_vec();
    let mut dir = EntryBody::dir(odd);
    dir.extension = vec![0xA5; 100];
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        assert_eq!(send_bare(&mut p, &dir).status, COMMITTED);
        assert_eq!(send_bare(&mut p, &EntryBody::dir(&inner)).status, COMMITTED);
        commit(&mut p, &file_path, b"deep");
        assert_eq!(send_bare(&mut p, &link).status, COMMITTED);
        end_session(p);
    });
    out.assert_code(0);
    assert_no_escape_bytes(&out.stderr);
    let at = |rel: &[u8]| env.path("dst").join(std::ffi::OsStr::from_bytes(rel));
    assert_eq!(std::fs::read(at(&file_path)).unwrap(), b"deep");
    let text = std::fs::read_link(at(&link.path)).unwrap();
    assert_eq!(text.as_os_str().as_bytes(), b"..\x01/\xfe", "link text verbatim");
    assert_eq!(dst_names(&env), [odd.to_vec()]);
}

/// dst/d (already entered by the session) is swapped for a symbolic link
/// to ../outside behind the receiver's back, as a local attacker could.
fn swap_d_for_a_link(env: &TestEnv) {
    std::fs::rename(env.dst("d"), env.dst("moved")).unwrap();
    std::os::unix::fs::symlink("../outside", env.dst("d")).unwrap();
}

#[test]
fn a_directory_swapped_for_a_link_mid_session_steers_nothing_outside() {
    // PROTOCOL.md: entries are created relative to their parent's handle,
    // so the next d/ entry lands in the directory the session entered.
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        assert_eq!(send_bare(&mut p, &EntryBody::dir(b"d")).status, COMMITTED);
        commit(&mut p, b"d/first", b"before the swap");
        swap_d_for_a_link(&env);
        p.send(&sized_file(b"d/sentinel", b"evil"));
        let v = parse_verdict(&p.expect_frame(VERDICT));
        p.send(&frame(DONE, &[]));
        p.drain();
        v
    });
    // run_against checked outside/sentinel; where d/sentinel went is free.
    assert!(out.code() == 0 || out.code() == 4, "{}", out.stderr);
    let tree = dst_tree(&env);
    assert!(tree.contains(&"d -> ../outside".to_string()), "{tree:?}");
    assert!(tree.contains(&"moved/first".to_string()), "{tree:?}");
}

#[test]
fn a_hard_link_target_is_never_resolved_through_a_link() {
    // d/sentinel was sent LINKED and committed; then dst/d becomes a link
    // to ../outside. Resolving "d/sentinel" by following links would give
    // outside/sentinel a second name inside dst/.
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        assert_eq!(send_bare(&mut p, &EntryBody::dir(b"d")).status, COMMITTED);
        commit_linked(&mut p, b"d/sentinel", b"mine");
        swap_d_for_a_link(&env);
        let v = send_bare(&mut p, &EntryBody::hardlink(b"l", b"d/sentinel"));
        if v.status == COMMITTED {
            // Only acceptable if it linked the session's own file.
            let l = std::fs::metadata(env.dst("l")).unwrap();
            let mine = std::fs::metadata(env.dst("moved/sentinel")).unwrap();
            assert_eq!(l.ino(), mine.ino(), "l links something else");
        }
        end_session(p);
    });
    assert!([0, 4].contains(&out.code()), "{}", out.stderr);
    let sentinel = std::fs::metadata(env.path("outside/sentinel")).unwrap();
    assert_eq!(sentinel.nlink(), 1, "outside/sentinel gained a name");
}

#[test]
fn a_single_file_destination_takes_no_directory_or_link() {
    // "a receiver told to write a specific file ... accepts only one
    // regular file": a directory or a link must not appear as dst/one.
    let entries = [
        EntryBody::dir(b"d"),
        EntryBody::symlink(b"l", b"../outside/sentinel"),
        EntryBody::symlink(b"l", b"/"),
    ];
    for e in entries {
        let env = TestEnv::new();
        let (out, _conn) = run_against(&env, recv_cmd(&env, &[], "dst/one"), |addr| {
            let mut p = checked_handshake(addr);
            p.send_lossy(&e.frame());
            match p.read_frame() {
                Some((ERROR, _)) => {}
                Some((VERDICT, body)) => {
                    let v = parse_verdict(&body);
                    assert_ne!(v.status, COMMITTED, "{e:?} committed as dst/one");
                    p.send_lossy(&frame(DONE, &[]));
                }
                other => panic!("{e:?}: {other:?}"),
            }
            p.drain();
            p
        });
        assert_ne!(out.code(), 0, "{e:?}: {}", out.stderr);
        assert_dst(&env, &[]);
    }
}

#[test]
fn an_entered_directory_gets_the_entrys_mode_and_mtime_after_its_contents() {
    // "Directories the session created or entered get their mode and mtime
    // when their subtree closes".
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    std::fs::create_dir(env.dst("d")).unwrap();
    std::fs::set_permissions(env.dst("d"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut d = EntryBody::dir(b"d");
    (d.flags, d.mode, d.mtime) = (HAS_MODE | HAS_MTIME, 0o750, 1_111_111_111);
    let (out, ()) = run_against(&env, recv_cmd_umask_022(&env), |addr| {
        let mut p = checked_handshake(addr);
        assert_eq!(send_bare(&mut p, &d).status, COMMITTED);
        commit(&mut p, b"d/x", b"inside");
        end_session(p);
    });
    out.assert_code(0);
    let meta = std::fs::metadata(env.dst("d")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o750, 1_111_111_111));
    assert_eq!(dst_tree(&env), ["d/", "d/x"]);
}
