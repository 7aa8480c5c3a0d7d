//! A node's event as the boot path and the repairs record it.

use serde_json::Value;

use crate::domain::node::Node;
use crate::store::events::{EventKind, NewEvent};

pub(super) fn event<'a>(
    node: &'a Node,
    kind: EventKind,
    ip: Option<&'a str>,
    detail: Value,
) -> NewEvent<'a> {
    NewEvent {
        node_id: Some(&node.id),
        serial: node.serial.as_str(),
        kind,
        ip,
        detail,
    }
}
