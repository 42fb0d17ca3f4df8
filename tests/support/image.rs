//! Reading images back with the tools that made them or read them elsewhere (unsquashfs,
//! e2fsck and debugfs, skopeo and umoci), and listing trees with GNU find, so a test compares an
//! image with the directory build through programs we did not write.

use std::path::Path;
use std::process::Command;

/// Runs `cmd`, failing the test with its standard error unless it succeeds; gives its output.
pub fn tool(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// GNU find's listing of everything below `root` (not `root` itself, nor `lost+found`): path,
/// type, mode, owner, group, link target, then sha256sum of every regular file.
pub fn listing(root: &Path) -> String {
    let found = tool(
        Command::new("find")
            .args([
                ".",
                "-mindepth",
                "1",
                "-path",
                "./lost+found",
                "-prune",
                "-o",
            ])
            .args(["-printf", "%p %y %m %U %G %l\\n"])
            .current_dir(root),
    );
    let mut lines: Vec<&str> = found.lines().collect();
    lines.sort_unstable();
    let hashes = tool(
        Command::new("sh")
            .args([
                "-c",
                "find . -path ./lost+found -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum",
            ])
            .current_dir(root),
    );
    format!("{}\n{hashes}", lines.join("\n"))
}

/// The tree of a squashfs image, extracted by unsquashfs into `into` (which must not exist).
pub fn unsquash(image: &Path, into: &Path) {
    tool(
        Command::new("unsquashfs")
            .args(["-no-progress", "-quiet", "-d"])
            .arg(into)
            .arg(image),
    );
}

/// Checks an ext4 image with `e2fsck -fn`, then copies its tree out with debugfs's rdump into
/// `into` (created).
pub fn ext4_tree(image: &Path, into: &Path) {
    tool(Command::new("e2fsck").arg("-fn").arg(image));
    fs_err::create_dir_all(into).expect("mkdir");
    tool(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", into.display()))
            .arg(image),
    );
}

/// The root file system of the image `latest` of an OCI layout directory, unpacked by umoci
/// into the bundle `into` (which must not exist); gives the rootfs path.
pub fn umoci_rootfs(layout: &Path, into: &Path) -> std::path::PathBuf {
    tool(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(into),
    );
    into.join("rootfs")
}

/// What `skopeo inspect` says of an OCI archive (the image config's main fields, as JSON).
pub fn skopeo_inspect(archive: &Path) -> serde_json::Value {
    let out = tool(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", archive.display())),
    );
    serde_json::from_str(&out).expect("skopeo prints JSON")
}

/// The sha256 of a file, by sha256sum.
pub fn sha256sum(path: &Path) -> String {
    tool(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

/// A [`listing`] as debugfs's rdump can reproduce it: rdump copies no device nodes or fifos
/// and drops the setuid, setgid and sticky bits, so those lines go and modes keep their last
/// three digits (tests check such inodes with [`debugfs_stat`] instead).
pub fn as_rdump_copies(listing: &str) -> String {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            match fields.as_slice() {
                [_, "c" | "b" | "p", ..] => None,
                [path, kind, mode, rest] if mode.len() == 4 => {
                    Some(format!("{path} {kind} {} {rest}", &mode[1..]))
                }
                _ => Some(line.to_string()),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What debugfs says of one inode of an ext4 image (`stat PATH`).
pub fn debugfs_stat(image: &Path, path: &str) -> String {
    tool(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(image),
    )
}
