//! The suite's index: InRelease (or Release + Release.gpg when there is no InRelease), read up
//! to a cap and verified, then the Packages index of every requested component, streamed to the
//! cache and checked against the Release's size and SHA256 before it is decompressed, and
//! decompressed to disk no further than the Release's uncompressed size before it is read and
//! parsed. Verified Packages files are kept in the cache under their hash, so a warm build
//! fetches only the InRelease.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::SystemTime;

use super::cache::CacheDir;
use super::client::{check, Expected, FetchError, Fetcher, MAX_RELEASE, MAX_SIGNATURE};
use super::hash::Sha256Reader;
use super::index::{parse_packages, Part, RepoIndex, Stanzas};
use super::keyring::Keyring;
use super::release::{ReleasePolicy, VerifiedRelease};

/// Which suite to index, from where, trusting which keys.
#[derive(Clone, Copy)]
pub struct IndexRequest<'a> {
    pub mirror: &'a str,
    pub suite: &'a str,
    pub components: &'a [String],
    /// The root's architecture.
    pub arch: &'a str,
    /// Further architectures whose Packages are indexed too (dpkg foreign architectures).
    pub foreign_archs: &'a [String],
    pub keyring: &'a Keyring,
    pub ignore_valid_until: bool,
    pub cache_dir: &'a Path,
}

/// Fetches and verifies the Release, checks that it serves every requested architecture, and
/// fetches every Packages index the request needs (each component, each architecture).
pub async fn index(
    fetcher: &Fetcher,
    request: IndexRequest<'_>,
) -> Result<(VerifiedRelease, RepoIndex), FetchError> {
    let release = fetch_release(fetcher, &request).await?;
    let archs: Vec<&str> = std::iter::once(request.arch)
        .chain(request.foreign_archs.iter().map(String::as_str))
        .collect();
    check_archs(&release, &request, &archs)?;
    let wanted = archs
        .iter()
        .flat_map(|arch| request.components.iter().map(move |c| (c, *arch)));
    let parts =
        futures_util::future::try_join_all(wanted.zip(0..).map(|((component, arch), part)| {
            fetch_packages(fetcher, &request, &release, component, arch, part)
        }))
        .await?;
    Ok((release, RepoIndex::from_verified(parts)))
}

/// Every requested architecture must be one the Release lists (a Release that lists none, as
/// some flat repositories do, is taken at its word per index instead).
fn check_archs(
    release: &VerifiedRelease,
    request: &IndexRequest<'_>,
    archs: &[&str],
) -> Result<(), FetchError> {
    let available = release.architectures();
    if available.is_empty() {
        return Ok(());
    }
    match archs
        .iter()
        .find(|arch| !available.iter().any(|a| a == *arch))
    {
        None => Ok(()),
        Some(arch) => Err(FetchError::ArchNotInArchive {
            release: format!("{}/dists/{}/InRelease", request.mirror, request.suite),
            arch: arch.to_string(),
            available: available
                .iter()
                .filter(|a| a.as_str() != "all")
                .cloned()
                .collect(),
        }),
    }
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
    arch: &str,
    part: u32,
) -> Result<Parsed, FetchError> {
    let dir = format!("{component}/binary-{arch}");
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
            arch: arch.to_string(),
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
        let cached = tokio::task::spawn_blocking(move || cache.open_verified(&name, plain))
            .await
            .expect("reading the cache does not panic")?;
        if let Some(file) = cached {
            return parse_blocking(url, part, file).await;
        }
    }
    let cached = {
        let (cache, name) = (cache.clone(), expected.sha256.to_hex());
        tokio::task::spawn_blocking(move || cache.open_verified(&name, expected))
            .await
            .expect("reading the cache does not panic")?
    };
    let compressed = match cached {
        Some(file) => file,
        None => {
            // Kept under its hash only when nothing else of it would be cached.
            let name = expected.sha256.to_hex();
            let keep = plain.is_none() || matches!(compression, Compression::None);
            let name = keep.then_some(name.as_str());
            fetcher
                .download(&url, &cache, name, expected, &|_| {})
                .await?
        }
    };
    let verified = tokio::task::spawn_blocking(move || {
        decompress_verified(&cache, compressed, compression, plain, &url).map(|t| (t, url))
    })
    .await
    .expect("decompressing an index does not panic")?;
    parse_blocking(verified.1, part, verified.0).await
}

/// A verified Packages index: its name, its compact fields, and the file its stanzas stay in.
type Parsed = (String, Part, Stanzas);

/// Streams a verified Packages file through the parser on the blocking pool, a stanza at a
/// time, and keeps the file open for dpkg's `available`.
async fn parse_blocking(url: String, part: u32, file: fs_err::File) -> Result<Parsed, FetchError> {
    tokio::task::spawn_blocking(move || {
        let (file, _) = file.into_parts();
        let parsed = parse_packages(&url, part, std::io::BufReader::new(&file))?;
        Ok((url, parsed, Stanzas::File(file)))
    })
    .await
    .expect("parsing an index does not panic")
}

/// Decompresses a verified index into a file in the cache, stopping one byte past the
/// uncompressed size the Release signed (or [`MAX_INDEX`] when it lists none), checks that size
/// and hash, keeps the file under its hash, and gives it back open at its start: the text is
/// then streamed, never held whole in memory.
fn decompress_verified(
    cache: &CacheDir,
    compressed: fs_err::File,
    compression: Compression,
    plain: Option<Expected>,
    url: &str,
) -> Result<fs_err::File, FetchError> {
    let decompress_err = |source| FetchError::Decompress {
        url: url.to_string(),
        source,
    };
    if let Compression::None = compression {
        return Ok(compressed);
    }
    let limit = plain.map_or(MAX_INDEX, |p| p.size);
    let decoder: Box<dyn Read> = match compression {
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(compressed)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(compressed)),
        Compression::None => Box::new(compressed),
    };
    let mut reader = Sha256Reader::new(decoder.take(limit + 1));
    let mut temp = cache.create_temp()?;
    let decompressed_url = format!("{url} (decompressed)");
    // A write error is the cache's, a read error the archive's; both stop here.
    std::io::copy(&mut reader, &mut temp.file).map_err(decompress_err)?;
    let size = reader.count();
    match plain {
        Some(plain) => check(&decompressed_url, plain, size, reader.digest())?,
        None if size > limit => {
            return Err(FetchError::TooLarge {
                url: decompressed_url,
                limit,
            })
        }
        None => {}
    }
    let cache_err = |source| FetchError::Cache {
        path: cache.path().to_path_buf(),
        source,
    };
    temp.file.flush().map_err(cache_err)?;
    temp.file.rewind().map_err(cache_err)?;
    match plain {
        Some(plain) => temp.persist(&plain.sha256.to_hex()),
        None => temp.into_anonymous(),
    }
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fetch::hash::Sha256Digest;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn file_with(dir: &Path, data: &[u8]) -> fs_err::File {
        let path = dir.join("compressed");
        fs_err::write(&path, data).unwrap();
        fs_err::File::open(&path).unwrap()
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
        let err = decompress_verified(
            &cache,
            file_with(dir.path(), &bomb),
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
        let out = decompress_verified(
            &cache,
            file_with(dir.path(), &xz(&text)),
            Compression::Xz,
            Some(signed),
            "http://127.0.0.1/Packages.xz",
        )
        .unwrap();
        let mut out = out;
        let mut read = Vec::new();
        out.read_to_end(&mut read).unwrap();
        assert_eq!(read, text);
        let mut kept = cache
            .open_verified(&signed.sha256.to_hex(), signed)
            .unwrap()
            .expect("kept under its hash");
        let mut read = Vec::new();
        kept.read_to_end(&mut read).unwrap();
        assert_eq!(read, text);
    }
}
