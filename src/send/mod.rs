//! `zcp send`: open the source, connect, agree on version and checksum,
//! stream one entry (header, payload, trailer), and exit with the outcome
//! the receiver reports in its verdict: 0 only once the receiver holds the
//! verified file under its final name.

mod replies;
mod source;

use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::checksum::{Algorithm, Digest, FileHasher, PipeHasher};
use crate::cli::SendArgs;
use crate::display;
use crate::engine::{Policy, Report, outbound};
use crate::error::{self, Code};
use crate::frames::{self, FrameReader};
use crate::net;
use crate::progress::Reporter;
use crate::protocol::{Entry, EntryKind, Hello, MAX_DATA_LEN, Message, Role, Trailer, VerdictStatus};
use replies::{Replies, Reply};
use source::Source;

/// How long to wait for the receiver's reason after our side failed.
const REASON_GRACE: Duration = Duration::from_secs(3);

pub fn run(args: SendArgs) -> Result<Code> {
    let mut reporter = Reporter::new(args.common.verbosity());
    let policy = Policy::new(!args.common.no_zerocopy);
    let algorithm = args.common.checksum;
    let source = Source::open(&args.source, args.name.as_ref())?;
    let peer = args.target.to_string();

    let (sock, addr) = net::connect(&args.target)?;
    reporter.detail(format!("connected to {peer} ({})", net::show_addr(addr)));
    sock.set_read_timeout(Some(args.common.handshake_timeout()))?;
    let replies = handshake(&sock, algorithm).with_context(|| format!("talking to {peer}"))?;

    let what = format!("sending {} to {peer}", display::escape_bytes(source.name.as_bytes()));
    let started = Instant::now();
    let sent = match send_entry(&sock, &source, algorithm, policy, &mut reporter)
        .and_then(|sent| frames::send(&sock, &Message::Done).map(|()| sent))
    {
        Ok(sent) => sent,
        Err(local) => {
            reporter.finish();
            // The receiver's reason (disk full, ...) beats our broken pipe.
            return Err(match replies.next(Some(REASON_GRACE)) {
                Some(Reply::Error(e)) => error::coded(Code::from_peer_error(e.code), receiver_said(&e.message)),
                _ => local,
            })
            .context(what);
        }
    };

    let verdict = match replies.next(None) {
        Some(Reply::Verdict(v)) => v,
        Some(Reply::Error(e)) => {
            return Err(error::coded(Code::from_peer_error(e.code), receiver_said(&e.message))).context(what);
        }
        Some(Reply::Closed) => bail!("{what}: the receiver closed the connection without a verdict"),
        Some(Reply::Broken(why)) => bail!("{what}: {why}"),
        Some(Reply::Done) => bail!("{what}: the receiver ended the session without a verdict"),
        None => return Err(error::interrupted_io()).context(what),
    };
    let seconds = started.elapsed().as_secs_f64();
    reporter.finish();
    match verdict.status {
        VerdictStatus::Committed if verdict.digest == sent.digest => {}
        VerdictStatus::Committed => {
            return Err(error::integrity(format!(
                "{what}: the receiver committed data whose digest {} is not ours {}",
                verdict.digest.hex(),
                sent.digest.hex()
            )));
        }
        VerdictStatus::Mismatch => {
            return Err(error::integrity(format!(
                "{what}: integrity check failed: the receiver's {} digest {} differs from ours {}; nothing was committed",
                algorithm.name(),
                verdict.digest.hex(),
                sent.digest.hex()
            )));
        }
        VerdictStatus::Failed => bail!("{what}: {}", receiver_said(&verdict.message)),
    }
    // The session ends with the receiver's DONE; its absence is harmless now.
    let _ = replies.next(Some(REASON_GRACE));

    reporter.detail(format!("send: {}", sent.report.describe()));
    if algorithm != Algorithm::None {
        reporter.detail_raw(&display::checksum_line(&sent.digest.hex(), &source.path));
    }
    reporter.note(format!(
        "sent {} to {peer}: {} in {seconds:.2} s ({}), {}, {}",
        display::escape_bytes(source.name.as_bytes()),
        display::bytes(sent.bytes),
        display::rate(sent.bytes, seconds),
        sent.report.primary().name(),
        verified(algorithm)
    ));
    Ok(Code::Success)
}

/// "verified (sha256)" or "unverified".
pub fn verified(algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::None => "unverified (--checksum none)".into(),
        a => format!("verified ({})", a.name()),
    }
}

fn receiver_said(message: &str) -> String {
    format!("receiver: {}", display::escape_text(message))
}

/// Preamble and HELLO exchange; hands the reading half to a [`Replies`]
/// worker once the receiver has accepted us.
fn handshake(sock: &TcpStream, algorithm: Algorithm) -> Result<Replies> {
    frames::send_preamble(sock)?;
    frames::send(
        sock,
        &Message::Hello(Hello {
            role: Role::Sender,
            checksum: algorithm,
            software: format!("zcp {}", env!("CARGO_PKG_VERSION")),
        }),
    )?;
    let mut reader = FrameReader::new(sock.try_clone()?);
    let theirs = reader.read_preamble()?;
    crate::protocol::Preamble::ours().negotiate(&theirs)?;
    match reader.expect()? {
        Message::Hello(h) if h.role != Role::Receiver => bail!("the peer is not a zcp receiver"),
        Message::Hello(h) if h.checksum != algorithm => bail!(
            "the receiver uses --checksum {} but this side uses --checksum {}",
            h.checksum.name(),
            algorithm.name()
        ),
        Message::Hello(_) => {}
        Message::Error(e) => return Err(error::coded(Code::from_peer_error(e.code), receiver_said(&e.message))),
        other => bail!("expected HELLO, the receiver sent {:?}", other.frame_type()),
    }
    // The receiver answered: from here on it may take as long as the data.
    sock.set_read_timeout(None)?;
    Replies::spawn(reader, sock.try_clone()?)
}

/// What one entry's transfer produced on our side.
struct Sent {
    bytes: u64,
    digest: Digest,
    report: Report,
}

fn send_entry(
    sock: &TcpStream,
    source: &Source,
    algorithm: Algorithm,
    policy: Policy,
    reporter: &mut Reporter,
) -> Result<Sent> {
    let size = source.range.map(|(_, len)| len);
    let entry = Entry {
        kind: EntryKind::File,
        name: source.name.clone(),
        size,
        mode: source.mode,
        mtime: source.mtime,
    };
    frames::send(sock, &Message::Entry(entry))?;
    reporter.start(&format!("send {}", display::escape_bytes(source.name.as_bytes())), size);

    let (bytes, digest, report) = match source.range {
        Some((start, len)) => {
            let hasher = FileHasher::spawn(source.file.try_clone()?, algorithm, start)?;
            let mut done = 0u64;
            let report = outbound::send_file(sock, &source.file, start, len, policy, &mut |n| {
                done += n;
                hasher.advance(start + done);
                reporter.advance(n);
            })?;
            let hashed = hasher.finish().with_context(|| format!("hashing {}", source.shown))?;
            // A file that changed under sendfile must not be vouched for.
            if let Err(e) = source.check_unchanged() {
                frames::send(sock, &Message::Abort(format!("{e:#}")))?;
                return Err(e);
            }
            (done, hashed.digest, report)
        }
        None => send_stream(sock, source, algorithm, policy, reporter)?,
    };
    frames::send(
        sock,
        &Message::Trailer(Trailer {
            bytes,
            digest: digest.clone(),
        }),
    )?;
    Ok(Sent { bytes, digest, report })
}

/// Streams a pipe or other unsized input as DATA frames.
fn send_stream(
    sock: &TcpStream,
    source: &Source,
    algorithm: Algorithm,
    policy: Policy,
    reporter: &mut Reporter,
) -> Result<(u64, Digest, Report)> {
    let hasher = PipeHasher::spawn(algorithm, policy.pipe_size)?;
    let mut input = outbound::StreamSource::new(source.file.as_fd(), source.kind, hasher.input(), policy);
    let mut total = 0u64;
    loop {
        let n = match input.fill(MAX_DATA_LEN as usize, sock) {
            Ok(n) => n,
            Err(e) => {
                // At a frame boundary the receiver can be told why.
                let _ = frames::send(sock, &Message::Abort(format!("reading {}: {e}", source.shown)));
                return Err(e).with_context(|| format!("reading {}", source.shown));
            }
        };
        if n == 0 {
            break;
        }
        frames::send(sock, &Message::Data(u32::try_from(n)?))?;
        input.forward(sock, n)?;
        total += n as u64;
        reporter.advance(n as u64);
    }
    let report = std::mem::take(&mut input.report);
    drop(input);
    let hashed = hasher.finish().with_context(|| format!("hashing {}", source.shown))?;
    if algorithm != Algorithm::None && hashed.bytes != total {
        return Err(anyhow!(
            "hashed {} bytes of {} but sent {total}",
            hashed.bytes,
            source.shown
        ));
    }
    Ok((total, hashed.digest, report))
}
