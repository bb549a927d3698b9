//! The command line as a user meets it: help, version, the exit-code
//! table, and the committed man page and completions, which must equal
//! what the binary generates now (`ZCP_BLESS=1 cargo test` rewrites them).

use std::path::Path;
use std::process::Stdio;

use crate::env::*;

fn output(args: &[&str]) -> Finished {
    let mut cmd = zcp();
    cmd.args(args).stdin(Stdio::null());
    Running::spawn(cmd, "zcp").finish()
}

#[test]
fn help_lists_both_modes_examples_and_exit_codes() {
    let out = output(&["--help"]);
    out.assert_code(0);
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "send",
        "recv",
        "bench",
        "Examples:",
        "Exit status:",
        "130",
        "tar c dir | zcp send -",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
    assert!(!text.contains("generate"), "the generate command is internal");
    for sub in ["send", "recv"] {
        let out = output(&[sub, "--help"]);
        out.assert_code(0);
        assert!(String::from_utf8(out.stdout).unwrap().contains("--no-zerocopy"));
    }
}

#[test]
fn help_fits_an_80_column_terminal_one_exit_status_per_line() {
    for args in [&["--help"][..], &["send", "--help"], &["recv", "-h"]] {
        let mut cmd = zcp();
        cmd.args(args).env("COLUMNS", "80").stdin(Stdio::null());
        let out = Running::spawn(cmd, "zcp").finish();
        out.assert_code(0);
        let text = String::from_utf8(out.stdout).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{args:?}: line too long: {line:?}");
        }
        let (_, tail) = text.split_once("Examples:\n").unwrap();
        let (examples, statuses) = tail.split_once("\n\nExit status:\n").unwrap();
        // Nothing wrapped: one line per example and per exit status.
        assert_eq!(examples.lines().count(), 13, "{args:?}:\n{examples}");
        let codes: Vec<&str> = statuses
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(
            codes,
            ["0", "1", "2", "3", "4", "5", "6", "130"],
            "{args:?}:\n{statuses}"
        );
    }
}

#[test]
fn version_is_the_package_version() {
    let out = output(&["--version"]);
    out.assert_code(0);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("zcp {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn generated_docs_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("ZCP_BLESS").is_some();
    let mut stale = Vec::new();
    for (what, rel) in [
        ("man", "man/zcp.1"),
        ("bash", "completions/zcp.bash"),
        ("zsh", "completions/_zcp"),
        ("fish", "completions/zcp.fish"),
    ] {
        let out = output(&["generate", what]);
        out.assert_code(0);
        assert!(!out.stdout.is_empty(), "empty {what} output");
        if what != "man" {
            // The internal command is not offered to users.
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains("subcmd__generate") && !text.contains("shell completion script"),
                "{what}"
            );
            assert!(text.contains("send") && text.contains("recv"), "{what}");
        }
        let path = root.join(rel);
        if bless {
            std::fs::write(&path, &out.stdout).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&out.stdout[..]) {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `ZCP_BLESS=1 cargo test generated_docs` and commit them"
    );
}

#[test]
fn the_man_synopsis_shows_option_values() {
    let out = output(&["generate", "man"]);
    out.assert_code(0);
    let man = String::from_utf8(out.stdout).unwrap();
    let (_, rest) = man.split_once(".SH SYNOPSIS\n").unwrap();
    let (synopsis, _) = rest.split_once(".SH ").unwrap();
    for needle in [
        r"[\fB\-l\fR|\fB\-\-listen\fR\ \fI[ADDR:]PORT\fR]",
        r"[\fB\-\-checksum\fR\ \fBsha256\fR|\fBblake3\fR|\fBnone\fR]",
        r"[\fB\-\-name\fR\ \fINAME\fR]",
        r"[\fB\-\-timeout\fR\ \fISECONDS\fR]",
        r"[\fB\-\-size\fR\ \fISIZE\fR]",
        r"\fISOURCE\fR... \fIHOST:PORT\fR",
        r"\fB\-l\fR|\fB\-\-listen\fR\ \fI[ADDR:]PORT\fR [\fIOPTIONS\fR] \fISOURCE\fR...",
        r"[\fB\-\-connect\fR\ \fIHOST:PORT\fR]",
        r"[\fIDEST\fR]",
    ] {
        assert!(synopsis.contains(needle), "SYNOPSIS lacks {needle:?}:\n{synopsis}");
    }
    assert!(!synopsis.contains("generate"), "{synopsis}");
}

#[test]
fn the_bash_completion_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(root.join("completions/zcp.bash"))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn bench_runs_on_its_own_without_a_key_in_the_environment() {
    // README's first command: `zcp bench` must work on a fresh machine,
    // where nobody has set ZCP_KEY.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = zcp();
    cmd.env_remove("ZCP_KEY")
        .args(["bench", "--size", "2M", "--runs", "1", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null());
    let out = Running::spawn(cmd, "zcp bench").finish();
    out.assert_code(0);
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &out.stderr;
    assert!(report.contains("compared byte for byte"), "{report}");
}

#[test]
fn every_command_names_itself_zcp_in_its_version() {
    for args in [
        &["--version"][..],
        &["-V"],
        &["send", "-V"],
        &["recv", "--version"],
        &["bench", "-V"],
    ] {
        let out = output(args);
        out.assert_code(0);
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("zcp {}\n", env!("CARGO_PKG_VERSION")),
            "{args:?}"
        );
    }
}
