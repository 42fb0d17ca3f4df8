//! Turns the walk of a root into tar members: names, metadata, hard links, link targets, device
//! numbers, extended attributes and file contents.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use super::tar::{self, Kind, Member, Mtime};
use super::walk::{self, Entry};
use super::OutputError;
use crate::HeldRoot;

/// Writes the tar archive of `root` to `out`, mtimes clamped to `source_date_epoch` when given.
///
/// `target` names where `out` goes, for error messages.
pub(super) fn write_archive(
    held: &HeldRoot,
    out: &mut dyn Write,
    source_date_epoch: Option<i64>,
    target: &str,
) -> Result<(), OutputError> {
    let mut archiver = Archiver {
        root: held.path(),
        out: Counting {
            inner: out,
            written: 0,
        },
        source_date_epoch,
        first_paths: HashMap::new(),
        // A rootless build's /dev holds placeholders where root's holds nodes (the kernel refuses
        // mknod in a user namespace): the archive gets the nodes, so both archives are the same.
        device_placeholders: crate::userns::inside(),
        target,
        buf: vec![0u8; 128 * 1024],
    };
    walk::walk(held, &mut |entry| archiver.add(entry))?;
    let written = archiver.out.written;
    tar::write_trailer(&mut archiver.out, written).map_err(|source| archiver.write_err(source))?;
    Ok(())
}

struct Archiver<'a> {
    root: &'a Path,
    out: Counting<&'a mut dyn Write>,
    source_date_epoch: Option<i64>,
    /// Archive name of the first path seen for each multiply-linked inode.
    first_paths: HashMap<(u32, u32, u64), Vec<u8>>,
    device_placeholders: bool,
    target: &'a str,
    buf: Vec<u8>,
}

impl Archiver<'_> {
    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn write_err(&self, source: io::Error) -> OutputError {
        OutputError::Write {
            target: self.target.to_string(),
            source,
        }
    }

    fn add(&mut self, entry: &Entry) -> Result<(), OutputError> {
        // A stop request ends the archive at the next member; the caller removes the partial file.
        crate::cancel::check()?;
        let stat = entry.stat;
        let file_type = entry.file_type();
        let mut name = b"./".to_vec();
        name.extend_from_slice(entry.rel);
        if file_type == FileType::Directory && !entry.rel.is_empty() {
            name.push(b'/');
        }
        let path = self.path(entry.rel);
        let read_err = |source: io::Error| OutputError::Read {
            path: path.clone(),
            source,
        };

        let mut kind = match file_type {
            FileType::RegularFile => Kind::Regular,
            FileType::Directory => Kind::Directory,
            FileType::Symlink => Kind::Symlink,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Fifo => Kind::Fifo,
            // GNU tar skips sockets too: they cannot be recreated from an archive.
            FileType::Socket | FileType::Unknown => return Ok(()),
        };
        let placeholder = match kind {
            Kind::Regular if self.device_placeholders && stat.stx_size == 0 => {
                crate::stage::placeholder_device(entry.rel)
            }
            _ => None,
        };
        if placeholder.is_some() {
            kind = Kind::CharDevice;
        }
        let mut link = Vec::new();
        if kind != Kind::Directory && stat.stx_nlink > 1 {
            let key = (stat.stx_dev_major, stat.stx_dev_minor, stat.stx_ino);
            match self.first_paths.get(&key) {
                Some(first) => {
                    kind = Kind::HardLink;
                    link = first.clone();
                }
                None => {
                    self.first_paths.insert(key, name.clone());
                }
            }
        }
        if kind == Kind::Symlink {
            let (dir, file) = entry
                .parent
                .expect("the root is a directory, never a symlink");
            link = rustix::fs::readlinkat(dir, file, Vec::new())
                .map_err(|e| read_err(e.into()))?
                .into_bytes();
        }
        // A hard link's entry carries no attributes: extraction links to the first path's inode.
        let xattrs = if kind == Kind::HardLink {
            Vec::new()
        } else {
            read_xattrs(&reached_path(entry)).map_err(read_err)?
        };
        let (dev_major, dev_minor) = match (kind, placeholder) {
            (_, Some(numbers)) => numbers,
            (Kind::CharDevice | Kind::BlockDevice, None) => {
                (stat.stx_rdev_major, stat.stx_rdev_minor)
            }
            _ => (0, 0),
        };
        let size = if kind == Kind::Regular {
            stat.stx_size
        } else {
            0
        };
        let mtime = Mtime {
            sec: stat.stx_mtime.tv_sec,
            nsec: stat.stx_mtime.tv_nsec,
        }
        .clamp(self.source_date_epoch);
        let member = Member {
            name: &name,
            kind,
            mode: u32::from(stat.stx_mode),
            uid: stat.stx_uid,
            gid: stat.stx_gid,
            size,
            mtime,
            link: &link,
            dev_major,
            dev_minor,
            xattrs: &xattrs,
        };
        // GNU tar dates a pax header with the SOURCE_DATE_EPOCH, else with the member's own time.
        let pax_mtime = self.source_date_epoch.unwrap_or(stat.stx_mtime.tv_sec);
        tar::write_header(&mut self.out, &member, pax_mtime).map_err(|e| self.write_err(e))?;
        if kind == Kind::Regular {
            self.copy_contents(entry, size)?;
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of the file, failing if it grew or shrank since its stat.
    fn copy_contents(&mut self, entry: &Entry, size: u64) -> Result<(), OutputError> {
        let path = self.path(entry.rel);
        let read_err = |source: io::Error| OutputError::Read {
            path: path.clone(),
            source,
        };
        let (dir, name) = entry.parent.expect("a regular file has a parent directory");
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| read_err(e.into()))?;
        let opened = rustix::fs::statx(fd.as_fd(), c"", AtFlags::EMPTY_PATH, StatxFlags::INO)
            .map_err(|e| read_err(e.into()))?;
        if opened.stx_ino != entry.stat.stx_ino {
            return Err(OutputError::FileChanged {
                path,
                expected: size,
                actual: opened.stx_size,
            });
        }
        let mut file = std::fs::File::from(fd);
        let mut copied = 0u64;
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            if n == 0 {
                break;
            }
            copied += n as u64;
            if copied > size {
                break;
            }
            let chunk = &self.buf[..n];
            self.out.write_all(chunk).map_err(|e| OutputError::Write {
                target: self.target.to_string(),
                source: e,
            })?;
        }
        if copied != size {
            return Err(OutputError::FileChanged {
                path,
                expected: size,
                actual: copied,
            });
        }
        tar::write_padding(&mut self.out, size).map_err(|e| self.write_err(e))
    }
}

/// A path to `entry` for the calls that only take one (the xattr calls): its parent directory's
/// descriptor link, which leads to exactly the directory the walk holds, then its name, which
/// the `l*` calls do not follow. Nothing is looked up from the root's path.
fn reached_path(entry: &Entry) -> PathBuf {
    match (entry.parent, entry.dir) {
        (Some((dir, name)), _) => {
            crate::stage::fd_path(dir).join(OsStr::from_bytes(name.to_bytes()))
        }
        (None, dir) => {
            crate::stage::fd_path(dir.expect("the walk opens the root it starts from")).join(".")
        }
    }
}

/// The extended attributes of `path` (not following a symlink), sorted by name so the archive
/// does not depend on the order the filesystem lists them in.
pub(super) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = loop {
        let len = match rustix::fs::llistxattr_query(path) {
            Ok(len) => len,
            // Filesystems without xattr support have none to archive.
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; len];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            // The list grew between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut xattrs = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let value = loop {
            let len = match rustix::fs::lgetxattr_query(path, name_os) {
                Ok(len) => len,
                // Removed between listing and reading.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            };
            let mut buf = vec![0u8; len];
            match rustix::fs::lgetxattr(path, name_os, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    break Some(buf);
                }
                Err(rustix::io::Errno::RANGE) => continue,
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(value) = value {
            xattrs.push((name.to_vec(), value));
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// Counts the bytes written, so the trailer can pad the archive to a whole record.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
