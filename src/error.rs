//! Exit codes and the few typed errors that choose one. An error that
//! carries its own code ([`Coded`], or the decoder's [`ProtocolError`],
//! which is [`Code::Protocol`]) exits with it; one that broke the
//! connection ([`connection_lost`]) with [`Code::Network`]; everything
//! else is an `anyhow::Error` with context, which exits with
//! [`Code::Failure`]. The table in README.md and the man page
//! (generate.rs) repeat [`Code::TABLE`], `--help` its short form
//! [`Code::BRIEF`]; keep them in step. [`connection_lost`] tells a broken
//! connection, which `send --retries` connects again after, from a
//! failure no retry can help.

use std::fmt;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use crate::protocol::ProtocolError;
use crate::sys::signals;

/// zcp's exit statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success = 0,
    /// Reading a source or writing the destination failed (on either
    /// end), or any other failure without a code of its own.
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
    /// The connection could not be made, or it broke or timed out during
    /// the session: exactly the errors [`connection_lost`] accepts.
    Network = 7,
    /// The peer is not zcp, speaks an incompatible protocol version, or
    /// sent a malformed, out-of-order or otherwise invalid frame.
    Protocol = 8,
    /// SIGINT or SIGTERM.
    Interrupted = 130,
}

impl Code {
    /// (code, meaning) rows for documentation.
    pub const TABLE: [(u8, &'static str); 10] = [
        (
            0,
            "success: the receiver verified the data and committed it under its final name",
        ),
        (
            1,
            "I/O or other failure: reading a source or writing the destination failed, on either end (missing file, permission denied, disk full, ...)",
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
        (
            7,
            "network failure: the connection could not be made (refused, unreachable, unknown host, timeout) or it broke during the transfer (reset, closed early, timed out, --idle-timeout); these are the failures send --retries tries again",
        ),
        (
            8,
            "protocol failure: the peer is not zcp, speaks an incompatible protocol version, or sent an invalid or out-of-order frame",
        ),
        (130, "interrupted by SIGINT or SIGTERM; staged files were removed"),
    ];

    /// The same rows, short enough for `--help` on an 80-column terminal.
    pub const BRIEF: [(u8, &'static str); 10] = [
        (0, "success: verified and committed under its final name"),
        (1, "failure: I/O on either end (no such file, no permission, disk full)"),
        (2, "usage error: bad option or argument"),
        (3, "integrity: a file's digests differ; it was not committed"),
        (
            4,
            "partial: some entries failed (each named on stderr), the rest arrived",
        ),
        (5, "authentication failed: wrong or missing key"),
        (6, "a source changed while being sent; it was not committed"),
        (7, "network: could not connect, or the connection broke or timed out"),
        (8, "protocol: the peer is not zcp, is incompatible, or sent a bad frame"),
        (130, "interrupted by SIGINT or SIGTERM; staged files were removed"),
    ];

    /// The local exit code for a peer's ERROR frame. An ERROR is always a
    /// failure here: only an integrity, authentication or protocol failure
    /// keeps its own code, so a peer can never make this side report
    /// success, a usage error or an interruption it did not have. Nor a
    /// network failure: the peer decided to send its ERROR, so the
    /// connection did not break (and `--retries` does not try again). The
    /// sender makes one exception before it gets here: a receiver's
    /// [`idle_cut`] is the timeout it reports.
    pub fn from_peer_error(code: u8) -> Code {
        [Code::Integrity, Code::Auth, Code::Protocol]
            .into_iter()
            .find(|c| *c as u8 == code)
            .unwrap_or(Code::Failure)
    }

    /// The code this end puts in the ERROR it sends for `err`: the codes
    /// [`Code::from_peer_error`] keeps, anything else as a failure.
    pub fn for_peer(err: &anyhow::Error) -> Code {
        match exit_code(err) {
            code @ (Code::Integrity | Code::Auth | Code::Protocol) => code,
            _ => Code::Failure,
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
            Code::Network => "network",
            Code::Protocol => "protocol",
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

/// An error that exits with `code`. Never [`Code::Network`]: a network
/// failure is an I/O error of a broken connection ([`connection_lost`]),
/// which `send --retries` tries again and a [`Coded`] error never is.
pub fn coded(code: Code, message: impl Into<String>) -> anyhow::Error {
    debug_assert_ne!(code, Code::Network, "a network failure is an I/O error, not Coded");
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

pub fn usage(message: impl Into<String>) -> anyhow::Error {
    coded(Code::Usage, message)
}

/// The error for a peer that broke the protocol: "protocol error: " and
/// `message`, exit status 8.
pub fn protocol(message: impl fmt::Display) -> anyhow::Error {
    coded(Code::Protocol, format!("protocol error: {message}"))
}

/// `bail!` for a peer that broke the protocol: returns [`protocol`] with
/// the formatted message.
macro_rules! protocol_bail {
    ($($arg:tt)*) => {
        return Err($crate::error::protocol(format_args!($($arg)*)))
    };
}
pub(crate) use protocol_bail;

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
    !deliberate(err) && broken_kind(err).is_some()
}

/// The kind of the first I/O error in `err`'s chain that is one of a
/// connection that broke or could not be made ([`broken`]).
fn broken_kind(err: &anyhow::Error) -> Option<io::ErrorKind> {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .map(io::Error::kind)
        .find(|kind| broken(*kind))
}

/// Whether `err` is a decision rather than an accident: it carries its own
/// exit code (a usage, authentication, integrity or protocol failure, or
/// the peer's ERROR, such as a full disk), or SIGINT/SIGTERM is ending
/// zcp.
pub fn deliberate(err: &anyhow::Error) -> bool {
    signals::interrupted() || err.chain().any(|cause| own_code(cause).is_some())
}

/// The exit code one error in a chain carries itself: a [`Coded`]'s, or
/// [`Code::Protocol`] for a message the peer sent that does not decode.
fn own_code(cause: &(dyn std::error::Error + 'static)) -> Option<Code> {
    if let Some(coded) = cause.downcast_ref::<Coded>() {
        Some(coded.code)
    } else {
        cause.is::<ProtocolError>().then_some(Code::Protocol)
    }
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

/// A failure passed on as text (a further stream's, to the session it
/// belongs to) that keeps what its exit status depends on: [`error`]
/// makes an error of it again with the same code, a lost connection
/// still lost.
///
/// [`error`]: Carried::error
#[derive(Debug, Clone)]
pub struct Carried {
    message: String,
    class: Class,
}

/// What [`Carried`] keeps of an error besides its words.
#[derive(Debug, Clone, Copy)]
enum Class {
    Coded(Code),
    Lost(io::ErrorKind),
    Plain,
}

impl Carried {
    /// `err`, to be told in `message`.
    pub fn new(err: &anyhow::Error, message: String) -> Carried {
        let class = match err.chain().find_map(own_code) {
            Some(code) => Class::Coded(code),
            None => broken_kind(err).map_or(Class::Plain, Class::Lost),
        };
        Carried { message, class }
    }

    /// The failure as an error again.
    pub fn error(&self) -> anyhow::Error {
        match self.class {
            Class::Coded(code) => coded(code, self.message.clone()),
            Class::Lost(kind) => io::Error::new(kind, self.message.clone()).into(),
            Class::Plain => anyhow::anyhow!("{}", self.message),
        }
    }
}

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The one line `main` prints after `zcp: error: ` (and the JSON report's
/// `error`): the whole chain of context, with any newline escaped.
pub fn message(err: &anyhow::Error) -> String {
    crate::display::one_line(&format!("{err:#}"))
}

/// Chooses the exit code for an error that reached `main`: an
/// interruption, else the code the error carries (the outermost one), else
/// [`Code::Network`] for a connection that broke, else [`Code::Failure`].
pub fn exit_code(err: &anyhow::Error) -> Code {
    if signals::interrupted() {
        return Code::Interrupted;
    }
    if let Some(code) = err.chain().find_map(own_code) {
        return code;
    }
    if connection_lost(err) {
        Code::Network
    } else {
        Code::Failure
    }
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
        let every = [
            Code::Success,
            Code::Failure,
            Code::Usage,
            Code::Integrity,
            Code::Partial,
            Code::Auth,
            Code::SourceChanged,
            Code::Network,
            Code::Protocol,
            Code::Interrupted,
        ];
        assert_eq!(codes(&Code::TABLE), every.map(|c| c as u8));
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
            Network,
            Protocol,
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
            HostUnreachable,
        ] {
            assert!(connection_lost(&io_error(kind)), "{kind:?}");
            assert_eq!(exit_code(&io_error(kind)), Code::Network, "{kind:?}");
        }
        assert!(connection_lost(&idle_cut(Duration::from_secs(120))));
        assert_eq!(exit_code(&idle_cut(Duration::from_secs(120))), Code::Network);
    }

    #[test]
    fn other_failures_are_not_lost_connections() {
        use io::ErrorKind::*;
        for kind in [NotFound, PermissionDenied, StorageFull, Interrupted, InvalidData, Other] {
            assert!(!connection_lost(&io_error(kind)), "{kind:?}");
            assert_eq!(exit_code(&io_error(kind)), Code::Failure, "{kind:?}");
        }
        // Words decide nothing: only the type does.
        let worded = anyhow::anyhow!("protocol error: bad frame");
        assert!(!connection_lost(&worded));
        assert_eq!(exit_code(&worded), Code::Failure);
    }

    #[test]
    fn a_protocol_error_is_typed_and_never_retried() {
        let decoded =
            anyhow::Error::new(ProtocolError("unknown frame type 42".into())).context("receiving from host:1");
        let bailed = || -> anyhow::Result<()> {
            protocol_bail!("unexpected {} between entries", "Hole");
        };
        let bailed = bailed().unwrap_err().context("receiving from host:1");
        assert_eq!(
            format!("{bailed:#}"),
            "receiving from host:1: protocol error: unexpected Hole between entries"
        );
        for err in [decoded, bailed, protocol("the peer is not a zcp sender")] {
            assert_eq!(exit_code(&err), Code::Protocol, "{err:#}");
            assert!(deliberate(&err), "{err:#}");
            assert!(!connection_lost(&err), "{err:#}");
        }
    }

    #[test]
    fn a_peer_error_keeps_only_integrity_auth_and_protocol_codes() {
        for (code, want) in [
            (0, Code::Failure),
            (1, Code::Failure),
            (2, Code::Failure),
            (3, Code::Integrity),
            (4, Code::Failure),
            (5, Code::Auth),
            (6, Code::Failure),
            (7, Code::Failure),
            (8, Code::Protocol),
            (130, Code::Failure),
            (255, Code::Failure),
        ] {
            assert_eq!(Code::from_peer_error(code), want, "{code}");
        }
        assert_eq!(Code::from_unauthenticated_peer_error(3), Code::Failure);
        assert_eq!(Code::from_unauthenticated_peer_error(5), Code::Auth);
        assert_eq!(Code::from_unauthenticated_peer_error(8), Code::Protocol);
        assert_eq!(Code::from_unauthenticated_peer_error(7), Code::Failure);
    }

    #[test]
    fn the_peer_is_told_the_codes_it_keeps() {
        assert_eq!(Code::for_peer(&protocol("bad frame")), Code::Protocol);
        assert_eq!(Code::for_peer(&coded(Code::Integrity, "mismatch")), Code::Integrity);
        assert_eq!(Code::for_peer(&coded(Code::Auth, "wrong key")), Code::Auth);
        assert_eq!(Code::for_peer(&coded(Code::Usage, "odd")), Code::Failure);
        assert_eq!(Code::for_peer(&io_error(io::ErrorKind::ConnectionReset)), Code::Failure);
        assert_eq!(Code::for_peer(&io_error(io::ErrorKind::StorageFull)), Code::Failure);
    }

    #[test]
    fn a_carried_failure_keeps_its_code_and_whether_it_was_lost() {
        let carry = |err: anyhow::Error| {
            let said = format!("a further stream: {err:#}");
            Carried::new(&err, said).error()
        };
        let lost = carry(io_error(io::ErrorKind::ConnectionReset));
        assert_eq!(exit_code(&lost), Code::Network);
        assert!(connection_lost(&lost));
        assert_eq!(format!("{lost:#}"), "a further stream: sending x to host:1: io");
        let broke = carry(protocol("block 0 was sent twice").context("landing block 0"));
        assert_eq!(exit_code(&broke), Code::Protocol);
        assert_eq!(
            format!("{broke:#}"),
            "a further stream: landing block 0: protocol error: block 0 was sent twice"
        );
        let decoded = carry(anyhow::Error::new(ProtocolError("empty DATA".into())));
        assert_eq!(exit_code(&decoded), Code::Protocol);
        let refused = carry(coded(Code::Auth, "tag mismatch"));
        assert_eq!(exit_code(&refused), Code::Auth);
        let full = carry(io_error(io::ErrorKind::StorageFull));
        assert_eq!(exit_code(&full), Code::Failure);
        assert!(!deliberate(&full));
    }

    #[test]
    fn an_error_with_its_own_code_is_never_lost() {
        for code in [
            Code::Failure,
            Code::Usage,
            Code::Integrity,
            Code::Auth,
            Code::SourceChanged,
            Code::Protocol,
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
