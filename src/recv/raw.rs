//! `zcp recv --raw`: one plain TCP connection (from nc, socat or `zcp
//! send --raw`), accepted or, with `--connect`, made, and everything it
//! carries written to DEST or stdout: no handshake, no key, no name, no
//! verification.
//!
//! The bytes land as in a zcp session (engine/inbound.rs): socket → pipe →
//! file with splice, or read/write with `--no-zerocopy` or where splice is
//! refused. A file is staged like any received file (dest.rs) and put
//! under its final name only when the sender ends the stream with a clean
//! close (FIN); a reset, an error, the idle timeout or Ctrl-C leave
//! nothing there. A stream that a sender cut short but closed cleanly
//! cannot be told from a complete one: raw mode has nothing to check it
//! against. A stream that opens with zcp's own preamble magic comes from
//! a `zcp send` without `--raw`: it is refused (exit status 8) before
//! anything is staged.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::IsTerminal;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cli::RecvArgs;
use crate::dest::{Destination, Finish, Placed, Stager, final_mode};
use crate::display;
use crate::engine::inbound::{Lander, Target};
use crate::engine::{Policy, Report};
use crate::error::{self, Code};
use crate::net;
use crate::progress::Reporter;
use crate::protocol::MAGIC;
use crate::serve;
use crate::sys::{self, signals};

/// Where the stream goes.
enum Sink {
    File {
        dir: Arc<File>,
        name: OsString,
        shown: PathBuf,
    },
    Stdout,
}

pub fn run(args: &RecvArgs, umask: u32) -> Result<Code> {
    let into = match Destination::resolve(&args.dest)? {
        Destination::File { dir, name, shown } => Sink::File { dir, name, shown },
        Destination::Stdout => Sink::Stdout,
        Destination::Directory { shown, .. } => {
            return Err(error::usage(format!(
                "DEST {} is a directory, and a raw stream carries no name to give a file in it: --raw needs a file path (such as {}) or - for stdout",
                display::path(&shown),
                display::path(&shown.join("NAME"))
            )));
        }
    };
    let mut reporter = Reporter::new(args.common.verbosity());
    if let Sink::File { dir, name, shown } = &into {
        // Checked again when the stream has come, as the name may be
        // taken meanwhile; taking a stream only to drop it helps nobody.
        if args.no_clobber && sys::lstat_at(dir, name.as_bytes()).is_ok() {
            reporter.note(format_args!(
                "skipped {}: it exists and --no-clobber keeps it; no connection taken",
                display::path(shown)
            ));
            return Ok(Code::Success);
        }
    }
    let (sock, peer) = meet(args)?;
    reporter.detail(format_args!("connection from {peer}: a raw stream, no handshake"));
    // A sender that goes silent cannot hold the receiver (and a staged
    // file) forever.
    sock.set_read_timeout(Some(Duration::from_secs(args.idle_timeout)))
        .context("setting the idle timeout")?;
    let policy = Policy::new(!args.common.no_zerocopy);
    signals::wake_on_interrupt(sock.as_fd());
    let finish = Finish {
        mode: None,
        mtime: None,
        umask,
        fsync: args.fsync,
        no_clobber: args.no_clobber,
    };
    let landed = match &into {
        Sink::File { dir, name, shown } => to_file(&sock, dir, name, shown, &finish, policy, &mut reporter),
        Sink::Stdout => to_stdout(&sock, policy, &mut reporter),
    };
    signals::wake_nothing();
    reporter.finish();
    let receiving = format!("receiving a raw stream from {peer}");
    let Landed {
        bytes,
        report,
        started,
        placed,
    } = landed
        .map_err(|err| explain(err, args.idle_timeout))
        .context(receiving)?;
    let seconds = started.elapsed().as_secs_f64();
    let into_shown = match &into {
        Sink::File { shown, .. } => display::path(shown),
        Sink::Stdout => "-".to_string(),
    };
    reporter.detail(format_args!("recv: {}", report.describe()));
    if placed == Placed::Exists {
        reporter.note(format_args!(
            "skipped {into_shown}: it exists and --no-clobber keeps it; the {bytes} bytes from {peer} were dropped"
        ));
        return Ok(Code::Success);
    }
    reporter.note(format_args!(
        "received a raw stream from {peer} into {into_shown}: {} in {seconds:.2} s ({}), {}, unverified (--raw)",
        display::bytes(bytes),
        display::rate(bytes, seconds),
        report.primary().name(),
    ));
    Ok(Code::Success)
}

/// The one connection: accepted (the listener closes with it, so nobody
/// else gets in) or, with `--connect`, made.
fn meet(args: &RecvArgs) -> Result<(TcpStream, String)> {
    if let Some(target) = &args.connect {
        let peer = target.to_string();
        eprintln!("zcp: warning: --raw: no key and no verification: whatever {peer} sends is written to DEST");
        let (sock, _) = net::connect(target, args.bind).with_context(|| format!("receiving from {peer}"))?;
        return Ok((sock, peer));
    }
    let (listener, _) = serve::bind(&args.listen)?;
    eprintln!(
        "zcp: warning: --raw: anyone who can reach this port can write DEST: the first connection is taken, with no key and no verification"
    );
    serve::first(&listener, "a sender", |sock, peer| {
        serve::Ending::Served(Ok((sock, peer)))
    })
}

/// What landed, and how.
struct Landed {
    bytes: u64,
    report: Report,
    started: Instant,
    placed: Placed,
}

/// Stages a file in DEST's directory, lands the stream in it and, at a
/// clean end, puts it under its name.
fn to_file(
    sock: &TcpStream,
    dir: &Arc<File>,
    name: &OsStr,
    shown: &Path,
    finish: &Finish,
    policy: Policy,
    reporter: &mut Reporter,
) -> Result<Landed> {
    not_a_zcp_sender(sock).with_context(|| format!("nothing written to {}", display::path(shown)))?;
    let stager = Stager::new().context("seeding temporary names")?;
    reporter.detail(format_args!("staging files as {}", stager.staging(dir).describe()));
    let staged = stager.file(
        dir,
        name.as_bytes(),
        shown.to_path_buf(),
        final_mode(None, finish.umask),
    )?;
    let shown_s = display::path(shown);
    let file = staged.file().context("internal error: a staged file without a file")?;
    let mut lander = Lander::new(policy);
    let mut target = Target::File { file, offset: 0 };
    let mut report = lander.start_report(&target);
    reporter.start("recv", None);
    let started = Instant::now();
    let bytes = lander
        .land_to_end(sock.as_fd(), &mut target, &mut report, &mut |n| reporter.advance(n))
        .with_context(|| format!("nothing written to {shown_s}"))?;
    let placed = staged.commit(finish)?;
    Ok(Landed {
        bytes,
        report,
        started,
        placed,
    })
}

/// Lands the stream on stdout: spliced straight into it when it is a pipe.
fn to_stdout(sock: &TcpStream, policy: Policy, reporter: &mut Reporter) -> Result<Landed> {
    not_a_zcp_sender(sock).context("nothing written to stdout")?;
    let stdout = std::io::stdout();
    let out = stdout.as_fd();
    let mut lander = Lander::new(policy);
    let out_is_pipe = lander.ready_stream_out(out);
    let mut target = Target::Stream {
        out,
        out_is_pipe,
        hash: None,
    };
    let mut report = lander.start_report(&target);
    // Payload going to the terminal and a bar on it would garble both.
    if !stdout.is_terminal() {
        reporter.start("recv", None);
    }
    let started = Instant::now();
    let mut landed = 0u64;
    let bytes = lander
        .land_to_end(sock.as_fd(), &mut target, &mut report, &mut |n| {
            landed += n;
            reporter.advance(n);
        })
        .with_context(|| format!("stdout has {landed} bytes of an incomplete stream"))?;
    Ok(Landed {
        bytes,
        report,
        started,
        placed: Placed::Committed,
    })
}

/// Refuses a stream that opens with zcp's own preamble: a `zcp send`
/// without `--raw` is at the other end, and its handshake must not land in
/// DEST as if it were the data. Only looks (MSG_PEEK), so the bytes still
/// move zero-copy; a stream shorter than the magic is raw data like any.
fn not_a_zcp_sender(sock: &TcpStream) -> Result<()> {
    let mut head = [0u8; MAGIC.len()];
    let seen = loop {
        match sys::peek_first(sock.as_fd(), &mut head) {
            Ok(n) => break n,
            // An interruption shuts the socket down: the next look ends.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out waiting for the peer").into());
            }
            Err(e) => return Err(anyhow::Error::new(e).context("reading the start of the stream")),
        }
    };
    if signals::interrupted() {
        return Err(error::interrupted_io().into());
    }
    if seen == MAGIC.len() && head == MAGIC {
        return Err(error::protocol(
            "the peer is a zcp sender without --raw; use zcp recv without --raw",
        ));
    }
    Ok(())
}

/// Names the idle timeout for what it is: the socket's read timeout ended
/// the read.
fn explain(err: anyhow::Error, idle: u64) -> anyhow::Error {
    let timed_out = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    });
    if timed_out && !signals::interrupted() {
        return err.context(error::idle_cut(Duration::from_secs(idle)).to_string());
    }
    err
}
