//! Unpack: verified .debs become files under the target root, every path resolved inside it, plus
//! dpkg's database so dpkg in the chroot can configure them.
//!
//! Takes an [`UnpackRequest`] (root, .debs in request order, architecture) and gives
//! [`Unpacked`] (every package as dpkg's database records it). Steps:
//! 1. merged /usr: `usr/{bin,sbin,lib}` (and the architecture's `lib64`/`libx32`) with
//!    `bin -> usr/bin` style links, before anything is extracted; other `lib*` aliases are made
//!    when a package first ships something there;
//! 2. every .deb is read (`deb`) and its data.tar extracted (`extract`) in parallel, each file
//!    written once, every path resolved inside the root (`confined`); entry names with `..` are
//!    refused, absolute names land inside the root (`path`);
//! 3. dpkg's database is written (`database`), with the conffiles' md5s as unpacked so that
//!    `dpkg --verify` is clean before and after `dpkg --configure`.
//!
//! A file shipped by two packages is refused unless one declares `Replaces` on the other (then
//! the replacing one's copy stays); a shared directory keeps the owner, mode and mtime of the
//! earliest. When the root did not exist
//! before, a failure removes it again; a root that existed is left as the failure found it.

mod control;
mod database;
mod deb;
mod extract;
mod path;

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cancel::Cancelled;
use crate::fetch::{CachedDeb, Package};
use crate::progress::{Counter, Reporter};

pub use control::ControlProblem;
pub use deb::{MAX_CONTROL_TOTAL, MAX_DATA_TAR, MAX_TAR_EXTENSION, MIN_FREE, MIN_FREE_INODES};
pub use path::PathProblem;
pub(crate) use path::RelPath;

use crate::root::Root;
use crate::HeldRoot;
use control::Control;
use deb::ControlMember;
use extract::{Extracted, Extractor};

/// Maintainer scripts (and debconf's `config`) that later stages may run.
const SCRIPTS: [&str; 5] = ["config", "postinst", "postrm", "preinst", "prerm"];

/// What to unpack where.
#[derive(Debug, Clone, Copy)]
pub struct UnpackRequest<'a> {
    /// The target root (need not exist yet).
    pub root: &'a Path,
    pub debs: &'a [CachedDeb],
    /// The dpkg architecture of the root.
    pub arch: &'a str,
}

/// What to unpack where, when the .debs are still being verified: each arrives through the
/// `ready` function of [`unpack_when_ready`].
#[derive(Debug, Clone, Copy)]
pub struct PendingRequest<'a> {
    /// The target root, held: reached only through its descriptor.
    pub root: &'a HeldRoot,
    /// The packages, in request order.
    pub packages: &'a [Package],
    /// The dpkg architecture of the root.
    pub arch: &'a str,
}

/// A package as recorded in dpkg's status file after unpacking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// `Multi-Arch: same` packages are `NAME:ARCH` in dpkg's database.
    pub multi_arch_same: bool,
    pub essential: bool,
    pub priority: Option<String>,
    /// Whether debootstrap's first stage extracts it (see [`crate::resolve::extracted_first`]):
    /// its second stage configures these before it unpacks the rest.
    pub extracted_first: bool,
    /// Names of the maintainer scripts the package ships (`preinst`, `postinst`, ...).
    pub scripts: Vec<String>,
    /// The package's control file as shipped, which dpkg puts in tmp.ci/ beside the preinst.
    pub control: Vec<u8>,
}

impl UnpackedPackage {
    /// The name dpkg's database uses: `NAME`, or `NAME:ARCH` for `Multi-Arch: same`.
    pub fn db_name(&self) -> String {
        control::db_name(&self.name, &self.architecture, self.multi_arch_same)
    }

    /// Whether the package ships the maintainer script `script` (`preinst`, ...).
    pub fn has_script(&self, script: &str) -> bool {
        self.scripts.iter().any(|s| s == script)
    }
}

/// The result of unpacking: every package, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Unpacked {
    pub packages: Vec<UnpackedPackage>,
}

/// Why a .deb is not one we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatProblem {
    #[error("the archive is empty")]
    Empty,
    #[error("its first member is not debian-binary")]
    NoDebianBinary,
    #[error("debian-binary says {0:?}, not \"2.0\"")]
    Version(String),
    #[error("it has no control.tar member before data.tar")]
    NoControl,
    #[error("it has no data.tar member")]
    NoData,
    #[error("unexpected member {0}")]
    Unexpected(String),
    #[error("member name {0:?} is an ar extension a .deb never has (a GNU name table or long name, or a BSD long name)")]
    ArExtension(String),
}

/// Why an archive entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error(transparent)]
    Path(PathProblem),
    #[error("the hard link's target is refused: {0}")]
    LinkTarget(PathProblem),
    #[error("unsupported tar entry type {0:#04x}")]
    UnsupportedType(u8),
    #[error("the link has no target")]
    NoLinkTarget,
    #[error("a hard link to a directory")]
    HardLinkToDirectory,
    #[error("the root entry is not a directory")]
    RootNotDirectory,
    #[error("control members must be plain files at the top of control.tar")]
    ControlMemberType,
    #[error("a control member may not be called list: dpkg keeps the path list there")]
    ReservedControlMember,
    #[error("the control member is too large")]
    TooLarge,
    #[error("the control members together are larger than the 64 MiB limit")]
    ControlTooLarge,
}

/// Why extraction stopped before the archive ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitProblem {
    #[error("it expands past the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("the target's file system has only {free} bytes free; free some space or choose another TARGET")]
    NoSpace { free: u64 },
    #[error(
        "the target's file system has only {free} inodes free; free some or choose another TARGET"
    )]
    NoInodes { free: u64 },
    #[error("a tar '{kind}' entry of {size} bytes (a long name, long link or pax header) is past the {limit}-byte limit")]
    TarExtension { kind: char, size: u64, limit: u64 },
}

/// Why unpacking failed; every variant names the package (and entry) at fault.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot create or open the target root {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Held(#[from] crate::TargetError),
    #[error("cannot set up merged /usr in {path}")]
    MergedUsr {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{package}: {path} is not a readable ar archive")]
    Ar {
        package: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{package}: {path} is not a Debian binary package: {problem}")]
    Format {
        package: String,
        path: PathBuf,
        problem: FormatProblem,
    },
    #[error(
        "{package}: member {member} is compressed in a way we cannot read (gzip, xz, zstd or none)"
    )]
    Compression { package: String, member: String },
    #[error("{package}: cannot read member {member}")]
    Member {
        package: String,
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{package}: member {member} stopped: {problem}")]
    Limit {
        package: String,
        member: String,
        problem: LimitProblem,
    },
    #[error("{package}: cannot use the cached .deb")]
    Cached {
        package: String,
        #[source]
        source: crate::fetch::FetchError,
    },
    #[error("{package}: bad control file")]
    Control {
        package: String,
        #[source]
        source: ControlProblem,
    },
    #[error("{package}: the .deb is {found}, but the index promised {expected}")]
    Mismatch {
        package: String,
        found: String,
        expected: String,
    },
    #[error("{package}: entry {entry}: {problem}")]
    Entry {
        package: String,
        entry: String,
        problem: EntryProblem,
    },
    #[error("{package}: cannot extract {entry}")]
    Extract {
        package: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{package}: {entry} is a {kind}, but {holder} has a {other_kind} there")]
    Conflict {
        package: String,
        entry: String,
        kind: &'static str,
        holder: String,
        other_kind: &'static str,
    },
    #[error(
        "{package}: trying to overwrite {entry}, which is also in package {holder}; neither \
         declares Replaces on the other, so dpkg would refuse it too"
    )]
    Overwrite {
        package: String,
        entry: String,
        holder: String,
    },
    #[error(
        "{package} and {other} (Multi-Arch: same) both ship {entry}, with {difference}: dpkg \
         refuses to install them together, since every architecture's instance of a package \
         must ship identical shared files; leave out one of them"
    )]
    SharedDiffers {
        package: String,
        other: String,
        entry: String,
        difference: String,
    },
    #[error("cannot write dpkg's database file {path}")]
    Database {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// One package after extraction.
struct Outcome {
    /// Place in the request.
    index: usize,
    control: Control,
    members: Vec<ControlMember>,
    extracted: Extracted,
}

/// Writes dpkg's `available` file in an unpacked root: the verified Packages stanzas of the
/// installed packages, in index order (what debootstrap leaves there).
pub fn write_available(root: &HeldRoot, stanzas: &str) -> Result<(), UnpackError> {
    let dir = Root::held(root).map_err(|source| UnpackError::Root {
        path: root.path().to_owned(),
        source,
    })?;
    database::write_available(&dir, stanzas)
}

/// Writes dpkg's `arch` file in an unpacked root when it has foreign architectures: the native
/// one, then each foreign one, a line each, as `dpkg --add-architecture` leaves it. Without
/// foreign architectures there is no file, as debootstrap leaves none.
pub fn write_foreign_archs(
    root: &HeldRoot,
    native: &str,
    foreign: &[String],
) -> Result<(), UnpackError> {
    if foreign.is_empty() {
        return Ok(());
    }
    let dir = Root::held(root).map_err(|source| UnpackError::Root {
        path: root.path().to_owned(),
        source,
    })?;
    database::write_arch(&dir, native, foreign)
}

/// Unpacks every .deb into the root and writes dpkg's database.
///
/// A file shipped by several packages is refused unless Replaces settles who keeps it;
/// directories keep the metadata of the earliest. Nothing is written outside the root.
pub fn unpack(request: &UnpackRequest, reporter: &dyn Reporter) -> Result<Unpacked, UnpackError> {
    let root_error = |source| UnpackError::Root {
        path: request.root.to_owned(),
        source,
    };
    let created = Root::create(request.root).map_err(root_error)?;
    let mut guard = RemoveOnError {
        path: created.then(|| request.root.to_owned()),
    };
    let held = HeldRoot::open(request.root)?;
    let packages: Vec<Package> = request.debs.iter().map(|d| d.package().clone()).collect();
    let pending = PendingRequest {
        root: &held,
        packages: &packages,
        arch: request.arch,
    };
    let unpacked = unpack_when_ready(&pending, &|i| Ok(request.debs[i].clone()), reporter)?;
    guard.path = None;
    Ok(unpacked)
}

/// Like [`unpack`], but into a root that is already held, and the .deb of `packages[i]` comes
/// from `ready(i)`, called only when a thread is free to extract it, so extraction can overlap
/// the downloads that are still filling the cache; `ready` returns `Err` when the file will
/// never come (the download failed or the build was interrupted).
pub fn unpack_when_ready(
    request: &PendingRequest,
    ready: &(dyn Fn(usize) -> Result<CachedDeb, Cancelled> + Sync),
    reporter: &dyn Reporter,
) -> Result<Unpacked, UnpackError> {
    let root = Root::held(request.root).map_err(|source| UnpackError::Root {
        path: request.root.path().to_owned(),
        source,
    })?;
    unpack_into(&root, request, ready, reporter)
}

fn unpack_into(
    root: &Root,
    request: &PendingRequest,
    ready: &(dyn Fn(usize) -> Result<CachedDeb, Cancelled> + Sync),
    reporter: &dyn Reporter,
) -> Result<Unpacked, UnpackError> {
    let packages = request.packages;
    reporter.start(Counter::Unpacked, packages.len() as u64);
    let shippers: Vec<&Package> = packages.iter().collect();
    let extracted_first = crate::resolve::extracted_first(&shippers);
    let extractor = Extractor::new(root, &shippers, &extracted_first);
    for alias in usr_aliases(request.arch) {
        extractor
            .ensure_usr_alias(alias.as_bytes())
            .map_err(|source| UnpackError::MergedUsr {
                path: root.path().to_owned(),
                source,
            })?;
    }

    let outcomes = extract_all(&extractor, packages, ready, reporter)?;
    crate::cancel::check()?;
    extractor.finish()?;

    let mut outcomes = outcomes;
    for outcome in &mut outcomes {
        let replaced = extractor.replaced_paths(outcome.index);
        if !replaced.is_empty() {
            outcome
                .extracted
                .paths
                .retain(|path| !replaced.contains(path));
        }
    }
    outcomes.sort_by(|a, b| {
        (a.control.package(), a.control.architecture())
            .cmp(&(b.control.package(), b.control.architecture()))
    });
    let records: Vec<database::Record> = outcomes
        .iter()
        .map(|o| database::Record {
            control: &o.control,
            members: &o.members,
            paths: &o.extracted.paths,
            computed_md5sums: o.extracted.md5sums.as_deref(),
            conffile_md5: &o.extracted.conffile_md5,
            priority: status_priority(o, &packages[o.index], extracted_first[o.index]),
        })
        .collect();
    database::write(root, &records)?;
    reporter.finish(Counter::Unpacked);

    let packages = outcomes
        .iter()
        .map(|o| unpacked_package(o, &packages[o.index], extracted_first[o.index]))
        .collect();
    Ok(Unpacked { packages })
}

/// Extracts every .deb on rayon's threads, largest first (each thread takes the next largest
/// left, so the long xz streams start early and small packages fill the gaps). After a
/// failure no new package starts; the error reported is that of the earliest package in
/// request order among those that failed.
fn extract_all(
    extractor: &Extractor,
    debs: &[Package],
    ready: &(dyn Fn(usize) -> Result<CachedDeb, Cancelled> + Sync),
    reporter: &dyn Reporter,
) -> Result<Vec<Outcome>, UnpackError> {
    let mut order: Vec<usize> = (0..debs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(debs[i].size));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<Outcome, UnpackError>>>> =
        debs.iter().map(|_| Mutex::new(None)).collect();
    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let result = crate::cancel::check()
                .and_then(|()| ready(i))
                .map_err(UnpackError::from)
                .and_then(|deb| unpack_one(extractor, i, &deb));
            match &result {
                Ok(_) => reporter.advance(Counter::Unpacked, 1),
                Err(_) => stop.store(true, Ordering::Relaxed),
            }
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    };
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads().min(debs.len()) {
            scope.spawn(|_| worker());
        }
    });
    let mut outcomes = Vec::with_capacity(debs.len());
    for slot in results {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(outcome)) => outcomes.push(outcome),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(outcomes)
}

/// The priority to record in the status file instead of the control file's, if any. dpkg keeps
/// one priority per package name, shared by its status and available records: debootstrap
/// writes the index stanzas to `available` after its first stage, so the packages of that stage
/// end with the archive's priority; a package unpacked later keeps its control file's, unless
/// that has none.
fn status_priority<'d>(
    outcome: &Outcome,
    package: &'d Package,
    extracted_first: bool,
) -> Option<&'d str> {
    let archive = package.priority.as_deref();
    if extracted_first || outcome.control.get("Priority").is_none() {
        archive
    } else {
        None
    }
}

/// The package as later stages see it; the archive's priority wins over the control file's.
fn unpacked_package(
    outcome: &Outcome,
    package: &Package,
    extracted_first: bool,
) -> UnpackedPackage {
    let control = &outcome.control;
    let priority = package
        .priority
        .clone()
        .or_else(|| control.get("Priority").map(str::to_owned));
    let scripts = SCRIPTS
        .iter()
        .filter(|s| outcome.members.iter().any(|m| m.name == **s))
        .map(|s| (*s).to_owned())
        .collect();
    UnpackedPackage {
        name: control.package().to_owned(),
        version: control.version().to_owned(),
        architecture: control.architecture().to_owned(),
        multi_arch_same: control.multi_arch_same(),
        essential: control
            .get("Essential")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        priority,
        extracted_first,
        scripts,
        control: outcome
            .members
            .iter()
            .find(|m| m.name == "control")
            .map(|m| m.data.clone())
            .unwrap_or_default(),
    }
}

/// Reads, checks and extracts one .deb.
fn unpack_one(
    extractor: &Extractor,
    index: usize,
    deb: &CachedDeb,
) -> Result<Outcome, UnpackError> {
    let package = deb.package().name.as_str();
    let mut control_seen: Option<Control> = None;
    let target = extractor.root().fd().as_fd();
    let (members, extracted) = deb::read_deb(deb, target, |members, member, data| {
        let control_file =
            members
                .iter()
                .find(|m| m.name == "control")
                .ok_or(UnpackError::Control {
                    package: package.to_owned(),
                    source: ControlProblem::Missing("control file"),
                })?;
        let control =
            Control::parse(&control_file.data).map_err(|source| UnpackError::Control {
                package: package.to_owned(),
                source,
            })?;
        let found = format!("{} {}", control.package(), control.version());
        let expected = format!("{} {}", deb.package().name, deb.package().version);
        if found != expected {
            return Err(UnpackError::Mismatch {
                package: package.to_owned(),
                found,
                expected,
            });
        }
        if let Some(bad) = members.iter().find(|m| m.name == "list") {
            return Err(UnpackError::Entry {
                package: package.to_owned(),
                entry: bad.name.clone(),
                problem: EntryProblem::ReservedControlMember,
            });
        }
        let compute_md5sums = !members.iter().any(|m| m.name == "md5sums");
        let conffiles: BTreeSet<String> = members
            .iter()
            .find(|m| m.name == "conffiles")
            .map(|m| control::conffiles(&m.data).into_iter().collect())
            .unwrap_or_default();
        let extracted =
            extractor.extract(index, package, member, data, compute_md5sums, &conffiles)?;
        control_seen = Some(control);
        Ok(extracted)
    })?;
    let control =
        control_seen.expect("read_deb returns Ok only after the extract callback succeeded");
    Ok(Outcome {
        index,
        control,
        members,
        extracted,
    })
}

/// The merged-/usr links made before extraction: always bin, sbin and lib, plus the extra
/// library directory the architecture's dynamic loader lives in (debootstrap ends with exactly
/// these on a minimal system; others are made when a package ships into them).
fn usr_aliases(arch: &str) -> Vec<&'static str> {
    let mut aliases = vec!["bin", "sbin", "lib"];
    match arch {
        "amd64" | "ppc64" | "ppc64el" | "mips64el" | "loong64" | "sparc64" => aliases.push("lib64"),
        "x32" => aliases.push("libx32"),
        _ => {}
    }
    aliases
}

/// Removes a root this unpack created when it fails, so no half-built root is left.
struct RemoveOnError {
    path: Option<PathBuf>,
}

impl Drop for RemoveOnError {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = fs_err::remove_dir_all(&path) {
                tracing::warn!("cannot remove the partial root: {e}");
            }
        }
    }
}
