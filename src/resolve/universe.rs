//! The package universe: the index's packages for one architecture, looked up by name and by
//! what they provide, with versions parsed on first use.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::str::FromStr;

use debversion::Version;

use super::relation::{parse_provides, ArchQualifier, Atom};
use super::ResolveError;
use crate::fetch::Package;

/// A package that provides a name, with the version it provides it at, if any.
#[derive(Debug)]
pub struct Provider<'u> {
    pub package: usize,
    pub version: Option<&'u Version>,
}

/// Packages of the target architecture or `all`, indexed once.
pub struct Universe<'a> {
    packages: &'a [Package],
    arch: &'a str,
    by_name: HashMap<&'a str, Vec<usize>>,
    /// Provided name → packages whose `Provides` mentions it (found by a cheap scan; the field
    /// is parsed only when that provider is considered).
    provided_by: HashMap<&'a str, Vec<usize>>,
    provides: Vec<OnceCell<Vec<Atom>>>,
    versions: Vec<OnceCell<Version>>,
}

impl<'a> Universe<'a> {
    /// Indexes `packages` for `arch`, parsing nothing but the names in `Provides`.
    pub fn new(packages: &'a [Package], arch: &'a str) -> Universe<'a> {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::with_capacity(packages.len());
        let mut provided_by: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, package) in packages.iter().enumerate() {
            if package.architecture != arch && package.architecture != "all" {
                continue;
            }
            by_name.entry(package.name.as_str()).or_default().push(i);
            for entry in package.provides.as_deref().unwrap_or("").split(',') {
                let name = entry
                    .trim_start()
                    .split([' ', '\t', '(', ':'])
                    .next()
                    .unwrap_or("");
                if !name.is_empty() {
                    let list = provided_by.entry(name).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        Universe {
            packages,
            arch,
            by_name,
            provided_by,
            provides: packages.iter().map(|_| OnceCell::new()).collect(),
            versions: packages.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    pub fn arch(&self) -> &'a str {
        self.arch
    }

    pub fn package(&self, i: usize) -> &'a Package {
        &self.packages[i]
    }

    /// Every eligible package of this name, in index order.
    pub fn named(&self, name: &str) -> &[usize] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether any eligible package claims to provide this name.
    pub fn is_provided(&self, name: &str) -> bool {
        self.provided_by.contains_key(name)
    }

    /// Every eligible package that provides this name, in index order.
    pub fn providers(&self, name: &str) -> Result<Vec<Provider<'_>>, ResolveError> {
        let mut providers = Vec::new();
        for &i in self.provided_by.get(name).map_or(&[][..], Vec::as_slice) {
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
        let package = &self.packages[i];
        let atoms =
            parse_provides(package.provides.as_deref().unwrap_or("")).map_err(|source| {
                ResolveError::BadRelation {
                    package: package.name.clone(),
                    version: package.version.clone(),
                    field: "Provides",
                    source,
                }
            })?;
        Ok(self.provides[i].get_or_init(|| atoms))
    }

    /// Every package of the target architecture or `all`, in index order.
    pub fn eligible(&self) -> impl Iterator<Item = &'a Package> + '_ {
        self.packages
            .iter()
            .filter(|package| package.architecture == self.arch || package.architecture == "all")
    }

    /// The parsed version of package `i`.
    pub fn version(&self, i: usize) -> Result<&Version, ResolveError> {
        if let Some(version) = self.versions[i].get() {
            return Ok(version);
        }
        let package = &self.packages[i];
        let version =
            Version::from_str(&package.version).map_err(|source| ResolveError::BadVersion {
                package: package.name.clone(),
                version: package.version.clone(),
                source,
            })?;
        Ok(self.versions[i].get_or_init(|| version))
    }

    /// Whether package `i`, under its own name, satisfies `atom` (name, version and
    /// architecture qualifier).
    pub fn real_satisfies(&self, i: usize, atom: &Atom) -> Result<bool, ResolveError> {
        let package = &self.packages[i];
        if package.name != atom.name || !self.arch_satisfies(package, &atom.arch) {
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
        if !self.arch_satisfies(&self.packages[provider.package], &atom.arch) {
            return false;
        }
        match (&atom.version, &provider.version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, wanted)), Some(provided)) => op.holds(provided, wanted),
        }
    }

    /// dpkg's architecture rule, for a universe of one architecture plus `all`.
    pub fn arch_satisfies(&self, package: &Package, qualifier: &ArchQualifier) -> bool {
        match qualifier {
            ArchQualifier::Implicit | ArchQualifier::Native => true,
            ArchQualifier::Any => package.multi_arch.as_deref() == Some("allowed"),
            ArchQualifier::Named(arch) => arch == self.arch,
        }
    }
}

/// Ranks `Priority:` so a more basic package sorts first.
pub fn priority_rank(package: &Package) -> u8 {
    match package.priority.as_deref() {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        Some("extra") => 4,
        _ => 5,
    }
}
