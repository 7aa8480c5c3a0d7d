//! Small filesystem helpers shared by the node and image code.

/// 8 random hex digits for temporary names.
pub(crate) fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
