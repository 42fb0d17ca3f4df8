//! Resolve: a verified [`RepoIndex`] and a [`Selection`] (variant, --include, --exclude) become a
//! [`Resolution`], the exact package set, sorted by name, each pinned to one version.
//!
//! Seeds follow debootstrap's variants; --exclude removes names from the seeds only, so a package
//! that something else depends on is still installed (as debootstrap does). From the seeds,
//! `Pre-Depends` and `Depends` are followed with versions, alternatives, `Provides` and
//! architecture qualifiers; solver.rs writes out the exact policy. The same index and selection
//! always give the same resolution.

mod relation;
mod solver;
mod universe;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::config::Variant;
use crate::fetch::{Package, RepoIndex};

pub use relation::RelationError;
pub use solver::NOT_PULLED_BY_DEPENDENCIES;

use solver::{Seed, SeedOrigin};
use universe::Universe;

/// What to install.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub variant: Variant,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// The target architecture (packages of `all` are always eligible).
    pub arch: String,
}

/// The chosen packages, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub packages: Vec<Package>,
}

impl Resolution {
    /// The package names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.packages.iter().map(|package| package.name.as_str())
    }

    /// The chosen package of this name, if any.
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages
            .binary_search_by(|package| package.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.packages[i])
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The sum of the .deb sizes, for download progress.
    pub fn download_size(&self) -> u64 {
        self.packages.iter().map(|package| package.size).sum()
    }
}

/// Why no package set could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "--include {package}: no package of that name, and none provides it, for {arch} or all"
    )]
    IncludeNotFound { package: String, arch: String },
    #[error("variant {variant} needs {package}, which is not in the index for {arch} or all")]
    SeedNotFound {
        variant: &'static str,
        package: String,
        arch: String,
    },
    #[error("variant {variant} selects nothing for {arch}: {what}")]
    NothingSelected {
        variant: &'static str,
        arch: String,
        what: &'static str,
    },
    /// `chain` runs from a seed through each dependency as written to the one that failed.
    #[error("{}: {reason}", chain.join(" -> "))]
    Unsatisfiable { chain: Vec<String>, reason: String },
    #[error("{package} {version}: cannot parse its {field} field")]
    BadRelation {
        package: String,
        version: String,
        field: &'static str,
        #[source]
        source: RelationError,
    },
    #[error("{package}: invalid version {version:?}")]
    BadVersion {
        package: String,
        version: String,
        #[source]
        source: debversion::ParseError,
    },
}

/// Chooses the package set.
pub fn resolve(index: &RepoIndex, selection: &Selection) -> Result<Resolution, ResolveError> {
    let universe = Universe::new(index.packages(), &selection.arch);
    let seeds = seeds(&universe, selection)?;
    let chosen = solver::solve(&universe, &seeds)?;
    Ok(Resolution {
        packages: chosen
            .into_iter()
            .map(|i| universe.package(i).clone())
            .collect(),
    })
}

/// `NAME VERSION` lines sorted by name: what `--print-packages` prints.
pub fn print_packages(resolution: &Resolution) -> String {
    let mut out = String::new();
    for package in &resolution.packages {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{} {}", package.name, package.version);
    }
    out
}

/// The names a variant starts from, plus --include, minus --exclude, in name order.
fn seeds(universe: &Universe<'_>, selection: &Selection) -> Result<Vec<Seed>, ResolveError> {
    let variant = selection.variant.name();
    let names_where = |wanted: &dyn Fn(&Package) -> bool| -> BTreeSet<&str> {
        universe
            .eligible()
            .filter(|package| wanted(package))
            .map(|package| package.name.as_str())
            .collect()
    };
    let with_priority = |priorities: &[&str]| {
        names_where(&|package: &Package| {
            let priority = package.priority.as_deref();
            priority.is_some_and(|p| priorities.contains(&p))
        })
    };
    let (names, extra): (BTreeSet<&str>, &[&str]) = match selection.variant {
        Variant::Extract => (BTreeSet::new(), &[]),
        Variant::Essential => (names_where(&|package: &Package| package.essential), &[]),
        Variant::Minbase => (with_priority(&["required"]), &["apt"]),
        Variant::Buildd => (with_priority(&["required"]), &["apt", "build-essential"]),
        Variant::Important => (with_priority(&["required", "important"]), &[]),
    };
    if names.is_empty() && selection.variant != Variant::Extract {
        return Err(ResolveError::NothingSelected {
            variant,
            arch: selection.arch.clone(),
            what: match selection.variant {
                Variant::Essential => "no package is marked Essential: yes",
                _ => "no package has Priority: required",
            },
        });
    }
    let excluded = |name: &str| selection.exclude.iter().any(|x| x == name);
    let mut seeds: Vec<Seed> = Vec::new();
    let mut seen = BTreeSet::new();
    for name in names.into_iter().chain(extra.iter().copied()) {
        if !excluded(name) && seen.insert(name.to_string()) {
            seeds.push(Seed {
                name: name.to_string(),
                origin: SeedOrigin::Variant(variant),
            });
        }
    }
    for name in &selection.include {
        let name = name.trim();
        if !name.is_empty() && !excluded(name) && seen.insert(name.to_string()) {
            seeds.push(Seed {
                name: name.to_string(),
                origin: SeedOrigin::Include,
            });
        }
    }
    if seeds.is_empty() {
        return Err(ResolveError::NothingSelected {
            variant,
            arch: selection.arch.clone(),
            what: "no --include package is left after --exclude",
        });
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests;
