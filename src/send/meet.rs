//! How the sender meets its receiver: it connects to one that listens
//! (the usual way; from the `--bind` address when one is given), or, with
//! `--listen`, listens itself and takes the first receiver that connects
//! (`zcp recv --connect`) and completes the handshake. Either way the
//! session that follows is the same.
//!
//! A sender that connects may do so again after the connection broke
//! (`--retries`), with the same key and from the same address.
//!
//! A listening sender treats a connection that fails its handshake (not
//! zcp, a wrong key, too slow for `--timeout`) as a listening receiver
//! does: it warns and goes on listening, since nothing was sent.

use std::net::TcpStream;
use std::os::fd::AsFd;

use anyhow::{Context, Result};

use super::handshake::{Agreed, Offer, handshake};
use super::operands;
use super::streams::Stream;
use crate::cli::SendArgs;
use crate::error;
use crate::key::{self, Key};
use crate::net::{self, HostPort, ListenSpec};
use crate::progress::Reporter;
use crate::protocol::Blocks;
use crate::protocol::auth::Approach;
use crate::serve::{self, Ending};
use crate::sys::signals;

/// A receiver that accepted the session.
pub struct Met {
    pub sock: TcpStream,
    /// The receiver, for messages: as typed when we connected, its
    /// address when it connected to us.
    pub peer: String,
    pub agreed: Agreed,
    /// Further connections of this session (-P), after the first.
    pub streams: Vec<Stream>,
}

/// Block size this sender proposes.
pub const BLOCK_SIZE: u32 = 8 << 20;

/// What the sender asks for: block mode when resuming, retrying or
/// using several streams.
pub fn offer(args: &SendArgs) -> Offer {
    let resume = args.resume || args.retries > 0;
    Offer {
        algorithm: args.common.checksum,
        no_clobber: args.no_clobber,
        // A listening sender has one stream: -P alone changes nothing.
        blocks: (resume || args.parallel > 1 && args.listen.is_none()).then_some(Blocks {
            size: BLOCK_SIZE,
            resume,
            retry: args.retries > 0,
            streams: if args.listen.is_some() { 1 } else { args.parallel },
        }),
        join: None,
    }
}

/// The key a sender that connects proves itself with: None under
/// `--no-auth`, with a warning.
pub fn key(args: &SendArgs, reporter: &Reporter) -> Result<Option<Key>> {
    let key = key::for_connecting(&args.common.auth, "receiver")?;
    if key.is_none() {
        reporter.warn("--no-auth: nothing proves who the receiver is, and anyone on the path could alter what arrives");
    }
    Ok(key)
}

/// Connects to the receiver listening at `target`, with `key` (see
/// [`key`]).
pub fn connect(args: &SendArgs, target: &HostPort, key: Option<&Key>, reporter: &Reporter) -> Result<Met> {
    crate::sys::raise_open_file_limit();
    let peer = target.to_string();
    // Until the first entry goes out, errors name what could not be sent.
    let sending = || format!("sending {} to {peer}", operands::describe(&args.sources));
    let (sock, addr) = net::connect(target, args.bind).with_context(sending)?;
    let to = net::show_resolved(&peer, addr);
    match (args.bind, sock.local_addr()) {
        (Some(_), Ok(local)) => reporter.detail(format_args!(
            "connected to {to} from {} (--bind)",
            net::show_addr(local)
        )),
        _ => reporter.detail(format_args!("connected to {to}")),
    }
    let offer = offer(args);
    let agreed =
        handshake(&sock, &offer, key, Approach::Connected, args.common.handshake_timeout()).with_context(sending)?;
    let streams = match (agreed.session, agreed.blocks) {
        (Some(token), Some(blocks)) if blocks.streams > 1 => {
            let more = usize::from(blocks.streams - 1);
            let join = Offer {
                join: Some(token),
                ..offer
            };
            let mut opened = Vec::with_capacity(more);
            for _ in 0..more {
                match Stream::open(addr, args.bind, &join, key, args.common.handshake_timeout()) {
                    Ok(stream) => opened.push(stream),
                    // A busy receiver (--max-connections), a limit on
                    // connections: go on with the streams there are.
                    Err(e) => {
                        reporter.warn(format_args!(
                            "{}: going on with {} of the {} streams asked for (-P)",
                            crate::display::one_line(&format!("{e:#}")),
                            opened.len() + 1,
                            blocks.streams
                        ));
                        break;
                    }
                }
            }
            let n = opened.len() + 1;
            reporter.detail(format_args!("{n} stream{} to {to}", if n == 1 { "" } else { "s" }));
            opened
        }
        (_, Some(b)) if args.parallel > b.streams => {
            reporter.warn(format_args!(
                "the receiver takes {} of the {} streams asked for (-P)",
                b.streams, args.parallel
            ));
            Vec::new()
        }
        _ => Vec::new(),
    };
    Ok(Met {
        sock,
        peer,
        agreed,
        streams,
    })
}

/// `--listen`: binds `spec`, prints where (and the one-time key, when no
/// key was given), and waits for the first receiver that completes the
/// handshake. The listener closes once it is found.
pub fn listen(args: &SendArgs, spec: &ListenSpec, reporter: &Reporter) -> Result<Met> {
    let (key, one_time) = key::for_listening(&args.common.auth)?;
    crate::sys::raise_open_file_limit();
    let (listener, local) = serve::bind(spec)?;
    match &key {
        Some(k) if one_time => serve::announce(k, local, "sender", "receive with", |target| {
            format!("zcp recv --connect {target} DEST")
        }),
        Some(_) => {}
        None => eprintln!(
            "zcp: warning: --no-auth: anyone who can reach this port can receive the files, and anyone on the path could alter what arrives"
        ),
    }
    if args.parallel > 1 {
        reporter
            .warn("-P: a sender that listens uses one stream (further streams are opened by the end that connects)");
    }
    let timeout = args.common.handshake_timeout();
    serve::first(&listener, "a receiver", |sock, peer| {
        signals::wake_on_interrupt(sock.as_fd());
        let agreed = handshake(&sock, &offer(args), key.as_ref(), Approach::Accepted, timeout);
        signals::wake_nothing();
        match agreed {
            Ok(agreed) => {
                reporter.detail(format_args!("connection from {peer}"));
                Ending::Served(Ok(Met {
                    sock,
                    peer,
                    agreed,
                    streams: Vec::new(),
                }))
            }
            // The interruption shut the socket down: that is the reason.
            Err(_) if signals::interrupted() => Ending::Turned(error::interrupted_io().into()),
            Err(err) => Ending::Turned(err.context(format!("connection from {peer}"))),
        }
    })
}
