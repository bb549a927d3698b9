//! Exit codes and the few typed errors that choose one. Everything else is
//! an `anyhow::Error` with context, which exits with [`Code::Failure`].
//! The table in README.md and the man page (generate.rs) repeat
//! [`Code::TABLE`], `--help` its short form [`Code::BRIEF`]; keep them in
//! step. [`connection_lost`] tells a broken connection, which `send
//! --retries` connects again after, from a failure no retry can help.

use std::fmt;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use crate::sys::signals;

/// zcp's exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success = 0,
    /// I/O, network or peer failure.
    Failure = 1,
    /// Bad command line.
    Usage = 2,
    /// Checksum mismatch: the received bytes are not the bytes sent.
    Integrity = 3,
    /// Some entries failed, the others arrived.
    Partial = 4,
    /// The peer could not prove it knows the shared key (or refused ours).
    Auth = 5,
    /// A source file changed while it was being sent; it was not committed.
    SourceChanged = 6,
    /// SIGINT or SIGTERM.
    Interrupted = 130,
}

impl Code {
    /// (code, meaning) rows for documentation.
    pub const TABLE: [(u8, &'static str); 8] = [
        (
            0,
            "success: the receiver verified the data and committed it under its final name",
        ),
        (
            1,
            "I/O, network or peer failure (missing file, refused connection, disk full, protocol error, ...)",
        ),
        (2, "usage error (bad option or argument)"),
        (
            3,
            "integrity failure: the SHA-256 digests of sender and receiver differ for a file, which was not committed (in a tree, the files that matched were)",
        ),
        (
            4,
            "partial transfer: some entries failed (each is named on stderr), the others were committed",
        ),
        (
            5,
            "authentication failed: the peer does not know the shared key (ZCP_KEY, --key-file or the receiver's one-time key), or one end runs with --no-auth and the other does not",
        ),
        (
            6,
            "a source file changed while it was being sent; it was not committed (the rest of a tree is sent as usual); re-run to copy a consistent version",
        ),
        (130, "interrupted by SIGINT or SIGTERM; staged files were removed"),
    ];

    /// The same rows, short enough for `--help` on an 80-column terminal.
    pub const BRIEF: [(u8, &'static str); 8] = [
        (0, "success: verified and committed under its final name"),
        (
            1,
            "failure: I/O, network or peer (no such file, refused, disk full, ...)",
        ),
        (2, "usage error: bad option or argument"),
        (3, "integrity: a file's digests differ; it was not committed"),
        (
            4,
            "partial: some entries failed (each named on stderr), the rest arrived",
        ),
        (5, "authentication failed: wrong or missing key"),
        (6, "a source changed while being sent; it was not committed"),
        (130, "interrupted by SIGINT or SIGTERM; staged files were removed"),
    ];

    /// The local exit code for a peer's ERROR frame. An ERROR is always a
    /// failure here: only an integrity failure keeps its own code, so a
    /// peer can never make this side report success, a usage error or an
    /// interruption it did not have. An authentication failure keeps its
    /// code too.
    pub fn from_peer_error(code: u8) -> Code {
        if code == Code::Integrity as u8 {
            Code::Integrity
        } else if code == Code::Auth as u8 {
            Code::Auth
        } else {
            Code::Failure
        }
    }

    /// The same for an ERROR from a peer that has not proved it knows the
    /// key: anyone could have sent it, so it may say "authentication
    /// failed" but not claim an integrity failure.
    pub fn from_unauthenticated_peer_error(code: u8) -> Code {
        match Code::from_peer_error(code) {
            Code::Integrity => Code::Failure,
            other => other,
        }
    }

    pub fn exit(self) -> ExitCode {
        ExitCode::from(self as u8)
    }

    /// The status's name in the JSON report (docs/JSON.md): one per exit
    /// code, stable once published. Every code is named here and only
    /// here.
    pub fn name(self) -> &'static str {
        match self {
            Code::Success => "success",
            Code::Failure => "failure",
            Code::Usage => "usage",
            Code::Integrity => "integrity",
            Code::Partial => "partial",
            Code::Auth => "auth",
            Code::SourceChanged => "source_changed",
            Code::Interrupted => "interrupted",
        }
    }
}

/// An error that carries the exit code it must produce.
#[derive(Debug)]
pub struct Coded {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

pub fn coded(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    coded(Code::Usage, message)
}

/// The error for a loop that noticed SIGINT/SIGTERM.
pub fn interrupted_io() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted")
}

/// What a receiver tells a sender it cut off for staying silent too long
/// (`--idle-timeout`). The cut is the connection's failure, not a verdict:
/// as an I/O error that timed out, it is [`connection_lost`] on both ends.
pub fn idle_cut(timeout: Duration) -> anyhow::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{IDLE_CUT}{} s (--idle-timeout)", timeout.as_secs()),
    )
    .into()
}

const IDLE_CUT: &str = "the sender sent nothing for ";

/// Whether a receiver's ERROR text is its [`idle_cut`].
pub fn is_idle_cut(message: &str) -> bool {
    message.starts_with(IDLE_CUT) && message.ends_with(" s (--idle-timeout)")
}

/// Whether `err` ended a session because the connection broke (refused,
/// reset, timed out, closed in the middle of the session, a broken pipe),
/// so that connecting again may get further. It never is when the error
/// is [`deliberate`]: a retry cannot mend those.
pub fn connection_lost(err: &anyhow::Error) -> bool {
    !deliberate(err)
        && err
            .chain()
            .any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| broken(e.kind())))
}

/// Whether `err` is a decision rather than an accident: it carries its own
/// exit code (a usage, authentication or integrity failure, or the peer's
/// ERROR, such as a full disk), or SIGINT/SIGTERM is ending zcp.
pub fn deliberate(err: &anyhow::Error) -> bool {
    signals::interrupted() || err.chain().any(|cause| cause.is::<Coded>())
}

/// The I/O error kinds of a connection that broke or could not be made.
fn broken(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | UnexpectedEof
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

/// The one line `main` prints after `zcp: error: ` (and the JSON report's
/// `error`): the whole chain of context, with any newline escaped.
pub fn message(err: &anyhow::Error) -> String {
    crate::display::one_line(&format!("{err:#}"))
}

/// Chooses the exit code for an error that reached `main`.
pub fn exit_code(err: &anyhow::Error) -> Code {
    if signals::interrupted() {
        return Code::Interrupted;
    }
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Coded>().map(|c| c.code))
        .unwrap_or(Code::Failure)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_brief_table_has_the_same_codes() {
        let codes = |t: &[(u8, &str)]| t.iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(codes(&Code::TABLE), codes(&Code::BRIEF));
    }

    #[test]
    fn every_code_has_its_own_name() {
        use Code::*;
        let all = [
            Success,
            Failure,
            Usage,
            Integrity,
            Partial,
            Auth,
            SourceChanged,
            Interrupted,
        ];
        assert_eq!(all.len(), Code::TABLE.len());
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(SourceChanged.name(), "source_changed");
    }

    #[test]
    fn the_code_survives_added_context() {
        let err = Err::<(), _>(coded(Code::Integrity, "digest mismatch"))
            .context("receiving x")
            .unwrap_err();
        assert_eq!(exit_code(&err), Code::Integrity);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), Code::Failure);
    }

    fn io_error(kind: io::ErrorKind) -> anyhow::Error {
        anyhow::Error::new(io::Error::new(kind, "io")).context("sending x to host:1")
    }

    #[test]
    fn a_broken_connection_is_lost_whatever_context_it_has() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionRefused,
            ConnectionReset,
            ConnectionAborted,
            BrokenPipe,
            UnexpectedEof,
            TimedOut,
            NetworkUnreachable,
        ] {
            assert!(connection_lost(&io_error(kind)), "{kind:?}");
        }
        assert!(connection_lost(&idle_cut(Duration::from_secs(120))));
    }

    #[test]
    fn other_failures_are_not_lost_connections() {
        use io::ErrorKind::*;
        for kind in [NotFound, PermissionDenied, StorageFull, Interrupted, InvalidData, Other] {
            assert!(!connection_lost(&io_error(kind)), "{kind:?}");
        }
        assert!(!connection_lost(&anyhow::anyhow!("protocol error: bad frame")));
    }

    #[test]
    fn an_error_with_its_own_code_is_never_lost() {
        for code in [
            Code::Failure,
            Code::Usage,
            Code::Integrity,
            Code::Auth,
            Code::SourceChanged,
        ] {
            // The peer's ERROR (disk full) or our own verdict, however it
            // was reported.
            let err = coded(code, "decided").context("sending x to host:1");
            assert!(deliberate(&err), "{code:?}");
            assert!(!connection_lost(&err), "{code:?}");
        }
        assert!(!deliberate(&io_error(io::ErrorKind::ConnectionReset)));
    }

    #[test]
    fn the_idle_cut_is_recognised_in_the_receivers_words() {
        let said = format!("{:#}", idle_cut(Duration::from_secs(7)));
        assert_eq!(said, "the sender sent nothing for 7 s (--idle-timeout)");
        assert!(is_idle_cut(&said));
        assert!(!is_idle_cut("No space left on device (os error 28)"));
        assert!(!is_idle_cut("the sender sent nothing for 7 s"));
    }
}
