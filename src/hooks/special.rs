//! mmdebstrap's special hooks, without a shell or tar: takes a form such as `copy-out
//! /var/log/x ./out` and the held root; gives the files copied between the host and the root.
//!
//! Policy: a path inside the root is resolved by the kernel inside it ([`Root`], openat2
//! `RESOLVE_IN_ROOT`): symlinks are followed as the chroot would, `..` and absolute targets
//! stop at the root, so nothing outside it is read or written through a path meant for it.
//! Below that point every entry is reached from its directory's descriptor without following a
//! symlink: a copied tree's symlinks are copied as symlinks, one in the way of a new directory
//! or file is replaced (as GNU tar does), never written through.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::HookError;
use crate::root::Root;
use crate::root::{read_names, Meta};
use crate::unpack::RelPath;
use crate::HeldRoot;

/// A special hook, with its arguments: outside paths are the host's (relative to the current
/// directory), inside paths are the root's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    /// Copies host files and trees into an existing directory of the root.
    CopyIn {
        outside: Vec<PathBuf>,
        inside: String,
    },
    /// Copies files and trees of the root into a host directory (made if missing).
    CopyOut {
        inside: Vec<String>,
        outside: PathBuf,
    },
    /// Copies what a host directory holds into an existing directory of the root.
    SyncIn { outside: PathBuf, inside: String },
    /// Copies what a directory of the root holds into a host directory (made if missing).
    SyncOut { inside: String, outside: PathBuf },
    /// Unpacks a host tarball (plain, gzip, xz or zstd) into an existing directory of the root.
    TarIn { outside: PathBuf, inside: String },
    /// Packs a file or tree of the root into a host tarball.
    TarOut { inside: String, outside: PathBuf },
    /// Writes a host file's bytes to a file of the root (mode 0644, owned by root).
    Upload { outside: PathBuf, inside: String },
    /// Writes a file of the root (symlinks followed inside the root) to a host file.
    Download { inside: String, outside: PathBuf },
}

/// A special hook's failure: the path involved and why.
#[derive(Debug)]
pub(super) enum SpecialError {
    Io { path: PathBuf, source: io::Error },
    Refused(String),
}

impl SpecialError {
    pub(super) fn into_hook_error(self, point: &'static str, command: String) -> HookError {
        match self {
            SpecialError::Io { path, source } => HookError::Special {
                point,
                command,
                path,
                source,
            },
            SpecialError::Refused(reason) => HookError::SpecialRefused {
                point,
                command,
                reason,
            },
        }
    }
}

type Result<T> = std::result::Result<T, SpecialError>;

/// Attaches a path to an I/O error.
fn at<T, E: Into<io::Error>>(path: &Path, result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|e| SpecialError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

impl Special {
    /// `None` unless `text` starts with a special form's name and a space; then its arguments,
    /// split as a shell would (quotes and backslashes), or why they do not fit the form.
    pub fn parse(text: &str) -> Option<std::result::Result<Special, String>> {
        let (name, _) = text.split_once(' ')?;
        const NAMES: [&str; 8] = [
            "copy-in", "copy-out", "sync-in", "sync-out", "tar-in", "tar-out", "upload", "download",
        ];
        if !NAMES.contains(&name) {
            return None;
        }
        Some(Self::from_words(name, text))
    }

    fn from_words(name: &str, text: &str) -> std::result::Result<Special, String> {
        let mut words = shell_words(text)?;
        words.remove(0);
        let two = |words: &[String]| match words {
            [a, b] => Ok((a.clone(), b.clone())),
            _ => Err(format!("{name} takes exactly two paths")),
        };
        if words.len() < 2 {
            return Err(format!("{name} needs a source and a destination"));
        }
        Ok(match name {
            "copy-in" => {
                let inside = words.pop().expect("two words or more");
                Special::CopyIn {
                    outside: words.into_iter().map(PathBuf::from).collect(),
                    inside,
                }
            }
            "copy-out" => {
                let outside = PathBuf::from(words.pop().expect("two words or more"));
                Special::CopyOut {
                    inside: words,
                    outside,
                }
            }
            "sync-in" => {
                let (outside, inside) = two(&words)?;
                Special::SyncIn {
                    outside: outside.into(),
                    inside,
                }
            }
            "sync-out" => {
                let (inside, outside) = two(&words)?;
                Special::SyncOut {
                    inside,
                    outside: outside.into(),
                }
            }
            "tar-in" => {
                let (outside, inside) = two(&words)?;
                Special::TarIn {
                    outside: outside.into(),
                    inside,
                }
            }
            "tar-out" => {
                let (inside, outside) = two(&words)?;
                Special::TarOut {
                    inside,
                    outside: outside.into(),
                }
            }
            "upload" => {
                let (outside, inside) = two(&words)?;
                Special::Upload {
                    outside: outside.into(),
                    inside,
                }
            }
            _ => {
                let (inside, outside) = two(&words)?;
                Special::Download {
                    inside,
                    outside: outside.into(),
                }
            }
        })
    }

    /// Carries the form out on `held`.
    pub(super) fn run(&self, held: &HeldRoot) -> Result<()> {
        let root = at(held.path(), Root::held(held))?;
        let rootp = held.path();
        match self {
            Special::CopyIn { outside, inside } => {
                let dest = inside_dir(&root, inside)?;
                for source in outside {
                    let (dir, name) = host_parent(source)?;
                    copy_entry(dir.as_fd(), &name, dest.as_fd(), &name, source)?;
                }
                Ok(())
            }
            Special::SyncIn { outside, inside } => {
                let dest = inside_dir(&root, inside)?;
                let source = at(
                    outside,
                    rustix::fs::open(outside, dir_flags(), Mode::empty()),
                )?;
                copy_children(source.as_fd(), dest.as_fd(), outside)
            }
            Special::CopyOut { inside, outside } => {
                let dest = host_dir(outside)?;
                for path in inside {
                    let (dir, name) = inside_parent(&root, path)?;
                    copy_entry(dir.as_fd(), &name, dest.as_fd(), &name, &rootp.join(path))?;
                }
                Ok(())
            }
            Special::SyncOut { inside, outside } => {
                let source = inside_dir(&root, inside)?;
                let dest = host_dir(outside)?;
                copy_children(source.as_fd(), dest.as_fd(), &rootp.join(inside))
            }
            Special::Upload { outside, inside } => {
                let mut data = at(outside, fs_err::File::open(outside))?;
                // Created or truncated where the chroot's `cat > PATH` would write.
                let fd = at(
                    &rootp.join(inside),
                    root.open_create(inside.as_bytes(), OFlags::WRONLY | OFlags::TRUNC, 0o644),
                )?;
                let mut file = File::from(fd);
                at(&rootp.join(inside), io::copy(&mut data, &mut file))?;
                Ok(())
            }
            Special::Download { inside, outside } => {
                let shown = rootp.join(inside);
                let fd = at(&shown, root.open(inside.as_bytes(), OFlags::RDONLY))?;
                let stat = at(&shown, rustix::fs::fstat(&fd))?;
                if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                    return Err(SpecialError::Refused(format!(
                        "{} is not a regular file in the root",
                        shown.display()
                    )));
                }
                let mut out = at(outside, fs_err::File::create(outside))?;
                at(outside, io::copy(&mut File::from(fd), &mut out))?;
                Ok(())
            }
            Special::TarIn { outside, inside } => tar_in(&root, outside, inside),
            Special::TarOut { inside, outside } => tar_out(&root, inside, outside),
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, args): (&str, Vec<String>) = match self {
            Special::CopyIn { outside, inside } => (
                "copy-in",
                outside
                    .iter()
                    .map(|p| p.display().to_string())
                    .chain([inside.clone()])
                    .collect(),
            ),
            Special::CopyOut { inside, outside } => (
                "copy-out",
                inside
                    .iter()
                    .cloned()
                    .chain([outside.display().to_string()])
                    .collect(),
            ),
            Special::SyncIn { outside, inside } => (
                "sync-in",
                vec![outside.display().to_string(), inside.clone()],
            ),
            Special::SyncOut { inside, outside } => (
                "sync-out",
                vec![inside.clone(), outside.display().to_string()],
            ),
            Special::TarIn { outside, inside } => (
                "tar-in",
                vec![outside.display().to_string(), inside.clone()],
            ),
            Special::TarOut { inside, outside } => (
                "tar-out",
                vec![inside.clone(), outside.display().to_string()],
            ),
            Special::Upload { outside, inside } => (
                "upload",
                vec![outside.display().to_string(), inside.clone()],
            ),
            Special::Download { inside, outside } => (
                "download",
                vec![inside.clone(), outside.display().to_string()],
            ),
        };
        write!(f, "{name} {}", args.join(" "))
    }
}

/// Splits a line into words as a POSIX shell would, without expansions.
fn shell_words(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unclosed single quote".to_owned()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("unclosed double quote".to_owned()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unclosed double quote".to_owned()),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                if let Some(c) = chars.next() {
                    w.push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// An existing directory of the root, resolved inside it; opened for reading its entries.
fn inside_dir(root: &Root, inside: &str) -> Result<OwnedFd> {
    let shown = root.path().join(inside.trim_start_matches('/'));
    at(
        &shown,
        root.open(inside.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY),
    )
}

/// The directory holding what `inside` resolves to in the root, and its name there: a symlink
/// at `inside` is followed inside the root, as mmdebstrap resolves it in the chroot.
fn inside_parent(root: &Root, inside: &str) -> Result<(OwnedFd, CString)> {
    let shown = root.path().join(inside.trim_start_matches('/'));
    let (parent, name) = at(&shown, root.resolve_parent(inside.as_bytes()))?;
    let name = match name {
        Some(name) => name,
        None => {
            return Err(SpecialError::Refused(format!(
                "{inside} is the root itself; use sync-out (or tar-out) for the whole root"
            )))
        }
    };
    let parent = at(&shown, reopen_dir(parent.as_fd()))?;
    Ok((parent, at(&shown, CString::new(name))?))
}

/// A host path's parent directory (opened) and its last name; its last component is not
/// followed, so a host symlink is copied as a symlink, as tar would.
fn host_parent(path: &Path) -> Result<(OwnedFd, CString)> {
    let name = path
        .file_name()
        .ok_or_else(|| SpecialError::Refused(format!("{} has no file name", path.display())))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = at(parent, rustix::fs::open(parent, dir_flags(), Mode::empty()))?;
    Ok((dir, at(path, CString::new(name.as_bytes()))?))
}

/// A host directory, made with its parents if missing.
fn host_dir(path: &Path) -> Result<OwnedFd> {
    at(path, fs_err::create_dir_all(path))?;
    at(path, rustix::fs::open(path, dir_flags(), Mode::empty()))
}

/// The same directory as an `O_PATH` handle, opened for reading.
fn reopen_dir(fd: BorrowedFd) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(fd, c".", dir_flags(), Mode::empty())?)
}

/// Copies every entry of `from` into `to`.
fn copy_children(from: BorrowedFd, to: BorrowedFd, shown: &Path) -> Result<()> {
    let names = at(shown, read_names(from).map_err(io::Error::from))?;
    for name in names {
        let child = shown.join(OsStr::from_bytes(name.to_bytes()));
        copy_entry(from, &name, to, &name, &child)?;
    }
    Ok(())
}

/// Copies the entry `name` of `from` (never following it) to `to_name` in `to`, recursively.
fn copy_entry(
    from: BorrowedFd,
    name: &CStr,
    to: BorrowedFd,
    to_name: &CStr,
    shown: &Path,
) -> Result<()> {
    crate::cancel::check().map_err(|_| SpecialError::Refused("interrupted".to_owned()))?;
    let stat = at(
        shown,
        rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW),
    )?;
    let meta = Meta::of(&stat);
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {
            let source = at(
                shown,
                rustix::fs::openat(from, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()),
            )?;
            let dest = at(shown, place_dir(to, to_name))?;
            copy_children(source.as_fd(), dest.as_fd(), shown)?;
            at(shown, meta.apply(dest.as_fd()))
        }
        FileType::RegularFile => {
            let source = at(
                shown,
                rustix::fs::openat(
                    from,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                ),
            )?;
            let mut source = File::from(source);
            at(shown, place_file(to, to_name, &mut source, meta))
        }
        FileType::Symlink => {
            let target = at(shown, rustix::fs::readlinkat(from, name, Vec::new()))?;
            at(shown, place_symlink(to, to_name, target.as_bytes(), meta))
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => at(
            shown,
            place_node(to, to_name, stat.st_mode, stat.st_rdev, meta),
        ),
        _ => {
            tracing::warn!(
                "{}: a socket or unknown file type, not copied",
                shown.display()
            );
            Ok(())
        }
    }
}

/// A name no one else picks, beside `name`.
fn temp_name(name: &CStr) -> CString {
    let token = getrandom::u64().unwrap_or_default();
    let mut bytes = format!(".hook-{token:016x}-").into_bytes();
    bytes.extend_from_slice(name.to_bytes());
    CString::new(bytes).expect("no NUL in a name that came from a CStr")
}

/// A directory `name` in `dir`: an existing directory is kept, anything else there (a planted
/// symlink included) is replaced, never followed. Returned open for reading.
fn place_dir(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
        Ok(_) => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
        }
        Err(Errno::NOENT) => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?,
        Err(e) => return Err(e.into()),
    }
    Ok(rustix::fs::openat(
        dir,
        name,
        dir_flags() | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

/// Writes `data` to a new file and renames it over `name` (a symlink there is replaced).
fn place_file(dir: BorrowedFd, name: &CStr, data: &mut dyn Read, meta: Meta) -> io::Result<()> {
    let temp = temp_name(name);
    let fd = rustix::fs::openat(
        dir,
        &temp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = File::from(fd);
    let written = io::copy(data, &mut file)
        .and_then(|_| file.flush())
        .and_then(|()| meta.apply(file.as_fd()))
        .and_then(|()| Ok(rustix::fs::renameat(dir, &temp, dir, name)?));
    if written.is_err() {
        let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
    }
    written
}

fn place_symlink(dir: BorrowedFd, name: &CStr, target: &[u8], meta: Meta) -> io::Result<()> {
    let temp = temp_name(name);
    rustix::fs::symlinkat(target, dir, &temp)?;
    let done = rustix::fs::chownat(
        dir,
        &temp,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .and_then(|()| rustix::fs::renameat(dir, &temp, dir, name));
    if done.is_err() {
        let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
    }
    Ok(done?)
}

/// Makes `name` in `dir` another name of the file `source` is open on (a new name, then
/// renamed over whatever `name` was, never followed).
fn place_hard_link(source: BorrowedFd, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    let temp = temp_name(name);
    crate::root::hard_link(source, dir, temp.as_bytes())?;
    let done = rustix::fs::renameat(dir, &temp, dir, name);
    // rename(2) leaves both names when they already were links to one file.
    let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
    Ok(done?)
}

fn place_node(dir: BorrowedFd, name: &CStr, mode: u32, rdev: u64, meta: Meta) -> io::Result<()> {
    let temp = temp_name(name);
    let kind = FileType::from_raw_mode(mode);
    rustix::fs::mknodat(dir, &temp, kind, Mode::from_raw_mode(0o600), rdev)?;
    let done = rustix::fs::openat(
        dir,
        &temp,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .and_then(|fd| meta.apply(fd.as_fd()))
    .and_then(|()| Ok(rustix::fs::renameat(dir, &temp, dir, name)?));
    if done.is_err() {
        let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
    }
    done
}

/// A reader of a tarball, decompressed by what its first bytes say.
fn open_tarball(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = at(path, fs_err::File::open(path))?;
    let mut magic = [0u8; 6];
    let n = at(path, file.read(&mut magic))?;
    let head = io::Cursor::new(magic[..n].to_vec()).chain(file);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(head)),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Box::new(liblzma::read::XzDecoder::new(head)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(at(path, zstd::stream::read::Decoder::new(head))?),
        _ => Box::new(head),
    })
}

/// Unpacks a tarball below `inside`: each member's parent resolved inside the root (existing
/// symlinks followed inside it, missing directories made), its last name never followed.
fn tar_in(root: &Root, outside: &Path, inside: &str) -> Result<()> {
    let base = inside_dir(root, inside)?;
    drop(base);
    let mut archive = tar::Archive::new(open_tarball(outside)?);
    let entries = at(outside, archive.entries())?;
    for entry in entries {
        crate::cancel::check().map_err(|_| SpecialError::Refused("interrupted".to_owned()))?;
        let mut entry = at(outside, entry)?;
        let raw = entry.path_bytes().into_owned();
        let rel = RelPath::from_entry_name(&raw).map_err(|problem| {
            SpecialError::Refused(format!(
                "{}: member {:?}: {problem}",
                outside.display(),
                String::from_utf8_lossy(&raw)
            ))
        })?;
        if rel.is_root() {
            continue;
        }
        let mut parent = inside.trim_end_matches('/').as_bytes().to_vec();
        parent.push(b'/');
        parent.extend_from_slice(rel.parent());
        let shown = root
            .path()
            .join(inside.trim_start_matches('/'))
            .join(OsStr::from_bytes(rel.as_bytes()));
        let dir = at(&shown, root.open_dir_all(&parent))?;
        let dir = at(&shown, reopen_dir(dir.as_fd()))?;
        let name = at(&shown, CString::new(rel.file_name()))?;
        let header = entry.header();
        let meta = Meta {
            mode: at(&shown, header.mode())? & 0o7777,
            uid: at(&shown, header.uid())? as u32,
            gid: at(&shown, header.gid())? as u32,
            mtime: at(&shown, header.mtime())? as i64,
        };
        let kind = header.entry_type();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        match kind {
            tar::EntryType::Directory => {
                let d = at(&shown, place_dir(dir.as_fd(), &name))?;
                at(&shown, meta.apply(d.as_fd()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                at(&shown, place_file(dir.as_fd(), &name, &mut entry, meta))?;
            }
            tar::EntryType::Symlink => {
                let target = link.unwrap_or_default();
                at(&shown, place_symlink(dir.as_fd(), &name, &target, meta))?;
            }
            tar::EntryType::Link => {
                // A member unpacked before, named from the directory unpacked into (a leading
                // `/` stripped, as GNU tar does); a `..` is refused, and the rest resolves
                // inside the root whatever symlinks it meets.
                let target = link.unwrap_or_default();
                let target = RelPath::from_entry_name(&target).map_err(|p| {
                    SpecialError::Refused(format!(
                        "{}: hard link target {:?}: {p}",
                        shown.display(),
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                let mut full = inside.trim_end_matches('/').as_bytes().to_vec();
                full.push(b'/');
                full.extend_from_slice(target.as_bytes());
                // Its last component is not followed: a link to a symlink member is another
                // link to that symlink, as GNU tar's link(2) makes it.
                let source = at(&shown, root.open_nofollow(&full, OFlags::PATH))?;
                at(&shown, place_hard_link(source.as_fd(), dir.as_fd(), &name))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (file_type, rdev) = match kind {
                    tar::EntryType::Char | tar::EntryType::Block => {
                        let major = at(&shown, header.device_major())?.unwrap_or(0);
                        let minor = at(&shown, header.device_minor())?.unwrap_or(0);
                        let t = if kind == tar::EntryType::Char {
                            rustix::fs::FileType::CharacterDevice
                        } else {
                            rustix::fs::FileType::BlockDevice
                        };
                        (t, rustix::fs::makedev(major, minor))
                    }
                    _ => (rustix::fs::FileType::Fifo, 0),
                };
                at(
                    &shown,
                    place_node(dir.as_fd(), &name, file_type.as_raw_mode(), rdev, meta),
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Packs what `inside` resolves to (named by its last component, as `tar -C DIR -c NAME`
/// would) into a tarball at `outside`, never following a symlink below it.
fn tar_out(root: &Root, inside: &str, outside: &Path) -> Result<()> {
    let (parent, name) = inside_parent(root, inside)?;
    let file = at(outside, fs_err::File::create(outside))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    builder.mode(tar::HeaderMode::Complete);
    let shown = root.path().join(inside.trim_start_matches('/'));
    append_entry(&mut builder, parent.as_fd(), &name, name.to_bytes(), &shown)?;
    let out = at(outside, builder.into_inner())?;
    at(outside, out.into_inner().map_err(|e| e.into_error()))?;
    Ok(())
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: BorrowedFd,
    name: &CStr,
    member: &[u8],
    shown: &Path,
) -> Result<()> {
    crate::cancel::check().map_err(|_| SpecialError::Refused("interrupted".to_owned()))?;
    let stat = at(
        shown,
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
    )?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let mut header = tar::Header::new_gnu();
    header.set_mode(stat.st_mode & 0o7777);
    header.set_uid(stat.st_uid.into());
    header.set_gid(stat.st_gid.into());
    header.set_mtime(u64::try_from(stat.st_mtime).unwrap_or(0));
    header.set_size(0);
    let path = OsStr::from_bytes(member);
    match kind {
        FileType::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            let mut name_slash = member.to_vec();
            name_slash.push(b'/');
            at(
                shown,
                builder.append_data(&mut header, OsStr::from_bytes(&name_slash), io::empty()),
            )?;
            let sub = at(
                shown,
                rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()),
            )?;
            for child in at(shown, read_names(sub.as_fd()).map_err(io::Error::from))? {
                let mut child_member = member.to_vec();
                child_member.push(b'/');
                child_member.extend_from_slice(child.to_bytes());
                let child_shown = shown.join(OsStr::from_bytes(child.to_bytes()));
                append_entry(builder, sub.as_fd(), &child, &child_member, &child_shown)?;
            }
        }
        FileType::RegularFile => {
            let fd = at(
                shown,
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ),
            )?;
            let file = File::from(fd);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(u64::try_from(stat.st_size).unwrap_or(0));
            at(shown, builder.append_data(&mut header, path, file))?;
        }
        FileType::Symlink => {
            let target = at(shown, rustix::fs::readlinkat(dir, name, Vec::new()))?;
            header.set_entry_type(tar::EntryType::Symlink);
            at(
                shown,
                builder.append_link(&mut header, path, OsStr::from_bytes(target.as_bytes())),
            )?;
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            header.set_entry_type(match kind {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            at(
                shown,
                header.set_device_major(rustix::fs::major(stat.st_rdev)),
            )?;
            at(
                shown,
                header.set_device_minor(rustix::fs::minor(stat.st_rdev)),
            )?;
            at(shown, builder.append_data(&mut header, path, io::empty()))?;
        }
        _ => tracing::warn!(
            "{}: a socket or unknown file type, not packed",
            shown.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(
            shell_words(r#"copy-in 'a b' "c \"d\"" e\ f"#).expect("splits"),
            ["copy-in", "a b", "c \"d\"", "e f"]
        );
        assert!(shell_words("copy-in 'open").is_err());
    }

    #[test]
    fn each_form_takes_its_arguments_in_mmdebstrap_order() {
        let parse = |t: &str| Special::parse(t).expect("special").expect("valid");
        assert_eq!(
            parse("copy-out /a /b ./out"),
            Special::CopyOut {
                inside: vec!["/a".into(), "/b".into()],
                outside: "./out".into()
            }
        );
        assert_eq!(
            parse("upload ./f /etc/f"),
            Special::Upload {
                outside: "./f".into(),
                inside: "/etc/f".into()
            }
        );
        assert!(Special::parse("sync-in a b c").expect("special").is_err());
        assert!(Special::parse("unknown a b").is_none());
    }
}
