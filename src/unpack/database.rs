//! dpkg's database for unpacked packages: their control data and path lists in, the files
//! under /var/lib/dpkg that let dpkg in the chroot configure them out.
//!
//! Written: `status` (one stanza per package, `Status: install ok unpacked`), `info/PKG.list`,
//! `info/PKG.<member>` for every control member but `control` (keeping the modes and mtimes
//! the package gives them, as dpkg does),
//! `info/PKG.md5sums` computed when a package ships none, empty `available` and `diversions`,
//! `arch` (only with foreign architectures), `info/format` (1: the multiarch layout), and the
//! directories dpkg expects. No `statoverride`: debootstrap makes none.
//! `PKG` is `NAME:ARCH` for `Multi-Arch: same` packages.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::control::{self, Control};
use super::deb::ControlMember;
use super::path::RelPath;
use super::UnpackError;
use crate::root::Root;

/// dpkg's hash for a conffile it has not installed yet; used only for a conffile the package
/// declares but does not ship as a regular file.
const NEW_CONFFILE: &str = "newconffile";

/// What dpkg's status records after the path of a conffile flagged `remove-on-upgrade`.
const REMOVE_ON_UPGRADE: &str = "newconffile remove-on-upgrade";

const DPKG_DIR: &str = "var/lib/dpkg";
const DPKG_SUBDIRS: [&str; 5] = ["info", "updates", "triggers", "alternatives", "parts"];

/// One unpacked package as the database needs it.
#[derive(Debug)]
pub struct Record<'a> {
    pub control: &'a Control,
    pub members: &'a [ControlMember],
    pub paths: &'a [RelPath],
    /// md5sums computed during extraction (when the package ships none).
    pub computed_md5sums: Option<&'a str>,
    /// The md5 of each conffile as extracted.
    pub conffile_md5: &'a BTreeMap<String, String>,
    /// The archive's priority for the package, if the index gave one.
    pub priority: Option<&'a str>,
}

/// Writes the database for `records`, which must be in the status file's order.
pub fn write(root: &Root, records: &[Record]) -> Result<(), UnpackError> {
    for dir in DPKG_SUBDIRS {
        let path = format!("{DPKG_DIR}/{dir}");
        root.open_dir_all(path.as_bytes())
            .map_err(|source| UnpackError::Database { path, source })?;
    }
    records
        .par_iter()
        .try_for_each(|record| info_files(root, record))?;

    let mut status = String::new();
    for record in records {
        let conffiles: Vec<(String, &str)> = record
            .members
            .iter()
            .find(|m| m.name == "conffiles")
            .map(|m| control::conffile_entries(&m.data))
            .unwrap_or_default()
            .into_iter()
            .map(|(path, flagged)| {
                // dpkg records a flagged conffile (one it removes on upgrade and the package
                // does not ship) as never installed, with its flag.
                let md5 = if flagged {
                    REMOVE_ON_UPGRADE
                } else {
                    record
                        .conffile_md5
                        .get(&path)
                        .map_or(NEW_CONFFILE, String::as_str)
                };
                (path, md5)
            })
            .collect();
        status.push_str(&record.control.status_stanza(&conffiles, record.priority));
    }
    write_file(root, "status", status.as_bytes(), 0o644)?;
    // Format 1 is the multiarch layout (info/PKG:ARCH.*); without this file dpkg reads the
    // database as format 0 and looks for info/PKG.list for every package.
    write_file(root, "info/format", b"1\n", 0o644)?;
    for empty in ["available", "diversions"] {
        let path = format!("{DPKG_DIR}/{empty}");
        root.create_if_absent(path.as_bytes(), 0o644)
            .map_err(|source| UnpackError::Database { path, source })?;
    }
    Ok(())
}

/// Writes info/PKG.list, the control members and computed md5sums of one package.
fn info_files(root: &Root, record: &Record) -> Result<(), UnpackError> {
    let db_name = record.control.db_name();
    let mut list = String::from("/.\n");
    for path in record.paths.iter().filter(|p| !p.is_root()) {
        list.push_str(&path.to_list_line());
        list.push('\n');
    }
    write_file(
        root,
        &format!("info/{db_name}.list"),
        list.as_bytes(),
        0o644,
    )?;
    // dpkg moves the members it extracted into info/, so they keep the package's mtimes.
    for member in record.members.iter().filter(|m| m.name != "control") {
        let path = format!("{DPKG_DIR}/info/{db_name}.{}", member.name);
        root.write_file_dated(
            path.as_bytes(),
            &member.data,
            member.mode,
            Some(member.mtime),
        )
        .map_err(|source| UnpackError::Database { path, source })?;
    }
    let ships_md5sums = record.members.iter().any(|m| m.name == "md5sums");
    if let Some(md5sums) = record
        .computed_md5sums
        .filter(|s| !ships_md5sums && !s.is_empty())
    {
        let name = format!("info/{db_name}.md5sums");
        write_file(root, &name, md5sums.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Replaces dpkg's `available` with the given index stanzas, as debootstrap leaves it.
pub fn write_available(root: &Root, stanzas: &str) -> Result<(), UnpackError> {
    write_file(root, "available", stanzas.as_bytes(), 0o644)
}

/// dpkg's list of the architectures it accepts: the native one first.
pub fn write_arch(root: &Root, native: &str, foreign: &[String]) -> Result<(), UnpackError> {
    let mut text = format!("{native}\n");
    for arch in foreign {
        text.push_str(arch);
        text.push('\n');
    }
    write_file(root, "arch", text.as_bytes(), 0o644)
}

fn write_file(root: &Root, name: &str, contents: &[u8], mode: u32) -> Result<(), UnpackError> {
    let path = format!("{DPKG_DIR}/{name}");
    root.write_file(path.as_bytes(), contents, mode)
        .map_err(|source| UnpackError::Database { path, source })
}
