//! Against the real Debian archive, through the mirror in the host's apt sources: the resolved
//! minbase, buildd and important sets equal debootstrap's, the essential set mmdebstrap's, and
//! --download-only fills a fresh cache with the very .debs debootstrap downloads.
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
    our_variant("minbase", suite, mirror)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// `--print-packages --variant VARIANT` through the command line: (name, version) pairs.
fn our_variant(variant: &str, suite: &str, mirror: &str) -> BTreeSet<(String, String)> {
    let cache = tempfile::tempdir().expect("temp cache");
    let out = ours(&[
        "build",
        "--print-packages",
        "--no-onion",
        "--variant",
        variant,
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
        .map(|l| {
            let (name, version) = l.split_once(' ').expect("NAME VERSION");
            (name.to_string(), version.to_string())
        })
        .collect()
}

fn debootstrap_minbase(suite: &str, mirror: &str) -> BTreeSet<String> {
    debootstrap_variant(Some("minbase"), suite, mirror)
}

/// `debootstrap --print-debs [--variant=V]`: package names.
fn debootstrap_variant(variant: Option<&str>, suite: &str, mirror: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("debootstrap")
        .arg("--print-debs")
        .args(variant.map(|v| format!("--variant={v}")))
        .arg(suite)
        .arg(dir.path().join("root"))
        .arg(mirror)
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap --print-debs {variant:?} failed: {}",
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

/// Asserts two package-name sets are equal, naming what each has alone.
fn assert_same_names(what: &str, ours: &BTreeSet<String>, theirs: &BTreeSet<String>) {
    let only_ours: Vec<_> = ours.difference(theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "{what}: only ours {only_ours:?}, only theirs {only_theirs:?}"
    );
    eprintln!("{what}: {} packages, the same", ours.len());
}

/// buildd and important (debootstrap's default variant) through our command line, against
/// `debootstrap --print-debs` with the same variant.
#[test]
fn real_archive_trixie_buildd_and_important_equal_debootstrap_print_debs() {
    let Some(mirror) = host_mirror() else { return };
    if !require_program("debootstrap") {
        return;
    }
    for (ours_name, theirs) in [("buildd", Some("buildd")), ("important", None)] {
        let ours: BTreeSet<String> = our_variant(ours_name, "trixie", &mirror)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let theirs = debootstrap_variant(theirs, "trixie", &mirror);
        assert_same_names(&format!("trixie {ours_name}"), &ours, &theirs);
    }
}

/// essential through our command line, against what apt would install for
/// `mmdebstrap --variant=essential` (its `--simulate` run lists `Inst NAME (VERSION ...)`).
#[test]
fn real_archive_trixie_essential_equals_mmdebstrap_essential() {
    let Some(mirror) = host_mirror() else { return };
    if !require_program("mmdebstrap") {
        return;
    }
    let ours = our_variant("essential", "trixie", &mirror);
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("mmdebstrap")
        .args(["--verbose", "--simulate", "--variant=essential", "trixie"])
        .arg(dir.path().join("sim.tar"))
        .arg(&mirror)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run mmdebstrap");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mmdebstrap --simulate failed: {log}");
    let theirs: BTreeSet<(String, String)> = log
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|rest| {
            let (name, rest) = rest.split_once(" (").expect("Inst NAME (VERSION");
            let version = rest.split(' ').next().expect("version");
            (name.to_string(), version.to_string())
        })
        .collect();
    assert!(!theirs.is_empty(), "mmdebstrap listed nothing:\n{log}");
    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "trixie essential: only ours {only_ours:?}, only mmdebstrap's {only_theirs:?}"
    );
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
    let debs: Vec<_> = fs_err::read_dir(cache.path().join("debs"))
        .expect("cache dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(debs.len(), count, "one cached .deb per resolved package");
    for deb in &debs {
        let data = fs_err::read(deb).expect("cached deb");
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

    // The same .debs, byte for byte, as `debootstrap --download-only` fetches: compared by
    // name and version (read by dpkg-deb) and sha256 (computed by sha256sum).
    if !support::host::require_root() || !require_program("debootstrap") {
        return;
    }
    let theirs_dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let out = Command::new("debootstrap")
        .args(["--download-only", "--variant=minbase", "trixie"])
        .arg(theirs_dir.path())
        .arg(&mirror)
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap --download-only failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<_> = fs_err::read_dir(theirs_dir.path().join("var/cache/apt/archives"))
        .expect("debootstrap's archives")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(identities(&debs), identities(&theirs));
}

/// `NAME VERSION SHA256` of each .deb, by dpkg-deb and sha256sum, sorted.
fn identities(debs: &[std::path::PathBuf]) -> Vec<String> {
    let mut ids: Vec<String> = debs
        .iter()
        .map(|deb| {
            let fields = Command::new("dpkg-deb")
                .args(["--show", "--showformat", "${Package} ${Version}"])
                .arg(deb)
                .output()
                .expect("run dpkg-deb");
            assert!(fields.status.success(), "dpkg-deb {}", deb.display());
            let sum = Command::new("sha256sum")
                .arg(deb)
                .output()
                .expect("sha256sum");
            assert!(sum.status.success(), "sha256sum {}", deb.display());
            let sum = String::from_utf8_lossy(&sum.stdout);
            format!(
                "{} {}",
                String::from_utf8_lossy(&fields.stdout),
                sum.split_whitespace().next().expect("digest")
            )
        })
        .collect();
    ids.sort();
    ids
}
