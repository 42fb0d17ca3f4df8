//! Reproducible output against the real archive, as root: two trixie minbase builds to .tar with
//! the same SOURCE_DATE_EPOCH and separate caches give the same bytes; the tarball holds a root
//! that passes `dpkg --audit` once unpacked; an onion build with a fixed key repeats too.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::host::{host_mirror, require_program, require_root};

const EPOCH: &str = "1700000000";
const TOR_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/onion/tor-generated");

fn ours(args: &[&str], cache: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("run debstrap-onion");
    assert!(
        out.status.success(),
        "debstrap-onion {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sha256(path: &Path) -> String {
    debstrap_onion::fetch::Sha256Digest::of(&std::fs::read(path).expect("read tarball")).to_hex()
}

fn list(tarball: &Path) -> String {
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(tarball)
        .output()
        .expect("tar -t");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn real_archive_root_two_tarball_builds_are_bit_identical_and_hold_a_working_root() {
    if !require_root() || !require_program("tar") {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    for (tarball, cache) in [(&a, "cache-a"), (&b, "cache-b")] {
        let target = tarball.to_str().expect("utf-8");
        ours(
            &["build", "--no-onion", "trixie", target, &mirror],
            &dir.path().join(cache),
        );
    }
    let (sum_a, sum_b) = (sha256(&a), sha256(&b));
    eprintln!("trixie minbase .tar sha256: {sum_a} and {sum_b}");
    assert_eq!(
        sum_a, sum_b,
        "two builds with the same SOURCE_DATE_EPOCH differ"
    );

    // TARGET `-` streams the same bytes to standard output.
    let streamed = ours(
        &["build", "--no-onion", "trixie", "-", &mirror],
        &dir.path().join("cache-a"),
    );
    assert_eq!(
        debstrap_onion::fetch::Sha256Digest::of(&streamed.stdout).to_hex(),
        sum_a,
        "the tarball on stdout differs from the file"
    );

    let listing = list(&a);
    for needle in [
        " ./usr/bin/dpkg\n",
        " ./bin -> usr/bin\n",
        " ./lib -> usr/lib\n",
        " ./sbin -> usr/sbin\n",
        " ./dev/null\n",
    ] {
        assert!(listing.contains(needle), "tarball lacks {needle:?}");
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('c') && l.ends_with(" ./dev/null")),
        "dev/null is a device node"
    );

    let root = dir.path().join("unpacked");
    std::fs::create_dir(&root).expect("mkdir");
    let untar = Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(&a)
        .arg("-C")
        .arg(&root)
        .status()
        .expect("tar -x");
    assert!(untar.success());
    let audit = Command::new("chroot")
        .arg(&root)
        .args(["dpkg", "--audit"])
        .output()
        .expect("chroot dpkg --audit");
    assert!(
        audit.status.success() && audit.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

#[test]
fn real_archive_root_onion_tarball_with_a_fixed_key_is_reproducible() {
    if !require_root() {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-archive-cache");
    let mut sums = Vec::new();
    for run in ["one", "two"] {
        let host = dir.path().join(format!("host-{run}"));
        std::fs::create_dir(&host).expect("host root");
        let tarball = dir.path().join(format!("{run}.tar.zst"));
        ours(
            &[
                "build",
                "--onion-key",
                TOR_FIXTURE,
                "--host-root",
                host.to_str().expect("utf-8"),
                "trixie",
                tarball.to_str().expect("utf-8"),
                &mirror,
            ],
            &cache,
        );
        sums.push(sha256(&tarball));
    }
    eprintln!("trixie onion .tar.zst sha256: {} and {}", sums[0], sums[1]);
    assert_eq!(
        sums[0], sums[1],
        "two onion builds with the same key and SOURCE_DATE_EPOCH differ"
    );
}
