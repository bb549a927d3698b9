//! How clap's usage errors become zcp's one line: clap's message folded
//! with its tips, and, for options that belong to the other end, why.

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
