//! Exit statuses 7 (network) and 8 (protocol) from the real binary: a
//! connection that cannot be made is 7 (a name that does not resolve as
//! much as a refused port, and `--retries` tries it again); a peer that is
//! not zcp or speaks another protocol version is 8, on either end; a
//! local file that cannot be read stays 1. Peers killed mid-transfer (7)
//! are in failures.rs and killed.rs, fake peers that break the protocol
//! in detail (8) under hostile/.

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::thread::JoinHandle;

use crate::env::*;
use crate::peer::*;

/// A name that never resolves (RFC 6761 reserves `.invalid`).
const NOWHERE: &str = "zcp-test.invalid:7227";

#[test]
fn a_host_name_that_does_not_resolve_is_a_network_failure() {
    let env = TestEnv::new();
    env.random_file("f", 10, 1);
    let out = env.send(&["src/f"], NOWHERE);
    out.assert_code(7).assert_stderr(&format!(
        "zcp: error: sending src/f to {NOWHERE}: resolving zcp-test.invalid: "
    ));
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
}

#[test]
fn a_host_name_that_does_not_resolve_is_tried_again_like_a_refused_port() {
    let env = TestEnv::new();
    env.random_file("f", 10, 1);
    let out = env.send(&["--retries", "1", "src/f"], NOWHERE);
    out.assert_code(7);
    assert_one_warning(
        &out,
        &[
            &format!("connection to {NOWHERE} lost ("),
            "trying again in 1 s (retry 1 of 1)",
        ],
    );
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
}

#[test]
fn a_missing_source_is_a_local_failure_even_with_nothing_to_connect_to() {
    let env = TestEnv::new();
    let out = env.send(&["src/missing"], NOWHERE);
    out.assert_code(1)
        .assert_stderr("opening src/missing: No such file or directory");
}

/// A server that is not zcp: it takes the sender's first bytes, answers
/// `reply`, and holds the connection until the sender hangs up (so the
/// sender's error comes from what it read, not from a close).
fn impostor(reply: Vec<u8>) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serve = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut p = Peer { stream };
        assert_eq!(p.read_exact_vec(8), our_preamble(), "the sender's preamble");
        p.send(&reply);
        let _ = p.stream.read_to_end(&mut Vec::new());
    });
    (addr, serve)
}

#[test]
fn a_server_that_answers_garbage_is_a_protocol_failure() {
    let cases: [(Vec<u8>, &str); 3] = [
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "protocol error: peer is not speaking the zcp protocol (it sent HTTP/1.1)",
        ),
        (
            (0..64u8).map(|i| i.wrapping_mul(97)).collect(),
            "not speaking the zcp protocol",
        ),
        // The right preamble, then a frame type no version has.
        (
            [our_preamble(), vec![0xee, 0, 0, 0, 3, 1, 2, 3]].concat(),
            "protocol error: unknown frame type 238",
        ),
    ];
    for (reply, needle) in cases {
        let env = TestEnv::new();
        env.random_file("f", 1000, 2);
        let (addr, serve) = impostor(reply);
        let out = env.send(&["src/f"], &addr);
        serve.join().unwrap();
        out.assert_code(8)
            .assert_stderr(&format!("zcp: error: sending src/f to {addr}: "))
            .assert_stderr(needle);
        assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    }
}

#[test]
fn a_sender_of_another_protocol_version_is_a_protocol_failure_for_the_receiver() {
    // `recv --connect` is the receiver that exits on a failed handshake
    // (a listening one warns and goes on listening: hostile/handshake.rs).
    let env = TestEnv::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cmd = zcp();
    cmd.current_dir(env.dir.path())
        .args(["recv", "--connect", &addr, "dst"])
        .stdin(Stdio::null());
    let rx = Running::spawn(cmd, "zcp recv --connect");
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut p = Peer { stream };
    p.send(&[preamble(OLD_VERSION, OLD_VERSION), hello(ROLE_SENDER, SHA256)].concat());
    assert_eq!(p.read_exact_vec(8), our_preamble(), "the receiver's preamble");
    // The receiver tells the sender why, with the protocol error's code.
    let (code, text) = parse_error(&p.expect_frame(ERROR));
    assert_eq!(code, PROTOCOL, "ERROR code; text {text:?}");
    assert!(text.contains("incompatible versions"), "{text:?}");
    let out = rx.finish();
    out.assert_code(8).assert_stderr(&format!(
        "zcp: error: receiving from {addr}: protocol error: incompatible versions: peer speaks protocol {OLD_VERSION}..={OLD_VERSION}"
    ));
    assert_eq!(out.error_lines().len(), 1, "{}", out.stderr);
    assert!(env.list("dst").is_empty(), "{:?}", env.list("dst"));
}
