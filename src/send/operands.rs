//! The SOURCE operands of `zcp send`, checked and classified before any
//! connection is made: a missing file, a directory without `-r` or two
//! operands that would land under the same name fail at once, and nothing
//! is sent.
//!
//! Operands follow `cp -r` and `scp -r`: a file or directory arrives under
//! its own name; a trailing slash changes nothing; `.` (or a path ending
//! in `/.`) sends a directory's contents rather than the directory. Links
//! named on the command line are followed.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::source::Source;
use super::walk::Operand;
use crate::cli::SendArgs;
use crate::display;
use crate::error;
use crate::protocol::Name;

/// Classifies every operand, in order.
pub fn classify(args: &SendArgs) -> Result<Vec<Operand>> {
    if args.name.is_some() && args.sources.len() > 1 {
        return Err(error::usage("--name applies to a single SOURCE"));
    }
    if args.sources.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(error::usage("- (stdin) can be given only once"));
    }
    let mut operands = Vec::with_capacity(args.sources.len());
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    for path in &args.sources {
        let op = operand(path, args)?;
        let name = match &op {
            Operand::Stream(_, n) | Operand::File(_, n) | Operand::Dir(_, Some(n)) => Some(n.as_bytes().to_vec()),
            Operand::Dir(_, None) => None,
        };
        if let Some(name) = name
            && !names.insert(name.clone())
        {
            return Err(error::usage(format!(
                "two SOURCEs would arrive under the same name {}",
                display::escape_bytes(&name)
            )));
        }
        operands.push(op);
    }
    Ok(operands)
}

fn operand(path: &Path, args: &SendArgs) -> Result<Operand> {
    if path.as_os_str() == "-" {
        let source = Source::open(path, args.name.as_ref())?;
        let name = source.name.clone();
        return Ok(Operand::Stream(source, name));
    }
    let shown = display::path(path);
    let meta = std::fs::metadata(path).with_context(|| {
        // `zcp send --listen PORT FILE HOST:PORT`, as if it connected.
        let looks_like_target = path.to_str().is_some_and(|p| crate::net::parse_host_port(p).is_ok());
        if args.listen.is_some() && looks_like_target {
            format!("opening {shown} (with --listen every operand is a SOURCE: the receiver connects to this sender)")
        } else {
            format!("opening {shown}")
        }
    })?;
    if meta.is_dir() {
        if !args.recursive {
            return Err(error::usage(format!(
                "{shown} is a directory; use -r to send directories"
            )));
        }
        let name = match &args.name {
            Some(n) => Some(checked_name(n.as_bytes(), "--name: ")?),
            None => match top_name(path) {
                Some(n) => Some(checked_name(n, "")?),
                None => None,
            },
        };
        return Ok(Operand::Dir(path.to_path_buf(), name));
    }
    if meta.is_file() {
        let name = match &args.name {
            Some(n) => checked_name(n.as_bytes(), "--name: ")?,
            None => checked_name(
                top_name(path).with_context(|| format!("{shown} has no file name to send it under; use --name"))?,
                "",
            )?,
        };
        return Ok(Operand::File(PathBuf::from(path), name));
    }
    // A fifo, a character device, /dev/stdin: one stream.
    let source = Source::open(path, args.name.as_ref())?;
    let name = source.name.clone();
    Ok(Operand::Stream(source, name))
}

/// The SOURCE operands as messages name them before anything was sent:
/// `report.pdf`, `a.txt and b.txt`, `photos and 2 more` (`-` is stdin).
pub fn describe(sources: &[PathBuf]) -> String {
    let show = |p: &PathBuf| {
        if p.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            display::path(p)
        }
    };
    match sources {
        [] => "nothing".into(),
        [one] => show(one),
        [a, b] => format!("{} and {}", show(a), show(b)),
        [first, rest @ ..] => format!("{} and {} more", show(first), rest.len()),
    }
}

/// `prefix` names the option the name came from, if any.
fn checked_name(bytes: &[u8], prefix: &str) -> Result<Name> {
    Name::new(bytes).map_err(|e| {
        error::usage(format!(
            "{prefix}cannot send under the name {}: {}",
            display::escape_bytes(bytes),
            e.0
        ))
    })
}

/// The name an operand arrives under: its last component, ignoring
/// trailing slashes; None for `.`, `..`, `/` and paths ending in `/.` or
/// `/..`, whose contents arrive instead.
fn top_name(path: &Path) -> Option<&[u8]> {
    let mut bytes = path.as_os_str().as_bytes();
    while bytes.len() > 1 && bytes.ends_with(b"/") {
        bytes = &bytes[..bytes.len() - 1];
    }
    let last = match bytes.iter().rposition(|b| *b == b'/') {
        Some(i) => &bytes[i + 1..],
        None => bytes,
    };
    match last {
        b"" | b"." | b".." => None,
        name => Some(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_described_by_the_first_and_a_count() {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(describe(&paths(&["report.pdf"])), "report.pdf");
        assert_eq!(describe(&paths(&["-"])), "stdin");
        assert_eq!(describe(&paths(&["a", "b\nc"])), "a and b\\nc");
        assert_eq!(describe(&paths(&["photos/", "a", "b"])), "photos/ and 2 more");
    }

    #[test]
    fn trailing_slashes_do_not_change_the_name_and_dot_means_contents() {
        let name = |p: &str| top_name(Path::new(p)).map(|n| String::from_utf8_lossy(n).into_owned());
        assert_eq!(name("dir").as_deref(), Some("dir"));
        assert_eq!(name("a/dir/").as_deref(), Some("dir"));
        assert_eq!(name("a/dir//").as_deref(), Some("dir"));
        assert_eq!(name("/abs/file.txt").as_deref(), Some("file.txt"));
        assert_eq!(name("."), None);
        assert_eq!(name("a/."), None);
        assert_eq!(name("./"), None);
        assert_eq!(name(".."), None);
        assert_eq!(name("/"), None);
    }
}
