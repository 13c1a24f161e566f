//! What can go wrong running a sandbox-side step.

use rclaude_sandbox::provider::SandboxError;

/// A sandbox-side step failed; messages say what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The sandbox could not be reached or refused a request.
    #[error("sandbox error while {context}: {source}")]
    Sandbox {
        context: String,
        #[source]
        source: SandboxError,
    },
    /// The step ran and failed; `message` comes from the step itself.
    #[error("the sandbox's {step} step failed: {message}")]
    Remote {
        step: &'static str,
        code: i32,
        message: String,
    },
    /// The step answered something rclaude does not understand.
    #[error("unexpected answer from the sandbox's {step} step: {detail}")]
    Protocol { step: &'static str, detail: String },
    /// A parameter the caller gave cannot be used (a workdir, a ref name).
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl StepError {
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> StepError {
        StepError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn sandbox(context: impl Into<String>) -> impl FnOnce(SandboxError) -> StepError {
        let context = context.into();
        move |source| StepError::Sandbox { context, source }
    }
}
