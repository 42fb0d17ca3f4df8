//! Relationship fields (`Depends`, `Pre-Depends`, `Provides`): raw text from a Packages stanza
//! becomes [`Relation`]s of [`Atom`]s, parsed only for the packages the resolver visits.

use std::fmt;
use std::str::FromStr;

use debversion::Version;

/// A version comparison as written in a relationship field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Earlier,
    EarlierEqual,
    Equal,
    LaterEqual,
    Later,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        // `<` and `>` are the obsolete spellings of `<=` and `>=`; dpkg still reads them so.
        Some(match text {
            "<<" => Op::Earlier,
            "<=" | "<" => Op::EarlierEqual,
            "=" => Op::Equal,
            ">=" | ">" => Op::LaterEqual,
            ">>" => Op::Later,
            _ => return None,
        })
    }

    /// Whether `candidate OP wanted` holds in dpkg's version order.
    pub fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        let order = candidate.cmp(wanted);
        match self {
            Op::Earlier => order.is_lt(),
            Op::EarlierEqual => order.is_le(),
            Op::Equal => order.is_eq(),
            Op::LaterEqual => order.is_ge(),
            Op::Later => order.is_gt(),
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Earlier => "<<",
            Op::EarlierEqual => "<=",
            Op::Equal => "=",
            Op::LaterEqual => ">=",
            Op::Later => ">>",
        }
    }
}

/// The architecture qualifier after `name:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchQualifier {
    /// No qualifier: the dependent's own architecture (or any, for `Multi-Arch: foreign`).
    Implicit,
    /// `:any`: any architecture, but only from a `Multi-Arch: allowed` package.
    Any,
    /// `:native`: the native architecture.
    Native,
    /// `:ARCH`: that architecture.
    Named(String),
}

/// One possibility of a relationship: a package name with optional architecture and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    pub name: String,
    pub arch: ArchQualifier,
    pub version: Option<(Op, Version)>,
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match &self.arch {
            ArchQualifier::Implicit => {}
            ArchQualifier::Any => f.write_str(":any")?,
            ArchQualifier::Native => f.write_str(":native")?,
            ArchQualifier::Named(arch) => write!(f, ":{arch}")?,
        }
        if let Some((op, version)) = &self.version {
            write!(f, " ({} {version})", op.symbol())?;
        }
        Ok(())
    }
}

/// One comma-separated entry: satisfied when any of its alternatives is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub alternatives: Vec<Atom>,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, atom) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{atom}")?;
        }
        Ok(())
    }
}

/// What is wrong with a relationship field.
#[derive(Debug, thiserror::Error)]
pub enum RelationError {
    #[error("{entry:?} has no package name")]
    NoName { entry: String },
    #[error("{entry:?} has an invalid package name")]
    BadName { entry: String },
    #[error("{entry:?} has an unclosed or stray bracket")]
    Unbalanced { entry: String },
    #[error("{entry:?} has an unknown version operator")]
    BadOperator { entry: String },
    #[error("{entry:?} has an invalid version")]
    BadVersion {
        entry: String,
        #[source]
        source: debversion::ParseError,
    },
    #[error("{entry:?} offers alternatives, which Provides does not allow")]
    AlternativeInProvides { entry: String },
    #[error("{entry:?} provides a version with an operator other than `=`")]
    ProvidesNotEqual { entry: String },
}

/// Parses a `Depends`/`Pre-Depends` value.
pub fn parse_relations(text: &str) -> Result<Vec<Relation>, RelationError> {
    let mut relations = Vec::new();
    for entry in text.split(',') {
        if entry.trim().is_empty() {
            // dpkg tolerates a trailing comma; so do we.
            continue;
        }
        let alternatives = entry
            .split('|')
            .map(parse_atom)
            .collect::<Result<Vec<_>, _>>()?;
        relations.push(Relation { alternatives });
    }
    Ok(relations)
}

/// Parses a `Provides` value: plain names, each with at most an exact `(= VERSION)`.
pub fn parse_provides(text: &str) -> Result<Vec<Atom>, RelationError> {
    let mut atoms = Vec::new();
    for entry in text.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        if entry.contains('|') {
            return Err(RelationError::AlternativeInProvides {
                entry: entry.trim().to_string(),
            });
        }
        let atom = parse_atom(entry)?;
        if matches!(atom.version, Some((op, _)) if op != Op::Equal) {
            return Err(RelationError::ProvidesNotEqual {
                entry: entry.trim().to_string(),
            });
        }
        atoms.push(atom);
    }
    Ok(atoms)
}

fn parse_atom(entry: &str) -> Result<Atom, RelationError> {
    let trimmed = entry.trim();
    // Architecture restrictions `[...]` and build profiles `<...>` belong to source packages;
    // they should not appear in a binary index, and when they do they restrict nothing here.
    let text = strip_groups(trimmed)?;
    let (head, version) = match text.split_once('(') {
        Some((head, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .map(str::trim)
                .filter(|inner| !inner.contains(['(', ')']))
                .ok_or_else(|| RelationError::Unbalanced {
                    entry: trimmed.to_string(),
                })?;
            (head.trim(), Some(parse_constraint(trimmed, inner)?))
        }
        None if text.contains(')') => {
            return Err(RelationError::Unbalanced {
                entry: trimmed.to_string(),
            })
        }
        None => (text.trim(), None),
    };
    if head.is_empty() {
        return Err(RelationError::NoName {
            entry: trimmed.to_string(),
        });
    }
    let (name, arch) = match head.split_once(':') {
        Some((name, "any")) => (name, ArchQualifier::Any),
        Some((name, "native")) => (name, ArchQualifier::Native),
        Some((name, arch)) if is_token(arch) => (name, ArchQualifier::Named(arch.to_string())),
        Some(_) => {
            return Err(RelationError::BadName {
                entry: trimmed.to_string(),
            })
        }
        None => (head, ArchQualifier::Implicit),
    };
    if !is_token(name) {
        return Err(RelationError::BadName {
            entry: trimmed.to_string(),
        });
    }
    Ok(Atom {
        name: name.to_string(),
        arch,
        version,
    })
}

fn parse_constraint(entry: &str, inner: &str) -> Result<(Op, Version), RelationError> {
    let split = inner
        .find(|c: char| !matches!(c, '<' | '=' | '>'))
        .unwrap_or(inner.len());
    let op = Op::parse(&inner[..split]).ok_or_else(|| RelationError::BadOperator {
        entry: entry.to_string(),
    })?;
    let version =
        Version::from_str(inner[split..].trim()).map_err(|source| RelationError::BadVersion {
            entry: entry.to_string(),
            source,
        })?;
    Ok((op, version))
}

/// Removes every `[...]` and `<...>` group, refusing unbalanced ones.
fn strip_groups(text: &str) -> Result<String, RelationError> {
    let mut out = String::with_capacity(text.len());
    let mut closing = None;
    let mut in_parens = false;
    for c in text.chars() {
        match (closing, c) {
            (None, '[') => closing = Some(']'),
            // `<` inside parentheses is a version operator, not a build profile.
            (None, '<') if !in_parens => closing = Some('>'),
            (Some(end), c) if c == end => closing = None,
            (Some(_), _) => {}
            (None, ']') => {
                return Err(RelationError::Unbalanced {
                    entry: text.to_string(),
                })
            }
            (None, c) => {
                in_parens = match c {
                    '(' => true,
                    ')' => false,
                    _ => in_parens,
                };
                out.push(c);
            }
        }
    }
    if closing.is_some() {
        return Err(RelationError::Unbalanced {
            entry: text.to_string(),
        });
    }
    Ok(out)
}

/// Package and architecture names: lower-case letters, digits and `+-.`, as Policy allows
/// (upper case is tolerated because old indices carry it).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().expect("valid version")
    }

    #[test]
    fn parses_alternatives_versions_and_qualifiers() {
        let relations =
            parse_relations("libc6 (>= 2.36), perl:any | perl-base (<< 5.40~), foo:amd64,")
                .expect("parses");
        assert_eq!(relations.len(), 3);
        assert_eq!(
            relations[0].alternatives[0].version,
            Some((Op::LaterEqual, v("2.36")))
        );
        assert_eq!(relations[1].alternatives[0].arch, ArchQualifier::Any);
        assert_eq!(relations[1].alternatives[1].name, "perl-base");
        assert_eq!(
            relations[2].alternatives[0].arch,
            ArchQualifier::Named("amd64".to_string())
        );
        assert_eq!(relations[1].to_string(), "perl:any | perl-base (<< 5.40~)");
    }

    #[test]
    fn tolerates_restrictions_and_tight_operators() {
        let relations =
            parse_relations("a [amd64] <!nocheck> (>=1.0) , b:native (<<2)").expect("parses");
        assert_eq!(relations[0].alternatives[0].name, "a");
        assert_eq!(
            relations[0].alternatives[0].version,
            Some((Op::LaterEqual, v("1.0")))
        );
        assert_eq!(relations[1].alternatives[0].arch, ArchQualifier::Native);
        assert_eq!(
            relations[1].alternatives[0].version,
            Some((Op::Earlier, v("2")))
        );
    }

    #[test]
    fn reads_obsolete_single_angle_operators_as_dpkg_does() {
        let relations = parse_relations("a (< 2), b (> 1)").expect("parses");
        assert_eq!(
            relations[0].alternatives[0].version.as_ref().map(|x| x.0),
            Some(Op::EarlierEqual)
        );
        assert_eq!(
            relations[1].alternatives[0].version.as_ref().map(|x| x.0),
            Some(Op::LaterEqual)
        );
    }

    #[test]
    fn refuses_malformed_entries() {
        assert!(matches!(
            parse_relations("a (>= 1"),
            Err(RelationError::Unbalanced { .. })
        ));
        assert!(matches!(
            parse_relations("a (~= 1)"),
            Err(RelationError::BadOperator { .. })
        ));
        assert!(matches!(
            parse_relations("a (>= !!)"),
            Err(RelationError::BadVersion { .. })
        ));
        assert!(matches!(
            parse_relations("a | , b"),
            Err(RelationError::NoName { .. })
        ));
        assert!(matches!(
            parse_relations("a b"),
            Err(RelationError::BadName { .. })
        ));
    }

    #[test]
    fn provides_allows_only_exact_versions() {
        let provides = parse_provides("mail-transport-agent, libfoo (= 1.2)").expect("parses");
        assert_eq!(provides[1].version, Some((Op::Equal, v("1.2"))));
        assert!(matches!(
            parse_provides("foo (>= 1)"),
            Err(RelationError::ProvidesNotEqual { .. })
        ));
        assert!(matches!(
            parse_provides("foo | bar"),
            Err(RelationError::AlternativeInProvides { .. })
        ));
    }
}
