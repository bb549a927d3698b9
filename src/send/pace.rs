//! `--limit`: the kernel paces the sender's socket at the rate asked for
//! (SO_MAX_PACING_RATE), whichever end connected; what `-v`, or a warning
//! when the kernel refuses, says about it.

use std::net::TcpStream;

use crate::display;
use crate::net;
use crate::progress::Reporter;

/// Sets the pacing rate on the session's connections, `rate` shared
/// between them (each gets an equal part), and returns it; a kernel that
/// refuses gets a warning and the transfer goes on unpaced (None). The
/// bar then shows the limit beside the achieved rate.
pub fn pace(socks: &[&TcpStream], rate: u64, reporter: &mut Reporter) -> Option<u64> {
    let shown = display::per_second(rate);
    let each = (rate / socks.len().max(1) as u64).max(1);
    let paced = socks.iter().try_fold(None, |_, sock| net::pace(sock, each));
    if socks.len() > 1 && paced.is_ok() {
        reporter.detail(format_args!(
            "pacing: each of the {} connections at {}",
            socks.len(),
            display::per_second(each)
        ));
    }
    match paced {
        Ok(kernel) => {
            let reports = match kernel {
                Some(k) if k != each => format!(" (the kernel reports {k} bytes/s)"),
                _ => String::new(),
            };
            reporter.detail(format_args!(
                "pacing: --limit {shown} ({rate} bytes/s) set with setsockopt(SO_MAX_PACING_RATE){reports}: \
                 the kernel's TCP pacing spaces the packets, the bytes move as without --limit"
            ));
            reporter.limited_to(rate);
            Some(rate)
        }
        Err(e) => {
            reporter.warn(format_args!(
                "--limit {shown}: the kernel refused setsockopt(SO_MAX_PACING_RATE): {e}; sending unpaced"
            ));
            None
        }
    }
}
