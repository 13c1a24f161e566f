//! `.rclaude.toml`: types, loading with precise errors, validation, schema and starter file.
pub mod duration;
pub mod model;

pub use duration::HumanDuration;
pub use model::*;
