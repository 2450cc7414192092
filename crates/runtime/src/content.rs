//! The compute node's cache of content by digest: the snapshot archives that sessions load and
//! that services are published with.
//!
//! The database holds content; compute nodes (which have no database) keep what they were sent,
//! one file per SHA-256 digest under the cache directory, and ask for the bytes only when they
//! lack them. Received bytes are checked against their digest before they are kept. The cache
//! keeps its total under a size limit by forgetting the least recently used files.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures_util::StreamExt;
use o16n_compute::{ByteStream, ContentRef};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::RuntimeError;

/// A directory of files named by the digest of their content.
#[derive(Debug)]
pub(crate) struct ContentStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl ContentStore {
    /// A store in `dir`, emptied: what an earlier run kept is sent again when needed.
    pub(crate) fn open(dir: PathBuf, max_bytes: u64) -> Result<ContentStore, RuntimeError> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(ContentStore { dir, max_bytes })
    }

    /// The file of a content the node holds, marked as used; `ContentMissing` otherwise.
    pub(crate) fn get(&self, content: &ContentRef) -> Result<PathBuf, RuntimeError> {
        let path = self.path_of(&content.digest)?;
        match std::fs::File::options().append(true).open(&path) {
            Ok(file) => {
                let _ = file.set_modified(SystemTime::now());
                Ok(path)
            }
            Err(_) => Err(RuntimeError::ContentMissing(content.digest.clone())),
        }
    }

    /// Keeps the bytes of a content, after checking their length and digest.
    pub(crate) async fn put(
        &self,
        content: &ContentRef,
        mut bytes: ByteStream,
    ) -> Result<(), RuntimeError> {
        let path = self.path_of(&content.digest)?;
        let partial = self
            .dir
            .join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let received = async {
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                if size > content.size {
                    break;
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            Ok::<(), std::io::Error>(())
        }
        .await;
        drop(file);
        let digest = hex(&hasher.finalize());
        let outcome = match received {
            Err(err) => Err(RuntimeError::Io(err)),
            Ok(()) if size != content.size || digest != content.digest => {
                Err(RuntimeError::InvalidInput(format!(
                    "the content sent as {} ({} bytes) has digest {digest} ({size} bytes)",
                    content.digest, content.size
                )))
            }
            Ok(()) => Ok(tokio::fs::rename(&partial, &path).await?),
        };
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        outcome?;
        let dir = self.dir.clone();
        let max_bytes = self.max_bytes;
        tokio::task::spawn_blocking(move || evict(&dir, max_bytes, &path))
            .await
            .map_err(|err| RuntimeError::Io(std::io::Error::other(err)))?;
        Ok(())
    }

    fn path_of(&self, digest: &str) -> Result<PathBuf, RuntimeError> {
        // A digest names a file: only 64 hex digits can, so that nothing else is reached.
        let valid = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(RuntimeError::InvalidInput(format!(
                "`{digest}` is not a SHA-256 digest"
            )));
        }
        Ok(self.dir.join(digest.to_ascii_lowercase()))
    }
}

/// Forgets the least recently used files until the directory is under `max_bytes`, never the
/// one just added.
fn evict(dir: &Path, max_bytes: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let metadata = entry.metadata().ok()?;
            let name = entry.file_name();
            (metadata.is_file() && !name.to_string_lossy().starts_with('.')).then(|| {
                (
                    metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    metadata.len(),
                    entry.path(),
                )
            })
        })
        .collect();
    let mut total: u64 = files.iter().map(|(_, size, _)| size).sum();
    files.sort();
    for (_, size, path) in files {
        if total <= max_bytes {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            total -= size;
        }
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(data: &'static [u8]) -> ByteStream {
        Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
            data,
        ))]))
    }

    fn reference(data: &[u8]) -> ContentRef {
        ContentRef {
            digest: hex(&Sha256::digest(data)),
            size: data.len() as u64,
        }
    }

    #[tokio::test]
    async fn content_is_kept_by_digest_and_checked_on_arrival() {
        let dir = std::env::temp_dir().join(format!("o16n-content-{}", uuid::Uuid::new_v4()));
        let store = ContentStore::open(dir.clone(), 1024).unwrap();
        let good = reference(b"snapshot bytes");
        assert!(matches!(
            store.get(&good),
            Err(RuntimeError::ContentMissing(_))
        ));

        store.put(&good, stream(b"snapshot bytes")).await.unwrap();
        assert_eq!(
            std::fs::read(store.get(&good).unwrap()).unwrap(),
            b"snapshot bytes"
        );

        let lying = ContentRef {
            digest: good.digest.replace('a', "b"),
            ..good.clone()
        };
        assert!(store.put(&lying, stream(b"snapshot bytes")).await.is_err());
        let traversal = ContentRef {
            digest: "../../etc/passwd".to_owned(),
            size: 1,
        };
        assert!(matches!(
            store.get(&traversal),
            Err(RuntimeError::InvalidInput(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn the_least_recently_used_content_goes_when_the_cache_is_full() {
        let dir = std::env::temp_dir().join(format!("o16n-content-{}", uuid::Uuid::new_v4()));
        let store = ContentStore::open(dir.clone(), 20).unwrap();
        let (first, second) = (reference(b"0123456789abcd"), reference(b"abcdefghij0123"));
        store.put(&first, stream(b"0123456789abcd")).await.unwrap();
        store.put(&second, stream(b"abcdefghij0123")).await.unwrap();
        assert!(store.get(&first).is_err());
        assert!(store.get(&second).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
