//! Mirror discovery: an explicit URL, else `$DEBSTRAP_MIRROR`, else the first Debian archive in
//! the host's apt sources (deb822 `*.sources` first, then one-line `sources.list`).

use std::path::{Path, PathBuf};

use super::ConfigError;
use crate::deb822::{Comments, Paragraph};

/// Suite names that mark an apt source as Debian's own archive (a pocket such as
/// `bookworm-updates` counts by its base name; security archives are skipped by URI).
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "experimental",
    "stable",
    "testing",
    "unstable",
    "oldstable",
    "oldoldstable",
];

/// Picks the mirror: `explicit` (the MIRROR argument or --mirror), then `env`
/// (`$DEBSTRAP_MIRROR`), then the apt sources under `apt_dir` (normally `/etc/apt`).
pub fn discover_mirror(
    explicit: Option<&str>,
    env: Option<&str>,
    apt_dir: &Path,
) -> Result<String, ConfigError> {
    if let Some(url) = explicit.or(env).filter(|u| !u.trim().is_empty()) {
        return normalize_mirror(url);
    }
    for file in source_files(apt_dir)? {
        let text = match fs_err::read_to_string(&file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::AptSources { path: file, source }),
        };
        let found = if file.extension().is_some_and(|e| e == "sources") {
            first_deb822(&text)
        } else {
            first_one_line(&text)
        };
        if let Some(url) = found {
            return normalize_mirror(&url);
        }
    }
    Err(ConfigError::NoMirror {
        apt_dir: apt_dir.to_path_buf(),
    })
}

/// Checks the scheme and drops trailing slashes.
pub fn normalize_mirror(url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    if !["http://", "https://", "file://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(ConfigError::BadMirrorScheme {
            url: url.to_string(),
        });
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn source_files(apt_dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = apt_dir.join("sources.list.d");
    let mut deb822 = Vec::new();
    let mut one_line = Vec::new();
    match fs_err::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                match path.extension().and_then(|e| e.to_str()) {
                    Some("sources") => deb822.push(path),
                    Some("list") => one_line.push(path),
                    _ => {}
                }
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ConfigError::AptSources { path: dir, source }),
    }
    deb822.sort();
    one_line.sort();
    let mut files = deb822;
    files.push(apt_dir.join("sources.list"));
    files.extend(one_line);
    Ok(files)
}

fn is_debian_archive(uri: &str, suite: &str) -> bool {
    let base = suite.split('-').next().unwrap_or(suite);
    DEBIAN_SUITES.contains(&base)
        && !uri.trim_end_matches('/').ends_with("-security")
        && !suite.ends_with("-security")
}

/// The first enabled `deb` entry of a deb822 file that points at a Debian archive; a
/// paragraph apt could not read either is passed over.
fn first_deb822(text: &str) -> Option<String> {
    crate::deb822::paragraphs(text, Comments::Allowed)
        .filter_map(Result::ok)
        .find_map(|paragraph| deb822_paragraph_mirror(&paragraph))
}

fn deb822_paragraph_mirror(paragraph: &Paragraph<'_>) -> Option<String> {
    let field = |name: &str| paragraph.field(name).map(|f| f.folded());
    if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
        return None;
    }
    if !field("Types")?.split_whitespace().any(|t| t == "deb") {
        return None;
    }
    let suites = field("Suites")?;
    let suites: Vec<&str> = suites.split_whitespace().collect();
    field("URIs")?
        .split_whitespace()
        .find(|uri| suites.iter().any(|s| is_debian_archive(uri, s)))
        .map(str::to_string)
}

/// The first `deb URI SUITE ...` line of a one-line sources file that points at a Debian archive.
fn first_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        is_debian_archive(uri, suite).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs_err::create_dir(dir.path().join("sources.list.d")).expect("mkdir");
        for (name, text) in files {
            fs_err::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    #[test]
    fn explicit_mirror_wins_over_env_and_apt() {
        let dir = apt_dir(&[("sources.list", "deb http://127.0.0.1/apt bookworm main\n")]);
        let url = discover_mirror(
            Some("http://127.0.0.1/explicit/"),
            Some("http://127.0.0.1/env"),
            dir.path(),
        );
        assert_eq!(url.expect("mirror"), "http://127.0.0.1/explicit");
        let url = discover_mirror(None, Some("file:///srv/mirror"), dir.path());
        assert_eq!(url.expect("mirror"), "file:///srv/mirror");
    }

    #[test]
    fn deb822_source_is_preferred_and_security_and_foreign_skipped() {
        let dir = apt_dir(&[
            (
                "sources.list.d/a-node.sources",
                "Types: deb\nURIs: https://127.0.0.1/node\nSuites: nodistro\nComponents: main\n",
            ),
            (
                "sources.list.d/debian.sources",
                "# comment\nTypes: deb\nURIs: http://127.0.0.1/debian-security\nSuites: bookworm-security\n\n\
                 Types: deb-src deb\nURIs: http://127.0.0.1/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n",
            ),
            ("sources.list", "deb http://127.0.0.1/other bookworm main\n"),
        ]);
        assert_eq!(
            discover_mirror(None, None, dir.path()).expect("mirror"),
            "http://127.0.0.1/debian"
        );
    }

    #[test]
    fn disabled_deb822_entry_is_skipped() {
        let dir = apt_dir(&[(
            "sources.list.d/debian.sources",
            "Enabled: no\nTypes: deb\nURIs: http://127.0.0.1/off\nSuites: trixie\n\n\
             Types: deb\nURIs: http://127.0.0.1/on\nSuites: trixie\n",
        )]);
        assert_eq!(
            discover_mirror(None, None, dir.path()).expect("mirror"),
            "http://127.0.0.1/on"
        );
    }

    #[test]
    fn deb822_sources_may_fold_fields_and_use_any_case() {
        let dir = apt_dir(&[(
            "sources.list.d/debian.sources",
            "types: deb\nuris:\n http://127.0.0.1/folded\n# a comment inside\nSUITES: trixie\n\
             \x20 trixie-updates\n",
        )]);
        assert_eq!(
            discover_mirror(None, None, dir.path()).expect("mirror"),
            "http://127.0.0.1/folded"
        );
    }

    #[test]
    fn one_line_sources_with_options() {
        let dir = apt_dir(&[(
            "sources.list",
            "# deb http://127.0.0.1/commented trixie main\n\
             deb-src http://127.0.0.1/src trixie main\n\
             deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://127.0.0.1/debian trixie main\n",
        )]);
        assert_eq!(
            discover_mirror(None, None, dir.path()).expect("mirror"),
            "http://127.0.0.1/debian"
        );
    }

    #[test]
    fn no_mirror_anywhere_says_how_to_pass_one() {
        let dir = apt_dir(&[]);
        let err = discover_mirror(None, Some(""), dir.path()).expect_err("no mirror");
        let text = err.to_string();
        assert!(
            text.contains("--mirror") && text.contains("DEBSTRAP_MIRROR"),
            "{text}"
        );
    }

    #[test]
    fn unknown_scheme_is_refused() {
        let dir = apt_dir(&[]);
        assert!(matches!(
            discover_mirror(Some("ftp://127.0.0.1/debian"), None, dir.path()),
            Err(ConfigError::BadMirrorScheme { .. })
        ));
    }
}
