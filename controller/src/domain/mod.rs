//! Pure domain rules: identifiers parsed once at the edge, the node state machine and the
//! boot decision. Nothing here touches HTTP, SQL or the filesystem.

pub mod boot;
pub mod ids;
pub mod node;
pub mod state;

pub use ids::{FullSerial, Hostname, ImageName, InvalidId, Mac, MachineId, NodeRef, Serial};
pub use node::{full_serial_of_claim, Node, OverlayMode};
pub use state::{InvalidTransition, NodeState};
