//! Fault injection for the syscall wrappers, driven by the `ZCP_FAULT`
//! environment variable so the integration tests can reach fallback and
//! error paths of the real binary that no flag can reach.
//!
//! Syntax: a comma-separated list of `CALL=ERRNO[@N]`, for example
//! `ZCP_FAULT=sendfile=EINVAL` (the first sendfile call fails with EINVAL)
//! or `ZCP_FAULT=splice=EIO@3` (the third splice call fails with EIO).
//! Each rule fires once. CALL is one of the wrapper names in `sys`
//! (`sendfile`, `splice`, `tee`, `fallocate`, `rename`, `read`, `write`,
//! `open` for files opened during a tree walk, `tmpfile` and `link` for
//! the receiver's unnamed staged files, `openat2` for the receiver's
//! resolution of paths beneath DEST: its first call is the probe, so
//! `openat2=ENOSYS` makes the process walk one component at a time,
//! `pacing` for the sender's SO_MAX_PACING_RATE under `--limit`).
//! ERRNO may also be `EOF`: the call reports end of file instead of
//! failing (for `sendfile`: a source that shrank while being sent), or
//! `STOP`: the process stops itself with SIGSTOP just before the call and,
//! once continued (SIGCONT), makes the call as usual. A test waits until
//! `/proc/PID/stat` shows the state `T`, changes the world (for example
//! the file being sent), and continues zcp: a real race, made
//! deterministic.
//! An unparsable value is ignored with a warning; the variable is meant
//! for tests, not for users.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{Signal, raise};

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Fail(Errno),
    EndOfFile,
    Stop,
}

struct Rule {
    call: String,
    action: Action,
    nth: u64,
    seen: AtomicU64,
}

static RULES: OnceLock<Vec<Rule>> = OnceLock::new();

fn parse_errno(name: &str) -> Option<Errno> {
    Some(match name {
        "EINVAL" => Errno::EINVAL,
        "ENOSYS" => Errno::ENOSYS,
        "EOPNOTSUPP" | "ENOTSUP" => Errno::EOPNOTSUPP,
        "EPERM" => Errno::EPERM,
        "EIO" => Errno::EIO,
        "ENOSPC" => Errno::ENOSPC,
        "EFBIG" => Errno::EFBIG,
        "EACCES" => Errno::EACCES,
        "EPIPE" => Errno::EPIPE,
        "ECONNRESET" => Errno::ECONNRESET,
        "EXDEV" => Errno::EXDEV,
        "E2BIG" => Errno::E2BIG,
        "ENOPROTOOPT" => Errno::ENOPROTOOPT,
        _ => return None,
    })
}

fn parse(spec: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = item.split_once('=').and_then(|(call, rest)| {
            let (errno, nth) = match rest.split_once('@') {
                Some((e, n)) => (e, n.parse::<u64>().ok()?),
                None => (rest, 1),
            };
            Some(Rule {
                call: call.to_string(),
                action: match errno {
                    "EOF" => Action::EndOfFile,
                    "STOP" => Action::Stop,
                    _ => Action::Fail(parse_errno(errno)?),
                },
                nth: nth.max(1),
                seen: AtomicU64::new(0),
            })
        });
        match parsed {
            Some(rule) => rules.push(rule),
            None => eprintln!("zcp: warning: ignoring malformed ZCP_FAULT rule {item:?}"),
        }
    }
    rules
}

fn rules() -> &'static [Rule] {
    RULES.get_or_init(|| std::env::var("ZCP_FAULT").map(|s| parse(&s)).unwrap_or_default())
}

/// What a wrapper does instead of its syscall this time.
pub enum Injected {
    Nothing,
    EndOfFile,
}

/// Called by each wrapper before its syscall: fails with the configured
/// errno when this is the configured call number for `call` (or stops the
/// process there, see the module doc).
pub fn check(call: &str) -> io::Result<()> {
    check_or_eof(call).map(|_| ())
}

/// Like [`check`], for wrappers that can also report end of file.
pub fn check_or_eof(call: &str) -> io::Result<Injected> {
    for rule in rules().iter().filter(|r| r.call == call) {
        let n = rule.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if n != rule.nth {
            continue;
        }
        match rule.action {
            Action::Fail(errno) => return Err(io::Error::from_raw_os_error(errno as i32)),
            Action::EndOfFile => return Ok(Injected::EndOfFile),
            // SIGSTOP stops every thread of the process until SIGCONT;
            // then the call goes ahead (and later rules still count it).
            Action::Stop => raise(Signal::SIGSTOP).map_err(|e| io::Error::from_raw_os_error(e as i32))?,
        }
    }
    Ok(Injected::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_skips_garbage() {
        let rules = parse("sendfile=EINVAL, splice=EIO@3,bogus,tee=EWHAT,sendfile=EOF@2,sendfile=STOP@4");
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[2].action, Action::EndOfFile);
        assert_eq!(rules[0].call, "sendfile");
        assert_eq!(rules[0].action, Action::Fail(Errno::EINVAL));
        assert_eq!(rules[0].nth, 1);
        assert_eq!(rules[1].action, Action::Fail(Errno::EIO));
        assert_eq!(rules[1].nth, 3);
        assert_eq!(rules[3].action, Action::Stop);
        assert_eq!(rules[3].nth, 4);
    }
}
