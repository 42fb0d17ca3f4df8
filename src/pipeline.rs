//! The one function that chains the stages (stub).

use crate::config::BuildConfig;
use crate::progress::Reporter;

/// Any stage's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What a build produced.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {}

/// Runs the pipeline.
pub fn build(config: &BuildConfig, reporter: &dyn Reporter) -> Result<BuildReport, Error> {
    let _ = reporter;
    config.validate()?;
    Ok(BuildReport {})
}
