//! Prerequisites of tests that use the host: the real archive's mirror (from the host's apt
//! sources) and host programs. A missing one is handled by the suite's one skip rule
//! ([`super::skip`]): a failure under a truthy CI, else a recorded skip.

use std::path::Path;

#[allow(unused_imports)] // each test binary uses its own part of them
pub use super::skip::{in_ci, missing, require_root};

/// The Debian mirror from the host's apt sources.
pub fn host_mirror() -> Option<String> {
    match debstrap_onion::config::discover_mirror(None, None, Path::new("/etc/apt")) {
        Ok(url) => Some(url),
        Err(err) => {
            missing(&format!(
                "a Debian mirror in the host's apt sources ({err})"
            ));
            None
        }
    }
}

/// Whether `program` is on PATH.
pub fn require_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if !found {
        missing(&format!("the host program {program}"));
    }
    found
}

/// Runs `shell` through real schroot in chroot NAME as USER, with the definition written
/// under `host_root`: schroot reads only /etc/schroot, so a copy holding our files is bound over
/// it in a private mount namespace and the host's /etc is never written. When `host_root` has
/// its own passwd and group (a test seeded them from the host's), those are bound over the
/// host's too, so schroot finds a user the build added there.
pub fn schroot_as(host_root: &Path, name: &str, user: &str, shell: &str) -> std::process::Output {
    let etc = tempfile::tempdir().expect("tempdir");
    for source in [Path::new("/etc/schroot"), &host_root.join("etc/schroot")] {
        let copy = std::process::Command::new("cp")
            .arg("-a")
            .arg(source.join("."))
            .arg(etc.path())
            .status()
            .expect("cp");
        assert!(
            copy.success(),
            "cannot copy {} (is schroot installed?)",
            source.display()
        );
    }
    let mut binds = String::new();
    for db in ["passwd", "group", "shadow", "gshadow"] {
        let ours = host_root.join("etc").join(db);
        if ours.is_file() {
            binds.push_str(&format!("mount --bind {} /etc/{db} && ", ours.display()));
        }
    }
    let script = format!(
        "mount --make-rprivate / && {binds}mount --bind {} /etc/schroot && exec schroot -c {name} -u {user} --directory / -- sh -c '{shell}'",
        etc.path().display()
    );
    std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("unshare")
}

/// The cache every real-archive build of this run shares: entries are verified on use, and
/// sharing it exercises two builds using one cache.
pub fn shared_cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-archive-cache")
}

/// Runs `cmd` and returns its output, failing the test (with both streams) unless it exits 0.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_ok(&format!("{cmd:?}"), &out);
    out
}

/// Fails the test, showing both streams, unless `out` (of `what`) exited 0.
pub fn assert_ok(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
