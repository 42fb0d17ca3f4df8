//! The dependency walk: seed names and a [`Universe`] become the chosen package indices.
//!
//! Policy, in the order it applies:
//! - Seeds are selected first, each at its highest version, so "already selected" includes them.
//! - A dependency with one possibility naming a real package is followed at once; one with
//!   alternatives, or naming only a virtual package, waits until every such direct dependency
//!   is in, so an alternative that something else needs anyway is preferred over the first one.
//! - A waiting dependency already satisfied by the selection adds nothing; otherwise its first
//!   satisfiable alternative is taken: the real package at its highest satisfying version, else
//!   a provider (most basic `Priority:` first, then by name, then highest version).
//! - One version per name: when a later dependency rejects the version already chosen, its
//!   constraint is remembered as a pin on that name and the walk starts over, so the name is
//!   chosen at a version that satisfies every pin; when none does, the error names both chains.
//!   Pins only accumulate, so this ends.
//! - Names in [`NOT_PULLED_BY_DEPENDENCIES`] never satisfy a dependency (debootstrap's rule).
//! - `Conflicts` and `Breaks` are honoured as apt does for a fresh install: a candidate that
//!   clashes with the selection (either way round) is passed over for the next alternative,
//!   version or provider; when the finished selection still holds two packages that clash (a
//!   dependency with no other way, or two seeds), the error names both, the relation and the
//!   chains that brought them in, before anything is downloaded.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};

use super::relation::{parse_relations, ArchQualifier, Atom, Relation};
use super::universe::{priority_rank, Clash, Universe};
use super::ResolveError;

/// Packages never pulled in to satisfy a dependency (they may still be --included).
///
/// `usrmerge` converts a split-/usr system at install time; our roots are created merged from
/// the start, so, as debootstrap does since bookworm, an alternative such as
/// `usrmerge | usr-is-merged` is satisfied by the marker package `usr-is-merged` instead.
pub const NOT_PULLED_BY_DEPENDENCIES: &[&str] = &["usrmerge"];

/// A name to start from.
#[derive(Debug, Clone)]
pub struct Seed {
    pub name: String,
    pub origin: SeedOrigin,
}

/// Why a seed is there; it decides the error when the name does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedOrigin {
    /// Named by the variant (e.g. `apt` for minbase); must be a real package.
    Variant(&'static str),
    /// Named by --include; may be a virtual package.
    Include,
}

/// Chooses a package index for every seed and, transitively, every dependency.
pub fn solve(universe: &Universe<'_>, seeds: &[Seed]) -> Result<Vec<usize>, ResolveError> {
    solve_pinned(universe, seeds, &[])
}

/// [`solve`], with each name in `pins` held to versions its atom allows from the start (the
/// text says why, for messages): how a foreign architecture's solve keeps a `Multi-Arch: same`
/// package at the version already chosen natively.
pub fn solve_pinned(
    universe: &Universe<'_>,
    seeds: &[Seed],
    pins: &[(Atom, String)],
) -> Result<Vec<usize>, ResolveError> {
    let mut pins: BTreeMap<String, Vec<Pin>> =
        pins.iter().fold(BTreeMap::new(), |mut map, (atom, why)| {
            map.entry(atom.name.clone()).or_default().push(Pin {
                atom: atom.clone(),
                chain: vec![why.clone()],
            });
            map
        });
    loop {
        let run = Run {
            universe,
            pins: &pins,
            selected: BTreeMap::new(),
            links: HashMap::new(),
            queue: VecDeque::new(),
            deferred: VecDeque::new(),
        };
        match run.execute(seeds)? {
            Outcome::Solved(chosen) => return Ok(chosen),
            Outcome::Pin(pin) => {
                let on_name = pins.entry(pin.atom.name.clone()).or_default();
                if on_name.iter().any(|known| known.atom == pin.atom) {
                    // Every selection honours the pins, so a known pin cannot be violated
                    // again; refuse rather than loop if that ever stops being true.
                    return Err(ResolveError::Unsatisfiable {
                        chain: pin.chain,
                        reason: "the resolver could not honour this constraint".to_string(),
                    });
                }
                on_name.push(pin);
            }
        }
    }
}

/// A constraint on a name learnt from a conflict, with the chain that imposed it.
#[derive(Debug, Clone)]
struct Pin {
    atom: Atom,
    chain: Vec<String>,
}

enum Outcome {
    Solved(Vec<usize>),
    Pin(Pin),
}

/// How a package came into the selection.
struct Link {
    from: Option<usize>,
    step: String,
}

enum Choice {
    Select {
        package: usize,
        via: Option<usize>,
    },
    /// The name is already selected at a version this atom rejects.
    Conflict(String),
    Impossible(String),
}

struct Run<'r, 'a> {
    universe: &'r Universe<'a>,
    pins: &'r BTreeMap<String, Vec<Pin>>,
    /// Name → chosen package; a BTreeMap so the result comes out sorted by name.
    selected: BTreeMap<&'a str, usize>,
    links: HashMap<usize, Link>,
    queue: VecDeque<usize>,
    deferred: VecDeque<(usize, Relation)>,
}

impl<'a> Run<'_, 'a> {
    fn execute(mut self, seeds: &[Seed]) -> Result<Outcome, ResolveError> {
        // Real names first, so a virtual --include can be satisfied by a real seed.
        for seed in seeds {
            if !self.universe.named(&seed.name).is_empty() {
                self.select_seed(seed)?;
            }
        }
        for seed in seeds {
            if self.universe.named(&seed.name).is_empty() {
                self.select_virtual_seed(seed)?;
            }
        }
        loop {
            while let Some(package) = self.queue.pop_front() {
                if let Some(pin) = self.visit(package)? {
                    return Ok(Outcome::Pin(pin));
                }
            }
            let Some((from, relation)) = self.deferred.pop_front() else {
                break;
            };
            if let Some(pin) = self.satisfy(from, &relation)? {
                return Ok(Outcome::Pin(pin));
            }
        }
        self.check_clashes()?;
        Ok(Outcome::Solved(self.selected.into_values().collect()))
    }

    /// Refuses a selection in which one package conflicts with (or breaks) another.
    fn check_clashes(&self) -> Result<(), ResolveError> {
        for &package in self.selected.values() {
            for clash in self.universe.clashes(package)? {
                let mut others: Vec<usize> = Vec::new();
                if let Some(&real) = self.selected.get(clash.atom.name.as_str()) {
                    others.push(real);
                }
                for provider in self.universe.providers(&clash.atom.name)? {
                    let name = self.universe.package(provider.package).name;
                    if self.selected.get(name) == Some(&provider.package) {
                        others.push(provider.package);
                    }
                }
                for other in others {
                    if self.universe.clash_hits(package, clash, other)? {
                        return Err(self.clash_error(package, clash, other));
                    }
                }
            }
        }
        Ok(())
    }

    fn clash_error(&self, package: usize, clash: &Clash, other: usize) -> ResolveError {
        let (declarer, victim) = (self.universe.package(package), self.universe.package(other));
        ResolveError::Conflict(Box::new(super::Conflict {
            package: declarer.name.to_owned(),
            version: declarer.version.to_owned(),
            field: clash.field,
            relation: clash.atom.to_string(),
            other: victim.name.to_owned(),
            other_version: victim.version.to_owned(),
            package_chain: self.chain(package).join(" -> "),
            other_chain: self.chain(other).join(" -> "),
        }))
    }

    /// A selected package that `candidate` clashes with, or that clashes with `candidate`, as
    /// (declarer, clash, the other).
    fn clash_with_selection(
        &self,
        candidate: usize,
    ) -> Result<Option<(usize, &Clash, usize)>, ResolveError> {
        for &other in self.selected.values() {
            for clash in self.universe.clashes(candidate)? {
                if self.universe.clash_hits(candidate, clash, other)? {
                    return Ok(Some((candidate, clash, other)));
                }
            }
            for clash in self.universe.clashes(other)? {
                if self.universe.clash_hits(other, clash, candidate)? {
                    return Ok(Some((other, clash, candidate)));
                }
            }
        }
        Ok(None)
    }

    /// Why `candidate` cannot join the selection, if a clash is the reason.
    fn clash_reason(&self, candidate: usize) -> Result<Option<String>, ResolveError> {
        let Some((declarer, clash, other)) = self.clash_with_selection(candidate)? else {
            return Ok(None);
        };
        let (d, o) = (
            self.universe.package(declarer),
            self.universe.package(other),
        );
        let selected = if declarer == candidate {
            other
        } else {
            declarer
        };
        Ok(Some(format!(
            "{} {} declares {}: {}, so it cannot be installed with {} {} (selected by {})",
            d.name,
            d.version,
            clash.field,
            clash.atom,
            o.name,
            o.version,
            self.chain(selected).join(" -> ")
        )))
    }

    fn select_seed(&mut self, seed: &Seed) -> Result<(), ResolveError> {
        let atom = Atom {
            name: seed.name.clone(),
            arch: ArchQualifier::Implicit,
            version: None,
        };
        match self.best_real(&atom, false)? {
            Some(package) => {
                self.select(package, None, seed.name.clone());
                Ok(())
            }
            None => Err(ResolveError::Unsatisfiable {
                chain: vec![seed.name.clone()],
                reason: self.explain(&atom)?,
            }),
        }
    }

    fn select_virtual_seed(&mut self, seed: &Seed) -> Result<(), ResolveError> {
        let atom = Atom {
            name: seed.name.clone(),
            arch: ArchQualifier::Implicit,
            version: None,
        };
        if self.satisfied_by_selection(&atom)? {
            return Ok(());
        }
        if let Some(package) = self.best_provider(&atom)? {
            let name = self.universe.package(package).name;
            self.select(package, None, format!("{} (provided by {name})", seed.name));
            return Ok(());
        }
        Err(match seed.origin {
            SeedOrigin::Include if !self.universe.is_provided(&seed.name) => {
                ResolveError::IncludeNotFound {
                    package: seed.name.clone(),
                    arch: self.universe.arch().to_string(),
                }
            }
            SeedOrigin::Variant(variant) if !self.universe.is_provided(&seed.name) => {
                ResolveError::SeedNotFound {
                    variant,
                    package: seed.name.clone(),
                    arch: self.universe.arch().to_string(),
                }
            }
            _ => ResolveError::Unsatisfiable {
                chain: vec![seed.name.clone()],
                reason: self.explain(&atom)?,
            },
        })
    }

    /// Queues the dependencies of a newly selected package.
    fn visit(&mut self, package: usize) -> Result<Option<Pin>, ResolveError> {
        let record = self.universe.package(package);
        let details = self.universe.details(package)?;
        let fields = [
            ("Pre-Depends", details.pre_depends.as_deref()),
            ("Depends", details.depends.as_deref()),
        ];
        for (field, text) in fields {
            let Some(text) = text else { continue };
            let relations = parse_relations(text).map_err(|source| ResolveError::BadRelation {
                package: record.name.to_owned(),
                version: record.version.to_owned(),
                field,
                source,
            })?;
            for mut relation in relations {
                relation
                    .alternatives
                    .retain(|atom| !NOT_PULLED_BY_DEPENDENCIES.contains(&atom.name.as_str()));
                let direct = match relation.alternatives.as_slice() {
                    [] => continue,
                    [only] => !self.universe.named(&only.name).is_empty(),
                    _ => false,
                };
                if direct {
                    if let Some(pin) = self.satisfy(package, &relation)? {
                        return Ok(Some(pin));
                    }
                } else if !self.relation_satisfied(&relation)? {
                    self.deferred.push_back((package, relation));
                }
            }
        }
        Ok(None)
    }

    /// Makes `relation` of package `from` hold, selecting a package if needed.
    fn satisfy(&mut self, from: usize, relation: &Relation) -> Result<Option<Pin>, ResolveError> {
        if self.relation_satisfied(relation)? {
            return Ok(None);
        }
        let mut conflict = None;
        let mut reasons = Vec::new();
        for atom in &relation.alternatives {
            match self.choose(atom)? {
                Choice::Select { package, via } => {
                    let step = match via {
                        Some(provider) => format!(
                            "{atom} (provided by {})",
                            self.universe.package(provider).name
                        ),
                        None => atom.to_string(),
                    };
                    self.select(package, Some(from), step);
                    return Ok(None);
                }
                Choice::Conflict(reason) => {
                    conflict.get_or_insert(atom);
                    reasons.push((atom, reason));
                }
                Choice::Impossible(reason) => reasons.push((atom, reason)),
            }
        }
        let mut chain = self.chain(from);
        if let Some(atom) = conflict {
            chain.push(atom.to_string());
            return Ok(Some(Pin {
                atom: atom.clone(),
                chain,
            }));
        }
        chain.push(relation.to_string());
        let reason = match reasons.as_slice() {
            [(_, reason)] => reason.clone(),
            _ => {
                let each: Vec<String> = reasons
                    .iter()
                    .map(|(atom, reason)| format!("{}: {reason}", atom.name))
                    .collect();
                format!("no alternative can be installed ({})", each.join("; "))
            }
        };
        Err(ResolveError::Unsatisfiable { chain, reason })
    }

    fn choose(&self, atom: &Atom) -> Result<Choice, ResolveError> {
        let mut conflict = None;
        match self.selected.get(atom.name.as_str()) {
            Some(&chosen) => {
                conflict = Some(format!(
                    "{} {} is already selected (by {})",
                    atom.name,
                    self.universe.package(chosen).version,
                    self.chain(chosen).join(" -> ")
                ));
            }
            None => {
                if let Some(package) = self.best_real(atom, true)? {
                    return Ok(Choice::Select { package, via: None });
                }
            }
        }
        if let Some(package) = self.best_provider(atom)? {
            return Ok(Choice::Select {
                package,
                via: Some(package),
            });
        }
        Ok(match conflict {
            Some(reason) => Choice::Conflict(reason),
            None => Choice::Impossible(self.explain(atom)?),
        })
    }

    /// The highest version of `atom.name` that satisfies it and every pin on the name (and,
    /// with `avoid_clashes`, clashes with nothing selected).
    fn best_real(&self, atom: &Atom, avoid_clashes: bool) -> Result<Option<usize>, ResolveError> {
        let mut best: Option<usize> = None;
        for &candidate in self.universe.named(&atom.name) {
            if !self.universe.real_satisfies(candidate, atom)?
                || !self.pins_allow(candidate)?
                || (avoid_clashes && self.clash_with_selection(candidate)?.is_some())
            {
                continue;
            }
            best = match best {
                Some(current)
                    if self.universe.version(current)? >= self.universe.version(candidate)? =>
                {
                    Some(current)
                }
                _ => Some(candidate),
            };
        }
        Ok(best)
    }

    /// The provider of `atom` to add: not conflicting with a selected name, most basic
    /// priority first, then by name, then the highest version.
    fn best_provider(&self, atom: &Atom) -> Result<Option<usize>, ResolveError> {
        let mut best = None;
        for provider in self.universe.providers(&atom.name)? {
            let record = self.universe.package(provider.package);
            if self.selected.contains_key(record.name)
                || !self.universe.provider_satisfies(&provider, atom)
                || !self.pins_allow(provider.package)?
                || self.clash_with_selection(provider.package)?.is_some()
            {
                continue;
            }
            let key = (
                priority_rank(&record),
                record.name,
                Reverse(self.universe.version(provider.package)?),
                provider.package,
            );
            if best.as_ref().is_none_or(|(current, _)| key < *current) {
                best = Some((key, provider.package));
            }
        }
        Ok(best.map(|(_, package)| package))
    }

    fn pins_allow(&self, package: usize) -> Result<bool, ResolveError> {
        let name = self.universe.package(package).name;
        for pin in self.pins.get(name).map_or(&[][..], Vec::as_slice) {
            if !self.universe.real_satisfies(package, &pin.atom)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn relation_satisfied(&self, relation: &Relation) -> Result<bool, ResolveError> {
        for atom in &relation.alternatives {
            if self.satisfied_by_selection(atom)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn satisfied_by_selection(&self, atom: &Atom) -> Result<bool, ResolveError> {
        if let Some(&chosen) = self.selected.get(atom.name.as_str()) {
            if self.universe.real_satisfies(chosen, atom)? {
                return Ok(true);
            }
        }
        Ok(self.universe.providers(&atom.name)?.iter().any(|provider| {
            let name = self.universe.package(provider.package).name;
            self.selected.get(name) == Some(&provider.package)
                && self.universe.provider_satisfies(provider, atom)
        }))
    }

    fn select(&mut self, package: usize, from: Option<usize>, step: String) {
        let name = self.universe.package(package).name;
        self.selected.insert(name, package);
        self.links.insert(package, Link { from, step });
        self.queue.push_back(package);
    }

    /// The steps from a seed to `package`, as `apt`, `libapt-pkg7.0 (>= 3.0)`, ...
    fn chain(&self, package: usize) -> Vec<String> {
        let mut steps = Vec::new();
        let mut current = Some(package);
        while let Some(at) = current {
            let Some(link) = self.links.get(&at) else {
                break;
            };
            steps.push(link.step.clone());
            current = link.from;
        }
        steps.reverse();
        steps
    }

    /// Why the versions of `atom.name` that fit it and its pins are refused, when every one
    /// of them clashes with the selection.
    fn real_clash_reason(&self, atom: &Atom) -> Result<Option<String>, ResolveError> {
        let mut reason = None;
        for &candidate in self.universe.named(&atom.name) {
            if !self.universe.real_satisfies(candidate, atom)? || !self.pins_allow(candidate)? {
                continue;
            }
            match self.clash_reason(candidate)? {
                Some(why) => {
                    reason.get_or_insert(why);
                }
                None => return Ok(None),
            }
        }
        Ok(reason)
    }

    /// Why nothing satisfies `atom`, for the error message.
    fn explain(&self, atom: &Atom) -> Result<String, ResolveError> {
        let arch = self.universe.arch();
        let real = self.universe.named(&atom.name);
        let providers = self.universe.providers(&atom.name)?;
        if real.is_empty() && providers.is_empty() {
            return Ok(format!(
                "no package of that name, and none provides it, for {arch} or all"
            ));
        }
        let mut parts = Vec::new();
        if !real.is_empty() {
            let mut versions = Vec::new();
            let mut version_ok = false;
            let mut arch_ok = false;
            let mut all_ok = false;
            for &candidate in real {
                versions.push((self.universe.version(candidate)?, candidate));
                let record = self.universe.package(candidate);
                let this_arch = self.universe.arch_satisfies(&record, &atom.arch);
                let this_version = match &atom.version {
                    None => true,
                    Some((op, wanted)) => op.holds(self.universe.version(candidate)?, wanted),
                };
                version_ok |= this_version;
                arch_ok |= this_arch;
                all_ok |= this_version && this_arch;
            }
            versions.sort_by(|a, b| b.cmp(a));
            let listed: Vec<&str> = versions
                .iter()
                .map(|&(_, i)| self.universe.package(i).version)
                .collect();
            if !version_ok {
                parts.push(match listed.as_slice() {
                    [one] => format!("only {one} is available"),
                    many => format!("available versions are {}", many.join(", ")),
                });
            } else if !arch_ok || !all_ok {
                parts.push(match &atom.arch {
                    ArchQualifier::Any => format!(
                        "{} is not Multi-Arch: allowed, so {}:any cannot match it",
                        atom.name, atom.name
                    ),
                    ArchQualifier::Named(wanted) => {
                        format!("only {arch} and all packages are considered, not {wanted}")
                    }
                    _ => format!("no available version of {} fits", atom.name),
                });
            } else if let Some(reason) = self.real_clash_reason(atom)? {
                parts.push(reason);
            } else {
                let pins = self.pins.get(&atom.name).map_or(&[][..], Vec::as_slice);
                let wanted: Vec<String> = pins
                    .iter()
                    .map(|pin| format!("{} by {}", pin.atom, pin.chain.join(" -> ")))
                    .collect();
                parts.push(format!(
                    "{} is also needed as {}, and no version (of {}) satisfies both",
                    atom.name,
                    wanted.join(" and "),
                    listed.join(", ")
                ));
            }
        }
        if !providers.is_empty() {
            let offered: Vec<String> = providers
                .iter()
                .map(|provider| {
                    let record = self.universe.package(provider.package);
                    match &provider.version {
                        Some(version) => format!("{} (= {version})", record.name),
                        None => format!("{} (unversioned)", record.name),
                    }
                })
                .collect();
            parts.push(format!(
                "provided by {}, which does not fit",
                offered.join(", ")
            ));
        }
        Ok(parts.join("; "))
    }
}
