//! The suite's index: InRelease (or Release + Release.gpg when there is no InRelease), verified,
//! then the Packages index of every requested component: the compressed file is checked against
//! the Release's SHA256 before it is decompressed, the decompressed stream while it is parsed
//! (a stanza at a time; nothing is used unless the whole matches). Verified Packages files are
//! kept in the cache under their hash, so a warm build fetches only the InRelease.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::time::SystemTime;

use sha2::Digest;

use super::client::{check, Expected, FetchError, Fetcher};
use super::hash::Sha256Digest;
use super::index::{Part, RepoIndex, Stanzas};
use super::keyring::Keyring;
use super::release::{ReleasePolicy, VerifiedRelease};

/// Which suite to index, from where, trusting which keys.
#[derive(Clone, Copy)]
pub struct IndexRequest<'a> {
    pub mirror: &'a str,
    pub suite: &'a str,
    pub components: &'a [String],
    pub arch: &'a str,
    pub keyring: &'a Keyring,
    pub ignore_valid_until: bool,
    pub cache_dir: &'a Path,
}

/// Fetches and verifies the Release and every Packages index the request needs.
pub async fn index(
    fetcher: &Fetcher,
    request: IndexRequest<'_>,
) -> Result<(VerifiedRelease, RepoIndex), FetchError> {
    let release = fetch_release(fetcher, &request).await?;
    let parts =
        futures_util::future::try_join_all(
            request.components.iter().zip(0..).map(|(component, part)| {
                fetch_packages(fetcher, &request, &release, component, part)
            }),
        )
        .await?;
    Ok((release, RepoIndex::from_verified(parts)))
}

async fn fetch_release(
    fetcher: &Fetcher,
    request: &IndexRequest<'_>,
) -> Result<VerifiedRelease, FetchError> {
    let base = format!("{}/dists/{}", request.mirror, request.suite);
    let policy = ReleasePolicy {
        suite: request.suite,
        now: SystemTime::now(),
        ignore_valid_until: request.ignore_valid_until,
    };
    let inrelease_url = format!("{base}/InRelease");
    match fetcher.get(&inrelease_url).await {
        Ok(signed) => Ok(VerifiedRelease::from_inrelease(
            &inrelease_url,
            &signed,
            request.keyring,
            &policy,
        )?),
        Err(FetchError::NotFound { .. }) => {
            let release_url = format!("{base}/Release");
            let release = fetcher.get(&release_url).await?;
            let signature = fetcher.get(&format!("{release_url}.gpg")).await?;
            Ok(VerifiedRelease::from_detached(
                &release_url,
                &release,
                &signature,
                request.keyring,
                &policy,
            )?)
        }
        Err(err) => Err(err),
    }
}

/// Compressions of a Packages index, in order of preference.
const VARIANTS: [(&str, Compression); 3] = [
    (".xz", Compression::Xz),
    (".gz", Compression::Gzip),
    ("", Compression::None),
];

#[derive(Clone, Copy)]
enum Compression {
    Xz,
    Gzip,
    None,
}

async fn fetch_packages(
    fetcher: &Fetcher,
    request: &IndexRequest<'_>,
    release: &VerifiedRelease,
    component: &str,
    part: u32,
) -> Result<Parsed, FetchError> {
    let dir = format!("{component}/binary-{}", request.arch);
    let base = format!("{}/dists/{}", request.mirror, request.suite);
    let (path, file, compression) = VARIANTS
        .iter()
        .find_map(|(suffix, compression)| {
            let path = format!("{dir}/Packages{suffix}");
            release.file(&path).map(|file| (path, *file, *compression))
        })
        .ok_or_else(|| FetchError::MissingIndex {
            release: format!("{base}/InRelease"),
            component: component.to_string(),
            arch: request.arch.to_string(),
        })?;
    let url = if release.acquire_by_hash() {
        format!("{base}/{dir}/by-hash/SHA256/{}", file.sha256)
    } else {
        format!("{base}/{path}")
    };
    let expected = Expected {
        size: file.size,
        sha256: file.sha256,
    };
    // The Release also lists the uncompressed index: a warm build reads that from the cache
    // and checks its hash, which is far cheaper than decompressing again.
    let plain = release.file(&format!("{dir}/Packages")).map(|f| Expected {
        size: f.size,
        sha256: f.sha256,
    });
    let cache = request.cache_dir.join("indices");
    if let Some(plain) = plain {
        let (url, cache) = (url.clone(), cache.clone());
        let warm = tokio::task::spawn_blocking(move || parse_cached(&cache, plain, &url, part))
            .await
            .expect("parsing an index does not panic")?;
        if let Some(parsed) = warm {
            return Ok(parsed);
        }
    }
    let compressed = match read_cached(&cache, expected) {
        Some(data) => data,
        None => {
            let data = fetcher.get_verified(&url, expected).await?;
            if plain.is_none() {
                store_cached(&cache, expected, &data);
            }
            data
        }
    };
    tokio::task::spawn_blocking(move || {
        let decoder: Box<dyn Read> = match compression {
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new(compressed.as_slice())),
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(compressed.as_slice())),
            Compression::None => Box::new(compressed.as_slice()),
        };
        decompress_and_parse(decoder, plain, &cache, url, part)
    })
    .await
    .expect("parsing an index does not panic")
}

/// A verified Packages index: its name, its compact fields, and the file its stanzas stay in.
type Parsed = (String, Part, Stanzas);

/// Streams the decompressed index through the hash, a copy in the cache and the parser at once,
/// so no more than one stanza of it is in memory; past the size the Release gives it stops.
/// The copy (named by its hash when the Release lists one) stays open for dpkg's `available`.
fn decompress_and_parse(
    decoder: Box<dyn Read + '_>,
    plain: Option<Expected>,
    cache: &Path,
    url: String,
    part: u32,
) -> Result<Parsed, FetchError> {
    let temp = fs_err::create_dir_all(cache)
        .and_then(|()| {
            tempfile::Builder::new()
                .prefix(".partial-")
                .tempfile_in(cache)
        })
        // A read-only cache must not fail the build: keep the copy in the temp dir instead.
        .or_else(|_| tempfile::NamedTempFile::new())
        .map_err(|source| FetchError::Cache {
            path: cache.to_path_buf(),
            source,
        })?;
    let mut tee = Tee {
        inner: decoder,
        hasher: sha2::Sha256::new(),
        count: 0,
        limit: plain.map(|p| p.size),
        copy: Some(std::io::BufWriter::new(temp.as_file())),
        failure: None,
    };
    let parsed = super::index::parse_packages(&url, part, BufReader::new(&mut tee));
    if parsed.is_err() && tee.failure.is_none() {
        // Finish hashing: a stanza that does not parse in a file that does not match is the
        // mirror's inconsistency, and that is the error to report.
        let _ = std::io::copy(&mut tee, &mut std::io::sink());
    }
    let decompressed_url = format!("{url} (decompressed)");
    let copy_failed = |source| FetchError::Cache {
        path: temp.path().to_path_buf(),
        source,
    };
    match tee.failure.take() {
        Some(Failure::Decompress(source)) => return Err(FetchError::Decompress { url, source }),
        Some(Failure::Copy(source)) => return Err(copy_failed(source)),
        Some(Failure::TooLong) => {
            let plain = plain.expect("only a known size can be exceeded");
            return Err(FetchError::SizeMismatch {
                url: decompressed_url,
                expected: plain.size,
                actual: tee.count,
            });
        }
        None => {}
    }
    let (count, digest) = (tee.count, Sha256Digest(tee.hasher.finalize_reset().into()));
    let copy = tee.copy.take();
    drop(tee);
    if let Some(plain) = plain {
        check(&decompressed_url, plain, count, digest)?;
    }
    let parsed = parsed?;
    flush(copy).map_err(copy_failed)?;
    let file = match plain {
        Some(plain) => {
            let path = cache.join(plain.sha256.to_hex());
            match temp.persist(&path) {
                Ok(file) => file,
                Err(err) => {
                    tracing::warn!("{}: cannot cache index: {}", path.display(), err.error);
                    err.file.into_file()
                }
            }
        }
        None => temp.into_file(),
    };
    Ok((url, parsed, Stanzas::File(file)))
}

/// The decompressed index from the cache, parsed while its size and hash are checked; `None`
/// when it is missing, not ours alone to write, or does not match (then it is fetched again).
fn parse_cached(
    dir: &Path,
    expected: Expected,
    url: &str,
    part: u32,
) -> Result<Option<Parsed>, FetchError> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(expected.sha256.to_hex());
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(None);
    };
    // The file is read again later for dpkg's `available`: only one nobody else can change
    // between now and then is used.
    let trusted = file.metadata().is_ok_and(|m| {
        m.is_file() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o022 == 0
    });
    if !trusted {
        tracing::warn!(
            "{}: not used, as another user could change it",
            path.display()
        );
        return Ok(None);
    }
    let mut tee = Tee {
        inner: Box::new(&file),
        hasher: sha2::Sha256::new(),
        count: 0,
        limit: Some(expected.size),
        copy: None::<std::io::Sink>,
        failure: None,
    };
    let parsed = super::index::parse_packages(url, part, BufReader::new(&mut tee));
    if parsed.is_err() && tee.failure.is_none() {
        let _ = std::io::copy(&mut tee, &mut std::io::sink());
    }
    let digest = Sha256Digest(tee.hasher.finalize_reset().into());
    let whole = tee.failure.is_none() && tee.count == expected.size;
    drop(tee);
    if !whole || digest != expected.sha256 {
        return Ok(None);
    }
    Ok(Some((url.to_owned(), parsed?, Stanzas::File(file))))
}

/// Writes out what the copy still buffers.
fn flush(copy: Option<std::io::BufWriter<&std::fs::File>>) -> std::io::Result<()> {
    match copy {
        Some(copy) => copy.into_inner().map(drop).map_err(|e| e.into_error()),
        None => Ok(()),
    }
}

/// Why streaming an index stopped.
enum Failure {
    Decompress(std::io::Error),
    Copy(std::io::Error),
    TooLong,
}

/// Reads through: hashes and counts what passes, copies it, and stops past `limit`.
struct Tee<'a, W: Write> {
    inner: Box<dyn Read + 'a>,
    hasher: sha2::Sha256,
    count: u64,
    limit: Option<u64>,
    copy: Option<W>,
    failure: Option<Failure>,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.failure.is_some() {
            return Err(std::io::Error::other("the index stream already failed"));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let message = e.to_string();
                self.failure = Some(Failure::Decompress(e));
                return Err(std::io::Error::other(message));
            }
        };
        self.count += n as u64;
        if self.limit.is_some_and(|limit| self.count > limit) {
            self.failure = Some(Failure::TooLong);
            return Err(std::io::Error::other("longer than the Release says"));
        }
        self.hasher.update(&buf[..n]);
        if let Some(copy) = &mut self.copy {
            if let Err(e) = copy.write_all(&buf[..n]) {
                let message = e.to_string();
                self.failure = Some(Failure::Copy(e));
                return Err(std::io::Error::other(message));
            }
        }
        Ok(n)
    }
}

/// A file from the index cache, only if its size and hash match.
fn read_cached(dir: &Path, expected: Expected) -> Option<Vec<u8>> {
    let data = fs_err::read(dir.join(expected.sha256.to_hex())).ok()?;
    let ok = data.len() as u64 == expected.size && Sha256Digest::of(&data) == expected.sha256;
    ok.then_some(data)
}

/// Keeps verified index bytes under their hash. The cache is an optimisation: a read-only or
/// full cache must not fail the build.
fn store_cached(dir: &Path, expected: Expected, data: &[u8]) {
    let path = dir.join(expected.sha256.to_hex());
    let stored = fs_err::create_dir_all(dir).and_then(|()| {
        let mut temp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)?;
        std::io::Write::write_all(&mut temp, data)?;
        temp.persist(&path).map(drop).map_err(|e| e.error)
    });
    if let Err(err) = stored {
        tracing::warn!("{}: cannot cache index: {err}", path.display());
    }
}
