//! The mirror client: HTTP(S) through reqwest (honouring http_proxy, https_proxy and no_proxy)
//! and file:// from the local disk, with retries for transient failures and size and SHA256
//! checks on everything that has an expected value.
//!
//! Nothing a mirror sends is read without a bound: a body with an expected size stops one byte
//! past it, one without (InRelease, Release, Release.gpg) at a fixed cap, and every request has
//! an overall deadline besides the read timeout. Redirects go from http(s) to http(s) only, a
//! few times at most, and never from https down to http.

use std::io::{Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::cache::{CacheDir, UnsafeCache};
use super::hash::{Sha256Counter, Sha256Digest};
use super::index::IndexParseError;
use super::keyring::KeyringError;
use super::release::ReleaseError;
use crate::cancel::Cancelled;

/// How often a request in flight looks for a stop request.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Resolves once a stop was requested (SIGINT, SIGTERM): raced against every request.
async fn stop_requested() {
    while !crate::cancel::is_requested() {
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// How many times a transient failure (connection error, read timeout, 5xx) is tried in all.
const ATTEMPTS: u32 = 4;
/// The first retry waits this long; each later one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The most redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;
/// The largest InRelease or Release accepted (Debian's are a few hundred KiB).
pub const MAX_RELEASE: u64 = 16 << 20;
/// The largest Release.gpg accepted (a few signatures are a few KiB).
pub const MAX_SIGNATURE: u64 = 1 << 20;
/// Bytes read from a local file at a time.
const FILE_CHUNK: usize = 64 << 10;

/// Why something could not be fetched or was refused after fetching.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not found (HTTP 404); check the mirror URL, suite and architecture")]
    NotFound { url: String },
    #[error("{url}: server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: request failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: cannot read local file")]
    File {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: size mismatch: expected {expected} bytes, got {actual}; the mirror is inconsistent or tampered with")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url}: SHA256 mismatch: expected {expected}, got {actual}; the mirror is inconsistent or tampered with")]
    HashMismatch {
        url: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "{url}: larger than the {limit}-byte limit for this file; the mirror is broken or hostile"
    )]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: the signed size of {size} bytes is past the {limit}-byte limit for this file; the repository is broken or hostile")]
    SignedSizeTooLarge { url: String, size: u64, limit: u64 },
    #[error("{url}: no complete answer within {seconds} s; the mirror is too slow or stalling, try another mirror")]
    Deadline { url: String, seconds: u64 },
    #[error("{url}: redirect refused: {why}; check the mirror URL")]
    Redirect {
        url: String,
        why: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: redirect to {location} refused (only http(s) to http(s) is followed); check the mirror URL")]
    RedirectTo { url: String, location: String },
    #[error("cache {path} is not safe to use as root: {why}")]
    UnsafeCache { path: PathBuf, why: UnsafeCache },
    #[error("{path}: the cached .deb changed after it was verified (SHA256 {expected}); something else writes the cache directory")]
    Changed {
        path: PathBuf,
        expected: Sha256Digest,
    },
    #[error("{path}: cache I/O failed")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: cannot decompress")]
    Decompress {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{release}: lists no Packages index for {component}/binary-{arch}; check --components and --arch")]
    MissingIndex {
        release: String,
        component: String,
        arch: String,
    },
    #[error(
        "{release}: the archive has no {arch} packages; its architectures are {}; choose one of \
         them with --arch",
        available.join(" ")
    )]
    ArchNotInArchive {
        release: String,
        arch: String,
        available: Vec<String>,
    },
    #[error("cannot create the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Index(#[from] IndexParseError),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl FetchError {
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            FetchError::Http { source, .. } => {
                // A body cut short while streaming comes back from reqwest as a decode error.
                source.is_connect()
                    || source.is_timeout()
                    || source.is_body()
                    || source.is_decode()
                    || source.is_request()
            }
            _ => false,
        }
    }
}

/// The size and hash a fetched file must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// How long a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Every request must be answered in full within this time, plus the time its expected
    /// size takes at `min_rate`.
    pub deadline: Duration,
    /// Bytes per second a mirror must at least deliver for a sized download.
    pub min_rate: u64,
    /// Longest silence while connecting or between two reads.
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_secs(120),
            min_rate: 8 << 10,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Fetches from a mirror; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    limits: Limits,
}

/// A response body about to be read: from the network or from a local file.
enum Body {
    Http(reqwest::Response),
    File(tokio::fs::File),
}

impl Body {
    /// The size the server or file system announces, if any.
    async fn announced(&self) -> Option<u64> {
        match self {
            Body::Http(response) => response.content_length(),
            Body::File(file) => file.metadata().await.ok().map(|m| m.len()),
        }
    }

    /// Hands the body to `sink` piece by piece, refused at once when it announces more than
    /// `limit` bytes and as soon as more than `limit` arrive (`too_large` is given the count);
    /// gives the size and SHA256 of what arrived.
    async fn stream_bounded(
        self,
        url: &str,
        limit: u64,
        too_large: &(dyn Fn(u64) -> FetchError + Sync),
        sink: &mut (dyn FnMut(&[u8]) -> Result<(), FetchError> + Send),
    ) -> Result<Sha256Counter, FetchError> {
        if let Some(announced) = self.announced().await.filter(|&n| n > limit) {
            return Err(too_large(announced));
        }
        let mut sum = Sha256Counter::new();
        self.for_each_chunk(url, &mut |chunk| {
            let total = sum.count() + chunk.len() as u64;
            if total > limit {
                return Err(too_large(total));
            }
            sum.update(chunk);
            sink(chunk)
        })
        .await?;
        Ok(sum)
    }

    /// Hands every piece of the body to `sink`, in order, checking for Ctrl-C between pieces.
    async fn for_each_chunk(
        self,
        url: &str,
        sink: &mut (dyn FnMut(&[u8]) -> Result<(), FetchError> + Send),
    ) -> Result<(), FetchError> {
        match self {
            Body::Http(mut response) => {
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|source| http_error(url, source))?
                {
                    crate::cancel::check()?;
                    sink(&chunk)?;
                }
            }
            Body::File(mut file) => {
                let mut buf = vec![0; FILE_CHUNK];
                loop {
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|source| FetchError::File {
                            url: url.to_string(),
                            source,
                        })?;
                    if n == 0 {
                        break;
                    }
                    crate::cancel::check()?;
                    sink(&buf[..n])?;
                }
            }
        }
        Ok(())
    }
}

impl Fetcher {
    /// A client with the default [`Limits`] that honours the proxy environment variables.
    pub fn new() -> Result<Fetcher, FetchError> {
        Fetcher::with_limits(Limits::default())
    }

    /// A client with the given time limits.
    pub fn with_limits(limits: Limits) -> Result<Fetcher, FetchError> {
        // A Location that is not http(s) never reaches the policy: reqwest hands the 3xx back
        // and `open` refuses it.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let previous = attempt.previous();
            let refusal = previous
                .last()
                .and_then(|from| redirect_refusal(from, attempt.url(), previous.len()));
            match refusal {
                Some(why) => attempt.error(why),
                None => attempt.follow(),
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("debstrap-onion/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(limits.read_timeout.min(Duration::from_secs(20)))
            .read_timeout(limits.read_timeout)
            .redirect(redirects)
            .build()
            .map_err(FetchError::Client)?;
        Ok(Fetcher { http, limits })
    }

    /// The whole body of `url`, refused once it grows past `cap` bytes (before anything reads
    /// it); a 404 is [`FetchError::NotFound`].
    pub async fn get_capped(&self, url: &str, cap: u64) -> Result<Vec<u8>, FetchError> {
        let deadline = self.deadline(0);
        self.with_retries(url, deadline, || async {
            let body = self.open(url).await?;
            let too_large = |_| FetchError::TooLarge {
                url: url.to_string(),
                limit: cap,
            };
            let mut data = Vec::new();
            body.stream_bounded(url, cap, &too_large, &mut |chunk| {
                data.extend_from_slice(chunk);
                Ok(())
            })
            .await?;
            Ok(data)
        })
        .await
    }

    /// Streams `url` into a new file in `dir`, hashing as it goes and stopping one byte past
    /// the expected size; returns the file, rewound, once size and SHA256 match. With a `name`,
    /// the file is then renamed to it (a file at its final name has always been verified);
    /// without, it has no name and goes when closed. `progress` receives byte counts as they
    /// arrive.
    pub(crate) async fn download(
        &self,
        url: &str,
        dir: &CacheDir,
        name: Option<&str>,
        expected: Expected,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<fs_err::File, FetchError> {
        let deadline = self.deadline(expected.size);
        self.with_retries(url, deadline, || {
            self.download_once(url, dir, name, expected, progress)
        })
        .await
    }

    /// How long a request for `size` bytes may take in all.
    fn deadline(&self, size: u64) -> Duration {
        let transfer = Duration::from_secs(size / self.limits.min_rate.max(1));
        self.limits.deadline.saturating_add(transfer)
    }

    async fn with_retries<T, F, Fut>(
        &self,
        url: &str,
        deadline: Duration,
        mut attempt: F,
    ) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        for n in 1.. {
            crate::cancel::check()?;
            // A stop request ends a request at once, however slowly the server answers.
            let result = tokio::select! {
                result = tokio::time::timeout(deadline, attempt()) => result.unwrap_or_else(|_| {
                    Err(FetchError::Deadline {
                        url: url.to_string(),
                        seconds: deadline.as_secs(),
                    })
                }),
                () = stop_requested() => Err(Cancelled.into()),
            };
            match result {
                Err(err) if err.is_transient() && n < ATTEMPTS => {
                    tracing::warn!("{url}: {err}; retrying in {} ms", backoff.as_millis());
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop_requested() => return Err(Cancelled.into()),
                    }
                    backoff *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the retry loop returns on its last attempt")
    }

    /// Starts reading `url`: a local file for file://, otherwise an HTTP response with a
    /// success status.
    async fn open(&self, url: &str) -> Result<Body, FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            return match tokio::fs::File::open(path).await {
                Ok(file) => Ok(Body::File(file)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    Err(FetchError::NotFound {
                        url: url.to_string(),
                    })
                }
                Err(source) => Err(FetchError::File {
                    url: url.to_string(),
                    source,
                }),
            };
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| http_error(url, source))?;
        match response.status().as_u16() {
            200..=299 => Ok(Body::Http(response)),
            404 | 410 => Err(FetchError::NotFound {
                url: url.to_string(),
            }),
            // A redirect that comes back to us is one the policy would not follow.
            300..=399 => Err(FetchError::RedirectTo {
                url: url.to_string(),
                location: response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                    .unwrap_or_default(),
            }),
            status => Err(FetchError::Status {
                url: url.to_string(),
                status,
            }),
        }
    }

    async fn download_once(
        &self,
        url: &str,
        dir: &CacheDir,
        name: Option<&str>,
        expected: Expected,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<fs_err::File, FetchError> {
        let body = self.open(url).await?;
        let too_large = |actual| FetchError::SizeMismatch {
            url: url.to_string(),
            expected: expected.size,
            actual,
        };
        let mut temp = dir.create_temp()?;
        let cache_err = |source| FetchError::Cache {
            path: dir.path().to_path_buf(),
            source,
        };
        let sum = body
            .stream_bounded(url, expected.size, &too_large, &mut |chunk| {
                progress(chunk.len() as u64);
                temp.file.write_all(chunk).map_err(cache_err)
            })
            .await?;
        check(url, expected, sum.count(), sum.digest())?;
        temp.file.rewind().map_err(cache_err)?;
        match name {
            Some(name) => temp.persist(name),
            None => temp.into_anonymous(),
        }
    }
}

/// Why a redirect from `from` to `to`, after `hops` requests, is not followed: past
/// [`MAX_REDIRECTS`], or from https down to http (a mirror chosen for TLS must not hand the
/// build to an unauthenticated one).
fn redirect_refusal(from: &reqwest::Url, to: &reqwest::Url, hops: usize) -> Option<String> {
    if hops > MAX_REDIRECTS {
        return Some(format!(
            "more than {MAX_REDIRECTS} redirects, the last from {from} to {to}"
        ));
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Some(format!(
            "from {from} to {to} would downgrade https to {}",
            to.scheme()
        ));
    }
    None
}

fn http_error(url: &str, source: reqwest::Error) -> FetchError {
    if source.is_redirect() {
        let why = std::error::Error::source(&source)
            .map(|why| why.to_string())
            .unwrap_or_else(|| "not followed".to_string());
        return FetchError::Redirect {
            url: url.to_string(),
            why,
            source,
        };
    }
    FetchError::Http {
        url: url.to_string(),
        source,
    }
}

/// Compares what arrived with what the verified index promised.
pub(crate) fn check(
    url: &str,
    expected: Expected,
    size: u64,
    sha256: Sha256Digest,
) -> Result<(), FetchError> {
    if size != expected.size {
        return Err(FetchError::SizeMismatch {
            url: url.to_string(),
            expected: expected.size,
            actual: size,
        });
    }
    if sha256 != expected.sha256 {
        return Err(FetchError::HashMismatch {
            url: url.to_string(),
            expected: expected.sha256,
            actual: sha256,
        });
    }
    Ok(())
}

#[cfg(test)]
// Tests state their expectations with unwrap(); a panic there is the failure report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn a_redirect_from_https_to_http_is_refused_naming_both_urls() {
        let why = redirect_refusal(
            &url("https://127.0.0.1/debian/dists/x/InRelease"),
            &url("http://127.0.0.1/debian/dists/x/InRelease"),
            1,
        )
        .unwrap();
        assert!(
            why.contains("from https://127.0.0.1/debian/dists/x/InRelease")
                && why.contains("to http://127.0.0.1/debian/dists/x/InRelease")
                && why.contains("downgrade"),
            "{why}"
        );
    }

    #[test]
    fn redirects_that_keep_or_raise_security_are_followed_a_few_times() {
        let (http, https) = (url("http://127.0.0.1/a"), url("https://127.0.0.1/b"));
        assert_eq!(redirect_refusal(&http, &http, 1), None);
        assert_eq!(redirect_refusal(&http, &https, 1), None);
        assert_eq!(redirect_refusal(&https, &https, MAX_REDIRECTS), None);
        let why = redirect_refusal(&https, &https, MAX_REDIRECTS + 1).unwrap();
        assert!(why.contains("more than 5 redirects"), "{why}");
    }
}
