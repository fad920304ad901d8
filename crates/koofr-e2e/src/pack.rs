//! Packing content into packfiles: each packer spools one packfile at a time to an unlinked
//! temporary file (never a whole packfile in memory), hashes it as it grows, and at the target
//! size seals it (MAC = SHA-256 of its bytes) and streams it to the store with `Put`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use kloset_plugin::host::RemoteStore;
use kloset_plugin::{ByteStream, ConnectorError, Mac, Resource, Store};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::index::Piece;

/// The default packfile target size.
pub const DEFAULT_PACKFILE_BYTES: u64 = 16 << 20;
/// Chunk size when streaming a packfile to the store.
const PUT_CHUNK: usize = 1 << 20;

/// The 16-byte object header: `_KLOSET_`, resource type 1 (packfile), version 1 (both LE u32).
pub fn packfile_header() -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(b"_KLOSET_");
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[12..16].copy_from_slice(&1u32.to_le_bytes());
    header
}

/// Counters shared by every packer of one backup.
#[derive(Debug, Default)]
pub struct PackStats {
    /// Packfiles put.
    pub packfiles: AtomicU64,
    /// Bytes put as packfiles.
    pub packfile_bytes: AtomicU64,
    next_id: AtomicU64,
    sealed: Mutex<HashMap<u64, Mac>>,
}

impl PackStats {
    /// The MAC of a sealed packfile by its local id.
    pub fn mac_of(&self, id: u64) -> Option<Mac> {
        self.sealed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .copied()
    }
}

/// A piece whose packfile may not be sealed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPiece {
    /// Local id of the packfile.
    pub pack_id: u64,
    /// Offset inside the packfile.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl PendingPiece {
    /// The final piece, once its packfile is sealed.
    pub fn resolve(&self, stats: &PackStats) -> anyhow::Result<Piece> {
        let mac = stats
            .mac_of(self.pack_id)
            .with_context(|| format!("packfile #{} was never sealed", self.pack_id))?;
        Ok(Piece {
            packfile: mac.to_hex(),
            offset: self.offset,
            length: self.length,
        })
    }
}

/// A file's content as packed: pieces, MD5 and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedFile {
    /// Where the content went.
    pub pieces: Vec<PendingPiece>,
    /// Lowercase hex MD5.
    pub md5: String,
    /// Bytes read.
    pub size: u64,
}

struct OpenPack {
    id: u64,
    file: tokio::fs::File,
    hasher: Sha256,
    len: u64,
}

/// One packer: an open packfile being filled, sealed and put when full.
pub struct Packer {
    store: Arc<RemoteStore>,
    target: u64,
    stats: Arc<PackStats>,
    open: Option<OpenPack>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("target", &self.target)
            .field("open_len", &self.open.as_ref().map(|p| p.len))
            .finish_non_exhaustive()
    }
}

impl Packer {
    /// A packer putting packfiles of about `target` bytes into `store`.
    pub fn new(store: Arc<RemoteStore>, target: u64, stats: Arc<PackStats>) -> Packer {
        Packer {
            store,
            // At least the header plus one byte of content per packfile.
            target: target.max(17),
            stats,
            open: None,
        }
    }

    async fn open_pack(&mut self) -> anyhow::Result<&mut OpenPack> {
        if self.open.is_none() {
            let spool = tempfile::tempfile().context("creating a packfile spool file")?;
            let mut file = tokio::fs::File::from_std(spool);
            let header = packfile_header();
            file.write_all(&header)
                .await
                .context("writing the packfile spool")?;
            let mut hasher = Sha256::new();
            hasher.update(header);
            self.open = Some(OpenPack {
                id: self.stats.next_id.fetch_add(1, Ordering::Relaxed),
                file,
                hasher,
                len: header.len() as u64,
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Streams one file's content into packfiles; `on_bytes` sees every chunk's length. The
    /// outer error is fatal (spool or store); the inner one is the source failing to deliver
    /// this file (its bytes already packed stay unreferenced).
    pub async fn pack_file(
        &mut self,
        mut content: ByteStream,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> anyhow::Result<Result<PackedFile, String>> {
        let mut md5 = Md5::new();
        let mut size = 0u64;
        let mut pieces: Vec<PendingPiece> = Vec::new();
        while let Some(chunk) = content.next().await {
            let mut chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => return Ok(Err(format!("reading the content failed: {err}"))),
            };
            md5.update(&chunk);
            size += chunk.len() as u64;
            on_bytes(chunk.len() as u64);
            while !chunk.is_empty() {
                let target = self.target;
                let pack = self.open_pack().await?;
                let room = (target - pack.len.min(target)).max(1);
                let take = (chunk.len() as u64).min(room) as usize;
                let part = chunk.split_to(take);
                pack.file
                    .write_all(&part)
                    .await
                    .context("writing the packfile spool")?;
                pack.hasher.update(&part);
                match pieces.last_mut() {
                    Some(last)
                        if last.pack_id == pack.id
                            && last.offset + u64::from(last.length) == pack.len =>
                    {
                        last.length += take as u32;
                    }
                    _ => pieces.push(PendingPiece {
                        pack_id: pack.id,
                        offset: pack.len,
                        length: take as u32,
                    }),
                }
                pack.len += take as u64;
                if pack.len >= target {
                    self.seal().await?;
                }
            }
        }
        Ok(Ok(PackedFile {
            pieces,
            md5: hex::encode(md5.finalize()),
            size,
        }))
    }

    /// Seals the open packfile (if any) and puts it.
    pub async fn seal(&mut self) -> anyhow::Result<()> {
        let Some(pack) = self.open.take() else {
            return Ok(());
        };
        let OpenPack {
            id,
            mut file,
            hasher,
            len,
        } = pack;
        let mac = Mac(hasher.finalize().into());
        file.flush().await.context("flushing the packfile spool")?;
        file.rewind()
            .await
            .context("rewinding the packfile spool")?;
        let body: ByteStream = tokio_util::io::ReaderStream::with_capacity(file, PUT_CHUNK)
            .map_err(|e| ConnectorError::other(format!("reading the packfile spool: {e}")))
            .boxed();
        let written = self
            .store
            .put(Resource::Packfile.key(mac), body)
            .await
            .with_context(|| format!("putting packfile {mac} ({len} bytes)"))?;
        anyhow::ensure!(
            written == len,
            "putting packfile {mac}: the store took {written} of {len} bytes"
        );
        self.stats.packfiles.fetch_add(1, Ordering::Relaxed);
        self.stats.packfile_bytes.fetch_add(len, Ordering::Relaxed);
        self.stats
            .sealed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, mac);
        Ok(())
    }
}

/// A whole small object (state, lock) as a one-chunk stream.
pub fn bytes_stream(bytes: Vec<u8>) -> ByteStream {
    futures::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed()
}
