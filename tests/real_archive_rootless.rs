//! Rootless builds against the real archive, as the unprivileged user .ci/run creates (with
//! subordinate id ranges): a trixie minbase `.tar` has the sha256 of root's build from the same
//! run and unpacks to a root `dpkg --audit` and `apt-get check` accept; a directory build
//! leaves no mount and no process, its files owned by the mapped host ids and no placeholder
//! in /dev; the default onion build with --host-root writes a key real tor accepts and leaves
//! the host's /etc alone.

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Output};

use support::host::{assert_ok, host_mirror, run_ok, shared_cache};
use support::rootless::{self, User, Workdir};

const EPOCH: &str = "1700000000";

fn sha256(path: &Path) -> String {
    debstrap_onion::fetch::Sha256Digest::of(&fs_err::read(path).expect("read tarball")).to_hex()
}

/// `args` run as root, in the chroot `root`.
fn chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("chroot")
}

/// `dpkg --audit` prints nothing and `apt-get check` succeeds in `root`.
fn assert_working_root(root: &Path) {
    let audit = chroot(root, &["dpkg", "--audit"]);
    assert_ok("dpkg --audit", &audit);
    assert!(
        audit.stdout.is_empty(),
        "dpkg --audit: {}",
        String::from_utf8_lossy(&audit.stdout)
    );
    assert_ok("apt-get check", &chroot(root, &["apt-get", "check"]));
}

/// Mount points under `dir` in this (the host's) mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = fs_err::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.to_str().expect("utf-8");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// Processes whose root, working directory or command line is under `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").expect("/proc").flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = entry.path();
        let in_dir = ["root", "cwd"]
            .iter()
            .filter_map(|link| fs_err::read_link(base.join(link)).ok())
            .any(|p| p.starts_with(dir) && p != Path::new("/"));
        let cmdline = fs_err::read(base.join("cmdline")).unwrap_or_default();
        let named = String::from_utf8_lossy(&cmdline).contains(dir.to_str().expect("utf-8"));
        if in_dir || named {
            found.push(format!("{pid}: {}", String::from_utf8_lossy(&cmdline)));
        }
    }
    found
}

/// The rootless user, the host's mirror and a working directory of the user's; `None` (after
/// the skip rule) when the user or the mirror is missing.
fn prerequisites() -> Option<(User, String, Workdir)> {
    let user = rootless::user()?;
    let mirror = host_mirror()?;
    let work = Workdir::new(&user);
    Some((user, mirror, work))
}

/// `build trixie TARGET MIRROR --cache-dir WORK/cache` and `extra`: the tool's arguments.
fn trixie(work: &Workdir, target: &Path, mirror: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["build".into(), "trixie".into()];
    args.push(target.display().to_string());
    args.push(mirror.into());
    args.push("--cache-dir".into());
    args.push(work.path().join("cache").display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn build_as(user: &User, work: &Workdir, args: &[String]) -> Output {
    let out = rootless::command_as(user, work, args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("run setpriv");
    assert_ok(&format!("rootless debstrap-onion {args:?}"), &out);
    out
}

#[test]
fn real_archive_root_a_rootless_tarball_is_root_builds_byte_for_byte() {
    let Some((user, mirror, work)) = prerequisites() else {
        return;
    };
    let theirs = work.path().join("rootless.tar");
    // Hooks run in rootless mode as in root mode, outside the root and chrooted into it, and
    // what they write deterministically keeps the tarballs equal.
    let hooks = [
        "--essential-hook",
        r#"chroot "$1" sh -c 'echo chrooted > /etc/hook-chroot'"#,
        "--customize-hook",
        r#"echo stamp > "$1/etc/hook-stamp""#,
    ];
    let mut extra = vec!["--no-onion"];
    extra.extend_from_slice(&hooks);
    let args = trixie(&work, &theirs, &mirror, &extra);
    build_as(&user, &work, &args);
    assert_eq!(
        fs_err::metadata(&theirs).expect("stat").uid(),
        user.uid,
        "the tarball belongs to its builder"
    );
    let ours = work.path().join("root.tar");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args(["build", "--no-onion", "--mode", "root", "trixie"])
            .arg(&ours)
            .arg(&mirror)
            .arg("--cache-dir")
            .arg(shared_cache())
            .args(hooks)
            .env("SOURCE_DATE_EPOCH", EPOCH),
    );
    let (rootless_sum, root_sum) = (sha256(&theirs), sha256(&ours));
    eprintln!("trixie minbase .tar sha256: rootless {rootless_sum}, root {root_sum}");
    assert_eq!(
        rootless_sum, root_sum,
        "the rootless tarball differs from root's"
    );

    let unpacked = work.path().join("unpacked");
    fs_err::create_dir(&unpacked).expect("mkdir");
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&theirs)
            .arg("-C")
            .arg(&unpacked),
    );
    assert_working_root(&unpacked);
    for (file, text) in [
        ("etc/hook-chroot", "chrooted\n"),
        ("etc/hook-stamp", "stamp\n"),
    ] {
        assert_eq!(
            fs_err::read_to_string(unpacked.join(file)).expect("hook output"),
            text
        );
    }
}

#[test]
fn real_archive_root_a_rootless_directory_leaves_no_mount_no_process_and_mapped_owners() {
    let Some((user, mirror, work)) = prerequisites() else {
        return;
    };
    let target = work.path().join("root");
    let mode_file = work.path().join("hook-mode");
    let mode_hook = format!("echo \"$MMDEBSTRAP_MODE\" > {}", mode_file.display());
    // Special forms run rootless too: a file copied in, the root's /etc packed out.
    let source = work.path().join("copied");
    fs_err::write(&source, b"copied in\n").expect("write");
    let copy_in = format!("copy-in {} /root", source.display());
    let packed = work.path().join("etc.tar");
    let tar_out = format!("tar-out /etc {}", packed.display());
    // What the chroot sees mounted while its scripts run.
    let mounts_file = work.path().join("chroot-mounts");
    let mounts_hook = format!(
        "chroot \"$1\" cat /proc/self/mountinfo > {}",
        mounts_file.display()
    );
    let extra = [
        "--no-onion",
        "--setup-hook",
        &mode_hook,
        "--customize-hook",
        &copy_in,
        "--customize-hook",
        &tar_out,
        "--customize-hook",
        &mounts_hook,
    ];
    let out = build_as(&user, &work, &trixie(&work, &target, &mirror, &extra));
    assert_eq!(
        fs_err::read_to_string(&mode_file).expect("the hook's record"),
        "unshare\n",
        "hooks are told the mode, as mmdebstrap tells them"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unshare --map-auto --map-root-user"),
        "the build says how to enter its directory"
    );
    // The host's /sys is bound (sysfs cannot be mounted in a user namespace) with everything
    // under it, then made read-only, nosuid, nodev and noexec like a root build's sysfs, whatever
    // the host's /sys allows.
    let seen = fs_err::read_to_string(&mounts_file).expect("the chroot's mountinfo");
    let options = |point: &str| {
        seen.lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.len() > 5 && f[4] == point)
            .map(|f| f[5].split(',').map(str::to_owned).collect::<Vec<_>>())
    };
    let sys = options("/sys").unwrap_or_else(|| panic!("no /sys in the chroot:\n{seen}"));
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            sys.contains(&flag.to_owned()),
            "/sys is not {flag}: {sys:?}"
        );
    }
    let host = fs_err::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let below_sys = |info: &str| {
        info.lines()
            .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with("/sys/")))
            .count()
    };
    if below_sys(&host) > 0 {
        assert!(
            below_sys(&seen) > 0,
            "the host's mounts under /sys are not bound with it:\n{seen}"
        );
    }
    assert_eq!(
        mounts_under(work.path()),
        Vec::<String>::new(),
        "mounts left"
    );
    assert_eq!(
        processes_under(work.path()),
        Vec::<String>::new(),
        "processes left"
    );

    // In-namespace id 0 is the caller, id N > 0 the caller's subordinate id start + N - 1.
    let owner = |rel: &str| {
        let meta = fs_err::symlink_metadata(target.join(rel)).expect("stat");
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner("usr/bin/dpkg"), (user.uid, user.gid));
    let shadow_gid = debstrap_onion::sys::group_id("shadow")
        .ok()
        .flatten()
        .unwrap_or(42);
    assert_eq!(
        owner("etc/shadow"),
        (user.uid, user.subgid + shadow_gid - 1),
        "etc/shadow is root:shadow inside"
    );
    assert_eq!(
        fs_err::read(target.join("root/copied")).expect("copy-in's file"),
        b"copied in\n"
    );
    let listed = run_ok(Command::new("tar").arg("-tf").arg(&packed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("hostname"),
        "tar-out packed no etc/hostname"
    );
    let apt_log = owner("var/log/apt");
    assert_eq!(apt_log.0, user.uid);
    // No placeholder for a device node is left as an empty file.
    for entry in fs_err::read_dir(target.join("dev")).expect("dev").flatten() {
        let kind = entry.file_type().expect("type");
        assert!(
            kind.is_dir() || kind.is_symlink(),
            "dev/{} is neither a directory nor a link",
            entry.file_name().to_string_lossy()
        );
    }
    assert_working_root(&target);
}

#[test]
fn real_archive_root_the_default_onion_build_runs_rootless_with_host_root() {
    let Some((user, mirror, work)) = prerequisites() else {
        return;
    };
    let target = work.path().join("onion");
    let host_root = work.path().join("host");
    let torrc_before = fs_err::read("/etc/tor/torrc").ok();
    let schroot_before = fs_err::read_dir("/etc/schroot/chroot.d")
        .map(|d| d.count())
        .unwrap_or(0);
    let extra = ["--host-root", host_root.to_str().expect("utf-8")];
    let out = build_as(&user, &work, &trixie(&work, &target, &mirror, &extra));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let address = stdout
        .split_whitespace()
        .find(|w| w.ends_with(".onion"))
        .unwrap_or_else(|| panic!("no onion address in:\n{stdout}"))
        .to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("this host was not changed") && stderr.contains("/var/lib/tor/onion"),
        "the build says what an admin copies where:\n{stderr}"
    );
    assert_eq!(
        fs_err::read("/etc/tor/torrc").ok(),
        torrc_before,
        "host torrc changed"
    );
    assert_eq!(
        fs_err::read_dir("/etc/schroot/chroot.d")
            .map(|d| d.count())
            .unwrap_or(0),
        schroot_before,
        "host schroot definitions changed"
    );
    let key_dir = host_root.join("var/lib/tor/onion");
    assert_eq!(fs_err::metadata(&key_dir).expect("key dir").uid(), user.uid);
    let torrc = fs_err::read_to_string(host_root.join("etc/tor/torrc")).expect("torrc");
    assert!(
        torrc.contains("HiddenServiceDir /var/lib/tor/onion/"),
        "{torrc}"
    );
    if let Some(hostname) = support::tor::hostname_from_real_tor(&key_dir) {
        assert_eq!(hostname.trim(), address, "real tor derives another address");
    }
    assert!(target.join("usr/sbin/nginx").exists(), "nginx is installed");
    assert_eq!(
        mounts_under(work.path()),
        Vec::<String>::new(),
        "mounts left"
    );
}

#[test]
fn real_archive_root_sigterm_to_a_rootless_build_reaches_it_and_leaves_nothing() {
    use std::io::BufRead as _;
    let Some((user, mirror, work)) = prerequisites() else {
        return;
    };
    let target = work.path().join("root");
    let args = trixie(&work, &target, &mirror, &["--no-onion"]);
    let mut child = rootless::command_as(&user, &work, &args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // The signal goes once maintainer scripts run in the namespace (mounts made, PID namespaces
    // in use), to the process the caller started: it forwards it inward.
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read stderr");
        let configuring = line.contains("configuring packages");
        seen.push(line);
        if configuring {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("configuring packages")),
        "the build ended before configuring:\n{}",
        seen.join("\n")
    );
    support::sys::signal(child.id(), support::sys::Signal::TERM).expect("kill");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(130),
        "exit status; stderr:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("partial output removed")),
        "{}",
        rest.join("\n")
    );
    assert!(!target.exists(), "TARGET exists");
    let left: Vec<String> = fs_err::read_dir(work.path())
        .expect("read workdir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "debstrap-onion" && n != "cache")
        .collect();
    assert_eq!(left, Vec::<String>::new(), "left in the workdir");
    assert_eq!(
        mounts_under(work.path()),
        Vec::<String>::new(),
        "mounts left"
    );
    assert_eq!(
        processes_under(work.path()),
        Vec::<String>::new(),
        "processes left"
    );
}

/// Emulated (qemu) and so minutes long: run by hand with `-- --ignored`.
#[test]
#[ignore = "an emulated arm64 build takes minutes: run by hand"]
fn real_archive_root_a_rootless_arm64_tarball_is_root_builds_byte_for_byte() {
    let Some((user, mirror, work)) = prerequisites() else {
        return;
    };
    let theirs = work.path().join("rootless.tar");
    build_as(
        &user,
        &work,
        &trixie(&work, &theirs, &mirror, &["--no-onion", "--arch", "arm64"]),
    );
    let ours = work.path().join("root.tar");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
            .args([
                "build",
                "--no-onion",
                "--mode",
                "root",
                "--arch",
                "arm64",
                "trixie",
            ])
            .arg(&ours)
            .arg(&mirror)
            .arg("--cache-dir")
            .arg(shared_cache())
            .env("SOURCE_DATE_EPOCH", EPOCH),
    );
    assert_eq!(
        sha256(&theirs),
        sha256(&ours),
        "the rootless arm64 tarball differs"
    );
}
