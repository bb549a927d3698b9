//! Where the shared key comes from: `--key-file`, `ZCP_KEY`, or (for the
//! end that listens, usually the receiver) a one-time key generated for
//! this run. Keys never come from argv, so they never show in `ps`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::AuthArgs;
use crate::display;
use crate::error::usage;

/// The environment variable that holds the key.
pub const ENV: &str = "ZCP_KEY";

/// Keys shorter than this draw a warning: an eavesdropper who records one
/// session can test guesses offline.
const SHORT_KEY: usize = 16;

/// Bytes of randomness in a one-time key (printed as twice as many hex
/// digits).
const ONE_TIME_BYTES: usize = 16;

/// Largest key file zcp reads.
const MAX_KEY_FILE: u64 = 4096;

/// A shared key. Its bytes are wiped when it is dropped.
pub struct Key {
    bytes: Vec<u8>,
    /// Where it came from, for messages ("ZCP_KEY", "key file F", ...).
    pub origin: String,
}

impl Key {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn new(bytes: Vec<u8>, origin: String) -> Result<Key> {
        if bytes.is_empty() {
            return Err(usage(format!("{origin} is empty")));
        }
        if bytes.len() < SHORT_KEY {
            eprintln!(
                "zcp: warning: {origin} is only {} bytes; anyone who records a session can guess it offline: use {SHORT_KEY} or more random characters (e.g. `openssl rand -hex 16`)",
                bytes.len()
            );
        }
        Ok(Key { bytes, origin })
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.bytes.fill(0);
    }
}

/// The key of an end that listens, or None under `--no-auth`, and whether
/// it is a one-time key made because none was given (the caller prints
/// it, with the command to paste on the other end).
pub fn for_listening(args: &AuthArgs) -> Result<(Option<Key>, bool)> {
    Ok(match choose(args)? {
        Some(k) => (Some(k), false),
        None if args.no_auth => (None, false),
        None => (Some(one_time()?), true),
    })
}

/// The key of an end that connects to a listening `other` (`receiver` or
/// `sender`), or None under `--no-auth`. Without any key it fails with a
/// usage error naming the ways to give one: only the listening end can
/// make a one-time key.
pub fn for_connecting(args: &AuthArgs, other: &str) -> Result<Option<Key>> {
    let key = choose(args)?;
    if key.is_none() && !args.no_auth {
        return Err(usage(format!(
            "no key to authenticate with: set {ENV} to the {other}'s key (a listening {other} without one prints a one-time key), use --key-file FILE, or --no-auth if the {other} runs with --no-auth"
        )));
    }
    Ok(key)
}

/// The key this end authenticates with, from --key-file or ZCP_KEY, or
/// None: under `--no-auth`, or when neither gives one.
fn choose(args: &AuthArgs) -> Result<Option<Key>> {
    if args.no_auth {
        return Ok(None);
    }
    if let Some(path) = &args.key_file {
        return read_file(path).map(Some);
    }
    match std::env::var_os(ENV) {
        Some(v) => {
            use std::os::unix::ffi::OsStringExt;
            Key::new(v.into_vec(), ENV.to_string()).map(Some)
        }
        None => Ok(None),
    }
}

/// A fresh random key for one run (of a listening end, or of `zcp
/// bench`), and its printable form (hex, which is also the key's bytes, so
/// it can be pasted into `ZCP_KEY`).
pub fn one_time() -> Result<Key> {
    let mut raw = [0u8; ONE_TIME_BYTES];
    crate::sys::random_bytes(&mut raw).context("generating a one-time key")?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    raw.fill(0);
    Ok(Key {
        bytes: hex.into_bytes(),
        origin: "the one-time key".into(),
    })
}

/// Reads a key file: its bytes without one trailing newline. Like ssh
/// with private keys, zcp refuses a file that group or others may read, or
/// that belongs to someone else (root's files excepted). The checks and the
/// read use the same open file, so the file cannot be swapped between them.
fn read_file(path: &Path) -> Result<Key> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let shown = display::path(path);
    let file = fs::File::open(path).with_context(|| format!("opening key file {shown}"))?;
    let meta = file.metadata().with_context(|| format!("reading key file {shown}"))?;
    if !meta.is_file() {
        return Err(usage(format!("key file {shown} is not a regular file")));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(usage(format!(
            "key file {shown} may be read by others (mode {:o}): `chmod 600 {shown}` first",
            meta.permissions().mode() & 0o777
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(usage(format!(
            "key file {shown} belongs to user {}, not to this user ({me})",
            meta.uid()
        )));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading key file {shown}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(usage(format!(
            "key file {shown} is larger than {MAX_KEY_FILE} bytes; is it the right file?"
        )));
    }
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Key::new(bytes, format!("key file {shown}"))
}
