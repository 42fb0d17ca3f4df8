//! BuildConfig: everything a build needs, validated once; the defaults live here.

mod mirror;

use std::num::NonZeroU16;
use std::path::{Path, PathBuf};

pub use mirror::{discover_mirror, normalize_mirror};

/// Default suite when none is given.
pub const DEFAULT_SUITE: &str = "trixie";
/// Default chroot, schroot and onion service name.
pub const DEFAULT_NAME: &str = "onion";
/// Default package cache.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/debstrap-onion";
/// Where, inside a tarball image built without `--host-root`, the host-side files of the onion
/// service go (laid out as under a `--host-root`), instead of the building host.
pub const IMAGE_HOST_ROOT: &str = "var/lib/debstrap-onion/host";
/// The package cache when none is given: [`DEFAULT_CACHE_DIR`] for the host's root, else the
/// user's cache directory (`$XDG_CACHE_HOME`, or `~/.cache`) — a rootless build's too, which
/// runs as root of its own user namespace.
pub fn default_cache_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() && !crate::userns::inside() {
        return PathBuf::from(DEFAULT_CACHE_DIR);
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("debstrap-onion")
}

/// Where directory targets go when TARGET is omitted: `/srv/chroot/NAME`.
pub const DEFAULT_CHROOT_PARENT: &str = "/srv/chroot";

/// Errors in the configuration, found before any work starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no Debian mirror configured: pass one as the MIRROR argument or --mirror URL, or set \
         DEBSTRAP_MIRROR (no usable `deb` entry was found in {apt_dir}/sources.list or {apt_dir}/sources.list.d)"
    )]
    NoMirror { apt_dir: PathBuf },
    #[error("mirror URL {url:?} is not http://, https:// or file://")]
    BadMirrorScheme { url: String },
    #[error("cannot read apt sources {path}")]
    AptSources {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing TARGET {path}: building over the host's root would destroy it")]
    TargetIsRoot { path: PathBuf },
    #[error(
        "a rootless build cannot change this host's tor and schroot configuration: give \
         --host-root DIR to have those files written there (then copy them as root), build a \
         tarball (they go into it), or pass --no-onion"
    )]
    RootlessHostFiles,
    #[error(
        "invalid name {name:?}: use letters, digits, '-', '_' or '.', not starting with '.' or '-'"
    )]
    BadName { name: String },
    #[error("invalid package name {name:?} in --{option}")]
    BadPackageName { option: &'static str, name: String },
    #[error("cannot determine the host architecture; pass --arch")]
    UnknownArch,
    #[error(
        "invalid architecture {arch:?} in --arch: give Debian architecture names such as amd64, \
         arm64 or i386, each once"
    )]
    BadArch { arch: String },
    #[error(
        "--include {package}: {arch} is not an architecture of the root; add it to --arch \
         (e.g. --arch {native},{arch})"
    )]
    IncludeArchNotInRoot {
        package: String,
        arch: String,
        native: String,
    },
    #[error(
        "invalid SUITE {suite:?}: give a codename or suite name such as trixie, stable or \
         bookworm-backports"
    )]
    BadSuite { suite: String },
    #[error(
        "invalid component {component:?} in --components: use names such as main, contrib or \
         non-free-firmware"
    )]
    BadComponent { component: String },
    #[error(
        "refusing TARGET {path}: {format:?} is not an archive format this tool writes; name it \
         .tar, .tar.gz (.tgz), .tar.xz or .tar.zst, or give a directory"
    )]
    UnknownArchiveFormat { path: PathBuf, format: String },
    #[error(
        "refusing TARGET {path}: {format:?} is not an image format this tool writes; name it \
         .squashfs (.sqfs), .ext4 or .oci, or give a directory"
    )]
    UnknownImageFormat { path: PathBuf, format: String },
    #[error(
        "refusing --format oci with TARGET {path}: an OCI layout goes to a directory TARGET \
         (or name the TARGET .oci for an OCI archive)"
    )]
    FormatNeedsDirectory { path: PathBuf },
    #[error(
        "refusing TARGET -: standard output is a terminal; redirect it to a file or a pipe \
         (e.g. `> root.tar`)"
    )]
    StdoutIsTerminal,
}

/// The package set to build, as debootstrap defines its variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// Only the --include packages and their dependencies, unpacked and never configured.
    Extract,
    /// Packages marked `Essential: yes` and their dependencies.
    Essential,
    /// Every `Priority: required` package, plus apt.
    #[default]
    Minbase,
    /// minbase plus build-essential.
    Buildd,
    /// Every `Priority: required` or `Priority: important` package.
    Important,
}

impl Variant {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Extract => "extract",
            Variant::Essential => "essential",
            Variant::Minbase => "minbase",
            Variant::Buildd => "buildd",
            Variant::Important => "important",
        }
    }
}

/// Compression of a tarball output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// Where the finished root goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A directory that stays as the chroot.
    Directory(PathBuf),
    /// A tarball file; the root is built in a temporary directory beside it.
    Tarball {
        path: PathBuf,
        compression: Compression,
    },
    /// A tarball on standard output (TARGET `-`).
    Stdout { compression: Compression },
    /// A filesystem or container image file (or, for [`ImageFormat::OciDir`], directory); the
    /// root is built in a temporary directory beside it.
    Image { path: PathBuf, format: ImageFormat },
}

/// The image formats TARGET's suffix (or `--format oci`) selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// `.squashfs` / `.sqfs`, written by mksquashfs.
    Squashfs,
    /// `.ext4`, written by mke2fs -d.
    Ext4,
    /// `.oci`: an OCI image layout in a tar archive.
    OciArchive,
    /// A directory TARGET with `--format oci`: an OCI image layout.
    OciDir,
}

impl ImageFormat {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Ext4 => "ext4",
            ImageFormat::OciArchive => "OCI archive",
            ImageFormat::OciDir => "OCI layout",
        }
    }
}

impl Output {
    /// Classifies TARGET by what it is, then by its name: `-` is standard output, an existing
    /// directory stays a directory whatever its name, a `.tar[.gz|.xz|.zst]` or `.tgz` suffix
    /// means a tarball, and an archive suffix we do not write (`.tar.bz2`, `.txz`, ...) is refused.
    pub fn from_target(target: &Path) -> Result<Output, ConfigError> {
        if target == Path::new("-") {
            return Ok(Output::Stdout {
                compression: Compression::None,
            });
        }
        if fs_err::metadata(target).is_ok_and(|m| m.is_dir()) {
            return Ok(Output::Directory(target.to_path_buf()));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(found) = image_suffix(&name) {
            return match found {
                Ok(format) => Ok(Output::Image {
                    path: target.to_path_buf(),
                    format,
                }),
                Err(format) => Err(ConfigError::UnknownImageFormat {
                    path: target.to_path_buf(),
                    format,
                }),
            };
        }
        match archive_suffix(&name) {
            None => Ok(Output::Directory(target.to_path_buf())),
            Some(Ok(compression)) => Ok(Output::Tarball {
                path: target.to_path_buf(),
                compression,
            }),
            Some(Err(format)) => Err(ConfigError::UnknownArchiveFormat {
                path: target.to_path_buf(),
                format,
            }),
        }
    }

    /// `--format oci`: a directory TARGET becomes an OCI layout; an `.oci` TARGET already is
    /// one; anything else is refused.
    pub fn as_oci(self) -> Result<Output, ConfigError> {
        match self {
            Output::Directory(path) => Ok(Output::Image {
                path,
                format: ImageFormat::OciDir,
            }),
            Output::Image {
                format: ImageFormat::OciArchive | ImageFormat::OciDir,
                ..
            } => Ok(self),
            Output::Tarball { path, .. } | Output::Image { path, .. } => {
                Err(ConfigError::FormatNeedsDirectory { path })
            }
            Output::Stdout { .. } => Err(ConfigError::FormatNeedsDirectory { path: "-".into() }),
        }
    }

    /// The file or directory written, unless it is standard output.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Output::Directory(path) | Output::Tarball { path, .. } | Output::Image { path, .. } => {
                Some(path)
            }
            Output::Stdout { .. } => None,
        }
    }
}

/// The image suffixes we write.
const IMAGE_SUFFIXES: [(&str, ImageFormat); 4] = [
    (".squashfs", ImageFormat::Squashfs),
    (".sqfs", ImageFormat::Squashfs),
    (".ext4", ImageFormat::Ext4),
    (".oci", ImageFormat::OciArchive),
];

/// Suffixes of disk and filesystem images we do not write: refused rather than taken for a
/// directory name.
const OTHER_IMAGE_SUFFIXES: [&str; 10] = [
    ".img", ".ext2", ".ext3", ".erofs", ".iso", ".qcow2", ".raw", ".vmdk", ".cpio", ".cramfs",
];

/// What a file name's suffix says about images: not one (`None`), one we write, or one we do
/// not (`Err` with its suffix).
fn image_suffix(name: &str) -> Option<Result<ImageFormat, String>> {
    if let Some((_, format)) = IMAGE_SUFFIXES.iter().find(|(s, _)| name.ends_with(s)) {
        return Some(Ok(*format));
    }
    OTHER_IMAGE_SUFFIXES
        .iter()
        .find(|s| name.ends_with(*s))
        .map(|s| Err((*s).to_string()))
}

/// The archive suffixes we write.
const ARCHIVE_SUFFIXES: [(&str, Compression); 5] = [
    (".tar", Compression::None),
    (".tar.gz", Compression::Gzip),
    (".tgz", Compression::Gzip),
    (".tar.xz", Compression::Xz),
    (".tar.zst", Compression::Zstd),
];

/// Short forms tar knows for compressed archives that we do not write.
const OTHER_ARCHIVE_SUFFIXES: [&str; 9] = [
    ".tbz", ".tbz2", ".tb2", ".tz2", ".taz", ".tz", ".tlz", ".txz", ".tzst",
];

/// What a file name's suffix says: not an archive (`None`), an archive we write, or one we do
/// not (`Err` with its suffix).
fn archive_suffix(name: &str) -> Option<Result<Compression, String>> {
    if let Some((_, compression)) = ARCHIVE_SUFFIXES.iter().find(|(s, _)| name.ends_with(s)) {
        return Some(Ok(*compression));
    }
    if let Some(at) = name.rfind(".tar.") {
        return Some(Err(name[at..].to_string()));
    }
    OTHER_ARCHIVE_SUFFIXES
        .iter()
        .find(|s| name.ends_with(*s))
        .map(|s| Err((*s).to_string()))
}

/// How far a build goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopAfter {
    /// Resolve, print `NAME VERSION` lines, touch nothing.
    PrintPackages,
    /// Stop once every .deb is verified in the cache.
    DownloadOnly,
    /// Build the root (and the onion service, when `publish_onion`).
    Complete,
}

/// Settings of the onion stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionConfig {
    /// User created inside the chroot and allowed into it by schroot, as an ordinary user.
    pub user: Option<String>,
    /// Let [`OnionConfig::user`] become root inside the chroot through schroot (`root-users=`).
    pub user_root: bool,
    /// Directory copied to the web root; `None` writes a small index.html.
    pub site: Option<PathBuf>,
    /// The onion service's virtual port; a port of 0 cannot be given (the type has no zero), so
    /// no torrc or nginx site ever gets one.
    pub onion_port: NonZeroU16,
    /// nginx's port on 127.0.0.1, an explicit opt-in for TCP; `None` (the default): nginx
    /// listens on a unix socket inside the chroot that only tor and nginx can use.
    pub local_port: Option<NonZeroU16>,
    /// Where host-side files are written (DESTDIR-like); paths inside them stay as seen from `/`.
    /// `None`: the host's `/` for a directory TARGET; for a tarball, [`IMAGE_HOST_ROOT`] inside
    /// the image, so that building an image never changes the host.
    pub host_root: Option<PathBuf>,
    /// An existing onion service key directory to import.
    pub onion_key: Option<PathBuf>,
    /// Clients allowed to reach the service (tor's client authorization); empty: anyone who
    /// knows the address.
    pub auth_clients: Vec<String>,
    /// Enable the service's systemd unit, so it starts at boot.
    pub enable: bool,
}

impl Default for OnionConfig {
    fn default() -> Self {
        OnionConfig {
            user: None,
            user_root: false,
            site: None,
            onion_port: NonZeroU16::new(80).expect("80 is not 0"),
            local_port: None,
            host_root: None,
            onion_key: None,
            auth_clients: Vec::new(),
            enable: false,
        }
    }
}

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Codename or suite name, e.g. `trixie` or `stable`.
    pub suite: String,
    /// Chroot, schroot entry and onion service name.
    pub name: String,
    pub output: Output,
    /// Mirror base URL without a trailing slash.
    pub mirror: String,
    pub variant: Variant,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub components: Vec<String>,
    /// Debian architecture of the root (dpkg's native one), e.g. `amd64`.
    pub arch: String,
    /// Further architectures dpkg in the root accepts packages of (`--arch A,B`: B), whose
    /// packages `--include pkg:B` names.
    pub foreign_archs: Vec<String>,
    /// Where the kernel's binfmt_misc handlers are read when the root's architecture is not
    /// the host's; only tests point it elsewhere.
    #[doc(hidden)]
    pub binfmt_dir: PathBuf,
    /// Trust exactly these keyring files; empty means the built-in keyrings.
    pub keyrings: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub stop_after: StopAfter,
    /// Install nginx and publish the root as an onion service (false with --no-onion).
    pub publish_onion: bool,
    /// Accept a Release whose Valid-Until has passed (snapshot archives).
    pub ignore_valid_until: bool,
    /// Build into an existing non-empty directory target.
    pub force: bool,
    /// Clamp timestamps and remove volatile files for reproducible output.
    pub source_date_epoch: Option<i64>,
    /// Where to write an SPDX SBOM of the installed packages (OCI output always carries one).
    pub sbom: Option<PathBuf>,
    pub onion: OnionConfig,
    /// Commands and special forms run at the setup, extract, essential and customize points.
    pub hooks: crate::hooks::Hooks,
}

impl BuildConfig {
    /// A configuration with every default, for `suite` from `mirror`.
    pub fn new(suite: impl Into<String>, mirror: impl Into<String>) -> BuildConfig {
        BuildConfig {
            suite: suite.into(),
            name: DEFAULT_NAME.to_string(),
            output: Output::Directory(Path::new(DEFAULT_CHROOT_PARENT).join(DEFAULT_NAME)),
            mirror: mirror.into().trim_end_matches('/').to_string(),
            variant: Variant::default(),
            include: Vec::new(),
            exclude: Vec::new(),
            components: vec!["main".to_string()],
            arch: host_arch().unwrap_or_else(|_| "amd64".to_string()),
            foreign_archs: Vec::new(),
            binfmt_dir: PathBuf::from(crate::preflight::BINFMT_DIR),
            keyrings: Vec::new(),
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            stop_after: StopAfter::Complete,
            publish_onion: true,
            ignore_valid_until: false,
            force: false,
            source_date_epoch: None,
            sbom: None,
            onion: OnionConfig::default(),
            hooks: crate::hooks::Hooks::default(),
        }
    }

    /// Checks what can be checked before any work: names, target, mirror scheme.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_name(&self.name)?;
        normalize_mirror(&self.mirror)?;
        self.validate_archs()?;
        for (option, names) in [("include", &self.include), ("exclude", &self.exclude)] {
            for name in names {
                let name_only = match (option, name.split_once(':')) {
                    ("include", Some((package, _))) => package,
                    _ => name.as_str(),
                };
                if !is_package_name(name_only) {
                    return Err(ConfigError::BadPackageName {
                        option,
                        name: name.clone(),
                    });
                }
            }
        }
        if !is_suite_name(&self.suite) {
            return Err(ConfigError::BadSuite {
                suite: self.suite.clone(),
            });
        }
        if self.components.is_empty() {
            return Err(ConfigError::BadComponent {
                component: String::new(),
            });
        }
        if let Some(bad) = self.components.iter().find(|c| !is_suite_name(c)) {
            return Err(ConfigError::BadComponent {
                component: bad.clone(),
            });
        }
        self.check_stdout()?;
        if let Some(path) = self.output.path() {
            // Resolve `..` and symlinks where the path exists, so `/..` or a link to `/` is caught.
            let resolved = fs_err::canonicalize(path)
                .or_else(|_| std::path::absolute(path))
                .unwrap_or_else(|_| path.to_path_buf());
            if resolved.parent().is_none() {
                return Err(ConfigError::TargetIsRoot {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// What a build in a user namespace cannot do, refused before it starts: writing the host's
    /// /etc/tor, /var/lib/tor and /etc/schroot (only real root may).
    pub fn check_rootless(&self) -> Result<(), ConfigError> {
        let host_side = self.wants_onion()
            && self.onion.host_root.is_none()
            && matches!(self.output, Output::Directory(_));
        if host_side {
            return Err(ConfigError::RootlessHostFiles);
        }
        Ok(())
    }

    /// Architecture names are safe in URLs and paths, each given once, and every `pkg:ARCH` of
    /// --include names one of them.
    fn validate_archs(&self) -> Result<(), ConfigError> {
        let all: Vec<&String> = std::iter::once(&self.arch)
            .chain(&self.foreign_archs)
            .collect();
        for (i, arch) in all.iter().enumerate() {
            if !is_arch_name(arch) || all[..i].contains(arch) {
                return Err(ConfigError::BadArch {
                    arch: arch.to_string(),
                });
            }
        }
        for include in &self.include {
            let Some((package, arch)) = include.split_once(':') else {
                continue;
            };
            if !all.iter().any(|a| *a == arch) {
                return Err(ConfigError::IncludeArchNotInRoot {
                    package: package.to_string(),
                    arch: arch.to_string(),
                    native: self.arch.clone(),
                });
            }
        }
        Ok(())
    }

    /// A tarball is binary: it never goes to a terminal (as mmdebstrap refuses it too).
    fn check_stdout(&self) -> Result<(), ConfigError> {
        use std::io::IsTerminal;
        let to_stdout = matches!(self.output, Output::Stdout { .. });
        if to_stdout && self.stop_after == StopAfter::Complete && std::io::stdout().is_terminal() {
            return Err(ConfigError::StdoutIsTerminal);
        }
        Ok(())
    }

    /// Whether nginx joins the package set and the onion stage runs.
    pub fn wants_onion(&self) -> bool {
        self.publish_onion && self.variant != Variant::Extract
    }
}

/// A chroot / service name: safe as a file name, a schroot section and a torrc path.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadName {
            name: name.to_string(),
        })
    }
}

/// A suite, codename or component as it appears in a mirror's `dists/` path: letters, digits,
/// `.`, `_`, `-`, `+` and inner `/` (`updates/main`), starting with a letter or digit.
pub fn is_suite_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.split('/').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        })
}

/// Components as given, without empty entries and repeats, in their first order.
pub fn unique_components(components: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for component in components {
        if !component.is_empty() && !unique.contains(&component) {
            unique.push(component);
        }
    }
    unique
}

/// A Debian architecture name as dpkg accepts it (lower-case letters, digits, `-`), and not
/// the pseudo-architectures `all` and `any`.
pub fn is_arch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name != "all"
        && name != "any"
}

/// Debian package names: lower-case letters, digits, `+`, `-`, `.`; at least two characters.
pub fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

/// The host's Debian architecture name, from the machine the binary runs on.
pub fn host_arch() -> Result<String, ConfigError> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        _ => return Err(ConfigError::UnknownArch),
    };
    Ok(arch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_suffix_selects_output_kind() {
        assert_eq!(
            Output::from_target(Path::new("/nonexistent/x.tar.zst")).expect("tarball"),
            Output::Tarball {
                path: "/nonexistent/x.tar.zst".into(),
                compression: Compression::Zstd
            }
        );
        assert_eq!(
            Output::from_target(Path::new("-")).expect("stdout"),
            Output::Stdout {
                compression: Compression::None
            }
        );
        assert_eq!(
            Output::from_target(Path::new("/nonexistent/a")).expect("directory"),
            Output::Directory("/nonexistent/a".into())
        );
    }

    #[test]
    fn archive_suffixes_we_do_not_write_are_refused() {
        for name in ["r.tar.lz4", "r.tar.bz2", "r.tar.lzma", "r.txz", "r.tbz2"] {
            let err = Output::from_target(&Path::new("/nonexistent").join(name)).expect_err(name);
            assert!(
                matches!(err, ConfigError::UnknownArchiveFormat { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn an_existing_directory_stays_a_directory_whatever_its_name() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for name in ["d.tar", "d.tar.lz4"] {
            let dir = tmp.path().join(name);
            fs_err::create_dir(&dir).expect("mkdir");
            assert_eq!(
                Output::from_target(&dir).expect(name),
                Output::Directory(dir.clone())
            );
        }
    }

    #[test]
    fn suites_and_components_are_path_safe_names() {
        for good in [
            "trixie",
            "stable",
            "bookworm-backports",
            "updates/main",
            "non-free-firmware",
        ] {
            assert!(is_suite_name(good), "{good:?} refused");
        }
        for bad in [
            "", " ", "../x", "a/", "/a", "a//b", "tri xie", "-x", "a\nb", "a?b",
        ] {
            assert!(!is_suite_name(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn repeated_components_keep_their_first_place() {
        let given = ["main", "contrib", "main", "", "contrib", "non-free"].map(String::from);
        assert_eq!(unique_components(given), ["main", "contrib", "non-free"]);
    }

    #[test]
    fn root_target_is_refused() {
        let mut config = BuildConfig::new("trixie", "http://127.0.0.1/debian");
        config.output = Output::Directory("/".into());
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TargetIsRoot { .. })
        ));
        config.output = Output::Directory("/../".into());
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TargetIsRoot { .. })
        ));
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        validate_name("onion-1.web_2").expect("plain name");
    }
}
