//! Trust boundaries of the build (issue 11): mounts the kernel removes and unmounts by identity,
//! one build per TARGET, a build directory nobody else can swap, stop requests honoured in the
//! output and onion stages, a stop that ends every process a command started, and images that
//! leave the host alone.
//!
//! The stop flag is process-wide, so tests that raise it run in a child process of this test
//! binary (see [`in_child`]). Tests that mount clean up with [`Unmount`] on every path.

mod support;

use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use debstrap_onion::config::{BuildConfig, OnionConfig, Output, Variant};
use debstrap_onion::progress::{Counter, Stage};
use debstrap_onion::stage::{mounts_under, ChrootMounts};
use debstrap_onion::{Error, Reporter, Silent, TargetError};
use support::deb::DebBuilder;
use support::repo::{key_path, FakeDeb, RepoSpec, Served};

/// Set in the child processes started by [`in_child`], to the name of the test to run.
const CHILD: &str = "DEBSTRAP_BOUNDARY_CHILD";

/// Runs the ignored test `name` of this binary in a child process and returns its status.
fn in_child(name: &str, env: &[(&str, &Path)]) -> std::process::Child {
    child_command(name, env)
        .spawn()
        .expect("start the child test")
}

/// The command that runs the ignored test `name` alone in a process of its own.
fn child_command(name: &str, env: &[(&str, &Path)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, name);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs the ignored child test `name` in a process of its own and asserts it ran and passed:
/// a name that matched no test would otherwise pass by running nothing.
fn run_child(name: &str) {
    let out = child_command(name, &[])
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the child test {name} did not run and pass ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process is the child started for `name`.
fn is_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// Lazily detaches every mount under a directory when dropped, so a failing test leaves none.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for point in mounts_under(&self.0).into_iter().rev() {
            let _ = support::sys::detach(&point);
        }
    }
}

/// A merged-/usr root holding /usr/bin/sh and the libraries it loads.
fn sh_root() -> tempfile::TempDir {
    root_with(&["/usr/bin/sh"])
}

/// A merged-/usr root holding the host programs `programs` and the libraries they load.
fn root_with(programs: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for dir in ["usr/bin", "usr/lib", "usr/lib64", "etc", "tmp"] {
        fs_err::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for link in ["bin", "lib", "lib64"] {
        std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link)).expect("symlink");
    }
    let mut files: Vec<PathBuf> = programs.iter().map(PathBuf::from).collect();
    let ldd = Command::new("ldd").args(programs).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(lib) = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| s.starts_with('/') && !s.ends_with(':'))
        {
            files.push(PathBuf::from(lib));
        }
    }
    files.sort();
    files.dedup();
    for file in files {
        let dest = root.join(file.strip_prefix("/").expect("absolute"));
        fs_err::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        fs_err::copy(&file, &dest).expect("copy host file");
    }
    // sh gives a background job /dev/null as its input.
    fs_err::create_dir(root.join("dev")).expect("mkdir dev");
    support::sys::mknod_char(&root.join("dev/null"), 1, 3);
    tmp
}

fn mkfifo(path: &Path) {
    support::sys::mkfifo(path);
}

/// Lets a reader blocked on the FIFO at `path` go (it sees end of file).
/// SIGKILLs every process whose root directory is `root` or below it, found through /proc.
fn kill_processes_rooted_in(root: &Path) {
    for pid in processes_rooted_in(root) {
        let _ = support::sys::signal(pid as u32, support::sys::Signal::KILL);
    }
}

/// The processes whose root directory is `root` or below it.
fn processes_rooted_in(root: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs_err::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if fs_err::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.starts_with(root)) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits, by pidfd and for at most `limit`, until every process in `pids` has exited; returns
/// those still running.
fn still_running_after(pids: &[i32], limit: std::time::Duration) -> Vec<i32> {
    let deadline = std::time::Instant::now() + limit;
    let mut left = Vec::new();
    for &pid in pids {
        let Some(fd) = rustix::process::Pid::from_raw(pid).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        }) else {
            continue; // already gone
        };
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        if !support::sys::readable_within(&fd, wait) {
            left.push(pid);
        }
    }
    left
}

fn release_fifo(path: &Path) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open(path);
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

// ---------------------------------------------------------------------------------------------
// Mounts the kernel removes (point 3)

const SIGKILL_ROOT: &str = "DEBSTRAP_BOUNDARY_ROOT";

#[test]
fn root_sigkill_during_configure_leaves_no_mount_on_the_host() {
    if !support::host::require_root() {
        return;
    }
    let tmp = sh_root();
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    let _cleanup = Unmount(root.clone());
    let info = root.join("var/lib/dpkg/info");
    fs_err::create_dir_all(&info).expect("mkdir");
    fs_err::write(root.join("var/lib/dpkg/status"), "").expect("status");
    mkfifo(&root.join("ready"));
    mkfifo(&root.join("never"));
    // The preinst says it runs (proc, sys and devpts are mounted by then), then blocks.
    let preinst = info.join("base-passwd.preinst");
    fs_err::write(
        &preinst,
        "#!/bin/sh\necho started > /ready\nread x < /never\n",
    )
    .expect("preinst");
    fs_err::set_permissions(&preinst, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut child = in_child(
        "child_configures_until_killed",
        &[(SIGKILL_ROOT, root.as_path())],
    );
    // Opening the FIFO blocks until the preinst has opened it: the mounts are in place.
    let ready = fs_err::read_to_string(root.join("ready")).expect("read ready");
    assert_eq!(ready, "started\n");
    let scripts = processes_rooted_in(&root);
    assert!(!scripts.is_empty(), "the blocked preinst is not running");
    child.kill().expect("SIGKILL the build");
    child.wait().expect("reap the build");
    let left = mounts_under(&root);
    // The kernel ends the preinst with the build (it dies with the thread that started it); the
    // wait is on its pidfd, bounded so a regression fails rather than hangs.
    let survivors = still_running_after(&scripts, std::time::Duration::from_secs(10));
    kill_processes_rooted_in(&root);
    assert!(
        left.is_empty(),
        "SIGKILL during configure left mounts on the host: {left:?}"
    );
    assert!(
        survivors.is_empty(),
        "maintainer-script processes outlived the SIGKILLed build: {survivors:?}"
    );
}

#[test]
fn root_a_process_a_maintainer_script_detaches_with_setsid_does_not_outlive_it() {
    if !support::host::require_root() {
        return;
    }
    let tmp = root_with(&["/usr/bin/sh", "/usr/bin/setsid"]);
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    let _cleanup = Unmount(root.clone());
    let info = root.join("var/lib/dpkg/info");
    fs_err::create_dir_all(&info).expect("mkdir");
    fs_err::write(root.join("var/lib/dpkg/status"), "").expect("status");
    mkfifo(&root.join("never"));
    // The preinst leaves a process behind in a session (and so a process group) of its own,
    // which blocks until the FIFO gets a writer, and exits 0.
    let preinst = info.join("base-passwd.preinst");
    fs_err::write(
        &preinst,
        "#!/bin/sh\nsetsid sh -c 'read x < /never' </dev/null >/dev/null 2>&1 &\nexit 0\n",
    )
    .expect("preinst");
    fs_err::set_permissions(&preinst, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let unpacked = base_passwd_with_preinst();
    let components = ["main".to_owned()];
    let held = debstrap_onion::HeldRoot::open(&root).expect("hold the root");
    // The stage fails later (the root has no dpkg); what matters is what runs when it returns.
    let _ = debstrap_onion::stage::stage(&stage_request(&held, &unpacked, &components), &Silent);
    let left = processes_rooted_in(&root);
    kill_processes_rooted_in(&root);
    release_fifo(&root.join("never"));
    assert!(
        left.is_empty(),
        "a process the preinst detached with setsid outlived it: pids {left:?}"
    );
}

/// Runs only in the process the test above starts, and is killed there.
#[test]
#[ignore = "run by root_sigkill_during_configure_leaves_no_mount_on_the_host"]
fn child_configures_until_killed() {
    if !is_child("child_configures_until_killed") {
        return;
    }
    let root = PathBuf::from(std::env::var_os(SIGKILL_ROOT).expect("root"));
    let unpacked = base_passwd_with_preinst();
    let components = ["main".to_owned()];
    let held = debstrap_onion::HeldRoot::open(&root).expect("hold the root");
    let request = stage_request(&held, &unpacked, &components);
    let _ = debstrap_onion::stage::stage(&request, &Silent);
    panic!("the preinst blocks until the parent kills this process");
}

/// One unpacked package, base-passwd, whose only maintainer script is the preinst a test wrote.
fn base_passwd_with_preinst() -> debstrap_onion::unpack::Unpacked {
    debstrap_onion::unpack::Unpacked {
        packages: vec![debstrap_onion::unpack::UnpackedPackage {
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
    }
}

/// The stage request for a test root (no network is used: the mirror only goes into files).
fn stage_request<'a>(
    held: &'a debstrap_onion::HeldRoot,
    unpacked: &'a debstrap_onion::unpack::Unpacked,
    components: &'a [String],
) -> debstrap_onion::stage::StageRequest<'a> {
    debstrap_onion::stage::StageRequest {
        root: held,
        unpacked,
        mirror: "http://mirror.invalid/debian",
        suite: "trixie",
        components,
        hostname: "onion",
        source_date_epoch: None,
    }
}

#[test]
fn root_chroot_mounts_are_undone_by_identity_not_through_a_planted_symlink() {
    if !support::host::require_root() {
        return;
    }
    let tmp = sh_root();
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    let outer = tempfile::tempdir().expect("tempdir");
    let outer_path = fs_err::canonicalize(outer.path()).expect("canonical");
    let _cleanup_root = Unmount(root.clone());
    let _cleanup_outer = Unmount(outer_path.clone());
    // Stands for the host's /dev: a directory with something mounted on its pts.
    let victim = outer_path.join("dev");
    fs_err::create_dir_all(victim.join("pts")).expect("mkdir");
    support::sys::mount_tmpfs(&victim.join("pts"), support::sys::MountFlags::empty(), None)
        .expect("mount the victim");

    let mounts = ChrootMounts::mount(&root).expect("mount");
    // Something in the chroot moves its dev aside and plants `dev -> the host's dev`.
    fs_err::rename(root.join("dev"), root.join("dev.moved")).expect("move dev");
    std::os::unix::fs::symlink(&victim, root.join("dev")).expect("plant symlink");
    drop(mounts);

    assert_eq!(
        mounts_under(&outer_path),
        [victim.join("pts")],
        "the host's mount was unmounted through the planted symlink"
    );
    let left = mounts_under(&root);
    assert!(left.is_empty(), "the chroot's own mounts remain: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// Builds of a fixture repository (points 7, 8, 12)

fn fixture_debs() -> Vec<FakeDeb> {
    let deb = |name: &str, path: &str| {
        let built = DebBuilder::new(name, "1.0", &crate::support::native_arch())
            .file(path, 0o644, b"content");
        FakeDeb::new(name, "1.0", &[("Priority", "required")], built.build())
    };
    vec![
        deb("good", "./usr/share/good/file"),
        deb("apt", "./usr/bin/apt"),
    ]
}

/// An extract build of the fixture into `output`, its cache in the served directory.
fn config(served: &Served, output: Output) -> BuildConfig {
    let mut config = BuildConfig::new("fixture", served.server.url.clone());
    config.keyrings = vec![key_path("test-archive.pub.asc")];
    config.cache_dir = served.dir.path().join("cache");
    config.output = output;
    config.variant = Variant::Extract;
    config.include = vec!["good".into(), "apt".into()];
    config.publish_onion = false;
    config.arch = crate::support::native_arch();
    config
}

fn serve() -> Served {
    Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &fixture_debs())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Calls `action` when the build reaches `at`.
struct AtStage<F: Fn() + Send + Sync> {
    at: Stage,
    action: F,
}

impl<F: Fn() + Send + Sync> Reporter for AtStage<F> {
    fn stage(&self, stage: Stage) {
        if stage == self.at {
            (self.action)();
        }
    }
    fn start(&self, _: Counter, _: u64) {}
    fn advance(&self, _: Counter, _: u64) {}
    fn finish(&self, _: Counter) {}
}

#[test]
fn root_a_second_build_of_a_target_is_refused_while_another_holds_its_lock() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("mkdir");
    let target = parent.join("target");
    // A running build holds `.target.lock` beside TARGET with flock(2); hold it as one does.
    let lock = fs_err::File::create(parent.join(".target.lock")).expect("lock file");
    rustix::fs::flock(
        lock.as_fd(),
        rustix::fs::FlockOperation::NonBlockingLockExclusive,
    )
    .expect("take the lock");

    let err = debstrap_onion::build(&config(&served, Output::Directory(target.clone())), &Silent)
        .expect_err("a second build is refused");
    assert!(
        matches!(err, Error::Guard(TargetError::Busy { .. })),
        "unexpected: {err}"
    );
    assert!(err.to_string().contains("another build of"), "{err}");
    assert_eq!(names_in(&parent), [".target.lock"]);

    drop(lock);
    fs_err::remove_file(parent.join(".target.lock")).expect("let go as a build does");
    debstrap_onion::build(&config(&served, Output::Directory(target.clone())), &Silent)
        .expect("the build runs once the lock is free");
    assert!(target.join("usr/share/good/file").exists());
    assert_eq!(names_in(&parent), ["target"], "the lock file stays");
}

/// Two real builds of one TARGET, interleaved at a fixed point rather than by timing: the
/// second starts (even with --force) while the first is unpacking, and must be refused naming
/// the lock, leaving the first's build directory alone; the first then finishes as if alone.
#[test]
fn root_two_builds_of_one_target_interleaved_the_second_is_refused_and_the_first_completes() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("mkdir");
    let target = parent.join("target");
    let second: std::sync::Mutex<Option<Result<(), String>>> = std::sync::Mutex::new(None);
    let seen_during: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let reporter = AtStage {
        at: Stage::Unpack,
        action: || {
            let mut forced = config(&served, Output::Directory(target.clone()));
            forced.force = true;
            let result = debstrap_onion::build(&forced, &Silent)
                .map(drop)
                .map_err(|err| {
                    assert!(
                        matches!(err, Error::Guard(TargetError::Busy { .. })),
                        "the second build failed for another reason: {err}"
                    );
                    err.to_string()
                });
            *second.lock().unwrap() = Some(result);
            *seen_during.lock().unwrap() = names_in(&parent);
        },
    };
    debstrap_onion::build(
        &config(&served, Output::Directory(target.clone())),
        &reporter,
    )
    .expect("the first build completes");
    let second = second.into_inner().unwrap().expect("the second build ran");
    let refused = second.expect_err("a second build of a TARGET being built is refused");
    assert!(refused.contains("another build of"), "{refused}");
    // While both ran: the first's lock and build directory only; no TARGET, nothing of the second.
    let during = seen_during.into_inner().unwrap();
    assert_eq!(during.len(), 2, "{during:?}");
    assert!(during[0].starts_with(".target.build-"), "{during:?}");
    assert_eq!(during[1], ".target.lock", "{during:?}");
    assert!(target.join("usr/share/good/file").exists());
    assert_eq!(names_in(&parent), ["target"]);
}

#[test]
fn root_force_is_decided_when_the_result_is_committed() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("mkdir");
    let target = parent.join("target");
    // TARGET is absent when the build starts, and filled by someone while it runs.
    let reporter = AtStage {
        at: Stage::Download,
        action: || {
            fs_err::create_dir(&target).expect("mkdir target");
            fs_err::write(target.join("precious"), "keep me").expect("write");
        },
    };
    let err = debstrap_onion::build(
        &config(&served, Output::Directory(target.clone())),
        &reporter,
    )
    .expect_err("TARGET is no longer empty at the commit");
    assert!(
        matches!(err, Error::TargetNotEmpty { .. }),
        "unexpected: {err}"
    );
    assert_eq!(
        fs_err::read_to_string(target.join("precious")).expect("kept"),
        "keep me"
    );
    assert_eq!(names_in(&parent), ["target"]);
}

#[test]
fn root_a_target_parent_another_user_can_write_is_refused() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    for (case, mode, owner) in [
        ("world-writable", 0o777, None),
        ("owned by nobody", 0o755, Some(65534)),
    ] {
        let parent = served.dir.path().join(case.replace(' ', "-"));
        fs_err::create_dir(&parent).expect("mkdir");
        fs_err::set_permissions(&parent, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&parent, Some(uid), Some(uid)).expect("chown");
        }
        let target = parent.join("target");
        let err =
            debstrap_onion::build(&config(&served, Output::Directory(target.clone())), &Silent)
                .expect_err(case);
        assert!(
            matches!(err, Error::Guard(TargetError::UnsafeParent { ref dir, .. }) if dir == &parent),
            "{case}: unexpected: {err}"
        );
        assert!(
            names_in(&parent).is_empty(),
            "{case}: something was created"
        );
    }
}

#[test]
fn root_nothing_is_made_inside_another_users_directory_for_a_directory_target() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let theirs = served.dir.path().join("theirs");
    fs_err::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    // TARGET's parent does not exist yet: making it as root would hand it to the owner.
    let target = theirs.join("new").join("target");
    let err = debstrap_onion::build(&config(&served, Output::Directory(target)), &Silent)
        .expect_err("refused");
    assert!(
        matches!(err, Error::Guard(TargetError::UnsafeParent { ref dir, .. }) if dir == &theirs),
        "unexpected: {err}"
    );
    assert!(
        names_in(&theirs).is_empty(),
        "something was made in {theirs:?}"
    );
    assert!(
        !served.dir.path().join("cache").exists(),
        "the refusal came after the download"
    );
}

#[test]
fn root_a_target_parent_an_acl_lets_another_user_write_is_refused() {
    if !support::host::require_root() || !support::host::require_program("setfacl") {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("acl");
    fs_err::create_dir(&parent).expect("mkdir");
    fs_err::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new("setfacl")
        .args(["-m", "u:65534:rwx"])
        .arg(&parent)
        .output()
        .expect("setfacl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = debstrap_onion::build(
        &config(&served, Output::Directory(parent.join("target"))),
        &Silent,
    )
    .expect_err("refused");
    assert!(
        matches!(err, Error::Guard(TargetError::UnsafeParent { ref dir, ref why, .. })
            if dir == &parent && why.contains("65534") && why.contains("ACL")),
        "unexpected: {err}"
    );
    assert!(names_in(&parent).is_empty(), "something was made");
}

#[test]
fn root_a_symlink_on_the_way_to_target_is_judged_by_where_it_leads() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let base = served.dir.path();
    // Root's own symlink to root's own directory is fine (as /var/run -> /run is).
    let ours = base.join("ours");
    fs_err::create_dir(&ours).expect("mkdir");
    std::os::unix::fs::symlink(&ours, base.join("ours-link")).expect("symlink");
    let target = base.join("ours-link").join("target");
    debstrap_onion::build(&config(&served, Output::Directory(target)), &Silent)
        .expect("a root-owned symlink on the way is accepted");
    assert!(ours.join("target").join("usr").is_dir());

    // Root's own symlink to a directory another user owns is not.
    let theirs = base.join("theirs");
    fs_err::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    std::os::unix::fs::symlink(&theirs, base.join("theirs-link")).expect("symlink");
    let target = base.join("theirs-link").join("target");
    let err = debstrap_onion::build(&config(&served, Output::Directory(target)), &Silent)
        .expect_err("refused");
    assert!(
        matches!(err, Error::Guard(TargetError::UnsafeParent { ref dir, .. }) if dir == &theirs),
        "unexpected: {err}"
    );
    assert!(
        names_in(&theirs).is_empty(),
        "something was made in {theirs:?}"
    );
}

#[test]
fn root_a_tarballs_root_is_not_built_where_another_user_can_swap_it() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("users-dir");
    fs_err::create_dir(&parent).expect("mkdir");
    std::os::unix::fs::chown(&parent, Some(65534), Some(65534)).expect("chown");
    let tarball = parent.join("root.tar");
    let beside = std::sync::Mutex::new(Vec::new());
    let reporter = AtStage {
        at: Stage::Download,
        action: || *beside.lock().expect("lock") = names_in(&parent),
    };
    let output = Output::Tarball {
        path: tarball.clone(),
        compression: debstrap_onion::config::Compression::None,
    };
    debstrap_onion::build(&config(&served, output), &reporter).expect("the tarball is built");
    let beside = beside.into_inner().expect("lock");
    assert!(
        !beside
            .iter()
            .any(|n| n.starts_with(".debstrap-onion-root-")),
        "the root was built in a directory another user owns: {beside:?}"
    );
    assert!(tarball.is_file());
    assert_eq!(names_in(&parent), ["root.tar"]);
}

#[test]
fn root_a_build_directory_swapped_between_stages_stops_the_build() {
    if !support::host::require_root() {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("mkdir");
    let target = parent.join("target");
    let moved = served.dir.path().join("moved");
    // Between stages the build directory is renamed away and another put in its place, as a
    // user who could write TARGET's parent would do.
    // The swap happens as downloads begin, before unpacking opens anything: a stage that looked
    // the root up by its path would unpack into the swapped-in directory.
    let swapped_in = std::sync::Mutex::new(None);
    let reporter = AtStage {
        at: Stage::Download,
        action: || {
            let build = names_in(&parent)
                .into_iter()
                .find(|n| n.starts_with(".target.build-"))
                .expect("the build directory exists");
            fs_err::rename(parent.join(&build), &moved).expect("move it away");
            fs_err::create_dir(parent.join(&build)).expect("put another in its place");
            fs_err::write(parent.join(&build).join("planted"), "x").expect("plant");
            *swapped_in.lock().expect("lock") = Some(parent.join(&build));
        },
    };
    let err = debstrap_onion::build(
        &config(&served, Output::Directory(target.clone())),
        &reporter,
    )
    .expect_err("the swap is noticed");
    assert!(
        matches!(err, Error::Guard(TargetError::Replaced { .. })),
        "unexpected: {err}"
    );
    assert!(!target.exists(), "the swapped-in directory was committed");
    let swapped_in = swapped_in
        .into_inner()
        .expect("lock")
        .expect("the swap happened");
    assert_eq!(
        names_in(&swapped_in),
        ["planted"],
        "the build wrote into the directory swapped in"
    );
    assert!(
        moved.join("usr/share/good/file").is_file(),
        "unpacking went on in the directory the build created and holds"
    );
    // The directory put in its place is not reported as ours to delete; the move is.
    assert!(!debstrap_onion::cancel::leftovers().contains(&swapped_in));
    assert!(debstrap_onion::cancel::moved().contains(&swapped_in));
}

#[test]
fn root_a_stop_request_in_the_output_stage_removes_the_partial_tarball() {
    if !support::host::require_root() {
        return;
    }
    run_child("child_stops_in_the_output_stage");
}

#[test]
#[ignore = "run by root_a_stop_request_in_the_output_stage_removes_the_partial_tarball"]
fn child_stops_in_the_output_stage() {
    if !is_child("child_stops_in_the_output_stage") {
        return;
    }
    let served = serve();
    let parent = served.dir.path().join("out");
    fs_err::create_dir(&parent).expect("mkdir");
    let tarball = parent.join("root.tar");
    let output = Output::Tarball {
        path: tarball.clone(),
        compression: debstrap_onion::config::Compression::None,
    };
    let reporter = AtStage {
        at: Stage::Output,
        action: debstrap_onion::cancel::request,
    };
    let err = debstrap_onion::build(&config(&served, output), &reporter)
        .expect_err("the stop request ends the build");
    let text = format!("{err}");
    assert_eq!(text, "interrupted", "unexpected: {err:?}");
    assert!(names_in(&parent).is_empty(), "partial output left");
    assert!(debstrap_onion::cancel::leftovers().is_empty());
}

#[test]
fn root_what_cleanup_could_not_remove_is_reported_not_claimed_removed() {
    if !support::host::require_root() {
        return;
    }
    run_child("child_leaves_a_build_directory_it_cannot_remove");
}

#[test]
#[ignore = "run by root_what_cleanup_could_not_remove_is_reported_not_claimed_removed"]
fn child_leaves_a_build_directory_it_cannot_remove() {
    if !is_child("child_leaves_a_build_directory_it_cannot_remove") {
        return;
    }
    let served = serve();
    let parent = fs_err::canonicalize(served.dir.path())
        .expect("canonical")
        .join("builds");
    fs_err::create_dir(&parent).expect("mkdir");
    let _cleanup = Unmount(parent.clone());
    let target = parent.join("target");
    // Something gets mounted inside the build directory, then a stop is requested: the build
    // must not delete through the mount, and must say that it left the directory.
    let reporter = AtStage {
        at: Stage::Download,
        action: || {
            let build = names_in(&parent)
                .into_iter()
                .find(|n| n.starts_with(".target.build-"))
                .expect("the build directory exists");
            let point = parent.join(build).join("mnt");
            fs_err::create_dir(&point).expect("mkdir");
            support::sys::mount_tmpfs(&point, support::sys::MountFlags::empty(), None)
                .expect("mount");
            debstrap_onion::cancel::request();
        },
    };
    let err = debstrap_onion::build(&config(&served, Output::Directory(target)), &reporter)
        .expect_err("stopped");
    assert_eq!(err.to_string(), "interrupted", "unexpected: {err:?}");
    let left = debstrap_onion::cancel::leftovers();
    assert_eq!(left.len(), 1, "leftovers: {left:?}");
    assert!(
        left[0].starts_with(&parent) && left[0].exists(),
        "leftovers: {left:?}"
    );
}

#[test]
fn root_a_mount_point_target_that_cannot_be_emptied_is_reported_not_claimed_emptied() {
    if !support::host::require_root() {
        return;
    }
    run_child("child_leaves_a_mount_point_target_it_cannot_empty");
}

#[test]
#[ignore = "run by root_a_mount_point_target_that_cannot_be_emptied_is_reported_not_claimed_emptied"]
fn child_leaves_a_mount_point_target_it_cannot_empty() {
    if !is_child("child_leaves_a_mount_point_target_it_cannot_empty") {
        return;
    }
    let served = serve();
    let parent = fs_err::canonicalize(served.dir.path())
        .expect("canonical")
        .join("builds");
    let target = parent.join("target");
    fs_err::create_dir_all(&target).expect("mkdir");
    let _cleanup = Unmount(parent.clone());
    let tmpfs = |point: &Path| {
        support::sys::mount_tmpfs(point, support::sys::MountFlags::empty(), None).expect("mount")
    };
    tmpfs(&target);
    // The root is built in the mount point itself; something gets mounted inside it, then a
    // stop is requested: the build must not empty it through the mount, and must say so.
    let reporter = AtStage {
        at: Stage::Download,
        action: || {
            let point = target.join("mnt");
            fs_err::create_dir(&point).expect("mkdir");
            tmpfs(&point);
            debstrap_onion::cancel::request();
        },
    };
    let err = debstrap_onion::build(
        &config(&served, Output::Directory(target.clone())),
        &reporter,
    )
    .expect_err("stopped");
    assert_eq!(err.to_string(), "interrupted", "unexpected: {err:?}");
    assert_eq!(debstrap_onion::cancel::leftovers(), vec![target.clone()]);
    assert!(target.join("mnt").is_dir());
}

#[test]
fn onion_stage_stop_request_changes_nothing_on_the_host() {
    run_child("child_stops_in_the_onion_stage");
}

#[test]
#[ignore = "run by onion_stage_stop_request_changes_nothing_on_the_host"]
fn child_stops_in_the_onion_stage() {
    if !is_child("child_stops_in_the_onion_stage") {
        return;
    }
    let host = tempfile::tempdir().expect("tempdir");
    let root = tempfile::tempdir().expect("tempdir");
    debstrap_onion::cancel::request();
    let err = debstrap_onion::onion::configure_unchecked(&debstrap_onion::onion::OnionRequest {
        name: "onion",
        root: &debstrap_onion::HeldRoot::open(root.path()).expect("hold the root"),
        chroot_path: Path::new("/srv/chroot/onion"),
        suite: "trixie",
        config: &OnionConfig {
            host_root: Some(host.path().to_path_buf()),
            ..OnionConfig::default()
        },
    })
    .expect_err("stopped");
    assert!(
        matches!(err, debstrap_onion::onion::OnionError::Cancelled(_)),
        "unexpected: {err}"
    );
    assert!(
        names_in(host.path()).is_empty(),
        "the host root was changed"
    );
    assert!(names_in(root.path()).is_empty(), "the chroot was changed");
}

#[test]
fn a_stop_request_ends_the_wait_for_the_host_lock() {
    run_child("child_waits_for_the_host_lock");
}

#[test]
#[ignore = "run by a_stop_request_ends_the_wait_for_the_host_lock"]
fn child_waits_for_the_host_lock() {
    if !is_child("child_waits_for_the_host_lock") {
        return;
    }
    // A service's key is all that is left of it, and another build holds the host root's lock
    // (for up to five minutes before giving up, it would wait).
    let host = tempfile::tempdir().expect("tempdir");
    let key_dir = host.path().join("var/lib/tor/onion");
    fs_err::create_dir_all(&key_dir).expect("mkdir");
    let held = fs_err::File::open(host.path()).expect("open the host root");
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .expect("take the lock");
    // The stop request comes first, so the remove that waits can end only by seeing it while
    // it waits: nothing before the lock checks for it.
    debstrap_onion::cancel::request();
    let err = debstrap_onion::onion::remove("onion", host.path(), true).expect_err("stopped");
    assert!(
        matches!(err, debstrap_onion::onion::OnionError::Cancelled(_)),
        "unexpected: {err}"
    );
    assert!(key_dir.is_dir(), "the key was removed");
}

#[test]
fn real_archive_root_a_build_stopped_after_the_onion_stage_puts_the_host_root_back() {
    if !support::host::require_root() || support::host::host_mirror().is_none() {
        return;
    }
    run_child("child_stops_after_the_onion_stage");
}

#[test]
#[ignore = "run by real_archive_root_a_build_stopped_after_the_onion_stage_puts_the_host_root_back"]
fn child_stops_after_the_onion_stage() {
    if !is_child("child_stops_after_the_onion_stage") {
        return;
    }
    let mirror = support::host::host_mirror().expect("checked by the parent");
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    // A host root with a hand-written torrc (put back) and no /var/lib/tor nor schroot
    // directory (removed again).
    let host = dir.path().join("host");
    fs_err::create_dir_all(host.join("etc/tor")).expect("mkdir");
    fs_err::write(host.join("etc/tor/torrc"), "Log notice syslog\n").expect("torrc");
    fs_err::create_dir_all(host.join("var/lib")).expect("mkdir");
    let before = support::tree::snapshot(&host);
    let out = dir.path().join("out");
    fs_err::create_dir(&out).expect("mkdir");
    let mut config = BuildConfig::new("trixie", mirror);
    config.name = "stopped".into();
    config.cache_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-archive-cache");
    config.output = Output::Tarball {
        path: out.join("root.tar"),
        compression: debstrap_onion::config::Compression::None,
    };
    config.onion.host_root = Some(host.clone());
    // The tarball is written after the onion stage changed the host root.
    let reporter = AtStage {
        at: Stage::Output,
        action: || {
            assert!(
                host.join("var/lib/tor/stopped/hostname").is_file(),
                "the onion stage has not written the host root yet"
            );
            debstrap_onion::cancel::request();
        },
    };
    let err = debstrap_onion::build(&config, &reporter).expect_err("stopped");
    assert_eq!(err.to_string(), "interrupted", "unexpected: {err:?}");
    let diffs = support::tree::differences(&support::tree::snapshot(&host), &before);
    assert!(
        diffs.is_empty(),
        "the host root was left changed: {diffs:#?}"
    );
    assert!(names_in(&out).is_empty(), "partial output left");
    assert!(debstrap_onion::cancel::leftovers().is_empty());
}

// ---------------------------------------------------------------------------------------------
// A stop ends every process a command started (point 13)

#[test]
fn root_a_stop_request_ends_every_process_the_chroot_command_started() {
    if !support::host::require_root() {
        return;
    }
    run_child("child_stops_a_command_with_a_background_job");
}

#[test]
#[ignore = "run by root_a_stop_request_ends_every_process_the_chroot_command_started"]
fn child_stops_a_command_with_a_background_job() {
    if !is_child("child_stops_a_command_with_a_background_job") {
        return;
    }
    let tmp = sh_root();
    let root = fs_err::canonicalize(tmp.path()).expect("canonical");
    mkfifo(&root.join("ready"));
    mkfifo(&root.join("never"));
    let result = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            // The background job says it runs; then every process in the root is the command's.
            let ready = fs_err::read_to_string(root.join("ready")).expect("read ready");
            assert_eq!(ready, "started\n");
            let pids = processes_rooted_in(&root);
            assert!(pids.len() >= 2, "the command and its job: {pids:?}");
            let pidfds: Vec<_> = pids
                .iter()
                .map(|&pid| {
                    let pid = rustix::process::Pid::from_raw(pid).expect("a positive pid");
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                        .expect("pidfd of a process in the root")
                })
                .collect();
            debstrap_onion::cancel::request();
            pidfds
        });
        let result = debstrap_onion::stage::run_in_chroot(
            &root,
            &[
                "sh",
                "-c",
                "sh -c 'echo started > /ready; read x < /never' & wait",
            ],
            &[],
            None,
        );
        // Should the job have failed before saying it runs, this releases the watcher (which
        // then fails its assertion) instead of leaving the test hanging.
        release_fifo(&root.join("ready"));
        (result, watcher.join().expect("watcher"))
    });
    let (result, pidfds) = result;
    let err = result.expect_err("the command was stopped");
    assert!(
        matches!(err, debstrap_onion::stage::StageError::Cancelled(_)),
        "unexpected: {err}"
    );
    // The background job must end too; ten seconds bound the wait should it not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut running = 0;
    for pidfd in &pidfds {
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        if !support::sys::readable_within(pidfd, wait) {
            running += 1;
        }
    }
    release_fifo(&root.join("never"));
    assert_eq!(running, 0, "the command's background job outlived the stop");
}

// ---------------------------------------------------------------------------------------------
// Images leave the host alone (point 4)

/// Runs the binary in a private mount namespace where /etc and /var/lib are read-only: any
/// write to the host's torrc, /var/lib/tor or /etc/schroot fails the build.
fn build_with_host_read_only(args: &[&str]) -> std::process::Output {
    let mut script = String::from(
        "mount --make-rprivate / && mount -o bind,ro /etc /etc && \
         mount -o bind,ro /var/lib /var/lib && exec \"$0\" \"$@\"",
    );
    script.push('\n');
    Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            &script,
            env!("CARGO_BIN_EXE_debstrap-onion"),
        ])
        .args(args)
        .output()
        .expect("run unshare")
}

fn tar_names(tarball: &Path) -> Vec<String> {
    let file = fs_err::File::open(tarball).expect("open tarball");
    let mut archive = tar::Archive::new(file);
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn real_archive_root_tarball_builds_leave_the_host_alone() {
    if !support::host::require_root() || !support::host::require_program("unshare") {
        return;
    }
    let Some(mirror) = support::host::host_mirror() else {
        return;
    };
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-archive-cache");
    let cache = cache.to_str().expect("utf-8");
    let image = dir.path().join("image.tar");
    let image_s = image.to_str().expect("utf-8");
    let suite = "bookworm";

    // Without --host-root: nothing on the host, the onion files inside the image.
    let out = build_with_host_read_only(&[
        "build",
        "-q",
        "--cache-dir",
        cache,
        "--name",
        "img",
        suite,
        image_s,
        &mirror,
    ]);
    assert!(
        out.status.success(),
        "the image build failed (did it write the host?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = tar_names(&image);
    for inside in [
        "./var/lib/debstrap-onion/host/var/lib/tor/img/hostname",
        "./var/lib/debstrap-onion/host/var/lib/tor/img/hs_ed25519_secret_key",
        "./var/lib/debstrap-onion/host/etc/tor/torrc",
        "./var/lib/debstrap-onion/host/etc/schroot/chroot.d/img",
    ] {
        assert!(
            names.iter().any(|n| n == inside),
            "{inside} is not in the image"
        );
    }

    // With --host-root: the files go there, and still nothing on the host.
    let host = dir.path().join("host");
    fs_err::create_dir(&host).expect("mkdir");
    let image2 = dir.path().join("image2.tar");
    let out = build_with_host_read_only(&[
        "build",
        "-q",
        "--cache-dir",
        cache,
        "--name",
        "img",
        "--host-root",
        host.to_str().expect("utf-8"),
        suite,
        image2.to_str().expect("utf-8"),
        &mirror,
    ]);
    assert!(
        out.status.success(),
        "the image build with --host-root failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(host.join("var/lib/tor/img/hostname").is_file());
    assert!(host.join("etc/tor/torrc").is_file());
    assert!(host.join("etc/schroot/chroot.d/img").is_file());
    assert!(!tar_names(&image2)
        .iter()
        .any(|n| n.starts_with("./var/lib/debstrap-onion")));
}
