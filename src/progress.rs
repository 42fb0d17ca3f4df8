//! Progress reporting: a small trait the stages call, rendered by the CLI (bars on a terminal,
//! plain lines otherwise) and ignored by [`Silent`] in tests.

/// The stages of a build, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Index,
    Resolve,
    Download,
    Unpack,
    Configure,
    Onion,
    Output,
}

impl Stage {
    /// A short lower-case name for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Index => "indices",
            Stage::Resolve => "resolve",
            Stage::Download => "download",
            Stage::Unpack => "unpack",
            Stage::Configure => "configure",
            Stage::Onion => "onion",
            Stage::Output => "output",
        }
    }
}

/// What a progress counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Bytes of .debs fetched from the mirror (cache hits count at once).
    DownloadBytes,
    /// Packages extracted into the root.
    Unpacked,
    /// Packages configured by dpkg.
    Configured,
}

/// Receives progress from the pipeline; implementations must be cheap and thread-safe.
pub trait Reporter: Send + Sync {
    /// A new stage begins.
    fn stage(&self, stage: Stage);
    /// A counter starts with a known total.
    fn start(&self, counter: Counter, total: u64);
    /// A counter moves forward by `n`.
    fn advance(&self, counter: Counter, n: u64);
    /// A counter is complete.
    fn finish(&self, counter: Counter);
}

/// A reporter that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn stage(&self, _: Stage) {}
    fn start(&self, _: Counter, _: u64) {}
    fn advance(&self, _: Counter, _: u64) {}
    fn finish(&self, _: Counter) {}
}
