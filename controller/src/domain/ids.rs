//! Identifiers a Pi or an operator sends, validated and normalised once.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {expected}")]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Short Pi serial: exactly 8 hex digits, stored lowercase (`D83ADD36` -> `d83add36`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Serial(String);

impl Serial {
    pub fn parse(s: &str) -> Result<Serial, InvalidId> {
        if s.len() == 8 && is_hex(s) {
            Ok(Serial(s.to_ascii_lowercase()))
        } else {
            Err(InvalidId {
                what: "serial",
                value: s.into(),
                expected: "exactly 8 hex digits",
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Full serial as Linux shows it (up to 16 hex, leading zeros kept), lowercase. Its low 8
/// digits must be the short serial the same request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullSerial(String);

impl FullSerial {
    pub fn parse(s: &str, short: &Serial) -> Result<FullSerial, InvalidId> {
        let lower = s.to_ascii_lowercase();
        if !(8..=16).contains(&s.len()) || !is_hex(s) {
            return Err(InvalidId {
                what: "full serial",
                value: s.into(),
                expected: "8 to 16 hex digits",
            });
        }
        if !lower.ends_with(short.as_str()) {
            return Err(InvalidId {
                what: "full serial",
                value: s.into(),
                expected: "its last 8 digits must equal the short serial",
            });
        }
        Ok(FullSerial(lower))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Ethernet MAC, stored as `aa:bb:cc:dd:ee:ff`; `-` separators are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mac(String);

impl Mac {
    pub fn parse(s: &str) -> Result<Mac, InvalidId> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && is_hex(p)) {
            Ok(Mac(parts.join(":").to_ascii_lowercase()))
        } else {
            Err(InvalidId {
                what: "MAC address",
                value: s.into(),
                expected: "six hex pairs like aa:bb:cc:dd:ee:ff",
            })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Operator-set hostname: RFC 1123 labels (letters, digits, inner `-`), at most 253 bytes.
pub fn parse_hostname(s: &str) -> Result<String, InvalidId> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(InvalidId {
            what: "hostname",
            value: s.into(),
            expected: "RFC 1123 labels (letters, digits, '-')",
        })
    }
}

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
                expected: "a node UUID or an 8-hex serial",
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
    fn serials() {
        assert_eq!(Serial::parse("D83ADD36").unwrap().as_str(), "d83add36");
        for bad in [
            "",
            "d83add3",
            "d83add367",
            "../etc/x",
            "d83addg6",
            "d83add3\n",
        ] {
            assert!(Serial::parse(bad).is_err(), "{bad:?}");
        }
        let short = Serial::parse("d83add36").unwrap();
        assert_eq!(
            FullSerial::parse("10000000D83ADD36", &short)
                .unwrap()
                .as_str(),
            "10000000d83add36"
        );
        let err = FullSerial::parse("10000000d83add37", &short).unwrap_err();
        assert!(err.to_string().contains("short serial"), "{err}");
        assert!(
            FullSerial::parse("110000000d83add36", &short).is_err(),
            "17 digits"
        );
    }

    #[test]
    fn macs() {
        assert_eq!(
            Mac::parse("DC-A6-32-01-02-03").unwrap().as_str(),
            "dc:a6:32:01:02:03"
        );
        for bad in [
            "",
            "dc:a6:32:01:02",
            "dc:a6:32:01:02:0g",
            "dca632010203",
            "dc:a6:32:01:02:003",
        ] {
            assert!(Mac::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostnames() {
        assert_eq!(parse_hostname("Kitchen-Pi.lan").unwrap(), "kitchen-pi.lan");
        for bad in ["", "-x", "x-", "a b", "a..b", "a/b", &"x".repeat(64)] {
            assert!(parse_hostname(bad).is_err(), "{bad:?}");
        }
    }

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
