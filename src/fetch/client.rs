//! The mirror client (stub; replaced by the real client).

/// A fetch failure.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not found (404)")]
    NotFound { url: String },
}

/// HTTP(S) and file:// client.
#[derive(Debug, Clone, Default)]
pub struct Fetcher {}
