//! `zcp bench`: a loopback self-test that a new user can run anywhere. It
//! generates a test file, then runs this very binary as a real receiver and
//! sender on 127.0.0.1 for three cases (default, `--checksum none`,
//! `--no-zerocopy`), one warm-up plus N measured runs each, interleaved so
//! that a slow phase of the machine hits every case alike. Every output is
//! compared byte for byte with the source. It prints throughput and the CPU
//! time of each end per GiB, as medians with their spread.
//!
//! The comparison with other tools (nc, ...) lives in bench/compare.sh.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cli::BenchArgs;
use crate::display;
use crate::error::Code;
use crate::key;
use crate::sys::{self, IoBuf};

/// One configuration to measure.
struct Case {
    label: &'static str,
    flags: &'static [&'static str],
}

const CASES: [Case; 4] = [
    Case {
        label: "default (sha256)",
        flags: &[],
    },
    Case {
        label: "--checksum none",
        flags: &["--checksum", "none"],
    },
    Case {
        label: "--no-zerocopy",
        flags: &["--no-zerocopy"],
    },
    Case {
        label: "--checksum blake3",
        flags: &["--checksum", "blake3"],
    },
];

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    send_cpu: f64,
    recv_cpu: f64,
}

pub fn run(args: BenchArgs) -> Result<Code> {
    let exe = std::env::current_exe().context("locating the zcp binary")?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("zcp-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a work directory in {}", display::path(&base)))?;
    let source = work.path().join("payload.bin");
    let dst = work.path().join("dst");
    std::fs::create_dir(&dst)?;

    eprintln!(
        "zcp bench: writing a {} test file in {}",
        display::bytes(args.size),
        display::path(work.path())
    );
    generate(&source, args.size)?;

    let key = key::one_time()?;
    let key = OsStr::from_bytes(key.bytes()).to_os_string();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); CASES.len()];
    for round in 0..=args.runs {
        for (i, case) in CASES.iter().enumerate() {
            let sample = transfer(&exe, case, &source, &dst, &key)?;
            verify(&source, &dst.join("payload.bin"))
                .with_context(|| format!("checking the output of the {} case", case.label))?;
            // Round 0 is the warm-up and is not reported.
            if round > 0 {
                samples[i].push(sample);
            }
        }
        if std::io::stderr().is_terminal() {
            eprint!("\rzcp bench: round {round}/{} done", args.runs);
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    print_table(&args, &samples);
    Ok(Code::Success)
}

/// Writes `size` bytes of xorshift output: incompressible and quick.
fn generate(path: &Path, size: u64) -> Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", display::path(path)))?;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left).unwrap_or(block.len()).min(block.len());
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Starts a receiver and returns it with the address it announced.
fn start_receiver(exe: &Path, case: &Case, dst: &Path, key: &OsStr) -> Result<(Child, String)> {
    let mut child = Command::new(exe)
        .env(key::ENV, key)
        .args(["recv", "-q", "-l", "127.0.0.1:0"])
        .args(case.flags)
        .arg(dst)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the receiver")?;
    let mut err = BufReader::new(child.stderr.take().context("receiver stderr")?);
    let mut line = String::new();
    err.read_line(&mut line)?;
    let Some(addr) = line.trim_end().strip_prefix("zcp: listening on ") else {
        let _ = child.kill();
        bail!("the receiver did not start: {}", line.trim_end());
    };
    let addr = addr.to_string();
    // Keep draining stderr so the receiver can never block on it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        if !rest.is_empty() {
            eprint!("{rest}");
        }
    });
    Ok((child, addr))
}

/// Reaps `child` and returns the CPU time it used.
fn reap(mut child: Child, what: &str) -> Result<f64> {
    let before = sys::children_cpu_time();
    let status = child.wait()?;
    let cpu = sys::children_cpu_time().saturating_sub(before);
    if !status.success() {
        bail!("the {what} failed ({status})");
    }
    Ok(cpu.as_secs_f64())
}

/// One transfer of `source` into `dst`, both ends authenticating with
/// `key` as users' transfers do.
fn transfer(exe: &Path, case: &Case, source: &Path, dst: &Path, key: &OsStr) -> Result<Sample> {
    let (mut receiver, addr) = start_receiver(exe, case, dst, key)?;
    let started = Instant::now();
    let sent = Command::new(exe)
        .env(key::ENV, key)
        .args(["send", "-q"])
        .args(case.flags)
        .arg(source)
        .arg(&addr)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the sender")
        .and_then(|sender| reap(sender, "sender"));
    let send_cpu = match sent {
        Ok(cpu) => cpu,
        Err(e) => {
            // A receiver whose sender failed keeps listening: end it.
            let _ = receiver.kill();
            let _ = receiver.wait();
            return Err(e);
        }
    };
    let recv_cpu = reap(receiver, "receiver")?;
    Ok(Sample {
        wall: started.elapsed().as_secs_f64(),
        send_cpu,
        recv_cpu,
    })
}

/// Compares two files byte for byte.
fn verify(a: &Path, b: &Path) -> Result<()> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (IoBuf::new(1 << 20), IoBuf::new(1 << 20));
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            bail!("{} differs from {}", display::path(b), display::path(a));
        }
        if n == 0 {
            return Ok(());
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn print_table(args: &BenchArgs, samples: &[Vec<Sample>]) {
    let gib = args.size as f64 / f64::from(1u32 << 30);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "zcp bench: {} over 127.0.0.1, {cpus} CPUs, median of {} runs after a warm-up\n",
        display::bytes(args.size),
        args.runs
    );
    println!("{:<18}  {:<18}  CPU-s/GiB send + recv", "case", "GiB/s (min-max)");
    let mut rates = Vec::new();
    let mut cpus_per_gib = Vec::new();
    for (case, runs) in CASES.iter().zip(samples) {
        let rate: Vec<f64> = runs.iter().map(|s| gib / s.wall).collect();
        let (lo, hi) = rate
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let send = median(runs.iter().map(|s| s.send_cpu / gib).collect());
        let recv = median(runs.iter().map(|s| s.recv_cpu / gib).collect());
        let r = median(rate);
        let rate_col = format!("{r:.2} ({lo:.2}-{hi:.2})");
        println!(
            "{:<18}  {rate_col:<18}  {send:.2} + {recv:.2} = {:.2}",
            case.label,
            send + recv
        );
        rates.push(r);
        cpus_per_gib.push(send + recv);
    }
    if rates[2] > 0.0 && cpus_per_gib[0] > 0.0 {
        println!(
            "\nzero-copy against --no-zerocopy: {:.2}x the throughput verified, {:.2}x unverified; \
             {:.2}x the CPU per GiB (verified)",
            rates[0] / rates[2],
            rates[1] / rates[2],
            cpus_per_gib[0] / cpus_per_gib[2]
        );
    }
    if rates[0] > 0.0 && cpus_per_gib[0] > 0.0 {
        println!(
            "blake3 against sha256: {:.2}x the throughput, {:.2}x the CPU per GiB",
            rates[3] / rates[0],
            cpus_per_gib[3] / cpus_per_gib[0]
        );
    }
    println!(
        "peak RSS of the largest zcp process: {}; every output was compared byte for byte with the source",
        display::bytes(sys::children_max_rss_kib() * 1024)
    );
}
