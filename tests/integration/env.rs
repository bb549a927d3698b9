//! `TestEnv`: a temporary directory plus helpers that run the real `zcp`
//! binary. A receiver is started on port 0 and its announced address is
//! read from its first stderr line, so tests never guess ports or sleep to
//! synchronise. Every wait has a timeout and children are killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long any single zcp process may run in a test.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn zcp_path() -> &'static str {
    env!("CARGO_BIN_EXE_zcp")
}

/// The shared key every test process authenticates with, unless a test
/// says otherwise.
pub const TEST_KEY: &str = "zcp-test-key-0123456789abcdef";

/// A `zcp` command with a clean environment for the variables zcp reads;
/// both ends get [`TEST_KEY`] in ZCP_KEY.
pub fn zcp() -> Command {
    let mut c = Command::new(zcp_path());
    c.env_remove("ZCP_FAULT")
        .env_remove("ZCP_BLESS")
        .env("ZCP_KEY", TEST_KEY)
        .env("NO_COLOR", "1");
    c
}

/// Extra environment for a receiver, once per way it can resolve paths
/// beneath DEST: openat2 where the kernel has it, then the component walk
/// it falls back to without it (`ZCP_FAULT=openat2=ENOSYS`).
pub const RESOLVERS: [&[(&str, &str)]; 2] = [&[], &[("ZCP_FAULT", "openat2=ENOSYS")]];

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts the exit code, printing stderr when it differs.
    pub fn assert_code(&self, want: i32) -> &Self {
        assert_eq!(self.code(), want, "unexpected exit status; stderr:\n{}", self.stderr);
        self
    }

    /// Asserts stderr contains `needle`.
    pub fn assert_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// The lines of stderr starting with `zcp: error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("zcp: error:")).collect()
    }
}

fn collect<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Output collected as it comes, so a test can look at it while the
/// process runs.
type Live = Arc<Mutex<Vec<u8>>>;

fn collect_live<R: Read + Send + 'static>(mut r: R) -> (Live, JoinHandle<()>) {
    let live = Live::default();
    let theirs = Arc::clone(&live);
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => theirs.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    (live, handle)
}

/// Waits for `child` with the test deadline, killing it if it overstays.
pub fn wait_deadline(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running process whose output is being collected.
pub struct Running {
    pub child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<()>>,
    /// stderr lines read before the collector took over.
    head: String,
    /// stderr after `head`, as far as it has come.
    live: Live,
    what: String,
}

impl Running {
    /// Spawns `cmd` with stdout and stderr captured (stdin as configured).
    pub fn spawn(mut cmd: Command, what: &str) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning zcp");
        let stdout = child.stdout.take().map(collect);
        let (live, stderr) = collect_live(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr: Some(stderr),
            head: String::new(),
            live,
            what: what.to_string(),
        }
    }

    /// What the process printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        format!("{}{}", self.head, String::from_utf8_lossy(&self.live.lock().unwrap()))
    }

    /// Waits (polling, within the test deadline) until stderr satisfies
    /// `done`, and returns it; `what` says what is awaited, for the panic
    /// when the process exits (or the deadline passes) first.
    pub fn await_stderr(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            // Whether the process had exited before stderr was looked at:
            // then nothing more can come once the collector is done.
            let exited = self.child.try_wait().expect("try_wait").is_some()
                && self.stderr.as_ref().is_none_or(JoinHandle::is_finished);
            let text = self.stderr_so_far();
            if done(&text) {
                return text;
            }
            assert!(!exited, "{} exited without printing {what}:\n{text}", self.what);
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not print {what} within {DEADLINE:?}:\n{text}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// [`Running::await_stderr`] for `needle` appearing `n` times.
    pub fn await_stderr_count(&mut self, needle: &str, n: usize) -> String {
        self.await_stderr(&format!("{n} times {needle:?}"), |s| s.matches(needle).count() >= n)
    }

    /// Waits for the process and returns what it printed.
    pub fn finish(mut self) -> Finished {
        let status = wait_deadline(&mut self.child, &self.what);
        let stdout = self.stdout.take().map(|h| h.join().unwrap()).unwrap_or_default();
        if let Some(h) = self.stderr.take() {
            h.join().unwrap();
        }
        let stderr = self.stderr_so_far();
        Finished { status, stdout, stderr }
    }

    pub fn kill(&mut self, signal: i32) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits until the process has stopped itself (`ZCP_FAULT=CALL=STOP@N`):
    /// its state in `/proc/PID/stat` is `T`. Fails if it exits instead.
    pub fn stopped(mut self) -> Running {
        let stat = format!("/proc/{}/stat", self.child.id());
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            // "PID (COMM) STATE ...", where COMM may hold spaces and ')'.
            let state = text.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').next());
            if state == Some("T") {
                return self;
            }
            if self.child.try_wait().expect("try_wait").is_some() {
                let what = self.what.clone();
                let out = self.finish();
                panic!("{what} exited with {} before it stopped:\n{}", out.status, out.stderr);
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} did not stop within {DEADLINE:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Continues a stopped process (SIGCONT).
    pub fn resume(&mut self) {
        let status = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -CONT failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A zcp that announced where it listens: `zcp recv`, or `zcp send
/// --listen`.
pub struct Receiver {
    pub run: Running,
    /// The announced address, e.g. `127.0.0.1:40123` or `[::1]:40123`.
    pub addr: String,
}

impl Receiver {
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn finish(self) -> Finished {
        self.run.finish()
    }
}

/// Starts `cmd` (a `zcp recv ...` command) and reads its announced address.
pub fn start_receiver(mut cmd: Command) -> Receiver {
    cmd.stdin(Stdio::null());
    start_listening(cmd, "zcp recv")
}

/// Starts `cmd`, a zcp that listens (`what`: `zcp recv`, `zcp send
/// --listen`), with stdin as configured, and reads its announced address.
pub fn start_listening(cmd: Command, what: &str) -> Receiver {
    let (run, first) = start_announcing(cmd, what);
    let Some(addr) = first.trim_end().strip_prefix("zcp: listening on ") else {
        let out = run.finish();
        panic!("{what} did not announce itself: {first:?}\n{}", out.stderr);
    };
    Receiver {
        addr: addr.to_string(),
        run,
    }
}

/// Starts `cmd` with stdout and stderr captured (stdin as configured) and
/// returns it with the first line it printed on stderr, where a listening
/// process says where it listens.
pub fn start_announcing(mut cmd: Command, what: &str) -> (Running, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let stdout = child.stdout.take().map(collect);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first)
        .unwrap_or_else(|e| panic!("reading the first line of {what}: {e}"));
    let (live, stderr) = collect_live(err);
    let run = Running {
        child,
        stdout,
        stderr: Some(stderr),
        head: first.clone(),
        live,
        what: what.into(),
    };
    (run, first)
}

/// A temporary directory with `src/` and `dst/`.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new().prefix("zcp-test-").tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::create_dir(dir.path().join("dst")).unwrap();
        TestEnv { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn src(&self, name: &str) -> PathBuf {
        self.path("src").join(name)
    }

    pub fn dst(&self, name: &str) -> PathBuf {
        self.path("dst").join(name)
    }

    /// Writes `size` deterministic pseudo-random bytes to src/`name`.
    pub fn random_file(&self, name: &str, size: usize, seed: u64) -> PathBuf {
        let p = self.src(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        let mut state = seed | 1;
        let mut block = vec![0u8; 1 << 16];
        let mut left = size;
        while left > 0 {
            for chunk in block.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let bytes = state.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            let n = left.min(block.len());
            f.write_all(&block[..n]).unwrap();
            left -= n;
        }
        f.flush().unwrap();
        p
    }

    /// `zcp recv -l 127.0.0.1:0 ARGS...` in this env's directory.
    pub fn recv(&self, args: &[&str]) -> Receiver {
        self.recv_on("127.0.0.1:0", args)
    }

    pub fn recv_on(&self, listen: &str, args: &[&str]) -> Receiver {
        self.recv_with_env(listen, args, &[])
    }

    /// `zcp recv -l LISTEN ARGS...` with extra environment variables
    /// (`ZCP_FAULT`).
    pub fn recv_with_env(&self, listen: &str, args: &[&str], vars: &[(&str, &str)]) -> Receiver {
        let mut cmd = zcp();
        cmd.current_dir(self.dir.path())
            .arg("recv")
            .arg("-l")
            .arg(listen)
            .args(args)
            .envs(vars.iter().copied());
        start_receiver(cmd)
    }

    /// `zcp send ARGS... ADDR` with stdin from /dev/null.
    pub fn send(&self, args: &[&str], addr: &str) -> Finished {
        self.send_with_env(args, addr, &[])
    }

    /// [`TestEnv::send`] with extra environment variables (`ZCP_FAULT`).
    pub fn send_with_env(&self, args: &[&str], addr: &str, vars: &[(&str, &str)]) -> Finished {
        self.start_send(args, addr, vars, Stdio::null()).finish()
    }

    /// Starts `zcp send ARGS... ADDR` with extra environment variables and
    /// the given stdin, without waiting for it.
    pub fn start_send(&self, args: &[&str], addr: &str, vars: &[(&str, &str)], stdin: Stdio) -> Running {
        let mut cmd = zcp();
        cmd.current_dir(self.dir.path())
            .arg("send")
            .args(args)
            .arg(addr)
            .envs(vars.iter().copied())
            .stdin(stdin);
        Running::spawn(cmd, "zcp send")
    }

    /// `zcp send ARGS... - ADDR` reading stdin from a pipe the test holds.
    pub fn send_from_pipe(&self, args: &[&str], addr: &str) -> (Running, std::process::ChildStdin) {
        self.send_from_pipe_with_env(args, addr, &[])
    }

    /// [`TestEnv::send_from_pipe`] with extra environment variables.
    pub fn send_from_pipe_with_env(
        &self,
        args: &[&str],
        addr: &str,
        vars: &[(&str, &str)],
    ) -> (Running, std::process::ChildStdin) {
        let mut cmd = zcp();
        cmd.current_dir(self.dir.path())
            .arg("send")
            .args(args)
            .arg("-")
            .arg(addr)
            .envs(vars.iter().copied())
            .stdin(Stdio::piped());
        let mut run = Running::spawn(cmd, "zcp send -");
        let stdin = run.child.stdin.take().unwrap();
        (run, stdin)
    }

    /// Checks that the receiver at `addr` still serves a sender after
    /// turning another connection away: sends `alive` (from stdin, so src/
    /// stays as it was) with `args`, which must succeed.
    pub fn still_serving(&self, args: &[&str], addr: &str) {
        let mut all = vec!["--name", "alive"];
        all.extend_from_slice(args);
        let (tx, mut pipe) = self.send_from_pipe(&all, addr);
        pipe.write_all(b"alive\n").unwrap();
        drop(pipe);
        tx.finish().assert_code(0);
    }

    /// Lists a directory's entries, sorted.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Everything under `rel`, recursively and without following links,
    /// one line each: `dir/` for a directory, `link -> text` for a symbolic
    /// link, the path for anything else; sorted. A staged `.zcp-*.part`
    /// shows up.
    pub fn tree(&self, rel: &str) -> Vec<String> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let name = format!("{prefix}{}", e.file_name().to_string_lossy());
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                if meta.is_dir() {
                    out.push(format!("{name}/"));
                    walk(&e.path(), &format!("{name}/"), out);
                } else if meta.is_symlink() {
                    let text = std::fs::read_link(e.path()).unwrap();
                    out.push(format!("{name} -> {}", text.to_string_lossy()));
                } else {
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path(rel), "", &mut out);
        out.sort();
        out
    }
}

pub fn sha256_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts two files have the same bytes (by size and SHA-256).
pub fn assert_same_file(a: &Path, b: &Path) {
    let (ma, mb) = (std::fs::metadata(a).unwrap(), std::fs::metadata(b).unwrap());
    assert_eq!(ma.len(), mb.len(), "sizes differ: {a:?} vs {b:?}");
    assert_eq!(sha256_file(a), sha256_file(b), "contents differ: {a:?} vs {b:?}");
}

/// True when running as root (some cases need it and say so when skipped).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// True when IPv6 loopback is configured.
pub fn have_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// Prints a visible skip notice (shown with --nocapture and in failures).
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// The lines of `text` starting with `prefix`.
pub fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The warnings in `text`, except the one `--no-auth` always prints.
pub fn warnings(text: &str) -> Vec<&str> {
    lines_with(text, "zcp: warning:")
        .into_iter()
        .filter(|l| !l.starts_with("zcp: warning: --no-auth:"))
        .collect()
}

/// Asserts `line` holds every needle.
pub fn assert_holds(line: &str, needles: &[&str]) {
    for needle in needles {
        assert!(line.contains(needle), "{line:?} lacks {needle:?}");
    }
}

/// `out` printed exactly one warning (besides the one `--no-auth` always
/// prints), and it holds every needle.
pub fn assert_one_warning(out: &Finished, needles: &[&str]) {
    let warned = warnings(&out.stderr);
    assert_eq!(warned.len(), 1, "want exactly one warning:\n{}", out.stderr);
    assert_holds(warned[0], needles);
}

/// The one-time key a listening `end` ("receiver" or "sender") printed
/// in `text`: exactly one announcement, 16 random bytes in lowercase hex.
pub fn one_time_key(text: &str, end: &str) -> String {
    let prefix = format!("zcp: one-time key (valid until this {end} exits): ");
    let announced = lines_with(text, &prefix);
    assert_eq!(announced.len(), 1, "{text}");
    let key = announced[0].rsplit(' ').next().unwrap_or_default().to_string();
    assert!(
        key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "not 16 bytes in hex: {key:?}"
    );
    key
}
