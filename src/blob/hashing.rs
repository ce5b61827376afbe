//! Writers that hash what passes through them.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// A writer that counts, and optionally hashes (sha256), everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Option<Sha256>,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing when `hash` is true.
    pub fn new(inner: W, hash: bool) -> Self {
        HashingWriter {
            inner,
            hasher: hash.then(Sha256::new),
            len: 0,
        }
    }

    /// Flushes and returns the inner writer, the hex digest (empty when not hashing)
    /// and the byte count.
    pub fn finish(mut self) -> io::Result<(W, String, u64)> {
        self.inner.flush()?;
        let digest = self
            .hasher
            .map(|h| hex::encode(h.finalize()))
            .unwrap_or_default();
        Ok((self.inner, digest, self.len))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// An upload being streamed into a temporary file, hashed on the way, with a size cap.
pub struct UploadSink {
    file: tokio::fs::File,
    temp: tempfile::NamedTempFile,
    hasher: Sha256,
    len: u64,
    limit: u64,
}

/// Why an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The body is larger than the configured limit.
    #[error("the upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// Writing the temporary file failed.
    #[error("writing the upload failed: {0}")]
    Io(#[from] io::Error),
}

/// A finished upload: the temporary file (removed when dropped), digest and size.
pub struct Uploaded {
    pub temp: tempfile::NamedTempFile,
    pub sha256: String,
    pub size: u64,
}

impl UploadSink {
    /// Starts an upload into `temp`, refusing more than `limit` bytes.
    pub fn new(temp: tempfile::NamedTempFile, limit: u64) -> io::Result<Self> {
        let file = tokio::fs::File::from_std(temp.reopen()?);
        Ok(UploadSink {
            file,
            temp,
            hasher: Sha256::new(),
            len: 0,
            limit,
        })
    }

    /// Appends a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        use tokio::io::AsyncWriteExt;
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(SinkError::TooLarge(self.limit));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Flushes the bytes to disk and returns the finished upload.
    pub async fn finish(mut self) -> Result<Uploaded, SinkError> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.sync_all().await?;
        metrics::counter!("shears_upload_bytes_total").increment(self.len);
        Ok(Uploaded {
            temp: self.temp,
            sha256: hex::encode(self.hasher.finalize()),
            size: self.len,
        })
    }
}
