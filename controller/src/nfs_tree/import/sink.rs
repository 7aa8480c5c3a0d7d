//! Where every import's entries go, whatever they were read from (tar members, an ext4
//! root, a FAT boot partition): the size limit on declared sizes, the [`Extractor`], and
//! the progress callback, in one place.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::error::{NfsTreeError, Result};
use super::entry_path;
use super::extract::{ExtractStats, Extractor};
use super::progress::ImportProgress;
use super::tar_entry::{EntryKind, EntryPlan};
use super::{entry_error, ImportOptions};

pub(crate) struct Sink<'a> {
    extractor: Extractor,
    label: &'a str,
    limit: u64,
    /// Declared sizes, counted before anything is written: a small archive can declare a
    /// huge sparse member, whose holes the reader hands over as zeros.
    declared: u64,
    done: ImportProgress,
    /// Bytes of the input read so far (compressed), for the progress line.
    input_read: &'a AtomicU64,
    progress: &'a mut dyn FnMut(ImportProgress),
}

impl<'a> Sink<'a> {
    pub(crate) fn new(
        extractor: Extractor,
        label: &'a str,
        options: &ImportOptions,
        input: (&'a AtomicU64, Option<u64>),
        progress: &'a mut dyn FnMut(ImportProgress),
    ) -> Sink<'a> {
        Sink {
            extractor,
            label,
            limit: options.max_bytes,
            declared: 0,
            done: ImportProgress {
                archive_size: input.1,
                ..Default::default()
            },
            input_read: input.0,
            progress,
        }
    }

    /// Writes one entry; `data` is read only for regular files. `shown` names it in errors.
    pub(crate) fn put(&mut self, plan: EntryPlan, shown: &str, data: &mut dyn Read) -> Result<()> {
        if let EntryKind::File { size, .. } = plan.kind {
            self.declared = self.declared.saturating_add(size);
            if self.declared > self.limit {
                return Err(NfsTreeError::TooLarge {
                    archive: self.label.into(),
                    entry: shown.into(),
                    declared: self.declared,
                    limit: self.limit,
                });
            }
        }
        let (done, input_read, progress) = (&mut self.done, self.input_read, &mut self.progress);
        let mut on_bytes = |n: u64| {
            done.bytes += n;
            done.archive_bytes_read = input_read.load(Ordering::Relaxed);
            progress(*done);
        };
        self.extractor
            .apply(plan, data, &mut on_bytes)
            .map_err(|e| entry_error(self.label, shown, e))?;
        self.done.entries += 1;
        self.done.archive_bytes_read = self.input_read.load(Ordering::Relaxed);
        (self.progress)(self.done);
        Ok(())
    }

    /// The input's own progress while nothing is written yet (a disk image being spooled).
    pub(crate) fn input_progress(&mut self) {
        self.done.archive_bytes_read = self.input_read.load(Ordering::Relaxed);
        (self.progress)(self.done);
    }

    /// Applies the directories' metadata; the counts of the whole import.
    pub(crate) fn finish(mut self) -> Result<ExtractStats> {
        self.extractor
            .finish()
            .map_err(|(entry, e)| entry_error(self.label, &entry, e))?;
        Ok(self.extractor.stats)
    }
}

/// The name an entry is shown by.
pub(crate) fn shown(path: &[Vec<u8>]) -> String {
    entry_path::display(path)
}
