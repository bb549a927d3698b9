//! Terminal-safe rendering of text zcp did not write itself: file names
//! (which may hold any byte but `/` and NUL) and messages from the peer.
//! Control characters, bidirectional overrides and zero-width characters
//! are escaped so a name cannot move the cursor, recolour the terminal or
//! hide what is being written; invalid UTF-8 is shown as `\xNN`.
//! Also formats byte counts and rates for humans.

use std::fmt::Write;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, embeddings, overrides
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, isolates
            | '\u{FEFF}')
}

/// Escapes `bytes` for display on one terminal line.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(bytes, true)
}

/// Escapes `bytes`; a backslash is doubled only if `backslash` is set.
fn escape(bytes: &[u8], backslash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' if backslash => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if needs_escape(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Escapes a raw string from the peer, such as its software name, for
/// display; messages it wrote for display go through [`peer_text`].
pub fn escape_text(s: &str) -> String {
    escape_bytes(s.as_bytes())
}

/// Makes a message the peer wrote for display (ERROR and VERDICT text)
/// safe to show, escaping it exactly once. zcp composes such messages
/// from names it has already escaped with [`escape_bytes`], so a
/// backslash in them is either the peer's own escape or an escaped
/// backslash: doubling it again would show a name holding a newline as
/// `a\\nb`. Only what could still drive the terminal is escaped here
/// (control characters, bidirectional and zero-width characters); a
/// hostile peer can print backslashes and ordinary text, as it
/// could anyway, but never a raw control byte.
pub fn peer_text(s: &str) -> String {
    escape(s.as_bytes(), false)
}

/// Escapes a local path for display.
pub fn path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(p.as_os_str().as_bytes())
}

/// `1.50 GiB`, `512 B`: binary units, three significant digits.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// Bytes per second over `seconds`, e.g. `1.02 GiB/s`.
pub fn rate(n: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".into();
    }
    let per_sec = n as f64 / seconds;
    format!("{}/s", bytes(per_sec as u64))
}

/// A rate given in bytes per second, e.g. `100.00 MiB/s`.
pub fn per_second(n: u64) -> String {
    format!("{}/s", bytes(n))
}

/// The achieved rate, and the `--limit` it was held to: `98.12 MiB/s`,
/// `98.12 MiB/s, limited to 100.00 MiB/s`.
pub fn rate_within(n: u64, seconds: f64, limit: Option<u64>) -> String {
    match limit {
        Some(l) => format!("{}, limited to {}", rate(n, seconds), per_second(l)),
        None => rate(n, seconds),
    }
}

/// A line in the format `sha256sum` prints and `sha256sum -c` reads:
/// `HEX  NAME`, with GNU's leading-backslash form when the name holds a
/// backslash or newline. Other control characters are escaped for safety,
/// which only such names make incompatible.
pub fn checksum_line(hex: &str, name: &[u8]) -> String {
    let special = name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'));
    let shown = escape_bytes(name);
    if special {
        format!("\\{hex}  {shown}")
    } else {
        format!("{hex}  {shown}")
    }
}

/// The `-v` line of a file that moved in blocks: its digest is not the
/// SHA-256 of the file, so it is not written as sha256sum writes one.
pub fn block_digest_line(digest: &crate::checksum::Digest, name: &[u8], block_size: u32) -> String {
    let tool = match digest.algorithm() {
        crate::checksum::Algorithm::Blake3 => "b3sum",
        _ => "sha256sum",
    };
    format!(
        "{}: file digest over {} blocks {} (not {tool}'s)",
        escape_bytes(name),
        bytes(u64::from(block_size)),
        digest.hex()
    )
}

/// Error chains are printed on one line; any newline that slipped into a
/// message (from the OS or a library) is escaped.
pub fn one_line(s: &str) -> String {
    s.replace('\n', "\\n").replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_drive_a_terminal() {
        assert_eq!(escape_bytes(b"plain name.txt"), "plain name.txt");
        assert_eq!(escape_bytes(b"a\x1b[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape_bytes(b"line\nbreak"), "line\\nbreak");
        assert_eq!(escape_bytes(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(escape_bytes("evil\u{202e}txt.exe".as_bytes()), "evil\\u{202e}txt.exe");
        assert_eq!(escape_bytes("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(escape_bytes(b"back\\slash"), "back\\\\slash");
    }

    #[test]
    fn peer_text_is_escaped_once() {
        // A name the peer already escaped keeps its single backslash.
        assert_eq!(
            peer_text("renaming onto a\\nb: Is a directory"),
            "renaming onto a\\nb: Is a directory"
        );
        assert_eq!(peer_text("quota \u{1b}[2J\nok\r"), "quota \\u{1b}[2J\\nok\\r");
        assert_eq!(peer_text("evil\u{202e}txt"), "evil\\u{202e}txt");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(1 << 30), "1.00 GiB");
        assert_eq!(per_second(100 << 20), "100.00 MiB/s");
        assert_eq!(rate_within(50 << 20, 1.0, None), "50.00 MiB/s");
        assert_eq!(
            rate_within(50 << 20, 1.0, Some(64 << 20)),
            "50.00 MiB/s, limited to 64.00 MiB/s"
        );
    }

    #[test]
    fn checksum_lines_follow_gnu_format() {
        assert_eq!(checksum_line("ab", b"f.bin"), "ab  f.bin");
        assert_eq!(checksum_line("ab", b"a\\b"), "\\ab  a\\\\b");
        assert_eq!(checksum_line("ab", b"a\nb"), "\\ab  a\\nb");
    }
}
