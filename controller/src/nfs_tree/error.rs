//! The one error type of the NFS tree. Every message names what it is about: the path,
//! the serial, the image or the archive entry, so an operator can act on it directly.
//! The underlying `io::Error` is part of the message and kept as a field (`error`), not
//! as `source()`, so printing the chain does not say it twice.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = NfsTreeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum NfsTreeError {
    #[error(
        "invalid base image name {0:?}: use letters, digits, '.', '_' and '-', \
         starting with a letter or digit"
    )]
    InvalidImageName(String),

    #[error("invalid hostname {0:?}: expected RFC 1123 labels (letters, digits, '-')")]
    InvalidHostname(String),

    #[error("invalid persist image size {0} MiB: expected 16..=1048576")]
    InvalidPersistSize(u64),

    #[error("Base image not found: {name} (no directory {path})")]
    BaseImageNotFound { name: String, path: PathBuf },

    #[error("base image already exists: {name} ({path})")]
    ImageExists { name: String, path: PathBuf },

    #[error("an import of base image {0} is already in progress")]
    ImportInProgress(String),

    #[error("archive {archive}: {reason}")]
    UnsupportedArchive { archive: String, reason: String },

    #[error("base image {name}: squashfs: {reason}")]
    Squashfs { name: String, reason: String },

    /// An entry that would write outside the target; the whole archive is refused.
    #[error("archive {archive}: refusing unsafe entry {entry:?}: {reason}")]
    UnsafeEntry {
        archive: String,
        entry: String,
        reason: String,
    },

    /// An entry that cannot be extracted as asked (e.g. a file replacing a directory).
    #[error("archive {archive}: cannot extract entry {entry:?}: {reason}")]
    BadEntry {
        archive: String,
        entry: String,
        reason: String,
    },

    #[error("archive {archive}: entry {entry:?}: {error}")]
    EntryIo {
        archive: String,
        entry: String,
        error: io::Error,
    },

    /// The members' declared sizes passed the import's limit (sparse files count in full).
    #[error(
        "archive {archive}: refusing entry {entry:?}: the files declared so far add up to \
         {declared} bytes, over the import limit of {limit} bytes (sparse files count at their \
         full size; raise it with `image import --max-size` or [nfs] import_max_size_mb)"
    )]
    TooLarge {
        archive: String,
        entry: String,
        declared: u64,
        limit: u64,
    },

    /// Reading, decompressing or parsing the archive itself failed (e.g. it is truncated).
    #[error("archive {archive}: {error}")]
    Archive { archive: String, error: io::Error },

    #[error("{op} {path}: {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    /// A name below the export root that is a symlink: clients can write the export, so the
    /// controller never follows one there.
    #[error("refusing to follow the symlink {path} (below the export root, where a client may have planted it)")]
    Symlink { path: PathBuf },

    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },

    #[error("mkfs.ext4 failed for {path}: {detail}")]
    Mkfs { path: PathBuf, detail: String },
}

/// `map_err` helper: `.map_err(io_err("create", &path))`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> NfsTreeError {
    let path = path.into();
    move |error| NfsTreeError::Io { op, path, error }
}
