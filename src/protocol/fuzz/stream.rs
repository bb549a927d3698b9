//! Whole sessions written to a loopback socket in random pieces and read
//! with [`FrameReader`] as zcp reads them: open sessions here, sealed ones
//! in `sealed`.

use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::super::auth::{Agreement, Opener};
use super::super::*;
use super::generators::{encode, valid_entry, valid_frame};
use super::mutate::{fix_frame_len, mutate};
use super::spec::{End, decode_frames};
use super::{Rng, run};
use crate::error::Coded;
use crate::frames::{FrameReader, READ_BUFFER};

/// What reading `bytes` as a session must give: the preamble, then frames.
fn expected_session(bytes: &[u8]) -> (Vec<Message>, End) {
    match bytes.split_first_chunk::<PREAMBLE_LEN>() {
        None => (vec![], End::Truncated),
        Some((p, rest)) => match Preamble::decode(p) {
            Ok(_) => decode_frames(rest),
            Err(e) => (vec![], End::Refused(e)),
        },
    }
}

/// Reads a session with [`FrameReader`] as zcp does, choosing buffered or
/// exact reads at random and taking DATA payloads from the buffer: from
/// the preamble on, or with `opener` a sealed session from its first
/// sealed frame on. The flag says whether the last read was exact (a
/// clean close is then an early end).
fn read_session(sock: TcpStream, r: &mut Rng, opener: Option<Opener>) -> (Vec<Message>, End, bool) {
    let end = |e: anyhow::Error| {
        if let Some(p) = e.downcast_ref::<ProtocolError>() {
            End::Refused(p.clone())
        } else if e
            .downcast_ref::<Coded>()
            .is_some_and(|c| c.code == crate::error::Code::Auth)
        {
            End::Forged
        } else if e
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof)
        {
            End::Truncated
        } else {
            panic!("reading the stream failed with neither a protocol error nor an early end: {e:#}")
        }
    };
    let mut reader = FrameReader::new(sock);
    let mut messages = Vec::new();
    match opener {
        Some(opener) => reader.require_seals(opener),
        None => {
            if let Err(e) = reader.read_preamble() {
                return (messages, end(e), false);
            }
        }
    }
    loop {
        let _ = reader.has_frame();
        let exact = r.one_in(2);
        let next = if exact {
            reader.expect_exact().map(Some)
        } else {
            reader.next()
        };
        match next {
            Ok(None) => return (messages, End::Clean, false),
            Err(e) => return (messages, end(e), exact),
            Ok(Some(m)) => {
                let mut payload = if let Message::Data(n) = m { n as usize } else { 0 };
                messages.push(m);
                while payload > 0 {
                    let want = payload.min(r.range(1, READ_BUFFER));
                    if let Err(e) = reader.buffer_small(want) {
                        return (messages, end(e), false);
                    }
                    payload -= reader.take_buffered(want as u64).len();
                }
            }
        }
    }
}

/// 2,000 sessions (a preamble and up to eight frames, each possibly
/// damaged) written in random pieces to a loopback socket and read with
/// FrameReader: the messages and the way the stream ends must be those of
/// decoding the same bytes in memory, and reading must end.
#[test]
fn streams_through_frame_reader_match_decoding_in_memory() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let generate = |r: &mut Rng| {
        let mut preamble = Preamble::ours().encode().to_vec();
        if r.one_in(8) {
            mutate(r, &mut preamble, &[0]);
        }
        let mut stream = preamble;
        for _ in 0..r.below(9) {
            let mut frame = valid_frame(r);
            if r.one_in(4) {
                let other = valid_frame(r);
                mutate(r, &mut frame, &other);
            }
            stream.extend(frame);
        }
        if r.one_in(8) {
            stream.truncate(r.below(stream.len() + 1));
        }
        stream
    };
    run("streams", 0x5eed_0005, 2_000, generate, |bytes, r| {
        let (want_messages, want_end) = expected_session(bytes);
        let (messages, end, exact) = through_socket(&listener, bytes, r, None);
        assert_eq!(messages, want_messages);
        let closed_on_exact_read = exact && want_end == End::Clean && end == End::Truncated;
        assert!(
            end == want_end || closed_on_exact_read,
            "stream ended with {end:?}, not {want_end:?}"
        );
    });
}

/// Writes `bytes` in random pieces to a fresh connection to `listener`
/// and reads them with [`read_session`] (sealed with `opener`). Reading
/// must end: the socket times out after 5 s, the whole read after 10 s.
pub(super) fn through_socket(
    listener: &TcpListener,
    bytes: &[u8],
    r: &mut Rng,
    opener: Option<Opener>,
) -> (Vec<Message>, End, bool) {
    let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (reader, _) = listener.accept().unwrap();
    for sock in [&writer, &reader] {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    writer.set_nodelay(true).unwrap();
    let mut pieces = Vec::new();
    let mut rest = bytes.to_vec();
    while !rest.is_empty() {
        let most = if r.one_in(2) { 8 } else { 70_000 };
        let tail = rest.split_off(r.range(1, rest.len().min(most)));
        pieces.push(std::mem::replace(&mut rest, tail));
    }
    let write = std::thread::spawn(move || {
        // The reader may stop early and close: write errors are fine.
        for piece in pieces {
            if writer.write_all(&piece).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    // A watchdog, not just the socket timeout: a reader that spun on
    // end of stream would never time out.
    let (done, result) = mpsc::channel();
    let mut reader_rng = Rng(r.next());
    std::thread::spawn(move || done.send(read_session(reader, &mut reader_rng, opener)));
    let (messages, end, exact) = match result.recv_timeout(Duration::from_secs(10)) {
        Ok(session) => session,
        Err(RecvTimeoutError::Timeout) => panic!("reading the session did not end within 10 s"),
        Err(RecvTimeoutError::Disconnected) => panic!("reading the session panicked"),
    };
    write.join().unwrap();
    (messages, end, exact)
}

/// The largest frame a sealed session allows, a control frame of 64 KiB
/// and its tag, is read whole, with buffered and with exact reads.
#[test]
fn the_largest_sealed_frame_is_read_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let agreement = Agreement::new(b"key", [7; 32]);
    let (mut sealer, _) = agreement.channel(Role::Sender);
    let mut frame = encode(&valid_entry(&mut Rng::new(3, 0)));
    frame.resize(FRAME_HEADER_LEN + MAX_CONTROL_LEN as usize, 0x5a); // reserved extension area
    fix_frame_len(&mut frame);
    let (hdr, body) = frame.split_first_chunk::<FRAME_HEADER_LEN>().unwrap();
    let entry = Message::decode(FrameHeader::decode(hdr).unwrap(), body).unwrap();
    sealer.seal(&mut frame, 0);
    assert_eq!(frame.len(), FRAME_HEADER_LEN + MAX_CONTROL_LEN as usize + TAG_LEN);
    for case in 0..8 {
        let (_, opener) = agreement.channel(Role::Receiver);
        let (messages, end, exact) = through_socket(&listener, &frame, &mut Rng::new(3, case), Some(opener));
        assert_eq!(messages, std::slice::from_ref(&entry));
        assert!(end == End::Clean || exact && end == End::Truncated, "{end:?}");
    }
}
