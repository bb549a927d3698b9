//! How clap's usage errors become zcp's one line: clap's message folded
//! with its tips, and, for options that do not go together or belong to
//! the other end, why.

/// `zcp send` options a user may try on `zcp recv`, and why they belong
/// to the sender.
const SENDER_ONLY: [(&str, &str); 1] = [(
    "--limit",
    "--limit is a sender option: the kernel paces what a socket sends, and a receiver sends only verdicts; give --limit to zcp send",
)];

/// The explanation for an unknown `zcp recv` argument that is a sender
/// option (`--limit`, `--limit=...`).
pub(super) fn sender_only(err: &clap::Error) -> Option<&'static str> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
    SENDER_ONLY.iter().find(|(opt, _)| *opt == name).map(|(_, why)| *why)
}

/// Options that cannot go with `--raw`, and why: what they need is what
/// a plain byte stream leaves out.
const WITHOUT_RAW: [(&str, &str); 15] = [
    (
        "--json",
        "--raw writes no JSON report: it has no digest or entries to report; its exit status and summary line say how it went",
    ),
    (
        "--json-file",
        "--raw writes no JSON report: it has no digest or entries to report; its exit status and summary line say how it went",
    ),
    (
        "--checksum",
        "--raw verifies nothing: a plain byte stream carries no digest",
    ),
    ("--timeout", "--raw has no handshake to time"),
    ("--key-file", "--raw uses no key: it authenticates nobody"),
    ("--no-auth", "--raw has no handshake: it authenticates nobody anyway"),
    ("--keep-open", "--raw takes one connection, into one DEST"),
    ("--max-connections", "--raw takes one connection, into one DEST"),
    (
        "--recursive",
        "--raw sends one file or stdin; for a tree, send a stream: tar c DIR | zcp send --raw - HOST:PORT",
    ),
    (
        "--dereference",
        "--raw sends one file or stdin; for a tree, send a stream: tar c DIR | zcp send --raw - HOST:PORT",
    ),
    ("--name", "--raw sends no name: the receiving end names the file"),
    (
        "--no-clobber",
        "--raw asks the receiver nothing; give -n to zcp recv --raw",
    ),
    ("--resume", "--raw is one plain stream, with no blocks to resume"),
    (
        "--retries",
        "--raw is one plain stream: the peer could not tell a second connection from a new stream",
    ),
    ("--parallel", "--raw is one plain stream, on one connection"),
];

/// Why two options conflict, when one is `--raw` and the other is in
/// [`WITHOUT_RAW`].
pub(super) fn raw_conflict(err: &clap::Error) -> Option<&'static str> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::ArgumentConflict {
        return None;
    }
    let mut args = Vec::new();
    for kind in [ContextKind::InvalidArg, ContextKind::PriorArg] {
        match err.get(kind) {
            Some(ContextValue::String(arg)) => args.push(arg.as_str()),
            Some(ContextValue::Strings(more)) => args.extend(more.iter().map(String::as_str)),
            _ => {}
        }
    }
    // `--checksum <ALGORITHM>` names the option `--checksum`.
    let names: Vec<&str> = args.iter().filter_map(|a| a.split(' ').next()).collect();
    if !names.contains(&"--raw") {
        return None;
    }
    names
        .iter()
        .find_map(|name| WITHOUT_RAW.iter().find(|(opt, _)| opt == name).map(|(_, why)| *why))
}

/// Folds clap's rendered error into one line: the message (whose lines,
/// such as a list of missing arguments, are joined) and its tips, without
/// the usage and "for more information" paragraphs.
pub(super) fn one_line(rendered: &str) -> String {
    let mut paragraphs = rendered.split("\n\n");
    let mut line = paragraphs
        .next()
        .unwrap_or_default()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(rest) = line.strip_prefix("error: ") {
        line = rest.to_string();
    }
    for tip in paragraphs
        .flat_map(|p| p.lines())
        .filter_map(|l| l.trim().strip_prefix("tip: "))
    {
        line.push_str("; ");
        line.push_str(tip);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_fold_into_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <SOURCE>...\n  <HOST:PORT>\n\nUsage: zcp send <SOURCE>... <HOST:PORT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <SOURCE>... <HOST:PORT>"
        );
        let rendered = "error: unexpected argument '-d' found\n\n  tip: to pass '-d' as a value, use '-- -d'\n\nUsage: zcp send [OPTIONS] <SOURCE>... <HOST:PORT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "unexpected argument '-d' found; to pass '-d' as a value, use '-- -d'"
        );
    }
}
