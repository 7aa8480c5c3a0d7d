//! What an import reports while it runs and when it is done, and a renderer for a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::format::ArchiveFormat;

/// Handed to the progress callback after every member and every MiB written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportProgress {
    /// Members extracted so far.
    pub entries: u64,
    /// File content written so far (uncompressed).
    pub bytes: u64,
    /// Bytes of the archive itself consumed so far (compressed).
    pub archive_bytes_read: u64,
    /// Size of the archive when known (a file), for a percentage.
    pub archive_size: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub name: String,
    pub path: PathBuf,
    pub format: ArchiveFormat,
    pub entries: u64,
    /// File content written (uncompressed).
    pub bytes: u64,
    /// Members not created (device nodes when not root, ignored member types).
    pub skipped: u64,
    pub archive_bytes: u64,
    pub seconds: f64,
}

impl ImportSummary {
    /// Uncompressed MB/s, the figure to compare with GNU tar.
    pub fn mb_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }
}

/// One-line progress on stderr, redrawn at most 10 times a second, only when stderr is a
/// terminal (so logs and pipes stay clean). Use `callback()` as the import's progress.
pub struct TerminalProgress {
    enabled: bool,
    last: Option<Instant>,
    latest: Option<ImportProgress>,
    started: Instant,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalProgress {
    pub fn new() -> Self {
        TerminalProgress {
            enabled: std::io::stderr().is_terminal(),
            last: None,
            latest: None,
            started: Instant::now(),
        }
    }

    pub fn update(&mut self, p: ImportProgress) {
        if !self.enabled {
            return;
        }
        self.latest = Some(p);
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.draw(&p);
    }

    fn draw(&self, p: &ImportProgress) {
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[K{}",
            render(p, self.started.elapsed())
        );
    }

    /// Draws the final counts (the last update may have been throttled) and ends the line.
    pub fn finish(&mut self) {
        if let Some(p) = self.latest.take() {
            self.draw(&p);
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// A failed import drops the renderer without `finish()`: end the line all the same, so
/// the error message starts on its own line.
impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// "1234 entries, 56.7 MB written, 42% of archive, 12.3 MB/s".
pub fn render(p: &ImportProgress, elapsed: Duration) -> String {
    let mb = p.bytes as f64 / 1e6;
    let rate = mb / elapsed.as_secs_f64().max(1e-3);
    let mut line = format!("{} entries, {mb:.1} MB written", p.entries);
    if let Some(size) = p.archive_size.filter(|&s| s > 0) {
        let pct = (p.archive_bytes_read as f64 * 100.0 / size as f64).min(100.0);
        line.push_str(&format!(", {pct:.0}% of archive"));
    }
    line.push_str(&format!(", {rate:.1} MB/s"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_counts_percentage_and_rate() {
        let p = ImportProgress {
            entries: 12,
            bytes: 5_000_000,
            archive_bytes_read: 250,
            archive_size: Some(1000),
        };
        let line = render(&p, Duration::from_secs(2));
        assert_eq!(line, "12 entries, 5.0 MB written, 25% of archive, 2.5 MB/s");
        let unknown = ImportProgress {
            archive_size: None,
            ..p
        };
        assert!(!render(&unknown, Duration::from_secs(1)).contains('%'));
    }
}
