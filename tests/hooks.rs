//! Hooks, offline: each point of the pipeline on the fixture repository, each special form on a
//! small root, hostile special forms that aim outside the root at a file or directory the test
//! then inspects, and a failing or interrupted hook run through the binary (no TARGET, no mount,
//! the hook's child killed).

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use debstrap_onion::config::{BuildConfig, Output, StopAfter, Variant};
use debstrap_onion::hooks::{self, BuildFacts, Hook, HookPoint, HookRequest, Hooks};
use debstrap_onion::{HeldRoot, Silent};
use support::deb::DebBuilder;
use support::repo::{key_path, FakeDeb, RepoSpec, Served};

const BIN: &str = env!("CARGO_BIN_EXE_debstrap-onion");

fn served() -> Served {
    let good = DebBuilder::new("good", "1.0", &support::native_arch()).file(
        "./usr/share/good/file",
        0o644,
        b"fine",
    );
    Served::start(
        &RepoSpec::fresh(),
        "test-archive.sec.asc",
        &[FakeDeb::new(
            "good",
            "1.0",
            &[("Priority", "required")],
            good.build(),
        )],
    )
}

fn config(served: &Served, output: Output, hooks: Vec<(HookPoint, &str)>) -> BuildConfig {
    let mut config = BuildConfig::new("fixture", served.server.url.clone());
    config.keyrings = vec![key_path("test-archive.pub.asc")];
    config.cache_dir = served.dir.path().join("cache");
    config.output = output;
    config.variant = Variant::Extract;
    config.include = vec!["good".into()];
    config.stop_after = StopAfter::Complete;
    config.publish_onion = false;
    config.arch = support::native_arch();
    config.hooks = Hooks {
        list: hooks
            .into_iter()
            .map(|(p, t)| (p, Hook::parse(t).expect("hook parses")))
            .collect(),
        verbosity: 1,
    };
    config
}

/// Every mount point the host (this test's namespace) has under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let dir = fs_err::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = fs_err::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&dir) && Path::new(p) != dir)
        .map(str::to_owned)
        .collect()
}

fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn root_setup_and_extract_hooks_run_at_their_points_with_the_build_described() {
    if !support::host::require_root() {
        return;
    }
    let served = served();
    let out = served.dir.path().join("seen");
    fs_err::create_dir(&out).expect("out dir");
    let o = out.display();
    let setup = format!(
        "ls -A \"$1\" > {o}/setup-ls; env | grep -E '^(MMDEBSTRAP|DEBSTRAP)_' | sort > {o}/env; \
         mkdir -p \"$1/etc\" && echo from-setup > \"$1/etc/setup-mark\""
    );
    // The extract hook sees the unpacked files and the root's /proc mounted (in its namespace).
    let extract = format!(
        "cat \"$1/usr/share/good/file\" > {o}/extract-saw; test -e \"$1/proc/self/status\" && \
         echo proc > {o}/extract-mounts; echo from-extract > \"$1/etc/extract-mark\""
    );
    let target = served.dir.path().join("builds/target");
    let cfg = config(
        &served,
        Output::Directory(target.clone()),
        vec![
            (HookPoint::Setup, setup.as_str()),
            (HookPoint::Extract, extract.as_str()),
            // Not run: mmdebstrap runs neither at the extract variant.
            (HookPoint::Customize, "touch \"$1/customized\""),
        ],
    );
    debstrap_onion::build(&cfg, &Silent).expect("build with hooks");

    assert_eq!(read(&out.join("setup-ls")), "", "the setup root is empty");
    assert_eq!(read(&out.join("extract-saw")), "fine");
    assert_eq!(read(&out.join("extract-mounts")), "proc\n");
    assert_eq!(read(&target.join("etc/setup-mark")), "from-setup\n");
    assert_eq!(read(&target.join("etc/extract-mark")), "from-extract\n");
    assert!(!target.join("customized").exists());
    assert!(!target.join("proc/self").exists(), "proc stayed mounted");
    assert!(host_mounts_under(served.dir.path()).is_empty());
    let env = read(&out.join("env"));
    for line in [
        "MMDEBSTRAP_HOOK=setup",
        "MMDEBSTRAP_MODE=root",
        &format!("MMDEBSTRAP_ARCH={}", support::native_arch()),
        "MMDEBSTRAP_SUITE=fixture",
        "MMDEBSTRAP_VARIANT=extract",
        "MMDEBSTRAP_FORMAT=directory",
        "MMDEBSTRAP_INCLUDE=good",
        "MMDEBSTRAP_VERBOSITY=1",
        "DEBSTRAP_HOOK=setup",
        "DEBSTRAP_NAME=onion",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }
}

#[test]
fn root_hooks_see_a_tarball_root_before_it_is_packed() {
    if !support::host::require_root() || !support::host::require_program("tar") {
        return;
    }
    let served = served();
    let tarball = served.dir.path().join("root.tar");
    let cfg = config(
        &served,
        Output::Tarball {
            path: tarball.clone(),
            compression: debstrap_onion::config::Compression::None,
        },
        vec![(
            HookPoint::Extract,
            "echo \"$MMDEBSTRAP_FORMAT\" > \"$1/hooked\"",
        )],
    );
    debstrap_onion::build(&cfg, &Silent).expect("tarball build with a hook");
    let listed = Command::new("tar")
        .args(["-xOf"])
        .arg(&tarball)
        .arg("./hooked")
        .output()
        .expect("GNU tar");
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "tar\n");
}

/// A root in a temp dir (with a decoy of a host path inside it when asked) and hooks run on it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        fs_err::create_dir_all(dir.path().join("root/etc")).expect("root");
        fs_err::create_dir_all(dir.path().join("host")).expect("host");
        Scratch { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn host(&self) -> PathBuf {
        self.dir.path().join("host")
    }
    /// Runs `hooks` at `point` on the root.
    fn run(&self, point: HookPoint, hooks: &[&str]) -> Result<(), hooks::HookError> {
        let held = HeldRoot::open(&self.root()).expect("hold root");
        let hooks = Hooks {
            list: hooks
                .iter()
                .map(|t| (point, Hook::parse(t).expect("parses")))
                .collect(),
            verbosity: 1,
        };
        hooks::run(
            &HookRequest {
                root: &held,
                point,
                hooks: &hooks,
                facts: BuildFacts {
                    arch: &support::native_arch(),
                    suite: "trixie",
                    variant: "minbase",
                    format: "directory",
                    include: &[],
                    name: "onion",
                },
            },
            &Silent,
        )
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).expect("parent");
    }
    fs_err::write(path, text).expect("write");
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    fs_err::symlink_metadata(path).expect("stat").mode() & 0o7777
}

#[test]
fn root_essential_and_customize_hooks_run_with_the_roots_kernel_filesystems_mounted() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let seen = s.host().join("seen");
    let hook = format!(
        "test -e \"$1/proc/self/status\" && test -d \"$1/sys/kernel\" && test -c \"$1/dev/null\" \
         && echo \"$MMDEBSTRAP_HOOK\" >> {}",
        seen.display()
    );
    s.run(HookPoint::Essential, &[&hook])
        .expect("essential hook");
    s.run(HookPoint::Customize, &[&hook])
        .expect("customize hook");
    assert_eq!(read(&seen), "essential\ncustomize\n");
    assert!(host_mounts_under(&s.root()).is_empty());
    assert!(!s.root().join("proc/self").exists());
}

#[test]
fn root_copy_in_and_sync_in_copy_trees_with_modes_and_symlinks() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let src = s.host().join("src");
    write(&src.join("d/f"), "f", 0o640);
    write(&src.join("g"), "g", 0o755);
    std::os::unix::fs::symlink("/etc/passwd", src.join("d/link")).expect("symlink");
    fs_err::create_dir_all(s.root().join("opt")).expect("opt");
    fs_err::create_dir_all(s.root().join("etc/app")).expect("app");
    write(&s.root().join("etc/app/keep"), "keep", 0o644);
    let sync = s.host().join("sync");
    write(&sync.join("a"), "a", 0o600);
    write(&sync.join("sub/b"), "b", 0o644);

    s.run(
        HookPoint::Setup,
        &[
            &format!(
                "copy-in {} {} /opt",
                src.join("d").display(),
                src.join("g").display()
            ),
            &format!("sync-in {} /etc/app", sync.display()),
        ],
    )
    .expect("copy-in and sync-in");
    let root = s.root();
    assert_eq!(read(&root.join("opt/d/f")), "f");
    assert_eq!(mode(&root.join("opt/d/f")), 0o640);
    assert_eq!(mode(&root.join("opt/g")), 0o755);
    assert_eq!(
        fs_err::read_link(root.join("opt/d/link")).expect("link copied as a link"),
        Path::new("/etc/passwd")
    );
    assert_eq!(read(&root.join("etc/app/a")), "a");
    assert_eq!(read(&root.join("etc/app/sub/b")), "b");
    assert_eq!(
        read(&root.join("etc/app/keep")),
        "keep",
        "sync-in deletes nothing"
    );
}

#[test]
fn root_copy_out_sync_out_and_download_copy_from_the_root() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let root = s.root();
    write(&root.join("var/log/x/a.log"), "log", 0o640);
    write(&root.join("etc/realfile"), "real", 0o644);
    // Absolute, as Debian's links are: followed inside the root.
    std::os::unix::fs::symlink("/etc/realfile", root.join("etc/alias")).expect("symlink");
    let out = s.host().join("out");
    let synced = s.host().join("synced");
    write(&synced.join("keep"), "keep", 0o644);
    s.run(
        HookPoint::Setup,
        &[
            &format!("copy-out /var/log/x {}", out.display()),
            &format!("sync-out /var/log/x {}", synced.display()),
            &format!("download /etc/alias {}", s.host().join("alias").display()),
        ],
    )
    .expect("copy-out, sync-out and download");
    assert_eq!(read(&out.join("x/a.log")), "log");
    assert_eq!(mode(&out.join("x/a.log")), 0o640);
    assert_eq!(read(&synced.join("a.log")), "log");
    assert_eq!(read(&synced.join("keep")), "keep");
    assert_eq!(read(&s.host().join("alias")), "real");
}

#[test]
fn root_tar_in_tar_out_and_upload_agree_with_gnu_tar() {
    if !support::host::require_root() || !support::host::require_program("tar") {
        return;
    }
    let s = Scratch::new();
    let src = s.host().join("src");
    write(&src.join("bin/tool"), "#!/bin/sh\n", 0o755);
    write(&src.join("etc/conf"), "conf", 0o600);
    std::os::unix::fs::symlink("tool", src.join("bin/alias")).expect("symlink");
    let tarball = s.host().join("in.tar.gz");
    let made = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-czf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(made.success());
    fs_err::create_dir_all(s.root().join("srv")).expect("srv");
    write(&s.host().join("motd"), "hello", 0o600);
    let packed = s.host().join("out.tar");
    s.run(
        HookPoint::Setup,
        &[
            &format!("tar-in {} /srv", tarball.display()),
            &format!("upload {} /etc/motd", s.host().join("motd").display()),
            &format!("tar-out /srv/bin {}", packed.display()),
        ],
    )
    .expect("tar-in, upload and tar-out");
    let root = s.root();
    assert_eq!(read(&root.join("srv/bin/tool")), "#!/bin/sh\n");
    assert_eq!(mode(&root.join("srv/bin/tool")), 0o755);
    assert_eq!(mode(&root.join("srv/etc/conf")), 0o600);
    assert_eq!(
        fs_err::read_link(root.join("srv/bin/alias")).expect("link"),
        Path::new("tool")
    );
    assert_eq!(read(&root.join("etc/motd")), "hello");
    assert_eq!(mode(&root.join("etc/motd")), 0o644, "upload keeps no mode");
    // GNU tar reads ours as it would its own `tar -C srv -c bin`.
    let ours = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&packed)
        .output()
        .expect("tar");
    let theirs = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -cf - bin | tar --numeric-owner -tvf -",
            root.join("srv").display()
        ))
        .output()
        .expect("tar");
    let lines = |o: &std::process::Output| {
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert!(ours.status.success(), "{ours:?}");
    assert_eq!(lines(&ours), lines(&theirs));
}

#[test]
fn root_tar_in_makes_gnu_tars_hard_links_links_in_the_root() {
    if !support::host::require_root() || !support::host::require_program("tar") {
        return;
    }
    let s = Scratch::new();
    let src = s.host().join("src");
    write(&src.join("a"), "shared", 0o640);
    fs_err::create_dir_all(src.join("sub")).expect("sub");
    fs_err::hard_link(src.join("a"), src.join("b")).expect("link");
    fs_err::hard_link(src.join("a"), src.join("sub/c")).expect("link");
    std::os::unix::fs::symlink("a", src.join("s")).expect("symlink");
    fs_err::hard_link(src.join("s"), src.join("s2")).expect("link to a symlink");
    let tarball = s.host().join("links.tar");
    let made = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tarball)
        .args(["a", "b", "s", "s2", "sub"])
        .status()
        .expect("tar");
    assert!(made.success());
    let listed = Command::new("tar")
        .arg("-tvf")
        .arg(&tarball)
        .output()
        .expect("tar");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("b link to a"),
        "GNU tar made no hard link member"
    );
    fs_err::create_dir_all(s.root().join("srv")).expect("srv");
    s.run(
        HookPoint::Setup,
        &[&format!("tar-in {} /srv", tarball.display())],
    )
    .expect("tar-in");
    let srv = s.root().join("srv");
    let meta = |p: &str| fs_err::symlink_metadata(srv.join(p)).expect("stat");
    assert_eq!(read(&srv.join("sub/c")), "shared");
    assert_eq!(meta("b").ino(), meta("a").ino(), "b is not a link to a");
    assert_eq!(
        meta("sub/c").ino(),
        meta("a").ino(),
        "sub/c is not a link to a"
    );
    assert_eq!(meta("a").nlink(), 3);
    assert_eq!(mode(&srv.join("b")), 0o640);
    assert_eq!(meta("s2").ino(), meta("s").ino(), "s2 is not a link to s");
    assert!(meta("s2").file_type().is_symlink());
    // Unpacked again over itself: the same three names of one file, nothing left beside them.
    s.run(
        HookPoint::Setup,
        &[&format!("tar-in {} /srv", tarball.display())],
    )
    .expect("tar-in again");
    assert_eq!(meta("a").nlink(), 3);
    let mut names: Vec<String> = fs_err::read_dir(&srv)
        .expect("srv")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "s", "s2", "sub"]);
}

/// A tarball holding a directory `d` and a hard link `d/evil` to `target`, as no GNU tar would
/// write it from a real tree.
fn hard_link_tarball(path: &Path, target: &str) {
    let mut builder = tar::Builder::new(fs_err::File::create(path).expect("tarball"));
    let header = |kind, mode| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    };
    let mut dir = header(tar::EntryType::Directory, 0o755);
    builder
        .append_data(&mut dir, "d/", std::io::empty())
        .expect("dir member");
    let mut link = header(tar::EntryType::Link, 0o644);
    builder
        .append_link(&mut link, "d/evil", target)
        .expect("link member");
    builder.finish().expect("tarball written");
}

#[test]
fn root_tar_in_of_hostile_hard_links_links_nothing_outside_the_root() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let victim = s.host().join("victim");
    write(&victim, "host file", 0o644);
    let root = s.root();
    fs_err::create_dir_all(root.join("srv")).expect("srv");
    let nlink = || fs_err::metadata(&victim).expect("victim").nlink();
    // From root/srv, `../../host/victim` is the victim on the host: refused (`..`).
    let climbing = s.host().join("climb.tar");
    hard_link_tarball(&climbing, "../../host/victim");
    let err = s
        .run(
            HookPoint::Setup,
            &[&format!("tar-in {} /srv", climbing.display())],
        )
        .expect_err("a `..` link target");
    assert!(err.to_string().contains("hard link target"), "{err:?}");
    // Through symlinks planted in the root, one absolute and one climbing: they resolve inside
    // the root, where there is no such file.
    std::os::unix::fs::symlink(s.host(), root.join("srv/abs")).expect("symlink");
    std::os::unix::fs::symlink("../../host", root.join("srv/rel")).expect("symlink");
    for planted in ["abs/victim", "rel/victim"] {
        let tarball = s.host().join("planted.tar");
        hard_link_tarball(&tarball, planted);
        let err = s
            .run(
                HookPoint::Setup,
                &[&format!("tar-in {} /srv", tarball.display())],
            )
            .expect_err("a link target that is not in the root");
        assert!(err.to_string().contains("tar-in"), "{err}");
    }
    assert_eq!(nlink(), 1, "the host's file got a link in the root");
    assert_eq!(read(&victim), "host file");
    assert!(!root.join("srv/d/evil").exists());
    // With a decoy where the planted link leads inside the root, the link is to the decoy.
    let decoy = root
        .join(s.host().strip_prefix("/").expect("absolute"))
        .join("victim");
    write(&decoy, "decoy", 0o644);
    let tarball = s.host().join("planted.tar");
    hard_link_tarball(&tarball, "abs/victim");
    s.run(
        HookPoint::Setup,
        &[&format!("tar-in {} /srv", tarball.display())],
    )
    .expect("tar-in");
    assert_eq!(
        fs_err::metadata(root.join("srv/d/evil"))
            .expect("link")
            .ino(),
        fs_err::metadata(&decoy).expect("decoy").ino()
    );
    assert_eq!(nlink(), 1, "the host's file got a link in the root");
    assert_eq!(read(&victim), "host file");
}

#[test]
fn root_tar_in_and_tar_out_through_planted_symlinks_stay_in_the_root() {
    if !support::host::require_root() || !support::host::require_program("tar") {
        return;
    }
    let s = Scratch::new();
    let victim_dir = s.host().join("victim-dir");
    fs_err::create_dir(&victim_dir).expect("victim dir");
    let victim_file = s.host().join("victim-file");
    write(&victim_file, "untouched", 0o644);
    let root = s.root();
    fs_err::create_dir_all(root.join("srv")).expect("srv");
    // Where the tarball brings a directory and a file, the root holds links to the host's.
    std::os::unix::fs::symlink(&victim_dir, root.join("srv/d")).expect("symlink");
    std::os::unix::fs::symlink(&victim_file, root.join("srv/f")).expect("symlink");
    let src = s.host().join("src");
    write(&src.join("d/evil"), "evil", 0o644);
    write(&src.join("f"), "new f", 0o644);
    let tarball = s.host().join("in.tar");
    let made = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tarball)
        .args(["d", "f"])
        .status()
        .expect("tar");
    assert!(made.success());
    // tar-out of an absolute link to the host's file packs the root's file of that name.
    std::os::unix::fs::symlink(&victim_file, root.join("leak")).expect("symlink");
    write(
        &root.join(victim_file.strip_prefix("/").expect("absolute")),
        "decoy",
        0o644,
    );
    let packed = s.host().join("out.tar");
    s.run(
        HookPoint::Setup,
        &[
            &format!("tar-in {} /srv", tarball.display()),
            &format!("tar-out /leak {}", packed.display()),
        ],
    )
    .expect("tar-in and tar-out");
    assert_eq!(read(&victim_file), "untouched");
    assert_eq!(
        fs_err::read_dir(&victim_dir).expect("victim").count(),
        0,
        "written through the planted directory link"
    );
    assert_eq!(read(&root.join("srv/d/evil")), "evil");
    assert_eq!(read(&root.join("srv/f")), "new f");
    let unpacked = s.host().join("unpacked");
    fs_err::create_dir(&unpacked).expect("dir");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xf")
        .arg(&packed)
        .status()
        .expect("tar");
    assert!(ok.success());
    let name = victim_file.file_name().expect("name");
    assert_eq!(
        read(&unpacked.join(name)),
        "decoy",
        "the host's file was packed"
    );
}

#[test]
fn root_copy_out_of_a_symlink_to_a_host_path_reads_the_roots_file_not_the_hosts() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let secret = s.host().join("secret");
    write(&secret, "host secret", 0o600);
    let root = s.root();
    // The link names the host file by its absolute path; the root holds a decoy there.
    std::os::unix::fs::symlink(&secret, root.join("leak")).expect("symlink");
    write(
        &root.join(secret.strip_prefix("/").expect("absolute")),
        "decoy",
        0o644,
    );
    // Inside a copied tree, a link stays a link.
    fs_err::create_dir_all(root.join("tree")).expect("tree");
    std::os::unix::fs::symlink(&secret, root.join("tree/leak")).expect("symlink");
    let out = s.host().join("out");
    s.run(
        HookPoint::Setup,
        &[&format!("copy-out /leak /tree {}", out.display())],
    )
    .expect("copy-out");
    assert_eq!(
        read(&out.join("secret")),
        "decoy",
        "the host's file was read"
    );
    assert!(fs_err::symlink_metadata(out.join("tree/leak"))
        .expect("copied")
        .file_type()
        .is_symlink());
    // Without a decoy there is nothing to copy: an error, and still nothing of the host's.
    fs_err::remove_file(root.join(secret.strip_prefix("/").expect("absolute"))).expect("rm");
    let again = s.host().join("again");
    let err = s
        .run(
            HookPoint::Setup,
            &[&format!("copy-out /leak {}", again.display())],
        )
        .expect_err("a link to nothing in the root");
    assert!(err.to_string().contains("copy-out /leak"), "{err}");
    assert!(!again.join("secret").exists());
    assert_eq!(read(&secret), "host secret");
}

#[test]
fn root_sync_in_over_planted_symlinks_writes_only_inside_the_root() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let victim_dir = s.host().join("victim-dir");
    fs_err::create_dir(&victim_dir).expect("victim dir");
    let victim_file = s.host().join("victim-file");
    write(&victim_file, "untouched", 0o644);
    let root = s.root();
    fs_err::create_dir_all(root.join("etc/app")).expect("app");
    std::os::unix::fs::symlink(&victim_dir, root.join("etc/app/sub")).expect("symlink");
    std::os::unix::fs::symlink(&victim_file, root.join("etc/app/a")).expect("symlink");
    let sync = s.host().join("sync");
    write(&sync.join("a"), "new a", 0o644);
    write(&sync.join("sub/evil"), "evil", 0o644);
    s.run(
        HookPoint::Setup,
        &[
            &format!("sync-in {} /etc/app", sync.display()),
            &format!("copy-in {} /etc/app", sync.join("sub").display()),
        ],
    )
    .expect("sync-in");
    assert_eq!(read(&victim_file), "untouched");
    assert_eq!(
        fs_err::read_dir(&victim_dir).expect("victim").count(),
        0,
        "written through the planted directory link"
    );
    assert_eq!(read(&root.join("etc/app/a")), "new a");
    assert_eq!(read(&root.join("etc/app/sub/evil")), "evil");
}

#[test]
fn root_download_and_upload_of_dotdot_paths_stay_in_the_root() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let secret = s.host().join("secret");
    write(&secret, "host secret", 0o600);
    let climb = format!("{}{}", "../".repeat(16), secret.display());
    let got = s.host().join("got");
    let err = s
        .run(
            HookPoint::Setup,
            &[&format!("download {climb} {}", got.display())],
        )
        .expect_err("no such file in the root");
    assert!(err.to_string().contains("download"), "{err}");
    assert!(!got.exists(), "the host's file was downloaded");
    // With the path present in the root, that is what comes out, and upload lands there.
    let inside = s.root().join(secret.strip_prefix("/").expect("absolute"));
    write(&inside, "decoy", 0o644);
    let upload = s.host().join("upload");
    write(&upload, "uploaded", 0o644);
    s.run(
        HookPoint::Setup,
        &[
            &format!("download {climb} {}", got.display()),
            &format!("upload {} {climb}", upload.display()),
        ],
    )
    .expect("download and upload");
    assert_eq!(read(&got), "decoy");
    assert_eq!(read(&inside), "uploaded");
    assert_eq!(read(&secret), "host secret");
}

/// The binary's build of the fixture repository, extract variant, into `target`.
fn cli(served: &Served, target: &Path, hook: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args([
            "build",
            "--no-onion",
            "--variant",
            "extract",
            "--include",
            "good",
        ])
        .args(["--arch", &support::native_arch(), "--extract-hook", hook])
        .arg("--keyring")
        .arg(key_path("test-archive.pub.asc"))
        .arg("--cache-dir")
        .arg(served.dir.path().join("cache"))
        .arg("fixture")
        .arg(target)
        .arg(&served.server.url);
    command
}

#[test]
fn root_a_failing_hook_stops_the_build_naming_it_and_leaves_nothing() {
    if !support::host::require_root() {
        return;
    }
    let served = served();
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("builds");
    let target = parent.join("target");
    let hook = "echo about to fail; exit 3";
    let output = cli(&served, &target, hook).output().expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert_eq!(
        first,
        format!("error: extract hook `{hook}` failed (exit status: 3); last lines of its output:")
    );
    assert!(stderr.contains("about to fail"), "{stderr}");
    assert!(!target.exists());
    assert_eq!(fs_err::read_dir(&parent).expect("builds").count(), 0);
    assert!(host_mounts_under(served.dir.path()).is_empty());
}

#[test]
fn root_ctrl_c_during_a_hook_kills_its_process_group_and_cleans_up() {
    if !support::host::require_root() {
        return;
    }
    let served = served();
    let parent = served.dir.path().join("builds");
    fs_err::create_dir(&parent).expect("builds");
    let target = parent.join("target");
    // The hook's child tells its pid through a pipe the build inherits; the hook then waits
    // for it: only a kill ends them. Should the build end first, the pipe closes: no hang. The
    // pid is read from the host's /proc (the hook runs in a PID namespace of its own, where `$!`
    // would name another process on the host), then the child becomes `sleep`.
    let (reader, writer) = rustix::pipe::pipe().expect("pipe");
    let hook = format!(
        "sh -c 'read pid rest < /proc/self/stat; echo $pid > /proc/self/fd/{}; exec sleep 1000' & wait",
        std::os::fd::AsRawFd::as_raw_fd(&writer)
    );
    let child = cli(&served, &target, &hook)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(writer);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(reader)),
        &mut line,
    )
    .expect("read the pipe");
    let Ok(pid) = line.trim().parse::<i32>() else {
        let output = child.wait_with_output().expect("wait");
        panic!(
            "the hook never ran: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    // The hook's child sees the root's /proc mounted in its own mount namespace only.
    let its_mounts = read(Path::new(&format!("/proc/{pid}/mountinfo")));
    assert!(
        its_mounts
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|p| {
                p.starts_with(&parent.display().to_string()) && p.ends_with("/proc")
            })),
        "the hook does not see the root's /proc:\n{its_mounts}"
    );
    assert!(
        host_mounts_under(&parent).is_empty(),
        "the host sees the hook's mounts"
    );
    support::sys::signal(child.id(), support::sys::Signal::INT).expect("SIGINT");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    // Gone, or a zombie waiting for init to reap it: killed either way.
    let state = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = state
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|s| s != "Z" && s != "X");
    assert!(!alive, "the hook's child {pid} survived: {state}");
    assert!(!target.exists());
    assert_eq!(fs_err::read_dir(&parent).expect("builds").count(), 0);
    assert!(host_mounts_under(served.dir.path()).is_empty());
}

#[test]
fn root_hook_directory_scripts_run_at_their_points_in_name_order() {
    if !support::host::require_root() {
        return;
    }
    let s = Scratch::new();
    let dir = s.host().join("hooks");
    let log = s.host().join("ran");
    let script = |name: &str, mode: u32| {
        write(
            &dir.join(name),
            &format!(
                "#!/bin/sh\necho \"{name} $MMDEBSTRAP_HOOK $1\" >> {}\n",
                log.display()
            ),
            mode,
        );
    };
    script("setup02-b.sh", 0o755);
    script("setup01-a", 0o755);
    // Byte order, as Perl's sort: upper case before lower case, `-` before digits.
    script("setup0B", 0o755);
    script("setup-first", 0o755);
    script("setup00-not-executable", 0o644);
    script("customize-x", 0o755);
    script("other", 0o755);
    // Followed, as mmdebstrap's `-x` follows it (it runs customize-x's text a second time).
    std::os::unix::fs::symlink("customize-x", dir.join("customize-y")).expect("symlink");
    let mut hooks = Hooks::default();
    hooks.add_directory(&dir).expect("hook directory");
    let points: Vec<HookPoint> = hooks.list.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        points,
        [
            HookPoint::Customize,
            HookPoint::Customize,
            HookPoint::Setup,
            HookPoint::Setup,
            HookPoint::Setup,
            HookPoint::Setup
        ]
    );
    let held = HeldRoot::open(&s.root()).expect("hold root");
    for point in [HookPoint::Setup, HookPoint::Customize] {
        hooks::run(
            &HookRequest {
                root: &held,
                point,
                hooks: &hooks,
                facts: BuildFacts {
                    arch: &support::native_arch(),
                    suite: "trixie",
                    variant: "minbase",
                    format: "directory",
                    include: &[],
                    name: "onion",
                },
            },
            &Silent,
        )
        .expect("hooks run");
    }
    let root = s.root().display().to_string();
    assert_eq!(
        read(&log),
        format!(
            "setup-first setup {root}\nsetup01-a setup {root}\nsetup02-b.sh setup {root}\n\
             setup0B setup {root}\ncustomize-x customize {root}\ncustomize-x customize {root}\n"
        )
    );
    // A subdirectory named like a hook is refused: mmdebstrap would try to run it and fail.
    fs_err::create_dir(dir.join("setup-subdir")).expect("subdir");
    let err = Hooks::default()
        .add_directory(&dir)
        .expect_err("a directory named like a hook");
    assert!(err.to_string().contains("setup-subdir"), "{err}");
}

#[test]
fn root_hook_directories_take_their_place_among_the_hook_options_as_in_mmdebstrap() {
    if !support::host::require_root() {
        return;
    }
    let served = served();
    let scripts = served.dir.path().join("scripts");
    let script = |dir: &str, name: &str, mode: u32| {
        write(
            &scripts.join(dir).join(name),
            &format!("#!/bin/sh\necho \"{dir}/{name} $MMDEBSTRAP_HOOK\" >> \"$1/order\"\n"),
            mode,
        );
    };
    script("one", "setup02-b", 0o755);
    script("one", "setup01-a", 0o755);
    script("one", "extract01-a", 0o755);
    script("one", "customize01-a", 0o755);
    script("two", "setup00-c", 0o755);
    script("two", "extract00-c", 0o755);
    script("two", "setup-not-executable", 0o644);
    let option = |label: &str| format!("echo \"{label} $MMDEBSTRAP_HOOK\" >> \"$1/order\"");
    let target = served.dir.path().join("builds/target");
    // Relative directory names, run from the current directory as mmdebstrap runs them.
    let mut command = Command::new(BIN);
    command
        .current_dir(&scripts)
        .args(["build", "--no-onion", "--variant", "extract"])
        .args(["--include", "good", "--arch", "amd64"])
        .arg(format!("--setup-hook={}", option("opt-1")))
        .args(["--hook-directory", "one"])
        .arg(format!("--extract-hook={}", option("opt-2")))
        .args(["--setup-hook", &option("opt-3")])
        .arg("--hook-dir=./two")
        .arg(format!("--extract-hook={}", option("opt-4")))
        .arg("--keyring")
        .arg(key_path("test-archive.pub.asc"))
        .arg("--cache-dir")
        .arg(served.dir.path().join("cache"))
        .arg("fixture")
        .arg(&target)
        .arg(&served.server.url);
    let output = command.output().expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // mmdebstrap's manual: `--customize=./scriptA --hook-dir=./hooks --setup=./scriptB` is
    // `--customize=./scriptA --setup=./hooks/setup01-foo.sh --setup=./hooks/setup02-bar.sh
    // --setup=./scriptB`. With --variant extract neither tool runs customize hooks.
    assert_eq!(
        read(&target.join("order")),
        "opt-1 setup\none/setup01-a setup\none/setup02-b setup\nopt-3 setup\n\
         two/setup00-c setup\none/extract01-a extract\nopt-2 extract\ntwo/extract00-c extract\n\
         opt-4 extract\n"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("setup-not-executable is named like a hook but not executable"),
        "{stderr}"
    );
}

#[test]
fn root_a_hook_writing_fixed_content_keeps_the_tarball_reproducible() {
    if !support::host::require_root() {
        return;
    }
    let served = served();
    let build = |name: &str| {
        let tarball = served.dir.path().join(name);
        let mut cfg = config(
            &served,
            Output::Tarball {
                path: tarball.clone(),
                compression: debstrap_onion::config::Compression::None,
            },
            vec![
                (HookPoint::Setup, "mkdir -p \"$1/etc\""),
                (HookPoint::Extract, "echo fixed > \"$1/etc/hooked\""),
            ],
        );
        cfg.source_date_epoch = Some(1_700_000_000);
        debstrap_onion::build(&cfg, &Silent).expect("tarball build with hooks");
        fs_err::read(&tarball).expect("tarball")
    };
    let first = build("one.tar");
    let second = build("two.tar");
    assert!(
        first.windows(10).any(|w| w == b"etc/hooked"),
        "the hook's file is not in the tarball"
    );
    assert!(first == second, "two builds with the same hooks differ");
}
