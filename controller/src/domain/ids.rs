//! A node reference (`{id}` in the API), the controller's own identifier; the shared ones
//! are the contract's (`pureboot_contract::ids`).

use std::fmt;

use pureboot_contract::ids::{InvalidId, Serial};

/// `{id}` in the management API: a node UUID or an 8-hex serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    Id(String),
    Serial(Serial),
}

impl NodeRef {
    pub fn parse(s: &str) -> Result<NodeRef, InvalidId> {
        if let Ok(serial) = Serial::parse(s) {
            return Ok(NodeRef::Serial(serial));
        }
        let uuid_shape = s.len() == 36
            && s.char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if uuid_shape {
            Ok(NodeRef::Id(s.to_ascii_lowercase()))
        } else {
            Err(InvalidId {
                what: "node id",
                value: s.into(),
                expected: "a node UUID or an 8-hex serial".into(),
            })
        }
    }
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRef::Id(id) => f.write_str(id),
            NodeRef::Serial(s) => f.write_str(s.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_refs() {
        assert_eq!(
            NodeRef::parse("D83ADD36").unwrap(),
            NodeRef::Serial(Serial::parse("d83add36").unwrap())
        );
        let id = "5f0c1b2a-0000-4000-8000-00000000abcd";
        assert_eq!(NodeRef::parse(id).unwrap(), NodeRef::Id(id.into()));
        assert!(NodeRef::parse("5f0c1b2a-0000-4000-8000-00000000abc").is_err());
        assert!(NodeRef::parse("../../etc").is_err());
    }
}
