//! .deb downloads into a content-addressed cache: `CACHE/debs/SHA256.deb`. A file at its final
//! path has always been verified; a cached file is used only when its hash still matches.

use std::path::{Path, PathBuf};

use futures_util::{stream, StreamExt, TryStreamExt};

use super::client::{Expected, FetchError, Fetcher};
use super::hash::Sha256Digest;
use super::index::Package;
use crate::progress::{Counter, Reporter};

/// Parallel downloads at once; enough to fill a link, few enough to be polite to a mirror.
const CONCURRENCY: usize = 8;

/// A .deb in the cache whose size and SHA256 match its verified index entry.
#[derive(Debug, Clone)]
pub struct CachedDeb {
    pub package: Package,
    pub path: PathBuf,
}

/// What to download, from where, into which cache.
#[derive(Clone, Copy)]
pub struct DownloadRequest<'a> {
    pub mirror: &'a str,
    pub packages: &'a [Package],
    pub cache_dir: &'a Path,
    pub reporter: &'a dyn Reporter,
    /// Called with the index in `packages` of each package as soon as it is verified in the
    /// cache, so unpacking can start before the last download ends.
    pub on_ready: &'a (dyn Fn(usize) + Sync),
}

/// Where a package's .deb is kept in the cache, named by its SHA256.
pub fn cache_path(cache_dir: &Path, package: &Package) -> PathBuf {
    cache_dir
        .join("debs")
        .join(format!("{}.deb", package.sha256))
}

/// Fetches every package not already verified in the cache, largest first, several at a time;
/// the result is sorted by package name.
pub async fn download(
    fetcher: &Fetcher,
    request: DownloadRequest<'_>,
) -> Result<Vec<CachedDeb>, FetchError> {
    let dir = request.cache_dir.join("debs");
    fs_err::tokio::create_dir_all(&dir)
        .await
        .map_err(|source| FetchError::Cache {
            path: dir.clone(),
            source,
        })?;
    let reporter = request.reporter;
    let total = request.packages.iter().map(|p| p.size).sum();
    reporter.start(Counter::DownloadBytes, total);

    let mut order: Vec<(usize, &Package)> = request.packages.iter().enumerate().collect();
    order.sort_by(|(_, a), (_, b)| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let mut debs: Vec<CachedDeb> = stream::iter(order)
        .map(|(index, package)| async move {
            let path = cache_path(request.cache_dir, package);
            let expected = Expected {
                size: package.size,
                sha256: package.sha256,
            };
            if is_cached(&path, expected).await? {
                reporter.advance(Counter::DownloadBytes, package.size);
            } else {
                let url = format!("{}/{}", request.mirror, package.filename);
                let progress = |n| reporter.advance(Counter::DownloadBytes, n);
                fetcher.download(&url, &path, expected, &progress).await?;
            }
            (request.on_ready)(index);
            Ok::<_, FetchError>(CachedDeb {
                package: package.clone(),
                path,
            })
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    reporter.finish(Counter::DownloadBytes);
    debs.sort_by(|a, b| {
        a.package
            .name
            .cmp(&b.package.name)
            .then(a.package.architecture.cmp(&b.package.architecture))
    });
    Ok(debs)
}

/// Whether `path` exists with the expected size and hash; a corrupt file is removed.
async fn is_cached(path: &Path, expected: Expected) -> Result<bool, FetchError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let cache_err = |source| FetchError::Cache {
            path: path.clone(),
            source,
        };
        match fs_err::metadata(&path) {
            Ok(meta) if meta.len() == expected.size => {}
            Ok(_) => {
                fs_err::remove_file(&path).map_err(cache_err)?;
                return Ok(false);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(cache_err(err)),
        }
        let digest = hash_file(&path).map_err(cache_err)?;
        if digest == expected.sha256 {
            Ok(true)
        } else {
            tracing::warn!(
                "{}: cached file does not match its hash; fetching it again",
                path.display()
            );
            fs_err::remove_file(&path).map_err(cache_err)?;
            Ok(false)
        }
    })
    .await
    .expect("the cache check does not panic")
}

fn hash_file(path: &Path) -> std::io::Result<Sha256Digest> {
    use sha2::Digest;
    let mut file = fs_err::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(Sha256Digest(hasher.finalize().into()))
}
