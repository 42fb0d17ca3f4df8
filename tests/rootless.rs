//! Rootless builds refuse at once, with the fix in one line and nothing written, when a
//! prerequisite is missing: a subordinate id range, newuidmap, user namespaces (disabled by
//! their sysctl in a namespace of the test's own), the host-side onion files, a TARGET whose
//! parent another user owns. No request is made: the mirror is a closed port on 127.0.0.1.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::repo::{key_path, sample_packages, RepoSpec, Served};
use support::rootless::{self, User, Workdir};

/// A mirror nothing listens on: a build that got as far as fetching would fail differently.
const NO_MIRROR: &str = "http://127.0.0.1:9/debian";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a usage refusal (exit 2) whose one error line holds every needle, and that neither
/// TARGET nor the cache exists afterwards.
fn assert_refused(out: &Output, needles: &[&str], target: &Path, cache: &Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit code; stderr:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"));
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    }
    assert!(!target.exists(), "{} was created", target.display());
    assert!(!cache.exists(), "{} was created", cache.display());
}

fn build_args<'a>(target: &'a str, cache: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["build", "trixie", target, NO_MIRROR, "--cache-dir", cache];
    args.extend_from_slice(extra);
    args
}

fn setup() -> Option<(User, Workdir)> {
    let user = rootless::user()?;
    let work = Workdir::new(&user);
    Some((user, work))
}

#[test]
fn root_a_user_without_subordinate_ids_is_told_the_usermod_command() {
    let Some((_, work)) = setup() else { return };
    // nobody has no range in /etc/subuid on a Debian host.
    let nobody = User {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
        subuid: 0,
        subgid: 0,
    };
    let (target, cache) = (work.path().join("root"), work.path().join("cache"));
    let out = rootless::run_as(
        &nobody,
        &work,
        &build_args(
            target.to_str().expect("utf-8"),
            cache.to_str().expect("utf-8"),
            &["--no-onion"],
        ),
        &[],
    );
    assert_refused(
        &out,
        &["nobody", "/etc/subuid", "usermod --add-subuids"],
        &target,
        &cache,
    );
}

#[test]
fn root_without_newuidmap_the_uidmap_package_is_named() {
    let Some((user, work)) = setup() else { return };
    let (target, cache) = (work.path().join("root"), work.path().join("cache"));
    // A PATH without newuidmap (nor anything else).
    let out = rootless::command_as(
        &user,
        &work,
        &build_args(
            target.to_str().expect("utf-8"),
            cache.to_str().expect("utf-8"),
            &["--no-onion"],
        ),
    )
    .env("PATH", work.path().join("empty"))
    .output()
    .expect("setpriv");
    assert_refused(
        &out,
        &["newuidmap", "apt-get install uidmap"],
        &target,
        &cache,
    );
}

#[test]
fn root_with_user_namespaces_disabled_the_sysctl_to_change_is_named() {
    let Some((_, work)) = setup() else { return };
    let (target, cache) = (work.path().join("root"), work.path().join("cache"));
    // In a user namespace of the test's own, no further one may be made; the tool, root there,
    // is asked for unshare mode.
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} build trixie {} {NO_MIRROR} \
         --cache-dir {} --no-onion --mode unshare",
        work.binary.display(),
        target.display(),
        cache.display()
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .expect("unshare");
    assert_refused(
        &out,
        &[
            "user.max_user_namespaces is 0",
            "sysctl -w user.max_user_namespaces=",
        ],
        &target,
        &cache,
    );
}

#[test]
fn root_mode_root_as_a_user_is_refused_with_the_alternative() {
    let Some((user, work)) = setup() else { return };
    let (target, cache) = (work.path().join("root"), work.path().join("cache"));
    let t = target.to_str().expect("utf-8");
    let c = cache.to_str().expect("utf-8");
    let out = rootless::run_as(&user, &work, &build_args(t, c, &["--mode", "root"]), &[]);
    assert_refused(
        &out,
        &["--mode root needs root", "--mode unshare"],
        &target,
        &cache,
    );
}

#[test]
fn root_a_rootless_onion_build_to_a_directory_asks_for_host_root() {
    let Some((user, work)) = setup() else { return };
    let (target, cache) = (work.path().join("root"), work.path().join("cache"));
    let t = target.to_str().expect("utf-8");
    let c = cache.to_str().expect("utf-8");
    let out = rootless::run_as(&user, &work, &build_args(t, c, &[]), &[]);
    assert_refused(&out, &["--host-root DIR", "--no-onion"], &target, &cache);
}

#[test]
fn root_a_rootless_target_under_another_users_directory_is_refused_before_the_namespace() {
    let Some((user, work)) = setup() else { return };
    // Owned by nobody (and writable only by them): inside the namespace every unmapped owner
    // looks alike (the overflow id, as the host's root does), so only the caller's own check,
    // with the host's ids, sees it.
    let theirs = work.path().join("theirs");
    fs_err::create_dir(&theirs).expect("mkdir");
    rustix::fs::chown(
        &theirs,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .expect("chown");
    fs_err::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (target, cache) = (theirs.join("root"), work.path().join("cache"));
    let t = target.to_str().expect("utf-8");
    let c = cache.to_str().expect("utf-8");
    let out = rootless::run_as(&user, &work, &build_args(t, c, &["--no-onion"]), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        line.contains("refusing TARGET") && line.contains(theirs.to_str().expect("utf-8")),
        "{err}"
    );
    assert!(!target.exists(), "TARGET was created");
    assert!(!cache.exists(), "the cache was created: the build went on");
}

#[test]
fn root_print_packages_and_download_only_run_as_a_user_without_a_namespace() {
    let Some((user, work)) = setup() else { return };
    let served = Served::start(
        &RepoSpec::fresh(),
        "test-archive.sec.asc",
        &sample_packages(),
    );
    // The fixture key, where the user can read it.
    let key = work.path().join("key.asc");
    fs_err::copy(key_path("test-archive.pub.asc"), &key).expect("copy the key");
    let arch = support::native_arch();
    let run = |what: &str| {
        // No newuidmap on PATH: a namespace would be refused, so success shows none was made.
        let args = ["build", what, "--no-onion", "--arch", &arch, "--keyring"];
        rootless::command_as(&user, &work, &args)
            .arg(&key)
            .args(["fixture", "-", &served.server.url])
            .env("PATH", work.path().join("empty"))
            .output()
            .expect("setpriv")
    };
    let printed = run("--print-packages");
    support::host::assert_ok("--print-packages as a user", &printed);
    let listed = String::from_utf8_lossy(&printed.stdout);
    assert!(listed.lines().any(|l| l.starts_with("base ")), "{listed}");

    let downloaded = run("--download-only");
    support::host::assert_ok("--download-only as a user", &downloaded);
    // The default cache of a user is under their home, and theirs.
    let cache = work.path().join(".cache/debstrap-onion");
    let mut debs = Vec::new();
    let mut stack = vec![cache.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).expect("read the cache").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "deb") {
                debs.push(path);
            }
        }
    }
    assert!(!debs.is_empty(), "no .deb under {}", cache.display());
    for deb in &debs {
        let owner = std::os::unix::fs::MetadataExt::uid(&fs_err::metadata(deb).expect("stat"));
        assert_eq!(owner, user.uid, "{} is not the user's", deb.display());
    }
}
