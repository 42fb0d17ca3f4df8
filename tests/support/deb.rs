//! Builds .deb files for tests: an ar archive of debian-binary, control.tar and data.tar with the
//! compression chosen, holding whatever entries a test asks for — including hostile names the
//! tar crate's own path setters would refuse.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use debstrap_onion::fetch::{CachedDeb, Package, Sha256Digest};

/// How a tar member is compressed (`Other` names a suffix we do not read, e.g. `.bz2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Other(&'static str),
}

impl Compression {
    fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            Compression::Other(s) => s,
        }
    }

    fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None | Compression::Other(_) => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).expect("gzip into memory");
                e.finish().expect("gzip into memory")
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).expect("xz into memory");
                e.finish().expect("xz into memory")
            }
            Compression::Zstd => zstd::encode_all(data, 1).expect("zstd into memory"),
        }
    }
}

/// What a data.tar entry is.
#[derive(Debug, Clone)]
pub enum Body {
    Dir,
    File(Vec<u8>),
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One data.tar entry; `name` is written into the header byte for byte.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub body: Body,
}

/// A .deb under construction.
#[derive(Debug, Clone)]
pub struct DebBuilder {
    pub name: String,
    pub version: String,
    pub arch: String,
    fields: Vec<(String, String)>,
    control_members: Vec<(String, u32, Vec<u8>)>,
    entries: Vec<TarEntry>,
    data_compression: Compression,
    control_compression: Compression,
    debian_binary: String,
    tamper: Option<fn(&mut Vec<u8>)>,
}

/// The mtime test entries get unless they say otherwise (2023-11-14).
pub const MTIME: u64 = 1_700_000_000;

impl DebBuilder {
    /// A package with the given name, version and architecture and no files.
    pub fn new(name: &str, version: &str, arch: &str) -> DebBuilder {
        DebBuilder {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: arch.to_owned(),
            fields: vec![
                (
                    "Maintainer".to_owned(),
                    "Test <test@example.org>".to_owned(),
                ),
                ("Priority".to_owned(), "optional".to_owned()),
            ],
            control_members: Vec::new(),
            entries: Vec::new(),
            data_compression: Compression::Xz,
            control_compression: Compression::Xz,
            debian_binary: "2.0\n".to_owned(),
            tamper: None,
        }
    }

    /// Adds a control field (after Package, Version, Architecture and the defaults).
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.fields.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a control archive member (`postinst`, `md5sums`, `conffiles`, ...).
    pub fn control_member(mut self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.control_members
            .push((name.to_owned(), mode, data.to_vec()));
        self
    }

    /// Sets both members' compression.
    pub fn compression(mut self, c: Compression) -> Self {
        self.data_compression = c;
        self.control_compression = c;
        self
    }

    /// Sets only data.tar's compression.
    pub fn data_compression(mut self, c: Compression) -> Self {
        self.data_compression = c;
        self
    }

    /// Replaces the debian-binary contents.
    pub fn debian_binary(mut self, text: &str) -> Self {
        self.debian_binary = text.to_owned();
        self
    }

    /// Alters the uncompressed data.tar bytes before they are compressed.
    pub fn tamper_data_tar(mut self, f: fn(&mut Vec<u8>)) -> Self {
        self.tamper = Some(f);
        self
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: TarEntry) -> Self {
        self.entries.push(entry);
        self
    }

    fn push(self, name: &str, mode: u32, body: Body) -> Self {
        self.entry(TarEntry {
            name: name.as_bytes().to_vec(),
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            body,
        })
    }

    /// A directory entry (give `./usr/` style names).
    pub fn dir(self, name: &str, mode: u32) -> Self {
        self.push(name, mode, Body::Dir)
    }

    /// A regular file.
    pub fn file(self, name: &str, mode: u32, contents: &[u8]) -> Self {
        self.push(name, mode, Body::File(contents.to_vec()))
    }

    /// A symlink.
    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.push(name, 0o777, Body::Symlink(target.as_bytes().to_vec()))
    }

    /// A hard link to `target` (an archive name).
    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.push(name, 0o644, Body::HardLink(target.as_bytes().to_vec()))
    }

    /// A character device.
    pub fn char_device(self, name: &str, mode: u32, major: u32, minor: u32) -> Self {
        self.push(name, mode, Body::Char(major, minor))
    }

    /// A fifo.
    pub fn fifo(self, name: &str, mode: u32) -> Self {
        self.push(name, mode, Body::Fifo)
    }

    /// Sets the owner of the last entry added.
    pub fn owned_by(mut self, uid: u64, gid: u64) -> Self {
        let last = self.entries.last_mut().expect("owned_by follows an entry");
        last.uid = uid;
        last.gid = gid;
        self
    }

    /// Sets the mtime of the last entry added.
    pub fn mtime(mut self, mtime: u64) -> Self {
        self.entries
            .last_mut()
            .expect("mtime follows an entry")
            .mtime = mtime;
        self
    }

    /// The control file's text.
    pub fn control_text(&self) -> String {
        let mut text = format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n",
            self.name, self.version, self.arch
        );
        for (k, v) in &self.fields {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push_str("Description: test package\n A package made by the tests.\n");
        text
    }

    /// The uncompressed data.tar.
    pub fn data_tar(&self) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for e in &self.entries {
            let mut h = tar::Header::new_gnu();
            let (kind, data): (tar::EntryType, &[u8]) = match &e.body {
                Body::Dir => (tar::EntryType::Directory, b""),
                Body::File(d) => (tar::EntryType::Regular, d),
                Body::Symlink(_) => (tar::EntryType::Symlink, b""),
                Body::HardLink(_) => (tar::EntryType::Link, b""),
                Body::Char(..) => (tar::EntryType::Char, b""),
                Body::Block(..) => (tar::EntryType::Block, b""),
                Body::Fifo => (tar::EntryType::Fifo, b""),
            };
            h.set_entry_type(kind);
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(e.mtime);
            h.set_size(data.len() as u64);
            h.set_username("root").expect("short user name");
            h.set_groupname("root").expect("short group name");
            match &e.body {
                Body::Symlink(t) | Body::HardLink(t) => raw_copy(&mut h.as_old_mut().linkname, t),
                Body::Char(maj, min) | Body::Block(maj, min) => {
                    h.set_device_major(*maj)
                        .expect("gnu header has device fields");
                    h.set_device_minor(*min)
                        .expect("gnu header has device fields");
                }
                _ => {}
            }
            raw_copy(&mut h.as_old_mut().name, &e.name);
            h.set_cksum();
            tar.append(&h, data).expect("tar into memory");
        }
        tar.into_inner().expect("tar into memory")
    }

    fn control_tar(&self) -> Vec<u8> {
        let mut members = vec![(
            "control".to_owned(),
            0o644,
            self.control_text().into_bytes(),
        )];
        members.extend(self.control_members.iter().cloned());
        let mut tar = tar::Builder::new(Vec::new());
        let mut root = tar::Header::new_gnu();
        root.set_entry_type(tar::EntryType::Directory);
        root.set_mode(0o755);
        root.set_size(0);
        raw_copy(&mut root.as_old_mut().name, b"./");
        root.set_cksum();
        tar.append(&root, &b""[..]).expect("tar into memory");
        for (name, mode, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(mode);
            h.set_mtime(MTIME);
            h.set_size(data.len() as u64);
            raw_copy(&mut h.as_old_mut().name, format!("./{name}").as_bytes());
            h.set_cksum();
            tar.append(&h, data.as_slice()).expect("tar into memory");
        }
        tar.into_inner().expect("tar into memory")
    }

    /// The .deb's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut data = self.data_tar();
        if let Some(tamper) = self.tamper {
            tamper(&mut data);
        }
        let members: Vec<(String, Vec<u8>)> = vec![
            (
                "debian-binary".to_owned(),
                self.debian_binary.clone().into_bytes(),
            ),
            (
                format!("control.tar{}", self.control_compression.suffix()),
                self.control_compression.compress(&self.control_tar()),
            ),
            (
                format!("data.tar{}", self.data_compression.suffix()),
                self.data_compression.compress(&data),
            ),
        ];
        let mut ar = ar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let mut h = ar::Header::new(name.into_bytes(), bytes.len() as u64);
            h.set_mode(0o100644);
            h.set_mtime(MTIME);
            ar.append(&h, bytes.as_slice()).expect("ar into memory");
        }
        ar.into_inner().expect("ar into memory")
    }

    /// The index entry a resolver would have produced for this package.
    pub fn package(&self, size: u64) -> Package {
        Package {
            name: self.name.clone(),
            version: self.version.clone(),
            architecture: self.arch.clone(),
            multi_arch: self
                .fields
                .iter()
                .find(|(k, _)| k == "Multi-Arch")
                .map(|(_, v)| v.clone()),
            priority: Some("optional".to_owned()),
            essential: false,
            depends: None,
            pre_depends: None,
            provides: None,
            conflicts: None,
            breaks: None,
            replaces: self
                .fields
                .iter()
                .find(|(k, _)| k == "Replaces")
                .map(|(_, v)| v.clone()),
            filename: format!("pool/main/{}.deb", self.name),
            size,
            sha256: Sha256Digest([0; 32]),
            stanza: Default::default(),
        }
    }

    /// Writes the .deb into `dir` and returns it as the download stage would.
    pub fn write(&self, dir: &Path) -> CachedDeb {
        self.write_bytes(dir, &self.build())
    }

    /// Writes `bytes` as this package's .deb into `dir` (for tests that damage the archive).
    pub fn write_bytes(&self, dir: &Path, bytes: &[u8]) -> CachedDeb {
        self.write_as(dir, bytes, |_| {})
    }

    /// Writes `bytes` into `dir` as a .deb whose index entry `edit` changed (for tests of an
    /// index that promised something else); size and SHA256 are the bytes'.
    pub fn write_as(&self, dir: &Path, bytes: &[u8], edit: impl FnOnce(&mut Package)) -> CachedDeb {
        let path: PathBuf = dir.join(format!("{}_{}_{}.deb", self.name, self.version, self.arch));
        fs_err::write(&path, bytes).expect("write the test .deb");
        let mut package = self.package(bytes.len() as u64);
        package.sha256 = Sha256Digest::of(bytes);
        edit(&mut package);
        CachedDeb::verify_local(package, &path).expect("the test .deb matches its own hash")
    }
}

/// Copies `bytes` into a fixed-size, NUL-padded header field (they must fit).
fn raw_copy(slot: &mut [u8], bytes: &[u8]) {
    assert!(
        bytes.len() <= slot.len(),
        "test entry name too long for a plain tar header"
    );
    slot.fill(0);
    slot[..bytes.len()].copy_from_slice(bytes);
}
