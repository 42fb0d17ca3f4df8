//! The suite's index: InRelease (or Release + Release.gpg when there is no InRelease), verified,
//! then the Packages index of every requested component, checked against the Release's SHA256
//! before it is decompressed and parsed. Verified Packages files are kept in the cache under
//! their hash, so a warm build fetches only the InRelease.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use super::client::{check, Expected, FetchError, Fetcher};
use super::hash::Sha256Digest;
use super::index::{parse_packages, RepoIndex};
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
) -> Result<(String, Vec<super::index::Package>), FetchError> {
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
    if let Some(text) = plain.and_then(|plain| read_cached(&cache, plain)) {
        return parse_blocking(url, part, text).await;
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
    let capacity = plain.map_or(compressed.len() * 6, |p| p.size as usize);
    let text = tokio::task::spawn_blocking(move || decompress(&compressed, compression, capacity))
        .await
        .expect("decompressing an index does not panic")
        .map_err(|source| FetchError::Decompress {
            url: url.clone(),
            source,
        })?;
    if let Some(plain) = plain {
        let decompressed_url = format!("{url} (decompressed)");
        check(
            &decompressed_url,
            plain,
            text.len() as u64,
            Sha256Digest::of(&text),
        )?;
        store_cached(&cache, plain, &text);
    }
    parse_blocking(url, part, text).await
}

/// Parses a verified Packages text on the blocking pool.
async fn parse_blocking(
    url: String,
    part: u32,
    bytes: Vec<u8>,
) -> Result<(String, Vec<super::index::Package>), FetchError> {
    tokio::task::spawn_blocking(move || {
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
        let packages = parse_packages(&url, part, &text)?;
        Ok((text, packages))
    })
    .await
    .expect("parsing an index does not panic")
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

fn decompress(data: &[u8], compression: Compression, capacity: usize) -> std::io::Result<Vec<u8>> {
    // Sized from the Release when it lists the uncompressed index, so the buffer never has to
    // grow (and be copied) while holding tens of megabytes.
    let mut out = Vec::with_capacity(capacity + 1);
    match compression {
        Compression::Xz => liblzma::read::XzDecoder::new(data).read_to_end(&mut out)?,
        Compression::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out)?,
        Compression::None => return Ok(data.to_vec()),
    };
    Ok(out)
}
