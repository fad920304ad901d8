//! A tiny filesystem abstraction for the reference connectors: in memory, or a local directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::ByteStream;
use crate::error::{ConnectorError, Result};

/// Metadata of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// A directory (else a regular file).
    pub is_dir: bool,
    /// File size in bytes (0 for directories).
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
}

/// One child of a directory: its name and metadata, or why it cannot be read.
pub type Child = (String, std::result::Result<Entry, String>);

/// The storage under the reference connectors. Paths are absolute and `/`-separated.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Metadata, or None if absent.
    async fn stat(&self, path: &str) -> Result<Option<Entry>>;
    /// The children of a directory, sorted by name.
    async fn list_dir(&self, path: &str) -> Result<Vec<Child>>;
    /// `length` bytes (None: to the end) from `offset` of a file.
    async fn read(&self, path: &str, offset: u64, length: Option<u64>) -> Result<ByteStream>;
    /// Writes a file atomically (the parent must exist); an `Err` in `data` changes nothing.
    async fn write(&self, path: &str, data: ByteStream, mtime: Option<SystemTime>) -> Result<u64>;
    /// Creates a directory and its missing ancestors; sets the time of the last one if given.
    async fn mkdir_all(&self, path: &str, mtime: Option<SystemTime>) -> Result<()>;
    /// Removes a file or an empty directory; absent is an error.
    async fn remove(&self, path: &str) -> Result<()>;
    /// Makes an entry unreadable (test hook); false if this backend cannot.
    async fn break_entry(&self, path: &str) -> Result<bool>;
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn not_found(path: &str) -> ConnectorError {
    ConnectorError::not_found(format!("{path}: not found"))
}

#[derive(Debug, Clone)]
enum Node {
    Dir(SystemTime),
    File(Bytes, SystemTime),
    Broken(String),
}

/// An in-memory backend.
#[derive(Debug)]
pub struct MemoryBackend {
    nodes: Mutex<BTreeMap<String, Node>>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_owned(), Node::Dir(SystemTime::UNIX_EPOCH));
        Self {
            nodes: Mutex::new(nodes),
        }
    }
}

impl MemoryBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        Ok(match self.lock().get(path) {
            None => None,
            Some(Node::Dir(mtime)) => Some(Entry {
                is_dir: true,
                size: 0,
                mtime: *mtime,
            }),
            Some(Node::File(data, mtime)) => Some(Entry {
                is_dir: false,
                size: data.len() as u64,
                mtime: *mtime,
            }),
            Some(Node::Broken(why)) => return Err(ConnectorError::other(format!("{path}: {why}"))),
        })
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<Child>> {
        let nodes = self.lock();
        match nodes.get(path) {
            Some(Node::Dir(_)) => {}
            Some(Node::Broken(why)) => return Err(ConnectorError::other(format!("{path}: {why}"))),
            Some(Node::File(..)) => {
                return Err(ConnectorError::invalid_input(format!(
                    "{path}: not a directory"
                )));
            }
            None => return Err(not_found(path)),
        }
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        let mut children = Vec::new();
        for (key, node) in nodes.range(prefix.clone()..) {
            let Some(name) = key.strip_prefix(&prefix) else {
                break;
            };
            if name.is_empty() || name.contains('/') {
                continue;
            }
            let entry = match node {
                Node::Dir(mtime) => Ok(Entry {
                    is_dir: true,
                    size: 0,
                    mtime: *mtime,
                }),
                Node::File(data, mtime) => Ok(Entry {
                    is_dir: false,
                    size: data.len() as u64,
                    mtime: *mtime,
                }),
                Node::Broken(why) => Err(why.clone()),
            };
            children.push((name.to_owned(), entry));
        }
        Ok(children)
    }

    async fn read(&self, path: &str, offset: u64, length: Option<u64>) -> Result<ByteStream> {
        let data = match self.lock().get(path) {
            Some(Node::File(data, _)) => data.clone(),
            Some(Node::Broken(why)) => return Err(ConnectorError::other(format!("{path}: {why}"))),
            Some(Node::Dir(_)) => {
                return Err(ConnectorError::invalid_input(format!(
                    "{path}: is a directory"
                )));
            }
            None => return Err(not_found(path)),
        };
        let start = (offset.min(data.len() as u64)) as usize;
        let end = length.map_or(data.len(), |l| {
            (start as u64 + l).min(data.len() as u64) as usize
        });
        let slice = data.slice(start..end);
        // Hand out moderate chunks, like a network body would.
        let chunks: Vec<Result<Bytes>> = (0..slice.len())
            .step_by(256 * 1024)
            .map(|i| Ok(slice.slice(i..(i + 256 * 1024).min(slice.len()))))
            .collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn write(&self, path: &str, data: ByteStream, mtime: Option<SystemTime>) -> Result<u64> {
        match self.lock().get(parent_of(path)) {
            Some(Node::Dir(_)) => {}
            _ => {
                return Err(ConnectorError::not_found(format!(
                    "{path}: parent directory missing"
                )));
            }
        }
        let buf = data
            .try_fold(BytesMut::new(), |mut buf, chunk| async move {
                buf.extend_from_slice(&chunk);
                Ok(buf)
            })
            .await?;
        let mut nodes = self.lock();
        if let Some(Node::Dir(_)) = nodes.get(path) {
            return Err(ConnectorError::invalid_input(format!(
                "{path}: is a directory"
            )));
        }
        let len = buf.len() as u64;
        nodes.insert(
            path.to_owned(),
            Node::File(buf.freeze(), mtime.unwrap_or_else(SystemTime::now)),
        );
        Ok(len)
    }

    async fn mkdir_all(&self, path: &str, mtime: Option<SystemTime>) -> Result<()> {
        let mut nodes = self.lock();
        let mut current = String::new();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for (i, segment) in segments.iter().enumerate() {
            current.push('/');
            current.push_str(segment);
            let last = i + 1 == segments.len();
            match nodes.get(&current) {
                Some(Node::Dir(_)) => {}
                Some(_) => {
                    return Err(ConnectorError::invalid_input(format!(
                        "{current}: not a directory"
                    )));
                }
                None => {
                    nodes.insert(current.clone(), Node::Dir(SystemTime::now()));
                }
            }
            if last && let Some(t) = mtime {
                nodes.insert(current.clone(), Node::Dir(t));
            }
        }
        if segments.is_empty()
            && let Some(t) = mtime
        {
            nodes.insert("/".to_owned(), Node::Dir(t));
        }
        Ok(())
    }

    async fn remove(&self, path: &str) -> Result<()> {
        let mut nodes = self.lock();
        let prefix = format!("{path}/");
        if nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
        {
            return Err(ConnectorError::invalid_input(format!(
                "{path}: directory not empty"
            )));
        }
        nodes
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    async fn break_entry(&self, path: &str) -> Result<bool> {
        self.lock().insert(
            path.to_owned(),
            Node::Broken("permission denied (test fixture)".to_owned()),
        );
        Ok(true)
    }
}

/// A backend on a local directory (used by the reference plugin binary, so tests can look in).
#[derive(Debug, Clone)]
pub struct DirBackend {
    base: PathBuf,
}

/// Prefix of in-progress writes; never listed.
const TEMP_PREFIX: &str = ".kloset-tmp-";

impl DirBackend {
    /// A backend rooted at `base` (which must exist).
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    fn local(&self, path: &str) -> Result<PathBuf> {
        let segments = crate::safe_relative_path(path)?;
        let mut local = self.base.clone();
        local.extend(segments);
        Ok(local)
    }
}

fn io_error(path: &str, err: std::io::Error) -> ConnectorError {
    ConnectorError::from(err).context(path)
}

#[async_trait]
impl Backend for DirBackend {
    async fn stat(&self, path: &str) -> Result<Option<Entry>> {
        match tokio::fs::metadata(self.local(path)?).await {
            Ok(meta) => Ok(Some(Entry {
                is_dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                mtime: meta.modified().map_err(|e| io_error(path, e))?,
            })),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink is there but unreadable.
                match tokio::fs::symlink_metadata(self.local(path)?).await {
                    Ok(_) => Err(ConnectorError::other(format!("{path}: dangling link"))),
                    Err(_) => Ok(None),
                }
            }
            Err(err) => Err(io_error(path, err)),
        }
    }

    async fn list_dir(&self, path: &str) -> Result<Vec<Child>> {
        let mut dir = tokio::fs::read_dir(self.local(path)?)
            .await
            .map_err(|e| io_error(path, e))?;
        let mut children = Vec::new();
        while let Some(item) = dir.next_entry().await.map_err(|e| io_error(path, e))? {
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let entry = match tokio::fs::metadata(item.path())
                .await
                .and_then(|m| Ok((m.is_dir(), m.len(), m.modified()?)))
            {
                Ok((is_dir, len, mtime)) => Ok(Entry {
                    is_dir,
                    size: if is_dir { 0 } else { len },
                    mtime,
                }),
                Err(err) => Err(err.to_string()),
            };
            children.push((name, entry));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(children)
    }

    async fn read(&self, path: &str, offset: u64, length: Option<u64>) -> Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.local(path)?)
            .await
            .map_err(|e| io_error(path, e))?;
        if file
            .metadata()
            .await
            .map_err(|e| io_error(path, e))?
            .is_dir()
        {
            return Err(ConnectorError::invalid_input(format!(
                "{path}: is a directory"
            )));
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error(path, e))?;
        let reader = file.take(length.unwrap_or(u64::MAX));
        let owned = path.to_owned();
        Ok(
            tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)
                .map(move |r| r.map_err(|e| io_error(&owned, e)))
                .boxed(),
        )
    }

    async fn write(
        &self,
        path: &str,
        mut data: ByteStream,
        mtime: Option<SystemTime>,
    ) -> Result<u64> {
        let target = self.local(path)?;
        let parent = target
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.base.clone());
        let temp = parent.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| io_error(path, e))?;
        let mut written = 0u64;
        let outcome: Result<()> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error(path, e))?;
                written += chunk.len() as u64;
            }
            file.flush().await.map_err(|e| io_error(path, e))?;
            let std_file = file.into_std().await;
            if let Some(t) = mtime {
                std_file.set_modified(t).map_err(|e| io_error(path, e))?;
            }
            drop(std_file);
            tokio::fs::rename(&temp, &target)
                .await
                .map_err(|e| io_error(path, e))
        }
        .await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        outcome.map(|()| written)
    }

    async fn mkdir_all(&self, path: &str, mtime: Option<SystemTime>) -> Result<()> {
        let local = self.local(path)?;
        tokio::fs::create_dir_all(&local)
            .await
            .map_err(|e| io_error(path, e))?;
        if let Some(t) = mtime {
            let dir = std::fs::File::open(&local).map_err(|e| io_error(path, e))?;
            dir.set_modified(t).map_err(|e| io_error(path, e))?;
        }
        Ok(())
    }

    async fn remove(&self, path: &str) -> Result<()> {
        let local = self.local(path)?;
        let meta = tokio::fs::symlink_metadata(&local)
            .await
            .map_err(|e| io_error(path, e))?;
        if meta.is_dir() {
            tokio::fs::remove_dir(&local).await
        } else {
            tokio::fs::remove_file(&local).await
        }
        .map_err(|e| io_error(path, e))
    }

    async fn break_entry(&self, path: &str) -> Result<bool> {
        // A dangling symlink: listed, but its metadata and content cannot be read.
        let local = self.local(path)?;
        let _ = tokio::fs::remove_file(&local).await;
        tokio::fs::symlink(self.base.join(".kloset-missing-target"), &local)
            .await
            .map_err(|e| io_error(path, e))?;
        Ok(true)
    }
}
