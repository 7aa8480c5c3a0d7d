//! Pi serials as the NFS tree uses them: the low 8 hex digits, lowercase (DESIGN.md).
//! A serial becomes a directory name, so nothing but exactly 8 hex digits gets through.

use super::error::{NfsTreeError, Result};

/// True for exactly 8 ASCII hex digits, either case.
pub fn validate_serial(serial: &str) -> bool {
    serial.len() == 8 && serial.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The serial in its directory form (8 lowercase hex), or [`NfsTreeError::InvalidSerial`].
pub fn normalize_serial(serial: &str) -> Result<String> {
    if validate_serial(serial) {
        Ok(serial.to_ascii_lowercase())
    } else {
        Err(NfsTreeError::InvalidSerial(serial.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The seed's parametrised table, plus cases a byte-level check must not let through.
    #[test]
    fn validate_serial_table() {
        let table: &[(&str, bool)] = &[
            ("d83add36", true),
            ("00000000", true),
            ("ffffffff", true),
            ("ABCDEF12", true),
            ("", false),
            ("d83add3", false),
            ("d83add367", false),
            ("d83addgg", false),
            ("../etc/passwd", false),
            ("+d83add3", false),
            ("d83add3\n", false),
            ("d83ädd3", false),
        ];
        for (serial, expected) in table {
            assert_eq!(validate_serial(serial), *expected, "serial {serial:?}");
        }
    }

    #[test]
    fn normalize_lowercases_and_rejects() {
        assert_eq!(normalize_serial("D83ADD36").unwrap(), "d83add36");
        let err = normalize_serial("../etc/passwd").unwrap_err();
        assert!(err.to_string().contains("../etc/passwd"), "{err}");
    }
}
