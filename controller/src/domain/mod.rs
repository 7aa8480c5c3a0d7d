//! Pure domain rules: identifiers parsed once at the edge, the node state machine and the
//! boot decision. Nothing here touches HTTP, SQL or the filesystem.

pub mod boot;
pub mod effective;
pub mod group;
pub mod group_rule;
pub mod ids;
pub mod node;
pub mod pool;
pub mod rollout;
pub mod source;
pub mod state;
pub mod versions;
pub mod volumes;
pub mod workflow;
