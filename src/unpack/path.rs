//! Archive entry names: a tar name in, the same path relative to the target root out.
//!
//! Policy: a leading `/` or `./` is dropped, so absolute names land inside the root as they
//! would in the chroot; empty and `.` components are dropped; any `..` component is refused,
//! because no Debian tool writes one and a lexical `..` has no meaning we want to guess.

/// Why an entry name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("the name has a `..` component")]
    DotDot,
    #[error("the name contains a NUL byte")]
    Nul,
}

/// An entry's path below the root: components joined by `/`, empty for the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Normalises a tar entry name (see the module policy).
    pub fn from_entry_name(name: &[u8]) -> Result<RelPath, PathProblem> {
        if name.contains(&0) {
            return Err(PathProblem::Nul);
        }
        let mut out = Vec::with_capacity(name.len());
        for component in name.split(|&b| b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => return Err(PathProblem::DotDot),
                _ => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(component);
                }
            }
        }
        Ok(RelPath(out))
    }

    /// Whether this is the root itself (`./`).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes, `usr/bin/ls` style; `.` for the root so syscalls get a valid name.
    pub fn as_bytes(&self) -> &[u8] {
        if self.0.is_empty() {
            b"."
        } else {
            &self.0
        }
    }

    /// The directory holding this entry (`.` for top-level names).
    pub fn parent(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[..i],
            None => b".",
        }
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The first component.
    pub fn first_component(&self) -> &[u8] {
        self.0.split(|&b| b == b'/').next().unwrap_or(b"")
    }

    /// The path as dpkg writes it in `.list` files: `/usr/bin/ls`, `/.` for the root.
    pub fn to_list_line(&self) -> String {
        if self.0.is_empty() {
            "/.".to_owned()
        } else {
            format!("/{}", String::from_utf8_lossy(&self.0))
        }
    }

    /// The path as shown in messages and md5sums files: `usr/bin/ls`.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_dot_slash_and_slashes_are_dropped() {
        let p = RelPath::from_entry_name(b"./usr//bin/./ls").expect("clean name");
        assert_eq!(p.as_bytes(), b"usr/bin/ls");
        assert_eq!(p.parent(), b"usr/bin");
        assert_eq!(p.file_name(), b"ls");
        assert_eq!(p.to_list_line(), "/usr/bin/ls");
    }

    #[test]
    fn absolute_names_land_inside_the_root() {
        let p = RelPath::from_entry_name(b"/etc/passwd").expect("absolute name");
        assert_eq!(p.as_bytes(), b"etc/passwd");
    }

    #[test]
    fn the_root_entry_is_dot() {
        let p = RelPath::from_entry_name(b"./").expect("root");
        assert!(p.is_root());
        assert_eq!(p.as_bytes(), b".");
        assert_eq!(p.to_list_line(), "/.");
    }

    #[test]
    fn top_level_names_have_dot_as_parent() {
        let p = RelPath::from_entry_name(b"./bin").expect("top level");
        assert_eq!(p.parent(), b".");
        assert_eq!(p.first_component(), b"bin");
    }

    #[test]
    fn dot_dot_is_refused_anywhere() {
        for name in [&b"../etc/x"[..], b"./a/../b", b"a/..", b"/.."] {
            assert_eq!(RelPath::from_entry_name(name), Err(PathProblem::DotDot));
        }
    }
}
