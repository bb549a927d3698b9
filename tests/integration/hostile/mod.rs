//! Adversarial peers: the hand-written fake peer (peer.rs, built from
//! docs/PROTOCOL.md) lies, breaks the protocol or tries to escape the
//! destination, against the real binary. Each case checks the exit code,
//! the message, and the exact state of the disk afterwards.
//!
//! Receiver cases run `zcp recv` into dst/ with a sentinel directory
//! outside/ next to it; every run checks that outside/, src/ and the test
//! directory itself are exactly as they were. Refusals hold the fake's
//! connection open until the receiver exits, so a receiver that waited for
//! more bytes would hit the test deadline instead of passing.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use crate::env::*;
use crate::peer::*;

mod auth;
mod blocks;
mod fake_receiver;
mod handshake;
mod landing;
mod sender_tree;
mod tree_landing;
mod tree_meta;
mod tree_refused;

// ---------------------------------------------------------------------
// The real receiver against a fake sender.

/// `zcp recv -l 127.0.0.1:0 ARGS... DEST` in the env's directory.
fn recv_cmd(env: &TestEnv, args: &[&str], dest: &str) -> Command {
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "--no-auth", "-l", "127.0.0.1:0"])
        .args(args)
        .arg(dest);
    cmd
}

/// [`recv_cmd`] with extra environment variables (`ZCP_FAULT`).
fn recv_cmd_with(env: &TestEnv, args: &[&str], dest: &str, vars: &[(&str, &str)]) -> Command {
    let mut cmd = recv_cmd(env, args, dest);
    cmd.envs(vars.iter().copied());
    cmd
}

/// `zcp recv ... dst` under umask 022, set through the shell.
fn recv_cmd_umask_022(env: &TestEnv) -> Command {
    let mut cmd = Command::new("sh");
    cmd.current_dir(env.dir.path())
        .env_remove("ZCP_FAULT")
        .env_remove("ZCP_BLESS")
        .env("NO_COLOR", "1")
        .arg("-c")
        .arg(format!(
            "umask 022; exec {} recv --no-auth -l 127.0.0.1:0 dst",
            zcp_path()
        ));
    cmd
}

/// Creates outside/sentinel next to dst/ (again is harmless).
fn plant_sentinel(env: &TestEnv) {
    std::fs::create_dir_all(env.path("outside")).unwrap();
    std::fs::write(env.path("outside/sentinel"), b"untouched").unwrap();
}

/// Starts the receiver `cmd`, runs the fake sender's `script` against its
/// address, and returns the receiver's outcome with what `script`
/// returned. That value (typically the connection) is dropped only after
/// the receiver exited. Checks that nothing outside dst/ changed.
fn run_against<T>(env: &TestEnv, cmd: Command, script: impl FnOnce(&str) -> T) -> (Finished, T) {
    plant_sentinel(env);
    let rx = start_receiver(cmd);
    let held = script(&rx.addr);
    let out = rx.finish();
    assert_eq!(env.list("outside"), ["sentinel"], "something was written outside dst/");
    assert_eq!(
        std::fs::read(env.path("outside/sentinel")).unwrap(),
        b"untouched",
        "the sentinel outside dst/ changed"
    );
    assert_eq!(
        env.list("."),
        ["dst", "outside", "src"],
        "only src/, dst/ and outside/ may exist"
    );
    assert!(env.list("src").is_empty(), "src/ changed: {:?}", env.list("src"));
    (out, held)
}

/// Runs the real `zcp send ARGS... src/f.txt` (`size` deterministic bytes)
/// against a fake receiver; `play` accepts the connection, given the
/// file's bytes, and returns what to hold until the sender exited. Checks
/// that the sender left src/ alone and wrote nothing.
fn sender_against<T>(args: &[&str], size: usize, play: impl FnOnce(&FakeReceiver, &[u8]) -> T) -> Finished {
    let env = TestEnv::new();
    let src = env.random_file("f.txt", size, 7);
    let data = std::fs::read(&src).unwrap();
    let fake = FakeReceiver::bind();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .arg("send")
        .args(args)
        .args(["src/f.txt", &fake.addr()])
        .stdin(Stdio::null());
    let sender = Running::spawn(cmd, "zcp send");
    let held = play(&fake, &data);
    let out = sender.finish();
    drop(held);
    assert_eq!(env.list("."), ["dst", "src"]);
    assert_eq!(env.list("src"), ["f.txt"]);
    assert!(env.list("dst").is_empty());
    assert_eq!(std::fs::read(&src).unwrap(), data, "the sender changed its source");
    assert_no_escape_bytes(&out.stderr);
    out
}

/// A receiver into dst/ (with `args`) against `script`.
fn against_receiver<T>(env: &TestEnv, args: &[&str], script: impl FnOnce(&str) -> T) -> Finished {
    run_against(env, recv_cmd(env, args, "dst"), script).0
}

/// dst/ holds exactly `names` (so no staged `.zcp-*.part` is left).
fn assert_dst(env: &TestEnv, names: &[&str]) {
    assert_eq!(env.list("dst"), names, "destination directory contents");
}

/// The names in dst/ as raw bytes, sorted.
fn dst_names(env: &TestEnv) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(env.path("dst"))
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

/// zcp exited with `code` after printing exactly one error line, which
/// names the (loopback) peer and holds every needle.
fn assert_failed(out: &Finished, code: i32, needles: &[&str]) {
    out.assert_code(code);
    let lines = out.error_lines();
    assert_eq!(lines.len(), 1, "want exactly one error line:\n{}", out.stderr);
    assert!(
        lines[0].contains("127.0.0.1:"),
        "the error does not name the peer: {}",
        lines[0]
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "the error line lacks {needle:?}: {}",
            lines[0]
        );
    }
    assert_no_escape_bytes(&out.stderr);
}

fn assert_no_escape_bytes(text: &str) {
    assert!(!text.contains('\u{1b}'), "a raw ESC reached the terminal: {text:?}");
}

/// How the real receiver turned the fake sender away.
struct Refusal {
    out: Finished,
    /// The ERROR frame it sent: (code, text).
    error: (u8, String),
    /// It happened during the handshake, so the receiver kept listening
    /// (and a real sender then sent `alive`).
    in_handshake: bool,
}

/// Connects to a receiver into dst/, completes the handshake if asked
/// (else only reads the receiver's preamble), sends `bytes` and reads the
/// receiver's ERROR. A session refused after its handshake ends the
/// receiver: the connection is held open until it exits. One refused
/// during the handshake does not: a real sender then checks that the
/// receiver still serves.
fn refused(env: &TestEnv, handshake: bool, bytes: &[u8]) -> Refusal {
    let (out, (_conn, error)) = run_against(env, recv_cmd(env, &[], "dst"), |addr| {
        let mut p = if handshake {
            Peer::sender_handshake(addr, SHA256)
        } else {
            let mut p = Peer::connect(addr);
            assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
            p
        };
        p.send_lossy(bytes);
        let error = parse_error(&p.expect_frame(ERROR));
        if !handshake {
            drop(p);
            env.still_serving(&["--no-auth"], addr);
            return (None, error);
        }
        (Some(p), error)
    });
    Refusal {
        out,
        error,
        in_handshake: !handshake,
    }
}

/// Like [`refused`] after a checked handshake, but first sends each legal
/// `setup` step (an entry with its payload) and expects its VERDICT status;
/// then sends `bad` and expects an ERROR as the very next frame (a VERDICT
/// instead fails at once, naming its status and reason).
fn refused_after(env: &TestEnv, setup: &[(Vec<u8>, u8)], bad: &[u8]) -> Refusal {
    let (out, (_conn, error)) = run_against(env, recv_cmd(env, &[], "dst"), |addr| {
        let mut p = checked_handshake(addr);
        for (bytes, status) in setup {
            p.send(bytes);
            let v = parse_verdict(&p.expect_frame(VERDICT));
            assert_eq!(v.status, *status, "setup VERDICT; text {:?}", v.text);
        }
        p.send_lossy(bad);
        let error = match p.read_frame() {
            Some((ERROR, body)) => parse_error(&body),
            Some((VERDICT, body)) => panic!("answered with {:?} instead of ERROR", parse_verdict(&body)),
            other => panic!("answered with {other:?} instead of ERROR"),
        };
        (p, error)
    });
    Refusal {
        out,
        error,
        in_handshake: false,
    }
}

/// The receiver told the sender why in an ERROR with `code` (8 for a
/// protocol error) holding every needle, and said the same in one line
/// naming the peer: after a handshake, an error line and exit `code` with
/// dst/ empty; during one, a warning, and dst/ holds only what the next
/// sender sent.
fn assert_refused(env: &TestEnv, r: &Refusal, code: u8, needles: &[&str]) {
    if r.in_handshake {
        r.out.assert_code(0);
        assert!(r.out.error_lines().is_empty(), "{}", r.out.stderr);
        assert_one_warning(&r.out, &[&["127.0.0.1:", "still listening"], needles].concat());
        assert_no_escape_bytes(&r.out.stderr);
    } else {
        assert_failed(&r.out, i32::from(code), needles);
    }
    assert_eq!(r.error.0, code, "ERROR code; text {:?}", r.error.1);
    for needle in needles {
        assert!(
            r.error.1.contains(needle),
            "the ERROR text lacks {needle:?}: {:?}",
            r.error.1
        );
    }
    assert_dst(env, if r.in_handshake { &["alive"] } else { &[] });
}

/// Connects, sends `preamble_and_hello`, and checks the receiver's side of
/// the handshake against the spec: its preamble speaks exactly version 2,
/// its HELLO carries ROLE receiver, CHECKSUM sha256 and a short SOFTWARE.
fn handshake_with(addr: &str, preamble_and_hello: &[u8]) -> Peer {
    handshake_expecting(addr, preamble_and_hello, false)
}

/// [`handshake_with`], where the receiver's HELLO must carry an empty
/// NO_CLOBBER exactly when `no_clobber` (it applies the rule to the session).
fn handshake_expecting(addr: &str, preamble_and_hello: &[u8], no_clobber: bool) -> Peer {
    let mut p = Peer::connect(addr);
    p.send(preamble_and_hello);
    assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    let options = parse_hello(&p.expect_frame(HELLO));
    assert!(options.contains(&(TAG_ROLE, vec![ROLE_RECEIVER])), "ROLE: {options:?}");
    assert!(options.contains(&(TAG_CHECKSUM, vec![SHA256])), "CHECKSUM: {options:?}");
    let carried: Vec<_> = options
        .iter()
        .filter(|(tag, _)| tag & 0x7fff == TAG_NO_CLOBBER & 0x7fff)
        .collect();
    if no_clobber {
        assert_eq!(carried, [&(TAG_NO_CLOBBER, vec![])], "NO_CLOBBER in {options:?}");
    } else {
        assert!(carried.is_empty(), "NO_CLOBBER nobody asked for: {options:?}");
    }
    let software = options.iter().find(|(tag, _)| *tag == TAG_SOFTWARE).expect("SOFTWARE");
    assert!(software.1.len() <= 64 && std::str::from_utf8(&software.1).is_ok());
    p
}

/// The standard fake sender's handshake, checked as in [`handshake_with`].
fn checked_handshake(addr: &str) -> Peer {
    let mut opening = our_preamble();
    opening.extend_from_slice(&hello(ROLE_SENDER, SHA256));
    handshake_with(addr, &opening)
}

/// As [`checked_handshake`], with NO_CLOBBER in the sender's HELLO.
fn no_clobber_handshake(addr: &str) -> Peer {
    let mut opening = our_preamble();
    opening.extend_from_slice(&hello_options(&[
        (TAG_SOFTWARE, &b"fake-peer"[..]),
        (TAG_ROLE, &[ROLE_SENDER][..]),
        (TAG_CHECKSUM, &[SHA256][..]),
        (TAG_NO_CLOBBER, &[][..]),
    ]));
    handshake_expecting(addr, &opening, true)
}

/// Sends ENTRY, raw payload and TRAILER for a sized file.
fn send_sized(p: &mut Peer, name: &[u8], data: &[u8], digest: &[u8]) {
    p.send(&entry(name, Some(data.len() as u64), Some(0o644)));
    p.send(data);
    p.send(&trailer(data.len() as u64, digest));
}

/// Reads the next VERDICT and checks its digest layout: SHA-256 of
/// `received` when the receiver hashed it all (committed or mismatch).
fn expect_verdict(p: &mut Peer, status: u8, received: &[u8]) -> VerdictBody {
    let v = parse_verdict(&p.expect_frame(VERDICT));
    assert_eq!(v.status, status, "VERDICT status; text {:?}", v.text);
    if status == COMMITTED || status == MISMATCH {
        assert_eq!(
            (v.algorithm, v.digest.clone()),
            (SHA256, sha256(received)),
            "VERDICT digest"
        );
    }
    v
}

/// Sends a sized file marked LINKED (hard links may name it) with its true
/// digest and expects it committed.
fn commit_linked(p: &mut Peer, path: &[u8], data: &[u8]) {
    let mut e = EntryBody::new(path);
    (e.flags, e.size, e.mode) = (SIZE_KNOWN | HAS_MODE | LINKED, data.len() as u64, 0o644);
    p.send(&e.frame());
    p.send(data);
    p.send(&trailer(data.len() as u64, &sha256(data)));
    expect_verdict(p, COMMITTED, data);
}

/// Sends a sized file with its true digest and expects it committed.
fn commit(p: &mut Peer, name: &[u8], data: &[u8]) {
    send_sized(p, name, data, &sha256(data));
    let v = expect_verdict(p, 0, data);
    assert!(v.text.is_empty(), "a committed VERDICT carries no reason: {:?}", v.text);
}

/// DONE from us, DONE back: the end of a clean session.
fn end_session(mut p: Peer) {
    p.send(&frame(DONE, &[]));
    p.expect_frame(DONE);
}

/// A frame header with any type and length.
fn header(kind: u8, len: u32) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// Everything under dst/ (see [`TestEnv::tree`]).
fn dst_tree(env: &TestEnv) -> Vec<String> {
    env.tree("dst")
}

/// ENTRY, raw payload and true TRAILER of a sized file at `path`.
fn sized_file(path: &[u8], data: &[u8]) -> Vec<u8> {
    [
        entry(path, Some(data.len() as u64), Some(0o644)),
        data.to_vec(),
        trailer(data.len() as u64, &sha256(data)),
    ]
    .concat()
}

/// The fake peer itself, byte for byte against PROTOCOL.md's tables, so a
/// failure elsewhere is never a bug in the fake.
#[test]
fn the_fake_peer_encodes_the_current_version_as_protocol_md_says() {
    assert_eq!(our_preamble(), [0x89, b'Z', b'C', b'P', 0, 4, 0, 4]);
    let mut e = EntryBody::symlink(b"d/l", b"../t");
    (e.flags, e.mtime, e.nanos) = (HAS_MTIME, -1, 5);
    let want: Vec<u8> = [
        &[3u8, HAS_MTIME][..],
        &[0; 4],    // mode
        &[0; 8],    // size
        &[0xff; 8], // mtime -1
        &[0, 0, 0, 5],
        &[0, 3],
        b"d/l",
        &[0, 4],
        b"../t",
    ]
    .concat();
    assert_eq!(e.body(), want);
    assert_eq!(EntryBody::parse(&want), e);
    assert_eq!(e.frame()[..5], [ENTRY, 0, 0, 0, want.len() as u8]);
    assert_eq!(hole(7), [9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
    let v = parse_verdict(&verdict(SKIPPED, &[], "exists")[5..]);
    assert_eq!((v.status, v.digest.len(), v.text.as_str()), (3, 0, "exists"));
    assert_eq!((SIZE_KNOWN, HAS_MODE, HAS_MTIME, SPARSE, LINKED), (1, 2, 4, 8, 16));
    assert_eq!((KIND_FILE, KIND_DIR, KIND_SYMLINK, KIND_HARDLINK), (1, 2, 3, 4));
    assert_eq!(TAG_NO_CLOBBER, 0x8004);
}
