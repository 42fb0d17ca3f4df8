//! Packages indices: parsed once, keeping only the fields the resolver and downloader need.
//! A [`RepoIndex`] can only be built from bytes whose hash a verified Release vouched for.

use super::hash::Sha256Digest;

/// One binary package as listed in a verified Packages index.
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
    /// Path of the .deb relative to the mirror root.
    pub filename: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Where the package's stanza is in the index text it came from.
    pub stanza: StanzaRef,
}

/// The place of a package's stanza in a verified Packages text held by its [`RepoIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StanzaRef {
    part: u32,
    start: u32,
    end: u32,
}

/// A Packages stanza that lacks a field we need, or has a malformed one.
#[derive(Debug, thiserror::Error)]
#[error("{index}: package stanza {stanza} ({package}) has no valid {field}")]
pub struct IndexParseError {
    pub index: String,
    pub stanza: usize,
    pub package: String,
    pub field: &'static str,
}

/// Every package of the requested suite, components and architecture.
#[derive(Debug, Clone, Default)]
pub struct RepoIndex {
    packages: Vec<Package>,
    /// The verified Packages texts, one per component, for [`RepoIndex::stanzas`].
    texts: Vec<String>,
}

impl RepoIndex {
    /// Builds the index from Packages texts that were verified against the Release; only the
    /// fetch module can vouch for that, hence `pub(crate)`.
    pub(crate) fn from_verified(parts: Vec<(String, Vec<Package>)>) -> RepoIndex {
        let (texts, packages): (Vec<String>, Vec<Vec<Package>>) = parts.into_iter().unzip();
        RepoIndex {
            packages: packages.into_iter().flatten().collect(),
            texts,
        }
    }

    /// Parses a Packages file's text without any verification: for tests of code that
    /// consumes an index.
    #[cfg(test)]
    pub(crate) fn from_unverified_text(text: &str) -> RepoIndex {
        RepoIndex {
            packages: parse_packages("test", 0, text).expect("valid test Packages text"),
            texts: vec![text.to_string()],
        }
    }

    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// The index stanzas of `chosen`, in index order, each ending in a blank line: the text of
    /// dpkg's `available` file as debootstrap writes it.
    pub fn stanzas(&self, chosen: &[Package]) -> String {
        let mut refs: Vec<StanzaRef> = chosen.iter().map(|p| p.stanza).collect();
        refs.sort_by_key(|r| (r.part, r.start));
        refs.dedup();
        let mut out = String::new();
        for r in refs {
            if let Some(text) = self
                .texts
                .get(r.part as usize)
                .and_then(|t| t.get(r.start as usize..r.end as usize))
            {
                out.push_str(text.trim_end_matches('\n'));
                out.push_str("\n\n");
            }
        }
        out
    }
}

/// Parses a Packages text, the `part`-th of its index; `index` names it in errors.
pub fn parse_packages(index: &str, part: u32, text: &str) -> Result<Vec<Package>, IndexParseError> {
    let mut packages = Vec::with_capacity(text.len() / 1200);
    for (stanza, paragraph) in text.split("\n\n").enumerate() {
        if paragraph.trim().is_empty() {
            continue;
        }
        let mut package = parse_stanza(index, stanza + 1, paragraph)?;
        let start = paragraph.as_ptr() as usize - text.as_ptr() as usize;
        package.stanza = StanzaRef {
            part,
            start: start as u32,
            end: (start + paragraph.len()) as u32,
        };
        packages.push(package);
    }
    Ok(packages)
}

fn parse_stanza(index: &str, stanza: usize, paragraph: &str) -> Result<Package, IndexParseError> {
    let mut name = None;
    let mut version = None;
    let mut architecture = None;
    let mut multi_arch = None;
    let mut priority = None;
    let mut essential = false;
    let mut depends = None;
    let mut pre_depends = None;
    let mut provides = None;
    let mut filename = None;
    let mut size = None;
    let mut sha256 = None;
    for line in paragraph.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Package" => name = Some(value.to_string()),
            "Version" => version = Some(value.to_string()),
            "Architecture" => architecture = Some(value.to_string()),
            "Multi-Arch" => multi_arch = Some(value.to_string()),
            "Priority" => priority = Some(value.to_string()),
            "Essential" => essential = value == "yes",
            "Depends" => depends = Some(value.to_string()),
            "Pre-Depends" => pre_depends = Some(value.to_string()),
            "Provides" => provides = Some(value.to_string()),
            "Filename" => filename = Some(value.to_string()),
            "Size" => size = Some(value.parse::<u64>().ok()),
            "SHA256" => sha256 = Some(Sha256Digest::from_hex(value)),
            _ => {}
        }
    }
    let missing = |field: &'static str, name: &Option<String>| IndexParseError {
        index: index.to_string(),
        stanza,
        package: name.clone().unwrap_or_else(|| "?".to_string()),
        field,
    };
    Ok(Package {
        version: version.ok_or_else(|| missing("Version", &name))?,
        architecture: architecture.ok_or_else(|| missing("Architecture", &name))?,
        filename: filename
            .filter(|f| is_safe_relative(f))
            .ok_or_else(|| missing("Filename", &name))?,
        size: size.flatten().ok_or_else(|| missing("Size", &name))?,
        sha256: sha256.flatten().ok_or_else(|| missing("SHA256", &name))?,
        name: name.ok_or_else(|| missing("Package", &None))?,
        stanza: StanzaRef::default(),
        multi_arch,
        priority,
        essential,
        depends,
        pre_depends,
        provides,
    })
}

/// A mirror-relative path with no `..`, no absolute start and no empty parts.
fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Package: a\nVersion: 1.0-1\nArchitecture: amd64\nPriority: required\n\
Essential: yes\nDepends: b (>= 2), c | d\nDescription: x\n more text\nFilename: pool/main/a/a_1.0-1_amd64.deb\n\
Size: 10\nSHA256: 0000000000000000000000000000000000000000000000000000000000000001\n\n\
Package: b\nVersion: 2\nArchitecture: all\nMulti-Arch: foreign\nFilename: pool/main/b/b_2_all.deb\nSize: 20\n\
SHA256: 0000000000000000000000000000000000000000000000000000000000000002\n";

    #[test]
    fn keeps_the_fields_the_pipeline_uses() {
        let packages = parse_packages("t", 0, TWO).expect("parses");
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "a");
        assert!(packages[0].essential);
        assert_eq!(packages[0].depends.as_deref(), Some("b (>= 2), c | d"));
        assert_eq!(packages[1].multi_arch.as_deref(), Some("foreign"));
        assert_eq!(packages[1].size, 20);
    }

    #[test]
    fn refuses_a_filename_that_leaves_the_mirror() {
        let text = TWO.replace("pool/main/b/b_2_all.deb", "../../etc/passwd");
        let err = parse_packages("t", 0, &text).expect_err("refused");
        assert_eq!((err.package.as_str(), err.field), ("b", "Filename"));
    }

    #[test]
    fn refuses_a_missing_hash() {
        let text = TWO.replace(
            "SHA256: 0000000000000000000000000000000000000000000000000000000000000002\n",
            "",
        );
        let err = parse_packages("t", 0, &text).expect_err("refused");
        assert_eq!(err.field, "SHA256");
    }
}
