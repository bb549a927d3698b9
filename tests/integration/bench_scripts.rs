//! The benchmark scripts' own checks (bench/tests: they parse their
//! switches, read strace summaries, draw the chart and judge targets
//! right, and the C reference copies a file), run here so that the one
//! test command covers them. No benchmark is run.

use std::path::Path;
use std::process::Command;

#[test]
fn the_benchmark_scripts_pass_their_own_checks() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "bench/tests"])
        .current_dir(repo)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs (the benchmark and its checks need it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench/tests failed:\n{stderr}");
    // unittest reports "Ran N tests"; zero would mean discovery found none.
    assert!(
        stderr.contains("Ran ") && !stderr.contains("Ran 0 tests"),
        "bench/tests ran nothing:\n{stderr}"
    );
}
