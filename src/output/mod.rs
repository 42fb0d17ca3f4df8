//! Output: make a finished root deterministic and, for tarball targets, write it as a
//! reproducible tarball.

use std::path::Path;

use crate::config::Output;

/// Why writing the output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("not implemented")]
    Unimplemented,
}

/// Writes `root` as the tarball `output` describes.
pub fn write_tarball(
    root: &Path,
    output: &Output,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    let _ = (root, output, source_date_epoch);
    Err(OutputError::Unimplemented)
}

/// Makes the root deterministic for `source_date_epoch` (stub).
pub fn make_deterministic(root: &Path, source_date_epoch: i64) -> Result<(), OutputError> {
    let _ = (root, source_date_epoch);
    Err(OutputError::Unimplemented)
}
