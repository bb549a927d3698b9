//! `--json` and `--json-file`: the report both ends write, parsed as JSON
//! from the real binary's stderr (its last line) or file, and checked
//! against the files themselves: digests computed here, byte counts,
//! statuses that agree with the exit code, the mechanism each end used,
//! names that are not UTF-8, and a transfer that never connected.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use serde_json::Value;

use crate::env::*;

/// The report on the last line of `out`'s stderr, whose status and exit
/// code must be those of the process.
fn report(out: &Finished) -> Value {
    let last = out.stderr.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line of stderr is not JSON ({e}):\n{}", out.stderr));
    assert_eq!(v["exit_code"], out.code(), "{v}");
    assert_eq!(v["schema"], 1);
    assert!(v["status"].is_string(), "{v}");
    v
}

/// The one element of `v["files"]` named `name`.
fn entry<'a>(v: &'a Value, name: &str) -> &'a Value {
    let files = v["files"].as_array().expect("files is an array");
    let found: Vec<&Value> = files.iter().filter(|f| f["name"] == name).collect();
    assert_eq!(found.len(), 1, "want one entry {name:?} in {v}");
    found[0]
}

fn b3(path: &std::path::Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string()
}

/// Sends src/`name` with `extra` on both ends, both with --json; returns
/// the sender's and the receiver's report.
fn both(env: &TestEnv, name: &str, extra: &[&str], send_extra: &[&str]) -> (Value, Value) {
    let mut r = vec!["--json"];
    r.extend_from_slice(extra);
    r.push("dst");
    let rx = env.recv(&r);
    let mut s = vec!["--json"];
    s.extend_from_slice(extra);
    s.extend_from_slice(send_extra);
    let src = format!("src/{name}");
    s.push(&src);
    let tx = env.send(&s, &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0);
    rr.assert_code(0);
    // The report replaces the summary.
    assert!(!tx.stderr.contains("zcp: sent "), "{}", tx.stderr);
    assert!(!rr.stderr.contains("zcp: received "), "{}", rr.stderr);
    (report(&tx), report(&rr))
}

#[test]
fn a_file_is_reported_by_both_ends_with_its_digest_and_mechanism() {
    let env = TestEnv::new();
    let size = (3 << 20) + 5;
    env.random_file("f.bin", size, 301);
    let want = sha256_file(&env.src("f.bin"));
    for (extra, sender, receiver) in [
        (&[][..], "sendfile", "splice"),
        (&["--no-zerocopy"][..], "read/write", "read/write"),
    ] {
        let _ = std::fs::remove_file(env.dst("f.bin"));
        let (tx, rx) = both(&env, "f.bin", extra, &[]);
        for (v, role, mechanism) in [(&tx, "send", sender), (&rx, "recv", receiver)] {
            assert_eq!(v["role"], role);
            assert_eq!(v["status"], "success");
            assert_eq!(v["error"], Value::Null);
            assert_eq!(v["algorithm"], "sha256");
            assert_eq!(v["verified"], true);
            assert_eq!(v["bytes"], size);
            assert_eq!(v["counts"]["files"], 1);
            assert_eq!(v["counts"]["committed"], 1);
            assert_eq!(v["zcp"], env!("CARGO_PKG_VERSION"));
            assert!(v["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{v}");
            let f = entry(v, "f.bin");
            assert_eq!(f["type"], "file");
            assert_eq!(f["status"], "committed");
            assert_eq!(f["bytes"], size);
            assert_eq!(f["digest"], want.as_str());
            assert_eq!(f["algorithm"], "sha256");
            assert_eq!(f["digest_kind"], "whole");
            assert_eq!(f["mechanism"], mechanism, "{role} {extra:?}");
            assert_eq!(f["error"], Value::Null);
        }
        let key = if extra.is_empty() { "sendfile" } else { "read_write" };
        assert_eq!(tx["mechanism"][key], size, "{tx}");
        assert_same_file(&env.src("f.bin"), &env.dst("f.bin"));
    }
}

#[test]
fn a_tree_with_a_failing_entry_is_partial_and_names_it() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    for name in ["1", "2", "3"] {
        std::fs::write(env.src("t").join(name), name.repeat(100)).unwrap();
    }
    env.random_file("t/sub/big", 300_000, 302);
    std::os::unix::fs::symlink("1", env.src("t/link")).unwrap();
    let rx = env.recv(&["--json", "dst"]);
    let tx = env.send_with_env(&["--json", "-r", "src/t"], &rx.addr, &[("ZCP_FAULT", "open=EACCES@2")]);
    let rr = rx.finish();
    tx.assert_code(4);
    rr.assert_code(4);
    for v in [report(&tx), report(&rr)] {
        assert_eq!(v["status"], "partial", "{v}");
        assert_eq!(v["error"], Value::Null, "a transfer that ran to its end");
        assert_eq!(v["counts"]["failed"], 1, "{v}");
        assert_eq!(v["counts"]["dirs"], 2, "{v}");
        assert_eq!(v["counts"]["links"], 1, "{v}");
        assert_eq!(v["files"].as_array().unwrap().len(), 7, "{v}");
        let failed = entry(&v, "t/2");
        assert_eq!(failed["status"], "failed");
        assert!(
            failed["error"]
                .as_str()
                .is_some_and(|e| e.contains("Permission denied")),
            "{failed}"
        );
        assert_eq!(failed["digest"], Value::Null);
        for name in ["t/1", "t/3", "t/sub/big"] {
            let f = entry(&v, name);
            assert_eq!(f["status"], "committed", "{f}");
            assert_eq!(f["digest"], sha256_file(&env.path(&format!("src/{name}"))).as_str());
        }
        assert_eq!(entry(&v, "t")["type"], "dir");
        assert_eq!(entry(&v, "t/sub")["digest"], Value::Null);
        assert_eq!(entry(&v, "t/link")["type"], "symlink");
    }
    assert!(!env.dst("t/2").exists());
}

#[test]
fn blake3_and_none_are_reported_as_such() {
    let env = TestEnv::new();
    env.random_file("f.bin", 200_000, 303);
    let (tx, rx) = both(&env, "f.bin", &["--checksum", "blake3"], &[]);
    for v in [&tx, &rx] {
        assert_eq!(v["algorithm"], "blake3");
        assert_eq!(v["verified"], true);
        let f = entry(v, "f.bin");
        assert_eq!(f["digest"], b3(&env.src("f.bin")).as_str());
        assert_eq!(f["algorithm"], "blake3");
    }

    std::fs::remove_file(env.dst("f.bin")).unwrap();
    let (tx, rx) = both(&env, "f.bin", &["--checksum", "none"], &[]);
    for v in [&tx, &rx] {
        assert_eq!(v["algorithm"], "none");
        assert_eq!(v["verified"], false, "nothing was verified");
        assert_eq!(v["status"], "success");
        let f = entry(v, "f.bin");
        assert_eq!(f["status"], "committed");
        assert_eq!(f["digest"], Value::Null);
        assert_eq!(f["algorithm"], Value::Null);
        assert_eq!(f["digest_kind"], Value::Null);
    }
    assert_same_file(&env.src("f.bin"), &env.dst("f.bin"));
}

#[test]
fn a_file_in_blocks_has_a_block_digest_on_both_ends() {
    let env = TestEnv::new();
    let size = (17 << 20) + 9;
    env.random_file("big", size, 304);
    let (tx, rx) = both(&env, "big", &[], &["-P", "2"]);
    let (sent, got) = (entry(&tx, "big"), entry(&rx, "big"));
    for f in [sent, got] {
        assert_eq!(f["digest_kind"], "blocks", "{f}");
        assert_eq!(f["bytes"], size);
        assert_eq!(f["resumed"], 0);
    }
    assert_eq!(sent["digest"], got["digest"]);
    assert_ne!(sent["digest"], sha256_file(&env.src("big")).as_str(), "not sha256sum's");
    assert_eq!(tx["streams"], 2);
    assert_eq!(rx["streams"], 2);
    assert_same_file(&env.src("big"), &env.dst("big"));
}

#[test]
fn json_file_keeps_stderr_and_a_keep_open_receiver_writes_a_line_per_transfer() {
    let env = TestEnv::new();
    env.random_file("a", 1000, 305);
    env.random_file("b", 70_000, 306);
    let rx = env.recv(&["-k", "--json-file", "rx.jsonl", "dst"]);
    for name in ["a", "b"] {
        let tx = env.send(&["--json-file", "tx.json", &format!("src/{name}")], &rx.addr);
        tx.assert_code(0).assert_stderr(&format!("zcp: sent {name} to "));
        let text = std::fs::read_to_string(env.path("tx.json")).unwrap();
        assert_eq!(text.lines().count(), 1, "the file is emptied first: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(entry(&v, name)["digest"], sha256_file(&env.src(name)).as_str());
    }
    let mut run = rx.run;
    run.await_stderr_count("zcp: received ", 2);
    run.kill(2); // SIGINT
    let out = run.finish();
    out.assert_code(130);
    let text = std::fs::read_to_string(env.path("rx.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "one line per transfer, none for Ctrl-C: {text}");
    for (v, name) in lines.iter().zip(["a", "b"]) {
        assert_eq!(v["role"], "recv");
        assert_eq!(v["status"], "success");
        assert_eq!(entry(v, name)["digest"], sha256_file(&env.src(name)).as_str());
    }
}

#[test]
fn a_refused_connection_still_writes_the_report() {
    let env = TestEnv::new();
    env.random_file("f.bin", 1000, 307);
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = env.send(&["--json", "src/f.bin"], &format!("127.0.0.1:{port}"));
    out.assert_code(7);
    let v = report(&out);
    assert_eq!(v["status"], "network");
    assert_eq!(v["role"], "send");
    assert_eq!(v["peer"], format!("127.0.0.1:{port}").as_str());
    let errors = out.error_lines();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    let said = errors[0].strip_prefix("zcp: error: ").unwrap();
    assert_eq!(v["error"], said);
    assert!(said.contains("refused"), "{said}");
    assert_eq!(v["files"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["bytes"], 0);

    // A usage error the command line parser could not see comes with one too.
    let out = env.send(&["--json", "--retries", "2", "-"], &format!("127.0.0.1:{port}"));
    out.assert_code(2);
    assert_eq!(report(&out)["status"], "usage");
}

#[test]
fn names_that_are_not_utf8_or_hold_control_characters_survive() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t")).unwrap();
    let odd: &[u8] = b"bad\xff\xfename";
    let control = "line\nbreak\u{1}\"q\"";
    std::fs::write(env.src("t").join(OsStr::from_bytes(odd)), b"odd").unwrap();
    std::fs::write(env.src("t").join(control), b"ctl").unwrap();
    let rx = env.recv(&["--json", "dst"]);
    let tx = env.send(&["--json", "-r", "src/t"], &rx.addr);
    let rr = rx.finish();
    tx.assert_code(0);
    rr.assert_code(0);
    let mut wire = b"t/".to_vec();
    wire.extend_from_slice(odd);
    for v in [report(&tx), report(&rr)] {
        let files = v["files"].as_array().unwrap();
        let bad: Vec<&Value> = files.iter().filter(|f| !f["name_bytes"].is_null()).collect();
        assert_eq!(bad.len(), 1, "{v}");
        let bytes: Vec<u8> = bad[0]["name_bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
            .collect();
        assert_eq!(bytes, wire);
        assert_eq!(bad[0]["name"], String::from_utf8_lossy(&wire).as_ref());
        assert_eq!(
            bad[0]["digest"],
            sha256_file(&env.src("t").join(OsStr::from_bytes(odd))).as_str()
        );
        let ctl = entry(&v, &format!("t/{control}"));
        assert_eq!(ctl["name_bytes"], Value::Null);
        assert_eq!(ctl["status"], "committed");
    }
    assert_eq!(
        std::fs::read(env.dst("t").join(OsStr::from_bytes(odd))).unwrap(),
        b"odd"
    );
}

#[test]
fn a_transfer_over_a_reconnect_lists_each_entry_once_on_both_ends() {
    use crate::proxy::{Cut, Plan, Proxy};
    use crate::retry::{FILES, setup};
    let env = setup();
    let rx = env.recv(&["--json", "dst"]);
    let plan = Plan {
        cut: Cut::Reset,
        after: 6 << 20,
        connections: 1,
        on_cue: true,
    };
    let proxy = Proxy::start(&rx.addr, plan);
    // -v for the verdict to cut after; the report is still the last line.
    let args = ["--json", "-v", "--retries", "3", "-r", "src/t"];
    let mut tx = env.start_send(&args, &proxy.addr, &[], Stdio::null());
    tx.await_stderr("the verdict on t/c.txt", |s| s.contains("zcp: send t/c.txt: "));
    proxy.cut_now();
    let out = tx.finish();
    let rr = rx.finish();
    out.assert_code(0);
    rr.assert_code(0);
    assert_eq!(proxy.cut(), 1);
    let (sent, got) = (report(&out), report(&rr));
    assert_eq!(sent["retries"], 1);
    assert_eq!(got["retries"], 0);
    for v in [&sent, &got] {
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["files"].as_array().unwrap().len(), 8, "each entry once: {v}");
        assert_eq!(v["counts"]["committed"], 8, "{v}");
        assert_eq!(v["counts"]["dirs"], 2, "{v}");
        assert_eq!(v["counts"]["files"], 6, "{v}");
        for (name, _) in FILES {
            let f = entry(v, name);
            assert_eq!(f["status"], "committed");
            assert_eq!(f["digest"], sha256_file(&env.src(name)).as_str(), "{name}");
        }
    }
}

#[test]
fn a_receiver_stopped_while_waiting_for_a_reconnect_still_reports_what_arrived() {
    use crate::proxy::{Cut, Plan, Proxy};
    use crate::retry::setup;
    let env = setup();
    let mut rx = env.recv(&["--json", "dst"]);
    let plan = Plan {
        cut: Cut::Reset,
        after: 6 << 20,
        connections: 1,
        on_cue: true,
    };
    let proxy = Proxy::start(&rx.addr, plan);
    let args = ["-v", "--retries", "3", "-r", "src/t"];
    let mut tx = env.start_send(&args, &proxy.addr, &[], Stdio::null());
    tx.await_stderr("the verdict on t/c.txt", |s| s.contains("zcp: send t/c.txt: "));
    proxy.cut_now();
    // The sender is gone for good; the receiver waits for it to come back.
    tx.kill(libc::SIGKILL);
    rx.run
        .await_stderr("the receiver waiting for a reconnect", |s| s.contains("waiting up to"));
    rx.run.kill(libc::SIGINT);
    let rr = rx.finish();
    rr.assert_code(130);
    let got = report(&rr);
    assert_eq!(got["status"], "interrupted", "{got}");
    assert!(got["peer"].is_string(), "the broken session's peer: {got}");
    let c = entry(&got, "t/c.txt");
    assert_eq!(c["status"], "committed", "{got}");
    assert_eq!(c["digest"], sha256_file(&env.src("t/c.txt")).as_str());
    assert!(env.dst("t/c.txt").exists());
}

#[test]
fn the_entry_a_broken_connection_cut_off_is_listed_as_failed_on_both_ends() {
    // The sender stops itself before its second sendfile of a 20 MiB
    // file and is killed there: the receiver's file is cut off.
    let env = TestEnv::new();
    let src = env.random_file("big.bin", 20 << 20, 3);
    let rx = env.recv(&["--json", "dst"]);
    let fault = [("ZCP_FAULT", "sendfile=STOP@2")];
    let tx = env.start_send(&[src.to_str().unwrap()], &rx.addr, &fault, Stdio::null());
    let mut tx = tx.stopped();
    tx.kill(libc::SIGKILL);
    let _ = tx.finish();
    let rr = rx.finish();
    rr.assert_code(7);
    assert_cut_off(&report(&rr), "big.bin", "");

    // The receiver stops itself in its second splice and is killed: the
    // sender's entry never gets a verdict.
    let env = TestEnv::new();
    let src = env.random_file("big.bin", 20 << 20, 4);
    let rx = env.recv_with_env("127.0.0.1:0", &["dst"], &[("ZCP_FAULT", "splice=STOP@2")]);
    let tx = env.start_send(&["--json", src.to_str().unwrap()], &rx.addr, &[], Stdio::null());
    let mut run = rx.run.stopped();
    run.kill(libc::SIGKILL);
    let _ = run.finish();
    let out = tx.finish();
    out.assert_code(7);
    assert_cut_off(&report(&out), "big.bin", &rx.addr);
}

/// `v` lists `name` as the one failed entry, with an error naming `said`.
fn assert_cut_off(v: &Value, name: &str, said: &str) {
    assert_eq!(v["counts"]["failed"], 1, "{v}");
    let f = entry(v, name);
    assert_eq!(f["status"], "failed", "{v}");
    assert!(f["error"].as_str().is_some_and(|e| e.contains(said)), "{v}");
}

#[test]
fn json_file_never_names_a_source_or_the_destination() {
    let env = TestEnv::new();
    let src = env.random_file("a.bin", 5000, 9);
    let before = std::fs::read(&src).unwrap();
    let a = src.to_str().unwrap();
    std::fs::create_dir_all(env.path("tree")).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["send", "--json-file", a, a, "127.0.0.1:1"], "is the same file as"),
        (
            &["send", "--json-file", "tree/r.json", "-r", "tree", "127.0.0.1:1"],
            "is inside tree",
        ),
        (
            &["recv", "--json-file", "out.bin", "out.bin"],
            "is the same file as out.bin",
        ),
    ];
    for (args, why) in cases {
        let out = zcp().current_dir(env.path("")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?} lacks {why:?}: {stderr}");
    }
    assert_eq!(std::fs::read(&src).unwrap(), before, "the source was overwritten");
    assert!(!env.path("tree/r.json").exists());
    assert!(!env.path("out.bin").exists());
}
