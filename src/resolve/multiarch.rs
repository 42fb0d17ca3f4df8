//! Multiarch: the rules dpkg applies between the architectures of one root, for a selection
//! solved one architecture at a time (the native set, then each `--include PKG:B` set).
//!
//! - One name in two architectures: only `Multi-Arch: same` instances at one version sit side
//!   by side. A package of B that an `all` or `Multi-Arch: foreign` native package of its name
//!   satisfies is dropped for it, unless the user named it (it would silently not be
//!   installed); any other pair is refused. The foreign solve is pinned to the native version
//!   of every `Multi-Arch: same` name, so it picks the version that can sit beside it.
//! - `Conflicts` and `Breaks` without an architecture qualifier (or with `:any`) forbid packages
//!   of every architecture, as dpkg reads them; with `:native` or `:ARCH` only that
//!   architecture's (`all` counts as native). They are checked between packages that different
//!   solves chose (each solve already honours them within its own set). A package's relations
//!   never hit its own instance of another architecture, which the first rule governs.

use std::collections::HashMap;
use std::str::FromStr;

use debversion::Version;

use super::relation::{parse_provides, parse_relations, ArchQualifier, Atom, Op};
use super::{Conflict, ForeignClash, ResolveError};
use crate::fetch::Package;

/// Whether a package chosen for a foreign architecture joins the native set (`Some`), is
/// satisfied by a native package of its name (`None`; never for one the user `named`, which
/// would silently not be installed), or cannot be installed beside it.
pub fn beside_native(
    native: &[Package],
    package: &Package,
    named: bool,
) -> Result<Option<Package>, ResolveError> {
    let Some(same_name) = native.iter().find(|p| p.name == package.name) else {
        return Ok(Some(package.clone()));
    };
    let multi_arch = |p: &Package| p.multi_arch.as_deref().map(str::to_owned);
    let satisfied = package.architecture == "all"
        || same_name.architecture == package.architecture
        || multi_arch(package).as_deref() == Some("foreign");
    if satisfied && !named {
        return Ok(None);
    }
    let both_same = multi_arch(package).as_deref() == Some("same")
        && multi_arch(same_name).as_deref() == Some("same");
    if both_same && same_name.version == package.version {
        return Ok(Some(package.clone()));
    }
    Err(ResolveError::ForeignClash(Box::new(ForeignClash {
        package: package.name.clone(),
        arch: package.architecture.clone(),
        version: package.version.clone(),
        native_arch: same_name.architecture.clone(),
        native_version: same_name.version.clone(),
    })))
}

/// The `Multi-Arch: same` packages already chosen, as `NAME (= VERSION)` constraints for the
/// solve of another architecture, each with why.
pub fn same_version_pins(chosen: &[Package]) -> Result<Vec<(Atom, String)>, ResolveError> {
    let mut pins = Vec::new();
    for package in chosen {
        if package.multi_arch.as_deref() != Some("same") || package.architecture == "all" {
            continue;
        }
        let version = parse_version(package)?;
        pins.push((
            Atom {
                name: package.name.clone(),
                arch: ArchQualifier::Implicit,
                version: Some((Op::Equal, version)),
            },
            format!(
                "{}:{} {} (Multi-Arch: same, so every architecture's {} must be that version)",
                package.name, package.architecture, package.version, package.name
            ),
        ));
    }
    Ok(pins)
}

/// One package of the merged selection, with the solve that chose it.
pub struct Chosen<'p> {
    pub package: &'p Package,
    /// Which solve chose it (`0` native, then one per foreign architecture).
    pub solve: usize,
    /// How it came in, for messages (`the amd64 package set`, `--include libfoo:arm64`).
    pub origin: &'p str,
}

/// Refuses a merged selection in which a package's `Conflicts` or `Breaks` hits a package
/// another solve chose, naming both packages (with their architectures), the relation and
/// where each came from.
pub fn check_relations_across(chosen: &[Chosen<'_>], native: &str) -> Result<(), ResolveError> {
    // Name (real or provided) → the packages answering to it.
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut provided: Vec<Vec<Atom>> = Vec::with_capacity(chosen.len());
    for (i, c) in chosen.iter().enumerate() {
        by_name.entry(c.package.name.as_str()).or_default().push(i);
        let atoms = parse_provides(c.package.provides.as_deref().unwrap_or(""))
            .map_err(|source| bad_relation(c.package, "Provides", source))?;
        provided.push(atoms);
    }
    for (i, atoms) in provided.iter().enumerate() {
        for atom in atoms {
            let entry = by_name.entry(atom.name.as_str()).or_default();
            if !entry.contains(&i) {
                entry.push(i);
            }
        }
    }
    for declarer in chosen {
        let package = declarer.package;
        for (field, text) in [
            ("Conflicts", package.conflicts.as_deref()),
            ("Breaks", package.breaks.as_deref()),
        ] {
            let relations = parse_relations(text.unwrap_or(""))
                .map_err(|source| bad_relation(package, field, source))?;
            for atom in relations.into_iter().flat_map(|r| r.alternatives) {
                for &j in by_name
                    .get(atom.name.as_str())
                    .map_or(&[][..], Vec::as_slice)
                {
                    let other = &chosen[j];
                    if other.solve == declarer.solve || other.package.name == package.name {
                        continue;
                    }
                    if hits(&atom, other.package, &provided[j], native)? {
                        return Err(ResolveError::Conflict(Box::new(Conflict {
                            package: qualified(package),
                            version: package.version.clone(),
                            field,
                            relation: atom.to_string(),
                            other: qualified(other.package),
                            other_version: other.package.version.clone(),
                            package_chain: declarer.origin.to_owned(),
                            other_chain: other.origin.to_owned(),
                        })));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether the clash `atom` forbids `other` (whose parsed Provides are `provides`): by its own
/// name and version, or by a name it provides at a fitting version, in an architecture the
/// qualifier covers.
fn hits(
    atom: &Atom,
    other: &Package,
    provides: &[Atom],
    native: &str,
) -> Result<bool, ResolveError> {
    let arch = |a: &str| {
        if a == "all" {
            native.to_owned()
        } else {
            a.to_owned()
        }
    };
    let arch_ok = match &atom.arch {
        ArchQualifier::Implicit | ArchQualifier::Any => true,
        ArchQualifier::Native => arch(&other.architecture) == native,
        ArchQualifier::Named(wanted) => arch(&other.architecture) == arch(wanted),
    };
    if !arch_ok {
        return Ok(false);
    }
    if other.name == atom.name {
        return Ok(match &atom.version {
            None => true,
            Some((op, wanted)) => op.holds(&parse_version(other)?, wanted),
        });
    }
    Ok(provides
        .iter()
        .filter(|p| p.name == atom.name)
        .any(|p| match (&atom.version, &p.version) {
            (None, _) => true,
            // An unversioned Provides never meets a versioned relation (dpkg's rule).
            (Some(_), None) => false,
            (Some((op, wanted)), Some((_, provided))) => op.holds(provided, wanted),
        }))
}

/// `NAME:ARCH`, as dpkg names a package in a multiarch root.
fn qualified(package: &Package) -> String {
    format!("{}:{}", package.name, package.architecture)
}

fn parse_version(package: &Package) -> Result<Version, ResolveError> {
    Version::from_str(&package.version).map_err(|source| ResolveError::BadVersion {
        package: package.name.clone(),
        version: package.version.clone(),
        source,
    })
}

fn bad_relation(
    package: &Package,
    field: &'static str,
    source: super::RelationError,
) -> ResolveError {
    ResolveError::BadRelation {
        package: package.name.clone(),
        version: package.version.clone(),
        field,
        source,
    }
}
