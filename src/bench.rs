//! `zcp bench`: placeholder.
use crate::cli::BenchArgs;
use crate::error::Code;
use anyhow::Result;
pub fn run(_args: BenchArgs) -> Result<Code> {
    Ok(Code::Success)
}
