//! A provider by name, with its settings.

use super::{Provider, ProviderError, daytona, e2b, local, northflank};

/// The provider of that kind, configured from the environment (API keys, endpoints).
pub fn for_kind(kind: crate::ProviderKind) -> Result<Box<dyn Provider>, ProviderError> {
    use crate::ProviderKind;
    match kind {
        ProviderKind::Local => Ok(Box::new(local::LocalProvider::new())),
        ProviderKind::E2b => Ok(Box::new(e2b::E2bProvider::from_env()?)),
        ProviderKind::Daytona => Ok(Box::new(daytona::DaytonaProvider::from_env()?)),
        ProviderKind::Northflank => Ok(Box::new(northflank::NorthflankProvider::from_env(None)?)),
    }
}

/// Like [`for_kind`], with the settings that live in a configuration rather than the
/// environment (Northflank's `project`).
pub fn for_settings(
    kind: crate::ProviderKind,
    project: Option<&str>,
) -> Result<Box<dyn Provider>, ProviderError> {
    match kind {
        crate::ProviderKind::Northflank => {
            Ok(Box::new(northflank::NorthflankProvider::from_env(project)?))
        }
        kind => for_kind(kind),
    }
}
