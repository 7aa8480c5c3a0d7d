//! The short serial the Pi firmware uses as its TFTP folder name.

use std::fmt;

/// Exactly 8 hex digits, stored lowercase (the firmware asks for lowercase folders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial(String);

impl std::str::FromStr for Serial {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self(text.to_ascii_lowercase()));
        }
        let hint = if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!(
                " (the firmware uses the low 8 digits: {})",
                text[8..].to_ascii_lowercase()
            )
        } else {
            String::new()
        };
        Err(format!("serial {text:?} is not 8 hex digits{hint}"))
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_eight_hex_digits_lowercased() {
        assert_eq!(
            "D83ADD36".parse::<Serial>().unwrap().to_string(),
            "d83add36"
        );
        assert_eq!(
            "0123abcd".parse::<Serial>().unwrap().to_string(),
            "0123abcd"
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "d83add3",
            "d83add366",
            "d83add3g",
            "../../etc",
            "d83a dd3",
            "d83add3/",
        ] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?} accepted");
        }
        let err = "10000000D83ADD36".parse::<Serial>().unwrap_err();
        assert!(err.contains("d83add36"), "{err}");
    }
}
