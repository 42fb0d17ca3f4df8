//! Whole builds against the real Debian archive (mirror from the host's apt sources), as root:
//! a minbase root equivalent to debootstrap's for trixie and bookworm, apt working inside, and
//! the host left without mounts. With CI=true a missing prerequisite fails the test.

mod support;

use support::host::{run_ok as run, shared_cache};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::host::{host_mirror, require_program, require_root};
use support::tree;

fn chroot(root: &Path, args: &[&str]) -> Output {
    run(Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8"))
}

fn mounts_under(root: &Path) -> Vec<PathBuf> {
    debstrap_onion::stage::mounts_under(root)
}

fn prerequisites() -> Option<String> {
    if !require_root() || !require_program("debootstrap") {
        return None;
    }
    host_mirror()
}

fn equivalent_to_debootstrap(suite: &str) {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("debootstrap");

    // -v adds each step's log lines (here dpkg's configure time) to the stage headers.
    let built = run(Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args([
            "build",
            "-v",
            "--no-onion",
            "--variant",
            "minbase",
            "--cache-dir",
        ])
        .arg(shared_cache())
        .arg(suite)
        .arg(&ours)
        .arg(&mirror));
    let log = String::from_utf8_lossy(&built.stderr);
    assert!(
        log.contains("==> configuring packages in the chroot")
            && log.contains("INFO")
            && log
                .lines()
                .any(|l| l.contains("dpkg --configure") && l.contains(" took ")),
        "-v showed no step log:\n{log}"
    );
    assert!(
        mounts_under(&ours).is_empty(),
        "mounts left under {}",
        ours.display()
    );
    run(Command::new("debootstrap")
        .args(["--variant=minbase", suite])
        .arg(&theirs)
        .arg(&mirror));

    let list =
        |root: &Path| String::from_utf8(chroot(root, &["dpkg-query", "-W"]).stdout).expect("utf-8");
    assert_eq!(
        list(&ours),
        list(&theirs),
        "dpkg-query -W differs from debootstrap's"
    );
    let audit = chroot(&ours, &["dpkg", "--audit"]);
    assert!(
        audit.stdout.is_empty(),
        "dpkg --audit: {}",
        String::from_utf8_lossy(&audit.stdout)
    );
    chroot(&ours, &["apt-get", "check"]);

    let diffs = tree::differences(&tree::snapshot(&ours), &tree::snapshot(&theirs));
    for line in &diffs {
        eprintln!("{suite}: {line}");
    }
    eprintln!("{suite}: {} tree differences from debootstrap", diffs.len());
    assert!(
        diffs.is_empty(),
        "{suite}: the tree differs from debootstrap's in {} places (listed above)",
        diffs.len()
    );

    // apt inside works against the sources we wrote.
    chroot(&ours, &["apt-get", "update", "-q"]);
    chroot(
        &ours,
        &[
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "-q",
            "hello",
        ],
    );
    let hello = chroot(&ours, &["hello"]);
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout).trim(),
        "Hello, world!"
    );
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn real_archive_root_trixie_minbase_is_equivalent_to_debootstrap() {
    equivalent_to_debootstrap("trixie");
}

#[test]
fn real_archive_root_bookworm_minbase_is_equivalent_to_debootstrap() {
    equivalent_to_debootstrap("bookworm");
}

#[test]
fn real_archive_root_refuses_a_non_empty_target_and_leaves_it_alone() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let target = dir.path().join("occupied");
    fs_err::create_dir(&target).expect("mkdir");
    fs_err::write(target.join("keep"), b"mine").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "--cache-dir"])
        .arg(shared_cache())
        .arg("trixie")
        .arg(&target)
        .arg(&mirror)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--force") && stderr.contains(&*target.to_string_lossy()),
        "{stderr}"
    );
    assert_eq!(fs_err::read(target.join("keep")).expect("kept"), b"mine");
    let leftovers: Vec<_> = fs_err::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "a refused build left files beside TARGET: {leftovers:?}"
    );
}

#[test]
fn real_archive_root_variant_extract_unpacks_without_configuring() {
    let Some(mirror) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let root = dir.path().join("extract");
    let printed = run(Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args([
            "build",
            "--print-packages",
            "--variant",
            "extract",
            "--include",
            "dpkg,hello",
            "--cache-dir",
        ])
        .arg(shared_cache())
        .arg("trixie")
        .arg(&root)
        .arg(&mirror));
    let wanted: Vec<String> = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .map(|l| l.replace(' ', "\t"))
        .collect();
    assert!(
        wanted.iter().any(|l| l.starts_with("hello\t")),
        "{wanted:?}"
    );
    run(Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args([
            "build",
            "--variant",
            "extract",
            "--include",
            "dpkg,hello",
            "--cache-dir",
        ])
        .arg(shared_cache())
        .arg("trixie")
        .arg(&root)
        .arg(&mirror));
    let listed = String::from_utf8(chroot(&root, &["dpkg-query", "-W"]).stdout).expect("utf-8");
    // dpkg-query names Multi-Arch: same packages NAME:ARCH.
    let listed: Vec<String> = listed
        .lines()
        .map(|l| l.replacen(&format!(":{}\t", support::native_arch()), "\t", 1))
        .collect();
    assert_eq!(
        listed, wanted,
        "dpkg-query -W lists exactly the resolved packages"
    );
    let states =
        String::from_utf8(chroot(&root, &["dpkg-query", "-W", "-f", "${Status}\n"]).stdout)
            .expect("utf-8");
    assert!(
        states.lines().all(|s| s == "install ok unpacked"),
        "extract configured something: {states}"
    );
    let verify = chroot(&root, &["dpkg", "--verify"]);
    assert!(
        verify.stdout.is_empty(),
        "dpkg --verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // Against the packages themselves, read by tools we did not write: every member that
    // `dpkg-deb -c` lists is in the root as that type (with its size or link target), and the
    // md5sums a package ships check out with md5sum.
    let debs = cached_debs(&wanted);
    assert_eq!(
        debs.len(),
        wanted.len(),
        "a resolved package is not in the cache"
    );
    let mut checked = 0;
    for deb in &debs {
        checked += matches_dpkg_deb_listing(&root, deb);
        check_shipped_md5sums(&root, deb);
    }
    eprintln!(
        "{checked} members of {} packages found as dpkg-deb lists them",
        debs.len()
    );
    assert!(mounts_under(&root).is_empty());
}

/// The cached .debs whose `Package\tVersion` (read by dpkg-deb) is one of `wanted`.
fn cached_debs(wanted: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir(shared_cache().join("debs")).expect("shared cache") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "deb") {
            continue;
        }
        // The shared cache also holds other architectures' builds of the same versions.
        let fields = run(Command::new("dpkg-deb")
            .args([
                "--show",
                "--showformat",
                "${Package}\t${Version}\t${Architecture}",
            ])
            .arg(&path));
        let fields = String::from_utf8_lossy(&fields.stdout).into_owned();
        let Some((id, arch)) = fields.rsplit_once('\t') else {
            continue;
        };
        if wanted.iter().any(|w| w == id) && (arch == "all" || arch == support::native_arch()) {
            found.push(path);
        }
    }
    found
}

/// Asserts every member `dpkg-deb -c` lists for `deb` is in `root` as listed; returns how many.
fn matches_dpkg_deb_listing(root: &Path, deb: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let listing = String::from_utf8(listing.stdout).expect("utf-8");
    let mut count = 0;
    for line in listing.lines() {
        // perms owner size date time name [-> target | link to target]
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() >= 6, "unexpected dpkg-deb -c line: {line}");
        let perms = words[0];
        let size: u64 = words[2].parse().expect("size is a number");
        let rest = words[5..].join(" ");
        let (name, target) = match rest.split_once(" -> ") {
            Some((name, target)) => (name.to_string(), Some(target.to_string())),
            None => (
                rest.split(" link to ").next().expect("name").to_string(),
                None,
            ),
        };
        let rel = name.trim_start_matches("./").trim_end_matches('/');
        if rel.is_empty() {
            continue;
        }
        let path = root.join(rel);
        let what = format!("{}: {line}", deb.display());
        match perms.as_bytes()[0] {
            // A directory may be reached through the merged-/usr links (bin -> usr/bin).
            b'd' => assert!(path.is_dir(), "not a directory in the root: {what}"),
            b'-' => {
                let meta = fs_err::symlink_metadata(&path)
                    .unwrap_or_else(|e| panic!("missing from the root ({e}): {what}"));
                assert!(meta.is_file(), "not a regular file in the root: {what}");
                assert_eq!(meta.size(), size, "size differs: {what}");
            }
            b'l' => assert_eq!(
                std::fs::read_link(&path)
                    .unwrap_or_else(|e| panic!("not a symlink in the root ({e}): {what}"))
                    .to_string_lossy(),
                target.expect("a symlink has a target"),
                "link target differs: {what}"
            ),
            b'h' => assert!(path.is_file(), "hard link missing: {what}"),
            other => panic!("unexpected member type {}: {what}", other as char),
        }
        count += 1;
    }
    count
}

/// Runs host md5sum in `root` on the md5sums file `deb` ships, if it ships one.
fn check_shipped_md5sums(root: &Path, deb: &Path) {
    let control = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(control.path()));
    let md5sums = control.path().join("md5sums");
    if !md5sums.exists() {
        return;
    }
    run(Command::new("md5sum")
        .args(["--check", "--quiet", "--strict"])
        .arg(&md5sums)
        .current_dir(root));
}
