//! zcp: copy files between Linux machines over TCP with zero-copy I/O and
//! end-to-end verification. This file only parses the command line,
//! dispatches to a mode, and turns the result into one error line, the
//! JSON report when one was asked for, and an exit code.

mod bench;
mod blockhash;
mod checksum;
mod cli;
mod dest;
mod display;
mod engine;
mod error;
mod frames;
mod generate;
mod key;
mod net;
mod progress;
mod protocol;
mod recv;
mod report;
mod send;
mod serve;
mod sys;
mod tally;

use std::process::ExitCode;

use crate::cli::Command;
use crate::error::Code;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code.exit(),
    };
    if let Err(e) = sys::signals::install() {
        eprintln!("zcp: warning: cannot install signal handlers: {e}");
    }
    let mut closing = report::Closing::default();
    let result = match cli.command {
        Command::Send(args) => send::run(args, &mut closing),
        Command::Recv(args) => recv::run(args, &mut closing),
        Command::Bench(args) => bench::run(args),
        Command::Generate(args) => generate::run(args.what).map(|()| Code::Success),
    };
    closing.conclude(&result).exit()
}
