//! The mirror client: HTTP(S) through reqwest (honouring http_proxy, https_proxy and no_proxy)
//! and file:// from the local disk, with retries for transient failures and size and SHA256
//! checks on everything that has an expected value.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::Digest;

use super::hash::Sha256Digest;
use super::index::IndexParseError;
use super::keyring::KeyringError;
use super::release::ReleaseError;
use crate::cancel::Cancelled;

/// How many times a transient failure (connection error, timeout, 5xx) is tried in all.
const ATTEMPTS: u32 = 4;
/// The first retry waits this long; each later one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

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

/// Fetches from a mirror; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
}

impl Fetcher {
    /// A client that honours the proxy environment variables.
    pub fn new() -> Result<Fetcher, FetchError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("debstrap-onion/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(FetchError::Client)?;
        Ok(Fetcher { http })
    }

    /// The whole body of `url`; a 404 is [`FetchError::NotFound`].
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.with_retries(url, || self.get_once(url)).await
    }

    /// The body of `url`, refused unless its size and SHA256 match.
    pub async fn get_verified(&self, url: &str, expected: Expected) -> Result<Vec<u8>, FetchError> {
        let body = self.get(url).await?;
        check(url, expected, body.len() as u64, Sha256Digest::of(&body))?;
        Ok(body)
    }

    /// Streams `url` into `dest`, hashing as it goes; `dest` appears only when size and SHA256
    /// match. `progress` receives byte counts as they arrive.
    pub async fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: Expected,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), FetchError> {
        self.with_retries(url, || self.download_once(url, dest, expected, progress))
            .await
    }

    async fn with_retries<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        for n in 1.. {
            crate::cancel::check()?;
            match attempt().await {
                Err(err) if err.is_transient() && n < ATTEMPTS => {
                    tracing::warn!("{url}: {err}; retrying in {} ms", backoff.as_millis());
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the retry loop returns on its last attempt")
    }

    async fn get_once(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            return match tokio::fs::read(path).await {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    Err(FetchError::NotFound {
                        url: url.to_string(),
                    })
                }
                other => other.map_err(|source| FetchError::File {
                    url: url.to_string(),
                    source,
                }),
            };
        }
        let response = self.send(url).await?;
        let body = response
            .bytes()
            .await
            .map_err(|source| http_error(url, source))?;
        Ok(body.to_vec())
    }

    async fn send(&self, url: &str) -> Result<reqwest::Response, FetchError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| http_error(url, source))?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            404 | 410 => Err(FetchError::NotFound {
                url: url.to_string(),
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
        dest: &Path,
        expected: Expected,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), FetchError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let cache_err = |source| FetchError::Cache {
            path: dir.to_path_buf(),
            source,
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .map_err(cache_err)?;
        let mut hasher = sha2::Sha256::new();
        let mut written = 0u64;
        let mut sink = |chunk: &[u8]| -> Result<(), FetchError> {
            written += chunk.len() as u64;
            if written > expected.size {
                return Err(FetchError::SizeMismatch {
                    url: url.to_string(),
                    expected: expected.size,
                    actual: written,
                });
            }
            hasher.update(chunk);
            progress(chunk.len() as u64);
            temp.write_all(chunk).map_err(cache_err)
        };
        if url.starts_with("file://") {
            sink(&self.get_once(url).await?)?;
        } else {
            let mut stream = self.send(url).await?.bytes_stream();
            while let Some(chunk) = stream.next().await {
                crate::cancel::check()?;
                sink(&chunk.map_err(|source| http_error(url, source))?)?;
            }
        }
        check(
            url,
            expected,
            written,
            Sha256Digest(hasher.finalize().into()),
        )?;
        temp.persist(dest).map_err(|err| FetchError::Cache {
            path: dest.to_path_buf(),
            source: err.error,
        })?;
        Ok(())
    }
}

fn http_error(url: &str, source: reqwest::Error) -> FetchError {
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
