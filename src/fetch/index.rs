//! Packages indices, streamed once through the [`crate::deb822`] reader: each package keeps the
//! fields the resolver and downloader need as byte ranges into one compact text per index
//! part (no `String` per field), and where its stanza lies in the verified index file, which
//! stays open so dpkg's `available` can be cut from it later. A [`RepoIndex`] can only be built
//! from bytes whose hash a verified Release vouched for.

use std::io::BufRead;

use super::hash::Sha256Digest;
use crate::deb822::{ReadError, StreamParagraph, StreamReader};

/// One binary package as listed in a verified Packages index, owned: what a resolution keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// `Multi-Arch:` as written (`same`, `foreign`, `allowed`), if any.
    pub multi_arch: Option<String>,
    pub priority: Option<String>,
    pub essential: bool,
    pub depends: Option<String>,
    pub pre_depends: Option<String>,
    pub provides: Option<String>,
    pub conflicts: Option<String>,
    pub breaks: Option<String>,
    pub replaces: Option<String>,
    /// Path of the .deb relative to the mirror root.
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Where the package's stanza is in the index it came from.
    pub stanza: StanzaRef,
}

/// A package of a [`RepoIndex`], borrowed from it: the same fields as [`Package`], folded
/// relationship fields included, without copying them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageRef<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub architecture: &'a str,
    pub multi_arch: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub essential: bool,
    pub depends: Option<&'a str>,
    pub pre_depends: Option<&'a str>,
    pub provides: Option<&'a str>,
    pub conflicts: Option<&'a str>,
    pub breaks: Option<&'a str>,
    pub replaces: Option<&'a str>,
    pub filename: &'a str,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub stanza: StanzaRef,
}

impl PackageRef<'_> {
    /// An owned copy, for the packages a resolution keeps.
    pub fn to_package(&self) -> Package {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Package {
            name: self.name.to_owned(),
            version: self.version.to_owned(),
            architecture: self.architecture.to_owned(),
            multi_arch: owned(self.multi_arch),
            priority: owned(self.priority),
            essential: self.essential,
            depends: owned(self.depends),
            pre_depends: owned(self.pre_depends),
            provides: owned(self.provides),
            conflicts: owned(self.conflicts),
            breaks: owned(self.breaks),
            replaces: owned(self.replaces),
            filename: self.filename.to_owned(),
            size: self.size,
            sha256: self.sha256,
            stanza: self.stanza,
        }
    }
}

/// The place of a package's stanza in a verified Packages text held by its [`RepoIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StanzaRef {
    part: u32,
    start: u64,
    end: u64,
}

/// Why a Packages index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexParseError {
    #[error("{index}: package stanza {stanza} ({package}) has no valid {field}")]
    Field {
        index: String,
        stanza: usize,
        package: String,
        field: &'static str,
    },
    #[error("{index}: package stanza {stanza} is not valid deb822")]
    Syntax {
        index: String,
        stanza: usize,
        #[source]
        source: ReadError,
    },
    #[error("{index}: cannot read the verified index back for dpkg's available file")]
    Reread {
        index: String,
        #[source]
        source: std::io::Error,
    },
}

/// A byte range of a part's compact text; an empty one stands for an absent field.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// One package in compact form: ranges into its part's text.
#[derive(Debug, Clone)]
struct Record {
    name: Span,
    version: Span,
    architecture: Span,
    multi_arch: Span,
    priority: Span,
    depends: Span,
    pre_depends: Span,
    provides: Span,
    conflicts: Span,
    breaks: Span,
    replaces: Span,
    filename: Span,
    essential: bool,
    size: u64,
    sha256: Sha256Digest,
    stanza: StanzaRef,
}

/// Where the full stanzas of one part can be read again.
#[derive(Debug)]
pub(crate) enum Stanzas {
    /// The verified, decompressed index file, opened once and kept open.
    File(std::fs::File),
    /// The index text itself (tests).
    #[allow(dead_code)]
    Text(String),
}

/// One parsed Packages file: the compact text its records point into.
#[derive(Debug, Default)]
pub(crate) struct Part {
    text: String,
    records: Vec<Record>,
}

/// Every package of the requested suite, components and architecture.
#[derive(Debug, Default)]
pub struct RepoIndex {
    /// The compact text of each part; `records` point into `texts[record.stanza.part]`.
    texts: Vec<String>,
    records: Vec<Record>,
    /// The names of the parts (their URLs), for errors.
    names: Vec<String>,
    stanzas: Vec<Stanzas>,
}

impl RepoIndex {
    /// Builds the index from Packages files that were verified against the Release; only the
    /// fetch module can vouch for that, hence `pub(crate)`. Parts are in component order.
    pub(crate) fn from_verified(parts: Vec<(String, Part, Stanzas)>) -> RepoIndex {
        let mut index = RepoIndex::default();
        for (name, part, stanzas) in parts {
            index.names.push(name);
            index.texts.push(part.text);
            index.stanzas.push(stanzas);
            if index.records.is_empty() {
                index.records = part.records;
            } else {
                index.records.extend(part.records);
            }
        }
        index
    }

    /// Parses a Packages file's text without any verification: for tests of code that
    /// consumes an index.
    #[cfg(test)]
    pub(crate) fn from_unverified_text(text: &str) -> RepoIndex {
        let part = parse_packages("test", 0, text.as_bytes()).expect("valid test Packages text");
        RepoIndex::from_verified(vec![(
            "test".to_owned(),
            part,
            Stanzas::Text(text.to_owned()),
        )])
    }

    /// How many packages the index lists.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Package `i`, in index order.
    pub fn get(&self, i: usize) -> PackageRef<'_> {
        let record = &self.records[i];
        let text = &self.texts[record.stanza.part as usize];
        let at = |span: Span| &text[span.start as usize..(span.start + span.len) as usize];
        let opt = |span: Span| Some(at(span)).filter(|v| !v.is_empty());
        PackageRef {
            name: at(record.name),
            version: at(record.version),
            architecture: at(record.architecture),
            multi_arch: opt(record.multi_arch),
            priority: opt(record.priority),
            essential: record.essential,
            depends: opt(record.depends),
            pre_depends: opt(record.pre_depends),
            provides: opt(record.provides),
            conflicts: opt(record.conflicts),
            breaks: opt(record.breaks),
            replaces: opt(record.replaces),
            filename: at(record.filename),
            size: record.size,
            sha256: record.sha256,
            stanza: record.stanza,
        }
    }

    /// Every package, in index order.
    pub fn packages(&self) -> impl Iterator<Item = PackageRef<'_>> + '_ {
        (0..self.records.len()).map(|i| self.get(i))
    }

    /// The index stanzas of `chosen`, in index order, each ending in a blank line: the text of
    /// dpkg's `available` file as debootstrap writes it.
    pub fn stanzas(&self, chosen: &[Package]) -> Result<String, IndexParseError> {
        use std::os::unix::fs::FileExt;
        let mut refs: Vec<StanzaRef> = chosen.iter().map(|p| p.stanza).collect();
        refs.sort_by_key(|r| (r.part, r.start));
        refs.dedup();
        let mut out = String::new();
        for r in refs {
            let Some(source) = self.stanzas.get(r.part as usize) else {
                continue;
            };
            let bytes = match source {
                Stanzas::Text(text) => text
                    .as_bytes()
                    .get(r.start as usize..r.end as usize)
                    .unwrap_or_default()
                    .to_vec(),
                Stanzas::File(file) => {
                    let mut bytes = vec![0; (r.end - r.start) as usize];
                    file.read_exact_at(&mut bytes, r.start).map_err(|source| {
                        IndexParseError::Reread {
                            index: self.names[r.part as usize].clone(),
                            source,
                        }
                    })?;
                    bytes
                }
            };
            out.push_str(String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']));
            out.push_str("\n\n");
        }
        Ok(out)
    }
}

/// Parses a Packages file streamed from `input`, the `part`-th of its index; `index` names it
/// in errors. Only the current stanza is held, besides the compact fields kept.
pub(crate) fn parse_packages(
    index: &str,
    part: u32,
    input: impl BufRead,
) -> Result<Part, IndexParseError> {
    let mut reader = StreamReader::new(input);
    let mut out = Part::default();
    let mut stanza = 0;
    loop {
        stanza += 1;
        let next = reader
            .next_paragraph()
            .map_err(|source| IndexParseError::Syntax {
                index: index.to_owned(),
                stanza,
                source,
            })?;
        let Some(paragraph) = next else {
            break;
        };
        let record = parse_stanza(index, stanza, part, &paragraph, &mut out.text)?;
        out.records.push(record);
    }
    out.text.shrink_to_fit();
    out.records.shrink_to_fit();
    Ok(out)
}

/// Appends `value` to the part's text and gives its range.
fn keep(text: &mut String, value: &str) -> Span {
    let start = text.len() as u32;
    text.push_str(value);
    Span {
        start,
        len: value.len() as u32,
    }
}

fn parse_stanza(
    index: &str,
    stanza: usize,
    part: u32,
    found: &StreamParagraph<'_>,
    text: &mut String,
) -> Result<Record, IndexParseError> {
    let mut record = Record {
        name: Span::default(),
        version: Span::default(),
        architecture: Span::default(),
        multi_arch: Span::default(),
        priority: Span::default(),
        depends: Span::default(),
        pre_depends: Span::default(),
        provides: Span::default(),
        conflicts: Span::default(),
        breaks: Span::default(),
        replaces: Span::default(),
        filename: Span::default(),
        essential: false,
        size: 0,
        sha256: Sha256Digest([0; 32]),
        stanza: StanzaRef {
            part,
            start: found.start,
            end: found.end,
        },
    };
    let paragraph = &found.paragraph;
    let missing = |field: &'static str| IndexParseError::Field {
        index: index.to_owned(),
        stanza,
        package: paragraph.get("Package").unwrap_or("?").to_owned(),
        field,
    };
    let (mut size, mut sha256, mut filename) = (None, None, None);
    for field in paragraph.fields() {
        let slot = match field.name().len() {
            // Most fields (Description, Maintainer, MD5sum, ...) are not kept: decide by
            // length first so they cost one comparison.
            7 if field.is("Package") => &mut record.name,
            7 if field.is("Version") => &mut record.version,
            7 if field.is("Depends") => &mut record.depends,
            12 if field.is("Architecture") => &mut record.architecture,
            10 if field.is("Multi-Arch") => &mut record.multi_arch,
            8 if field.is("Priority") => &mut record.priority,
            11 if field.is("Pre-Depends") => &mut record.pre_depends,
            8 if field.is("Provides") => &mut record.provides,
            9 if field.is("Conflicts") => &mut record.conflicts,
            6 if field.is("Breaks") => &mut record.breaks,
            8 if field.is("Replaces") => &mut record.replaces,
            9 if field.is("Essential") => {
                record.essential = field.first_line() == "yes";
                continue;
            }
            8 if field.is("Filename") => {
                filename = Some(field.folded());
                continue;
            }
            4 if field.is("Size") => {
                size = Some(field.first_line().parse::<u64>().ok());
                continue;
            }
            6 if field.is("SHA256") => {
                sha256 = Some(Sha256Digest::from_hex(field.first_line()));
                continue;
            }
            _ => continue,
        };
        *slot = keep(text, &field.folded());
    }
    if record.name.len == 0 {
        return Err(IndexParseError::Field {
            index: index.to_owned(),
            stanza,
            package: "?".to_owned(),
            field: "Package",
        });
    }
    if record.version.len == 0 {
        return Err(missing("Version"));
    }
    if record.architecture.len == 0 {
        return Err(missing("Architecture"));
    }
    let filename = filename
        .filter(|f| is_safe_relative(f))
        .ok_or_else(|| missing("Filename"))?;
    record.filename = keep(text, &filename);
    record.size = size.flatten().ok_or_else(|| missing("Size"))?;
    record.sha256 = sha256.flatten().ok_or_else(|| missing("SHA256"))?;
    Ok(record)
}

/// A mirror-relative path with no `..`, no absolute start and no empty parts, also once
/// percent-decoded (the server decodes `%2e%2e` to `..`), and no encoded `/` or NUL.
fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|part| {
            let decoded = percent_decoded(part);
            !decoded.is_empty()
                && decoded != b"."
                && decoded != b".."
                && !decoded.contains(&b'/')
                && !decoded.contains(&0)
        })
}

/// `%XX` sequences decoded (others left as written), as an HTTP server reads a path segment.
fn percent_decoded(part: &str) -> Vec<u8> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Package: a\nVersion: 1.0-1\nArchitecture: amd64\nPriority: required\n\
Essential: yes\nDepends: b (>= 2), c | d\nDescription: x\n more text\nFilename: pool/main/a/a_1.0-1_amd64.deb\n\
Size: 10\nSHA256: 0000000000000000000000000000000000000000000000000000000000000001\n\n\
Package: b\nVersion: 2\nArchitecture: all\nMulti-Arch: foreign\nFilename: pool/main/b/b_2_all.deb\nSize: 20\n\
SHA256: 0000000000000000000000000000000000000000000000000000000000000002\n";

    fn parse(text: &str) -> Result<RepoIndex, IndexParseError> {
        let part = parse_packages("t", 0, text.as_bytes())?;
        Ok(RepoIndex::from_verified(vec![(
            "t".to_owned(),
            part,
            Stanzas::Text(text.to_owned()),
        )]))
    }

    fn field_error(err: IndexParseError) -> (String, &'static str) {
        match err {
            IndexParseError::Field { package, field, .. } => (package, field),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn keeps_the_fields_the_pipeline_uses() {
        let index = parse(TWO).expect("parses");
        assert_eq!(index.len(), 2);
        let (a, b) = (index.get(0), index.get(1));
        assert_eq!(a.name, "a");
        assert!(a.essential);
        assert_eq!(a.depends, Some("b (>= 2), c | d"));
        assert_eq!(b.multi_arch, Some("foreign"));
        assert_eq!(b.size, 20);
        assert_eq!(b.depends, None);
    }

    #[test]
    fn a_folded_depends_keeps_every_line() {
        let text = TWO.replace(
            "Depends: b (>= 2), c | d\n",
            "Depends: b (>= 2),\n c\n  | d,\n\te\nConflicts: x,\n y\n",
        );
        let index = parse(&text).expect("parses");
        assert_eq!(index.get(0).depends, Some("b (>= 2), c | d, e"));
        assert_eq!(index.get(0).conflicts, Some("x, y"));
    }

    #[test]
    fn field_names_are_case_insensitive() {
        let text = TWO
            .replace("Depends:", "depends:")
            .replace("Package: b", "PACKAGE: b");
        let index = parse(&text).expect("parses");
        assert_eq!(index.get(0).depends, Some("b (>= 2), c | d"));
        assert_eq!(index.get(1).name, "b");
    }

    #[test]
    fn stanzas_are_cut_from_the_index_as_written() {
        let text = TWO.replace("\n\nPackage: b", "\n \t\n\nPackage: b");
        let index = parse(&text).expect("parses");
        let b = index.get(1).to_package();
        assert_eq!(
            index.stanzas(&[b]).expect("stanzas"),
            "Package: b\nVersion: 2\nArchitecture: all\nMulti-Arch: foreign\n\
             Filename: pool/main/b/b_2_all.deb\nSize: 20\n\
             SHA256: 0000000000000000000000000000000000000000000000000000000000000002\n\n"
        );
    }

    #[test]
    fn refuses_a_filename_that_leaves_the_mirror() {
        for bad in [
            "../../etc/passwd",
            "pool/%2e%2e/%2E%2e/etc/passwd",
            "pool/%2e/x.deb",
            "pool/a%2f..%2fb.deb",
            "/pool/x.deb",
            "pool//x.deb",
        ] {
            let text = TWO.replace("pool/main/b/b_2_all.deb", bad);
            let err = parse(&text).expect_err(bad);
            assert_eq!(field_error(err), ("b".to_owned(), "Filename"), "{bad}");
        }
        // A percent sign that decodes to nothing dangerous is an ordinary name.
        let text = TWO.replace("b_2_all.deb", "b_2%2b1_all.deb");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn refuses_a_missing_hash() {
        let text = TWO.replace(
            "SHA256: 0000000000000000000000000000000000000000000000000000000000000002\n",
            "",
        );
        let err = parse(&text).expect_err("refused");
        assert_eq!(field_error(err).1, "SHA256");
    }

    #[test]
    fn refuses_a_stanza_that_is_not_deb822() {
        let text = TWO.replace("Multi-Arch: foreign\n", "Multi-Arch foreign\n");
        let err = parse(&text).expect_err("refused");
        assert!(
            matches!(err, IndexParseError::Syntax { stanza: 2, .. }),
            "{err:?}"
        );
    }
}
