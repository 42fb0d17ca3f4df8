//! The bill of materials: takes the finished root, the verified Release the packages were chosen
//! from and the packages whose .debs the cache verified; gives an SPDX 2.3 JSON document.
//!
//! SPDX rather than CycloneDX: SPDX 2.3 has a field for each thing the document records (a
//! package's `sourceInfo` for its Debian source package, `licenseDeclared` for the license its
//! copyright file states, `checksums` for the .deb's sha256, `hasExtractedLicensingInfos` for
//! Debian license names outside the SPDX list), it is an ISO standard (ISO/IEC 5962), and
//! Debian's own tooling and license names map onto it; CycloneDX would need custom properties
//! for the source package and the Release.
//!
//! What it lists is what dpkg lists: every package in the root's `/var/lib/dpkg/status` that is
//! not `not-installed` or `config-files`, with the version, architecture and source dpkg
//! recorded, sorted by name then architecture. The .deb hash is the one the cache verified the
//! file against before it was unpacked. The license is read from
//! `/usr/share/doc/PKG/copyright` when that file is in the machine-readable format: the
//! `License:` of its `Files: *` paragraph, Debian's short names mapped to SPDX identifiers where
//! they have one and to `LicenseRef-` identifiers otherwise. Files are read inside the root,
//! never through a symlink out of it.
//!
//! Nothing in the document depends on when or where it was made but the `created` time, which
//! is SOURCE_DATE_EPOCH when given: the mirror's URL is left out (`downloadLocation` is
//! NOASSERTION), the Release is named by suite, codename, date and the sha256 of its InRelease.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::PathBuf;

use rustix::fs::OFlags;
use serde_json::{json, Value};

use crate::deb822::{self, Comments};
use crate::fetch::{Package, VerifiedRelease};
use crate::HeldRoot;

/// The largest dpkg status file read.
const MAX_STATUS: u64 = 256 << 20;
/// The largest copyright file read.
const MAX_COPYRIGHT: u64 = 8 << 20;

/// Why the SBOM could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("cannot read {path} inside the root for the SBOM")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed dpkg status for the SBOM: {what}")]
    Status { path: PathBuf, what: String },
    #[error("cannot write the SBOM to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the SBOM describes.
pub struct SbomRequest<'a> {
    pub root: &'a HeldRoot,
    /// The image's name.
    pub name: &'a str,
    pub release: &'a VerifiedRelease,
    /// The packages downloaded, each verified in the cache against its sha256.
    pub packages: &'a [Package],
    pub source_date_epoch: Option<i64>,
}

/// An installed package as dpkg records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Installed {
    name: String,
    architecture: String,
    version: String,
    source: String,
    source_version: String,
}

/// Makes the SPDX 2.3 JSON document of the root.
pub fn sbom(request: &SbomRequest) -> Result<Vec<u8>, SbomError> {
    let installed = installed_packages(request.root)?;
    let debs: HashMap<(&str, &str, &str), &Package> = request
        .packages
        .iter()
        .map(|p| {
            (
                (p.name.as_str(), p.architecture.as_str(), p.version.as_str()),
                p,
            )
        })
        .collect();
    let release = request.release;
    let release_date = rfc3339(epoch_of(release.date()));
    let release_identity = format!(
        "Packages chosen from the Debian Release with Suite {}, Codename {}, Date {}, whose \
         InRelease has sha256 {}",
        release.suite(),
        release.codename(),
        release_date,
        release.sha256()
    );
    let tool = format!("debstrap-onion-{}", env!("CARGO_PKG_VERSION"));

    let mut licenses: BTreeMap<String, String> = BTreeMap::new();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Root",
        "name": request.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": format!("The root file system built by {tool}. {release_identity}."),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Root",
    })];
    let mut identity = sha2::Sha256::default();
    for (i, package) in installed.iter().enumerate() {
        use sha2::Digest as _;
        let id = format!("SPDXRef-Package-{i}-{}", id_safe(&package.name));
        let declared = match declared_license(request.root, &package.name)? {
            Some(license) => spdx_expression(&license, &mut licenses),
            None => "NOASSERTION".to_string(),
        };
        let mut entry = json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!(
                "built from the Debian source package {} version {}",
                package.source, package.source_version
            ),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "comment": format!("Architecture: {}", package.architecture),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(package, release.codename()),
            }],
        });
        let key = (
            package.name.as_str(),
            package.architecture.as_str(),
            package.version.as_str(),
        );
        if let Some(deb) = debs.get(&key) {
            entry["checksums"] = json!([{
                "algorithm": "SHA256",
                "checksumValue": deb.sha256.to_hex(),
            }]);
            identity.update(deb.sha256.0);
        }
        identity.update(format!("{package:?}\n"));
        packages.push(entry);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Root",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let namespace = {
        use sha2::Digest as _;
        identity.update(release.sha256().0);
        hex::encode(&identity.finalize()[..16])
    };
    let created = rfc3339(
        request
            .source_date_epoch
            .unwrap_or_else(|| epoch_of(std::time::SystemTime::now())),
    );
    let extracted: Vec<Value> = licenses
        .into_iter()
        .map(|(id, name)| {
            json!({
                "licenseId": id,
                "name": name,
                "extractedText": format!(
                    "The license Debian's machine-readable copyright files call {name:?}; its \
                     text is in /usr/share/doc/PACKAGE/copyright in the root."
                ),
            })
        })
        .collect();
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", request.name, release.codename()),
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/debstrap-onion/{}-{namespace}", request.name
        ),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: {tool}")],
        },
        "comment": release_identity,
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = json!(extracted);
    }
    let mut bytes = serde_json::to_vec_pretty(&document).expect("a JSON value always serializes");
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `bytes` to a temporary file beside `path` and syncs it; [`StagedFile::persist`] renames
/// it into place.
pub fn stage_file(path: &std::path::Path, bytes: &[u8]) -> Result<StagedFile, SbomError> {
    use std::io::Write as _;
    let err = |source| SbomError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".sbom.")
        .suffix(".part")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(err)?;
    temp.write_all(bytes).map_err(err)?;
    temp.as_file().sync_all().map_err(err)?;
    Ok(StagedFile {
        temp,
        path: path.to_path_buf(),
    })
}

/// An SBOM written and synced beside its final name; dropped without [`StagedFile::persist`],
/// it is removed.
pub struct StagedFile {
    temp: tempfile::NamedTempFile,
    path: std::path::PathBuf,
}

impl StagedFile {
    /// Renames the staged file to its final name.
    pub fn persist(self) -> Result<(), SbomError> {
        let path = self.path;
        self.temp.persist(&path).map_err(|e| SbomError::Write {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// The packages dpkg's status lists as present, sorted.
fn installed_packages(root: &HeldRoot) -> Result<Vec<Installed>, SbomError> {
    let rel = "var/lib/dpkg/status";
    let path = root.path().join(rel);
    let text = read_in_root(root, rel, MAX_STATUS)?.ok_or_else(|| SbomError::Read {
        path: path.clone(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let mut installed = Vec::new();
    for paragraph in deb822::paragraphs(&text, Comments::Refused) {
        let paragraph = paragraph.map_err(|e| SbomError::Status {
            path: path.clone(),
            what: e.to_string(),
        })?;
        let status = paragraph.get("Status").unwrap_or_default();
        if matches!(
            status.split_whitespace().nth(2),
            Some("not-installed" | "config-files")
        ) {
            continue;
        }
        let field = |name: &str| paragraph.get(name).unwrap_or_default().to_string();
        let (name, version) = (field("Package"), field("Version"));
        if name.is_empty() || version.is_empty() {
            return Err(SbomError::Status {
                path: path.clone(),
                what: "a package without Package or Version".to_string(),
            });
        }
        let source = field("Source");
        let (source, source_version) = match source.split_once(' ') {
            Some((source, version)) => (
                source.to_string(),
                version
                    .trim_matches(|c| c == '(' || c == ')' || c == ' ')
                    .to_string(),
            ),
            None if source.is_empty() => (name.clone(), version.clone()),
            None => (source, version.clone()),
        };
        installed.push(Installed {
            name,
            architecture: field("Architecture"),
            version,
            source,
            source_version,
        });
    }
    installed.sort();
    Ok(installed)
}

/// The license a package's machine-readable copyright file declares for `Files: *` (or its
/// first `Files:` paragraph, or its header), if the file exists and is in that format.
fn declared_license(root: &HeldRoot, package: &str) -> Result<Option<String>, SbomError> {
    let rel = format!("usr/share/doc/{package}/copyright");
    let Some(text) = read_in_root(root, &rel, MAX_COPYRIGHT)? else {
        return Ok(None);
    };
    Ok(copyright_license(&text))
}

/// See [`declared_license`].
fn copyright_license(text: &str) -> Option<String> {
    let mut paragraphs = deb822::paragraphs(text, Comments::Allowed).map_while(Result::ok);
    let header = paragraphs.next()?;
    let format = header.get("Format")?;
    if !format.contains("copyright-format") && !format.contains("dep5") {
        return None;
    }
    let mut first_files = None;
    for paragraph in paragraphs {
        let (Some(files), Some(license)) = (paragraph.field("Files"), paragraph.get("License"))
        else {
            continue;
        };
        if license.is_empty() {
            continue;
        }
        if files.folded().split_whitespace().any(|f| f == "*") {
            return Some(license.to_string());
        }
        first_files.get_or_insert_with(|| license.to_string());
    }
    first_files.or_else(|| {
        header
            .get("License")
            .filter(|l| !l.is_empty())
            .map(str::to_string)
    })
}

/// Debian short license names with an SPDX identifier.
const SPDX_NAMES: [(&str, &str); 44] = [
    ("gpl-1", "GPL-1.0-only"),
    ("gpl-1+", "GPL-1.0-or-later"),
    ("gpl-2", "GPL-2.0-only"),
    ("gpl-2+", "GPL-2.0-or-later"),
    ("gpl-3", "GPL-3.0-only"),
    ("gpl-3+", "GPL-3.0-or-later"),
    ("lgpl-2", "LGPL-2.0-only"),
    ("lgpl-2+", "LGPL-2.0-or-later"),
    ("lgpl-2.1", "LGPL-2.1-only"),
    ("lgpl-2.1+", "LGPL-2.1-or-later"),
    ("lgpl-3", "LGPL-3.0-only"),
    ("lgpl-3+", "LGPL-3.0-or-later"),
    ("agpl-3", "AGPL-3.0-only"),
    ("agpl-3+", "AGPL-3.0-or-later"),
    ("gfdl-1.2", "GFDL-1.2-only"),
    ("gfdl-1.2+", "GFDL-1.2-or-later"),
    ("gfdl-1.3", "GFDL-1.3-only"),
    ("gfdl-1.3+", "GFDL-1.3-or-later"),
    ("apache-2.0", "Apache-2.0"),
    ("artistic", "Artistic-1.0-Perl"),
    ("artistic-2.0", "Artistic-2.0"),
    ("bsd-2-clause", "BSD-2-Clause"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("bsd-4-clause", "BSD-4-Clause"),
    ("0bsd", "0BSD"),
    ("expat", "MIT"),
    ("mit", "MIT"),
    ("isc", "ISC"),
    ("zlib", "Zlib"),
    ("mpl-1.1", "MPL-1.1"),
    ("mpl-2.0", "MPL-2.0"),
    ("cc0-1.0", "CC0-1.0"),
    ("cc0", "CC0-1.0"),
    ("psf-2", "PSF-2.0"),
    ("python-2.0", "Python-2.0"),
    ("openssl", "OpenSSL"),
    ("curl", "curl"),
    ("x11", "X11"),
    ("fsfap", "FSFAP"),
    ("fsful", "FSFUL"),
    ("fsfullr", "FSFULLR"),
    ("bsl-1.0", "BSL-1.0"),
    ("unicode-dfs-2016", "Unicode-DFS-2016"),
    ("wtfpl", "WTFPL"),
];

/// The SPDX expression for a Debian `License:` line: terms joined by `or`/`and` are mapped one
/// by one; a term without an SPDX identifier (or with an exception) becomes a `LicenseRef-`,
/// recorded in `refs` (identifier → Debian name).
fn spdx_expression(license: &str, refs: &mut BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    for (i, alternative) in split_words(license, "or").into_iter().enumerate() {
        if i > 0 {
            out.push("OR".to_string());
        }
        for (j, term) in split_words(&alternative, "and").into_iter().enumerate() {
            if j > 0 {
                out.push("AND".to_string());
            }
            let term = term.trim().trim_end_matches(',');
            let known = SPDX_NAMES
                .iter()
                .find(|(debian, _)| debian.eq_ignore_ascii_case(term))
                .map(|(_, spdx)| spdx.to_string());
            out.push(known.unwrap_or_else(|| {
                let id = format!("LicenseRef-{}", id_safe(term));
                refs.entry(id.clone()).or_insert_with(|| term.to_string());
                id
            }));
        }
    }
    let has_or = out.iter().any(|t| t == "OR");
    let has_and = out.iter().any(|t| t == "AND");
    if has_or && has_and {
        // Debian does not say how `or` and `and` bind together: the whole line is one reference.
        let id = format!("LicenseRef-{}", id_safe(license));
        refs.entry(id.clone())
            .or_insert_with(|| license.to_string());
        return id;
    }
    out.join(" ")
}

/// `text` split at the whole word `word` (any case).
fn split_words(text: &str, word: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    for token in text.split_whitespace() {
        if token.eq_ignore_ascii_case(word) {
            parts.push(String::new());
        } else {
            let last = parts.last_mut().expect("starts with one part");
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(token);
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// Letters, digits, `.` and `-` only, as SPDX identifiers allow; anything else becomes `-`.
fn id_safe(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c.to_string(),
            '+' => "-plus".to_string(),
            _ => "-".to_string(),
        })
        .collect::<String>();
    if safe.is_empty() {
        "unnamed".to_string()
    } else {
        safe
    }
}

/// The package URL of a Debian package.
fn purl(package: &Installed, codename: &str) -> String {
    let encode = |s: &str| {
        s.chars()
            .map(|c| match c {
                ':' => "%3A".to_string(),
                '+' => "%2B".to_string(),
                '~' => "~".to_string(),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro=debian-{codename}",
        encode(&package.name),
        encode(&package.version),
        package.architecture
    )
}

/// Reads a regular file inside the root (symlinks resolved inside it), up to `cap` bytes;
/// `None` when it does not exist.
fn read_in_root(root: &HeldRoot, rel: &str, cap: u64) -> Result<Option<String>, SbomError> {
    let err = |source: std::io::Error| SbomError::Read {
        path: root.path().join(rel),
        source,
    };
    let fd = match crate::root::open_in_root(
        root.fd(),
        rel.as_bytes(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn epoch_of(time: std::time::SystemTime) -> i64 {
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch (UTC).
pub(crate) fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn debian_license_names_become_spdx_expressions() {
        let mut refs = BTreeMap::new();
        assert_eq!(spdx_expression("GPL-2+", &mut refs), "GPL-2.0-or-later");
        assert_eq!(
            spdx_expression("GPL-2+ or Artistic", &mut refs),
            "GPL-2.0-or-later OR Artistic-1.0-Perl"
        );
        assert_eq!(
            spdx_expression("public-domain", &mut refs),
            "LicenseRef-public-domain"
        );
        assert_eq!(
            spdx_expression("GPL-2+ with OpenSSL exception", &mut refs),
            "LicenseRef-GPL-2-plus-with-OpenSSL-exception"
        );
        assert_eq!(refs.len(), 2);
    }

    #[test]
    fn the_license_of_files_star_is_declared() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                    Upstream-Name: x\n\nFiles: debian/*\nLicense: GPL-2+\n\n\
                    Files: *\nCopyright: someone\nLicense: Expat\n\nLicense: Expat\n text\n";
        assert_eq!(copyright_license(text).as_deref(), Some("Expat"));
        assert_eq!(copyright_license("This is free software.\n"), None);
    }
}
