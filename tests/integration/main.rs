//! The integration tests: one test binary that runs the real `zcp` binary
//! against itself over loopback, with real files in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_scripts;
mod bind;
mod changed;
mod checksum;
mod cli;
mod codes;
mod env;
mod failures;
mod fallback;
mod hostile;
mod json;
mod killed;
mod limits;
mod pace;
mod parallel;
mod peer;
mod proxy;
mod raw;
mod resume;
mod retry;
mod reverse;
mod serve;
mod transfer;
mod tree;
