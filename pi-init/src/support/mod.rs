//! What every room uses and none owns: the log (console and kernel log, the agreed step
//! lines) and named background threads whose panics are contained.

pub mod background;
pub mod log;
#[cfg(test)]
pub(crate) mod testutil;
