//! Resolve: a verified [`RepoIndex`] and a [`Selection`] (variant, --include, --exclude) become a
//! [`Resolution`], the exact package set, sorted by name, each pinned to one version.
//!
//! Seeds follow debootstrap's variants; --exclude removes names from the seeds only, so a package
//! that something else depends on is still installed (as debootstrap does). From the seeds,
//! `Pre-Depends` and `Depends` are followed with versions, alternatives, `Provides` and
//! architecture qualifiers, and `Conflicts`/`Breaks` are honoured; solver.rs writes out the
//! exact policy. The same index and selection
//! always give the same resolution.

mod multiarch;
mod relation;
mod solver;
mod universe;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::config::Variant;
use crate::fetch::{Package, PackageRef, RepoIndex};

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
    /// Two packages of the selection cannot be installed together (as apt would refuse).
    #[error(transparent)]
    Conflict(Box<Conflict>),
    /// A package of a foreign architecture cannot sit beside the native one of its name.
    #[error(transparent)]
    ForeignClash(Box<ForeignClash>),
    #[error("{package} {version}: cannot parse its {field} field")]
    BadRelation {
        package: String,
        version: String,
        field: &'static str,
        #[source]
        source: RelationError,
    },
    /// A stanza could not be read back from the verified index.
    #[error(transparent)]
    Index(#[from] crate::fetch::IndexParseError),
    #[error("{package}: invalid version {version:?}")]
    BadVersion {
        package: String,
        version: String,
        #[source]
        source: debversion::ParseError,
    },
}

/// A package chosen for a foreign architecture (by --include PKG:ARCH) that dpkg cannot
/// install beside the native package of its name.
#[derive(Debug, thiserror::Error)]
#[error(
    "{package}:{arch} {version} cannot be installed beside {package}:{native_arch} \
     {native_version}: dpkg installs one package for two architectures only when both are \
     Multi-Arch: same at one version; drop the --include that needs {package}:{arch}"
)]
pub struct ForeignClash {
    pub package: String,
    pub arch: String,
    pub version: String,
    pub native_arch: String,
    pub native_version: String,
}

/// Two chosen packages that cannot be installed together: `package` declares `field:
/// relation`, which `other` matches.
#[derive(Debug, thiserror::Error)]
#[error(
    "{package} {version} declares {field}: {relation}, but {other} {other_version} is selected \
     too ({package} by {package_chain}; {other} by {other_chain}); change --include/--exclude \
     so that only one of them is needed"
)]
pub struct Conflict {
    pub package: String,
    pub version: String,
    pub field: &'static str,
    pub relation: String,
    pub other: String,
    pub other_version: String,
    pub package_chain: String,
    pub other_chain: String,
}

/// Chooses the package set.
///
/// `--include pkg:B` for a foreign architecture B is solved in B's own universe (B and `all`)
/// from those packages alone, and merged into the native set the way dpkg's multiarch allows:
/// a package of B that is `all` or `Multi-Arch: foreign` and already chosen natively is
/// satisfied by the native one; a `Multi-Arch: same` package sits beside its native self at
/// the same version (the foreign solve is held to it); any other package of one name in two
/// architectures is refused, and so is a `Conflicts`/`Breaks` between packages of different
/// solves that dpkg would apply across architectures (see multiarch.rs).
pub fn resolve(index: &RepoIndex, selection: &Selection) -> Result<Resolution, ResolveError> {
    let mut native = selection.clone();
    let mut foreign: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    native.include.clear();
    for name in &selection.include {
        match name.trim().split_once(':') {
            Some((package, arch)) if arch != selection.arch && arch != "native" => {
                foreign.entry(arch).or_default().push(package.to_string());
            }
            Some((package, _)) => native.include.push(package.to_string()),
            None => native.include.push(name.clone()),
        }
    }
    let universe = Universe::new(index, &selection.arch);
    let seeds = seeds(&universe, &native)?;
    let mut packages: Vec<Package> = solver::solve(&universe, &seeds)?
        .into_iter()
        .map(|i| index.package(i))
        .collect::<Result<_, _>>()?;
    // Which solve chose each package (0: native), and how each solve is described.
    let mut solves = vec![0; packages.len()];
    let mut origins = vec![format!("the {} package set", selection.arch)];
    for (arch, names) in foreign {
        let universe = Universe::new(index, arch);
        let seeds: Vec<Seed> = names
            .into_iter()
            .map(|name| Seed {
                name,
                origin: SeedOrigin::Include,
            })
            .collect();
        let pins = multiarch::same_version_pins(&packages)?;
        let chosen = solver::solve_pinned(&universe, &seeds, &pins)?;
        let mut added = Vec::new();
        for i in chosen {
            let package = index.package(i)?;
            let named = seeds.iter().any(|seed| seed.name == package.name);
            added.extend(multiarch::beside_native(&packages, &package, named)?);
        }
        let included: Vec<String> = seeds.iter().map(|s| format!("{}:{arch}", s.name)).collect();
        origins.push(format!("--include {}", included.join(",")));
        solves.extend(std::iter::repeat_n(origins.len() - 1, added.len()));
        packages.extend(added);
    }
    let chosen: Vec<multiarch::Chosen<'_>> = packages
        .iter()
        .zip(&solves)
        .map(|(package, &solve)| multiarch::Chosen {
            package,
            solve,
            origin: &origins[solve],
        })
        .collect();
    multiarch::check_relations_across(&chosen, &selection.arch)?;
    packages.sort_by(|a, b| {
        (a.name.as_str(), a.architecture.as_str()).cmp(&(b.name.as_str(), b.architecture.as_str()))
    });
    Ok(Resolution { packages })
}

/// Whether `replacer` declares `Replaces` on `replaced` at its version: dpkg's condition for
/// letting one package's file overwrite another's. Only real names count (as dpkg checks
/// file overwrites); a field that does not parse replaces nothing.
pub fn replaces(replacer: &Package, replaced: &Package) -> bool {
    let Some(text) = replacer.replaces.as_deref() else {
        return false;
    };
    let Ok(relations) = relation::parse_relations(text) else {
        return false;
    };
    relations
        .iter()
        .flat_map(|relation| &relation.alternatives)
        .filter(|atom| atom.name == replaced.name)
        .any(|atom| match &atom.version {
            None => true,
            Some((op, wanted)) => replaced
                .version
                .parse::<debversion::Version>()
                .is_ok_and(|version| op.holds(&version, wanted)),
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

/// Which of `packages` debootstrap's first stage extracts (and dpkg then unpacks first): the
/// `Priority: required` ones (and `usr-is-merged`, which it adds for bookworm) with what they
/// need (see [`needed_by`]). The rest are unpacked by dpkg afterwards.
pub fn extracted_first(packages: &[&Package]) -> Vec<bool> {
    let relations: Vec<Relations> = packages
        .iter()
        .map(|p| Relations {
            name: &p.name,
            provides: p.provides.as_deref(),
            depends: p.depends.as_deref(),
            pre_depends: p.pre_depends.as_deref(),
        })
        .collect();
    needed_by(&relations, |i| {
        packages[i].priority.as_deref() == Some("required") || packages[i].name == "usr-is-merged"
    })
}

/// What [`needed_by`] reads of a package.
#[derive(Debug, Clone, Copy)]
pub struct Relations<'a> {
    pub name: &'a str,
    pub provides: Option<&'a str>,
    pub depends: Option<&'a str>,
    pub pre_depends: Option<&'a str>,
}

/// The packages `seed` picks out of `packages`, with their Depends and Pre-Depends as far as
/// `packages` satisfies them (the first alternative that a package of the set has by name or
/// Provides), transitively; one flag per package.
pub fn needed_by(packages: &[Relations], seed: impl Fn(usize) -> bool) -> Vec<bool> {
    let mut by_name: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    let provided: Vec<Vec<relation::Atom>> = packages
        .iter()
        .map(|p| {
            p.provides
                .and_then(|p| relation::parse_provides(p).ok())
                .unwrap_or_default()
        })
        .collect();
    for (i, package) in packages.iter().enumerate() {
        by_name.entry(package.name).or_default().push(i);
        for atom in &provided[i] {
            by_name.entry(atom.name.as_str()).or_default().push(i);
        }
    }
    let mut first = vec![false; packages.len()];
    let mut todo: Vec<usize> = (0..packages.len()).filter(|i| seed(*i)).collect();
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut first[i], true) {
            continue;
        }
        let fields = [packages[i].depends, packages[i].pre_depends];
        for text in fields.into_iter().flatten() {
            for relation in relation::parse_relations(text).unwrap_or_default() {
                let chosen = relation
                    .alternatives
                    .iter()
                    .find_map(|atom| by_name.get(atom.name.as_str()));
                todo.extend(chosen.into_iter().flatten().filter(|j| !first[**j]));
            }
        }
    }
    first
}

/// The names a variant starts from, plus --include, minus --exclude, in name order.
fn seeds(universe: &Universe<'_>, selection: &Selection) -> Result<Vec<Seed>, ResolveError> {
    let variant = selection.variant.name();
    let names_where = |wanted: &dyn Fn(&PackageRef<'_>) -> bool| -> BTreeSet<&str> {
        universe
            .eligible()
            .filter(|package| wanted(package))
            .map(|package| package.name)
            .collect()
    };
    let with_priority = |priorities: &[&str]| {
        names_where(&|package: &PackageRef<'_>| {
            let priority = package.priority;
            priority.is_some_and(|p| priorities.contains(&p))
        })
    };
    let (names, extra): (BTreeSet<&str>, &[&str]) = match selection.variant {
        Variant::Extract => (BTreeSet::new(), &[]),
        Variant::Essential => (
            names_where(&|package: &PackageRef<'_>| package.essential),
            &[],
        ),
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
