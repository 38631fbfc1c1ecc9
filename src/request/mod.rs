//! What every layer reads of a request, parsed by one neutral module below the layers: the
//! credential headers and where the request comes from. No layer module imports another's; what
//! two layers both need lives here.

pub(crate) mod attempt;
pub(crate) mod credential;
pub(crate) mod forwarded;
