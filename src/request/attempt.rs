//! A login attempt that a layer outside authentication is counting (the lockout), which the
//! authentication layer settles as soon as it accepts the credential: a slow handler must not
//! hold one of the address's attempts.

use std::any::Any;
use std::sync::Arc;

/// What the counting layer does when the credential is accepted.
pub(crate) trait Attempt: Send + Sync + 'static {
    /// The credential was accepted: the attempt ends, and it was no failure.
    fn accepted(&self);

    /// For the counting layer to find its own attempts again.
    fn as_any(&self) -> &dyn Any;
}

/// The request extension holding the attempt being counted.
#[derive(Clone)]
pub(crate) struct PendingAttempt(Arc<dyn Attempt>);

impl PendingAttempt {
    pub(crate) fn new(attempt: Arc<dyn Attempt>) -> Self {
        Self(attempt)
    }

    /// The credential was accepted.
    pub(crate) fn accepted(&self) {
        self.0.accepted();
    }

    /// The attempt, if it is a `T`.
    pub(crate) fn downcast<T: Attempt>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }
}
