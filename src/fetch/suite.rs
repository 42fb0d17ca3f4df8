//! The suite's index: InRelease (or Release + Release.gpg when there is no InRelease), read up
//! to a cap and verified, then the Packages index of every requested component, streamed to the
//! cache and stopped one byte past the Release's size. The index is then read into memory once,
//! no further than one byte past that size; exactly those bytes are checked against the
//! Release's SHA256, decompressed in memory no further than the signed uncompressed size,
//! checked again and parsed. Verified Packages files are kept in the cache under their hash
//! (when the cache can take them), so a warm build fetches only the InRelease.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use super::cache::{read_bounded, CacheDir};
use super::client::{check, Expected, FetchError, Fetcher, MAX_RELEASE, MAX_SIGNATURE};
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
    match fetcher.get_capped(&inrelease_url, MAX_RELEASE).await {
        Ok(signed) => Ok(VerifiedRelease::from_inrelease(
            &inrelease_url,
            &signed,
            request.keyring,
            &policy,
        )?),
        Err(FetchError::NotFound { .. }) => {
            let release_url = format!("{base}/Release");
            let release = fetcher.get_capped(&release_url, MAX_RELEASE).await?;
            let signature = fetcher
                .get_capped(&format!("{release_url}.gpg"), MAX_SIGNATURE)
                .await?;
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

/// The largest Packages index accepted, compressed or not (Debian's largest is under 100 MiB).
pub const MAX_INDEX: u64 = 256 << 20;

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
    for signed in std::iter::once(expected).chain(plain) {
        if signed.size > MAX_INDEX {
            return Err(FetchError::SignedSizeTooLarge {
                url,
                size: signed.size,
                limit: MAX_INDEX,
            });
        }
    }
    let cache = {
        let base = request.cache_dir.to_path_buf();
        tokio::task::spawn_blocking(move || CacheDir::open(&base, "indices"))
            .await
            .expect("opening the cache does not panic")?
    };
    if let Some(plain) = plain {
        let (cache, name) = (cache.clone(), plain.sha256.to_hex());
        let cached = tokio::task::spawn_blocking(move || cache.read_verified(&name, plain))
            .await
            .expect("reading the cache does not panic")?;
        if let Some(text) = cached {
            return parse_blocking(url, part, text).await;
        }
    }
    let cached = {
        let (cache, name) = (cache.clone(), expected.sha256.to_hex());
        tokio::task::spawn_blocking(move || cache.read_verified(&name, expected))
            .await
            .expect("reading the cache does not panic")?
    };
    let compressed = match cached {
        Some(data) => data,
        None => {
            // Kept under its hash only when nothing else of it would be cached.
            let name = expected.sha256.to_hex();
            let keep = plain.is_none() || matches!(compression, Compression::None);
            let name = keep.then_some(name.as_str());
            let file = fetcher
                .download(&url, &cache, name, expected, &|_| {})
                .await?;
            let url = url.clone();
            tokio::task::spawn_blocking(move || read_back(file, expected, &url))
                .await
                .expect("reading a download back does not panic")?
        }
    };
    let text = tokio::task::spawn_blocking(move || {
        verified_text(&cache, compressed, compression, plain, &url).map(|t| (t, url))
    })
    .await
    .expect("decompressing an index does not panic")?;
    parse_blocking(text.1, part, text.0).await
}

/// The downloaded index, read once into memory no further than one byte past its signed size;
/// exactly the bytes checked here are the ones decompressed and parsed.
fn read_back(file: fs_err::File, expected: Expected, url: &str) -> Result<Vec<u8>, FetchError> {
    let path = file.path().to_path_buf();
    let data =
        read_bounded(file, expected.size).map_err(|source| FetchError::Cache { path, source })?;
    check(url, expected, data.len() as u64, Sha256Digest::of(&data))?;
    Ok(data)
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

/// The Packages text of a verified index: decompressed in memory no further than one byte past
/// the uncompressed size the Release signed (or [`MAX_INDEX`] when it lists none), checked
/// against that size and hash, then kept in the cache under its hash when the cache can take it
/// (a read-only or full cache is a warning, not a failure).
fn verified_text(
    cache: &CacheDir,
    compressed: Vec<u8>,
    compression: Compression,
    plain: Option<Expected>,
    url: &str,
) -> Result<Vec<u8>, FetchError> {
    if let Compression::None = compression {
        return Ok(compressed);
    }
    let text = decompress(&compressed, compression, plain, url)?;
    drop(compressed);
    if let Some(plain) = plain {
        if let Err(err) = cache.store(&plain.sha256.to_hex(), &text) {
            let cause = std::error::Error::source(&err)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            tracing::warn!("{err}{cause}; the index is used without being cached");
        }
    }
    Ok(text)
}

fn decompress(
    compressed: &[u8],
    compression: Compression,
    plain: Option<Expected>,
    url: &str,
) -> Result<Vec<u8>, FetchError> {
    let limit = plain.map_or(MAX_INDEX, |p| p.size);
    let decoder: Box<dyn Read> = match compression {
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(compressed)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(compressed)),
        Compression::None => Box::new(compressed),
    };
    let text = read_bounded(decoder, limit).map_err(|source| FetchError::Decompress {
        url: url.to_string(),
        source,
    })?;
    let decompressed_url = format!("{url} (decompressed)");
    let size = text.len() as u64;
    match plain {
        Some(plain) => check(&decompressed_url, plain, size, Sha256Digest::of(&text))?,
        None if size > limit => {
            return Err(FetchError::TooLarge {
                url: decompressed_url,
                limit,
            })
        }
        None => {}
    }
    Ok(text)
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn an_xz_bomb_stops_one_byte_past_the_signed_size_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(&dir.path().join("cache"), "indices").unwrap();
        let bomb = xz(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 64 << 10, "a small bomb: {} bytes", bomb.len());
        let signed = Expected {
            size: 1000,
            sha256: Sha256Digest::of(&[0u8; 1000]),
        };
        let err = verified_text(
            &cache,
            bomb,
            Compression::Xz,
            Some(signed),
            "http://127.0.0.1/Packages.xz",
        )
        .unwrap_err();
        assert!(
            matches!(err, FetchError::SizeMismatch { actual: 1001, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("Packages.xz"), "{err}");
        assert_eq!(fs_err::read_dir(cache.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_verified_index_is_cached_under_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(&dir.path().join("cache"), "indices").unwrap();
        let text = b"Package: a\n".repeat(100);
        let signed = Expected {
            size: text.len() as u64,
            sha256: Sha256Digest::of(&text),
        };
        let out = verified_text(
            &cache,
            xz(&text),
            Compression::Xz,
            Some(signed),
            "http://127.0.0.1/Packages.xz",
        )
        .unwrap();
        assert_eq!(out, text);
        assert_eq!(
            cache
                .read_verified(&signed.sha256.to_hex(), signed)
                .unwrap(),
            Some(text)
        );
    }

    #[test]
    fn a_cache_that_cannot_be_written_does_not_fail_the_index() {
        let dir = tempfile::tempdir().unwrap();
        // A "directory" that is a plain file: every write into it fails, as in a read-only or
        // full cache (root would write through a read-only mode).
        let not_dir = dir.path().join("not-a-directory");
        fs_err::write(&not_dir, b"").unwrap();
        let fd = rustix::fs::open(
            &not_dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let cache = CacheDir::from_parts(std::sync::Arc::new(fd), not_dir, false);
        let text = b"Package: a\n".repeat(100);
        let signed = Expected {
            size: text.len() as u64,
            sha256: Sha256Digest::of(&text),
        };
        assert!(
            cache.store("x", &text).is_err(),
            "the cache cannot be written"
        );
        let out = verified_text(
            &cache,
            xz(&text),
            Compression::Xz,
            Some(signed),
            "http://127.0.0.1/Packages.xz",
        )
        .unwrap();
        assert_eq!(out, text);
    }
}
