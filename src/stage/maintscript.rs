//! Maintainer scripts run the way dpkg runs them: takes an unpacked package and the script to
//! run; gives the script's path, arguments and environment exactly as dpkg's (see dpkg(1),
//! "Internal environment"), and for a new package's preinst the control archive staged in
//! `/var/lib/dpkg/tmp.ci/`, where `dpkg --unpack` extracts it and runs the preinst from.
//!
//! Scripts see the difference: debconf's frontend names the owner of the templates a preinst
//! registers from `tmp.ci/control` (`libc6`, where a preinst run from info/ registers them as
//! `unknown`), and loads `tmp.ci/templates` and runs `tmp.ci/config` before the preinst.

use std::path::{Path, PathBuf};

use super::rootfs::RootDir;
use super::StageError;
use crate::unpack::UnpackedPackage;

/// dpkg's administrative directory, as scripts see it inside the chroot.
pub(crate) const ADMINDIR: &str = "/var/lib/dpkg";

/// Where `dpkg --unpack` extracts a package's control archive and runs its preinst from.
const TMP_CI: &str = "var/lib/dpkg/tmp.ci";

/// The force options dpkg exports to scripts as DPKG_FORCE: its defaults (`security-mac`,
/// `downgrade`) plus the `--force-unsafe-io` every dpkg run of the build passes, in the order
/// of dpkg's table of force options.
pub(crate) const DPKG_FORCE: &str = "security-mac,downgrade,unsafe-io";

/// The control-archive members dpkg keeps in its database as `info/PKG.<member>`, which it
/// extracts to tmp.ci/ beside `control`.
const INFO_MEMBERS: [&str; 11] = [
    "conffiles",
    "config",
    "md5sums",
    "postinst",
    "postrm",
    "preinst",
    "prerm",
    "shlibs",
    "symbols",
    "templates",
    "triggers",
];

/// The environment dpkg gives `script` (`preinst`, `postinst`, ...) of `package`, for a package
/// of which one instance is installed, run by the dpkg of version `dpkg_version`.
pub(crate) fn environment<'a>(
    package: &'a UnpackedPackage,
    script: &'a str,
    dpkg_version: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        // Set by dpkg for every subprocess (dpkg's main).
        ("DPKG_ADMINDIR", ADMINDIR),
        ("DPKG_ROOT", ""),
        ("DPKG_FORCE", DPKG_FORCE),
        // Set for maintainer scripts (dpkg's maintscript_exec).
        ("DPKG_MAINTSCRIPT_PACKAGE", package.name.as_str()),
        ("DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT", "1"),
        ("DPKG_MAINTSCRIPT_ARCH", package.architecture.as_str()),
        ("DPKG_MAINTSCRIPT_NAME", script),
        ("DPKG_MAINTSCRIPT_DEBUG", "0"),
        ("DPKG_RUNNING_VERSION", dpkg_version),
    ]
}

/// A package's control archive laid out in tmp.ci/ while its preinst runs; dropping it removes
/// the directory again (on error paths too).
#[derive(Debug)]
pub(crate) struct StagedControl<'a> {
    root: &'a RootDir,
    files: Vec<PathBuf>,
}

impl<'a> StagedControl<'a> {
    /// Writes `control` and a copy of each of the package's `info/PKG.<member>` files into
    /// tmp.ci/, keeping their modes; refuses a tmp.ci/ that is already there (dpkg would
    /// stop on it too: it is the trace of an interrupted unpack).
    pub(crate) fn stage(root: &'a RootDir, package: &UnpackedPackage) -> Result<Self, StageError> {
        let dir = Path::new(TMP_CI);
        if root.file_type(dir)?.is_some() {
            return Err(StageError::UnsafePath {
                path: root.host_path(dir),
                reason: "it is left from an interrupted unpack; remove it and build again",
            });
        }
        root.create_dir_all(dir, 0o755)?;
        let mut staged = StagedControl {
            root,
            files: Vec::new(),
        };
        if !package.control.is_empty() {
            let path = dir.join("control");
            staged.files.push(path.clone());
            root.write_file(&path, &package.control, 0o644)?;
        }
        let db_name = package.db_name();
        for member in INFO_MEMBERS {
            let info = Path::new(ADMINDIR).join(format!("info/{db_name}.{member}"));
            let Some((contents, mode)) = root.read_file_and_mode(&info)? else {
                continue;
            };
            let path = dir.join(member);
            staged.files.push(path.clone());
            root.write_file(&path, &contents, mode)?;
        }
        Ok(staged)
    }

    /// The preinst's path inside the chroot.
    pub(crate) fn preinst(&self) -> String {
        format!("/{TMP_CI}/preinst")
    }

    /// Removes tmp.ci/ now, reporting a failure (Drop only logs it).
    pub(crate) fn remove(mut self) -> Result<(), StageError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), StageError> {
        while let Some(file) = self.files.pop() {
            self.root.remove_file(&file)?;
        }
        self.root.remove_dir(Path::new(TMP_CI))
    }
}

impl Drop for StagedControl<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.remove_now() {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package() -> UnpackedPackage {
        UnpackedPackage {
            name: "libc6".to_owned(),
            version: "2.41-12".to_owned(),
            architecture: "amd64".to_owned(),
            multi_arch_same: true,
            essential: false,
            priority: Some("optional".to_owned()),
            extracted_first: false,
            scripts: vec!["preinst".to_owned()],
            control: b"Package: libc6\nVersion: 2.41-12\n".to_vec(),
        }
    }

    #[test]
    fn the_environment_is_dpkgs() {
        let package = package();
        let env = environment(&package, "preinst", "1.22.21");
        let get = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("{k} is not set"))
        };
        // Not arch-qualified, even for a Multi-Arch: same package.
        assert_eq!(get("DPKG_MAINTSCRIPT_PACKAGE"), "libc6");
        assert_eq!(get("DPKG_MAINTSCRIPT_ARCH"), "amd64");
        assert_eq!(get("DPKG_MAINTSCRIPT_NAME"), "preinst");
        assert_eq!(get("DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT"), "1");
        assert_eq!(get("DPKG_MAINTSCRIPT_DEBUG"), "0");
        assert_eq!(get("DPKG_RUNNING_VERSION"), "1.22.21");
        assert_eq!(get("DPKG_ADMINDIR"), "/var/lib/dpkg");
        assert_eq!(get("DPKG_ROOT"), "");
        assert_eq!(get("DPKG_FORCE"), "security-mac,downgrade,unsafe-io");
    }

    #[test]
    fn the_control_archive_is_staged_in_tmp_ci_and_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let info = tmp.path().join("var/lib/dpkg/info");
        fs_err::create_dir_all(&info).expect("mkdir");
        fs_err::write(info.join("libc6:amd64.preinst"), "#!/bin/sh\n").expect("write");
        fs_err::set_permissions(
            info.join("libc6:amd64.preinst"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        fs_err::write(info.join("libc6:amd64.templates"), "Template: x\n").expect("write");
        // Another package's files are not copied.
        fs_err::write(info.join("libc6.postinst"), "other").expect("write");
        let root = RootDir::open(tmp.path()).expect("open");
        let staged = StagedControl::stage(&root, &package()).expect("stage");
        let ci = tmp.path().join(TMP_CI);
        let mut names: Vec<String> = fs_err::read_dir(&ci)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["control", "preinst", "templates"]);
        assert_eq!(
            fs_err::read_to_string(ci.join("control")).expect("read"),
            "Package: libc6\nVersion: 2.41-12\n"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs_err::metadata(ci.join("preinst"))
                .expect("stat")
                .permissions(),
        );
        assert_eq!(mode & 0o7777, 0o755);
        assert_eq!(staged.preinst(), "/var/lib/dpkg/tmp.ci/preinst");
        // A second staging while the first is there is refused.
        assert!(StagedControl::stage(&root, &package()).is_err());
        staged.remove().expect("remove");
        assert!(!ci.exists());
        // Dropping removes it too.
        drop(StagedControl::stage(&root, &package()).expect("stage again"));
        assert!(!ci.exists());
    }
}
