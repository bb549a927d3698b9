//! `zcp recv` starts here: the destination, the key and what every
//! connection shares ([`Setup`]); then it either listens for senders
//! (listen.rs) or, with `--connect`, connects to a sender that listens
//! (connection.rs). `--raw` goes its own way (raw.rs).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Result;

use super::streams::Joins;
use super::{connection, listen};
use crate::checksum::Algorithm;
use crate::cli::RecvArgs;
use crate::dest::Destination;
use crate::engine::Policy;
use crate::error::{self, Code};
use crate::key::{self, Key};
use crate::progress::Verbosity;
use crate::protocol::auth::Approach;
use crate::report::{Closing, Facts, Role, Sink};
use crate::serve;
use crate::sys;

/// What every connection of one receiver shares.
pub struct Setup {
    pub dest: Destination,
    /// None under --no-auth.
    pub key: Option<Key>,
    pub umask: u32,
    pub fsync: bool,
    pub no_clobber: bool,
    pub algorithm: Algorithm,
    pub policy: Policy,
    pub verbosity: Verbosity,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Whether a progress bar may be drawn (not with concurrent sessions).
    pub bars: bool,
    /// Whether this receiver connected (and so proves first) or listens.
    pub approach: Approach,
    /// Sessions that take further streams (`send -P`), by token.
    pub joins: Arc<Joins>,
    /// A receiver serving one session: its listener, on which further
    /// streams of that session are accepted while it runs.
    pub listener: Option<TcpListener>,
    /// A receiver serving one session has started it: any other sender is
    /// told it is busy.
    pub serving: AtomicBool,
    /// `--json`: the report on stderr replaces the bar and the summary.
    pub json: bool,
    /// Sessions keep each entry's record for a JSON report.
    pub records: bool,
    /// Where a keep-open receiver writes each session's report (a
    /// receiver serving one transfer leaves it to `main`).
    pub sink: Option<Arc<Sink>>,
}

/// Receives, and leaves in `closing` the facts of the JSON report of the
/// transfer (a keep-open receiver writes one per session itself).
pub fn run(args: RecvArgs, closing: &mut Closing) -> Result<Code> {
    // umask(2) can only be read by changing it: do it before any thread.
    let umask = sys::read_umask();
    // A report inside a DEST directory is the user's choice; one that is
    // the DEST file would be replaced by what arrives.
    let dest_file: &[std::path::PathBuf] = if args.dest.is_dir() {
        &[]
    } else {
        std::slice::from_ref(&args.dest)
    };
    let sink = Sink::open(&args.common, dest_file)?;
    let mut facts = Facts::new(Role::Recv, args.common.checksum, 1);
    facts.peer = args.connect.as_ref().map(|t| t.to_string());
    closing.sink(sink.clone());
    closing.facts(facts);
    if args.bind.is_some() && args.connect.is_none() {
        // (clap's `requires` would not fire: --listen, which --connect
        // conflicts with, always has a value.)
        return Err(error::usage(
            "--bind needs --connect: a receiver that listens chooses its address with -l ADDR:PORT",
        ));
    }
    if args.raw {
        return super::raw::run(&args, umask);
    }
    let dest = Destination::resolve(&args.dest)?;
    if args.keep_open && matches!(dest, Destination::Stdout) {
        return Err(error::usage(
            "--keep-open cannot write to stdout: concurrent transfers would interleave (give a directory)",
        ));
    }
    sys::raise_open_file_limit();
    if let Some(target) = &args.connect {
        let key = key::for_connecting(&args.common.auth, "sender")?;
        if key.is_none() {
            eprintln!(
                "zcp: warning: --no-auth: nothing proves who the sender is, and anyone on the path could alter what arrives"
            );
        }
        let setup = setup(&args, dest, key, umask, Approach::Connected, sink.is_some());
        return connection::dial(&setup, target, args.bind, closing);
    }
    let (key, one_time) = key::for_listening(&args.common.auth)?;
    let (listener, local) = serve::bind(&args.listen)?;
    match &key {
        Some(k) if one_time => serve::announce(k, local, "receiver", "send with", |target| {
            format!("zcp send FILE... {target}")
        }),
        Some(_) => {}
        None => eprintln!("zcp: warning: --no-auth: anyone who can reach this port can write into the destination"),
    }
    let mut setup = setup(&args, dest, key, umask, Approach::Accepted, sink.is_some());
    if args.keep_open {
        // Each session writes its own report; ending with Ctrl-C, the
        // receiver has none to add.
        closing.sink(None);
        setup.sink = sink;
        listen::keep_open(listener, Arc::new(setup), usize::from(args.max_connections))
    } else {
        setup.listener = listener.try_clone().ok();
        listen::serve_one(&listener, &setup, closing)
    }
}

/// What every connection shares, from the command line.
fn setup(args: &RecvArgs, dest: Destination, key: Option<Key>, umask: u32, approach: Approach, records: bool) -> Setup {
    Setup {
        dest,
        key,
        umask,
        fsync: args.fsync,
        no_clobber: args.no_clobber,
        algorithm: args.common.checksum,
        policy: Policy::new(!args.common.no_zerocopy),
        verbosity: args.common.verbosity(),
        handshake_timeout: args.common.handshake_timeout(),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        bars: !args.keep_open && !args.common.json,
        approach,
        joins: Arc::default(),
        listener: None,
        serving: AtomicBool::new(false),
        json: args.common.json,
        records,
        sink: None,
    }
}
