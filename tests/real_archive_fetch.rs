//! Against the real Debian archive, through the mirror in the host's apt sources: the resolved
//! minbase sets equal debootstrap's, and --download-only fills a fresh cache with verified debs.
//! Outside CI these skip when the mirror or debootstrap is missing; with CI=true that fails.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::host::{host_mirror, require_program};

fn ours(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(args)
        .output()
        .expect("run debstrap-onion")
}

fn our_minbase(suite: &str, mirror: &str) -> BTreeSet<String> {
    let cache = tempfile::tempdir().expect("temp cache");
    let out = ours(&[
        "build",
        "--print-packages",
        "--no-onion",
        "--cache-dir",
        cache.path().to_str().expect("utf-8 path"),
        suite,
        "/nonexistent/target",
        mirror,
    ]);
    assert!(
        out.status.success(),
        "print-packages failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "--print-packages output is sorted by name");
    lines
        .iter()
        .map(|l| l.split(' ').next().expect("name").to_string())
        .collect()
}

fn debootstrap_minbase(suite: &str, mirror: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("debootstrap")
        .args(["--print-debs", "--variant=minbase", suite])
        .arg(dir.path().join("root"))
        .arg(mirror)
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap --print-debs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn compare_with_debootstrap(suite: &str) {
    let Some(mirror) = host_mirror() else { return };
    if !require_program("debootstrap") {
        return;
    }
    let ours = our_minbase(suite, &mirror);
    let theirs = debootstrap_minbase(suite, &mirror);
    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "{suite} minbase differs from debootstrap's: only ours {only_ours:?}, only debootstrap's {only_theirs:?}"
    );
    eprintln!(
        "{suite} minbase: {} packages, same as debootstrap",
        ours.len()
    );
}

#[test]
fn real_archive_trixie_minbase_equals_debootstrap_print_debs() {
    compare_with_debootstrap("trixie");
}

#[test]
fn real_archive_bookworm_minbase_equals_debootstrap_print_debs() {
    compare_with_debootstrap("bookworm");
}

#[test]
fn real_archive_download_only_into_a_fresh_cache() {
    let Some(mirror) = host_mirror() else { return };
    let cache = tempfile::tempdir().expect("temp cache");
    let cache_dir = cache.path().to_str().expect("utf-8 path");
    let out = ours(&[
        "build",
        "--download-only",
        "--no-onion",
        "--cache-dir",
        cache_dir,
        "trixie",
        "/nonexistent/t",
        &mirror,
    ]);
    assert!(
        out.status.success(),
        "download-only failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = ours(&[
        "build",
        "--print-packages",
        "--no-onion",
        "--cache-dir",
        cache_dir,
        "trixie",
        "/nonexistent/t",
        &mirror,
    ]);
    let count = String::from_utf8_lossy(&listed.stdout).lines().count();
    let debs: Vec<_> = std::fs::read_dir(cache.path().join("debs"))
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(debs.len(), count, "one cached .deb per resolved package");
    for deb in &debs {
        let data = std::fs::read(deb).expect("cached deb");
        let name = deb
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            format!("{}.deb", debstrap_onion::fetch::Sha256Digest::of(&data)),
            name,
            "cache entry is its hash"
        );
        assert_eq!(&data[..8], b"!<arch>\n", "{name} is an ar archive");
    }
    assert!(!std::path::Path::new("/nonexistent/t").exists());
}
