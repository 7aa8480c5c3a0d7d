//! Where an effective setting came from (see [`super::effective`]): its own module so the
//! layers' types (volumes) can name it without importing the resolver.

use std::fmt;

use serde::Serialize;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The controller's configuration (`[nfs] default_base_image`) or the built-in rule
    /// (overlay `tmpfs`, hostname `pi-<serial>`).
    Default,
    Workflow(String),
    Group(String),
    Node,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Workflow(id) => write!(f, "workflow {id}"),
            Source::Group(name) => write!(f, "group {name}"),
            Source::Node => f.write_str("node"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
