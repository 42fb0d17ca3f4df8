//! Reproducible output against the real archive, as root: two trixie minbase builds to .tar with
//! the same SOURCE_DATE_EPOCH and separate caches give the same bytes, the second run on one CPU
//! with umask 077 and another time zone and locale; the tarball holds a root that passes
//! `dpkg --audit` once unpacked; an onion build with a fixed key repeats too, and GNU tar finds
//! nginx and the key's site in it and no onion secret.

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

/// Like [`ours`], from a builder set up differently: one CPU (taskset), umask 077, another
/// time zone and locale. None of it may reach the output.
fn ours_elsewhere(args: &[&str], cache: &Path) -> Output {
    let out = Command::new("sh")
        .args(["-c", "umask 077 && exec taskset --cpu-list 0 \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("TZ", "Pacific/Chatham")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run debstrap-onion");
    assert!(
        out.status.success(),
        "debstrap-onion {args:?} (one CPU, umask 077) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sha256(path: &Path) -> String {
    debstrap_onion::fetch::Sha256Digest::of(&fs_err::read(path).expect("read tarball")).to_hex()
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
    if !require_root() || !require_program("tar") || !require_program("taskset") {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    ours(
        &[
            "build",
            "--no-onion",
            "trixie",
            a.to_str().expect("utf-8"),
            &mirror,
        ],
        &dir.path().join("cache-a"),
    );
    ours_elsewhere(
        &[
            "build",
            "--no-onion",
            "trixie",
            b.to_str().expect("utf-8"),
            &mirror,
        ],
        &dir.path().join("cache-b"),
    );
    let (sum_a, sum_b) = (sha256(&a), sha256(&b));
    eprintln!("trixie minbase .tar sha256: {sum_a} and {sum_b}");
    assert_eq!(
        sum_a, sum_b,
        "two builds with the same SOURCE_DATE_EPOCH differ (the second on one CPU, umask 077, \
         another TZ and locale)"
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
    fs_err::create_dir(&root).expect("mkdir");
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
    let mut tarballs = Vec::new();
    for run in ["one", "two"] {
        let host = dir.path().join(format!("host-{run}"));
        fs_err::create_dir(&host).expect("host root");
        let tarball = dir.path().join(format!("{run}.tar.zst"));
        let host = host.to_str().expect("utf-8");
        let args = [
            "build",
            "--onion-key",
            TOR_FIXTURE,
            "--host-root",
            host,
            "trixie",
            tarball.to_str().expect("utf-8"),
            &mirror,
        ];
        if run == "one" {
            ours(&args, &cache);
        } else {
            ours_elsewhere(&args, &cache);
        }
        sums.push(sha256(&tarball));
        tarballs.push(tarball);
    }
    eprintln!("trixie onion .tar.zst sha256: {} and {}", sums[0], sums[1]);
    assert_eq!(
        sums[0], sums[1],
        "two onion builds with the same key and SOURCE_DATE_EPOCH differ"
    );

    // What is in it, read by GNU tar: nginx and the site for the fixture key's address, and
    // no onion secret (that stays on the host).
    let out = Command::new("tar")
        .args(["--zstd", "-tvf"])
        .arg(&tarballs[0])
        .output()
        .expect("tar --zstd -t");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).expect("utf-8");
    for needle in [
        " ./usr/sbin/nginx\n",
        " ./etc/nginx/sites-enabled/onion -> ",
        " ./var/www/onion/index.html\n",
        " ./dev/null\n",
    ] {
        assert!(listing.contains(needle), "onion tarball lacks {needle:?}");
    }
    assert!(
        !listing.contains("hs_ed25519_secret_key"),
        "the onion secret key is in the chroot tarball"
    );
    let out = Command::new("tar")
        .args(["--zstd", "-xOf"])
        .arg(&tarballs[0])
        .arg("./var/www/onion/index.html")
        .output()
        .expect("tar --zstd -xO");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = String::from_utf8_lossy(&out.stdout);
    let address =
        fs_err::read_to_string(Path::new(TOR_FIXTURE).join("hostname")).expect("fixture hostname");
    assert!(page.contains(address.trim()), "{page}");
    // With SOURCE_DATE_EPOCH the build's log is emptied (kept as dpkg expects the file).
    for line in listing
        .lines()
        .filter(|l| l.ends_with(" ./var/log/debstrap-onion.log"))
    {
        assert_eq!(
            line.split_whitespace().nth(2),
            Some("0"),
            "the build log is not empty in a SOURCE_DATE_EPOCH tarball: {line}"
        );
    }
}
