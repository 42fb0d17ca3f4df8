//! Options README promises, through the command line against offline fixtures: `--exclude`,
//! `--components`, `-q`, `.tar.gz` / `.tar.xz` TARGETs (read back by gzip, xz and GNU tar),
//! directory output that repeats (listed by GNU find), `status` exit 3 and `stop` when nothing
//! runs, and a TARGET with a mount inside refused. Tests that build a root need root.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::deb::DebBuilder;
use support::repo::{key_path, sample_packages, FakeDeb, RepoSpec, Served};
use support::server::Fault;

const BIN: &str = env!("CARGO_BIN_EXE_debstrap-onion");

fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DEBSTRAP_MIRROR")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DEBSTRAP_LOG")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    out
}

/// `build --no-onion --arch NATIVE --keyring TEST-KEY --cache-dir DIR/cache ARGS fixture TARGET
/// URL`.
fn build(served: &Served, args: &[&str], target: &Path) -> Command {
    let mut cmd = bin();
    cmd.args([
        "build",
        "--no-onion",
        "--arch",
        &crate::support::native_arch(),
        "--keyring",
    ])
    .arg(key_path("test-archive.pub.asc"))
    .arg("--cache-dir")
    .arg(served.dir.path().join("cache"))
    .args(args)
    .arg("fixture")
    .arg(target)
    .arg(&served.server.url);
    cmd
}

fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_string).collect()
}

// --- package selection ----------------------------------------------------------------------

#[test]
fn exclude_drops_a_seed_package_unless_a_dependency_pulls_it_back() {
    let served = Served::start(
        &RepoSpec::fresh(),
        "test-archive.sec.asc",
        &sample_packages(),
    );
    let target = served.dir.path().join("target");
    let all = ok(&mut build(&served, &["--print-packages"], &target));
    assert_eq!(lines(&all), ["apt 2.9", "base 1.0-1", "libfoo 2.1-1"]);
    // apt is only in the seed set: excluded, it goes (base and its dependency stay).
    let out = ok(&mut build(
        &served,
        &["--print-packages", "--exclude", "apt"],
        &target,
    ));
    assert_eq!(lines(&out), ["base 1.0-1", "libfoo 2.1-1"]);
    // base is in the seed set too, but apt depends on it.
    let out = ok(&mut build(
        &served,
        &["--print-packages", "--exclude", "base"],
        &target,
    ));
    assert_eq!(lines(&out), ["apt 2.9", "base 1.0-1", "libfoo 2.1-1"]);
}

/// Adds component `contrib` holding one required package to the served repository, and signs
/// its Release again.
fn add_contrib(served: &Served) {
    use sha2::Digest as _;
    let dists = served.repo().join("dists/fixture");
    let arch = crate::support::native_arch();
    let index_dir = dists.join(format!("contrib/binary-{arch}"));
    fs_err::create_dir_all(index_dir.join("by-hash/SHA256")).expect("mkdir contrib");
    let packages = format!(
        "Package: contribpkg\nVersion: 3.0\nArchitecture: {arch}\nPriority: required\n\
                    Filename: pool/contrib/c/contribpkg_3.0_{arch}.deb\nSize: 10\n\
                    SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n\
                    Description: fixture package in contrib\n\n"
    );
    let digest = hex::encode(sha2::Sha256::digest(packages.as_bytes()));
    fs_err::write(index_dir.join("Packages"), &packages).expect("contrib Packages");
    fs_err::write(index_dir.join("by-hash/SHA256").join(&digest), &packages).expect("by-hash");
    let release = fs_err::read_to_string(dists.join("Release")).expect("Release");
    let release = release.replace("Components: main\n", "Components: main contrib\n")
        + &format!(
            " {digest} {:>8} contrib/binary-{arch}/Packages\n",
            packages.len()
        );
    let secret = fs_err::read(key_path("test-archive.sec.asc")).expect("key");
    fs_err::write(dists.join("Release"), &release).expect("Release");
    fs_err::write(
        dists.join("InRelease"),
        support::sign::clearsign(&secret, release.as_bytes()),
    )
    .expect("InRelease");
}

#[test]
fn components_reads_the_indices_of_every_named_component() {
    let served = Served::start(
        &RepoSpec::fresh(),
        "test-archive.sec.asc",
        &sample_packages(),
    );
    add_contrib(&served);
    let target = served.dir.path().join("target");
    let main_only = ok(&mut build(&served, &["--print-packages"], &target));
    assert_eq!(lines(&main_only), ["apt 2.9", "base 1.0-1", "libfoo 2.1-1"]);
    assert!(
        served
            .server
            .requests()
            .iter()
            .all(|p| !p.contains("/contrib/")),
        "contrib was read without being asked for"
    );
    let both = ok(&mut build(
        &served,
        &["--print-packages", "--components", "main,contrib"],
        &target,
    ));
    assert_eq!(
        lines(&both),
        ["apt 2.9", "base 1.0-1", "contribpkg 3.0", "libfoo 2.1-1"]
    );
    let out = run(&mut build(
        &served,
        &["--print-packages", "--components", "main,non-free"],
        &target,
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("non-free"),
        "{}",
        text(&out.stderr)
    );
}

// --- verbosity --------------------------------------------------------------------------------

#[test]
fn quiet_prints_nothing_but_errors() {
    let served = Served::start(
        &RepoSpec::fresh(),
        "test-archive.sec.asc",
        &sample_packages(),
    );
    let target = served.dir.path().join("target");
    // One dropped connection makes the default output carry a retry warning too.
    served
        .server
        .fault("/dists/fixture/InRelease", Fault::Drop(1));
    let normal = ok(&mut build(&served, &["--download-only"], &target));
    let normal = text(&normal.stderr);
    assert!(normal.contains("==> "), "{normal}");
    assert!(normal.contains("retrying"), "{normal}");

    served
        .server
        .fault("/dists/fixture/InRelease", Fault::Drop(1));
    let quiet = ok(&mut build(&served, &["--download-only", "-q"], &target));
    assert_eq!(text(&quiet.stderr), "", "-q printed something");
    assert_eq!(text(&quiet.stdout), "", "-q printed something");

    served
        .server
        .fault("/dists/fixture/InRelease", Fault::Status(403));
    let failed = run(&mut build(&served, &["--download-only", "-q"], &target));
    assert_eq!(failed.status.code(), Some(1));
    let err = text(&failed.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("InRelease") && !err.contains("==> "),
        "{err}"
    );
}

// --- tarballs and directories ---------------------------------------------------------------

/// A repository of real (tiny) .debs that `--variant extract` unpacks.
fn tiny_debs() -> Vec<FakeDeb> {
    let base = DebBuilder::new("base", "1.0", &crate::support::native_arch())
        .dir("./usr/share/base/", 0o755)
        .file("./usr/share/base/file", 0o644, b"a file of base\n")
        .file("./usr/bin/base-tool", 0o755, b"#!/bin/sh\necho base\n")
        .symlink("./usr/bin/base-alias", "base-tool");
    let apt = DebBuilder::new("apt", "1.0", &crate::support::native_arch()).file(
        "./usr/bin/apt",
        0o755,
        b"#!/bin/sh\n",
    );
    vec![
        FakeDeb::new("base", "1.0", &[("Priority", "required")], base.build()),
        FakeDeb::new("apt", "1.0", &[("Priority", "required")], apt.build()),
    ]
}

fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
    out.stdout
}

#[test]
fn root_tar_gz_and_tar_xz_targets_hold_the_same_tar_as_a_plain_tar_target() {
    if !support::host::require_root()
        || !support::host::require_program("gzip")
        || !support::host::require_program("xz")
        || !support::host::require_program("tar")
    {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let out_dir = served.dir.path().join("out");
    fs_err::create_dir(&out_dir).expect("out dir");
    let args = [
        "--variant",
        "extract",
        "--include",
        "base,apt",
        "--source-date-epoch",
        "1700000000",
    ];
    let mut tars = Vec::new();
    for name in ["root.tar", "root.tar.gz", "root.tar.xz"] {
        let path = out_dir.join(name);
        ok(&mut build(&served, &args, &path));
        tars.push(path);
    }
    let plain = fs_err::read(&tars[0]).expect("root.tar");
    let gunzipped = tool(Command::new("gzip").arg("-dc").arg(&tars[1]));
    let unxzed = tool(Command::new("xz").arg("-dc").arg(&tars[2]));
    assert!(gunzipped == plain, "root.tar.gz does not hold root.tar");
    assert!(unxzed == plain, "root.tar.xz does not hold root.tar");
    // And it is the root: GNU tar lists the packages' files.
    let listed = text(&tool(Command::new("tar").arg("-tJf").arg(&tars[2])));
    for entry in [
        "./usr/share/base/file",
        "./usr/bin/apt",
        "./usr/bin/base-alias",
    ] {
        assert!(
            listed.lines().any(|l| l == entry),
            "{entry} missing:\n{listed}"
        );
    }
    let names: Vec<String> = fs_err::read_dir(&out_dir)
        .expect("out dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "temporary files left beside: {names:?}");
}

/// GNU find's listing of `root`: path, type, mode, owner, mtime to the nanosecond, link
/// target; and sha256sum of every regular file.
fn find_listing(root: &Path) -> String {
    let listing = tool(
        Command::new("find")
            .arg(".")
            .args(["-printf", "%p %y %m %U %G %T@ %l\\n"])
            .current_dir(root),
    );
    let mut lines: Vec<&str> = std::str::from_utf8(&listing)
        .expect("utf-8")
        .lines()
        .collect();
    lines.sort_unstable();
    let hashes = tool(
        Command::new("sh")
            .args([
                "-c",
                "find . -type f -print0 | sort -z | xargs -0 sha256sum",
            ])
            .current_dir(root),
    );
    format!("{}\n{}", lines.join("\n"), text(&hashes))
}

#[test]
fn root_directory_output_with_an_epoch_repeats_exactly() {
    if !support::host::require_root() || !support::host::require_program("find") {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let args = [
        "--variant",
        "extract",
        "--include",
        "base,apt",
        "--source-date-epoch",
        "1700000000",
    ];
    let first = served.dir.path().join("first");
    let second = served.dir.path().join("second");
    ok(&mut build(&served, &args, &first));
    // The second build under another umask and time zone.
    ok(build(&served, &args, &second)
        .env("TZ", "Pacific/Kiritimati")
        .env("LC_ALL", "C"));
    let (a, b) = (find_listing(&first), find_listing(&second));
    assert!(a.contains("./usr/share/base/file f 644 0 0 "), "{a}");
    assert_eq!(a, b, "two directory builds differ");
}

// --- start / stop / status ------------------------------------------------------------------

/// A host root and chroot configured by the onion stage for NAME `web` on `port`.
struct Service {
    dir: tempfile::TempDir,
    address: String,
}

impl Service {
    fn configure(port: u16) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("chroot");
        for sub in ["etc/nginx/sites-available", "etc/nginx/sites-enabled"] {
            fs_err::create_dir_all(root.join(sub)).expect("mkdir");
        }
        fs_err::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        fs_err::write(root.join("etc/group"), "root:x:0:\n").expect("group");
        fs_err::create_dir_all(dir.path().join("host")).expect("host root");
        let config = debstrap_onion::config::OnionConfig {
            host_root: Some(dir.path().join("host")),
            local_port: Some(std::num::NonZeroU16::new(port).expect("a port is not 0")),
            ..Default::default()
        };
        let report =
            debstrap_onion::onion::configure_unchecked(&debstrap_onion::onion::OnionRequest {
                name: "web",
                root: &debstrap_onion::HeldRoot::open(&root).expect("hold the root"),
                chroot_path: &root,
                suite: "trixie",
                config: &config,
            })
            .expect("configure")
            .keep();
        Service {
            dir,
            address: report.address,
        }
    }

    fn command(&self, verb: &str) -> Output {
        run(bin()
            .args([verb, "web", "--host-root"])
            .arg(self.dir.path().join("host")))
    }
}

/// A port nothing listens on once the listener that found it is gone.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

#[test]
fn status_exits_3_when_nothing_answers_and_0_when_the_site_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let service = Service::configure(port);

    // Something answers on the port: status asks for the onion name and exits 0.
    let answering = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut host = None;
        let mut line = String::new();
        while reader.read_line(&mut line).expect("read") > 2 {
            if let Some(value) = line.strip_prefix("Host: ") {
                host = Some(value.trim().to_string());
            }
            line.clear();
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("answer");
        host
    });
    let up = service.command("status");
    assert_eq!(up.status.code(), Some(0), "{}", text(&up.stderr));
    assert!(
        text(&up.stdout).contains("HTTP 200"),
        "{}",
        text(&up.stdout)
    );
    let host = answering.join().expect("server thread");
    assert_eq!(host.as_deref(), Some(service.address.as_str()));

    // Nothing answers any more (the listener is gone with its thread).
    let down = service.command("status");
    assert_eq!(
        down.status.code(),
        Some(3),
        "{}{}",
        text(&down.stdout),
        text(&down.stderr)
    );
    assert!(
        text(&down.stdout).contains("not running"),
        "{}",
        text(&down.stdout)
    );
}

#[test]
fn stop_when_nothing_runs_succeeds_and_says_so() {
    let service = Service::configure(closed_port());
    let out = service.command("stop");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nginx was not running; 0 mounts removed"),
        "{}",
        text(&out.stdout)
    );
    // And again: stopping is idempotent.
    let again = service.command("stop");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
}

// --- a TARGET in use ------------------------------------------------------------------------

/// Unmounts a test's mount when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = support::sys::detach(&self.0);
    }
}

#[test]
fn root_a_target_with_a_mount_inside_is_refused_and_left_alone() {
    if !support::host::require_root() {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let target = served.dir.path().join("in-use");
    let proc_dir = target.join("proc");
    fs_err::create_dir_all(&proc_dir).expect("mkdir");
    support::sys::mount_tmpfs(&proc_dir, support::sys::MountFlags::empty(), None)
        .expect("mount a tmpfs in TARGET");
    let _unmount = Unmount(proc_dir.clone());
    fs_err::write(proc_dir.join("in-use"), "busy").expect("write into the mount");

    let out = run(&mut build(
        &served,
        &["--variant", "extract", "--include", "base,apt", "--force"],
        &target,
    ));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has mounts inside") && err.contains(&*target.to_string_lossy()),
        "{err}"
    );
    assert_eq!(
        fs_err::read_to_string(proc_dir.join("in-use")).expect("still there"),
        "busy"
    );
    assert_eq!(
        debstrap_onion::stage::mounts_under(&target),
        [fs_err::canonicalize(&proc_dir).expect("canonical")],
        "the mount was touched"
    );
    assert!(
        served
            .server
            .requests()
            .iter()
            .all(|p| !p.ends_with(".deb")),
        "packages were fetched before the refusal"
    );
}

/// README: a TARGET on a noexec filesystem (where no maintainer script could run) is refused
/// before any package is fetched, naming the mount point and the option.
#[test]
fn root_a_target_on_a_noexec_filesystem_is_refused_before_any_download() {
    if !support::host::require_root() {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let mount_point = served.dir.path().join("noexec");
    fs_err::create_dir(&mount_point).expect("mkdir");
    support::sys::mount_tmpfs(
        &mount_point,
        support::sys::MountFlags::NOEXEC | support::sys::MountFlags::NODEV,
        None,
    )
    .expect("mount a noexec,nodev tmpfs");
    let _unmount = Unmount(mount_point.clone());
    let target = mount_point.join("target");
    let out = run(&mut build(
        &served,
        &["--variant", "minbase", "--include", "base,apt"],
        &target,
    ));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("noexec") && err.contains(&*mount_point.to_string_lossy()),
        "{err}"
    );
    assert!(
        served
            .server
            .requests()
            .iter()
            .all(|p| !p.ends_with(".deb")),
        "packages were fetched before the refusal"
    );
    assert!(!target.exists(), "TARGET was made");
    assert!(
        debstrap_onion::stage::mounts_under(&mount_point).is_empty(),
        "the build left mounts"
    );
}
