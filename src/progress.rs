//! Everything zcp prints on stderr besides errors: the progress bar, `-v`
//! detail lines, warnings and the one-line summary (which `--json`
//! replaces). Lines printed while a bar is drawn go through it, so they
//! never tear.
//!
//! The bar is drawn only when stderr is a terminal and `-q` is absent, and
//! is advanced with the byte counts the syscalls return: it never sits on
//! the data path. It uses no colours.

use std::fmt::Display;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How chatty to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Prints progress and messages for one side of a transfer.
#[derive(Clone)]
pub struct Reporter {
    verbosity: Verbosity,
    bar: Option<ProgressBar>,
    /// False where several transfers share the terminal (recv -k).
    bars: bool,
    /// Shown after the bar's rate: `(limited to 100.00 MiB/s)`.
    rate_note: Option<String>,
    /// False when the JSON report takes the summary's place (`--json`).
    summary: bool,
}

const KNOWN_TEMPLATE: &str = "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}";
/// The rate in both templates; a `--limit` note goes after it.
const RATE: &str = "{binary_bytes_per_sec}";
const STREAM_TEMPLATE: &str = "{prefix} {spinner} {bytes} {binary_bytes_per_sec} {elapsed} {wide_msg}";

impl Reporter {
    pub fn new(verbosity: Verbosity) -> Reporter {
        Reporter {
            verbosity,
            bar: None,
            bars: true,
            rate_note: None,
            summary: true,
        }
    }

    /// A reporter that prints lines but never draws a bar.
    pub fn without_bar(verbosity: Verbosity) -> Reporter {
        Reporter {
            verbosity,
            bar: None,
            bars: false,
            rate_note: None,
            summary: true,
        }
    }

    /// The reporter for `--json`, whose report on stderr takes the place
    /// of the bar and the summary: a `without_bar` reporter with `json`,
    /// else `self`.
    pub fn for_json(self, json: bool) -> Reporter {
        if !json {
            return self;
        }
        Reporter {
            verbosity: self.verbosity,
            bar: None,
            bars: false,
            rate_note: self.rate_note.clone(),
            summary: false,
        }
    }

    /// Says on the bar that the rate is held to `limit` bytes per second
    /// (call before [`Reporter::start`]).
    pub fn limited_to(&mut self, limit: u64) {
        self.rate_note = Some(format!("(limited to {})", crate::display::per_second(limit)));
    }

    /// `template` with the rate note after the rate.
    fn template(&self, template: &str) -> String {
        match &self.rate_note {
            Some(note) => template.replace(RATE, &format!("{RATE} {note}")),
            None => template.to_string(),
        }
    }

    fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Whether `-v` lines are shown: callers check it before computing
    /// a detail that costs something per file.
    pub fn verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// A `-v` line.
    pub fn detail(&self, msg: impl Display) {
        if self.verbosity == Verbosity::Verbose {
            self.print(&format!("zcp: {msg}"));
        }
    }

    /// A line shown unless `-q` (summaries, notices).
    pub fn note(&self, msg: impl Display) {
        if self.verbosity != Verbosity::Quiet {
            self.print(&format!("zcp: {msg}"));
        }
    }

    /// The closing summary of a transfer: a [`Reporter::note`], unless
    /// the JSON report takes its place.
    pub fn summary(&self, msg: impl Display) {
        if self.summary {
            self.note(msg);
        }
    }

    /// A raw line for `-v` without the `zcp:` prefix (sha256sum format).
    pub fn detail_raw(&self, line: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.print(line);
        }
    }

    /// A warning: something was left out on purpose.
    pub fn warn(&self, msg: impl Display) {
        if self.verbosity != Verbosity::Quiet {
            self.print(&format!("zcp: warning: {msg}"));
        }
    }

    /// An error that does not end the process (one entry failed);
    /// same format as the one `main` prints.
    pub fn error(&self, msg: impl Display) {
        self.print(&format!("zcp: error: {msg}"));
    }

    /// Starts a bar for `label`; `total` is None for a stream.
    pub fn start(&mut self, label: &str, total: Option<u64>) {
        if !self.bars || self.verbosity == Verbosity::Quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let (bar, template) = match total {
            Some(n) => (
                ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                KNOWN_TEMPLATE,
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                STREAM_TEMPLATE,
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(&self.template(template)) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    /// Names the entry being moved (escaped) next to the bar.
    pub fn current(&self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_string());
        }
    }

    /// True when a bar is drawn (stderr is a terminal, no -q).
    pub fn has_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Grows the bar's total by `n` bytes, as a walk discovers files.
    pub fn grow(&self, n: u64) {
        if let Some(bar) = &self.bar {
            let total = bar.length().unwrap_or(0) + n;
            self.set_total(total);
        }
    }

    /// Sets the bar's total (a spinner becomes a bar).
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            if bar.length().is_none()
                && let Ok(style) = ProgressStyle::with_template(&self.template(KNOWN_TEMPLATE))
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_length(total);
        }
    }

    /// Advances the bar by `n` bytes.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Removes the bar (the summary line replaces it).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_shows_after_the_rate() {
        let mut r = Reporter::new(Verbosity::Normal);
        assert_eq!(r.template(KNOWN_TEMPLATE), KNOWN_TEMPLATE);
        r.limited_to(100 << 20);
        let t = r.template(STREAM_TEMPLATE);
        assert!(
            t.contains("{binary_bytes_per_sec} (limited to 100.00 MiB/s) {elapsed}"),
            "{t}"
        );
        assert!(ProgressStyle::with_template(&r.template(KNOWN_TEMPLATE)).is_ok());
    }
}
