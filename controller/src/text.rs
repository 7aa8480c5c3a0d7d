//! Text from clients (reports, registrations, workflow output) on its way to a terminal or
//! a log line: control characters are written as escapes, so a value cannot move the
//! cursor, recolour the screen or forge a line.

use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) as `\u{..}`; backslashes doubled so
/// the result reads back unambiguously. Everything else is kept.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_controls("10.0.2.15"), "10.0.2.15");
        assert_eq!(
            escape_controls("\u{1b}[31mPWNED\n"),
            "\\u{1b}[31mPWNED\\u{a}"
        );
        assert_eq!(escape_controls("a\u{9b}b\u{7f}"), "a\\u{9b}b\\u{7f}");
        assert_eq!(escape_controls("C:\\x"), "C:\\\\x");
        assert_eq!(escape_controls("ünï"), "ünï");
    }
}
