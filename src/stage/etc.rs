//! Per-machine files: takes the root and the build's mirror, suite, components and hostname;
//! gives the apt sources, /etc/hostname, /etc/fstab, /etc/resolv.conf,
//! an emptied /etc/machine-id and the files debootstrap leaves before configuration (/etc/localtime,
//! dpkg's cmethopt).

use std::path::Path;

use super::rootfs::RootDir;
use super::{StageError, StageRequest};

/// What debootstrap writes into an unconfigured /etc/fstab.
const FSTAB: &str = "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n";

/// The one-line sources.list debootstrap writes: `deb MIRROR SUITE COMPONENT...`.
pub(crate) fn sources_list(mirror: &str, suite: &str, components: &[String]) -> String {
    let components = if components.is_empty() {
        "main".to_owned()
    } else {
        components.join(" ")
    };
    format!("deb {mirror} {suite} {components}\n")
}

/// Everything but machine-id, written before dpkg configures anything, as debootstrap does
/// (packages' scripts may read them: tzdata's looks at /etc/localtime).
pub(crate) fn before_configure(root: &RootDir, request: &StageRequest) -> Result<(), StageError> {
    root.create_dir_all(Path::new("etc/apt"), 0o755)?;
    root.write_file(
        Path::new("etc/apt/sources.list"),
        sources_list(request.mirror, request.suite, request.components).as_bytes(),
        0o644,
    )?;
    root.write_file(
        Path::new("etc/hostname"),
        format!("{}\n", request.hostname).as_bytes(),
        0o644,
    )?;
    // No /etc/hosts, as debootstrap writes none: the onion schroot copies the host's hosts
    // database in at every session, and nginx binds addresses, never names.
    write_if_missing(root, "etc/fstab", FSTAB.as_bytes())?;
    let localtime = Path::new("etc/localtime");
    if root.file_type(localtime)?.is_none() {
        root.symlink("/usr/share/zoneinfo/UTC", localtime)?;
    }
    // The host's resolver configuration, so apt inside can resolve the mirror; but not in a
    // reproducible build, whose bytes must not depend on the host it ran on.
    if request.source_date_epoch.is_none() {
        match fs_err::read("/etc/resolv.conf") {
            Ok(contents) => write_if_missing(root, "etc/resolv.conf", &contents)?,
            Err(e) => tracing::warn!("not copying the host's resolver configuration: {e}"),
        }
    }
    root.create_dir_all(Path::new("var/lib/dpkg"), 0o755)?;
    // dselect's access method, which debootstrap sets to apt.
    root.write_file(Path::new("var/lib/dpkg/cmethopt"), b"apt apt\n", 0o644)?;
    Ok(())
}

/// Empties /etc/machine-id, last, when a package generated one (systemd), so its build-time
/// identity is not in every copy of the root; creates none where debootstrap has none.
pub(crate) fn after_configure(root: &RootDir) -> Result<(), StageError> {
    let machine_id = Path::new("etc/machine-id");
    if root.file_type(machine_id)?.is_some() {
        root.write_file(machine_id, b"", 0o444)?;
    }
    Ok(())
}

fn write_if_missing(root: &RootDir, rel: &str, contents: &[u8]) -> Result<(), StageError> {
    if root.file_type(Path::new(rel))?.is_none() {
        root.write_file(Path::new(rel), contents, 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::Unpacked;

    #[test]
    fn sources_list_is_debootstraps_one_line_form() {
        let components = ["main".to_owned(), "contrib".to_owned()];
        assert_eq!(
            sources_list("http://mirror.invalid/debian", "trixie", &components),
            "deb http://mirror.invalid/debian trixie main contrib\n"
        );
        assert_eq!(
            sources_list("http://mirror.invalid/debian", "trixie", &[]),
            "deb http://mirror.invalid/debian trixie main\n"
        );
    }

    #[test]
    fn machine_files_land_in_the_root() {
        // Writing through RootDir sets owners, which needs root.
        if !crate::test_skip::require_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let held = crate::HeldRoot::open(tmp.path()).expect("hold");
        let root = RootDir::held(&held).expect("open");
        let unpacked = Unpacked::default();
        let request = StageRequest {
            root: &held,
            unpacked: &unpacked,
            mirror: "http://mirror.invalid/debian",
            suite: "trixie",
            components: &[],
            hostname: "onion",
            source_date_epoch: None,
        };
        before_configure(&root, &request).expect("write");
        after_configure(&root).expect("no machine-id");
        assert!(!tmp.path().join("etc/machine-id").exists());
        fs_err::write(tmp.path().join("etc/machine-id"), "0123abcd\n").expect("generated id");
        after_configure(&root).expect("empty machine-id");
        let read = |p: &str| fs_err::read_to_string(tmp.path().join(p)).expect("read");
        assert_eq!(read("etc/hostname"), "onion\n");
        assert!(!tmp.path().join("etc/hosts").exists());
        assert_eq!(read("etc/machine-id"), "");
        assert_eq!(read("etc/fstab"), FSTAB);
        assert_eq!(read("var/lib/dpkg/cmethopt"), "apt apt\n");
        assert_eq!(
            read("etc/apt/sources.list"),
            "deb http://mirror.invalid/debian trixie main\n"
        );
    }
}
