//! The claim table behind [`Extractor`]: who may have each path, decided the same whatever
//! order the packages' threads reach it in, and what is settled once every package is in
//! place (the directories' owners, modes and mtimes; the `Multi-Arch: same` copies compared).

use std::collections::{HashMap, HashSet};
use std::io;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::{Extractor, Kind, USR_ALIASES};
use crate::fetch::Package;
use crate::resolve;
use crate::root::Meta;
use crate::unpack::path::RelPath;
use crate::unpack::UnpackError;

/// A path as the kernel sees it: the directory it is in and its name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ClaimKey {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) name: Vec<u8>,
}

#[derive(Debug)]
pub(super) enum Claim {
    Dir {
        first: usize,
        path: RelPath,
        shippers: Shippers,
    },
    Other {
        owner: usize,
        kind: Kind,
    },
}

/// Why a package may not have a path.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    /// Another package (by index) has something of another kind there.
    Kind(usize, Kind),
    /// Another package (by index) ships the path too, and neither replaces the other.
    Overwrite(usize),
}

/// What to do with a non-directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nobody claimed the path: create it, expecting nothing there.
    Fresh,
    /// An earlier package (or the root before us) has it: replace it.
    Replace,
    /// A later package has it: leave theirs.
    Skip,
}

/// One entry of a `Multi-Arch: same` instance, as [`Extractor::check_shared`] compares it.
pub(super) struct SharedCopy {
    pub(super) key: ClaimKey,
    pub(super) index: usize,
    pub(super) path: RelPath,
    pub(super) kind: Kind,
    /// A file's SHA-256, a link's target, a device's number.
    pub(super) fingerprint: Vec<u8>,
}

/// Whether `a` and `b` are one `Multi-Arch: same` package at one version for two
/// architectures: dpkg lets such instances ship the same paths (their shared files, such as
/// /usr/share/doc, are the same bytes in every architecture's build).
pub(super) fn shared_instance(a: &Package, b: &Package) -> bool {
    let same = |p: &Package| p.multi_arch.as_deref() == Some("same");
    a.name == b.name
        && a.version == b.version
        && a.architecture != b.architecture
        && same(a)
        && same(b)
}

impl Extractor<'_> {
    /// Refuses the instances of a `Multi-Arch: same` package that ship one path with different
    /// contents (or as different kinds, or links to different targets), naming both and the
    /// path; dpkg keeps a shared path only when every instance's copy is the same. Runs after
    /// every package is extracted, so the result does not depend on which came first.
    pub(super) fn check_shared(&self) -> Result<(), UnpackError> {
        let mut copies = self.shared_copies.lock().unwrap_or_else(|e| e.into_inner());
        copies.sort_by(|a, b| (a.path.as_bytes(), a.index).cmp(&(b.path.as_bytes(), b.index)));
        let mut first_at: HashMap<(&ClaimKey, &str), &SharedCopy> = HashMap::new();
        for copy in copies.iter() {
            let package = self.packages[copy.index];
            let Some(first) = first_at.get(&(&copy.key, package.name.as_str())) else {
                first_at.insert((&copy.key, &package.name), copy);
                continue;
            };
            let other = self.packages[first.index];
            if !shared_instance(package, other)
                || (first.kind, &first.fingerprint) == (copy.kind, &copy.fingerprint)
            {
                continue;
            }
            let difference = if first.kind != copy.kind {
                format!(
                    "a {} in one, a {} in the other",
                    first.kind.name(),
                    copy.kind.name()
                )
            } else {
                match copy.kind {
                    Kind::File => "different contents".to_owned(),
                    Kind::Symlink | Kind::HardLink => "different link targets".to_owned(),
                    _ => "different device numbers".to_owned(),
                }
            };
            return Err(UnpackError::SharedDiffers {
                package: format!("{}:{}", other.name, other.architecture),
                other: format!("{}:{}", package.name, package.architecture),
                entry: format!("/{}", first.path.display()),
                difference,
            });
        }
        Ok(())
    }

    /// Records a fingerprint of an entry of a `Multi-Arch: same` instance.
    pub(super) fn note_shared(&self, copy: SharedCopy) {
        let mut copies = self.shared_copies.lock().unwrap_or_else(|e| e.into_inner());
        copies.push(copy);
    }

    /// Every path that package `index` lists but another package replaced.
    pub fn replaced_paths(&self, index: usize) -> HashSet<RelPath> {
        let replaced = self.replaced.lock().unwrap_or_else(|e| e.into_inner());
        replaced
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, path)| path.clone())
            .collect()
    }

    /// Gives every directory the owner and mode of the earliest package shipping it, and its
    /// mtime too unless it [`Self::touched`] it during the build: then it keeps the build's
    /// time, as in debootstrap's root. Runs after all packages, so adding files no longer
    /// changes directory mtimes.
    pub(super) fn finish_directories(&self) -> Result<(), UnpackError> {
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let children = children_by_parent(&claims);
        let mut dirs: Vec<(&RelPath, usize, &Shippers)> = claims
            .values()
            .filter_map(|claim| match claim {
                Claim::Dir {
                    first,
                    path,
                    shippers,
                    ..
                } => Some((path, *first, shippers)),
                Claim::Other { .. } => None,
            })
            .collect();
        dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (path, first, shippers) in dirs {
            let Some(meta) = shippers.kept().map(|(_, meta)| meta) else {
                continue;
            };
            let error = |source: io::Error| UnpackError::Extract {
                package: self.packages[first].name.clone(),
                entry: path.display(),
                source,
            };
            let parent = self.root.open_dir(path.parent()).map_err(error)?;
            let name: &[u8] = if path.is_root() {
                b"."
            } else {
                path.file_name()
            };
            let fd = match rustix::fs::openat(
                &parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // A symlink now stands there (a later package's), which dpkg would keep.
                Err(Errno::LOOP | Errno::NOTDIR) => continue,
                Err(e) => return Err(error(e.into())),
            };
            let stat = rustix::fs::fstat(&fd).map_err(|e| error(e.into()))?;
            if touched(children.get(&(stat.st_dev, stat.st_ino)), shippers) {
                meta.chown(&fd).map_err(error)?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
                    .map_err(|e| error(e.into()))?;
            } else {
                meta.apply(&fd).map_err(error)?;
            }
        }
        Ok(())
    }

    /// Records a directory entry; a directory already claimed keeps its earliest shipper.
    pub(super) fn claim_dir(
        &self,
        key: ClaimKey,
        index: usize,
        path: &RelPath,
        meta: Meta,
    ) -> Result<(), (usize, Kind)> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match claims.get_mut(&key) {
            None => {
                claims.insert(
                    key,
                    Claim::new_dir(index, self.ranks[index], self.ranks.len(), path, meta),
                );
                Ok(())
            }
            Some(claim @ Claim::Dir { .. }) => {
                claim.note_dir(index, self.ranks[index], path, meta);
                Ok(())
            }
            Some(Claim::Other { owner, kind }) => Err((*owner, *kind)),
        }
    }

    /// Claims a non-directory path for `index` and says what to do. A path another package
    /// also ships goes to the one that declares `Replaces` on the other (the later in request
    /// order when both do); when neither does it is refused, as dpkg refuses it.
    /// With the decision comes the package (by index) that lost the path, if one did.
    pub(super) fn claim_other(
        &self,
        key: ClaimKey,
        index: usize,
        kind: Kind,
    ) -> Result<(Decision, Option<usize>), Refusal> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match claims.get_mut(&key) {
            None => {
                claims.insert(key, Claim::Other { owner: index, kind });
                Ok((Decision::Fresh, None))
            }
            Some(Claim::Dir { first, .. }) => Err(Refusal::Kind(*first, Kind::Directory)),
            Some(Claim::Other { owner, kind: k }) => {
                let previous = *owner;
                if *owner != index && shared_instance(self.packages[index], self.packages[*owner]) {
                    // Both keep the path in their lists; the earlier in request order places
                    // the file, whichever is extracted first, so the root repeats.
                    if index > *owner {
                        return Ok((Decision::Skip, None));
                    }
                    *owner = index;
                    *k = kind;
                    return Ok((Decision::Replace, None));
                }
                let new_wins = *owner == index || {
                    let (new, old) = (self.packages[index], self.packages[*owner]);
                    match (resolve::replaces(new, old), resolve::replaces(old, new)) {
                        (false, false) => return Err(Refusal::Overwrite(*owner)),
                        (true, true) => index > *owner,
                        (new_replaces, _) => new_replaces,
                    }
                };
                if !new_wins {
                    return Ok((Decision::Skip, Some(index)));
                }
                *owner = index;
                *k = kind;
                Ok((Decision::Replace, (previous != index).then_some(previous)))
            }
        }
    }

    /// After finding something at a path claimed as Fresh: skip if a later package took the
    /// claim meanwhile, otherwise replace what is there.
    pub(super) fn recheck(&self, key: &ClaimKey, index: usize) -> Result<Decision, (usize, Kind)> {
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        match claims.get(key) {
            Some(Claim::Other { owner, .. }) if *owner != index => Ok(Decision::Skip),
            Some(Claim::Dir { first, .. }) => Err((*first, Kind::Directory)),
            _ => Ok(Decision::Replace),
        }
    }
}

/// The earliest package shipping a directory by its canonical path (`usr/lib/x`) and by a
/// merged-/usr alias (`lib/x`), each as its rank in debootstrap's order (see
/// [`Extractor::ranks`]) with its entry's metadata.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Shippers {
    canonical: Option<(usize, Meta)>,
    alias: Option<(usize, Meta)>,
    /// Ranks below this are packages debootstrap's first stage extracts.
    extracted: usize,
}

impl Shippers {
    fn note(&mut self, rank: usize, path: &RelPath, meta: Meta) {
        let first = path.first_component();
        let via_alias = !path.is_root() && USR_ALIASES.iter().any(|a| a.as_bytes() == first);
        let side = if via_alias {
            &mut self.alias
        } else {
            &mut self.canonical
        };
        if !side.is_some_and(|(earliest, _)| earliest <= rank) {
            *side = Some((rank, meta));
        }
    }

    fn extracted(&self, side: Option<(usize, Meta)>) -> Option<(usize, Meta)> {
        side.filter(|(rank, _)| *rank < self.extracted)
    }

    /// The shipper whose directory debootstrap's root ends with. Its first stage extracts into
    /// an unmerged tree, then moves `lib/x` into `usr/lib/x` only where that is missing; dpkg
    /// later creates what is still missing, through either path.
    fn kept(&self) -> Option<(usize, Meta)> {
        self.extracted(self.canonical)
            .or(self.extracted(self.alias))
            .or(match (self.canonical, self.alias) {
                (Some(c), Some(a)) => Some(if a.0 < c.0 { a } else { c }),
                (c, a) => c.or(a),
            })
    }
}

impl Claim {
    /// A directory first shipped by package `index` of rank `rank`, where ranks below
    /// `extracted` are packages debootstrap's first stage extracts.
    pub(super) fn new_dir(
        index: usize,
        rank: usize,
        extracted: usize,
        path: &RelPath,
        meta: Meta,
    ) -> Claim {
        let mut shippers = Shippers {
            extracted,
            ..Shippers::default()
        };
        shippers.note(rank, path, meta);
        Claim::Dir {
            first: index,
            path: path.clone(),
            shippers,
        }
    }

    /// Records another package shipping this directory; the earliest keeps it.
    pub(super) fn note_dir(
        &mut self,
        index: usize,
        rank: usize,
        new_path: &RelPath,
        new_meta: Meta,
    ) {
        if let Claim::Dir {
            first,
            path,
            shippers,
        } = self
        {
            shippers.note(rank, new_path, new_meta);
            if index < *first {
                *first = index;
                *path = new_path.clone();
            }
        }
    }
}

/// What packages put directly in one directory: whether any non-directory, and who ships
/// each subdirectory.
#[derive(Debug, Default)]
struct Children {
    non_directory: bool,
    subdirectories: Vec<Shippers>,
}

/// The children of every directory, keyed by the directory's (device, inode).
fn children_by_parent(claims: &HashMap<ClaimKey, Claim>) -> HashMap<(u64, u64), Children> {
    let mut children: HashMap<(u64, u64), Children> = HashMap::new();
    for (key, claim) in claims {
        if key.name == b"." {
            continue;
        }
        let entry = children.entry((key.dev, key.ino)).or_default();
        match claim {
            Claim::Dir { shippers, .. } => entry.subdirectories.push(*shippers),
            Claim::Other { .. } => entry.non_directory = true,
        }
    }
    children
}

/// Whether debootstrap's build leaves a directory with the build's mtime instead of the
/// archive's. Its first stage extracts packages one after another with `tar -k`, which
/// restores the mtime of a directory it creates but not of one that exists, so a later
/// package adding a subdirectory leaves the build's time; it then merges /usr, moving what
/// only `lib/x` has into `usr/lib/x`. dpkg then unpacks every package, placing each file, link
/// or device by a rename in its directory, and creating each missing directory with its
/// archive mtime before what goes in it.
fn touched(children: Option<&Children>, dir: &Shippers) -> bool {
    let Some(children) = children else {
        return false;
    };
    if children.non_directory {
        return true;
    }
    let Some((kept, _)) = dir.kept() else {
        return false;
    };
    if kept >= dir.extracted {
        // Made by dpkg, before anything in it.
        return !children.subdirectories.is_empty();
    }
    let from_canonical = dir.extracted(dir.canonical).is_some();
    children.subdirectories.iter().any(|sub| {
        if from_canonical {
            match sub.canonical {
                Some((created, _)) => created > kept,
                // Only the alias path had it: the merge or dpkg put it there later.
                None => sub.alias.is_some(),
            }
        } else {
            [sub.alias, sub.canonical]
                .into_iter()
                .flatten()
                .any(|(created, _)| created > kept)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_first_shipped_by_a_first_stage_package_counts_as_extracted_by_it() {
        let path = RelPath::from_entry_name(b"./usr/share/").unwrap();
        let meta = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
        };
        // Ranks below 3 are packages debootstrap's first stage extracts.
        for (rank, first_stage) in [(1, true), (4, false)] {
            let Claim::Dir { shippers, .. } = Claim::new_dir(0, rank, 3, &path, meta) else {
                panic!("not a directory claim");
            };
            assert_eq!(
                shippers.extracted(shippers.canonical).is_some(),
                first_stage,
                "rank {rank}"
            );
        }
    }
}
