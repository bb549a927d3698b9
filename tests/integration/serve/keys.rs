//! The shared key: the one-time key a receiver without one prints, key
//! files, a sender without a key, `--no-auth` on one end or both, and the
//! key kept out of argv (what `ps` shows).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

use super::*;

const SIGINT: i32 = 2;

/// `zcp recv -l 127.0.0.1:0 ARGS...` with no ZCP_KEY in its environment.
fn recv_without_key(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = zcp();
    cmd.env_remove("ZCP_KEY")
        .current_dir(env.dir.path())
        .args(["recv", "-l", "127.0.0.1:0"])
        .args(args);
    cmd
}

/// `zcp send ARGS... ADDR` with ZCP_KEY set to `key`, or unset (None).
fn send_keyed(env: &TestEnv, args: &[&str], addr: &str, key: Option<&str>) -> Finished {
    let mut cmd = zcp();
    match key {
        Some(k) => cmd.env("ZCP_KEY", k),
        None => cmd.env_remove("ZCP_KEY"),
    };
    cmd.current_dir(env.dir.path())
        .arg("send")
        .args(args)
        .arg(addr)
        .stdin(Stdio::null());
    Running::spawn(cmd, "zcp send").finish()
}

/// Writes `key` and a newline to `name` in the test directory, with
/// permission bits `mode`.
fn key_file(env: &TestEnv, name: &str, key: &str, mode: u32) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(env.path(name))
        .unwrap();
    writeln!(f, "{key}").unwrap();
    // Whatever the umask.
    std::fs::set_permissions(env.path(name), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// The argv of a running process, as `ps` sees it.
fn argv(child: &std::process::Child) -> String {
    let raw = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Whether the environment of a running process holds ZCP_KEY=`key`.
fn environment_holds(child: &std::process::Child, key: &str) -> bool {
    let raw = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    raw.split(|b| *b == 0).any(|v| v == format!("ZCP_KEY={key}").as_bytes())
}

#[test]
fn a_receiver_without_a_key_prints_a_one_time_key_senders_can_use() {
    let env = TestEnv::new();
    env.random_file("f", 50_000, 1);
    let mut rx = start_receiver(recv_without_key(&env, &["-k", "dst"]));
    let text = rx
        .run
        .await_stderr("the command to paste", |s| s.contains("zcp: send with: "));
    let key = one_time_key(&text, "receiver");
    assert_eq!(
        lines_with(&text, "zcp: send with: "),
        [format!("zcp: send with: ZCP_KEY={key} zcp send FILE... {}", rx.addr)]
    );
    let shown = argv(&rx.run.child);
    assert!(shown.contains(" recv -l 127.0.0.1:0 "), "{shown}");
    assert!(!shown.contains(&key), "the receiver's argv shows the key: {shown}");

    // A sender with the key, held in the middle of its stream to look at it.
    let data = bytes(1 << 20, 1);
    let (tx, mut pipe) = env.send_from_pipe_with_env(&["--name", "piped"], &rx.addr, &[("ZCP_KEY", &key)]);
    pipe.write_all(&data).unwrap();
    assert!(environment_holds(&tx.child, &key));
    let shown = argv(&tx.child);
    assert!(shown.contains(" send --name piped - 127.0.0.1:"), "{shown}");
    assert!(!shown.contains(&key), "the sender's argv shows the key: {shown}");
    drop(pipe);
    tx.finish().assert_code(0);

    // Another key is turned away; the receiver goes on.
    send_keyed(&env, &["src/f"], &rx.addr, Some(WRONG_KEY))
        .assert_code(5)
        .assert_stderr("receiver: authentication failed: the sender's key is not this receiver's");
    // Its warning comes from the connection's own thread, which the
    // interruption below must not overtake.
    rx.run.await_stderr_count("; still listening", 1);
    // The key in a file nobody else may read works too.
    key_file(&env, "one-time.key", &key, 0o600);
    let by_file = ["--key-file", "one-time.key", "--name", "by-file", "src/f"];
    send_keyed(&env, &by_file, &rx.addr, None).assert_code(0);

    let out = interrupt(rx, SIGINT);
    assert_one_warning(
        &out,
        &[
            "connection from 127.0.0.1:",
            "authentication failed: the sender's key is not this receiver's",
            "still listening",
        ],
    );
    assert_eq!(out.error_lines(), ["zcp: error: interrupted"]);
    assert_eq!(env.tree("dst"), ["by-file", "piped"]);
    assert_eq!(std::fs::read(env.dst("piped")).unwrap(), data);
    assert_same_file(&env.src("f"), &env.dst("by-file"));
}

#[test]
fn a_sender_without_a_key_is_a_usage_error_naming_zcp_key() {
    let env = TestEnv::new();
    env.random_file("f", 1000, 2);
    let rx = env.recv(&["dst"]);
    let out = send_keyed(&env, &["src/f"], &rx.addr, None);
    out.assert_code(2)
        .assert_stderr("zcp: error: no key to authenticate with: set ZCP_KEY to the receiver's key");
    // It never connected: the receiver, which serves one sender, serves
    // the next one without a word about the first.
    env.still_serving(&[], &rx.addr);
    let rr = rx.finish();
    rr.assert_code(0);
    assert!(warnings(&rr.stderr).is_empty(), "{}", rr.stderr);
    assert_eq!(env.tree("dst"), ["alive"]);
}

#[test]
fn key_files_work_on_both_ends_unless_everyone_may_read_them() {
    let env = TestEnv::new();
    env.random_file("f", 70_000, 3);
    let key = "a-key-from-a-file-0123456789abcdef";
    key_file(&env, "private.key", key, 0o600);
    key_file(&env, "open.key", key, 0o644);
    let refused = "key file open.key may be read by others (mode 644): `chmod 600 open.key` first";

    // A receiver with the open file never listens.
    let cmd = recv_without_key(&env, &["--key-file", "open.key", "dst"]);
    let out = Running::spawn(cmd, "zcp recv").finish();
    out.assert_code(2).assert_stderr(refused);
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);

    let rx = start_receiver(recv_without_key(&env, &["-k", "--key-file", "private.key", "dst"]));
    send_keyed(&env, &["--name", "by-env", "src/f"], &rx.addr, Some(key)).assert_code(0);
    let by_file = ["--key-file", "private.key", "--name", "by-file", "src/f"];
    send_keyed(&env, &by_file, &rx.addr, None).assert_code(0);
    // A sender with the open file never connects, nor with a file its
    // group may read (as ssh, zcp wants the key its user's alone).
    let out = send_keyed(&env, &["--key-file", "open.key", "src/f"], &rx.addr, None);
    out.assert_code(2).assert_stderr(refused);
    key_file(&env, "group.key", key, 0o640);
    let out = send_keyed(&env, &["--key-file", "group.key", "src/f"], &rx.addr, None);
    out.assert_code(2)
        .assert_stderr("key file group.key may be read by others (mode 640)");

    let out = interrupt(rx, SIGINT);
    assert!(!out.stderr.contains("one-time key"), "{}", out.stderr);
    assert!(warnings(&out.stderr).is_empty(), "{}", out.stderr);
    assert_eq!(out.error_lines(), ["zcp: error: interrupted"]);
    assert_eq!(env.tree("dst"), ["by-env", "by-file"]);
    assert_same_file(&env.src("f"), &env.dst("by-env"));
    assert_same_file(&env.src("f"), &env.dst("by-file"));
}

#[test]
fn no_auth_must_be_on_both_ends() {
    let env = TestEnv::new();
    env.random_file("f", 70_000, 4);

    // A receiver with a key, a sender without.
    let mut rx = keep_open(&env, &[]);
    send_keyed(&env, &["--no-auth", "src/f"], &rx.addr, None)
        .assert_code(5)
        .assert_stderr(
            "receiver: authentication required: this receiver accepts only senders that know its key (set ZCP_KEY or --key-file on the sender); the sender runs with --no-auth",
        );
    rx.run.await_stderr_count("; still listening", 1);
    let out = interrupt(rx, SIGINT);
    assert_one_warning(&out, &["authentication required", "still listening"]);
    assert!(env.tree("dst").is_empty(), "{:?}", env.tree("dst"));

    // A receiver without, a sender with a key.
    let mut rx = keep_open(&env, &["--no-auth"]);
    env.send(&["src/f"], &rx.addr).assert_code(5).assert_stderr(
        "receiver: this receiver runs with --no-auth and cannot prove it knows the sender's key: use --no-auth on the sender too",
    );
    rx.run.await_stderr_count("; still listening", 1);
    assert!(env.tree("dst").is_empty(), "{:?}", env.tree("dst"));
    // Both without.
    send_keyed(&env, &["--no-auth", "src/f"], &rx.addr, None).assert_code(0);
    let out = interrupt(rx, SIGINT);
    assert_eq!(
        lines_with(&out.stderr, "zcp: warning: --no-auth: "),
        ["zcp: warning: --no-auth: anyone who can reach this port can write into the destination"]
    );
    assert_one_warning(&out, &["runs with --no-auth", "still listening"]);
    assert_eq!(env.tree("dst"), ["f"]);
    assert_same_file(&env.src("f"), &env.dst("f"));
}
