//! Builds a small Debian repository on disk for offline tests: pool/ with the given .debs,
//! Packages (plain, .gz, .xz and by-hash), Release, and InRelease / Release.gpg made by the
//! signing functions the test passes in.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sha2::Digest;

use super::sign::release_date;

/// One package in the fixture repository.
#[derive(Debug, Clone)]
pub struct FakeDeb {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Extra control fields (Depends, Priority, Essential, Provides, ...).
    pub fields: Vec<(String, String)>,
    /// The .deb's bytes.
    pub bytes: Vec<u8>,
}

impl FakeDeb {
    pub fn new(name: &str, version: &str, fields: &[(&str, &str)], bytes: Vec<u8>) -> FakeDeb {
        FakeDeb {
            name: name.to_string(),
            version: version.to_string(),
            arch: super::native_arch(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bytes,
        }
    }

    /// The mirror-relative path of the .deb.
    pub fn filename(&self) -> String {
        let version = self.version.replace(':', "%3a");
        format!(
            "pool/main/{}/{}_{}_{}.deb",
            self.name, self.name, version, self.arch
        )
    }
}

/// The Release's header fields.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    pub suite: String,
    pub codename: String,
    pub date: SystemTime,
    pub valid_until: Option<SystemTime>,
    pub by_hash: bool,
    /// Changes the Release text before it is signed (for a repository whose signed data is
    /// hostile).
    pub edit_release: Option<fn(String) -> String>,
    /// Changes the Packages text before it is compressed and listed in the Release.
    pub edit_packages: Option<fn(String) -> String>,
}

impl RepoSpec {
    /// A suite `fixture` (Suite `testing`) dated an hour ago, valid for a week, by-hash.
    pub fn fresh() -> RepoSpec {
        let now = SystemTime::now();
        RepoSpec {
            suite: "testing".to_string(),
            codename: "fixture".to_string(),
            date: now - Duration::from_secs(3600),
            valid_until: Some(now + Duration::from_secs(7 * 86400)),
            by_hash: true,
            edit_release: None,
            edit_packages: None,
        }
    }
}

/// Signing functions: inline (InRelease) and detached (Release.gpg).
pub struct Signer<'a> {
    pub clearsign: &'a dyn Fn(&[u8]) -> Vec<u8>,
    pub detached: &'a dyn Fn(&[u8]) -> Vec<u8>,
}

/// Writes the repository under `root`; returns the Release text that was signed.
pub fn write_repo(root: &Path, spec: &RepoSpec, debs: &[FakeDeb], signer: &Signer) -> String {
    let mut packages = String::new();
    for deb in debs {
        let path = root.join(deb.filename());
        fs_err::create_dir_all(path.parent().expect("pool dir")).expect("mkdir pool");
        fs_err::write(&path, &deb.bytes).expect("write deb");
        packages.push_str(&format!(
            "Package: {}\nVersion: {}\nArchitecture: {}\n",
            deb.name, deb.version, deb.arch
        ));
        for (key, value) in &deb.fields {
            packages.push_str(&format!("{key}: {value}\n"));
        }
        packages.push_str(&format!(
            "Filename: {}\nSize: {}\nSHA256: {}\nDescription: fixture package {}\n\n",
            deb.filename(),
            deb.bytes.len(),
            hex::encode(sha2::Sha256::digest(&deb.bytes)),
            deb.name
        ));
    }
    let dists = root.join("dists").join(&spec.codename);
    let arch = super::native_arch();
    let index_dir = dists.join(format!("main/binary-{arch}"));
    fs_err::create_dir_all(index_dir.join("by-hash/SHA256")).expect("mkdir dists");
    if let Some(edit) = spec.edit_packages {
        packages = edit(packages);
    }
    let plain = packages.into_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&plain).expect("xz");
    let xz = xz.finish().expect("xz");

    let mut sha256 = String::new();
    for (suffix, data) in [("", &plain), (".gz", &gz), (".xz", &xz)] {
        let digest = hex::encode(sha2::Sha256::digest(data));
        fs_err::write(index_dir.join(format!("Packages{suffix}")), data).expect("write Packages");
        if spec.by_hash {
            fs_err::write(index_dir.join("by-hash/SHA256").join(&digest), data)
                .expect("write by-hash");
        }
        sha256.push_str(&format!(
            " {digest} {:>8} main/binary-{arch}/Packages{suffix}\n",
            data.len()
        ));
    }
    let mut release = format!(
        "Origin: Fixture\nLabel: Fixture\nSuite: {}\nCodename: {}\nDate: {}\n",
        spec.suite,
        spec.codename,
        release_date(spec.date)
    );
    if let Some(valid_until) = spec.valid_until {
        release.push_str(&format!("Valid-Until: {}\n", release_date(valid_until)));
    }
    if spec.by_hash {
        release.push_str("Acquire-By-Hash: yes\n");
    }
    release.push_str(&format!(
        "Architectures: {arch}\nComponents: main\nDescription: offline test fixture\nSHA256:\n",
    ));
    release.push_str(&sha256);
    if let Some(edit) = spec.edit_release {
        release = edit(release);
    }
    fs_err::write(dists.join("Release"), &release).expect("write Release");
    fs_err::write(
        dists.join("Release.gpg"),
        (signer.detached)(release.as_bytes()),
    )
    .expect("write Release.gpg");
    fs_err::write(
        dists.join("InRelease"),
        (signer.clearsign)(release.as_bytes()),
    )
    .expect("write InRelease");
    release
}

/// A key file in fixtures/keys (see its README).
pub fn key_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keys")
        .join(name)
}

/// A fixture repository written to a temporary directory, signed with a fixture key and served
/// on 127.0.0.1; `dir` also holds room for a test's TARGET and cache.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub server: super::server::Server,
}

impl Served {
    /// Writes `debs` as suite `spec.codename`, signed with the secret key file `secret`.
    pub fn start(spec: &RepoSpec, secret: &str, debs: &[FakeDeb]) -> Served {
        let secret = fs_err::read(key_path(secret)).expect("fixture key");
        let clearsign = |text: &[u8]| super::sign::clearsign(&secret, text);
        let detached = |data: &[u8]| super::sign::detached_sign(&secret, data);
        let dir = tempfile::tempdir().expect("temp dir");
        let signer = Signer {
            clearsign: &clearsign,
            detached: &detached,
        };
        write_repo(&dir.path().join("repo"), spec, debs, &signer);
        let server = super::server::Server::start(&dir.path().join("repo"));
        Served { dir, server }
    }

    /// The repository's files, for tests that tamper with them.
    pub fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }
}

/// `base` (required, depends on `libfoo`), `libfoo`, `apt` (which minbase adds; depends on
/// `base`) and an unrelated `extra`.
pub fn sample_packages() -> Vec<FakeDeb> {
    vec![
        FakeDeb::new(
            "apt",
            "2.9",
            &[("Priority", "important"), ("Depends", "base")],
            vec![b'a'; 500],
        ),
        FakeDeb::new(
            "base",
            "1.0-1",
            &[("Priority", "required"), ("Depends", "libfoo (>= 2)")],
            vec![b'b'; 3000],
        ),
        FakeDeb::new(
            "libfoo",
            "2.1-1",
            &[("Priority", "optional")],
            vec![b'l'; 70_000],
        ),
        FakeDeb::new("extra", "0.1", &[("Priority", "optional")], vec![b'e'; 10]),
    ]
}
