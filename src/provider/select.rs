//! Which provider a repository uses: the one its `.rclaude.toml` names, with its settings.

use super::{Provider, ProviderError, daytona, e2b, local, northflank};

/// The provider named in `.rclaude.toml`.
pub fn for_kind(kind: crate::config::ProviderKind) -> Result<Box<dyn Provider>, ProviderError> {
    use crate::config::ProviderKind;
    match kind {
        ProviderKind::Local => Ok(Box::new(local::LocalProvider::new())),
        ProviderKind::E2b => Ok(Box::new(e2b::E2bProvider::from_env()?)),
        ProviderKind::Daytona => Ok(Box::new(daytona::DaytonaProvider::from_env()?)),
        ProviderKind::Northflank => Ok(Box::new(northflank::NorthflankProvider::from_env(None)?)),
    }
}

/// The provider for a `[sandbox]` section: like [`for_kind`], with the settings that live in the
/// config (Northflank's `project`).
pub fn for_config(cfg: &crate::config::SandboxConfig) -> Result<Box<dyn Provider>, ProviderError> {
    match cfg.provider {
        crate::config::ProviderKind::Northflank => Ok(Box::new(
            northflank::NorthflankProvider::from_env(cfg.project.as_deref())?,
        )),
        kind => for_kind(kind),
    }
}
