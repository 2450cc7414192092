//! Content by digest: snapshot archives and the snapshot copies or models of services, stored
//! once per SHA-256 of their bytes, in chunks.
//!
//! Chunks keep any content below the size limit of one field (PostgreSQL's `bytea` stops short
//! of 1 GiB) and let content be written and read as a stream, never whole in memory. Content
//! being written is kept under a provisional key until its digest is known; content already
//! stored is not stored twice. Content that no snapshot or service refers to any longer is
//! collected by [`Store::collect_unreferenced_content`]; storing content marks it as new again,
//! and new content is spared for a while, so that content stored for a snapshot or service that
//! is about to refer to it is never collected in between.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::Row;

use o16n_types::Content;

use crate::{Store, StoreError};

/// The size of a chunk.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Provisional keys of content still arriving start with this.
const PARTIAL_PREFIX: &str = "partial:";
/// Content still "arriving" after this long was abandoned (its writer died).
const ABANDONED_AFTER_MS: u128 = 24 * 3600 * 1000;
/// Unreferenced content is collected only when it was stored longer ago than this.
const SPARED_FOR_SECONDS: i64 = 600;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Store {
    /// Stores a stream of bytes as content and returns its digest and size. Content already
    /// stored under the same digest is not stored again.
    pub async fn put_content<S>(&self, bytes: S) -> Result<Content, StoreError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let provisional = format!(
            "{PARTIAL_PREFIX}{:015}:{}",
            now_ms(),
            uuid::Uuid::new_v4().simple()
        );
        let written = self.write_chunks(&provisional, bytes).await;
        let content = match written {
            Ok(content) => content,
            Err(err) => {
                let _ = self.delete_chunks(&provisional).await;
                return Err(err);
            }
        };
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO contents (digest, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&content.digest)
        .bind(content.size as i64)
        .bind((now_ms() / 1000) as i64)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        if inserted == 0 {
            sqlx::query("UPDATE contents SET created_at = $1 WHERE digest = $2")
                .bind((now_ms() / 1000) as i64)
                .bind(&content.digest)
                .execute(&mut *transaction)
                .await?;
        }
        if inserted == 1 {
            sqlx::query("UPDATE content_chunks SET digest = $1 WHERE digest = $2")
                .bind(&content.digest)
                .bind(&provisional)
                .execute(&mut *transaction)
                .await?;
        } else {
            sqlx::query("DELETE FROM content_chunks WHERE digest = $1")
                .bind(&provisional)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(content)
    }

    /// Stores bytes already in memory as content.
    pub async fn put_content_bytes(&self, bytes: &[u8]) -> Result<Content, StoreError> {
        let owned = Bytes::copy_from_slice(bytes);
        self.put_content(futures_util::stream::iter([Ok(owned)]))
            .await
    }

    async fn write_chunks<S>(&self, key: &str, bytes: S) -> Result<Content, StoreError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let mut bytes = std::pin::pin!(bytes);
        let mut hasher = Sha256::new();
        let mut buffer = BytesMut::with_capacity(CHUNK_BYTES);
        let mut size = 0u64;
        let mut seq = 0i64;
        loop {
            let next = bytes.next().await.transpose().map_err(StoreError::Read)?;
            if let Some(piece) = &next {
                hasher.update(piece);
                size += piece.len() as u64;
                buffer.extend_from_slice(piece);
            }
            while buffer.len() >= CHUNK_BYTES || (next.is_none() && !buffer.is_empty()) {
                let take = buffer.len().min(CHUNK_BYTES);
                let chunk = buffer.split_to(take);
                sqlx::query("INSERT INTO content_chunks (digest, seq, data) VALUES ($1, $2, $3)")
                    .bind(key)
                    .bind(seq)
                    .bind(&chunk[..])
                    .execute(&self.pool)
                    .await?;
                seq += 1;
            }
            if next.is_none() {
                return Ok(Content {
                    digest: hex(&hasher.finalize()),
                    size,
                });
            }
        }
    }

    async fn delete_chunks(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM content_chunks WHERE digest = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The size of stored content, or `None` when it is not stored.
    pub async fn content_size(&self, digest: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT size FROM contents WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|row| row.try_get::<i64, _>("size"))
            .transpose()?
            .map(|size| size as u64))
    }

    /// Stored content, chunk by chunk, as it is read from the database.
    pub fn read_content(
        &self,
        digest: &str,
    ) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
        let (store, digest) = (self.clone(), digest.to_owned());
        futures_util::stream::try_unfold(0i64, move |seq| {
            let (store, digest) = (store.clone(), digest.clone());
            async move {
                let row =
                    sqlx::query("SELECT data FROM content_chunks WHERE digest = $1 AND seq = $2")
                        .bind(&digest)
                        .bind(seq)
                        .fetch_optional(&store.pool)
                        .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let data: Vec<u8> = row.try_get("data")?;
                Ok(Some((Bytes::from(data), seq + 1)))
            }
        })
    }

    /// Stored content, whole (for small content such as models).
    pub async fn content_bytes(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let mut content = Vec::new();
        let mut chunks = std::pin::pin!(self.read_content(digest));
        while let Some(chunk) = chunks.next().await {
            content.extend_from_slice(&chunk?);
        }
        Ok(content)
    }

    /// Collects content that no snapshot or service refers to any longer (and that was not
    /// stored in the last minutes).
    pub async fn collect_unreferenced_content(&self) -> Result<(), StoreError> {
        let stored_before = (now_ms() / 1000) as i64 - SPARED_FOR_SECONDS;
        let mut transaction = self.pool.begin().await?;
        let collected = sqlx::query(
            "DELETE FROM contents WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM snapshots WHERE content_digest = contents.digest) \
             AND NOT EXISTS (SELECT 1 FROM services WHERE content_digest = contents.digest) \
             RETURNING digest",
        )
        .bind(stored_before)
        .fetch_all(&mut *transaction)
        .await?;
        for row in collected {
            let digest: String = row.try_get("digest")?;
            sqlx::query("DELETE FROM content_chunks WHERE digest = $1")
                .bind(&digest)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Removes the chunks of content whose writer died while it was arriving.
    pub(crate) async fn remove_abandoned_chunks(&self) -> Result<(), StoreError> {
        let cutoff = format!(
            "{PARTIAL_PREFIX}{:015}",
            now_ms().saturating_sub(ABANDONED_AFTER_MS)
        );
        sqlx::query("DELETE FROM content_chunks WHERE digest LIKE 'partial:%' AND digest < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves what databases from before content-by-digest hold inline (snapshot archives and
    /// service copies) into content, once.
    pub(crate) async fn move_inline_content(&self) -> Result<(), StoreError> {
        let snapshots = sqlx::query(
            "SELECT id, content FROM snapshots WHERE content_digest IS NULL AND length(content) > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in snapshots {
            let id: String = row.try_get("id")?;
            let content: Vec<u8> = row.try_get("content")?;
            let stored = self.put_content_bytes(&content).await?;
            sqlx::query("UPDATE snapshots SET content_digest = $1, content = $2 WHERE id = $3")
                .bind(&stored.digest)
                .bind(&[][..])
                .bind(&id)
                .execute(&self.pool)
                .await?;
        }
        let services = sqlx::query(
            "SELECT name, version, snapshot FROM services \
             WHERE content_digest IS NULL AND snapshot IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in services {
            let (name, version): (String, String) = (row.try_get("name")?, row.try_get("version")?);
            let content: Vec<u8> = row.try_get("snapshot")?;
            let stored = self.put_content_bytes(&content).await?;
            sqlx::query(
                "UPDATE services SET content_digest = $1, snapshot = NULL \
                 WHERE name = $2 AND version = $3",
            )
            .bind(&stored.digest)
            .bind(&name)
            .bind(&version)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}
