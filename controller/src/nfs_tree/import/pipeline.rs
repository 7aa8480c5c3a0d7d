//! Reading and decompressing on a second thread, so decompression and file writes overlap
//! (what `tar -z` gets from running gzip as a separate process). The reader thread sends
//! 1 MiB chunks over a small bounded channel; buffers come back for reuse.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::extract::read_full;

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

/// Counts bytes read from the archive itself (compressed), for progress against its size.
pub(crate) struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    pub(crate) fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        CountingReader { inner, count }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Consumer end: a `Read` over the chunks. It remembers whether its last read hit the end
/// of the stream, which tells a tar end-of-archive block from a truncated archive.
pub(crate) struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    finished: bool,
    last_read_hit_end: bool,
}

impl ChunkReader {
    pub(crate) fn last_read_hit_end(&self) -> bool {
        self.last_read_hit_end
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if self.finished {
                self.last_read_hit_end = true;
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.current, chunk);
                    self.pos = 0;
                    let _ = self.recycle.try_send(old);
                }
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e);
                }
                // The producer ends by dropping its sender.
                Err(_) => self.finished = true,
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.last_read_hit_end = false;
        Ok(n)
    }
}

/// Producer end, run on the reader thread until the source ends, fails, or the consumer
/// goes away (a failed import drops the [`ChunkReader`]).
pub(crate) struct ChunkProducer {
    tx: SyncSender<io::Result<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
}

impl ChunkProducer {
    pub(crate) fn run(self, source: &mut dyn Read) {
        loop {
            let mut buf = self.recycled.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            match read_full(source, &mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if self.tx.send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.tx.send(Err(e));
                    return;
                }
            }
        }
    }
}

pub(crate) fn channel() -> (ChunkProducer, ChunkReader) {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    let (recycle, recycled) = sync_channel(IN_FLIGHT + 1);
    (
        ChunkProducer { tx, recycled },
        ChunkReader {
            rx,
            recycle,
            current: Vec::new(),
            pos: 0,
            finished: false,
            last_read_hit_end: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order_and_end_is_seen() {
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let (producer, mut reader) = channel();
        let mut source = &data[..];
        std::thread::scope(|s| {
            s.spawn(move || producer.run(&mut source));
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
            assert!(reader.last_read_hit_end());
        });
    }

    #[test]
    fn source_error_reaches_the_reader() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt stream"))
            }
        }
        let (producer, mut reader) = channel();
        std::thread::scope(|s| {
            s.spawn(move || producer.run(&mut Failing));
            let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
            assert!(err.to_string().contains("corrupt stream"));
        });
    }
}
