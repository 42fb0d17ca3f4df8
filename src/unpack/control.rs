//! A package's control file: its bytes in, its fields in their original order out, and the
//! dpkg status stanza made from them.

use std::ops::Range;

use crate::deb822::{Comments, SyntaxError};

/// A parsed control file: its text, and each field as byte ranges into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    text: String,
    /// Name and value of each field, in order; the value is everything after the colon
    /// without the leading blanks of its first line, continuation lines included.
    fields: Vec<(Range<usize>, Range<usize>)>,
}

/// Why a control file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlProblem {
    #[error("the control file is not UTF-8")]
    NotUtf8,
    #[error("the control file is not deb822")]
    Syntax(#[source] SyntaxError),
    #[error("the control file has no {0} field")]
    Missing(&'static str),
}

impl Control {
    /// Parses the single paragraph of a binary package's control file (dpkg-deb writes one;
    /// anything after a blank line is not ours).
    pub fn parse(bytes: &[u8]) -> Result<Control, ControlProblem> {
        let text = std::str::from_utf8(bytes).map_err(|_| ControlProblem::NotUtf8)?;
        let offset = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
        let fields = match crate::deb822::first_paragraph(text, Comments::Refused)
            .map_err(ControlProblem::Syntax)?
        {
            None => Vec::new(),
            Some(paragraph) => paragraph
                .fields()
                .iter()
                .map(|f| {
                    let value = f.raw().trim_start_matches([' ', '\t']);
                    (
                        offset(f.name())..offset(f.name()) + f.name().len(),
                        offset(value)..offset(value) + value.len(),
                    )
                })
                .collect(),
        };
        let control = Control {
            text: text.to_owned(),
            fields,
        };
        for required in ["Package", "Version", "Architecture"] {
            if control.get(required).is_none_or(str::is_empty) {
                return Err(ControlProblem::Missing(required));
            }
        }
        Ok(control)
    }

    /// Each field's name and value, in order.
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|(name, value)| (&self.text[name.clone()], &self.text[value.clone()]))
    }

    /// The first line of a field's value, trimmed (field names compare case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.lines().next().unwrap_or("").trim())
    }

    /// The package name.
    pub fn package(&self) -> &str {
        self.get("Package").unwrap_or_default()
    }

    /// The version.
    pub fn version(&self) -> &str {
        self.get("Version").unwrap_or_default()
    }

    /// The architecture (`all` or a dpkg architecture).
    pub fn architecture(&self) -> &str {
        self.get("Architecture").unwrap_or_default()
    }

    /// Whether the package is `Multi-Arch: same`, so dpkg names it `PKG:ARCH`.
    pub fn multi_arch_same(&self) -> bool {
        self.get("Multi-Arch")
            .is_some_and(|v| v.eq_ignore_ascii_case("same"))
    }

    /// The name dpkg's database uses: `PKG`, or `PKG:ARCH` for `Multi-Arch: same`.
    pub fn db_name(&self) -> String {
        db_name(self.package(), self.architecture(), self.multi_arch_same())
    }

    /// The status stanza: the control fields in their order, `Status: install ok unpacked`
    /// after `Package`, and `Conffiles` (` /etc/x MD5` lines) before `Description` as dpkg
    /// places it. Ends with the blank line that separates stanzas.
    ///
    /// The conffile hashes are those of the files as unpacked, which is what dpkg records
    /// once it has installed them: `dpkg --configure` finds no `.dpkg-new` to install and
    /// keeps them, and `dpkg --verify` agrees before and after.
    ///
    /// `priority`, when given, is the archive's (the index carries its overrides) and replaces
    /// the control file's, as in the status file debootstrap leaves.
    pub fn status_stanza(&self, conffiles: &[(String, &str)], priority: Option<&str>) -> String {
        let mut out = String::new();
        let mut conffiles_written = conffiles.is_empty();
        let write_conffiles = |out: &mut String| {
            out.push_str("Conffiles:\n");
            for (path, md5) in conffiles {
                out.push(' ');
                out.push_str(path);
                out.push(' ');
                out.push_str(md5);
                out.push('\n');
            }
        };
        let has_priority = self.get("Priority").is_some();
        for (name, value) in self.fields() {
            if let (Some(p), true) = (priority, name.eq_ignore_ascii_case("Priority")) {
                out.push_str("Priority: ");
                out.push_str(p);
                out.push('\n');
                continue;
            }
            if name.eq_ignore_ascii_case("Status") || name.eq_ignore_ascii_case("Conffiles") {
                continue;
            }
            if !conffiles_written && name.eq_ignore_ascii_case("Description") {
                write_conffiles(&mut out);
                conffiles_written = true;
            }
            out.push_str(name);
            out.push(':');
            if !value.is_empty() && !value.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(value);
            out.push('\n');
            if name.eq_ignore_ascii_case("Package") {
                out.push_str("Status: install ok unpacked\n");
                if let (Some(p), false) = (priority, has_priority) {
                    out.push_str("Priority: ");
                    out.push_str(p);
                    out.push('\n');
                }
            }
        }
        if !conffiles_written {
            write_conffiles(&mut out);
        }
        out.push('\n');
        out
    }
}

/// The name dpkg's database uses for a package.
pub fn db_name(package: &str, architecture: &str, multi_arch_same: bool) -> String {
    if multi_arch_same {
        format!("{package}:{architecture}")
    } else {
        package.to_owned()
    }
}

/// The conffiles a package declares, in order: the path of each plain line; lines with flags
/// (`remove-on-upgrade /etc/x`) name files the package does not ship and are left out.
pub fn conffiles(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// Every conffile line, in order: its path, and whether it is flagged `remove-on-upgrade` (the
/// only flag dpkg knows; a line with another flag is left out, as dpkg would refuse it).
pub fn conffile_entries(bytes: &[u8]) -> Vec<(String, bool)> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter_map(|line| match line.split_once(char::is_whitespace) {
            None if line.starts_with('/') => Some((line.to_owned(), false)),
            Some(("remove-on-upgrade", path)) if path.trim().starts_with('/') => {
                Some((path.trim().to_owned(), true))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conffile_entries_keep_order_and_the_remove_on_upgrade_flag() {
        let text = b"/etc/a\nremove-on-upgrade /etc/gone\n\n/etc/b\nunknown-flag /etc/c\n";
        assert_eq!(
            conffile_entries(text),
            [
                ("/etc/a".to_owned(), false),
                ("/etc/gone".to_owned(), true),
                ("/etc/b".to_owned(), false)
            ]
        );
        assert_eq!(conffiles(text), ["/etc/a", "/etc/b"]);
    }

    const CONTROL: &str = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\n\
        Multi-Arch: same\nDepends: libc6 (>= 2.34)\nDescription: says hello\n \
        A longer text.\n .\n Second paragraph.\n";

    #[test]
    fn fields_keep_their_order_and_status_follows_package() {
        let control = Control::parse(CONTROL.as_bytes()).expect("valid control");
        assert_eq!(control.package(), "hello");
        assert!(control.multi_arch_same());
        assert_eq!(control.db_name(), "hello:amd64");
        let stanza = control.status_stanza(&[("/etc/hello.conf".to_owned(), "0123abcd")], None);
        assert_eq!(
            stanza,
            "Package: hello\nStatus: install ok unpacked\nVersion: 1.0-1\nArchitecture: amd64\n\
             Multi-Arch: same\nDepends: libc6 (>= 2.34)\nConffiles:\n /etc/hello.conf 0123abcd\n\
             Description: says hello\n A longer text.\n .\n Second paragraph.\n\n"
        );
    }

    #[test]
    fn the_archive_priority_replaces_or_joins_the_control_one() {
        let with =
            Control::parse(b"Package: a\nVersion: 1\nArchitecture: all\nPriority: optional\n")
                .expect("valid control");
        assert_eq!(
            with.status_stanza(&[], Some("required")),
            "Package: a\nStatus: install ok unpacked\nVersion: 1\nArchitecture: all\nPriority: required\n\n"
        );
        let without =
            Control::parse(b"Package: a\nVersion: 1\nArchitecture: all\n").expect("valid");
        assert_eq!(
            without.status_stanza(&[], Some("important")),
            "Package: a\nStatus: install ok unpacked\nPriority: important\nVersion: 1\nArchitecture: all\n\n"
        );
    }

    #[test]
    fn a_missing_version_is_refused() {
        let err = Control::parse(b"Package: x\nArchitecture: all\n").expect_err("no version");
        assert_eq!(err, ControlProblem::Missing("Version"));
    }

    #[test]
    fn a_continuation_before_any_field_is_refused() {
        let err = Control::parse(b" orphan\nPackage: x\n").expect_err("bad line");
        assert_eq!(
            err,
            ControlProblem::Syntax(SyntaxError::OrphanContinuation { line: 1 })
        );
    }

    #[test]
    fn a_folded_field_and_lower_case_names_are_read() {
        let control = Control::parse(
            b"package: a\nversion: 1\narchitecture: all\nDepends: b,\n c\nDescription:\n long\n",
        )
        .expect("valid control");
        assert_eq!(control.package(), "a");
        assert_eq!(
            control.status_stanza(&[], None),
            "package: a\nStatus: install ok unpacked\nversion: 1\narchitecture: all\n\
             Depends: b,\n c\nDescription:\n long\n\n"
        );
    }

    #[test]
    fn conffile_flag_lines_are_left_out() {
        let list = conffiles(b"/etc/a\nremove-on-upgrade /etc/old\n/etc/b\n");
        assert_eq!(list, ["/etc/a", "/etc/b"]);
    }
}
