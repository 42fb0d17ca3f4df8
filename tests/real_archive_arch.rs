//! Roots of other architectures from the real Debian archive (mirror from the host's apt
//! sources), as root: package sets equal to `debootstrap --arch A --print-debs`, dpkg inside
//! reporting the architecture, `dpkg --audit` empty and `apt-get check` passing, and a dpkg
//! foreign architecture with one of its packages. Emulated builds take minutes, so the arm64
//! and armhf builds are `#[ignore]`d tests run by hand (README, "Foreign architectures"):
//! `cargo test --test real_archive_arch -- --ignored`.

mod support;

use support::host::{run_ok as run, shared_cache};

use std::path::Path;
use std::process::{Command, Output};

use support::host::{host_mirror, require_program, require_root};

fn chroot(root: &Path, args: &[&str]) -> String {
    let out = run(Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8"));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn prerequisites() -> Option<String> {
    if !require_root() || !require_program("debootstrap") {
        return None;
    }
    host_mirror()
}

/// `debstrap-onion build --no-onion --cache-dir CACHE ARGS trixie TARGET MIRROR`.
fn ours(args: &[&str], target: &Path, mirror: &str) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--cache-dir"])
        .arg(shared_cache())
        .args(args)
        .arg("trixie")
        .arg(target)
        .arg(mirror))
}

/// debootstrap's minbase package names for `arch`, printed without building anything.
fn debootstrap_set(arch: &str, mirror: &str) -> Vec<String> {
    let scratch = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let out = run(Command::new("debootstrap")
        .args([
            "--arch",
            arch,
            "--variant=minbase",
            "--print-debs",
            "trixie",
        ])
        .arg(scratch.path().join("root"))
        .arg(mirror));
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The package names dpkg in `root` has installed, architecture qualifiers dropped.
fn installed(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = chroot(root, &["dpkg-query", "-W", "-f", "${Package}\\n"])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// A minbase root of `arch`: dpkg reports `arch`, has nothing half-installed, apt's
/// dependency check passes, and the package set is debootstrap's.
fn root_equivalent_to_debootstraps_package_set(arch: &str) {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let root = dir.path().join(arch);
    let started = std::time::Instant::now();
    ours(&["--arch", arch], &root, &mirror);
    eprintln!("{arch} minbase build: {:.1?}", started.elapsed());
    assert_eq!(
        chroot(&root, &["dpkg", "--print-architecture"]).trim(),
        arch
    );
    assert_eq!(chroot(&root, &["dpkg", "--audit"]), "", "dpkg --audit");
    chroot(&root, &["apt-get", "check"]);
    assert_eq!(installed(&root), debootstrap_set(arch, &mirror));
    assert!(
        !root.join("var/lib/dpkg/arch").exists(),
        "no foreign architecture, so no arch file (as debootstrap)"
    );
    assert!(debstrap_onion::stage::mounts_under(&root).is_empty());
}

#[test]
fn real_archive_i386_root_has_debootstraps_package_set_and_audits_clean() {
    root_equivalent_to_debootstraps_package_set("i386");
}

#[test]
#[ignore = "emulated, minutes: cargo test --test real_archive_arch -- --ignored"]
fn real_archive_arm64_root_has_debootstraps_package_set_and_audits_clean() {
    root_equivalent_to_debootstraps_package_set("arm64");
}

#[test]
#[ignore = "emulated, minutes: cargo test --test real_archive_arch -- --ignored"]
fn real_archive_armhf_root_has_debootstraps_package_set_and_audits_clean() {
    root_equivalent_to_debootstraps_package_set("armhf");
}

/// The cheap part of the arm64 comparison, run in CI: the package set, resolved without
/// building, equals debootstrap's.
#[test]
fn real_archive_arm64_package_set_equals_debootstraps() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let out = run(Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--print-packages", "--arch", "arm64"])
        .arg("--cache-dir")
        .arg(shared_cache())
        .arg("trixie")
        .arg("-")
        .arg(&mirror));
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, debootstrap_set("arm64", &mirror));
}

/// `--arch NATIVE,i386 --include libc6:i386`: dpkg's arch file as `dpkg --add-architecture`
/// writes it, both libc6 instances installed, nothing half-installed, apt content.
#[test]
fn real_archive_a_foreign_architecture_and_its_package_install_as_dpkg_would() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let native = support::native_arch();
    let foreign = if native == "i386" { "amd64" } else { "i386" };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let root = dir.path().join("multi");
    let started = std::time::Instant::now();
    ours(
        &[
            "--arch",
            &format!("{native},{foreign}"),
            "--include",
            &format!("libc6:{foreign}"),
        ],
        &root,
        &mirror,
    );
    eprintln!("{native},{foreign} build: {:.1?}", started.elapsed());
    assert_eq!(
        fs_err::read_to_string(root.join("var/lib/dpkg/arch")).expect("arch file"),
        format!("{native}\n{foreign}\n")
    );
    assert_eq!(
        chroot(&root, &["dpkg", "--print-foreign-architectures"]),
        format!("{foreign}\n")
    );
    let both = chroot(
        &root,
        &[
            "dpkg-query",
            "-W",
            "-f",
            "${Package}:${Architecture} ${db:Status-Abbrev}\\n",
            &format!("libc6:{native}"),
            &format!("libc6:{foreign}"),
        ],
    );
    assert_eq!(
        both,
        format!("libc6:{native} ii \nlibc6:{foreign} ii \n"),
        "both instances installed"
    );
    assert_eq!(chroot(&root, &["dpkg", "--audit"]), "", "dpkg --audit");
    chroot(&root, &["apt-get", "check"]);
    assert!(debstrap_onion::stage::mounts_under(&root).is_empty());
}

/// Two arm64 tarballs built with one SOURCE_DATE_EPOCH are the same bytes.
#[test]
#[ignore = "emulated, two builds: cargo test --test real_archive_arch -- --ignored"]
fn real_archive_two_arm64_tarballs_with_one_source_date_epoch_are_identical() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let mut sums = Vec::new();
    for name in ["one.tar", "two.tar"] {
        let tar = dir.path().join(name);
        ours(
            &["--arch", "arm64", "--source-date-epoch", "1700000000"],
            &tar,
            &mirror,
        );
        let out = run(Command::new("sha256sum").arg(&tar));
        let sum = String::from_utf8(out.stdout).expect("utf-8");
        sums.push(sum.split_whitespace().next().expect("sum").to_string());
    }
    assert_eq!(sums[0], sums[1], "sha256 of the two arm64 tarballs");
}

/// A `Conflicts` across architectures, from the real archive and without building: native
/// busybox declares `Conflicts: busybox-static`, which dpkg applies to every architecture, so
/// `--include busybox,busybox-static:arm64` is refused before any download, naming both
/// packages with their architectures and the relation.
#[test]
fn real_archive_a_conflict_across_architectures_is_refused_naming_both() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let native = support::native_arch();
    let foreign = if native == "arm64" { "amd64" } else { "arm64" };
    let cache = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--print-packages", "--arch"])
        .arg(format!("{native},{foreign}"))
        .arg("--include")
        .arg(format!("busybox,busybox-static:{foreign}"))
        .arg("--cache-dir")
        .arg(cache.path())
        .arg("trixie")
        .arg("-")
        .arg(&mirror)
        .output()
        .expect("run debstrap-onion");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("busybox:{native} "))
            && stderr.contains("declares Conflicts: busybox-static, but ")
            && stderr.contains(&format!("busybox-static:{foreign} ")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing printed");
    let debs = cache.path().join("debs");
    assert!(
        !debs.exists() || fs_err::read_dir(&debs).expect("debs").next().is_none(),
        "nothing downloaded"
    );
}
