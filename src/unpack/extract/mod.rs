//! Confined extraction of data.tar streams: tar entries in, files under the root and each
//! package's path list (and md5sums when it ships none) out.
//!
//! Many packages extract at once. A shared claim table ([`claims`]), keyed by (parent directory inode, name)
//! so that paths reached through a symlink such as `bin -> usr/bin` meet the same key, makes the
//! result independent of thread timing:
//! - a non-directory path shipped by two packages is refused unless one declares `Replaces` on
//!   the other (dpkg's rule); the replacing package's copy is kept (the later in request order
//!   when both replace each other), the other skipped or replaced (built under a temporary
//!   name, then renamed over it);
//! - a directory takes the owner, mode and mtime of the earliest package that ships it (dpkg
//!   leaves an existing directory alone), applied once every package is in place; one that
//!   debootstrap's build would have touched keeps the build's time instead;
//! - a directory where a package put a non-directory (or the reverse) is an error naming both;
//! - an existing symlink to a directory satisfies a directory entry and is kept (dpkg's rule,
//!   which keeps the merged-/usr links);
//! - the instances of one `Multi-Arch: same` package for several architectures may ship the
//!   same path, which the earliest in request order places; each instance's copy is
//!   fingerprinted (SHA-256 of a file's bytes, a link's target, a device's number) and
//!   [`Extractor::check_shared`] refuses copies that differ, as dpkg refuses to overwrite a
//!   shared file with different contents.
//!
//! One case still depends on timing: a package's symlink and another package's directory at
//! the same path, outside the merged-/usr links (which exist before any entry is seen). If the
//! directory is made first, the symlink is refused; Debian archives do not ship this.
//!
//! Device nodes and fifos are made as the archive says (Debian packages ship none; the stage
//! makes /dev), so a hostile package could place a device node inside the root, never outside.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use md5::{Digest, Md5};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::Sha256;

use super::deb::member_error;
use super::path::RelPath;
use super::{EntryProblem, UnpackError};
use crate::fetch::Package;
use crate::root::{hard_link, rename_noreplace, Meta, Root};

mod claims;

use claims::{shared_instance, Claim, ClaimKey, Decision, Refusal, SharedCopy};

/// The top-level directories that merged /usr turns into symlinks (debootstrap's list).
pub const USR_ALIASES: [&str; 7] = ["bin", "sbin", "lib", "lib32", "lib64", "libo32", "libx32"];

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl Kind {
    /// The word used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Directory => "directory",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::HardLink => "hard link",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Fifo => "fifo",
        }
    }
}

/// A directory descriptor inside the root with its identity.
struct Parent {
    path: Vec<u8>,
    fd: OwnedFd,
    /// New files here take the directory's group, not ours.
    setgid: bool,
    dev: u64,
    ino: u64,
}

/// What one package's data.tar gave.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Every entry's path, in archive order (the root included).
    pub paths: Vec<RelPath>,
    /// `md5  path` lines for regular files, when the package ships no md5sums.
    pub md5sums: Option<String>,
    /// The md5 of each conffile (`/etc/x` style path) as extracted, for the status file.
    pub conffile_md5: BTreeMap<String, String>,
}

/// Extraction state shared by every package of one unpack.
pub struct Extractor<'a> {
    root: &'a Root,
    /// The packages by request index: names for messages, Replaces for shared files.
    packages: &'a [&'a Package],
    /// When debootstrap would have created what each package ships, by request index: the
    /// packages its first stage extracts come first, in request order, then the others.
    ranks: Vec<usize>,
    claims: Mutex<HashMap<ClaimKey, Claim>>,
    /// Paths a package ships but another replaced (by request index): dpkg drops them from
    /// the replaced package's file list.
    replaced: Mutex<Vec<(usize, RelPath)>>,
    /// Merged-/usr links already made (or found) in this run.
    aliases: Mutex<BTreeSet<Vec<u8>>>,
    /// By request index: whether the package is one of several architectures' instances of a
    /// `Multi-Arch: same` package, whose non-directory entries are fingerprinted.
    shared: Vec<bool>,
    /// The fingerprint of every non-directory entry of those packages.
    shared_copies: Mutex<Vec<SharedCopy>>,
    /// Hard links of those packages to a file an earlier instance places, made by
    /// [`Extractor::finish_links`] unless that instance makes them.
    deferred_links: Mutex<Vec<DeferredLink>>,
    /// Who we are: files we create are owned by us unless the tar header says otherwise.
    euid: u32,
    egid: u32,
}

/// One package being extracted.
struct Job<'x, 'a> {
    x: &'x Extractor<'a>,
    index: usize,
    package: &'x str,
    member: &'x str,
    parent: Option<Parent>,
    /// File digests by path, for md5sums of hard links, when computing.
    digests: Option<HashMap<RelPath, String>>,
    md5sums: String,
    /// The package's conffiles (`/etc/x`), whose digests the status file records.
    conffiles: &'x BTreeSet<String>,
    conffile_md5: BTreeMap<String, String>,
    /// The SHA-256 of the regular file just read, when the package is `shared`.
    file_sha256: Option<Vec<u8>>,
    /// Paths this package ships that an earlier instance of it (`Multi-Arch: same`) places.
    left_to_earlier: HashSet<RelPath>,
}

/// A hard link a `Multi-Arch: same` instance ships to a file an earlier instance places,
/// perhaps not yet: the earlier instance ships the link too and places it, and if it did not,
/// [`Extractor::finish_links`] makes it once every package is extracted.
struct DeferredLink {
    index: usize,
    key: ClaimKey,
    path: RelPath,
    target: RelPath,
}

/// The digests taken of a regular file's bytes as they stream past.
struct Digests {
    md5: Option<Md5>,
    sha256: Option<Sha256>,
}

impl Digests {
    fn wanted(&self) -> bool {
        self.md5.is_some() || self.sha256.is_some()
    }

    fn update(&mut self, chunk: &[u8]) {
        if let Some(h) = self.md5.as_mut() {
            h.update(chunk);
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update(chunk);
        }
    }
}

impl<'a> Extractor<'a> {
    /// Prepares extraction into `root` of `packages` (in request order), of which those marked
    /// in `extracted_first` are the ones debootstrap's first stage extracts.
    pub fn new(
        root: &'a Root,
        packages: &'a [&'a Package],
        extracted_first: &[bool],
    ) -> Extractor<'a> {
        let later = packages.len();
        let ranks = (0..packages.len())
            .map(|i| {
                if extracted_first.get(i).copied().unwrap_or(false) {
                    i
                } else {
                    later + i
                }
            })
            .collect();
        let mut by_name: HashMap<&str, Vec<&Package>> = HashMap::new();
        for package in packages {
            by_name.entry(&package.name).or_default().push(package);
        }
        let shared = packages
            .iter()
            .map(|p| {
                by_name[p.name.as_str()]
                    .iter()
                    .any(|q| shared_instance(p, q))
            })
            .collect();
        Extractor {
            root,
            packages,
            ranks,
            claims: Mutex::new(HashMap::new()),
            replaced: Mutex::new(Vec::new()),
            aliases: Mutex::new(BTreeSet::new()),
            shared,
            shared_copies: Mutex::new(Vec::new()),
            deferred_links: Mutex::new(Vec::new()),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
        }
    }

    /// The root extracted into.
    pub fn root(&self) -> &Root {
        self.root
    }

    /// Makes `NAME -> usr/NAME` and `usr/NAME` unless `NAME` already exists in the root.
    pub fn ensure_usr_alias(&self, name: &[u8]) -> io::Result<()> {
        let mut done = self.aliases.lock().unwrap_or_else(|e| e.into_inner());
        if done.contains(name) {
            return Ok(());
        }
        let root = self.root.fd();
        match rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::NOENT) => {
                let mut target = b"usr/".to_vec();
                target.extend_from_slice(name);
                self.root.open_dir_all(&target)?;
                match rustix::fs::symlinkat(target.as_slice(), root, name) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        done.insert(name.to_vec());
        Ok(())
    }

    /// Extracts one package's data.tar; `index` is its place in the request order.
    pub fn extract(
        &self,
        index: usize,
        package: &str,
        member: &str,
        data: &mut dyn Read,
        compute_md5sums: bool,
        conffiles: &BTreeSet<String>,
    ) -> Result<Extracted, UnpackError> {
        let io_error = |source| member_error(package, member, source);
        let mut job = Job {
            x: self,
            index,
            package,
            member,
            parent: None,
            digests: compute_md5sums.then(HashMap::new),
            md5sums: String::new(),
            conffiles,
            conffile_md5: BTreeMap::new(),
            file_sha256: None,
            left_to_earlier: HashSet::new(),
        };
        let mut paths = Vec::new();
        let mut archive = tar::Archive::new(data);
        for entry in archive.entries().map_err(io_error)? {
            let mut entry = entry.map_err(io_error)?;
            if let Some(path) = job.entry(&mut entry)? {
                paths.push(path);
            }
        }
        Ok(Extracted {
            paths,
            md5sums: compute_md5sums.then_some(job.md5sums),
            conffile_md5: job.conffile_md5,
        })
    }

    /// Completes the root once every package is extracted: the hard links left for later, the
    /// check of shared `Multi-Arch: same` copies, then every directory's owner, mode and mtime.
    pub fn finish(&self) -> Result<(), UnpackError> {
        self.finish_links()?;
        self.check_shared()?;
        self.finish_directories()
    }

    /// Makes the hard links [`Job::defer_link`] left for later whose path is still claimed by
    /// the package that deferred them: every earlier instance has been extracted by now, so
    /// their targets are in place.
    fn finish_links(&self) -> Result<(), UnpackError> {
        let deferred = std::mem::take(
            &mut *self
                .deferred_links
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        for link in deferred {
            let still_ours = matches!(
                claims.get(&link.key),
                Some(Claim::Other { owner, .. }) if *owner == link.index
            );
            if !still_ours {
                continue;
            }
            let package = &self.packages[link.index].name;
            let error = |source: io::Error| UnpackError::Extract {
                package: package.clone(),
                entry: link.path.display(),
                source,
            };
            let target = self
                .root
                .open_nofollow(link.target.as_bytes(), OFlags::PATH)
                .map_err(error)?;
            let stat = rustix::fs::fstat(&target).map_err(|e| error(e.into()))?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                return Err(UnpackError::Entry {
                    package: package.clone(),
                    entry: link.path.display(),
                    problem: EntryProblem::HardLinkToDirectory,
                });
            }
            let dir = self.root.open_dir(link.path.parent()).map_err(error)?;
            let temp = self.root.temp_name();
            hard_link(&target, &dir, &temp).map_err(|e| error(e.into()))?;
            if let Err(e) = rustix::fs::renameat(&dir, temp.as_slice(), &dir, link.path.file_name())
            {
                let _ = rustix::fs::unlinkat(&dir, temp.as_slice(), AtFlags::empty());
                return Err(error(e.into()));
            }
        }
        Ok(())
    }
}

impl Job<'_, '_> {
    fn entry_name(entry: &tar::Entry<'_, &mut dyn Read>) -> String {
        String::from_utf8_lossy(&entry.path_bytes()).into_owned()
    }

    fn refuse(&self, entry: String, problem: EntryProblem) -> UnpackError {
        UnpackError::Entry {
            package: self.package.to_owned(),
            entry,
            problem,
        }
    }

    fn failed(&self, entry: &RelPath, source: impl Into<io::Error>) -> UnpackError {
        UnpackError::Extract {
            package: self.package.to_owned(),
            entry: entry.display(),
            source: source.into(),
        }
    }

    fn conflict(
        &self,
        entry: &RelPath,
        kind: Kind,
        holder: Option<(usize, Kind)>,
        found: Option<Kind>,
    ) -> UnpackError {
        let (holder, other_kind) = match holder {
            Some((i, k)) => (format!("package {}", self.x.packages[i].name), k),
            None => (
                "the root before unpacking".to_owned(),
                found.unwrap_or(Kind::File),
            ),
        };
        UnpackError::Conflict {
            package: self.package.to_owned(),
            entry: entry.display(),
            kind: kind.name(),
            holder,
            other_kind: other_kind.name(),
        }
    }

    /// Extracts one entry; returns its path for the package's list (None for pax headers).
    fn entry(
        &mut self,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
    ) -> Result<Option<RelPath>, UnpackError> {
        let io_error = |source| member_error(self.package, self.member, source);
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Directory,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Char => Kind::CharDevice,
            tar::EntryType::Block => Kind::BlockDevice,
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(None),
            other => {
                return Err(self.refuse(
                    Self::entry_name(entry),
                    EntryProblem::UnsupportedType(other.as_byte()),
                ))
            }
        };
        let path = RelPath::from_entry_name(&entry.path_bytes())
            .map_err(|p| self.refuse(Self::entry_name(entry), EntryProblem::Path(p)))?;
        let header = entry.header();
        let id = |v: u64| {
            u32::try_from(v).map_err(|_| io::Error::other("owner id does not fit 32 bits"))
        };
        let meta = Meta {
            mode: header.mode().map_err(io_error)? & 0o7777,
            uid: header.uid().and_then(id).map_err(io_error)?,
            gid: header.gid().and_then(id).map_err(io_error)?,
            mtime: i64::try_from(header.mtime().map_err(io_error)?).unwrap_or(i64::MAX),
        };

        if path.is_root() {
            if kind != Kind::Directory {
                return Err(self.refuse(Self::entry_name(entry), EntryProblem::RootNotDirectory));
            }
            let key = self.key_of(&path)?;
            self.x
                .claim_dir(key, self.index, &path, meta)
                .map_err(|holder| self.conflict(&path, kind, Some(holder), None))?;
            return Ok(Some(path));
        }

        let first = path.first_component();
        if USR_ALIASES.iter().any(|a| a.as_bytes() == first) {
            self.x
                .ensure_usr_alias(first)
                .map_err(|e| self.failed(&path, e))?;
        }

        self.open_parent(&path)?;
        // What a Multi-Arch: same instance's copy is compared by (the file's digest is taken
        // as it is read, below).
        let fingerprint = match kind {
            _ if !self.x.shared[self.index] => None,
            Kind::Directory | Kind::File => None,
            Kind::Symlink | Kind::HardLink => entry.link_name_bytes().map(|t| t.into_owned()),
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => Some(
                format!(
                    "{:?}:{:?}",
                    header.device_major().ok().flatten(),
                    header.device_minor().ok().flatten()
                )
                .into_bytes(),
            ),
        };
        match kind {
            Kind::Directory => self.directory(&path, meta)?,
            Kind::File => self.regular(&path, meta, entry)?,
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(path.display(), EntryProblem::NoLinkTarget))?
                    .into_owned();
                self.special(&path, kind, meta, |dir, name| {
                    rustix::fs::symlinkat(target.as_slice(), dir, name)
                })?;
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let dev = match kind {
                    Kind::Fifo => 0,
                    _ => rustix::fs::makedev(
                        header.device_major().map_err(io_error)?.unwrap_or(0),
                        header.device_minor().map_err(io_error)?.unwrap_or(0),
                    ),
                };
                let file_type = match kind {
                    Kind::CharDevice => FileType::CharacterDevice,
                    Kind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.special(&path, kind, meta, |dir, name| {
                    rustix::fs::mknodat(dir, name, file_type, Mode::from_raw_mode(0o600), dev)
                })?;
            }
            Kind::HardLink => self.hard_link(&path, entry)?,
        }
        if let Some(fingerprint) = fingerprint.or_else(|| self.file_sha256.take()) {
            self.x.note_shared(SharedCopy {
                key: self.key(&path),
                index: self.index,
                path: path.clone(),
                kind,
                fingerprint,
            });
        }
        Ok(Some(path))
    }

    /// Opens (and caches) the parent directory of `path`, creating missing components.
    fn open_parent(&mut self, path: &RelPath) -> Result<(), UnpackError> {
        let wanted = path.parent();
        if self.parent.as_ref().is_some_and(|p| p.path == wanted) {
            return Ok(());
        }
        let fd = self
            .x
            .root
            .open_dir_all(wanted)
            .map_err(|e| self.failed(path, e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| self.failed(path, e))?;
        self.parent = Some(Parent {
            path: wanted.to_vec(),
            fd,
            setgid: stat.st_mode & 0o2000 != 0,
            dev: stat.st_dev,
            ino: stat.st_ino,
        });
        Ok(())
    }

    fn parent(&self) -> &Parent {
        self.parent
            .as_ref()
            .expect("open_parent runs before every entry is written")
    }

    fn key(&self, path: &RelPath) -> ClaimKey {
        let parent = self.parent();
        ClaimKey {
            dev: parent.dev,
            ino: parent.ino,
            name: path.file_name().to_vec(),
        }
    }

    /// The key of the root itself: the root directory and the name `.`.
    fn key_of(&self, path: &RelPath) -> Result<ClaimKey, UnpackError> {
        let stat = rustix::fs::fstat(self.x.root.fd()).map_err(|e| self.failed(path, e))?;
        Ok(ClaimKey {
            dev: stat.st_dev,
            ino: stat.st_ino,
            name: b".".to_vec(),
        })
    }

    /// Makes (or accepts) a directory. Creating and claiming happen under the claim lock, so
    /// a package putting a non-directory at the same place either sees this claim or is seen.
    fn directory(&mut self, path: &RelPath, meta: Meta) -> Result<(), UnpackError> {
        let name = path.file_name();
        let key = self.key(path);
        let dir = &self.parent().fd;
        let mut claims = self.x.claims.lock().unwrap_or_else(|e| e.into_inner());
        // A symlink claim may be one to a directory, which satisfies this entry: look on disk.
        let symlink_holder = match claims.get(&key) {
            Some(Claim::Other {
                owner,
                kind: Kind::Symlink,
            }) => Some((*owner, Kind::Symlink)),
            Some(Claim::Other { owner, kind }) => {
                let holder = (*owner, *kind);
                drop(claims);
                return Err(self.conflict(path, Kind::Directory, Some(holder), None));
            }
            _ => None,
        };
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) if symlink_holder.is_some() => {
                // The symlink is claimed but not in place yet; its target is unknown here.
                let _ = rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR);
                drop(claims);
                return Err(self.conflict(path, Kind::Directory, symlink_holder, None));
            }
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.failed(path, e))?;
                match FileType::from_raw_mode(stat.st_mode) {
                    FileType::Directory => {}
                    FileType::Symlink if self.x.root.open_dir(path.as_bytes()).is_ok() => {
                        // dpkg keeps a symlink to a directory; the directory's own entry (if
                        // any package ships it) sets its metadata.
                        return Ok(());
                    }
                    other => {
                        drop(claims);
                        return Err(self.conflict(
                            path,
                            Kind::Directory,
                            symlink_holder,
                            Some(kind_of(other)),
                        ));
                    }
                }
            }
            Err(e) => return Err(self.failed(path, e)),
        }
        match claims.get_mut(&key) {
            Some(claim @ Claim::Dir { .. }) => {
                claim.note_dir(self.index, self.x.ranks[self.index], path, meta);
            }
            _ => {
                let (rank, extracted) = (self.x.ranks[self.index], self.x.ranks.len());
                claims.insert(key, Claim::new_dir(self.index, rank, extracted, path, meta));
            }
        }
        Ok(())
    }

    fn claim(&mut self, path: &RelPath, kind: Kind) -> Result<(ClaimKey, Decision), UnpackError> {
        let key = self.key(path);
        let (decision, loser) =
            self.x
                .claim_other(key.clone(), self.index, kind)
                .map_err(|refusal| match refusal {
                    Refusal::Kind(holder, other) => {
                        self.conflict(path, kind, Some((holder, other)), None)
                    }
                    Refusal::Overwrite(holder) => UnpackError::Overwrite {
                        package: self.package.to_owned(),
                        entry: path.display(),
                        holder: self.x.packages[holder].name.clone(),
                    },
                })?;
        if let Some(loser) = loser {
            let mut replaced = self.x.replaced.lock().unwrap_or_else(|e| e.into_inner());
            replaced.push((loser, path.clone()));
        } else if decision == Decision::Skip {
            // Skipped with no loser: an earlier shared instance has the path.
            self.left_to_earlier.insert(path.clone());
        }
        Ok((key, decision))
    }

    /// Moves `temp` to the entry's name as `decision` says; removes `temp` if it is not used.
    fn place(
        &self,
        path: &RelPath,
        kind: Kind,
        key: &ClaimKey,
        temp: &[u8],
        decision: Decision,
    ) -> Result<(), UnpackError> {
        let dir = &self.parent().fd;
        let name = path.file_name();
        let decision = match decision {
            Decision::Fresh => {
                if rename_noreplace(dir, temp, name).map_err(|e| self.failed(path, e))? {
                    return Ok(());
                }
                self.x
                    .recheck(key, self.index)
                    .map_err(|holder| self.conflict(path, kind, Some(holder), None))?
            }
            other => other,
        };
        if decision == Decision::Skip {
            let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
            return Ok(());
        }
        match rustix::fs::renameat(dir, temp, dir, name) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = rustix::fs::unlinkat(dir, temp, AtFlags::empty());
                match e {
                    Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST => {
                        Err(self.conflict(path, kind, None, Some(Kind::Directory)))
                    }
                    e => Err(self.failed(path, e)),
                }
            }
        }
    }

    fn regular(
        &mut self,
        path: &RelPath,
        meta: Meta,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
    ) -> Result<(), UnpackError> {
        let (key, decision) = self.claim(path, Kind::File)?;
        let size = entry.size();
        let conffile = self.conffiles.contains(&path.to_list_line());
        let mut digests = Digests {
            md5: (self.digests.is_some() || conffile).then(Md5::new),
            sha256: self.x.shared[self.index].then(Sha256::new),
        };
        let parent = self.parent();
        let dir = &parent.fd;
        // A new file is already ours; skipping the chown saves a syscall per file.
        let chown = (meta.uid, meta.gid) != (self.x.euid, self.x.egid) || parent.setgid;
        let create = |name: &[u8]| {
            rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let mut decision = decision;
        if decision == Decision::Fresh {
            match create(path.file_name()) {
                Ok(fd) => {
                    write_contents(fd, entry, size, meta, chown, &mut digests)
                        .map_err(|e| self.failed(path, e))?;
                    return self.record_digests(path, digests);
                }
                Err(Errno::EXIST) => {
                    decision = self
                        .x
                        .recheck(&key, self.index)
                        .map_err(|holder| self.conflict(path, Kind::File, Some(holder), None))?;
                }
                Err(e) => return Err(self.failed(path, e)),
            }
        }
        if decision == Decision::Skip {
            if digests.wanted() {
                copy(entry, |chunk| {
                    digests.update(chunk);
                    Ok(())
                })
                .map_err(|e| self.failed(path, e))?;
            }
            return self.record_digests(path, digests);
        }
        let temp = self.x.root.temp_name();
        let fd = create(&temp).map_err(|e| self.failed(path, e))?;
        if let Err(e) = write_contents(fd, entry, size, meta, chown, &mut digests) {
            let _ = rustix::fs::unlinkat(dir, temp.as_slice(), AtFlags::empty());
            return Err(self.failed(path, e));
        }
        self.place(path, Kind::File, &key, &temp, Decision::Replace)?;
        self.record_digests(path, digests)
    }

    /// Keeps a regular file's digests: the md5 (see [`Self::record_digest`]) and, for a
    /// `Multi-Arch: same` instance, the SHA-256 its shared copies are compared by.
    fn record_digests(&mut self, path: &RelPath, digests: Digests) -> Result<(), UnpackError> {
        self.file_sha256 = digests.sha256.map(|h| h.finalize().to_vec());
        self.record_digest(path, digests.md5)
    }

    /// Keeps a regular file's digest: in the status file's conffile hashes if it is one,
    /// otherwise in the computed md5sums (which, like dh_md5sums, leave conffiles out).
    fn record_digest(&mut self, path: &RelPath, hasher: Option<Md5>) -> Result<(), UnpackError> {
        let Some(hasher) = hasher else {
            return Ok(());
        };
        let hex = hex::encode(hasher.finalize());
        let line = path.to_list_line();
        if self.conffiles.contains(&line) {
            self.conffile_md5.insert(line, hex.clone());
        } else if self.digests.is_some() {
            self.md5sums
                .push_str(&format!("{hex}  {}\n", path.display()));
        }
        if let Some(digests) = self.digests.as_mut() {
            digests.insert(path.clone(), hex);
        }
        Ok(())
    }

    /// Keeps a hard link's md5 (its target's) in the computed md5sums, which list every name a
    /// regular file has.
    fn record_link_digest(&mut self, path: &RelPath, hex: String) {
        self.md5sums
            .push_str(&format!("{hex}  {}\n", path.display()));
        if let Some(d) = self.digests.as_mut() {
            d.insert(path.clone(), hex);
        }
    }

    /// Symlinks, devices and fifos: made under a private temporary name, given their owner,
    /// mode and mtime there, then renamed into place.
    fn special(
        &mut self,
        path: &RelPath,
        kind: Kind,
        meta: Meta,
        make: impl FnOnce(&OwnedFd, &[u8]) -> rustix::io::Result<()>,
    ) -> Result<(), UnpackError> {
        let (key, decision) = self.claim(path, kind)?;
        if decision == Decision::Skip {
            return Ok(());
        }
        let dir = &self.parent().fd;
        let temp = self.x.root.temp_name();
        make(dir, &temp).map_err(|e| self.failed(path, e))?;
        let set = || -> rustix::io::Result<()> {
            rustix::fs::chownat(
                dir,
                temp.as_slice(),
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
            if kind != Kind::Symlink {
                // On the node itself, by descriptor: a chmod by name would follow a symlink.
                let node = rustix::fs::openat(
                    dir,
                    temp.as_slice(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                crate::root::chmod_fd(&node, meta.mode)
                    .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            }
            rustix::fs::utimensat(
                dir,
                temp.as_slice(),
                &meta.timestamps(),
                AtFlags::SYMLINK_NOFOLLOW,
            )
        };
        if let Err(e) = set() {
            let _ = rustix::fs::unlinkat(dir, temp.as_slice(), AtFlags::empty());
            return Err(self.failed(path, e));
        }
        self.place(path, kind, &key, &temp, decision)
    }

    /// A hard link: its target is resolved inside the root (never following a final symlink)
    /// and linked by descriptor, so it cannot name a file outside.
    fn hard_link(
        &mut self,
        path: &RelPath,
        entry: &mut tar::Entry<'_, &mut dyn Read>,
    ) -> Result<(), UnpackError> {
        let raw_target = entry
            .link_name_bytes()
            .ok_or_else(|| self.refuse(path.display(), EntryProblem::NoLinkTarget))?
            .into_owned();
        let target = RelPath::from_entry_name(&raw_target)
            .map_err(|p| self.refuse(path.display(), EntryProblem::LinkTarget(p)))?;
        if self.left_to_earlier.contains(&target) {
            return self.defer_link(path, target);
        }
        let target_fd = self
            .x
            .root
            .open_nofollow(target.as_bytes(), OFlags::PATH)
            .map_err(|e| self.failed(path, e))?;
        let stat = rustix::fs::fstat(&target_fd).map_err(|e| self.failed(path, e))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            return Err(self.refuse(path.display(), EntryProblem::HardLinkToDirectory));
        }
        if self.digests.is_some() && FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
        {
            let known = self.digests.as_ref().and_then(|d| d.get(&target).cloned());
            let hex = match known {
                Some(hex) => hex,
                None => {
                    let fd = self
                        .x
                        .root
                        .open_nofollow(target.as_bytes(), OFlags::RDONLY)
                        .map_err(|e| self.failed(path, e))?;
                    let mut hasher = Md5::new();
                    copy(&mut std::fs::File::from(fd), |chunk| {
                        hasher.update(chunk);
                        Ok(())
                    })
                    .map_err(|e| self.failed(path, e))?;
                    hex::encode(hasher.finalize())
                }
            };
            self.record_link_digest(path, hex);
        }
        let (key, decision) = self.claim(path, Kind::HardLink)?;
        let dir = &self.parent().fd;
        let link = |name: &[u8]| hard_link(&target_fd, dir, name);
        match decision {
            Decision::Skip => Ok(()),
            Decision::Fresh => match link(path.file_name()) {
                Ok(()) => Ok(()),
                Err(Errno::EXIST) => {
                    let decision = self.x.recheck(&key, self.index).map_err(|holder| {
                        self.conflict(path, Kind::HardLink, Some(holder), None)
                    })?;
                    self.link_replacing(path, &key, decision, link)
                }
                Err(e) => Err(self.failed(path, e)),
            },
            Decision::Replace => self.link_replacing(path, &key, decision, link),
        }
    }

    /// A hard link to a file an earlier `Multi-Arch: same` instance places, which may not be
    /// there yet: the link is left to that instance as well, or to
    /// [`Extractor::finish_links`] if it ships none.
    fn defer_link(&mut self, path: &RelPath, target: RelPath) -> Result<(), UnpackError> {
        // The target's digest was taken as it streamed past (only regular files have one).
        let known = self.digests.as_ref().and_then(|d| d.get(&target).cloned());
        if let Some(hex) = known {
            self.record_link_digest(path, hex);
        }
        let (key, decision) = self.claim(path, Kind::HardLink)?;
        if decision != Decision::Skip {
            let mut deferred = self
                .x
                .deferred_links
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            deferred.push(DeferredLink {
                index: self.index,
                key,
                path: path.clone(),
                target,
            });
        }
        Ok(())
    }

    fn link_replacing(
        &self,
        path: &RelPath,
        key: &ClaimKey,
        decision: Decision,
        link: impl Fn(&[u8]) -> rustix::io::Result<()>,
    ) -> Result<(), UnpackError> {
        if decision == Decision::Skip {
            return Ok(());
        }
        let temp = self.x.root.temp_name();
        link(&temp).map_err(|e| self.failed(path, e))?;
        self.place(path, Kind::HardLink, key, &temp, Decision::Replace)
    }
}

/// Writes a regular file's contents, then its owner (when `chown`), mode (after the owner,
/// which would clear setuid bits) and mtime, all through the descriptor.
fn write_contents(
    fd: OwnedFd,
    entry: &mut dyn Read,
    size: u64,
    meta: Meta,
    chown: bool,
    digests: &mut Digests,
) -> io::Result<()> {
    let mut file = std::fs::File::from(fd);
    let written = copy(entry, |chunk| {
        digests.update(chunk);
        file.write_all(chunk)
    })?;
    if written != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the archive ends after {written} of {size} bytes"),
        ));
    }
    if chown {
        meta.chown(&file)?;
    }
    rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))?;
    rustix::fs::futimens(&file, &meta.timestamps())?;
    Ok(())
}

/// Bytes moved per read; large, so a file costs few write calls.
const COPY_BUFFER: usize = 128 << 10;

thread_local! {
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads `from` to its end in large chunks, handing each to `sink`; returns the byte count.
fn copy(from: &mut dyn Read, mut sink: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
    BUFFER.with_borrow_mut(|buf| {
        buf.resize(COPY_BUFFER, 0);
        let mut total = 0u64;
        loop {
            let n = match from.read(buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            sink(&buf[..n])?;
            total += n as u64;
        }
    })
}

fn kind_of(file_type: FileType) -> Kind {
    match file_type {
        FileType::Directory => Kind::Directory,
        FileType::Symlink => Kind::Symlink,
        FileType::CharacterDevice => Kind::CharDevice,
        FileType::BlockDevice => Kind::BlockDevice,
        FileType::Fifo => Kind::Fifo,
        _ => Kind::File,
    }
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::path::PathBuf;

    use super::*;
    use crate::target::HeldRoot;

    /// A scratch directory holding `root/` and, beside it, `outside/`.
    struct Scene {
        _dir: tempfile::TempDir,
        root_path: PathBuf,
        outside: PathBuf,
        root: Root,
    }

    fn scene() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs_err::create_dir(&root_path).unwrap();
        fs_err::create_dir(&outside).unwrap();
        fs_err::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = Root::held(&HeldRoot::open(&root_path).unwrap()).unwrap();
        Scene {
            _dir: dir,
            root_path,
            outside,
            root,
        }
    }

    fn package(name: &str, arch: &str, replaces: Option<&str>, same: bool) -> Package {
        Package {
            name: name.into(),
            version: "1.0".into(),
            architecture: arch.into(),
            multi_arch: same.then(|| "same".to_owned()),
            priority: None,
            essential: false,
            depends: None,
            pre_depends: None,
            provides: None,
            conflicts: None,
            breaks: None,
            replaces: replaces.map(Into::into),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: crate::fetch::Sha256Digest::of(b""),
            stanza: Default::default(),
        }
    }

    /// One tar entry: path, type, mode, owner, mtime, contents or link target.
    struct Entry<'e> {
        path: &'e str,
        kind: tar::EntryType,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        data: &'e [u8],
    }

    fn dir(path: &str, mode: u32) -> Entry<'_> {
        Entry {
            path,
            kind: tar::EntryType::Directory,
            mode,
            owner: (0, 0),
            mtime: 1_000_000_000,
            data: b"",
        }
    }

    fn file<'e>(path: &'e str, mode: u32, data: &'e [u8]) -> Entry<'e> {
        Entry {
            path,
            kind: tar::EntryType::Regular,
            mode,
            owner: (0, 0),
            mtime: 1_000_000_000,
            data,
        }
    }

    fn tar(entries: &[Entry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for e in entries {
            let mut header = tar::Header::new_gnu();
            // Written as is: set_path would drop the `./` Debian's archives have.
            header.as_old_mut().name[..e.path.len()].copy_from_slice(e.path.as_bytes());
            header.set_entry_type(e.kind);
            header.set_mode(e.mode);
            header.set_uid(e.owner.0);
            header.set_gid(e.owner.1);
            header.set_mtime(e.mtime);
            if e.kind == tar::EntryType::Regular {
                header.set_size(e.data.len() as u64);
                header.set_cksum();
                builder.append(&header, e.data).unwrap();
            } else {
                header.set_size(0);
                header.as_old_mut().linkname[..e.data.len()].copy_from_slice(e.data);
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn extract(x: &Extractor, index: usize, entries: &[Entry]) -> Result<Extracted, UnpackError> {
        extract_computing(x, index, entries, false)
    }

    /// [`extract`], computing the md5sums (as for a package that ships none) if `md5sums`.
    fn extract_computing(
        x: &Extractor,
        index: usize,
        entries: &[Entry],
        md5sums: bool,
    ) -> Result<Extracted, UnpackError> {
        let data = tar(entries);
        x.extract(
            index,
            &x.packages[index].name,
            "data.tar",
            &mut &data[..],
            md5sums,
            &BTreeSet::new(),
        )
    }

    fn link<'e>(path: &'e str, kind: tar::EntryType, target: &'e [u8]) -> Entry<'e> {
        Entry {
            path,
            kind,
            mode: 0o777,
            owner: (0, 0),
            mtime: 1_000_000_000,
            data: target,
        }
    }

    fn mode(path: &std::path::Path) -> u32 {
        fs_err::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn shared_instances_are_one_package_version_for_two_architectures_both_multi_arch_same() {
        let same = |arch: &str| package("libx", arch, None, true);
        assert!(shared_instance(&same("amd64"), &same("i386")));
        assert!(!shared_instance(&same("amd64"), &same("amd64")));
        let mut other_version = same("i386");
        other_version.version = "2.0".into();
        assert!(!shared_instance(&same("amd64"), &other_version));
        let other_name = package("liby", "i386", None, true);
        assert!(!shared_instance(&same("amd64"), &other_name));
        // Each must be Multi-Arch: same: a package that is not cannot take a shared path.
        let foreign = package("libx", "i386", None, false);
        assert!(!shared_instance(&same("amd64"), &foreign));
        assert!(!shared_instance(&foreign, &same("amd64")));
    }

    #[test]
    fn the_earlier_instance_places_a_shared_file_whichever_is_extracted_first() {
        if !crate::test_skip::require_root() {
            return;
        }
        let packages = [
            package("libx", "amd64", None, true),
            package("libx", "i386", None, true),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        for order in [[0, 1], [1, 0]] {
            let s = scene();
            let x = Extractor::new(&s.root, &refs, &[]);
            for index in order {
                // The same bytes, with a mode of each instance's own.
                let mode = if index == 0 { 0o644 } else { 0o600 };
                extract(&x, index, &[file("./shared", mode, b"same bytes")]).unwrap();
            }
            x.check_shared().unwrap();
            assert_eq!(mode(&s.root_path.join("shared")), 0o644, "order {order:?}");
        }
    }

    /// The root directory's claim key for `name`, as a job would compute it.
    fn key_in_root(s: &Scene, name: &str) -> ClaimKey {
        let root = fs_err::metadata(&s.root_path).unwrap();
        ClaimKey {
            dev: root.dev(),
            ino: root.ino(),
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_later_instance_links_to_a_shared_file_the_earlier_claimed_but_has_not_placed() {
        if !crate::test_skip::require_root() {
            return;
        }
        let packages = [
            package("libx", "amd64", None, true),
            package("libx", "i386", None, true),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        let s = scene();
        let x = Extractor::new(&s.root, &refs, &[]);
        // The earlier instance is between claiming ./t and writing it, as when the two run on
        // two threads: its claim is there, its file is not.
        x.claim_other(key_in_root(&s, "t"), 0, Kind::File).unwrap();
        let entries = [
            file("./t", 0o644, b"same bytes"),
            link("./l", tar::EntryType::Link, b"./t"),
        ];
        let later = extract_computing(&x, 1, &entries, true).unwrap();
        assert!(
            !s.root_path.join("t").exists(),
            "the later instance left ./t alone"
        );
        extract(&x, 0, &entries).unwrap();
        x.finish().unwrap();
        let (t, l) = (
            fs_err::metadata(s.root_path.join("t")).unwrap(),
            fs_err::metadata(s.root_path.join("l")).unwrap(),
        );
        assert_eq!(t.ino(), l.ino(), "l is a link to t");
        assert_eq!(t.mode() & 0o7777, 0o644);
        // Its md5sums still list the link, with the target's digest.
        let md5 = hex::encode(Md5::digest(b"same bytes"));
        assert_eq!(later.md5sums.unwrap(), format!("{md5}  t\n{md5}  l\n"));
    }

    #[test]
    fn a_link_the_earlier_instance_does_not_ship_is_made_once_every_package_is_extracted() {
        if !crate::test_skip::require_root() {
            return;
        }
        let packages = [
            package("libx", "amd64", None, true),
            package("libx", "i386", None, true),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        let s = scene();
        let x = Extractor::new(&s.root, &refs, &[]);
        extract(&x, 0, &[file("./t", 0o644, b"same bytes")]).unwrap();
        extract(
            &x,
            1,
            &[
                file("./t", 0o644, b"same bytes"),
                link("./l", tar::EntryType::Link, b"./t"),
            ],
        )
        .unwrap();
        x.finish().unwrap();
        let (t, l) = (
            fs_err::metadata(s.root_path.join("t")).unwrap(),
            fs_err::metadata(s.root_path.join("l")).unwrap(),
        );
        assert_eq!(t.ino(), l.ino(), "l is a link to the earlier instance's t");
    }

    #[test]
    fn of_two_packages_replacing_each_other_the_later_in_request_order_wins() {
        if !crate::test_skip::require_root() {
            return;
        }
        let packages = [
            package("a", "amd64", Some("b"), false),
            package("b", "amd64", Some("a"), false),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        for order in [[0, 1], [1, 0]] {
            let s = scene();
            let x = Extractor::new(&s.root, &refs, &[]);
            for index in order {
                let data = packages[index].name.as_bytes();
                extract(&x, index, &[file("./f", 0o644, data)]).unwrap();
            }
            assert_eq!(
                fs_err::read(s.root_path.join("f")).unwrap(),
                b"b",
                "order {order:?}"
            );
            let f = RelPath::from_entry_name(b"./f").unwrap();
            assert!(x.replaced_paths(0).contains(&f), "order {order:?}");
            assert!(x.replaced_paths(1).is_empty(), "order {order:?}");
        }
    }

    #[test]
    fn a_replaced_package_loses_the_path_whichever_is_extracted_first() {
        if !crate::test_skip::require_root() {
            return;
        }
        let packages = [
            package("old", "amd64", None, false),
            package("new", "amd64", Some("old"), false),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        for order in [[0, 1], [1, 0]] {
            let s = scene();
            let x = Extractor::new(&s.root, &refs, &[]);
            for index in order {
                let data = packages[index].name.as_bytes();
                extract(&x, index, &[file("./f", 0o644, data)]).unwrap();
            }
            assert_eq!(fs_err::read(s.root_path.join("f")).unwrap(), b"new");
            let f = RelPath::from_entry_name(b"./f").unwrap();
            assert_eq!(
                x.replaced_paths(0),
                [f].into_iter().collect(),
                "order {order:?}"
            );
            assert!(x.replaced_paths(1).is_empty(), "order {order:?}");
        }
    }

    #[test]
    fn a_recheck_skips_for_a_later_claim_and_refuses_a_directory() {
        let s = scene();
        let packages = [package("a", "amd64", None, false)];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        let key = |name: &[u8]| ClaimKey {
            dev: 1,
            ino: 2,
            name: name.to_vec(),
        };
        {
            let mut claims = x.claims.lock().unwrap();
            claims.insert(
                key(b"theirs"),
                Claim::Other {
                    owner: 3,
                    kind: Kind::File,
                },
            );
            claims.insert(
                key(b"ours"),
                Claim::Other {
                    owner: 0,
                    kind: Kind::File,
                },
            );
            let path = RelPath::from_entry_name(b"./d").unwrap();
            let meta = Meta {
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
            };
            claims.insert(key(b"d"), Claim::new_dir(5, 5, 6, &path, meta));
        }
        assert_eq!(x.recheck(&key(b"theirs"), 0), Ok(Decision::Skip));
        assert_eq!(x.recheck(&key(b"ours"), 0), Ok(Decision::Replace));
        assert_eq!(x.recheck(&key(b"nobody's"), 0), Ok(Decision::Replace));
        assert_eq!(x.recheck(&key(b"d"), 0), Err((5, Kind::Directory)));
    }

    #[test]
    fn the_root_entry_gives_the_root_its_mode() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let packages = [package("base", "amd64", None, false)];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        extract(&x, 0, &[dir("./", 0o750)]).unwrap();
        x.finish_directories().unwrap();
        assert_eq!(mode(&s.root_path), 0o750);
    }

    #[test]
    fn directory_metadata_never_goes_through_what_replaced_the_directory() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let packages = [package("base", "amd64", None, false)];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        extract(&x, 0, &[dir("./d/", 0o700), dir("./e/", 0o700)]).unwrap();
        // What stands at the directories' names when their metadata is applied: a symlink out
        // of the root and a file.
        fs_err::remove_dir(s.root_path.join("d")).unwrap();
        std::os::unix::fs::symlink(&s.outside, s.root_path.join("d")).unwrap();
        fs_err::remove_dir(s.root_path.join("e")).unwrap();
        fs_err::write(s.root_path.join("e"), "file").unwrap();
        fs_err::set_permissions(
            s.root_path.join("e"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        x.finish_directories().unwrap();
        assert_eq!(mode(&s.outside), 0o755, "changed through the symlink");
        assert_eq!(mode(&s.root_path.join("e")), 0o644, "the file was changed");
    }

    #[test]
    fn a_file_in_a_setgid_directory_keeps_the_group_its_header_names() {
        if !crate::test_skip::require_root() {
            return;
        }
        // A root made in a setgid directory (TARGET under a shared `g+s` one) is setgid too, and
        // so is every directory made in it: new files there take its group, not ours.
        let s = scene();
        std::os::unix::fs::chown(&s.root_path, Some(0), Some(50)).unwrap();
        fs_err::set_permissions(&s.root_path, std::fs::Permissions::from_mode(0o2755)).unwrap();
        let packages = [package("base", "amd64", None, false)];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        let entries = [
            dir("./d/", 0o755),
            file("./d/mine", 0o644, b"x"),
            file("./top", 0o644, b"x"),
        ];
        extract(&x, 0, &entries).unwrap();
        for name in ["d/mine", "top"] {
            let meta = fs_err::metadata(s.root_path.join(name)).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (0, 0),
                "{name}: the directory's group"
            );
        }
    }

    #[test]
    fn only_a_symlink_to_a_directory_in_the_root_satisfies_a_directory_entry() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let packages = [
            package("links", "amd64", None, false),
            package("dirs", "amd64", None, false),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        let outside = s.outside.to_str().unwrap().as_bytes();
        let link = |path, target| link(path, tar::EntryType::Symlink, target);
        extract(
            &x,
            0,
            &[
                dir("./real/", 0o755),
                file("./file", 0o644, b"x"),
                link("./to-real", b"real"),
                link("./to-file", b"file"),
                // Absolute targets resolve inside the root, where this names nothing.
                link("./to-outside", outside),
            ],
        )
        .unwrap();
        extract(&x, 1, &[dir("./to-real/", 0o755)]).expect("a link to a directory is kept");
        assert!(s.root_path.join("to-real").is_symlink());
        for name in ["./to-file/", "./to-outside/"] {
            let err = extract(&x, 1, &[dir(name, 0o755)]).expect_err(name);
            assert!(
                matches!(&err, UnpackError::Conflict { holder, .. } if holder == "package links"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn a_hard_link_replacing_another_packages_file_takes_its_place() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let packages = [
            package("old", "amd64", None, false),
            package("new", "amd64", Some("old"), false),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        extract(&x, 0, &[file("./f", 0o644, b"old")]).unwrap();
        extract(
            &x,
            1,
            &[
                file("./g", 0o644, b"new"),
                link("./f", tar::EntryType::Link, b"./g"),
            ],
        )
        .unwrap();
        let (f, g) = (
            fs_err::metadata(s.root_path.join("f")).unwrap(),
            fs_err::metadata(s.root_path.join("g")).unwrap(),
        );
        assert_eq!(f.ino(), g.ino(), "f is a link to g");
        assert_eq!(fs_err::read(s.root_path.join("f")).unwrap(), b"new");
    }

    #[test]
    fn computed_md5sums_cover_hard_links_to_regular_files_only() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let packages = [package("p", "amd64", None, false)];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        let entries = [
            file("./f", 0o644, b"bytes"),
            link("./s", tar::EntryType::Symlink, b"f"),
            link("./f2", tar::EntryType::Link, b"./f"),
            // A hard link to the symlink itself: nothing to sum, and never opened.
            link("./s2", tar::EntryType::Link, b"./s"),
        ];
        let extracted = extract_computing(&x, 0, &entries, true).unwrap();
        let sum = hex::encode(Md5::digest(b"bytes"));
        assert_eq!(
            extracted.md5sums.as_deref(),
            Some(format!("{sum}  f\n{sum}  f2\n").as_str())
        );
        assert!(s.root_path.join("s2").is_symlink());
    }

    #[test]
    fn a_file_is_never_written_through_a_symlink_already_at_its_name() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let sentinel = s.outside.join("sentinel");
        fs_err::write(&sentinel, "untouched").unwrap();
        // Left in the root before this package, by no claim of this run.
        std::os::unix::fs::symlink(&sentinel, s.root_path.join("f")).unwrap();
        let packages = [package("p", "amd64", None, false)];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        extract(&x, 0, &[file("./f", 0o644, b"package bytes")]).unwrap();
        assert_eq!(fs_err::read_to_string(&sentinel).unwrap(), "untouched");
        assert!(!s.root_path.join("f").is_symlink());
        assert_eq!(
            fs_err::read(s.root_path.join("f")).unwrap(),
            b"package bytes"
        );
    }

    #[test]
    fn a_directory_is_refused_where_a_symlink_is_claimed_but_not_yet_placed() {
        if !crate::test_skip::require_root() {
            return;
        }
        let s = scene();
        let packages = [
            package("links", "amd64", None, false),
            package("dirs", "amd64", None, false),
        ];
        let refs: Vec<&Package> = packages.iter().collect();
        let x = Extractor::new(&s.root, &refs, &[]);
        // Package 0 has claimed `x` for a symlink on another thread and not yet renamed it in.
        let root = fs_err::metadata(&s.root_path).unwrap();
        x.claims.lock().unwrap().insert(
            ClaimKey {
                dev: root.dev(),
                ino: root.ino(),
                name: b"x".to_vec(),
            },
            Claim::Other {
                owner: 0,
                kind: Kind::Symlink,
            },
        );
        let err = extract(&x, 1, &[dir("./x/", 0o755)]).expect_err("refused");
        assert!(
            matches!(&err, UnpackError::Conflict { holder, .. } if holder == "package links"),
            "{err}"
        );
        assert!(!s.root_path.join("x").exists(), "the directory is left");
    }
}
