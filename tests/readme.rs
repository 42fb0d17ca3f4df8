//! The README's set-up commands are the truth: the main command (between the `main-command`
//! markers) runs literally in a fresh clone and gives a working onion chroot, and the test
//! command (between the `test-command` markers) is exactly what .ci/run extracts and runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::host::{host_mirror, missing, require_program, require_root};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    fs_err::read_to_string(manifest_dir().join("README.md")).expect("README.md")
}

/// The fenced block between `<!-- NAME -->` and `<!-- /NAME -->`, without its fences.
fn marked_block(readme: &str, name: &str) -> String {
    let open = format!("<!-- {name} -->");
    let close = format!("<!-- /{name} -->");
    let start = readme
        .find(&open)
        .unwrap_or_else(|| panic!("README.md has no {open} marker"))
        + open.len();
    let end = start
        + readme[start..]
            .find(&close)
            .unwrap_or_else(|| panic!("README.md has no {close} marker"));
    let mut lines = readme[start..end]
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1);
    let body: Vec<&str> = lines
        .by_ref()
        .take_while(|l| !l.starts_with("```"))
        .collect();
    body.join("\n")
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// .ci/run extracts the test command with a sed pipeline; run that very pipeline (read from
/// .ci/run, so a change there is tested too) and compare it with the block between the markers.
#[test]
fn readme_test_command_is_what_ci_runs() {
    let ci = fs_err::read_to_string(manifest_dir().join(".ci/run")).expect(".ci/run");
    let line = ci
        .lines()
        .find(|l| l.starts_with("test_command=$("))
        .expect(".ci/run assigns test_command=$(...)");
    let pipeline = line
        .strip_prefix("test_command=$(")
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("test_command=$(PIPELINE) on one line");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", pipeline])
        .current_dir(manifest_dir())
        .output()
        .expect("run the pipeline of .ci/run");
    assert!(out.status.success(), "{}", output_text(&out));
    let extracted = String::from_utf8(out.stdout).expect("UTF-8");
    // $(...) drops trailing newlines.
    let ci_command = extracted.trim_end_matches('\n');

    let ours = marked_block(&readme(), "test-command");
    assert!(!ours.trim().is_empty(), "the test-command block is empty");
    assert_eq!(ci_command, ours);
}

#[test]
fn readme_main_command_block_is_one_non_empty_command() {
    let command = marked_block(&readme(), "main-command");
    assert!(
        !command.trim().is_empty(),
        "the main-command block is empty"
    );
    assert!(
        command.contains("debstrap-onion build"),
        "the main command does not build:\n{command}"
    );
}

/// Host directories the default build writes (the chroot, tor's configuration and key, the
/// schroot definition, the systemd unit, the .deb cache): each gets a tmpfs in the test's
/// private mount namespace.
const HOST_DIRS: [&str; 5] = [
    "/srv",
    "/etc/tor",
    "/etc/schroot",
    "/etc/systemd/system",
    "/var/lib/tor",
];

/// Clones the repository (so what is checked is what is committed) and runs the README's main
/// command in it with `bash -c`, literally, as root, inside `unshare --mount --propagation
/// private` with a tmpfs over /srv, /etc/tor, /etc/schroot, /etc/systemd/system and
/// /var/lib/tor, and over
/// /var/cache with the shared real-archive cache bound at /var/cache/debstrap-onion: the build's
/// writes land there and vanish with the namespace, the host is untouched. The clone's
/// `target` is a link to a directory under CARGO_TARGET_TMPDIR so the release build is reused
/// across runs (CARGO_TARGET_DIR cannot be used: the command runs ./target/release/...).
/// The command says `sudo`; we are root already, so where sudo is not installed a shim
/// (`exec "$@"`) is put first on the child's PATH.
#[test]
fn real_archive_root_readme_main_command_runs_literally() {
    if !require_root() || !require_program("unshare") || !require_program("git") {
        return;
    }
    if host_mirror().is_none() {
        return;
    }
    for dir in HOST_DIRS {
        if !Path::new(dir).is_dir() {
            // Creating the mount point would write the host; .ci/run installs tor, schroot and
            // systemd.
            missing(&format!(
                "the directory {dir} (tor, schroot and systemd installed)"
            ));
            return;
        }
    }
    let host_chroot = Path::new("/srv/chroot/onion");
    let chroot_before = host_chroot.exists();
    let torrc_before = fs_err::read("/etc/tor/torrc").ok();

    let shared = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target_dir = shared.join("readme-target");
    let cache = shared.join("real-archive-cache");
    fs_err::create_dir_all(&target_dir).expect("create the release target dir");
    fs_err::create_dir_all(&cache).expect("create the cache dir");

    let work = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let clone = work.path().join("debstrap-onion");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(manifest_dir())
        .arg(&clone)
        .stdin(Stdio::null())
        .output()
        .expect("run git clone");
    assert!(out.status.success(), "git clone: {}", output_text(&out));
    std::os::unix::fs::symlink(&target_dir, clone.join("target")).expect("link target/");
    // The committed README, as a newcomer's clone has it.
    let readme = fs_err::read_to_string(clone.join("README.md")).expect("README.md in the clone");
    let command = marked_block(&readme, "main-command");
    assert!(
        !command.trim().is_empty(),
        "the main-command block is empty"
    );

    let mut path = std::env::var_os("PATH").unwrap_or_default();
    let have_sudo = std::env::split_paths(&path).any(|dir| dir.join("sudo").is_file());
    if !have_sudo {
        let shim = work.path().join("shim");
        fs_err::create_dir(&shim).expect("shim dir");
        fs_err::write(shim.join("sudo"), "#!/bin/sh\nexec \"$@\"\n").expect("write sudo shim");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(shim.join("sudo"), mode).expect("chmod sudo shim");
        let mut paths = vec![shim];
        paths.extend(std::env::split_paths(&path));
        path = std::env::join_paths(paths).expect("PATH");
    }

    // Mounts first (any failure stops the script before the build), then the command, then the
    // checks, all inside the namespace, which goes away with the script.
    let script = r#"set -eu
for dir in /srv /etc/tor /etc/schroot /etc/systemd/system /var/lib/tor /var/cache; do
    mount -t tmpfs -o mode=0755 none "$dir"
done
# As Debian's tor package leaves its data directory, which tor --verify-config checks.
if id debian-tor >/dev/null 2>&1; then
    chown debian-tor:debian-tor /var/lib/tor
    chmod 2700 /var/lib/tor
fi
mkdir /var/cache/debstrap-onion
mount --bind "$README_CACHE" /var/cache/debstrap-onion
cd "$README_CLONE"
bash -c "$README_COMMAND"
test -x /srv/chroot/onion/usr/sbin/nginx
echo "hostname: $(cat /var/lib/tor/onion/hostname)"
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("README_CACHE", &cache)
        .env("README_CLONE", &clone)
        .env("README_COMMAND", &command)
        .env("PATH", &path)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let text = output_text(&out);
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "the README's main command failed: {text}"
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    let hostname = stdout
        .lines()
        .find_map(|l| l.strip_prefix("hostname: "))
        .unwrap_or_else(|| panic!("no hostname printed: {text}"));
    assert!(
        hostname.ends_with(".onion") && hostname.len() == 62,
        "not a v3 onion hostname: {hostname:?}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| !l.starts_with("hostname: ") && l.contains(hostname)),
        "the build's report does not show the address {hostname}: {text}"
    );

    // The namespace is gone: nothing of the build is left on the host.
    assert_eq!(
        host_chroot.exists(),
        chroot_before,
        "the host's /srv changed"
    );
    assert_eq!(
        fs_err::read("/etc/tor/torrc").ok(),
        torrc_before,
        "the host's torrc changed"
    );
    for dir in HOST_DIRS {
        assert!(
            !mount_points().iter().any(|p| p == dir),
            "a tmpfs over {dir} leaked out of the namespace"
        );
    }
}

fn mount_points() -> Vec<PathBuf> {
    fs_err::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}
