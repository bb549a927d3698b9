//! Fake senders that break the handshake, the framing or the name rules:
//! the real receiver refuses each from what it has read, says why to both
//! the sender and its own stderr, and writes nothing.

use std::os::unix::ffi::OsStrExt;

use super::*;

#[test]
fn a_peer_that_does_not_speak_zcp_is_refused() {
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x89ZCQ\x00\x01\x00\x01",
    ] {
        let env = TestEnv::new();
        let r = refused(&env, false, junk);
        assert_refused(&env, &r, PROTOCOL, &["not speaking the zcp protocol"]);
    }
}

#[test]
fn version_ranges_that_exclude_the_current_version_or_are_empty_are_refused() {
    for (max, min, needle) in [
        (9, 7, "incompatible versions: peer speaks protocol 7..=9"),
        (9, VERSION + 1, "incompatible versions"),
        (0, 0, "incompatible versions"),
        (VERSION, VERSION + 1, "empty version range"),
        (OLD_VERSION, VERSION, "empty version range"),
    ] {
        let env = TestEnv::new();
        let r = refused(&env, false, &preamble(max, min));
        assert_refused(&env, &r, PROTOCOL, &[needle]);
    }
}

#[test]
fn an_older_version_only_peer_is_refused() {
    // PROTOCOL.md's own example: "incompatible versions: peer speaks
    // protocol 1..=1, this zcp 0.2.0 speaks 2..=2".
    let env = TestEnv::new();
    let mut opening = preamble(OLD_VERSION, OLD_VERSION);
    opening.extend_from_slice(&hello(ROLE_SENDER, SHA256));
    let r = refused(&env, false, &opening);
    assert_refused(
        &env,
        &r,
        PROTOCOL,
        &[
            "incompatible versions",
            &format!("peer speaks protocol {OLD_VERSION}..={OLD_VERSION}"),
            &format!("speaks {VERSION}..={VERSION}"),
        ],
    );
}

#[test]
fn a_newer_peer_whose_range_includes_the_current_version_is_served() {
    for (max, min) in [(7, VERSION), (7, OLD_VERSION), (VERSION, OLD_VERSION)] {
        let env = TestEnv::new();
        let out = against_receiver(&env, &[], |addr| {
            let mut opening = preamble(max, min);
            opening.extend_from_slice(&hello(ROLE_SENDER, SHA256));
            let mut p = handshake_with(addr, &opening);
            commit(&mut p, b"v2.txt", b"spoken in version 2");
            end_session(p);
        });
        out.assert_code(0);
        assert_dst(&env, &["v2.txt"]);
        assert_eq!(std::fs::read(env.dst("v2.txt")).unwrap(), b"spoken in version 2");
    }
}

#[test]
fn unknown_optional_hello_options_are_ignored() {
    let env = TestEnv::new();
    let out = against_receiver(&env, &["-v"], |addr| {
        let mut opening = our_preamble();
        opening.extend_from_slice(&hello_options(&[
            (0x0077, &b"future"[..]),
            (TAG_CHECKSUM, &[SHA256][..]),
            (0x7fff, &[0u8; 300][..]),
            (TAG_ROLE, &[ROLE_SENDER][..]),
            (1, &b"fake \x1b[2J peer"[..]),
        ]));
        let mut p = handshake_with(addr, &opening);
        commit(&mut p, b"ok.txt", b"hello");
        end_session(p);
    });
    out.assert_code(0).assert_stderr("fake \\u{1b}[2J peer");
    assert_no_escape_bytes(&out.stderr);
    assert_dst(&env, &["ok.txt"]);
    assert_eq!(std::fs::read(env.dst("ok.txt")).unwrap(), b"hello");
}

#[test]
fn hellos_the_receiver_must_refuse() {
    let role = (TAG_ROLE, &[ROLE_SENDER][..]);
    let sha = (TAG_CHECKSUM, &[SHA256][..]);
    let cases: [(Vec<u8>, u8, &str); 8] = [
        (
            hello_options(&[role, sha, (0x8077, b"new")]),
            PROTOCOL,
            "does not understand",
        ),
        (hello(ROLE_RECEIVER, SHA256), PROTOCOL, "not a zcp sender"),
        (hello_options(&[sha]), PROTOCOL, "without a role"),
        (hello_options(&[role]), PROTOCOL, "without a checksum"),
        // A valid HELLO; the two ends were only set up differently.
        (hello(ROLE_SENDER, 0), FAILURE, "--checksum none"),
        (hello(ROLE_SENDER, 9), PROTOCOL, "checksum algorithm 9"),
        // The option claims 9 bytes of value; the body ends after 1.
        (frame(HELLO, &[0x80, 0x02, 0, 9, 0]), PROTOCOL, "too short"),
        (entry(b"early", Some(1), None), PROTOCOL, "expected HELLO"),
    ];
    for (frame_bytes, code, needle) in cases {
        let env = TestEnv::new();
        let mut bytes = our_preamble();
        bytes.extend_from_slice(&frame_bytes);
        let r = refused(&env, false, &bytes);
        assert_refused(&env, &r, code, &[needle]);
    }
}

/// A 4097-byte path of legal components (one more than the limit).
fn path_over_the_limit() -> Vec<u8> {
    let mut p = b"a".to_vec();
    while p.len() < 4097 {
        let n = (4097 - p.len() - 1).min(255);
        p.push(b'/');
        p.extend(std::iter::repeat_n(b'p', n));
    }
    assert_eq!(p.len(), 4097);
    assert!(p.split(|b| *b == b'/').all(|c| (1..=255).contains(&c.len())));
    p
}

#[test]
fn paths_that_escape_or_break_the_rules_are_refused() {
    // An absolute path that, if it were ever joined, would land at the root.
    let absolute = format!("/zcp-hostile-{}", std::process::id());
    let long_component = [&b"a/"[..], &[b'n'; 256]].concat();
    let too_long = path_over_the_limit();
    let cases: [&[u8]; 17] = [
        b"../x",
        b"a/../../x",
        absolute.as_bytes(),
        b"/a/b",
        b"a//b",
        b"a/",
        b"a/b/",
        b"./a",
        b"a/./b",
        b"a/../b",
        b"a/..",
        b".",
        b"..",
        b"",
        b"a/nul\0byte",
        &long_component,
        &too_long,
    ];
    for path in cases {
        for kind in [KIND_FILE, KIND_DIR, KIND_SYMLINK] {
            let env = TestEnv::new();
            // The session created a/ first, so only the path rule is broken.
            let mut e = EntryBody::new(path);
            match kind {
                KIND_FILE => (e.flags, e.size) = (SIZE_KNOWN, 4),
                KIND_DIR => e = EntryBody::dir(path),
                _ => e = EntryBody::symlink(path, b"../outside/sentinel"),
            }
            let mut bytes = e.frame();
            if kind == KIND_FILE {
                bytes.extend_from_slice(b"evil");
            }
            let r = refused_after(&env, &[(EntryBody::dir(b"a").frame(), COMMITTED)], &bytes);
            assert_failed(&r.out, 8, &["protocol error"]);
            assert_eq!(r.error.0, PROTOCOL, "ERROR code; text {:?}", r.error.1);
            assert_eq!(dst_tree(&env), ["a/"], "path {path:?} kind {kind}");
            assert!(!std::path::Path::new(&absolute).exists(), "{absolute} was created");
        }
    }
}

#[test]
fn every_legal_name_arrives_byte_for_byte() {
    let longest = vec![b'L'; 255];
    let names: [&[u8]; 9] = [
        &longest,
        b"...",
        b".hidden",
        b"-rf",
        b" leading space",
        b"back\\slash",
        b"line\nbreak",
        b"\xff\xfe not utf-8",
        // Looks like a staged file; it is an ordinary name on the wire.
        b".zcp-0123456789abcdef.part",
    ];
    let env = TestEnv::new();
    let out = against_receiver(&env, &[], |addr| {
        let mut p = checked_handshake(addr);
        for name in names {
            commit(&mut p, name, name);
        }
        end_session(p);
    });
    out.assert_code(0);
    assert_no_escape_bytes(&out.stderr);
    let mut want: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    want.sort();
    assert_eq!(dst_names(&env), want);
    for name in names {
        let path = env.path("dst").join(std::ffi::OsStr::from_bytes(name));
        assert_eq!(std::fs::read(path).unwrap(), name);
    }
}

#[test]
fn entries_with_unknown_or_impossible_fields_are_refused() {
    let sized = || {
        let mut e = EntryBody::new(b"f");
        e.flags = SIZE_KNOWN;
        e.size = 1;
        e
    };
    let with = |change: fn(&mut EntryBody)| {
        let mut e = sized();
        change(&mut e);
        e.frame()
    };
    let full = sized().frame();
    let mut short_path = sized();
    short_path.path = b"abc".to_vec();
    let mut short_path = short_path.frame();
    short_path[5 + 27] = 10; // the path length says 10; 3 + 2 bytes follow
    let mut short_target = EntryBody::symlink(b"l", b"abc").frame();
    let at = 5 + ENTRY_FIXED + 1;
    short_target[at + 1] = 10; // the target length says 10; 3 bytes follow
    // A version 1 ENTRY: the path, and no target length after it.
    let v1_entry = frame(ENTRY, &sized().body()[..ENTRY_FIXED + 1]);
    let cases: [(Vec<u8>, &str); 12] = [
        (with(|e| e.kind = 0), "unsupported entry kind 0"),
        (with(|e| e.kind = 5), "unsupported entry kind 5"),
        (with(|e| e.kind = 0xff), "unsupported entry kind 255"),
        (with(|e| e.flags |= 0x40), "unknown entry flags"),
        (with(|e| e.flags |= 0x80), "unknown entry flags"),
        (
            with(|e| {
                e.flags |= HAS_MTIME;
                e.nanos = 1_000_000_000;
            }),
            "nanoseconds",
        ),
        (with(|e| e.size = 1 << 63), "larger than any file"),
        (with(|e| e.size = u64::MAX), "larger than any file"),
        (frame(ENTRY, &full[5..20]), "too short"),
        (short_path, "too short"),
        (short_target, "too short"),
        (v1_entry, "too short"),
    ];
    for (bytes, needle) in cases {
        let env = TestEnv::new();
        let r = refused(&env, true, &bytes);
        assert_refused(&env, &r, PROTOCOL, &[needle]);
    }
}

#[test]
fn oversized_and_unknown_frames_are_refused_from_the_header_alone() {
    let stream = entry(b"s", None, None);
    let cases: [(&[u8], Vec<u8>, &str); 12] = [
        (&[], header(ENTRY, 65537), "exceeds the limit"),
        (&[], header(ENTRY, 70000), "exceeds the limit"),
        (&[], header(ENTRY, u32::MAX), "exceeds the limit"),
        (&stream, header(DATA, (16 << 20) + 1), "exceeds the limit"),
        (&stream, header(DATA, 0), "empty DATA"),
        (&stream, header(ABORT, 65537), "exceeds the limit"),
        (&[], header(DONE, 1), "exceeds the limit"),
        (&[], header(0, 0), "unknown frame type 0"),
        (&[], header(14, 3), "unknown frame type 14"),
        (&[], header(HOLE, 9), "exceeds the limit"),
        (&[], header(42, 0), "unknown frame type 42"),
        (&[], header(255, 1 << 30), "unknown frame type 255"),
    ];
    for (before, hdr, needle) in cases {
        let env = TestEnv::new();
        // Only the header: the receiver must not wait for the body.
        let r = refused(&env, true, &[before, &hdr[..]].concat());
        assert_refused(&env, &r, PROTOCOL, &[needle]);
    }
    // The same during the handshake: a HELLO too big to be one.
    let env = TestEnv::new();
    let r = refused(&env, false, &[our_preamble(), header(HELLO, 70000)].concat());
    assert_refused(&env, &r, PROTOCOL, &["exceeds the limit"]);
}

#[test]
fn frames_out_of_place_are_refused() {
    let sized = [entry(b"p", Some(2), None), b"ab".to_vec()].concat();
    let stream = entry(b"p", None, None);
    // HOLE belongs only inside a SPARSE entry.
    let cases: [(Vec<u8>, &str); 12] = [
        (hole(1), "unexpected"),
        ([&sized[..], &hole(1)].concat(), "expected TRAILER"),
        ([&stream[..], &hole(1)].concat(), "inside a stream"),
        (verdict(0, &[], ""), "unexpected"),
        (hello(ROLE_SENDER, SHA256), "unexpected"),
        (frame(DATA, b"loose"), "unexpected"),
        (trailer(0, &sha256(b"")), "unexpected"),
        (frame(ABORT, &text("nothing to abort")), "unexpected"),
        ([&sized[..], &entry(b"q", Some(1), None)].concat(), "expected TRAILER"),
        ([&sized[..], &frame(DONE, &[])].concat(), "expected TRAILER"),
        ([&stream[..], &entry(b"q", Some(1), None)].concat(), "inside a stream"),
        ([&stream[..], &frame(DONE, &[])].concat(), "inside a stream"),
    ];
    for (bytes, needle) in cases {
        let env = TestEnv::new();
        let r = refused(&env, true, &bytes);
        assert_refused(&env, &r, PROTOCOL, &["protocol error", needle]);
    }
}
