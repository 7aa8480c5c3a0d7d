//! What an import reports while it runs and when it is done, and a renderer for a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    /// Members not created (device nodes, ignored member types).
    pub skipped: u64,
    /// Device nodes left out (without `--keep-devices`, or not root).
    pub devices_skipped: u64,
    /// Files whose set-uid/set-gid bits were cleared (without `--keep-setuid`).
    pub setid_cleared: u64,
    pub archive_bytes: u64,
    /// The squashfs file, in that format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squashfs: Option<super::squashfs::Packed>,
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

/// How an import shows its progress, on stderr (stdout keeps the result for scripts).
enum View {
    /// A terminal: an indicatif bar over the archive read so far (percentage, rate, time
    /// left) with the entries and bytes written, redrawn at most 10 times a second.
    Bar(ProgressBar),
    /// Not a terminal (a log, a pipe, the journal): one plain [`render`] line every
    /// `every`, so a long import is seen to move without filling the log.
    Lines { every: Duration, last: Instant },
    /// `--json`: nothing but the final JSON document.
    Quiet,
}

/// Default gap between two plain lines when stderr is not a terminal.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// Overrides [`LINE_INTERVAL`] (milliseconds; 0 = a line on every update), e.g. for a test
/// or a chattier log.
pub const LINE_INTERVAL_ENV: &str = "PUREBOOT_PROGRESS_INTERVAL_MS";

/// Progress of an import on stderr: a bar on a terminal, a plain line every few seconds
/// otherwise, nothing for `--json`. Use [`TerminalProgress::update`] as the import's
/// progress callback and [`TerminalProgress::finish`] when it is done.
pub struct TerminalProgress {
    view: View,
    latest: Option<ImportProgress>,
    started: Instant,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalProgress {
    /// The view for stderr as it is: a bar on a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self::for_output(false)
    }

    /// As [`TerminalProgress::new`], or silent when the output is JSON.
    pub fn for_output(json: bool) -> Self {
        let view = if json {
            View::Quiet
        } else if std::io::stderr().is_terminal() {
            View::Bar(new_bar())
        } else {
            View::Lines {
                every: line_interval(std::env::var(LINE_INTERVAL_ENV).ok().as_deref()),
                last: Instant::now(),
            }
        };
        TerminalProgress {
            view,
            latest: None,
            started: Instant::now(),
        }
    }

    pub fn update(&mut self, p: ImportProgress) {
        self.latest = Some(p);
        match &mut self.view {
            View::Quiet => {}
            View::Bar(bar) => {
                // The length is the archive's size when known: percentage and time left
                // follow the compressed bytes read (the written size is not known ahead).
                if let Some(size) = p.archive_size.filter(|&s| s > 0) {
                    if bar.length() != Some(size) {
                        bar.set_length(size);
                        bar.set_style(bar_style(true));
                    }
                }
                bar.set_position(p.archive_bytes_read);
                bar.set_message(bar_message(&p, self.started.elapsed()));
            }
            View::Lines { every, last } => {
                let now = Instant::now();
                if now.duration_since(*last) >= *every {
                    *last = now;
                    eprintln!("import: {}", render(&p, self.started.elapsed()));
                }
            }
        }
    }

    /// Ends the bar (cleared: the caller prints the summary). Plain lines and `--json` end
    /// with nothing more: the summary says the rest.
    pub fn finish(&mut self) {
        if let View::Bar(bar) = &self.view {
            bar.finish_and_clear();
        }
        self.latest = None;
    }
}

/// A failed import drops the view without `finish()`: leave the bar where it stopped and
/// end its line, so the error message starts on its own line.
impl Drop for TerminalProgress {
    fn drop(&mut self) {
        if let View::Bar(bar) = &self.view {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

fn line_interval(env: Option<&str>) -> Duration {
    env.and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(LINE_INTERVAL)
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(bar_style(false));
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// With the archive's size: bar, percentage, compressed bytes and time left. Without: a
/// spinner and the counts.
fn bar_style(sized: bool) -> ProgressStyle {
    let template = if sized {
        "{spinner} [{elapsed_precise}] [{bar:30}] {percent:>3}% of archive \
         ({decimal_bytes}/{decimal_total_bytes}), {eta} left: {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {msg}"
    };
    ProgressStyle::with_template(template)
        .expect("progress template is valid")
        .progress_chars("=> ")
}

/// Uncompressed MB written and the rate written so far, in MB/s.
fn written(p: &ImportProgress, elapsed: Duration) -> (f64, f64) {
    let mb = p.bytes as f64 / 1e6;
    (mb, mb / elapsed.as_secs_f64().max(1e-3))
}

/// "12 entries, 5.0 MB written, 2.5 MB/s": what the bar's template does not show.
fn bar_message(p: &ImportProgress, elapsed: Duration) -> String {
    let (mb, rate) = written(p, elapsed);
    format!("{} entries, {mb:.1} MB written, {rate:.1} MB/s", p.entries)
}

/// Time left at the rate the archive was read so far, when its size is known.
pub fn time_left(p: &ImportProgress, elapsed: Duration) -> Option<Duration> {
    let size = p.archive_size.filter(|&s| s > 0)?;
    if p.archive_bytes_read == 0 || elapsed.is_zero() {
        return None;
    }
    let rate = p.archive_bytes_read as f64 / elapsed.as_secs_f64();
    let left = size.saturating_sub(p.archive_bytes_read) as f64 / rate;
    Some(Duration::from_secs_f64(left.min(1e9)))
}

/// "1m 05s", "42 s".
fn human(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// "1234 entries, 56.7 MB written, 42% of archive, 12.3 MB/s, 1m 05s left".
pub fn render(p: &ImportProgress, elapsed: Duration) -> String {
    let (mb, rate) = written(p, elapsed);
    let mut line = format!("{} entries, {mb:.1} MB written", p.entries);
    if let Some(size) = p.archive_size.filter(|&s| s > 0) {
        let pct = (p.archive_bytes_read as f64 * 100.0 / size as f64).min(100.0);
        line.push_str(&format!(", {pct:.0}% of archive"));
    }
    line.push_str(&format!(", {rate:.1} MB/s"));
    if let Some(left) = time_left(p, elapsed) {
        line.push_str(&format!(", {} left", human(left)));
    }
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
        assert_eq!(
            line,
            "12 entries, 5.0 MB written, 25% of archive, 2.5 MB/s, 6 s left"
        );
        let unknown = ImportProgress {
            archive_size: None,
            ..p
        };
        let line = render(&unknown, Duration::from_secs(1));
        assert!(!line.contains('%') && !line.contains("left"), "{line}");
    }

    #[test]
    fn time_left_follows_the_archive_read_so_far() {
        let p = ImportProgress {
            entries: 1,
            bytes: 0,
            archive_bytes_read: 1_000_000_000,
            archive_size: Some(4_000_000_000),
        };
        // A quarter in 100 s: 300 s to go.
        assert_eq!(
            time_left(&p, Duration::from_secs(100)),
            Some(Duration::from_secs(300))
        );
        assert!(render(&p, Duration::from_secs(100)).ends_with(", 5m 00s left"));
        let start = ImportProgress {
            archive_bytes_read: 0,
            ..p
        };
        assert_eq!(time_left(&start, Duration::from_secs(1)), None);
        assert_eq!(human(Duration::from_secs(3725)), "1h 02m");
        assert_eq!(human(Duration::from_secs(42)), "42 s");
    }

    #[test]
    fn line_interval_defaults_and_overrides() {
        assert_eq!(line_interval(None), LINE_INTERVAL);
        assert_eq!(line_interval(Some("garbage")), LINE_INTERVAL);
        assert_eq!(line_interval(Some("0")), Duration::ZERO);
        assert_eq!(line_interval(Some("250")), Duration::from_millis(250));
    }

    #[test]
    fn json_output_is_silent() {
        let mut quiet = TerminalProgress::for_output(true);
        assert!(matches!(quiet.view, View::Quiet));
        quiet.update(ImportProgress::default());
        quiet.finish();
    }

    #[test]
    fn the_bar_templates_parse() {
        let _ = bar_style(true);
        let _ = bar_style(false);
    }
}
