//! The real sender against a fake receiver: it exits 0 only on a committed
//! verdict with its own digest, and reports a receiver's failure as one.

use super::*;

/// [`sender_against`] with `--no-auth`, against a fake receiver that does
/// not authenticate either.
fn against_sender(size: usize, play: impl FnOnce(&FakeReceiver, &[u8]) -> Peer) -> Finished {
    sender_against(&["--no-auth"], size, play)
}

/// Accepts with the handshake, then takes the sender's ENTRY, checked
/// against the spec and the source: a regular file of known size with
/// mode and mtime.
fn take_entry(fake: &FakeReceiver, data: &[u8]) -> Peer {
    let mut p = fake.accept();
    let e = EntryBody::parse(&p.expect_frame(ENTRY));
    assert_eq!((e.kind, e.flags), (1, SIZE_KNOWN | HAS_MODE | HAS_MTIME), "{e:?}");
    assert_eq!(
        (e.size, &e.path[..], &e.target[..], &e.extension[..]),
        (data.len() as u64, &b"f.txt"[..], &[][..], &[][..])
    );
    assert_eq!(e.mode & !0o7777, 0, "{e:?}");
    assert!(e.nanos < 1_000_000_000, "{e:?}");
    p
}

/// As [`take_entry`], then the raw payload and a TRAILER that counts and
/// hashes exactly the payload.
fn take_file(fake: &FakeReceiver, data: &[u8]) -> Peer {
    let mut p = take_entry(fake, data);
    assert!(
        p.read_exact_vec(data.len()) == data,
        "the payload differs from the file"
    );
    let t = p.expect_frame(TRAILER);
    assert_eq!(t, trailer(data.len() as u64, &sha256(data))[5..], "TRAILER");
    p
}

/// Takes 1 MiB of a big file's payload, sends `reply` and stops reading.
fn reply_mid_payload(fake: &FakeReceiver, data: &[u8], reply: &[u8]) -> Peer {
    let mut p = take_entry(fake, data);
    p.read_exact_vec(1 << 20);
    p.send(reply);
    p
}

/// Builds a VERDICT frame from (the data sent, some other digest).
type MakeVerdict = fn(&[u8], &[u8]) -> Vec<u8>;

#[test]
fn the_sender_exits_0_only_on_a_committed_verdict_with_its_own_digest() {
    let other = sha256(b"other");
    let cases: [(MakeVerdict, i32, &[&str]); 9] = [
        (|d, _| verdict(0, &sha256(d), ""), 0, &[]),
        (|_, o| verdict(1, o, "digest mismatch"), 3, &["integrity check failed"]),
        (|_, o| verdict(0, o, ""), 3, &["is not ours"]),
        (|_, _| verdict(0, &[], ""), 3, &["is not ours"]),
        (
            |_, _| verdict(2, &[], "quota \u{1b}[2J"),
            1,
            &["receiver: quota \\u{1b}[2J"],
        ),
        // Text is written for display: the receiver's own escapes stay as
        // they are, raw control characters are escaped.
        (
            |_, _| verdict(2, &[], "onto a\\nb: \u{7}full"),
            1,
            &["receiver: onto a\\nb: \\u{7}full"],
        ),
        (
            |d, _| {
                let mut v = verdict(0, &sha256(d), "");
                v[5] = 7; // an unknown status byte
                v
            },
            8,
            &["protocol error", "verdict status 7"],
        ),
        // Status 3 (skipped) counts only when the sender asked for
        // NO_CLOBBER, which a plain `zcp send` does not.
        (|_, _| verdict(3, &[], "exists"), 1, &[]),
        (|d, _| verdict(3, &sha256(d), "exists"), 1, &[]),
    ];
    for (answer, code, needles) in cases {
        let out = against_sender(1000, |fake, data| {
            let mut p = take_file(fake, data);
            p.expect_frame(DONE);
            p.send(&answer(data, &other));
            p.send_lossy(&frame(DONE, &[]));
            p
        });
        if code == 0 {
            out.assert_code(0);
            assert!(out.error_lines().is_empty(), "{}", out.stderr);
        } else {
            assert_failed(&out, code, needles);
        }
    }
}

#[test]
fn a_receiver_error_mid_payload_stops_the_sender_with_its_reason() {
    // 64 MiB: more than loopback buffers hold, so the sender is still
    // sending when the ERROR arrives, and the fake stops reading.
    let out = against_sender(64 << 20, |fake, data| {
        reply_mid_payload(fake, data, &error(1, "disk on fire \u{1b}[2J"))
    });
    assert_failed(&out, 1, &["f.txt", "receiver: disk on fire \\u{1b}[2J"]);
}

#[test]
fn a_receiver_error_after_the_payload_is_reported() {
    let out = against_sender(1000, |fake, data| {
        let mut p = take_file(fake, data);
        p.send(&error(1, "disk on fire"));
        p
    });
    assert_failed(&out, 1, &["f.txt", "receiver: disk on fire"]);
}

#[test]
fn a_receiver_error_never_reads_as_success() {
    let out = against_sender(64 << 20, |fake, data| {
        reply_mid_payload(fake, data, &error(0, "all is well, honest"))
    });
    assert_failed(&out, 1, &["receiver: all is well, honest"]);
}

#[test]
fn a_receiver_error_keeps_a_protocol_error_code() {
    let out = against_sender(1000, |fake, data| {
        let mut p = take_file(fake, data);
        p.send(&error(PROTOCOL, "protocol error: unexpected Hole"));
        p
    });
    assert_failed(&out, 8, &["f.txt", "receiver: protocol error: unexpected Hole"]);
}

#[test]
fn a_receiver_error_code_cannot_claim_usage_interrupt_or_a_broken_connection() {
    // The receiver chose to send its ERROR: the connection did not break,
    // so 7 is not believed either (and would not be retried).
    for code in [2u8, 130, 7] {
        let out = against_sender(1000, |fake, data| {
            let mut p = take_file(fake, data);
            p.send(&error(code, "odd code"));
            p
        });
        assert_failed(&out, 1, &["receiver: odd code"]);
    }
}

#[test]
fn a_receiver_that_goes_away_without_a_verdict_fails_the_sender() {
    let close = |p: Peer| {
        let _ = p.stream.shutdown(std::net::Shutdown::Both);
        p
    };
    // The connection ends: a network failure.
    let out = against_sender(1000, |fake, data| close(take_file(fake, data)));
    assert_failed(&out, 7, &["f.txt", "closed the connection without a verdict"]);

    // The receiver says it is done with a verdict still owed: it broke
    // the protocol.
    let out = against_sender(1000, |fake, data| {
        let mut p = take_file(fake, data);
        p.expect_frame(DONE);
        p.send(&frame(DONE, &[]));
        p
    });
    assert_failed(&out, 8, &["f.txt", "protocol error", "without a verdict"]);

    // Gone in the middle of a payload too big for the socket buffers.
    let out = against_sender(64 << 20, |fake, data| {
        let mut p = take_entry(fake, data);
        p.read_exact_vec(1 << 20);
        close(p)
    });
    assert_failed(&out, 7, &["f.txt"]);
}

#[test]
fn receivers_the_sender_must_refuse_in_the_handshake() {
    let with_preamble = |frame_bytes: Vec<u8>| [our_preamble(), frame_bytes].concat();
    // Exit 8 for a peer that is not zcp or breaks the protocol; 1 for a
    // valid receiver set up differently, or one that refuses with code 1.
    let cases: [(Vec<u8>, i32, &str); 10] = [
        (b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), 8, "not speaking the zcp protocol"),
        (preamble(9, VERSION + 1), 8, "incompatible versions"),
        (preamble(OLD_VERSION, OLD_VERSION), 8, "incompatible versions"),
        (
            [preamble(OLD_VERSION, OLD_VERSION), hello(ROLE_RECEIVER, SHA256)].concat(),
            8,
            "incompatible versions",
        ),
        (with_preamble(hello(ROLE_RECEIVER, 0)), 1, "--checksum none"),
        (with_preamble(hello(ROLE_SENDER, SHA256)), 8, "not a zcp receiver"),
        (
            with_preamble(hello_options(&[
                (TAG_ROLE, &[ROLE_RECEIVER]),
                (TAG_CHECKSUM, &[SHA256]),
                (0x8077, b"auth"),
            ])),
            8,
            "does not understand",
        ),
        (
            with_preamble(hello_options(&[(TAG_ROLE, &[ROLE_RECEIVER])])),
            8,
            "without a checksum",
        ),
        (
            with_preamble(error(1, "busy \u{1b}[2J")),
            1,
            "receiver: busy \\u{1b}[2J",
        ),
        (with_preamble(verdict(0, &[], "")), 8, "expected HELLO"),
    ];
    for (bytes, code, needle) in cases {
        let out = against_sender(1000, |fake, _| {
            let mut p = fake.accept_raw();
            p.send(&bytes);
            p
        });
        assert_failed(&out, code, &[needle]);
    }
}

#[test]
fn a_second_verdict_for_the_only_entry_fails_the_sender() {
    // "Every ENTRY gets exactly one VERDICT, in the order the entries were
    // sent", and the receiver's DONE means "every verdict has been sent":
    // a VERDICT where DONE belongs shows the pairing was off.
    let out = against_sender(1000, |fake, data| {
        let mut p = take_file(fake, data);
        p.send(&verdict(0, &sha256(data), ""));
        p.send(&verdict(0, &sha256(data), ""));
        p.send_lossy(&frame(DONE, &[]));
        p
    });
    assert_failed(&out, 8, &["protocol error"]);
}
