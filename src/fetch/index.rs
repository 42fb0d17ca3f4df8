//! Packages indices, streamed once through the [`crate::deb822`] reader. Every package keeps
//! only what the resolver scans the whole index for (name, version, architecture, Multi-Arch,
//! Priority, Essential, Provides), as byte ranges into one compact text per index part (no
//! `String` per field), and where its stanza lies in the verified index file, which stays open.
//! The rest (relationships, Filename, Size, SHA256) is read back from that stanza for the few
//! packages the resolver visits ([`RepoIndex::details`]), and dpkg's `available` is cut from
//! it. Every stanza is checked in full when the index is read, so reading one back cannot fail
//! on its content. A [`RepoIndex`] can only be built from bytes whose hash a verified Release
//! vouched for.

use std::borrow::Cow;
use std::io::BufRead;

use super::hash::Sha256Digest;
use crate::deb822::{Comments, Paragraph, ReadError, StreamParagraph, StreamReader, SyntaxError};

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

/// A package of a [`RepoIndex`], borrowed from it: the fields the resolver scans every
/// package for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageRef<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub architecture: &'a str,
    pub multi_arch: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub essential: bool,
    pub provides: Option<&'a str>,
    pub stanza: StanzaRef,
}

/// The fields of a package read back from its stanza, for the packages the resolver visits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub depends: Option<String>,
    pub pre_depends: Option<String>,
    pub conflicts: Option<String>,
    pub breaks: Option<String>,
    pub replaces: Option<String>,
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// The place of a package's stanza in a verified Packages text held by its [`RepoIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StanzaRef {
    part: u32,
    len: u32,
    start: u64,
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
    provides: Span,
    essential: bool,
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
            provides: opt(record.provides),
            stanza: record.stanza,
        }
    }

    /// The text of a stanza, read back from the verified index.
    fn stanza_text(&self, r: StanzaRef) -> Result<String, IndexParseError> {
        use std::os::unix::fs::FileExt;
        let range = r.start..r.start + u64::from(r.len);
        let bytes = match &self.stanzas[r.part as usize] {
            Stanzas::Text(text) => text
                .as_bytes()
                .get(range.start as usize..range.end as usize)
                .unwrap_or_default()
                .to_vec(),
            Stanzas::File(file) => {
                let mut bytes = vec![0; r.len as usize];
                file.read_exact_at(&mut bytes, r.start).map_err(|source| {
                    IndexParseError::Reread {
                        index: self.names[r.part as usize].clone(),
                        source,
                    }
                })?;
                bytes
            }
        };
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// The relationships, Filename, Size and SHA256 of package `i`, read back from its stanza.
    pub fn details(&self, i: usize) -> Result<Details, IndexParseError> {
        let stanza = self.records[i].stanza;
        let text = self.stanza_text(stanza)?;
        let index = &self.names[stanza.part as usize];
        let syntax = |source: SyntaxError| IndexParseError::Syntax {
            index: index.clone(),
            stanza: i + 1,
            source: ReadError::Syntax(source),
        };
        let paragraph = crate::deb822::first_paragraph(&text, Comments::Refused)
            .map_err(syntax)?
            .ok_or_else(|| syntax(SyntaxError::NotAField { line: 1 }))?;
        let fields = Fields::read(index, i + 1, &paragraph)?;
        let owned = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned);
        Ok(Details {
            depends: owned(fields.depends),
            pre_depends: owned(fields.pre_depends),
            conflicts: owned(fields.conflicts),
            breaks: owned(fields.breaks),
            replaces: owned(fields.replaces),
            filename: fields.filename.into_owned(),
            size: fields.size,
            sha256: fields.sha256,
        })
    }

    /// Package `i` as an owned [`Package`], its stanza read back.
    pub fn package(&self, i: usize) -> Result<Package, IndexParseError> {
        let compact = self.get(i);
        let details = self.details(i)?;
        let owned = |v: Option<&str>| v.map(str::to_owned);
        Ok(Package {
            name: compact.name.to_owned(),
            version: compact.version.to_owned(),
            architecture: compact.architecture.to_owned(),
            multi_arch: owned(compact.multi_arch),
            priority: owned(compact.priority),
            essential: compact.essential,
            depends: details.depends,
            pre_depends: details.pre_depends,
            provides: owned(compact.provides),
            conflicts: details.conflicts,
            breaks: details.breaks,
            replaces: details.replaces,
            filename: details.filename,
            size: details.size,
            sha256: details.sha256,
            stanza: compact.stanza,
        })
    }

    /// Every package, in index order.
    pub fn packages(&self) -> impl Iterator<Item = PackageRef<'_>> + '_ {
        (0..self.records.len()).map(|i| self.get(i))
    }

    /// The index stanzas of `chosen`, in index order, each ending in a blank line: the text of
    /// dpkg's `available` file as debootstrap writes it.
    pub fn stanzas(
        &self,
        chosen: impl IntoIterator<Item = StanzaRef>,
    ) -> Result<String, IndexParseError> {
        let mut refs: Vec<StanzaRef> = chosen.into_iter().collect();
        refs.sort_by_key(|r| (r.part, r.start));
        refs.dedup();
        let mut out = String::new();
        for r in refs {
            if (r.part as usize) < self.stanzas.len() {
                out.push_str(self.stanza_text(r)?.trim_end_matches(['\n', '\r']));
                out.push_str("\n\n");
            }
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
fn keep(text: &mut String, value: Option<&str>) -> Span {
    let value = value.unwrap_or("");
    let start = text.len() as u32;
    text.push_str(value);
    Span {
        start,
        len: value.len() as u32,
    }
}

/// The fields of a stanza that the pipeline reads, checked: folded values borrowed from the
/// stanza where they are one line.
struct Fields<'p> {
    name: &'p str,
    version: Cow<'p, str>,
    architecture: Cow<'p, str>,
    multi_arch: Option<Cow<'p, str>>,
    priority: Option<Cow<'p, str>>,
    essential: bool,
    provides: Option<Cow<'p, str>>,
    depends: Option<Cow<'p, str>>,
    pre_depends: Option<Cow<'p, str>>,
    conflicts: Option<Cow<'p, str>>,
    breaks: Option<Cow<'p, str>>,
    replaces: Option<Cow<'p, str>>,
    filename: Cow<'p, str>,
    size: u64,
    sha256: Sha256Digest,
}

impl<'p> Fields<'p> {
    /// Reads and checks the fields of one stanza (the `stanza`-th of `index`, for errors).
    fn read(
        index: &str,
        stanza: usize,
        paragraph: &Paragraph<'p>,
    ) -> Result<Fields<'p>, IndexParseError> {
        let missing = |field: &'static str| IndexParseError::Field {
            index: index.to_owned(),
            stanza,
            package: paragraph.get("Package").unwrap_or("?").to_owned(),
            field,
        };
        let mut name = None;
        let mut values: [Option<Cow<'p, str>>; 11] = Default::default();
        let (mut essential, mut size, mut sha256) = (false, None, None);
        for field in paragraph.fields() {
            // Most fields (Description, Maintainer, MD5sum, ...) are not read: decide by
            // length first so they cost one comparison.
            let slot = match field.name().len() {
                7 if field.is("Package") => {
                    name = Some(field.first_line());
                    continue;
                }
                7 if field.is("Version") => 0,
                12 if field.is("Architecture") => 1,
                10 if field.is("Multi-Arch") => 2,
                8 if field.is("Priority") => 3,
                8 if field.is("Provides") => 4,
                7 if field.is("Depends") => 5,
                11 if field.is("Pre-Depends") => 6,
                9 if field.is("Conflicts") => 7,
                6 if field.is("Breaks") => 8,
                8 if field.is("Replaces") => 9,
                8 if field.is("Filename") => 10,
                9 if field.is("Essential") => {
                    essential = field.first_line() == "yes";
                    continue;
                }
                4 if field.is("Size") => {
                    size = field.first_line().parse::<u64>().ok();
                    continue;
                }
                6 if field.is("SHA256") => {
                    sha256 = Sha256Digest::from_hex(field.first_line());
                    continue;
                }
                _ => continue,
            };
            values[slot] = Some(field.folded()).filter(|v| !v.is_empty());
        }
        let [version, architecture, multi_arch, priority, provides, depends, pre_depends, conflicts, breaks, replaces, filename] =
            values;
        let name = name
            .filter(|n| !n.is_empty())
            .ok_or(IndexParseError::Field {
                index: index.to_owned(),
                stanza,
                package: "?".to_owned(),
                field: "Package",
            })?;
        Ok(Fields {
            name,
            version: version.ok_or_else(|| missing("Version"))?,
            architecture: architecture.ok_or_else(|| missing("Architecture"))?,
            filename: filename
                .filter(|f| is_safe_relative(f))
                .ok_or_else(|| missing("Filename"))?,
            size: size.ok_or_else(|| missing("Size"))?,
            sha256: sha256.ok_or_else(|| missing("SHA256"))?,
            multi_arch,
            priority,
            essential,
            provides,
            depends,
            pre_depends,
            conflicts,
            breaks,
            replaces,
        })
    }
}

fn parse_stanza(
    index: &str,
    stanza: usize,
    part: u32,
    found: &StreamParagraph<'_>,
    text: &mut String,
) -> Result<Record, IndexParseError> {
    let fields = Fields::read(index, stanza, &found.paragraph)?;
    let len = u32::try_from(found.end - found.start).map_err(|_| IndexParseError::Field {
        index: index.to_owned(),
        stanza,
        package: fields.name.to_owned(),
        field: "(the whole stanza, over 4 GiB)",
    })?;
    Ok(Record {
        name: keep(text, Some(fields.name)),
        version: keep(text, Some(&fields.version)),
        architecture: keep(text, Some(&fields.architecture)),
        multi_arch: keep(text, fields.multi_arch.as_deref()),
        priority: keep(text, fields.priority.as_deref()),
        provides: keep(text, fields.provides.as_deref()),
        essential: fields.essential,
        stanza: StanzaRef {
            part,
            len,
            start: found.start,
        },
    })
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
        assert_eq!(b.multi_arch, Some("foreign"));
        let (a, b) = (index.details(0).expect("a"), index.details(1).expect("b"));
        assert_eq!(a.depends.as_deref(), Some("b (>= 2), c | d"));
        assert_eq!(b.size, 20);
        assert_eq!(b.depends, None);
        assert_eq!(b.filename, "pool/main/b/b_2_all.deb");
    }

    #[test]
    fn a_folded_depends_keeps_every_line() {
        let text = TWO.replace(
            "Depends: b (>= 2), c | d\n",
            "Depends: b (>= 2),\n c\n  | d,\n\te\nConflicts: x,\n y\n",
        );
        let index = parse(&text).expect("parses");
        let a = index.details(0).expect("a");
        assert_eq!(a.depends.as_deref(), Some("b (>= 2), c | d, e"));
        assert_eq!(a.conflicts.as_deref(), Some("x, y"));
    }

    #[test]
    fn field_names_are_case_insensitive() {
        let text = TWO
            .replace("Depends:", "depends:")
            .replace("Package: b", "PACKAGE: b");
        let index = parse(&text).expect("parses");
        assert_eq!(
            index.details(0).expect("a").depends.as_deref(),
            Some("b (>= 2), c | d")
        );
        assert_eq!(index.get(1).name, "b");
    }

    #[test]
    fn stanzas_are_cut_from_the_index_as_written() {
        let text = TWO.replace("\n\nPackage: b", "\n \t\n\nPackage: b");
        let index = parse(&text).expect("parses");
        let b = index.package(1).expect("b");
        assert_eq!(
            index.stanzas([b.stanza]).expect("stanzas"),
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
