//! The edges users meet, through the command line: odd TARGETs (unknown archive suffixes, a
//! directory named like an archive, a mount point, `-` on a terminal), an empty SUITE, repeated
//! components, a `nodev` or `noexec` temporary directory, the modes of files from the host, and
//! the README's main command as root without sudo and as a user with it.
//!
//! Mounts a test needs are made in a private mount namespace (`unshare --mount`) that only its
//! child lives in, so nothing is left mounted on any path, whatever happens.

mod support;

use support::host::shared_cache;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::deb::DebBuilder;
use support::host::{host_mirror, require_program, require_root};
use support::repo::{key_path, FakeDeb, RepoSpec, Served};

const BIN: &str = env!("CARGO_BIN_EXE_debstrap-onion");
/// Nothing listens here: a build that reaches the network fails naming it.
const NO_MIRROR: &str = "http://127.0.0.1:9/debian";
const EPOCH: &str = "1700000000";

/// The binary with a clean environment and no stdin.
fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DEBSTRAP_LOG")
        .stdin(Stdio::null());
    cmd
}

/// `unshare --mount --propagation private sh -c SCRIPT` with the binary's clean environment;
/// the script gets the binary as `$0`.
fn in_namespace(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        BIN,
    ])
    .env_remove("DEBSTRAP_MIRROR")
    .env_remove("SOURCE_DATE_EPOCH")
    .env_remove("DEBSTRAP_LOG")
    .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts exit `code` with a first `error:` line containing every needle, and no sign that the
/// network was tried.
fn refused(out: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    let first = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    for needle in needles {
        assert!(first.contains(needle), "no {needle:?} in the error:\n{err}");
    }
    assert!(
        !err.contains("127.0.0.1:9") && !err.contains("==> "),
        "work started before the refusal:\n{err}"
    );
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").expect("temp dir")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// --- 2. unknown archive suffixes ------------------------------------------------------------

#[test]
fn an_archive_suffix_we_do_not_write_is_refused_listing_the_formats() {
    for name in ["root.tar.lz4", "root.tar.bz2", "root.txz"] {
        let dir = scratch();
        let target = dir.path().join(name);
        let out = run(bin()
            .args(["build", "--no-onion", "trixie"])
            .arg(&target)
            .arg(NO_MIRROR));
        refused(&out, 2, &[name, ".tar.gz", ".tar.xz", ".tar.zst"]);
        assert!(entries(dir.path()).is_empty(), "{name}: something was made");
    }
}

// --- 3. a tarball to a terminal -------------------------------------------------------------

/// `script` gives the build a pseudo-terminal as standard output.
#[test]
fn a_tarball_on_stdout_is_refused_when_stdout_is_a_terminal() {
    if !require_program("script") {
        return;
    }
    let command = format!("{BIN} build --no-onion trixie - {NO_MIRROR}");
    let out = run(Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null()));
    // Through the terminal, stderr arrives on script's stdout.
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(seen.contains("standard output is a terminal"), "{seen}");
    assert!(!seen.contains("==> "), "work started:\n{seen}");
}

// --- 5. empty or malformed SUITE --------------------------------------------------------------

#[test]
fn an_empty_or_malformed_suite_is_a_usage_error_before_the_network() {
    for suite in ["", "../stable", "tri xie"] {
        let dir = scratch();
        let target = dir.path().join("target");
        let out = run(bin()
            .args(["build", "--no-onion", suite])
            .arg(&target)
            .arg(NO_MIRROR));
        refused(&out, 2, &["invalid SUITE", &format!("{suite:?}")]);
        assert!(!target.exists());
    }
}

// --- fixture builds (extract variant: no maintainer scripts) --------------------------------

/// A signed fixture repository of one real (tiny) package, served on 127.0.0.1.
fn fixture(packages: &[(&str, DebBuilder)]) -> Served {
    let debs: Vec<FakeDeb> = packages
        .iter()
        .map(|(name, deb)| FakeDeb::new(name, "1.0", &[("Priority", "required")], deb.build()))
        .collect();
    Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &debs)
}

fn good_package() -> DebBuilder {
    DebBuilder::new("good", "1.0", &crate::support::native_arch())
        .dir("./", 0o755)
        .dir("./usr", 0o755)
        .file("./usr/good", 0o644, b"fine")
}

/// `build --no-onion --variant extract --include PKGS` from the fixture into `target`.
fn fixture_build(served: &Served, include: &str, target: &Path, extra: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.args([
        "build",
        "--no-onion",
        "--variant",
        "extract",
        "--arch",
        &crate::support::native_arch(),
    ])
    .args(["--include", include, "--keyring"])
    .arg(key_path("test-archive.pub.asc"))
    .arg("--cache-dir")
    .arg(served.dir.path().join("cache"))
    .args(extra)
    .arg("fixture")
    .arg(target)
    .arg(&served.server.url);
    cmd
}

// --- 4. a directory named like an archive -----------------------------------------------------

#[test]
fn root_an_existing_directory_named_like_an_archive_stays_a_directory() {
    if !require_root() {
        return;
    }
    let served = fixture(&[("good", good_package())]);
    let target = served.dir.path().join("old.tar.gz");
    fs_err::create_dir(&target).expect("mkdir");
    let out = run(&mut fixture_build(&served, "good", &target, &[]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(target.is_dir(), "TARGET is no longer a directory");
    assert_eq!(
        fs_err::read(target.join("usr/good")).expect("the root is in the directory"),
        b"fine"
    );
}

#[test]
fn root_a_non_empty_directory_named_like_an_archive_is_refused_at_once() {
    if !require_root() {
        return;
    }
    let dir = scratch();
    let target = dir.path().join("old.tar");
    fs_err::create_dir(&target).expect("mkdir");
    fs_err::write(target.join("keep"), "mine").expect("write");
    let out = run(bin()
        .args(["build", "--no-onion", "trixie"])
        .arg(&target)
        .arg(NO_MIRROR));
    refused(&out, 1, &["old.tar", "not empty"]);
    assert_eq!(entries(&target), ["keep"]);
}

// --- 7. a mount point as TARGET ---------------------------------------------------------------

/// Mounts `$EXT4_IMAGE` through a loop device (released with the mount, when the namespace
/// ends) or else a tmpfs on `$1` (mode 1777, as tmpfs makes it; with an empty lost+found, as mkfs.ext4 leaves one), builds into it,
/// then shows what is there and whether it is still a mount point, all in the namespace.
const MOUNT_AND_BUILD: &str = r#"set -u
if [ -n "${EXT4_IMAGE:-}" ]; then
    mount -o loop "$EXT4_IMAGE" "$1" || exit 90
else
    mount -t tmpfs none "$1" || exit 90
    mkdir "$1/lost+found"
fi
[ -z "${SEED:-}" ] || echo seed > "$1/$SEED"
[ -z "${MOUNT_OWNER:-}" ] || { chown "$MOUNT_OWNER" "$1" && chmod 0755 "$1"; } || exit 91
shift
"$0" "$@"; echo "build-exit: $?"
"#;

/// Runs the fixture build in a namespace where TARGET is a fresh tmpfs; returns the output, and
/// a listing of TARGET and its mount state printed before the namespace ends.
fn build_into_mount_point(
    served: &Served,
    include: &str,
    extra: &[&str],
    seed: Option<&str>,
    ext4_image: Option<&Path>,
    owner: Option<&str>,
) -> String {
    let target = served.dir.path().join("mnt");
    fs_err::create_dir(&target).expect("mount point");
    let build = fixture_build(served, include, &target, extra);
    let args: Vec<&std::ffi::OsStr> = build.get_args().collect();
    let script = format!(
        "{MOUNT_AND_BUILD}cd {t} && find . | sort; findmnt -n -o TARGET --mountpoint {t} && echo mounted; \
         stat -c 'root-mode: %a' {t}",
        t = target.display()
    );
    let mut cmd = in_namespace(&script);
    cmd.arg(&target).args(args);
    if let Some(seed) = seed {
        cmd.env("SEED", seed);
    }
    if let Some(image) = ext4_image {
        cmd.env("EXT4_IMAGE", image);
    }
    if let Some(owner) = owner {
        cmd.env("MOUNT_OWNER", owner);
    }
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !debstrap_onion::stage::is_mount_point(&target),
        "the tmpfs leaked out of the namespace"
    );
    let beside: Vec<String> = entries(served.dir.path())
        .into_iter()
        .filter(|n| n.starts_with(".mnt"))
        .collect();
    assert!(beside.is_empty(), "left beside the mount point: {beside:?}");
    text(&out)
}

#[test]
fn root_an_empty_mount_point_with_lost_found_is_built_in_place() {
    if !require_root() || !require_program("unshare") || !require_program("findmnt") {
        return;
    }
    let served = fixture(&[("good", good_package())]);
    let seen = build_into_mount_point(&served, "good", &[], None, None, None);
    assert!(seen.contains("build-exit: 0"), "{seen}");
    for line in [
        "./lost+found\n",
        "./usr/good\n",
        "mounted\n",
        "root-mode: 755\n",
    ] {
        assert!(seen.contains(line), "no {line:?}:\n{seen}");
    }
}

/// A fresh ext4 filesystem, as mkfs.ext4 makes it (with its own lost+found), loop-mounted.
#[test]
fn root_a_fresh_ext4_mount_point_is_built_in_place() {
    if !require_root()
        || !require_program("unshare")
        || !require_program("findmnt")
        || !require_program("mkfs.ext4")
        || !require_program("losetup")
    {
        return;
    }
    let served = fixture(&[("good", good_package())]);
    let image = served.dir.path().join("fs.img");
    fs_err::File::create(&image)
        .and_then(|f| f.set_len(128 << 20))
        .expect("image file");
    let out = run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    assert!(out.status.success(), "{}", text(&out));
    let seen = build_into_mount_point(&served, "good", &[], None, Some(&image), None);
    assert!(seen.contains("build-exit: 0"), "{seen}");
    for line in [
        "./lost+found\n",
        "./usr/good\n",
        "mounted\n",
        "root-mode: 755\n",
    ] {
        assert!(seen.contains(line), "no {line:?}:\n{seen}");
    }
}

#[test]
fn root_a_failed_build_in_a_mount_point_empties_it_but_lost_found() {
    if !require_root() || !require_program("unshare") || !require_program("findmnt") {
        return;
    }
    let evil = DebBuilder::new("evil", "1.0", &crate::support::native_arch())
        .symlink("./usr/evil-link", "/../../../outside")
        .file("./usr/evil-link/planted", 0o644, b"escaped");
    let served = fixture(&[("good", good_package()), ("evil", evil)]);
    let seen = build_into_mount_point(&served, "good,evil", &[], None, None, None);
    assert!(seen.contains("build-exit: 1"), "{seen}");
    assert!(
        seen.contains("evil"),
        "the error does not name the package:\n{seen}"
    );
    let listing: Vec<&str> = seen.lines().filter(|l| l.starts_with('.')).collect();
    assert_eq!(listing, [".", "./lost+found"], "{seen}");
    assert!(seen.contains("mounted\n"), "{seen}");
}

/// Whoever owns the root directory of a mount point could rename what the build makes in it
/// and have root run their files: such a TARGET is refused before anything is written.
#[test]
fn root_a_mount_point_owned_by_another_user_is_refused() {
    if !require_root() || !require_program("unshare") || !require_program("findmnt") {
        return;
    }
    let served = fixture(&[("good", good_package())]);
    let seen = build_into_mount_point(&served, "good", &[], None, None, Some("nobody"));
    assert!(seen.contains("build-exit: 1"), "{seen}");
    assert!(seen.contains("owned by uid"), "{seen}");
    let listing: Vec<&str> = seen.lines().filter(|l| l.starts_with('.')).collect();
    assert_eq!(listing, [".", "./lost+found"], "{seen}");
}

#[test]
fn root_a_mount_point_holding_files_is_refused_even_with_force() {
    if !require_root() || !require_program("unshare") || !require_program("findmnt") {
        return;
    }
    let served = fixture(&[("good", good_package())]);
    let seen = build_into_mount_point(&served, "good", &["--force"], Some("precious"), None, None);
    assert!(seen.contains("build-exit: 1"), "{seen}");
    assert!(seen.contains("is a mount point holding files"), "{seen}");
    assert!(
        seen.contains("./precious\n") && !seen.contains("./usr"),
        "{seen}"
    );
    assert!(seen.contains("mounted\n"), "{seen}");
}

// --- 1. nodev / noexec where the root is built --------------------------------------------------

#[test]
fn root_a_noexec_build_place_is_refused_before_any_work_naming_mount_and_option() {
    if !require_root() || !require_program("unshare") {
        return;
    }
    let dir = scratch();
    let place = dir.path().join("noexec");
    fs_err::create_dir(&place).expect("mkdir");
    let out = run(in_namespace(
        "mount -t tmpfs -o noexec none \"$1\" || exit 90; TMPDIR=\"$1\" exec \"$0\" build --no-onion trixie \"$1/root.tar\" \"$2\"",
    )
    .arg(&place)
    .arg(NO_MIRROR));
    refused(&out, 1, &["noexec", &place.display().to_string()]);
}

/// A tarball whose directory another user owns has its root built in TMPDIR instead; that
/// place gets the same check, so a noexec TMPDIR is refused before any work.
#[test]
fn root_a_tarball_whose_parent_another_user_owns_is_built_in_tmpdir_saying_so_once() {
    if !require_root() {
        return;
    }
    let served = fixture(&[("good", good_package())]);
    let theirs = served.dir.path().join("theirs");
    fs_err::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    let tmp = served.dir.path().join("tmp");
    fs_err::create_dir(&tmp).expect("mkdir");
    let target = theirs.join("root.tar");
    let out = run(fixture_build(&served, "good", &target, &[]).env("TMPDIR", &tmp));
    assert!(out.status.success(), "{}", text(&out));
    assert!(target.is_file(), "no tarball");
    let said = text(&out).matches("building the root in").count();
    assert_eq!(
        said,
        1,
        "the fallback is said {said} times:\n{}",
        text(&out)
    );
    assert!(
        entries(&tmp).is_empty(),
        "left in TMPDIR: {:?}",
        entries(&tmp)
    );
}

#[test]
fn root_the_temporary_place_a_tarball_falls_back_to_is_checked_for_noexec() {
    if !require_root() || !require_program("unshare") {
        return;
    }
    let dir = scratch();
    let place = dir.path().join("noexec");
    fs_err::create_dir(&place).expect("mkdir");
    let theirs = dir.path().join("theirs");
    fs_err::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    let out = run(in_namespace(
        "mount -t tmpfs -o noexec none \"$1\" || exit 90; TMPDIR=\"$1\" exec \"$0\" build --no-onion trixie \"$3/root.tar\" \"$2\"",
    )
    .arg(&place)
    .arg(NO_MIRROR)
    .arg(&theirs));
    refused(&out, 1, &["noexec", &place.display().to_string()]);
    assert!(
        entries(&theirs).is_empty(),
        "something was made in {theirs:?}"
    );
}

/// The root built with TMPDIR and TARGET on a `nodev` tmpfs is the root built on the disk: with
/// the same SOURCE_DATE_EPOCH the tarballs have the same bytes.
#[test]
fn real_archive_root_a_nodev_tmpdir_and_target_give_the_same_root() {
    if !require_root() || !require_program("unshare") || !require_program("tar") {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = scratch();
    let cache = shared_cache();
    let normal = dir.path().join("normal.tar");
    let out = run(bin()
        .args(["build", "--no-onion", "trixie"])
        .arg(&normal)
        .arg(&mirror)
        .arg("--cache-dir")
        .arg(&cache)
        .env("SOURCE_DATE_EPOCH", EPOCH));
    assert!(out.status.success(), "{}", text(&out));

    let place = dir.path().join("nodev");
    fs_err::create_dir(&place).expect("mkdir");
    let nodev = dir.path().join("nodev.tar");
    let script = r#"set -e
mount -t tmpfs -o nodev,size=2g none "$1"
TMPDIR="$1" SOURCE_DATE_EPOCH="$4" "$0" build --no-onion --cache-dir "$5" trixie "$1/root.tar" "$2"
cp "$1/root.tar" "$3"
"#;
    let out = run(in_namespace(script)
        .arg(&place)
        .arg(&mirror)
        .arg(&nodev)
        .arg(EPOCH)
        .arg(&cache));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !debstrap_onion::stage::is_mount_point(&place),
        "the tmpfs leaked out of the namespace"
    );
    let listing = |tarball: &Path| {
        let out = run(Command::new("tar").arg("-tvf").arg(tarball));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (a, b) = (listing(&normal), listing(&nodev));
    let only = |x: &str, y: &str| -> Vec<String> {
        x.lines()
            .filter(|l| !y.lines().any(|m| m == *l))
            .map(str::to_string)
            .collect()
    };
    assert!(
        a == b,
        "the trees differ:\nonly on disk: {:#?}\nonly on nodev: {:#?}",
        only(&a, &b),
        only(&b, &a)
    );
    assert!(
        fs_err::read(&normal).expect("read") == fs_err::read(&nodev).expect("read"),
        "same listing but different bytes"
    );
}

// --- 6 and 8. repeated components; files from the host ------------------------------------

/// A host resolv.conf of mode 0600 (bound over /etc/resolv.conf in the namespace) is copied in
/// as a 0644 root-owned file with the same contents; `--components main,main` writes `main` once.
#[test]
fn real_archive_root_repeated_components_are_written_once_and_resolv_conf_is_0644() {
    if !require_root() || !require_program("unshare") {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = scratch();
    let resolv = dir.path().join("resolv.conf");
    // The host's resolver (the build itself resolves the mirror through it), marked.
    let mut contents = fs_err::read("/etc/resolv.conf").expect("the host's resolv.conf");
    contents.extend_from_slice(b"# copied by the edges test\n");
    fs_err::write(&resolv, contents).expect("write");
    std::fs::set_permissions(&resolv, PermissionsExt::from_mode(0o600)).expect("chmod");
    let target = dir.path().join("root");
    let script = r#"set -e
mount --bind "$1" /etc/resolv.conf
exec "$0" build --no-onion --components main,main --cache-dir "$2" trixie "$3" "$4"
"#;
    let out = run(in_namespace(script)
        .arg(&resolv)
        .arg(shared_cache())
        .arg(&target)
        .arg(&mirror));
    assert!(out.status.success(), "{}", text(&out));

    let sources = fs_err::read_to_string(target.join("etc/apt/sources.list")).expect("sources");
    assert_eq!(sources, format!("deb {mirror} trixie main\n"));
    let copied = target.join("etc/resolv.conf");
    let meta = fs_err::symlink_metadata(&copied).expect("resolv.conf");
    assert!(meta.is_file(), "resolv.conf is not a regular file");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o644, 0, 0)
    );
    assert_eq!(
        fs_err::read(&copied).expect("read"),
        fs_err::read(&resolv).expect("read")
    );
    let hostname = target.join("etc/hostname");
    assert_eq!(
        fs_err::metadata(&hostname).expect("hostname").mode() & 0o7777,
        0o644
    );
    assert_eq!(fs_err::read_to_string(&hostname).expect("read"), "onion\n");
}

// --- 9. the README's main command, as root and as a user --------------------------------------

/// The block between the README's `main-command` markers.
fn readme_main_command() -> String {
    let readme = fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme.find("<!-- main-command -->").expect("marker");
    let end = readme.find("<!-- /main-command -->").expect("marker");
    let block: Vec<&str> = readme[start..end]
        .lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    block.join("\n")
}

fn host_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no host {name}"))
}

fn executable(path: &Path, body: &str) {
    fs_err::write(path, body).expect("write");
    std::fs::set_permissions(path, PermissionsExt::from_mode(0o755)).expect("chmod");
}

/// Runs the README's main command literally with `bash -c` in a directory where `cargo`, `sudo`
/// and `./target/release/debstrap-onion` are stand-ins that record how they were run, with a
/// PATH that has no real sudo. Returns the records.
fn main_command_as(uid: Option<u32>, with_sudo: bool) -> (Output, String) {
    let dir = scratch();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
    let bin_dir = dir.path().join("bin");
    let work = dir.path().join("work");
    fs_err::create_dir_all(work.join("target/release")).expect("mkdir");
    fs_err::create_dir(&bin_dir).expect("mkdir");
    let log = dir.path().join("log");
    fs_err::write(&log, "").expect("log");
    std::fs::set_permissions(&log, PermissionsExt::from_mode(0o666)).expect("chmod");
    let record = |what: &str| {
        format!(
            "#!/bin/sh\necho \"{what} uid=$(id -u) $*\" >> {}\n",
            log.display()
        )
    };
    executable(&bin_dir.join("cargo"), &record("cargo"));
    executable(
        &work.join("target/release/debstrap-onion"),
        &record("debstrap-onion"),
    );
    if with_sudo {
        // A sudo that runs the command (here as the same user) and says it did.
        executable(
            &bin_dir.join("sudo"),
            &format!("{}exec \"$@\"\n", record("sudo")),
        );
    }
    for tool in ["id", "sh", "bash"] {
        std::os::unix::fs::symlink(host_tool(tool), bin_dir.join(tool)).expect("link");
    }
    let mut cmd = match uid {
        Some(uid) => {
            // By path: the child's PATH holds only the stand-ins.
            let mut cmd = Command::new(host_tool("setpriv"));
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(bin_dir.join("bash"));
            cmd
        }
        None => Command::new(bin_dir.join("bash")),
    };
    let out = run(cmd
        .arg("-c")
        .arg(readme_main_command())
        .current_dir(&work)
        .env_clear()
        .env("PATH", &bin_dir)
        .stdin(Stdio::null()));
    let records = fs_err::read_to_string(&log).expect("log");
    (out, records)
}

#[test]
fn root_the_readme_main_command_runs_as_root_without_sudo_and_as_a_user_with_it() {
    if !require_root() || !require_program("setpriv") {
        return;
    }
    let (out, records) = main_command_as(None, false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        records,
        "cargo uid=0 build --release --locked\ndebstrap-onion uid=0 build\n",
        "{}",
        text(&out)
    );

    let (out, records) = main_command_as(Some(65534), true);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        records,
        "cargo uid=65534 build --release --locked\n\
         sudo uid=65534 ./target/release/debstrap-onion build\n\
         debstrap-onion uid=65534 build\n",
        "{}",
        text(&out)
    );
}

// --- 1. a failing maintainer script -----------------------------------------------------------

/// The control fields of a real .deb, read by dpkg-deb, as a fixture package (the repository
/// writes its own Package, Version, Architecture and Description).
fn fixture_from_real_deb(path: &Path) -> FakeDeb {
    let out = run(Command::new("dpkg-deb").arg("-f").arg(path));
    assert!(out.status.success(), "{}", text(&out));
    let control = String::from_utf8(out.stdout).expect("UTF-8 control");
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in control.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.to_string(), value.trim().to_string()));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
    };
    let mut deb = FakeDeb::new(
        &field("Package"),
        &field("Version"),
        &[],
        fs_err::read(path).expect("read .deb"),
    );
    deb.arch = field("Architecture");
    deb.fields = fields
        .into_iter()
        .filter(|(k, _)| {
            !["Package", "Version", "Architecture", "Description"].contains(&k.as_str())
        })
        .collect();
    deb
}

/// The real trixie minbase packages, plus one whose postinst exits 1, served as a fixture
/// repository: real dpkg configures them, and the build fails naming the package and script.
#[test]
fn real_archive_root_a_failing_postinst_fails_the_build_naming_package_and_script() {
    if !require_root() || !require_program("dpkg-deb") {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = scratch();
    let real_cache = dir.path().join("real-cache");
    let out = run(bin()
        .args(["build", "--no-onion", "--download-only", "--cache-dir"])
        .arg(&real_cache)
        .arg("trixie")
        .arg(dir.path().join("unused"))
        .arg(&mirror));
    assert!(out.status.success(), "{}", text(&out));
    let mut debs: Vec<FakeDeb> = fs_err::read_dir(real_cache.join("debs"))
        .expect("cached debs")
        .flatten()
        .map(|e| fixture_from_real_deb(&e.path()))
        .collect();
    assert!(debs.len() > 50, "only {} packages downloaded", debs.len());
    let failing = DebBuilder::new("failing", "1.0", &crate::support::native_arch())
        .dir("./", 0o755)
        .control_member(
            "postinst",
            0o755,
            b"#!/bin/sh\necho \"failing: postinst $1 gives up\" >&2\nexit 1\n",
        );
    debs.push(FakeDeb::new(
        "failing",
        "1.0",
        &[("Priority", "optional")],
        failing.build(),
    ));
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &debs);
    let target = dir.path().join("root");
    let out = run(bin()
        .args(["build", "--no-onion", "--include", "failing", "--keyring"])
        .arg(key_path("test-archive.pub.asc"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("fixture")
        .arg(&target)
        .arg(&served.server.url));
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let first = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        first.contains("failing postinst"),
        "the error does not name the package and script:\n{err}"
    );
    assert!(!target.exists(), "a failed build left TARGET");
    assert!(debstrap_onion::stage::mounts_under(dir.path()).is_empty());
}
