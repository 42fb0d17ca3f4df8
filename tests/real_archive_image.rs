//! Images of a real trixie minbase root, as root: ONE directory build with `--sbom`, then each
//! image format written from that root through the library's output entry point; ext4 and OCI
//! a second time from a `cp -a` copy (whose inode numbers, ctimes, atimes and creation order all
//! differ) and compared byte for byte (ext4) or by manifest digest (OCI archive against OCI
//! layout); each image read back with the real tools (unsquashfs, e2fsck and debugfs, umoci and
//! skopeo) and its tree compared with the directory's by GNU find.
//! The SBOM validates with pyspdxtools, lists exactly what `dpkg-query -W` lists in the root,
//! and gives each .deb the hash of the file in the cache.
//!
//! Two complete builds with separate caches per format (squashfs included) are in
//! tests/image.rs (offline, tiny), and two complete trixie builds giving the same tree are in
//! tests/real_archive_output.rs: the writers only add what depends on the tree, so writing twice
//! from two copies covers the rest. squashfs is written once here: mksquashfs takes ~40 s on
//! this root in a debug CI run, and CI's time is shared.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use debstrap_onion::config::ImageFormat;
use debstrap_onion::output::{write_image, ImageRequest};
use debstrap_onion::HeldRoot;
use support::host::{host_mirror, require_program, require_root};
use support::image::{
    as_rdump_copies, debugfs_stat, ext4_tree, listing, sha256sum, skopeo_inspect, tool,
    umoci_rootfs, unsquash,
};

const EPOCH: i64 = 1_700_000_000;

fn write(root: &Path, path: &Path, format: ImageFormat, sbom: &[u8]) {
    let held = HeldRoot::open(root).expect("hold the root");
    let arch = debstrap_onion::config::host_arch().expect("host arch");
    write_image(
        &held,
        &ImageRequest {
            path,
            format,
            source_date_epoch: Some(EPOCH),
            arch: &arch,
            sbom,
        },
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[test]
fn real_archive_root_images_repeat_and_hold_the_directory_build_and_the_sbom_matches_dpkg() {
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
            "dpkg-query",
            "pyspdxtools",
            "cp",
        ]
        .into_iter()
        .all(require_program)
    {
        return;
    }
    let Some(mirror) = host_mirror() else { return };
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let work = dir.path();
    let (root, cache, sbom_path) = (
        work.join("root"),
        work.join("cache"),
        work.join("sbom.json"),
    );
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_debstrap-onion"))
        .args(["build", "--no-onion", "trixie"])
        .arg(&root)
        .arg(&mirror)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--sbom")
        .arg(&sbom_path)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .expect("run debstrap-onion");
    assert!(
        out.status.success(),
        "build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("directory build: {:?}", started.elapsed());
    let sbom = fs_err::read(&sbom_path).expect("the SBOM");

    // The SBOM: valid SPDX by a validator we did not write (it prints nothing when valid) ...
    let validated = Command::new("pyspdxtools")
        .arg("-i")
        .arg(&sbom_path)
        .output()
        .expect("run pyspdxtools");
    let complaints = String::from_utf8_lossy(&validated.stdout).into_owned()
        + &String::from_utf8_lossy(&validated.stderr);
    assert!(
        validated.status.success() && complaints.trim().is_empty(),
        "pyspdxtools rejects the SBOM:\n{complaints}"
    );
    // ... listing exactly what dpkg lists ...
    let dpkg = tool(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}/var/lib/dpkg", root.display()))
            .args(["-W", "-f", "${Package} ${Version} ${Architecture}\\n"]),
    );
    let dpkg: BTreeSet<String> = dpkg.lines().map(str::to_string).collect();
    let document: serde_json::Value = serde_json::from_slice(&sbom).expect("JSON");
    let packages: Vec<&serde_json::Value> = document["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Root")
        .collect();
    let listed: BTreeSet<String> = packages
        .iter()
        .map(|p| {
            let arch = p["comment"]
                .as_str()
                .and_then(|c| c.strip_prefix("Architecture: "))
                .expect("architecture comment");
            format!(
                "{} {} {arch}",
                p["name"].as_str().expect("name"),
                p["versionInfo"].as_str().expect("version")
            )
        })
        .collect();
    assert_eq!(
        listed, dpkg,
        "the SBOM's packages differ from dpkg-query -W"
    );
    // ... each with the sha256 of the .deb the cache holds (the cache names files by it) ...
    for package in &packages {
        let hash = package["checksums"][0]["checksumValue"]
            .as_str()
            .unwrap_or_else(|| panic!("no checksum for {}", package["name"]));
        let deb = cache.join("debs").join(format!("{hash}.deb"));
        assert_eq!(sha256sum(&deb), hash, "{} in the cache", package["name"]);
    }
    // ... and the Release and the tool named.
    let comment = document["comment"].as_str().expect("comment");
    assert!(
        comment.contains("Codename trixie") && comment.contains("InRelease has sha256"),
        "{comment}"
    );
    assert_eq!(document["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert!(
        licensed(&packages) > packages.len() / 2,
        "fewer than half the packages have a declared license"
    );

    // Each format twice: from the root, and from a copy of it.
    let copy = work.join("copy");
    tool(Command::new("cp").arg("-a").arg(&root).arg(&copy));
    let want = listing(&root);
    // The OCI archive from the root and the OCI layout from the copy are two whole runs of the
    // OCI writer: their index.json, which names the manifest by digest, must be the same.
    let formats = [
        ("root.squashfs", &root, ImageFormat::Squashfs),
        ("root.ext4", &root, ImageFormat::Ext4),
        ("copy.ext4", &copy, ImageFormat::Ext4),
        ("root.oci", &root, ImageFormat::OciArchive),
        ("layout", &copy, ImageFormat::OciDir),
    ];
    for (name, tree, format) in formats {
        let started = std::time::Instant::now();
        write(tree, &work.join(name), format, &sbom);
        eprintln!("{name}: {:?}", started.elapsed());
    }
    assert_eq!(
        sha256sum(&work.join("root.ext4")),
        sha256sum(&work.join("copy.ext4")),
        "ext4 differs between two writes of the same tree"
    );
    let archived = work.join("archived");
    fs_err::create_dir(&archived).expect("mkdir");
    tool(
        Command::new("tar")
            .arg("-xf")
            .arg(work.join("root.oci"))
            .arg("-C")
            .arg(&archived),
    );
    assert_eq!(
        fs_err::read(archived.join("index.json")).expect("index.json"),
        fs_err::read(work.join("layout/index.json")).expect("index.json"),
        "the OCI manifest digest differs between two writes of the same tree"
    );
    for name in [
        "root.squashfs",
        "root.ext4",
        "root.oci",
        "layout/index.json",
    ] {
        eprintln!("{name} sha256: {}", sha256sum(&work.join(name)));
    }

    unsquash(&work.join("root.squashfs"), &work.join("sq"));
    same_tree(&listing(&work.join("sq")), &want, "squashfs");
    ext4_tree(&work.join("root.ext4"), &work.join("e4"));
    same_tree(
        &as_rdump_copies(&listing(&work.join("e4"))),
        &as_rdump_copies(&want),
        "ext4",
    );
    let tmp = debugfs_stat(&work.join("root.ext4"), "/tmp");
    assert!(
        tmp.contains("Type: directory") && tmp.contains("Mode:  01777"),
        "{tmp}"
    );
    let su = debugfs_stat(&work.join("root.ext4"), "/usr/bin/su");
    assert!(su.contains("Mode:  04755"), "{su}");
    let null = debugfs_stat(&work.join("root.ext4"), "/dev/null");
    assert!(
        null.contains("Type: character special") && null.contains("01:03"),
        "{null}"
    );
    // umoci unpacks the layout written from the copy.
    let rootfs = umoci_rootfs(&work.join("layout"), &work.join("bundle"));
    same_tree(&listing(&rootfs), &want, "the OCI layer");
    let inspected = skopeo_inspect(&work.join("root.oci"));
    assert_eq!(inspected["Os"], "linux", "{inspected}");
    assert_eq!(
        inspected["Layers"].as_array().map(Vec::len),
        Some(1),
        "{inspected}"
    );
    assert_eq!(
        fs_err::read(work.join("layout/sbom.spdx.json")).expect("SBOM in the layout"),
        sbom
    );
}

/// Fails naming the lines that differ between two listings, not printing both whole.
fn same_tree(got: &str, want: &str, what: &str) {
    let got_lines: BTreeSet<&str> = got.lines().collect();
    let want_lines: BTreeSet<&str> = want.lines().collect();
    let missing: Vec<&&str> = want_lines.difference(&got_lines).take(20).collect();
    let extra: Vec<&&str> = got_lines.difference(&want_lines).take(20).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from the directory build: missing {missing:#?}, extra {extra:#?}"
    );
}

/// How many packages declare a license.
fn licensed(packages: &[&serde_json::Value]) -> usize {
    packages
        .iter()
        .filter(|p| p["licenseDeclared"] != "NOASSERTION")
        .count()
}
