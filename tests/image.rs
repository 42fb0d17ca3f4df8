//! Images through the command line against offline fixtures: every image format and the SBOM
//! repeat bit for bit across two builds with separate caches, and the images hold what the
//! directory build holds, read back by unsquashfs, e2fsck/debugfs, umoci and skopeo. Bad input
//! (an image suffix we do not write, a missing mksquashfs, `--format oci` with a tarball) is
//! refused in one line before anything is fetched, leaving nothing behind.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::deb::DebBuilder;
use support::image::{ext4_tree, listing, sha256sum, skopeo_inspect, umoci_rootfs, unsquash};
use support::repo::{key_path, FakeDeb, RepoSpec, Served};

const BIN: &str = env!("CARGO_BIN_EXE_debstrap-onion");

fn tiny_debs() -> Vec<FakeDeb> {
    let arch = support::native_arch();
    let base = DebBuilder::new("base", "1.0", &arch)
        .dir("./usr/share/base/", 0o755)
        .file("./usr/share/base/file", 0o644, b"a file of base\n")
        .file("./usr/bin/base-tool", 0o755, b"#!/bin/sh\necho base\n")
        .symlink("./usr/bin/base-alias", "base-tool")
        .hardlink("./usr/bin/base-link", "./usr/bin/base-tool")
        .file("./usr/share/base/owned", 0o640, b"owned by 1000:42\n");
    let base = base.owned_by(1000, 42);
    let apt = DebBuilder::new("apt", "1.0", &arch).file("./usr/bin/apt", 0o755, b"#!/bin/sh\n");
    vec![
        FakeDeb::new("base", "1.0", &[("Priority", "required")], base.build()),
        FakeDeb::new("apt", "1.0", &[("Priority", "required")], apt.build()),
    ]
}

/// `build --no-onion --variant extract --include base,apt` with the fixture key and an epoch.
fn build(served: &Served, cache: &Path, target: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DEBSTRAP_MIRROR")
        .env_remove("DEBSTRAP_LOG")
        .stdin(Stdio::null())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--no-onion",
            "--arch",
            &support::native_arch(),
            "--keyring",
        ])
        .arg(key_path("test-archive.pub.asc"))
        .arg("--cache-dir")
        .arg(cache)
        .args(["--variant", "extract", "--include", "base,apt"])
        .args(extra)
        .arg("fixture")
        .arg(target)
        .arg(&served.server.url);
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run debstrap-onion");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn root_every_image_format_repeats_across_builds_and_holds_the_directory_build() {
    use support::host::{require_program, require_root};
    if !require_root()
        || ![
            "mksquashfs",
            "unsquashfs",
            "e2fsck",
            "debugfs",
            "umoci",
            "skopeo",
            "find",
            "sha256sum",
        ]
        .into_iter()
        .all(require_program)
    {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let work = served.dir.path().join("work");
    fs_err::create_dir(&work).expect("mkdir");
    let dir = work.join("dir");
    ok(&mut build(&served, &work.join("cache-dir"), &dir, &[]));
    let want = listing(&dir);
    assert!(
        want.contains("./usr/share/base/owned f 640 1000 42 "),
        "{want}"
    );

    for round in ["a", "b"] {
        // A cache of its own for each round: nothing is shared between the two builds.
        let cache = work.join(format!("cache-{round}"));
        for name in ["root.squashfs", "root.ext4", "root.oci"] {
            ok(&mut build(
                &served,
                &cache,
                &work.join(format!("{round}-{name}")),
                &[],
            ));
        }
        let sbom = format!(
            "--sbom={}",
            work.join(format!("{round}-sbom.json")).display()
        );
        ok(&mut build(
            &served,
            &cache,
            &work.join(format!("{round}-layout")),
            &["--format", "oci", &sbom],
        ));
    }
    for name in [
        "root.squashfs",
        "root.ext4",
        "root.oci",
        "sbom.json",
        "layout/index.json",
    ] {
        assert_eq!(
            sha256sum(&work.join(format!("a-{name}"))),
            sha256sum(&work.join(format!("b-{name}"))),
            "{name} differs between two builds"
        );
    }

    unsquash(&work.join("a-root.squashfs"), &work.join("sq"));
    assert_eq!(
        listing(&work.join("sq")),
        want,
        "squashfs differs from the directory"
    );
    ext4_tree(&work.join("a-root.ext4"), &work.join("e4"));
    assert_eq!(
        support::image::as_rdump_copies(&listing(&work.join("e4"))),
        support::image::as_rdump_copies(&want),
        "ext4 differs from the directory"
    );
    let rootfs = umoci_rootfs(&work.join("a-layout"), &work.join("bundle"));
    assert_eq!(
        listing(&rootfs),
        want,
        "the OCI layer differs from the directory"
    );
    let inspected = skopeo_inspect(&work.join("a-root.oci"));
    // The OCI image config names architectures as Go does (GOARCH).
    let go_arch = match support::native_arch().as_str() {
        "i386" => "386".to_owned(),
        "armhf" | "armel" => "arm".to_owned(),
        "ppc64el" => "ppc64le".to_owned(),
        other => other.to_owned(),
    };
    assert_eq!(inspected["Architecture"], go_arch.as_str(), "{inspected}");
    assert_eq!(inspected["Os"], "linux", "{inspected}");
    assert_eq!(
        inspected["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspected}"
    );
    // The archive is the layout: the same index, and the SBOM inside is the one --sbom wrote.
    let extracted = work.join("extracted");
    fs_err::create_dir(&extracted).expect("mkdir");
    support::image::tool(
        Command::new("tar")
            .arg("-xf")
            .arg(work.join("a-root.oci"))
            .arg("-C")
            .arg(&extracted),
    );
    assert_eq!(
        sha256sum(&extracted.join("index.json")),
        sha256sum(&work.join("a-layout/index.json"))
    );
    assert_eq!(
        sha256sum(&work.join("a-layout/sbom.spdx.json")),
        sha256sum(&work.join("a-sbom.json"))
    );
    let sbom: serde_json::Value =
        serde_json::from_slice(&fs_err::read(work.join("a-sbom.json")).expect("sbom"))
            .expect("SBOM is JSON");
    let names: Vec<&str> = sbom["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .skip(1)
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["apt", "base"]);
    // Nothing but the outputs is left beside them.
    assert!(
        names_in(&work).iter().all(|n| !n.starts_with('.')),
        "temporary files left: {:?}",
        names_in(&work)
    );
}

/// Runs a build that must fail before it fetches anything; gives its standard error.
fn refused(served: &Served, target: &Path, extra: &[&str], path: Option<&str>) -> String {
    let mut cmd = build(served, &served.dir.path().join("cache"), target, extra);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = cmd.output().expect("run debstrap-onion");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "accepted: {stderr}");
    assert_eq!(
        served.server.requests(),
        Vec::<String>::new(),
        "the mirror was asked before the refusal: {stderr}"
    );
    stderr
}

#[test]
fn an_image_suffix_we_do_not_write_is_refused_before_any_fetch() {
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let out = served.dir.path().join("out");
    fs_err::create_dir(&out).expect("mkdir");
    let stderr = refused(&served, &out.join("root.img"), &[], None);
    assert!(
        stderr.contains("\".img\" is not an image format"),
        "{stderr}"
    );
    assert!(
        names_in(&out).is_empty(),
        "left behind: {:?}",
        names_in(&out)
    );
}

#[test]
fn a_missing_mksquashfs_is_named_with_its_package_before_any_fetch() {
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let out = served.dir.path().join("out");
    fs_err::create_dir(&out).expect("mkdir");
    // mksquashfs is looked for on PATH (and in the sbin directories, where it never is).
    let stderr = refused(
        &served,
        &out.join("root.squashfs"),
        &[],
        Some("/nonexistent"),
    );
    assert!(
        stderr.contains("mksquashfs is not installed")
            && stderr.contains("apt-get install squashfs-tools"),
        "{stderr}"
    );
    assert!(
        names_in(&out).is_empty(),
        "left behind: {:?}",
        names_in(&out)
    );
}

#[test]
fn format_oci_with_a_tarball_target_is_refused_before_any_fetch() {
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let out = served.dir.path().join("out");
    fs_err::create_dir(&out).expect("mkdir");
    let stderr = refused(&served, &out.join("root.tar"), &["--format", "oci"], None);
    assert!(stderr.contains("--format oci"), "{stderr}");
    assert!(
        names_in(&out).is_empty(),
        "left behind: {:?}",
        names_in(&out)
    );
}

#[test]
fn root_an_ext4_image_the_destination_cannot_hold_is_refused_and_leaves_nothing() {
    use support::host::{require_program, require_root};
    if !require_root() || !require_program("unshare") || !require_program("mke2fs") {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let small = served.dir.path().join("small");
    fs_err::create_dir(&small).expect("mkdir");
    // A 40 MiB tmpfs, mounted in a mount namespace of its own (gone with the shell, whatever
    // happens): room for the tiny root (unpacking wants 32 MiB free), not for its ext4 image
    // (its content plus the 64 MiB margin). The shell lists what
    // is left in it after the build, then exits with the build's status.
    let cmd = build(
        &served,
        &served.dir.path().join("cache"),
        &small.join("root.ext4"),
        &[],
    );
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=40m tmpfs \"$0\" || exit 99; \"$@\"; status=$?; \
             ls -A \"$0\"; exit $status",
        )
        .arg(&small)
        .arg(program)
        .args(args)
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(99),
        "cannot mount a tmpfs: {stderr}"
    );
    assert!(
        !out.status.success(),
        "an image that cannot fit was written"
    );
    assert!(
        stderr.contains("the image does not fit") && stderr.contains(&small.display().to_string()),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "left behind in the destination"
    );
}

/// An SBOM that cannot be written (its directory does not exist) fails the build before the
/// result is committed: no TARGET is left behind.
#[test]
fn root_an_sbom_that_cannot_be_written_leaves_no_target() {
    if !support::host::require_root() {
        return;
    }
    let served = Served::start(&RepoSpec::fresh(), "test-archive.sec.asc", &tiny_debs());
    let work = served.dir.path().join("work");
    fs_err::create_dir(&work).expect("mkdir");
    let target = work.join("root");
    let sbom = format!("--sbom={}", work.join("missing/sbom.json").display());
    let out = build(&served, &served.dir.path().join("cache"), &target, &[&sbom])
        .output()
        .expect("run debstrap-onion");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing/sbom.json"), "{stderr}");
    assert!(
        names_in(&work).is_empty(),
        "left behind: {:?}",
        names_in(&work)
    );
}
