//! Output: make a finished root deterministic and, for tarball and image targets, write it as a
//! reproducible tarball or image.
//!
//! Takes the root directory the earlier stages built and the [`Output`] the user asked for;
//! gives a tarball file (written beside its destination and renamed into place, so no
//! half-written tarball is ever left at the path), a tarball on standard output, an image
//! ([`write_image`]: squashfs and ext4 in `image`, OCI in `oci`, placed the same way), or — for
//! directory targets — nothing more than [`make_deterministic`]'s changes to the root.
//!
//! # The tarball
//! The archive is laid out byte for byte as GNU tar 1.34 writes it with mmdebstrap's options
//! (`tar --sort=name --mtime=@SDE --clamp-mtime --numeric-owner --format=pax
//! --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime --xattrs -C ROOT .`):
//! - names are `./` then the path, directories end in `/`, the root itself is `./`;
//! - order is each directory, then its entries sorted by the bytes of their names, depth first;
//! - numeric uid/gid only (empty user and group names); mode with setuid/setgid/sticky;
//! - mtime is `min(mtime, SOURCE_DATE_EPOCH)` when one is given, kept to the nanosecond (a pax
//!   `mtime` record) only when the result has a fraction; no atime or ctime;
//! - the second and later paths of a multiply-linked inode, in that order, are hard-link members
//!   naming the first; symlinks, character and block devices (major/minor) and fifos are members
//!   of their own; sockets are skipped, as GNU tar does;
//! - every extended attribute (`security.capability` included) is a `SCHILY.xattr.NAME` pax
//!   record; names or link targets over 100 bytes go to pax `path`/`linkpath`;
//! - extended attributes are sorted by name where GNU tar keeps the filesystem's listing order:
//!   the bytes differ from GNU tar's only for a file with several attributes listed unsorted;
//! - the walk never follows a symlink and refuses, naming the path, any other mount inside the
//!   root (a leftover /proc must never end up in an image), and a destination inside the root;
//! - compression is deterministic: gzip level 6 with no name and mtime 0; xz preset 6 with a
//!   CRC64 check, on several threads but in fixed 24 MiB blocks, so the bytes do not depend on
//!   the number of CPUs; zstd level 3, single-threaded, with a checksum.
//!
//! # What is guaranteed
//! Two roots with the same tree (names, types, modes, owners, contents, link targets, device
//! numbers, xattrs and mtimes up to the clamp) give the same tarball bytes, whatever the order
//! the files were created in, the filesystem they sit on or the time the archive is written.
//! With a SOURCE_DATE_EPOCH, [`make_deterministic`] brings two builds of the same archive state
//! with the same options and the same version of this tool to that point.
//!
//! # What breaks it
//! - A SOURCE_DATE_EPOCH later than the build: files written during the build keep their own,
//!   differing, mtimes.
//! - No SOURCE_DATE_EPOCH at all: nothing is clamped, so every file the build wrote carries the
//!   time it was written. [`remove_volatile_files`] is still worth running then (it is what
//!   mmdebstrap always does): caches and logs of the build have no use in the finished root.
//! - Content the build writes that [`remove_volatile_files`] does not cover: a maintainer script that
//!   stores the time, a random value or a host detail (a host resolv.conf or hostname copied in,
//!   a timestamp in /etc/shadow not derived from SOURCE_DATE_EPOCH, compiled Python without it).
//! - Host-specific extended attributes, such as SELinux labels the host's policy puts on files.
//! - Another version of this tool or of its compression libraries (the compressed bytes depend
//!   on the encoder's implementation; the uncompressed tar does not).

mod archive;
mod clean;
mod compress;
mod image;
mod oci;
pub(crate) mod place;
mod tar;
mod walk;

/// The sorted names of a directory read by descriptor, for the hooks' special forms too.
pub use oci::{REF_NAME as OCI_REF_NAME, SBOM_FILE as OCI_SBOM_FILE};

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::config::{Compression, ImageFormat, Output};
use crate::HeldRoot;
use compress::Compressor;

/// Why writing the output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot read {path} while archiving or cleaning the root")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing {path}: another filesystem is mounted there inside the root (a leftover mount \
         such as /proc must never be archived or cleaned); unmount it and retry"
    )]
    MountPoint { path: PathBuf },
    #[error(
        "{path} changed while it was being archived (expected {expected} bytes, read {actual})"
    )]
    FileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("cannot create a temporary file beside the tarball {path}")]
    CreateTemp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the tarball to {target}")]
    Write {
        /// The tarball's path, or `standard output`.
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to write the tarball {path} inside the root {root} it archives: choose a \
         destination outside it"
    )]
    DestinationInsideRoot { path: PathBuf, root: PathBuf },
    #[error("cannot move the finished tarball into place at {path}")]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path} while making the root deterministic")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot empty {path} while making the root deterministic")]
    Truncate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),
    #[error(
        "{program} is not installed (it writes this image format); install the Debian package \
         {package} (apt-get install {package})"
    )]
    MissingProgram {
        program: &'static str,
        package: &'static str,
    },
    #[error("cannot run {program}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {message}")]
    Tool {
        program: &'static str,
        message: String,
    },
    #[error(
        "the image does not fit: it needs about {needed} MiB but {dir} has {available} MiB free; \
         free some space or write the image elsewhere"
    )]
    NoRoom {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("cannot set the modification time of {path} to SOURCE_DATE_EPOCH")]
    Clamp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `root` as the tarball `output` describes; a directory output needs nothing written.
///
/// A tarball file is written to a temporary file in the destination's directory and renamed over
/// the destination only once complete; on any error the temporary file is removed.
pub fn write_tarball(
    root: &HeldRoot,
    output: &Output,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    match output {
        Output::Directory(_) | Output::Image { .. } => Ok(()),
        Output::Tarball { path, compression } => {
            write_tarball_file(root, path, *compression, source_date_epoch)
        }
        Output::Stdout { compression } => {
            let stdout = std::io::stdout().lock();
            let out = write_tar_to(
                root,
                BufWriter::new(stdout),
                *compression,
                source_date_epoch,
            )
            .map_err(|e| rename_target(e, "standard output"))?;
            finish_writer(out).map_err(|source| OutputError::Write {
                target: "standard output".to_string(),
                source,
            })
        }
    }
}

/// Checks that the programs `output`'s format runs are installed, before any work is done.
pub fn check_programs(output: &Output) -> Result<(), OutputError> {
    if let Output::Image { format, .. } = output {
        for program in image::programs(*format) {
            image::find(*program)?;
        }
    }
    Ok(())
}

/// What an image is made of besides the root.
pub struct ImageRequest<'a> {
    pub path: &'a Path,
    pub format: ImageFormat,
    pub source_date_epoch: Option<i64>,
    /// Debian architecture of the root.
    pub arch: &'a str,
    /// The SPDX document an OCI image carries.
    pub sbom: &'a [u8],
}

/// Writes `root` as the image `request` describes. A file image is made in a temporary file
/// beside its destination and renamed over it only once complete, an OCI layout in a temporary
/// directory beside it; on any error the temporary file or directory is removed.
pub fn write_image(root: &HeldRoot, request: &ImageRequest) -> Result<(), OutputError> {
    let path = request.path;
    let sde = request.source_date_epoch;
    match request.format {
        ImageFormat::Squashfs => write_with_tool(path, |dest| image::squashfs(root, dest, sde)),
        ImageFormat::Ext4 => write_with_tool(path, |dest| image::ext4(root, dest, sde)),
        ImageFormat::OciArchive | ImageFormat::OciDir => {
            let staging = oci::staging_dir(path)?;
            let oci_request = oci::OciRequest {
                root,
                arch: request.arch,
                source_date_epoch: sde,
                sbom: request.sbom,
            };
            oci::write_layout(&oci_request, staging.path())?;
            crate::cancel::check()?;
            if request.format == ImageFormat::OciArchive {
                let layout = HeldRoot::open(staging.path()).map_err(|e| OutputError::Read {
                    path: staging.path().to_path_buf(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                write_tarball_file(&layout, path, Compression::None, sde)
            } else {
                replace_dir(staging, path)
            }
        }
    }
}

/// Runs `write` on a new temporary file beside `path`, then renames it over `path`.
fn write_with_tool(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let temp = temp_beside(path)?;
    write(temp.path())?;
    commit_temp(temp, path)
}

/// Puts the finished temporary file `temp` at `path`: its bytes reach the disk first, and
/// nothing is committed after a stop request (the temporary file goes when `temp` drops).
fn commit_temp(temp: tempfile::NamedTempFile, path: &Path) -> Result<(), OutputError> {
    temp.as_file()
        .sync_all()
        .map_err(|source| OutputError::Write {
            target: path.display().to_string(),
            source,
        })?;
    crate::cancel::check()?;
    temp.persist(path).map_err(|e| OutputError::Persist {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Puts the finished layout at `path`, replacing what is there (the build refused a non-empty
/// directory there without --force before it started).
fn replace_dir(staging: tempfile::TempDir, path: &Path) -> Result<(), OutputError> {
    let persist_err = |source| OutputError::Persist {
        path: path.to_path_buf(),
        source,
    };
    let old = path.with_file_name(format!(
        ".{}.old-{}",
        path.file_name()
            .map_or_else(|| "oci".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let replacing = fs_err::symlink_metadata(path).is_ok();
    if replacing {
        fs_err::rename(path, &old).map_err(persist_err)?;
    }
    let staged = staging.keep();
    if let Err(e) = fs_err::rename(&staged, path) {
        let _ = fs_err::remove_dir_all(&staged);
        if replacing {
            let _ = fs_err::rename(&old, path);
        }
        return Err(persist_err(e));
    }
    if replacing {
        let removed = if fs_err::symlink_metadata(&old).is_ok_and(|m| m.is_dir()) {
            fs_err::remove_dir_all(&old)
        } else {
            fs_err::remove_file(&old)
        };
        if let Err(err) = removed {
            tracing::error!("{err}");
            crate::cancel::left_behind(old);
        }
    }
    Ok(())
}

/// A new temporary file in `path`'s directory, created 0666 less the umask as tools create
/// files, removed when dropped.
fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile, OutputError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".part")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|source| OutputError::CreateTemp {
            path: path.to_path_buf(),
            source,
        })
}

/// Removes what records the build itself ([`remove_volatile_files`]), then clamps every mtime
/// later than `source_date_epoch` to it, without following symlinks.
pub fn make_deterministic(root: &HeldRoot, source_date_epoch: i64) -> Result<(), OutputError> {
    clean::remove_volatile_files(root)?;
    clean::clamp_mtimes(root, source_date_epoch)
}

/// Removes caches, logs and per-machine files the build leaves in `root`.
///
/// Removed: apt's binary caches, downloaded and partial .debs, the package lists (apt's `lock`
/// and `partial/` stay), debconf's and dpkg's `*-old` backups, ldconfig's `aux-cache`, the
/// installation's logs (`dpkg.log`, `alternatives.log`, `apt/{history,term}.log`,
/// `apt/eipp.log.xz`), a regular `var/lib/dbus/machine-id`, and everything in `/tmp` and in
/// `/run` but `run/lock`. Emptied, keeping mode and owner: every other file under `var/log`
/// and `etc/machine-id`. Symlinks in the root are never followed and mounts inside it are
/// refused.
pub fn remove_volatile_files(root: &HeldRoot) -> Result<(), OutputError> {
    clean::remove_volatile_files(root)
}

fn write_tarball_file(
    root: &HeldRoot,
    path: &Path,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The growing tarball would otherwise be archived into itself.
    if let (Ok(root_real), Ok(dir_real)) =
        (fs_err::canonicalize(root.path()), fs_err::canonicalize(dir))
    {
        if dir_real.starts_with(&root_real) {
            return Err(OutputError::DestinationInsideRoot {
                path: path.to_path_buf(),
                root: root.path().to_path_buf(),
            });
        }
    }
    // Created 0666 less the umask, as `tar -cf` would create it.
    let temp = temp_beside(path)?;
    let write_err = |source| OutputError::Write {
        target: path.display().to_string(),
        source,
    };
    let out = BufWriter::with_capacity(1 << 20, temp.as_file());
    // Errors name the destination the user gave, not the temporary file.
    let out = write_tar_to(root, out, compression, source_date_epoch)
        .map_err(|e| rename_target(e, &path.display().to_string()))?;
    finish_writer(out).map_err(write_err)?;
    commit_temp(temp, path)
}

fn finish_writer<W: Write>(out: BufWriter<W>) -> std::io::Result<()> {
    let mut inner = out.into_inner().map_err(|e| e.into_error())?;
    inner.flush()
}

/// Writes the (compressed) tarball of `root` to `out` and returns `out` once the compressed stream
/// is complete; the caller flushes or syncs it.
pub fn write_tar_to<W: Write>(
    root: &HeldRoot,
    out: W,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> Result<W, OutputError> {
    let target = "the output stream";
    let write_err = |source| OutputError::Write {
        target: target.to_string(),
        source,
    };
    let mut compressor = Compressor::new(out, compression).map_err(write_err)?;
    archive::write_archive(root, &mut compressor, source_date_epoch, target)?;
    compressor.finish().map_err(write_err)
}

/// Gives a write error the name of the real destination.
fn rename_target(error: OutputError, target: &str) -> OutputError {
    match error {
        OutputError::Write { source, .. } => OutputError::Write {
            target: target.to_string(),
            source,
        },
        other => other,
    }
}
