//! `--checksum blake3`: files, trees, stdin and files in blocks arrive
//! verified with BLAKE3 on both ends; `-v` prints each file's BLAKE3 as
//! b3sum does, and ends that disagree on the algorithm are refused.

use std::io::Write;

use crate::env::*;

fn b3(path: &std::path::Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string()
}

#[test]
fn a_file_is_verified_with_blake3_and_shown_as_b3sum_does() {
    let env = TestEnv::new();
    env.random_file("f.bin", (3 << 20) + 17, 91);
    let rx = env.recv(&["--checksum", "blake3", "-v", "dst"]);
    let out = env.send(&["--checksum", "blake3", "-v", "src/f.bin"], &rx.addr);
    out.assert_code(0).assert_stderr("verified (blake3)");
    let rr = rx.finish();
    rr.assert_code(0).assert_stderr("verified (blake3)");
    assert_same_file(&env.src("f.bin"), &env.dst("f.bin"));
    let want = b3(&env.src("f.bin"));
    assert!(out.stderr.contains(&format!("{want}  src/f.bin")), "{}", out.stderr);
    assert!(rr.stderr.contains(&format!("{want}  dst/f.bin")), "{}", rr.stderr);
}

#[test]
fn a_tree_stdin_and_a_file_in_blocks_arrive_with_blake3() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.src("t/sub")).unwrap();
    env.random_file("t/a.bin", 2 << 20, 92);
    env.random_file("t/sub/b.txt", 5000, 93);
    env.random_file("big", (20 << 20) + 3, 94);

    let rx = env.recv(&["--checksum", "blake3", "dst"]);
    env.send(&["--checksum", "blake3", "-r", "src/t"], &rx.addr)
        .assert_code(0);
    rx.finish().assert_code(0);
    assert_eq!(env.tree("src/t"), env.tree("dst/t"));
    assert_same_file(&env.src("t/sub/b.txt"), &env.dst("t/sub/b.txt"));

    let rx = env.recv(&["--checksum", "blake3", "dst"]);
    let (tx, mut pipe) = env.send_from_pipe(&["--checksum", "blake3", "--name", "piped"], &rx.addr);
    pipe.write_all(&std::fs::read(env.src("t/a.bin")).unwrap()).unwrap();
    drop(pipe);
    tx.finish().assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&env.src("t/a.bin"), &env.dst("piped"));

    let rx = env.recv(&["--checksum", "blake3", "-v", "dst"]);
    let out = env.send(&["--checksum", "blake3", "-P", "2", "-v", "src/big"], &rx.addr);
    out.assert_code(0).assert_stderr("(not b3sum's)");
    rx.finish().assert_code(0);
    assert_same_file(&env.src("big"), &env.dst("big"));
}

#[test]
fn ends_that_disagree_on_the_algorithm_are_refused() {
    let env = TestEnv::new();
    env.random_file("f.bin", 1000, 95);
    let rx = env.recv(&["dst"]);
    let out = env.send(&["--checksum", "blake3", "src/f.bin"], &rx.addr);
    out.assert_code(1)
        .assert_stderr("--checksum blake3")
        .assert_stderr("--checksum sha256");
    // The receiver turned the sender away and still serves a good one.
    let ok = env.send(&["src/f.bin"], &rx.addr);
    ok.assert_code(0);
    rx.finish().assert_code(0);
    assert_same_file(&env.src("f.bin"), &env.dst("f.bin"));
}
