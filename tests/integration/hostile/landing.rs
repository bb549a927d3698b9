//! Fake senders whose payloads, trailers and names are legal but unusual,
//! lying or cut short: what lands is exactly what was verified, and
//! nothing else (no staged file, nothing through a link).

use super::*;

#[test]
fn payloads_in_every_form_the_spec_allows_land_exactly() {
    let env = TestEnv::new();
    let sized = env.random_file("sized", 300_000, 11);
    let sized = std::fs::read(&sized).unwrap();
    std::fs::remove_file(env.src("sized")).unwrap();
    let chunks: [&[u8]; 3] = [&sized[..1], &sized[1..65_537], &sized[65_537..]];
    let mut extended = EntryBody::new(b"extended");
    extended.flags = SIZE_KNOWN;
    extended.size = 3;
    extended.extension = b"future fields".to_vec();
    let mut biggest = extended.clone();
    biggest.path = b"biggest".to_vec();
    // 28 fixed bytes, the path, an empty target (its 2-byte length) and an
    // extension up to the frame limit.
    biggest.extension = vec![0xA5; 65536 - ENTRY_FIXED - biggest.path.len() - 2];
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        commit(&mut p, b"sized", &sized);
        commit(&mut p, b"empty", b"");
        // A stream: DATA frames of 1 byte, 64 KiB and the rest.
        p.send(&entry(b"stream", None, Some(0o600)));
        for chunk in chunks {
            p.send(&frame(DATA, chunk));
        }
        p.send(&trailer(sized.len() as u64, &sha256(&sized)));
        expect_verdict(&mut p, 0, &sized);
        // A stream of no DATA frames at all.
        p.send(&entry(b"empty-stream", None, None));
        p.send(&trailer(0, &sha256(b"")));
        expect_verdict(&mut p, 0, b"");
        for e in [&extended, &biggest] {
            assert!(e.body().len() <= 65536);
            p.send(&e.frame());
            p.send(b"ext");
            p.send(&trailer(3, &sha256(b"ext")));
            expect_verdict(&mut p, 0, b"ext");
        }
        end_session(p);
    });
    out.assert_code(0);
    assert_dst(
        &env,
        &["biggest", "empty", "empty-stream", "extended", "sized", "stream"],
    );
    for (name, want) in [
        ("sized", &sized[..]),
        ("stream", &sized[..]),
        ("empty", b""),
        ("empty-stream", b""),
        ("extended", b"ext"),
        ("biggest", b"ext"),
    ] {
        assert_eq!(std::fs::read(env.dst(name)).unwrap(), want, "{name}");
    }
}

#[test]
fn modes_lose_special_bits_and_mtimes_are_applied() {
    let env = TestEnv::new();
    let file = |name: &[u8], flags: u8, mode: u32, mtime: (i64, u32)| {
        let mut e = EntryBody::new(name);
        e.flags = SIZE_KNOWN | flags;
        e.size = 1;
        e.mode = mode;
        (e.mtime, e.nanos) = mtime;
        e
    };
    let none = (0, 0);
    let cases = [
        (file(b"setuid", HAS_MODE, 0o4755, none), 0o755),
        (file(b"all-special", HAS_MODE, 0o6777, none), 0o755),
        (file(b"sticky", HAS_MODE, 0o1777, none), 0o755),
        (file(b"setgid", HAS_MODE, 0o2640, none), 0o640),
        (file(b"type-bits", HAS_MODE, 0o100600, none), 0o600),
        // HAS_MODE clear: the field is ignored, the default applies.
        (file(b"no-mode", 0, 0o4777, none), 0o644),
        (file(b"dated", HAS_MTIME, 0, (1_234_567_890, 987_654_321)), 0o644),
        (file(b"before-1970", HAS_MTIME, 0, (-86_400, 5)), 0o644),
    ];
    let (out, ()) = run_against(&env, recv_cmd_umask_022(&env), |addr| {
        let mut p = checked_handshake(addr);
        for (e, _) in &cases {
            p.send(&e.frame());
            p.send(b"x");
            p.send(&trailer(1, &sha256(b"x")));
            expect_verdict(&mut p, 0, b"x");
        }
        end_session(p);
    });
    out.assert_code(0);
    let mut names: Vec<String> = cases
        .iter()
        .map(|(e, _)| String::from_utf8(e.path.clone()).unwrap())
        .collect();
    names.sort();
    assert_eq!(env.list("dst"), names);
    for (e, want) in &cases {
        let name = std::str::from_utf8(&e.path).unwrap();
        let meta = std::fs::metadata(env.dst(name)).unwrap();
        assert_eq!(meta.mode() & 0o7777, *want, "{name}: mode {:o}", e.mode);
        if e.flags & HAS_MTIME != 0 {
            assert_eq!(
                (meta.mtime(), meta.mtime_nsec()),
                (e.mtime, i64::from(e.nanos)),
                "{name}"
            );
        }
    }
}

#[test]
fn fields_whose_flag_is_clear_are_ignored() {
    // PROTOCOL.md: "Fields whose flag is clear are sent as zero and ignored."
    let mut no_mtime = EntryBody::new(b"no-mtime");
    no_mtime.flags = SIZE_KNOWN;
    no_mtime.size = 8;
    (no_mtime.mode, no_mtime.mtime, no_mtime.nanos) = (0o7777, -1, u32::MAX);
    let mut no_size = EntryBody::new(b"no-size");
    no_size.size = u64::MAX;
    for e in [no_mtime, no_size] {
        let env = TestEnv::new();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = checked_handshake(addr);
            p.send(&e.frame());
            if e.flags & SIZE_KNOWN != 0 {
                p.send(b"payload!");
            } else {
                p.send(&frame(DATA, b"payload!"));
            }
            p.send(&trailer(8, &sha256(b"payload!")));
            expect_verdict(&mut p, 0, b"payload!");
            end_session(p);
        });
        out.assert_code(0);
        let name = String::from_utf8(e.path.clone()).unwrap();
        assert_dst(&env, &[&name]);
        assert_eq!(std::fs::read(env.dst(&name)).unwrap(), b"payload!");
    }
}

#[test]
fn a_wrong_digest_is_an_integrity_failure_and_keeps_the_old_file() {
    for stream in [false, true] {
        let env = TestEnv::new();
        std::fs::write(env.dst("report.pdf"), b"old version").unwrap();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = checked_handshake(addr);
            let data = b"new version";
            if stream {
                p.send(&entry(b"report.pdf", None, None));
                p.send(&frame(DATA, data));
                p.send(&trailer(data.len() as u64, &sha256(b"something else")));
            } else {
                send_sized(&mut p, b"report.pdf", data, &sha256(b"something else"));
            }
            // The VERDICT carries the receiver's own digest of what it got.
            expect_verdict(&mut p, 1, data);
            end_session(p);
        });
        assert_failed(&out, 3, &["integrity check failed", "report.pdf"]);
        assert_dst(&env, &["report.pdf"]);
        assert_eq!(std::fs::read(env.dst("report.pdf")).unwrap(), b"old version");
    }
}

#[test]
fn trailers_that_lie_are_refused() {
    let data = b"0123456789";
    let digest = sha256(data);
    let long = [&digest[..], &[0][..]].concat();
    let cases: [(Vec<u8>, &str); 8] = [
        (trailer(11, &digest), "says it sent 11 bytes but 10 arrived"),
        (trailer(9, &digest), "says it sent 9 bytes but 10 arrived"),
        (trailer_with(10, SHA256, &digest[..31]), "digest"),
        (trailer_with(10, SHA256, &long), "digest"),
        (trailer_with(10, 0, &[]), "none digest"),
        (trailer_with(10, 3, &digest), "algorithm"),
        // BLAKE3, in a session that agreed on SHA-256.
        (trailer_with(10, 2, &digest), "carries a blake3 digest"),
        (
            frame(TRAILER, &[&trailer(10, &digest)[5..], &[0][..]].concat()),
            "unexpected bytes at the end of TRAILER",
        ),
    ];
    for (bad_trailer, needle) in cases {
        let env = TestEnv::new();
        std::fs::write(env.dst("t"), b"previous").unwrap();
        let bytes = [&entry(b"t", Some(10), None)[..], data, &bad_trailer].concat();
        let r = refused(&env, true, &bytes);
        assert_failed(&r.out, 8, &["t", needle]);
        assert_eq!(r.error.0, PROTOCOL);
        assert_dst(&env, &["t"]);
        assert_eq!(std::fs::read(env.dst("t")).unwrap(), b"previous");
    }
}

#[test]
fn a_sender_that_vanishes_mid_entry_leaves_nothing() {
    let cases: [(Vec<u8>, &str); 4] = [
        (
            [entry(b"gone", Some(1_000_000), None), vec![1u8; 500_000]].concat(),
            "the sender closed the connection after 500000 of 1000000 bytes",
        ),
        (
            [entry(b"gone", None, None), frame(DATA, &[2u8; 1000])].concat(),
            "the sender closed the connection after 1000 bytes of a stream",
        ),
        (
            // Inside a DATA frame's body: 400 of its 1000 bytes.
            [entry(b"gone", None, None), header(DATA, 1000), vec![3u8; 400]].concat(),
            "the sender closed the connection",
        ),
        (
            // The whole payload, but no TRAILER.
            [entry(b"gone", Some(3), None), b"abc".to_vec()].concat(),
            "closed",
        ),
    ];
    for (bytes, needle) in cases {
        let env = TestEnv::new();
        std::fs::write(env.dst("gone"), b"previous").unwrap();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = checked_handshake(addr);
            p.send(&bytes);
            // Returning drops the connection: a clean close mid-entry.
        });
        // The connection broke: a network failure.
        assert_failed(&out, 7, &["gone", needle]);
        assert_dst(&env, &["gone"]);
        assert_eq!(std::fs::read(env.dst("gone")).unwrap(), b"previous");
    }
}

#[test]
fn an_aborted_entry_is_discarded_its_reason_escaped_and_the_session_goes_on() {
    for stream in [true, false] {
        let env = TestEnv::new();
        std::fs::write(env.dst("s.log"), b"previous").unwrap();
        let out = against_receiver(&env, &[], |addr| {
            let mut p = checked_handshake(addr);
            if stream {
                p.send(&entry(b"s.log", None, None));
                p.send(&frame(DATA, b"some bytes"));
            } else {
                // ABORT after a complete known-size payload.
                p.send(&entry(b"s.log", Some(10), None));
                p.send(b"some bytes");
            }
            p.send(&frame(ABORT, &text("disk read error \u{1b}[31m")));
            let v = expect_verdict(&mut p, 2, b"");
            assert!(v.text.contains("disk read error"), "{v:?}");
            commit(&mut p, b"after.txt", b"next entry");
            end_session(p);
        });
        // Partial: one entry failed, the other was committed.
        assert_failed(&out, 4, &["s.log", "aborted", "disk read error \\u{1b}[31m"]);
        assert_dst(&env, &["after.txt", "s.log"]);
        assert_eq!(std::fs::read(env.dst("s.log")).unwrap(), b"previous");
        assert_eq!(std::fs::read(env.dst("after.txt")).unwrap(), b"next entry");
    }
}

#[test]
fn a_name_with_terminal_escapes_arrives_but_is_shown_escaped() {
    let env = TestEnv::new();
    let name = "evil\u{1b}[31mred\u{202e}txt.exe";
    let out = against_receiver(&env, &["-v"], |addr| {
        let mut p = checked_handshake(addr);
        commit(&mut p, name.as_bytes(), b"x");
        end_session(p);
    });
    out.assert_code(0).assert_stderr("evil\\u{1b}[31mred\\u{202e}txt.exe");
    assert_no_escape_bytes(&out.stderr);
    assert!(!out.stderr.contains('\u{202e}'), "{:?}", out.stderr);
    assert_dst(&env, &[name]);
}

#[test]
fn a_name_cannot_forge_an_error_line() {
    let env = TestEnv::new();
    let name = b"x\nzcp: error: forged\x1b[2J\r";
    let out = against_receiver(&env, &["-v"], |addr| {
        let mut p = checked_handshake(addr);
        p.send(&entry(name, Some(10), None));
        p.send(b"abc");
    });
    assert_failed(&out, 7, &["x\\nzcp: error: forged\\u{1b}[2J\\r", "after 3 of 10 bytes"]);
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("zcp: error: forged")),
        "{}",
        out.stderr
    );
    assert_dst(&env, &[]);
}

#[test]
fn a_file_already_there_as_a_link_is_replaced_not_written_through() {
    let env = TestEnv::new();
    plant_sentinel(&env);
    std::os::unix::fs::symlink("../outside/sentinel", env.dst("symlink")).unwrap();
    std::os::unix::fs::symlink("../outside", env.dst("dirlink")).unwrap();
    std::fs::hard_link(env.path("outside/sentinel"), env.dst("hardlink")).unwrap();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        for name in ["symlink", "dirlink", "hardlink"] {
            commit(&mut p, name.as_bytes(), b"overwritten?");
        }
        end_session(p);
    });
    out.assert_code(0);
    assert_dst(&env, &["dirlink", "hardlink", "symlink"]);
    for name in ["symlink", "dirlink", "hardlink"] {
        let meta = std::fs::symlink_metadata(env.dst(name)).unwrap();
        assert!(meta.is_file(), "{name} is not a regular file now");
        assert_eq!(meta.nlink(), 1, "{name}");
        assert_eq!(std::fs::read(env.dst(name)).unwrap(), b"overwritten?");
    }
}

#[test]
fn a_second_file_for_a_single_file_destination_is_refused() {
    let env = TestEnv::new();
    let (out, _conn) = run_against(&env, recv_cmd(&env, &[], "dst/one"), |addr| {
        let mut p = checked_handshake(addr);
        commit(&mut p, b"a", b"first");
        p.send_lossy(&entry(b"b", Some(6), None));
        p.send_lossy(b"second");
        p.expect_frame(ERROR);
        p
    });
    assert_failed(&out, 1, &["second file"]);
    assert_dst(&env, &["one"]);
    assert_eq!(std::fs::read(env.dst("one")).unwrap(), b"first");
}

#[test]
fn a_session_without_a_file_is_an_error() {
    let env = TestEnv::new();
    let r = refused(&env, true, &frame(DONE, &[]));
    assert_refused(&env, &r, FAILURE, &["without sending a file"]);
}

#[test]
fn a_sender_error_never_reads_as_success() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        p.send(&error(0, "gave up \u{1b}[2J"));
        p.drain();
    });
    assert_failed(&out, 1, &["sender: gave up \\u{1b}[2J"]);
    assert_dst(&env, &[]);
}
