//! The package universe: the index's packages for one architecture, looked up by name and by
//! what they provide, with versions parsed on first use.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::str::FromStr;

use debversion::Version;

use super::relation::{parse_provides, parse_relations, ArchQualifier, Atom};
use super::ResolveError;
use crate::fetch::{Details, PackageRef, RepoIndex};

/// A package that provides a name, with the version it provides it at, if any.
#[derive(Debug)]
pub struct Provider<'u> {
    pub package: usize,
    pub version: Option<&'u Version>,
}

/// One thing a package declares it cannot be installed with (`Conflicts` or `Breaks`; a fresh
/// root is never in the half-configured state where Breaks would allow both).
#[derive(Debug)]
pub struct Clash {
    pub field: &'static str,
    pub atom: Atom,
}

/// Package indices grouped by a name, each group in index order: one array and one small
/// map entry per name, rather than a vector per name (the index has tens of thousands).
struct Groups<'a> {
    members: Vec<usize>,
    ranges: HashMap<&'a str, (u32, u32)>,
}

impl<'a> Groups<'a> {
    fn new(mut pairs: Vec<(&'a str, usize)>) -> Groups<'a> {
        pairs.sort_unstable();
        pairs.dedup();
        let mut ranges = HashMap::new();
        let mut members = Vec::with_capacity(pairs.len());
        for (name, i) in pairs {
            let at = members.len() as u32;
            ranges.entry(name).or_insert((at, at)).1 = at + 1;
            members.push(i);
        }
        Groups { members, ranges }
    }

    /// The indices grouped under `name`, in index order.
    fn get(&self, name: &str) -> &[usize] {
        self.ranges.get(name).map_or(&[], |&(start, end)| {
            &self.members[start as usize..end as usize]
        })
    }

    fn contains_key(&self, name: &str) -> bool {
        self.ranges.contains_key(name)
    }
}

/// Packages of the target architecture or `all`, indexed once.
pub struct Universe<'a> {
    index: &'a RepoIndex,
    arch: &'a str,
    by_name: Groups<'a>,
    /// Provided name → packages whose `Provides` mentions it (found by a cheap scan; the field
    /// is parsed only when that provider is considered).
    provided_by: Groups<'a>,
    provides: Vec<OnceCell<Vec<Atom>>>,
    clashes: Vec<OnceCell<Vec<Clash>>>,
    /// Read back from the index for the packages visited; boxed, as most are never read.
    details: Vec<OnceCell<Box<Details>>>,
    versions: Vec<OnceCell<Box<Version>>>,
}

impl<'a> Universe<'a> {
    /// Indexes `packages` for `arch`, parsing nothing but the names in `Provides`.
    pub fn new(index: &'a RepoIndex, arch: &'a str) -> Universe<'a> {
        let mut by_name: Vec<(&str, usize)> = Vec::with_capacity(index.len());
        let mut provided_by: Vec<(&str, usize)> = Vec::new();
        for (i, package) in index.packages().enumerate() {
            if package.architecture != arch && package.architecture != "all" {
                continue;
            }
            by_name.push((package.name, i));
            for entry in package.provides.unwrap_or("").split(',') {
                let name = entry
                    .trim_start()
                    .split([' ', '\t', '(', ':'])
                    .next()
                    .unwrap_or("");
                if !name.is_empty() {
                    provided_by.push((name, i));
                }
            }
        }
        Universe {
            index,
            arch,
            by_name: Groups::new(by_name),
            provided_by: Groups::new(provided_by),
            provides: (0..index.len()).map(|_| OnceCell::new()).collect(),
            clashes: (0..index.len()).map(|_| OnceCell::new()).collect(),
            details: (0..index.len()).map(|_| OnceCell::new()).collect(),
            versions: (0..index.len()).map(|_| OnceCell::new()).collect(),
        }
    }

    pub fn arch(&self) -> &'a str {
        self.arch
    }

    pub fn package(&self, i: usize) -> PackageRef<'a> {
        self.index.get(i)
    }

    /// Every eligible package of this name, in index order.
    pub fn named(&self, name: &str) -> &[usize] {
        self.by_name.get(name)
    }

    /// Whether any eligible package claims to provide this name.
    pub fn is_provided(&self, name: &str) -> bool {
        self.provided_by.contains_key(name)
    }

    /// Every eligible package that provides this name, in index order.
    pub fn providers(&self, name: &str) -> Result<Vec<Provider<'_>>, ResolveError> {
        let mut providers = Vec::new();
        for &i in self.provided_by.get(name) {
            for atom in self.provides(i)? {
                if atom.name == name {
                    providers.push(Provider {
                        package: i,
                        version: atom.version.as_ref().map(|(_, version)| version),
                    });
                }
            }
        }
        Ok(providers)
    }

    fn provides(&self, i: usize) -> Result<&[Atom], ResolveError> {
        if let Some(atoms) = self.provides[i].get() {
            return Ok(atoms);
        }
        let package = self.index.get(i);
        let atoms = parse_provides(package.provides.unwrap_or("")).map_err(|source| {
            ResolveError::BadRelation {
                package: package.name.to_owned(),
                version: package.version.to_owned(),
                field: "Provides",
                source,
            }
        })?;
        Ok(self.provides[i].get_or_init(|| atoms))
    }

    /// The relationships, Filename, Size and SHA256 of package `i`, read on first use.
    pub fn details(&self, i: usize) -> Result<&Details, ResolveError> {
        if let Some(details) = self.details[i].get() {
            return Ok(details);
        }
        let details = self.index.details(i)?;
        Ok(self.details[i].get_or_init(|| Box::new(details)))
    }

    /// What package `i` declares in `Conflicts` and `Breaks`, parsed on first use.
    pub fn clashes(&self, i: usize) -> Result<&[Clash], ResolveError> {
        if let Some(clashes) = self.clashes[i].get() {
            return Ok(clashes);
        }
        let package = self.index.get(i);
        let details = self.details(i)?;
        let mut clashes = Vec::new();
        for (field, text) in [
            ("Conflicts", details.conflicts.as_deref()),
            ("Breaks", details.breaks.as_deref()),
        ] {
            let relations = parse_relations(text.unwrap_or("")).map_err(|source| {
                ResolveError::BadRelation {
                    package: package.name.to_owned(),
                    version: package.version.to_owned(),
                    field,
                    source,
                }
            })?;
            // Policy allows no alternatives here; each one written is a conflict of its own.
            for relation in relations {
                clashes.extend(
                    relation
                        .alternatives
                        .into_iter()
                        .map(|atom| Clash { field, atom }),
                );
            }
        }
        Ok(self.clashes[i].get_or_init(|| clashes))
    }

    /// Whether `clash`, declared by package `of`, forbids package `other`: `other` is the named
    /// package at a matching version, or provides the name (at a matching version when the
    /// clash names one). A package never clashes with itself, which is how a package that
    /// provides, conflicts with and replaces a virtual name stays installable.
    pub fn clash_hits(&self, of: usize, clash: &Clash, other: usize) -> Result<bool, ResolveError> {
        if of == other {
            return Ok(false);
        }
        if self.index.get(other).name == clash.atom.name {
            return self.real_satisfies(other, &clash.atom);
        }
        if !self.provided_by.get(&clash.atom.name).contains(&other) {
            return Ok(false);
        }
        Ok(self.provides(other)?.iter().any(|atom| {
            atom.name == clash.atom.name
                && self.provider_satisfies(
                    &Provider {
                        package: other,
                        version: atom.version.as_ref().map(|(_, version)| version),
                    },
                    &clash.atom,
                )
        }))
    }

    /// Every package of the target architecture or `all`, in index order.
    pub fn eligible(&self) -> impl Iterator<Item = PackageRef<'a>> + '_ {
        self.index
            .packages()
            .filter(|package| package.architecture == self.arch || package.architecture == "all")
    }

    /// The parsed version of package `i`.
    pub fn version(&self, i: usize) -> Result<&Version, ResolveError> {
        if let Some(version) = self.versions[i].get() {
            return Ok(version);
        }
        let package = self.index.get(i);
        let version =
            Version::from_str(package.version).map_err(|source| ResolveError::BadVersion {
                package: package.name.to_owned(),
                version: package.version.to_owned(),
                source,
            })?;
        Ok(self.versions[i].get_or_init(|| Box::new(version)))
    }

    /// Whether package `i`, under its own name, satisfies `atom` (name, version and
    /// architecture qualifier).
    pub fn real_satisfies(&self, i: usize, atom: &Atom) -> Result<bool, ResolveError> {
        let package = self.index.get(i);
        if package.name != atom.name || !self.arch_satisfies(&package, &atom.arch) {
            return Ok(false);
        }
        match &atom.version {
            None => Ok(true),
            Some((op, wanted)) => Ok(op.holds(self.version(i)?, wanted)),
        }
    }

    /// Whether `provider` satisfies `atom`: an unversioned Provides never satisfies a versioned
    /// dependency (dpkg's rule).
    pub fn provider_satisfies(&self, provider: &Provider<'_>, atom: &Atom) -> bool {
        if !self.arch_satisfies(&self.index.get(provider.package), &atom.arch) {
            return false;
        }
        match (&atom.version, &provider.version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, wanted)), Some(provided)) => op.holds(provided, wanted),
        }
    }

    /// dpkg's architecture rule, for a universe of one architecture plus `all`.
    pub fn arch_satisfies(&self, package: &PackageRef<'_>, qualifier: &ArchQualifier) -> bool {
        match qualifier {
            ArchQualifier::Implicit | ArchQualifier::Native => true,
            ArchQualifier::Any => package.multi_arch == Some("allowed"),
            ArchQualifier::Named(arch) => arch == self.arch,
        }
    }
}

/// Ranks `Priority:` so a more basic package sorts first.
pub fn priority_rank(package: &PackageRef<'_>) -> u8 {
    match package.priority {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        Some("extra") => 4,
        _ => 5,
    }
}
