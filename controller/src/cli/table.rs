//! Plain text tables for the CLI (column widths from the content).

use crate::text::escape_controls;

/// Cells come from clients too: control characters are escaped (see [`escape_controls`]).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_controls(c)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let t = super::render(
            &["SERIAL", "STATE"],
            &[
                vec!["d83add36".into(), "active".into()],
                vec!["1".into(), "-".into()],
            ],
        );
        assert_eq!(t, "SERIAL    STATE\nd83add36  active\n1         -\n");
        let t = super::render(&["IP"], &[vec!["\u{1b}[31mX".into()]]);
        assert_eq!(t, "IP\n\\u{1b}[31mX\n");
    }
}
