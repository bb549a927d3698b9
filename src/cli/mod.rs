//! The command line, defined once with clap derive. `--help`, the man page
//! and the shell completions (generate.rs) are all produced from these
//! types; doc comments here are the user-facing help text.

mod usage;
mod values;

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::checksum::Algorithm;
use crate::error::Code;
use crate::net::{self, HostPort, ListenSpec};
use crate::progress::Verbosity;
use usage::{one_line, raw_conflict, sender_only};
use values::{parse_rate, parse_seconds, parse_size};

const ABOUT: &str = "Copy files between Linux machines over TCP with zero-copy I/O and end-to-end SHA-256";

const LONG_ABOUT: &str = "\
Copy files between Linux machines over TCP with zero-copy I/O and end-to-end SHA-256.

`zcp recv` listens and writes what arrives into a directory, a file or stdout; \
`zcp send` streams files, directory trees (-r) or stdin to it. When only the sender can be \
reached, it listens instead (`zcp send --listen`) and the receiver connects to it \
(`zcp recv --connect`). The sender moves file bytes with sendfile(2) \
(splice(2) for pipes), the receiver splices socket -> pipe -> file, so the payload never \
passes through a user-space buffer. Both ends hash what they moved and compare before the \
file appears under its final name.";

/// Lines stay under 77 columns so that clap never wraps them on an
/// 80-column terminal (a test checks).
const EXAMPLES: &str = "\
Examples:
  zcp recv /srv/incoming                     receive; prints a one-time key
  zcp send big.iso server:7227               send a file
  zcp send -r photos/ notes.txt server:7227  send a tree and a file
  tar c dir | zcp send - server:7227         send stdin; on the other end:
  zcp recv -l 7227 - | tar x                 ... unpack it as it arrives
  zcp recv -l 127.0.0.1:0 out.bin            any free port, shown on stderr
  zcp send --listen 7227 big.iso             listen; on the receiving end:
  zcp recv --connect server:7227 /srv/in     ... connect and fetch big.iso
  zcp send --retries 5 disk.img server:7227  ride out drops, resume blocks
  zcp send -P 4 disk.img server:7227         four connections, all cores
  zcp send --json-file r.json f server:7227  the outcome as JSON in r.json
  zcp send --raw big.iso host:9000           plain bytes to nc -l 9000 > f
  zcp recv --raw -l 9000 big.iso             from nc -N host 9000 < f
  zcp bench --size 256M                      measure zcp on this machine";

/// Examples and the exit statuses, one per line.
fn after_help() -> String {
    let mut s = String::from(EXAMPLES);
    s.push_str("\n\nExit status:\n");
    for (code, meaning) in Code::BRIEF {
        s.push_str(&format!("  {code:<5}{meaning}\n"));
    }
    s
}

#[derive(Debug, Parser)]
#[command(
    name = "zcp",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = after_help(),
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send files, directory trees (-r) or stdin to a listening `zcp recv`,
    /// or (--listen) to one that connects
    #[command(after_help = after_help())]
    Send(SendArgs),
    /// Receive one transfer (with -k, many) into a directory, a file or
    /// stdout, listening or (--connect) from a listening sender
    #[command(after_help = after_help())]
    Recv(RecvArgs),
    /// Measure zcp on loopback: default, --checksum none, --no-zerocopy and --checksum blake3
    Bench(BenchArgs),
    /// Write the man page or a shell completion script to stdout
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// Options both ends share.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Print only errors and warnings (and, when listening, the `listening on` line)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Name the mechanism that moved the bytes (sendfile, splice or
    /// read/write) and why, and print the digest in sha256sum format
    #[arg(short, long)]
    pub verbose: bool,

    /// Use plain read/write instead of sendfile/splice
    #[arg(long)]
    pub no_zerocopy: bool,

    /// Verification of the payload; both ends must use the same value.
    /// `blake3` verifies as strongly and hashes several times faster per
    /// core; `none` is for trusted links: nothing is compared and the
    /// summary says "unverified"
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = Algorithm::Sha256)]
    pub checksum: Algorithm,

    /// Seconds within which the whole handshake (authentication included)
    /// must be done, counted from the connection, so a silent, slow or
    /// wrong peer cannot hold zcp
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = parse_seconds)]
    pub timeout: u64,

    /// At the end, print one JSON object on one line to stderr (its last
    /// line) instead of the summary and the progress bar: status, exit
    /// code, bytes, rate and every entry with its digest (docs/JSON.md)
    #[arg(long)]
    pub json: bool,

    /// Write that JSON object to FILE instead (created or emptied first;
    /// with recv -k, one line per transfer); stderr stays as it is
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    pub json_file: Option<PathBuf>,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// How an end proves it knows the shared key. The key itself is never an
/// argument, so it cannot show in `ps`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Read the shared key from FILE (its bytes, without a final newline)
    /// instead of the ZCP_KEY environment variable. FILE must be yours and
    /// readable by you alone (mode 600 or 400)
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Do not authenticate: for trusted links only. An end that listens
    /// then serves anyone who can reach its port; both ends must use it
    #[arg(long, conflicts_with = "key_file")]
    pub no_auth: bool,
}

impl CommonArgs {
    pub fn handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout)
    }

    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// The two forms of `zcp send`, which clap cannot tell apart by itself
/// (see [`SendArgs::take_target`]).
const SEND_USAGE: &str = "\
zcp send [OPTIONS] <SOURCE>... <HOST:PORT>
       zcp send [OPTIONS] --listen <[ADDR:]PORT> <SOURCE>...";

#[derive(Debug, Args)]
#[command(override_usage = SEND_USAGE)]
pub struct SendArgs {
    /// Files (or, with -r, directories) to send, or `-` for stdin, then
    /// HOST:PORT, where `zcp recv` listens (HOST:PORT, IPV4:PORT or
    /// [IPV6]:PORT); with --listen every operand is a SOURCE. Each SOURCE
    /// arrives under its own name in DEST; a directory arrives as a tree
    /// under its name, and `.` (or a path ending in `/.`) as its contents
    #[arg(value_name = "SOURCE", required = true)]
    pub sources: Vec<PathBuf>,

    /// Where to connect: the last operand, which [`parse`] takes off
    /// `sources`; None with --listen.
    #[arg(skip)]
    pub target: Option<HostPort>,

    /// Listen on [ADDR:]PORT (without an address, all interfaces; port 0
    /// picks a free one, printed as `zcp: listening on ADDR:PORT`) and send
    /// to the first receiver that connects with `zcp recv --connect`, for
    /// when the sender is the reachable machine. Without ZCP_KEY or
    /// --key-file, prints a one-time key for the receiver
    #[arg(short, long, value_name = "[ADDR:]PORT", value_parser = net::parse_listen)]
    pub listen: Option<ListenSpec>,

    /// Name the receiver gives stdin (`-`) [default: stdin], or the one
    /// file sent [default: its file name]. May start with `-`
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub name: Option<OsString>,

    /// Send directories and everything in them
    #[arg(short, long)]
    pub recursive: bool,

    /// Follow symbolic links found inside directories and send what they
    /// point to (links named on the command line are always followed)
    #[arg(short = 'L', long)]
    pub dereference: bool,

    /// Ask the receiver not to replace anything that already exists there
    #[arg(short = 'n', long)]
    pub no_clobber: bool,

    /// Send at most RATE bytes (not bits) per second, e.g. 100M, 1G or
    /// 512K (powers of 1024; at least 1K). The kernel paces the socket
    /// (SO_MAX_PACING_RATE), so the bytes still move with sendfile/splice
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit: Option<u64>,

    /// Connect from this local address: an IPv4 or IPv6 address of this
    /// machine, without a port (the kernel picks one). With --listen, give
    /// the address there instead
    #[arg(long, value_name = "ADDR", value_parser = net::parse_bind, conflicts_with = "listen")]
    pub bind: Option<IpAddr>,

    /// Make large files resumable: they travel in verified 8 MiB blocks,
    /// and if the transfer breaks the receiver keeps what it verified
    /// (in a hidden .NAME.zcp-partial file beside the final name). A later
    /// `zcp send --resume` of the same, unchanged file to the same place
    /// sends only the blocks still missing
    #[arg(long)]
    pub resume: bool,

    /// After a dropped connection, connect again up to N times (waiting
    /// 1 s, 2 s, 4 s, ... up to 30 s between tries) and go on where the
    /// transfer stopped: files the receiver already verified are not sent
    /// again (implies --resume). Not for stdin or a fifo, nor with
    /// --listen
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,

    /// Move files larger than 8 MiB over N TCP connections at once (1 to
    /// 16), each with its own zero-copy path, with blocks hashed on every
    /// core at both ends. Only when this sender connects (not with
    /// --listen)
    #[arg(short = 'P', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    pub parallel: u8,

    /// Send the one SOURCE (a file, or `-` for stdin) as plain bytes, to
    /// a peer that speaks no zcp: `nc -l`, socat or `zcp recv --raw`. No
    /// handshake, key, name or checksum: nothing is verified. After the
    /// last byte zcp shuts down its side and waits for the peer to close
    /// (at most 5 s once the peer acknowledged every byte); a failure
    /// resets the connection instead, so the peer can tell
    #[arg(long, conflicts_with_all = [
        "recursive", "dereference", "name", "no_clobber", "resume", "retries",
        "parallel", "checksum", "timeout", "key_file", "no_auth", "json", "json_file",
    ])]
    pub raw: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl SendArgs {
    /// Without --listen, takes HOST:PORT off the end of the operands into
    /// `target`. Clap cannot do it: a positional after a variadic one must
    /// always be required, and with --listen there is none. Errors read as
    /// clap's own.
    fn take_target(&mut self) -> Result<(), clap::Error> {
        use clap::error::ErrorKind;
        if self.listen.is_some() {
            return Ok(());
        }
        // Clap makes sure there is at least one operand.
        let Some(last) = self.sources.pop() else {
            return Err(send_error(
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <SOURCE>...\n  <HOST:PORT>",
            ));
        };
        let Some(text) = last.to_str() else {
            return Err(send_error(
                ErrorKind::InvalidUtf8,
                "invalid UTF-8 was detected in <HOST:PORT>",
            ));
        };
        let target = net::parse_host_port(text).map_err(|why| {
            send_error(
                ErrorKind::ValueValidation,
                &format!("invalid value '{text}' for '<HOST:PORT>': {why}"),
            )
        })?;
        if self.sources.is_empty() {
            return Err(send_error(
                ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  <SOURCE>...",
            ));
        }
        self.target = Some(target);
        Ok(())
    }
}

/// An error about `zcp send`'s operands, as clap would report it.
fn send_error(kind: clap::error::ErrorKind, message: &str) -> clap::Error {
    let mut cmd = Cli::command();
    cmd.build();
    match cmd.find_subcommand_mut("send") {
        Some(send) => send.error(kind, message),
        None => cmd.error(kind, message),
    }
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Where to write: an existing directory, a file path (created or
    /// atomically replaced), or `-` for stdout
    #[arg(value_name = "DEST", default_value = ".")]
    pub dest: PathBuf,

    /// Address and port to listen on; without an address, all interfaces
    /// (IPv6 and IPv4). Port 0 picks a free port; the bound address is
    /// printed on stderr as `zcp: listening on ADDR:PORT`
    #[arg(
        short,
        long,
        value_name = "[ADDR:]PORT",
        value_parser = net::parse_listen,
        default_value = "7227"
    )]
    pub listen: ListenSpec,

    /// Connect to a sender that listens (`zcp send --listen`) at HOST:PORT,
    /// IPV4:PORT or [IPV6]:PORT instead of listening, for when the sender
    /// is the reachable machine; needs its key (ZCP_KEY or --key-file)
    #[arg(long, value_name = "HOST:PORT", value_parser = net::parse_host_port,
          conflicts_with_all = ["listen", "keep_open"])]
    pub connect: Option<HostPort>,

    /// With --connect: connect from this local address, an IPv4 or IPv6
    /// address of this machine, without a port (the kernel picks one)
    #[arg(long, value_name = "ADDR", value_parser = net::parse_bind)]
    pub bind: Option<IpAddr>,

    /// Flush each file and its directory to disk before reporting success
    #[arg(long)]
    pub fsync: bool,

    /// Never replace an existing file, link or directory entry in DEST:
    /// such entries are skipped (their bytes are still read off the
    /// connection) and reported; existing directories are still entered
    #[arg(short = 'n', long)]
    pub no_clobber: bool,

    /// Keep listening after a transfer and serve several senders at once
    /// (each transfer is reported on its own; stop with Ctrl-C)
    #[arg(short = 'k', long)]
    pub keep_open: bool,

    /// With --keep-open: how many connections are served at once; one more
    /// is told the receiver is busy
    #[arg(long, value_name = "N", default_value_t = 16, requires = "keep_open",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_connections: u16,

    /// Seconds the sender may stay silent during a transfer before the
    /// receiver gives up on it (the sender keeps an idle session alive on
    /// its own, so only a stuck or vanished sender hits this)
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = parse_seconds)]
    pub idle_timeout: u64,

    /// Take one plain TCP connection (from nc, socat or `zcp send --raw`)
    /// and write the bytes it carries to DEST, a file path or `-` for
    /// stdout. No handshake and no key: whoever connects first is served,
    /// and nothing is verified. The file appears under its name only when
    /// the sender closes the connection cleanly, as it also does when it
    /// stopped early; a reset leaves nothing
    #[arg(long, conflicts_with_all = [
        "keep_open", "max_connections", "checksum", "timeout", "key_file", "no_auth", "json",
        "json_file",
    ])]
    pub raw: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Size of the generated test file, e.g. 256M or 1G (binary units)
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub size: u64,

    /// Measured runs per case, after one warm-up; the median is reported
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,

    /// Directory for the test files [default: $TMPDIR or /tmp]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[arg(value_enum)]
    pub what: Artifact,
}

/// Files `zcp generate` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Artifact {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// Parses the command line. Help and version go to stdout (exit 0); any
/// usage error becomes one `zcp: error: ...` line (clap's tips appended to
/// it) and one hint line naming the right `--help`, with exit status 2.
pub fn parse() -> Result<Cli, Code> {
    use clap::error::ErrorKind;
    let parsed = Cli::try_parse().and_then(|mut cli| {
        if let Command::Send(args) = &mut cli.command {
            args.take_target()?;
        }
        Ok(cli)
    });
    let err = match parsed {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    let message = match err.kind() {
        ErrorKind::DisplayHelp => {
            let _ = err.print();
            return Err(Code::Success);
        }
        ErrorKind::DisplayVersion => {
            // One program, one name: clap would say `zcp-send 0.1.0`.
            println!("zcp {}", env!("CARGO_PKG_VERSION"));
            return Err(Code::Success);
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => "no command given: use send, recv or bench".to_string(),
        _ => one_line(&err.render().to_string()),
    };
    let sub = std::env::args_os().nth(1);
    let message = match sub {
        Some(ref sub) if sub == "recv" && err.kind() == ErrorKind::UnknownArgument => {
            sender_only(&err).map_or(message, str::to_string)
        }
        _ => match raw_conflict(&err) {
            Some(why) => format!("{message}: {why}"),
            None => message,
        },
    };
    let help = match sub {
        Some(sub) if ["send", "recv", "bench"].iter().any(|s| sub == *s) => {
            format!("zcp {} --help", sub.to_string_lossy())
        }
        _ => "zcp --help".to_string(),
    };
    eprintln!("zcp: error: {message}\nTry '{help}' for more information.");
    Err(Code::Usage)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_after_help_fits_80_columns() {
        for line in after_help().lines() {
            assert!(line.chars().count() <= 76, "too long for --help: {line:?}");
        }
    }
}
