//! Writes large outputs without copying them through the page cache (`O_DIRECT`) where the
//! file system allows it. A big graph is gigabytes written once and not read back by this
//! process; on small virtual machines copying it into the page cache costs more CPU than
//! encoding it. Where `O_DIRECT` is refused (tmpfs, some network file systems) the writer
//! falls back to ordinary writes, so callers never need to care.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Alignment `O_DIRECT` needs for memory, offsets and lengths (a multiple of every common
/// logical block size).
const ALIGN: usize = 4096;
/// Bytes handed to the kernel per write.
const BLOCK: usize = 8 << 20;

/// A file writer that buffers into aligned blocks. Call [`DirectWriter::finish`] to write the
/// last block and set the exact length; dropping it without does not.
pub struct DirectWriter {
    path: PathBuf,
    file: File,
    direct: bool,
    /// `BLOCK + ALIGN` bytes, of which `buf[offset..offset + BLOCK]` is aligned.
    buf: Vec<u8>,
    offset: usize,
    filled: usize,
    written: u64,
}

impl DirectWriter {
    /// Opens the existing file at `path`, emptied, for writing; with `O_DIRECT` when `direct`
    /// is asked for and the file system takes it.
    pub fn open(path: &Path, direct: bool) -> io::Result<Self> {
        let flags = if direct { nix::libc::O_DIRECT } else { 0 };
        let opened = OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(flags)
            .open(path);
        let (file, direct) = match opened {
            Ok(file) => (file, direct),
            Err(_) => (
                OpenOptions::new().write(true).truncate(true).open(path)?,
                false,
            ),
        };
        let buf = vec![0u8; BLOCK + ALIGN];
        let offset = buf.as_ptr().align_offset(ALIGN);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            direct,
            buf,
            offset,
            filled: 0,
            written: 0,
        })
    }

    /// Whether writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes the first `len` buffered bytes (a multiple of `ALIGN` unless direct I/O is off
    /// or this is the last block).
    fn write_block(&mut self, len: usize) -> io::Result<()> {
        let block = &self.buf[self.offset..self.offset + len];
        match self.file.write_all(block) {
            Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                // The file system accepted the flag but not the writes: carry on without it.
                let mut file = OpenOptions::new().write(true).open(&self.path)?;
                file.seek(SeekFrom::Start(self.written))?;
                self.file = file;
                self.direct = false;
                self.file.write_all(block)?;
            }
            other => other?,
        }
        self.written += len as u64;
        Ok(())
    }

    /// Writes what is buffered and gives the file its exact length.
    pub fn finish(mut self) -> io::Result<()> {
        let len = self.filled;
        if self.direct && !len.is_multiple_of(ALIGN) {
            // Direct writes cover whole blocks: pad, then cut the file back.
            let padded = len.next_multiple_of(ALIGN);
            self.buf[self.offset + len..self.offset + padded].fill(0);
            self.write_block(padded)?;
            self.written -= (padded - len) as u64;
            self.file.set_len(self.written)?;
        } else if len > 0 {
            self.write_block(len)?;
        }
        Ok(())
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.filled);
        let at = self.offset + self.filled;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == BLOCK {
            self.write_block(BLOCK)?;
            self.filled = 0;
        }
        Ok(n)
    }

    /// Blocks are written as they fill; the last one only by [`DirectWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn round_trip(dir: &Path, pieces: &[usize]) -> Vec<u8> {
        let path = dir.join("out");
        std::fs::write(&path, vec![b'x'; 3 * ALIGN + 5]).unwrap();
        let mut w = DirectWriter::open(&path, true).unwrap();
        let mut expected = Vec::new();
        for &len in pieces {
            let data = pattern(len);
            w.write_all(&data).unwrap();
            expected.extend(data);
        }
        w.finish().unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len(), expected.len());
        assert!(written == expected, "content differs");
        written
    }

    #[test]
    fn output_has_exact_content_and_length_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(dir.path(), &[0, 10, BLOCK - 5, 3 * ALIGN, BLOCK + 17, 1]);
        round_trip(dir.path(), &[BLOCK]);
        round_trip(dir.path(), &[]);
    }

    #[test]
    fn buffered_mode_writes_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"old").unwrap();
        let mut w = DirectWriter::open(&path, false).unwrap();
        assert!(!w.is_direct());
        w.write_all(&pattern(BLOCK + 7)).unwrap();
        w.finish().unwrap();
        assert!(std::fs::read(&path).unwrap() == pattern(BLOCK + 7));
    }

    #[test]
    fn file_systems_without_direct_io_still_get_the_data() {
        // tmpfs refuses O_DIRECT on older kernels and accepts it on newer ones: either way
        // the bytes must arrive.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        round_trip(dir.path(), &[5, BLOCK + 3]);
    }
}
