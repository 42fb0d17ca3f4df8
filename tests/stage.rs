//! The chroot runner and the stage's cleanup, on small roots built from host binaries.
//! Every test here needs root (mount, chroot); outside CI they skip with a message when not root.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use debstrap_onion::progress::{Counter, Stage};
use debstrap_onion::stage::{
    mounts_under, run_in_chroot, stage, ChrootMounts, StageError, StageRequest, CHROOT_ENV,
    LOG_PATH,
};
use debstrap_onion::unpack::{Unpacked, UnpackedPackage};
use debstrap_onion::{HeldRoot, Reporter, Silent};

/// Whether the test may run: root is required, and in CI its absence is a failure.
fn have_root(_test: &str) -> bool {
    support::skip::require_root()
}

/// A merged-/usr root holding `binaries` from the host and the libraries they load.
fn mini_root(binaries: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for dir in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "tmp"] {
        fs_err::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for link in ["bin", "sbin", "lib", "lib64"] {
        // Relative, so copying through them from the host stays inside the root.
        std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link)).expect("symlink");
    }
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for binary in binaries {
        let path = PathBuf::from(binary);
        files.insert(path.clone());
        let ldd = Command::new("ldd").arg(&path).output().expect("run ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let lib = line
                .split("=>")
                .last()
                .and_then(|s| s.split_whitespace().next())
                .filter(|s| s.starts_with('/'));
            if let Some(lib) = lib {
                files.insert(PathBuf::from(lib));
            }
        }
    }
    for file in files {
        let dest = root.join(file.strip_prefix("/").expect("absolute"));
        fs_err::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        fs_err::copy(&file, &dest).expect("copy host file");
    }
    tmp
}

/// Mounts left under `root`, asserting there are none.
fn assert_nothing_mounted(root: &Path) {
    let left = mounts_under(root);
    assert!(
        left.is_empty(),
        "mounts left under {}: {left:?}",
        root.display()
    );
}

#[test]
fn root_chroot_mounts_mount_and_unmount() {
    if !have_root("root_chroot_mounts_mount_and_unmount") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    {
        let _mounts = ChrootMounts::mount(&root).expect("mount");
        let mounted: BTreeSet<PathBuf> = mounts_under(&root).into_iter().collect();
        let expected: BTreeSet<PathBuf> = ["proc", "sys", "dev/pts"]
            .iter()
            .map(|p| root.join(p))
            .collect();
        assert_eq!(mounted, expected);
        assert!(root.join("proc/self").exists(), "proc is mounted");
        assert!(root.join("dev/pts/ptmx").exists(), "devpts is mounted");
        for node in [
            "null", "zero", "full", "random", "urandom", "tty", "console",
        ] {
            let meta = fs_err::symlink_metadata(root.join("dev").join(node)).expect("node");
            assert!(
                std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()),
                "/dev/{node} is a character device"
            );
        }
        assert_eq!(
            fs_err::read_link(root.join("dev/fd")).expect("dev/fd"),
            Path::new("/proc/self/fd")
        );
    }
    assert_nothing_mounted(&root);
}

#[test]
fn root_chroot_mounts_unmount_when_dropped_during_a_panic() {
    if !have_root("root_chroot_mounts_unmount_when_dropped_during_a_panic") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    // What the closure saw is carried out of it, and the panic is told apart by its message:
    // an assertion failing inside would be swallowed as "the expected panic" otherwise.
    let mut mounted_inside = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mounts = ChrootMounts::mount(&root);
        mounted_inside = Some(mounts_under(&root).len());
        let _mounts = mounts.expect("mount");
        panic!("a step panicked while the chroot was mounted");
    }));
    let payload = result.expect_err("the step panicked");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"a step panicked while the chroot was mounted"),
        "the closure panicked for another reason"
    );
    assert_eq!(
        mounted_inside,
        Some(3),
        "proc, sys and dev/pts were mounted"
    );
    assert_nothing_mounted(&root);
}

#[test]
fn root_chroot_mounts_refuse_a_mount_point_that_is_a_symlink() {
    if !have_root("root_chroot_mounts_refuse_a_mount_point_that_is_a_symlink") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), tmp.path().join("proc")).expect("symlink");
    let err = ChrootMounts::mount(tmp.path()).expect_err("a symlinked proc is refused");
    assert!(
        matches!(err, StageError::UnsafePath { .. }),
        "unexpected error: {err}"
    );
    assert_nothing_mounted(tmp.path());
    assert_nothing_mounted(outside.path());
}

#[test]
fn root_chroot_mounts_refuse_the_hosts_root() {
    if !have_root("root_chroot_mounts_refuse_the_hosts_root") {
        return;
    }
    let before = mounts_under(Path::new("/proc")).len();
    let err = ChrootMounts::mount(Path::new("/")).expect_err("/ is refused");
    assert!(
        matches!(err, StageError::UnsafePath { .. }),
        "unexpected error: {err}"
    );
    assert_eq!(mounts_under(Path::new("/proc")).len(), before);
}

/// A tmpfs mounted by a test, unmounted when dropped.
struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = support::sys::detach(&self.0);
    }
}

#[test]
fn root_mounts_under_ignores_a_root_that_is_itself_a_mount_point() {
    if !have_root("root_mounts_under_ignores_a_root_that_is_itself_a_mount_point") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    support::sys::mount_tmpfs(&root, support::sys::MountFlags::empty(), None).expect("mount tmpfs");
    let _tmpfs = TmpfsGuard(root.clone());
    assert_nothing_mounted(&root);
    let mounts = ChrootMounts::mount(&root).expect("mount");
    assert_eq!(mounts_under(&root).len(), 3);
    mounts.unmount().expect("unmount");
    assert_nothing_mounted(&root);
}

#[test]
fn root_run_in_chroot_env_is_exactly_the_explicit_one() {
    if !have_root("root_run_in_chroot_env_is_exactly_the_explicit_one") {
        return;
    }
    let tmp = mini_root(&["/usr/bin/env"]);
    let output = run_in_chroot(
        tmp.path(),
        &["env"],
        &[("EXTRA", "1"), ("HOME", "/x")],
        None,
    )
    .expect("env runs");
    let seen: BTreeSet<String> = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut expected: BTreeSet<String> = CHROOT_ENV
        .iter()
        .filter(|(k, _)| *k != "HOME")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    expected.insert("EXTRA=1".to_owned());
    expected.insert("HOME=/x".to_owned());
    assert_eq!(seen, expected);
}

#[test]
fn root_run_in_chroot_sees_only_the_root_from_its_top() {
    if !have_root("root_run_in_chroot_sees_only_the_root_from_its_top") {
        return;
    }
    let tmp = mini_root(&["/usr/bin/sh", "/usr/bin/cat"]);
    fs_err::write(tmp.path().join("etc/marker"), "inside\n").expect("marker");
    let output = run_in_chroot(
        tmp.path(),
        &[
            "sh",
            "-c",
            "pwd; cat /etc/marker; cat </dev/stdin; echo end",
        ],
        &[],
        None,
    );
    // /dev is not mounted here: stdin must come from a /dev/null opened on the host side.
    let output = output.expect("runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "/\ninside\nend\n");
}

#[test]
fn root_run_in_chroot_failure_names_the_command_and_shows_its_last_lines() {
    if !have_root("root_run_in_chroot_failure_names_the_command_and_shows_its_last_lines") {
        return;
    }
    let tmp = mini_root(&["/usr/bin/sh"]);
    fs_err::create_dir_all(tmp.path().join("var/log")).expect("mkdir");
    let script =
        "i=0; while [ $i -lt 30 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; exit 3";
    let err = run_in_chroot(
        tmp.path(),
        &["sh", "-c", script],
        &[],
        Some(Path::new(LOG_PATH)),
    )
    .expect_err("exit 3 is a failure");
    let StageError::Command {
        command,
        status,
        tail,
        ..
    } = &err
    else {
        panic!("unexpected error: {err}");
    };
    assert!(command.starts_with("sh -c"), "{command}");
    assert_eq!(status.code(), Some(3));
    let tail: Vec<&str> = tail.lines().collect();
    assert_eq!(tail.len(), 20);
    assert_eq!(tail.first(), Some(&"line11"));
    assert_eq!(tail.last(), Some(&"oops"));
    let log = fs_err::read_to_string(tmp.path().join(LOG_PATH)).expect("log");
    assert!(log.contains("line0\n") && log.contains("line29\n") && log.contains("oops\n"));
}

#[test]
fn root_stage_failing_preinst_is_named_and_leaves_no_mounts_nor_policy() {
    if !have_root("root_stage_failing_preinst_is_named_and_leaves_no_mounts_nor_policy") {
        return;
    }
    let tmp = mini_root(&["/usr/bin/sh"]);
    let root = tmp.path();
    let info = root.join("var/lib/dpkg/info");
    fs_err::create_dir_all(&info).expect("mkdir");
    fs_err::write(root.join("var/lib/dpkg/status"), "").expect("status");
    let preinst = info.join("base-passwd.preinst");
    fs_err::write(
        &preinst,
        "#!/bin/sh\necho \"preinst $1 for $DPKG_MAINTSCRIPT_PACKAGE\"\nexit 1\n",
    )
    .expect("preinst");
    fs_err::set_permissions(
        &preinst,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let unpacked = Unpacked {
        packages: vec![UnpackedPackage {
            name: "base-passwd".to_owned(),
            version: "3.6.7".to_owned(),
            architecture: crate::support::native_arch(),
            multi_arch_same: false,
            essential: true,
            priority: Some("required".to_owned()),
            extracted_first: true,
            scripts: vec!["preinst".to_owned()],
            control: Vec::new(),
        }],
    };
    let held = HeldRoot::open(root).expect("hold the root");
    let request = StageRequest {
        root: &held,
        unpacked: &unpacked,
        mirror: "http://mirror.invalid/debian",
        suite: "trixie",
        components: &["main".to_owned()],
        hostname: "onion",
        source_date_epoch: None,
    };
    let err = stage(&request, &Silent).expect_err("the preinst fails");
    let StageError::Command { what, tail, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(what, "base-passwd preinst");
    assert_eq!(tail, "preinst install for base-passwd");
    assert!(err.to_string().contains("base-passwd preinst"));
    assert_nothing_mounted(root);
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
}

/// Set in the child process [`root_a_stop_request_ends_the_chroot_command_and_unmounts`] starts,
/// to the file the child writes when it has passed: the stop flag is process-wide, so raising it
/// must not touch the other tests.
const CANCEL_CHILD: &str = "DEBSTRAP_STAGE_CANCEL_CHILD";

#[test]
fn root_a_stop_request_ends_the_chroot_command_and_unmounts() {
    if !have_root("root_a_stop_request_ends_the_chroot_command_and_unmounts") {
        return;
    }
    // The child writes this file as its last act: a filter matching no test would also exit 0.
    let done = tempfile::tempdir().expect("tempdir");
    let marker = done.path().join("child-finished");
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "cancel_child_stops_a_blocked_command",
            "--ignored",
            "--nocapture",
        ])
        .env(CANCEL_CHILD, &marker)
        .status()
        .expect("run the child test");
    assert!(status.success(), "the child test failed: {status}");
    assert_eq!(
        fs_err::read_to_string(&marker).ok().as_deref(),
        Some("stopped and unmounted\n"),
        "the child test did not run to its end (is its name still the one above?)"
    );
}

/// Runs only inside the process the test above starts.
#[test]
#[ignore = "run by root_a_stop_request_ends_the_chroot_command_and_unmounts in its own process"]
fn cancel_child_stops_a_blocked_command() {
    let Some(marker) = std::env::var_os(CANCEL_CHILD) else {
        return;
    };
    let tmp = mini_root(&["/usr/bin/sh"]);
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    support::sys::mkfifo(&root.join("ready"));
    support::sys::mkfifo(&root.join("never"));
    let mounts = ChrootMounts::mount(&root).expect("mount");
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            // Opening the FIFO blocks until the command has opened it to write: it is running.
            let ready = fs_err::read_to_string(root.join("ready")).expect("read ready");
            assert_eq!(ready, "started\n");
            debstrap_onion::cancel::request();
        });
        // `never` has no writer, so the command blocks until it is signalled.
        let result = run_in_chroot(
            &root,
            &["sh", "-c", "echo started > /ready; read x < /never"],
            &[],
            None,
        );
        // Should the command have failed before opening `ready`, this releases the reader
        // (which then fails its assertion) instead of leaving the test hanging.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(root.join("ready"));
        result
    });
    let err = result.expect_err("the command was stopped");
    assert!(matches!(err, StageError::Cancelled(_)), "unexpected: {err}");
    drop(mounts);
    assert_nothing_mounted(&root);
    fs_err::write(marker, "stopped and unmounted\n").expect("write the marker");
}

#[test]
fn root_run_in_chroot_returns_when_the_command_exits_and_ends_the_daemon_it_left() {
    if !have_root("root_run_in_chroot_returns_when_the_command_exits_and_ends_the_daemon_it_left") {
        return;
    }
    let tmp = mini_root(&["/usr/bin/sh"]);
    let root = tmp.path();
    support::sys::mkfifo(&root.join("release"));
    // sh gives a background job /dev/null as its input.
    let _mounts = ChrootMounts::mount(root).expect("mount");
    // The background shell inherits stdout and stderr and would outlive the command, as a
    // daemon does, holding the FIFO open and blocked reading it; the command's PID namespace
    // ends it instead. The command waits until the daemon holds the FIFO (`/held` exists), so
    // the check below cannot pass merely because the daemon had not opened it yet.
    let output = run_in_chroot(
        root,
        &[
            "sh",
            "-c",
            "(exec 3<>/release; : > /held; read x <&3; echo daemon done) & \
             until [ -e /held ]; do :; done; echo started; echo note >&2",
        ],
        &[],
        None,
    );
    // Opening a FIFO for writing without blocking fails with ENXIO when nobody reads it: the
    // daemon is gone by the time the command's result is back.
    let release = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(root.join("release"));
    let daemon_left = release.is_ok();
    drop(release);
    let output = output.expect("the command succeeds");
    assert_eq!(output.stdout, b"started\n");
    assert_eq!(output.stderr, b"note\n");
    assert!(
        !daemon_left,
        "the daemon outlived the command that started it"
    );
}

/// Calls `action` when the stage starts counting configured packages: the root is mounted and
/// no maintainer script has run yet.
struct BeforeScripts<F: Fn() + Send + Sync>(F);

impl<F: Fn() + Send + Sync> Reporter for BeforeScripts<F> {
    fn stage(&self, _: Stage) {}
    fn start(&self, counter: Counter, _: u64) {
        if counter == Counter::Configured {
            (self.0)();
        }
    }
    fn advance(&self, _: Counter, _: u64) {}
    fn finish(&self, _: Counter) {}
}

/// A root whose base-passwd preinst leaves `/ran-here` behind, then fails.
fn root_with_marking_preinst() -> tempfile::TempDir {
    let tmp = mini_root(&["/usr/bin/sh"]);
    let info = tmp.path().join("var/lib/dpkg/info");
    fs_err::create_dir_all(&info).expect("mkdir");
    fs_err::write(tmp.path().join("var/lib/dpkg/status"), "").expect("status");
    let preinst = info.join("base-passwd.preinst");
    fs_err::write(&preinst, "#!/bin/sh\n: > /ran-here\nexit 1\n").expect("preinst");
    fs_err::set_permissions(
        &preinst,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    tmp
}

#[test]
fn root_stage_runs_scripts_in_the_held_root_though_its_path_now_names_another() {
    if !have_root("root_stage_runs_scripts_in_the_held_root_though_its_path_now_names_another") {
        return;
    }
    let built = root_with_marking_preinst();
    // What a user who can write the root's parent would put in its place: a root of their own.
    let theirs = root_with_marking_preinst();
    let path = built.path().to_path_buf();
    let moved = built.path().with_extension("moved");
    let unpacked = Unpacked {
        packages: vec![UnpackedPackage {
            name: "base-passwd".to_owned(),
            version: "3.6.7".to_owned(),
            architecture: crate::support::native_arch(),
            multi_arch_same: false,
            essential: true,
            priority: Some("required".to_owned()),
            extracted_first: true,
            scripts: vec!["preinst".to_owned()],
            control: Vec::new(),
        }],
    };
    let held = HeldRoot::open(&path).expect("hold the root");
    let request = StageRequest {
        root: &held,
        unpacked: &unpacked,
        mirror: "http://mirror.invalid/debian",
        suite: "trixie",
        components: &["main".to_owned()],
        hostname: "onion",
        source_date_epoch: None,
    };
    // After the stage has mounted the root, and before the first script, the path is made to
    // name their root.
    let swap = BeforeScripts(|| {
        fs_err::rename(&path, &moved).expect("move the root away");
        fs_err::rename(theirs.path(), &path).expect("put theirs in its place");
    });
    let err = stage(&request, &swap).expect_err("the preinst fails");
    assert!(
        err.to_string().contains("base-passwd preinst"),
        "unexpected error: {err}"
    );
    let (ran_in_held, ran_in_theirs) = (
        moved.join("ran-here").exists(),
        path.join("ran-here").exists(),
    );
    assert_nothing_mounted(&moved);
    assert_nothing_mounted(&path);
    fs_err::remove_dir_all(&moved).expect("remove the moved root");
    assert!(!ran_in_theirs, "a script ran in the root swapped in");
    assert!(ran_in_held, "the script ran in the held root");
}

/// A root whose `nginx` is a script that leaves `/ran-here` behind.
fn root_with_marking_nginx() -> tempfile::TempDir {
    let tmp = mini_root(&["/usr/bin/sh"]);
    let nginx = tmp.path().join("usr/sbin/nginx");
    fs_err::write(&nginx, "#!/bin/sh\n: > /ran-here\n").expect("nginx");
    fs_err::set_permissions(&nginx, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    tmp
}

#[test]
fn root_onion_nginx_check_never_runs_in_a_root_swapped_in_at_the_held_path() {
    if !have_root("root_onion_nginx_check_never_runs_in_a_root_swapped_in_at_the_held_path") {
        return;
    }
    let built = root_with_marking_nginx();
    let theirs = root_with_marking_nginx();
    let path = built.path().to_path_buf();
    let moved = built.path().with_extension("moved");
    let held = HeldRoot::open(&path).expect("hold the root");
    fs_err::rename(&path, &moved).expect("move the root away");
    fs_err::rename(theirs.path(), &path).expect("put theirs in its place");
    let result = debstrap_onion::onion::check_nginx(&held);
    let (ran_in_held, ran_in_theirs) = (
        moved.join("ran-here").exists(),
        path.join("ran-here").exists(),
    );
    assert_nothing_mounted(&moved);
    assert_nothing_mounted(&path);
    fs_err::remove_dir_all(&moved).expect("remove the moved root");
    assert!(!ran_in_theirs, "nginx ran in the root swapped in");
    // The mounts need the root in this mount namespace, reached again by its path: a path that
    // names another directory is refused; nothing runs anywhere.
    let err = result.expect_err("a swapped root is refused");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "unexpected error: {err}"
    );
    assert!(!ran_in_held);
}

/// A tmpfs mounted `nodev` at a fresh temp dir, as a TMPDIR or TARGET on one would be.
fn nodev_root() -> (tempfile::TempDir, PathBuf, TmpfsGuard) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    support::sys::mount_tmpfs(&root, support::sys::MountFlags::NODEV, None)
        .expect("mount a nodev tmpfs");
    let guard = TmpfsGuard(root.clone());
    (tmp, root, guard)
}

#[test]
fn root_chroot_mounts_on_a_nodev_filesystem_bind_the_hosts_devices_over_the_nodes() {
    if !have_root("root_chroot_mounts_on_a_nodev_filesystem_bind_the_hosts_devices_over_the_nodes")
    {
        return;
    }
    let (_tmp, root, _tmpfs) = nodev_root();
    let nodes = [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
    ];
    {
        let mounts = ChrootMounts::mount(&root).expect("mount");
        let mounted: BTreeSet<PathBuf> = mounts_under(&root).into_iter().collect();
        let mut expected: BTreeSet<PathBuf> = ["proc", "sys", "dev/pts"]
            .iter()
            .map(|p| root.join(p))
            .collect();
        expected.extend(nodes.iter().map(|n| root.join("dev").join(n)));
        assert_eq!(mounted, expected);
        // The chroot's /dev works as on any filesystem.
        let mut null = fs_err::OpenOptions::new()
            .write(true)
            .open(root.join("dev/null"))
            .expect("open dev/null through the bind");
        std::io::Write::write_all(&mut null, b"gone").expect("write to dev/null");
        let mut zeros = [1u8; 4];
        std::io::Read::read_exact(
            &mut fs_err::File::open(root.join("dev/zero")).expect("open dev/zero"),
            &mut zeros,
        )
        .expect("read dev/zero");
        assert_eq!(zeros, [0; 4]);
        mounts.unmount().expect("unmount");
    }
    assert_nothing_mounted(&root);
    // The root keeps its own nodes, which the nodev filesystem does not let anyone open.
    for node in nodes {
        let path = root.join("dev").join(node);
        let meta = fs_err::symlink_metadata(&path).expect("node");
        assert!(
            std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()),
            "{node}"
        );
        let err = fs_err::File::open(&path).expect_err("a node on nodev opens");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{node}: {err}"
        );
    }
}

#[test]
fn root_chroot_mounts_unmount_reports_a_mount_already_gone_and_undoes_the_rest() {
    if !have_root("root_chroot_mounts_unmount_reports_a_mount_already_gone_and_undoes_the_rest") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    let mounts = ChrootMounts::mount(&root).expect("mount");
    support::sys::detach(&root.join("sys")).expect("unmount sys behind the guard's back");
    let err = mounts.unmount().expect_err("sys was no longer mounted");
    assert!(
        matches!(&err, StageError::Unmount { target, .. } if target == &root.join("sys")),
        "{err}"
    );
    assert_nothing_mounted(&root);
}
