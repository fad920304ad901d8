//! In-memory (or local-directory) reference connectors for all three roles.
//!
//! They show the intended use of the traits and pass every suite, in-process and over the wire
//! (through the `kloset-reference-plugin` binary). Config keys: `location` = `ref:///path`
//! (the root inside the backend), `backend_dir` = a local directory to use as the backend
//! (otherwise a private in-memory one), `concurrency` (exporter calls in flight, default 4).

mod backend;
pub mod fixtures;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub use backend::{Backend, Child, DirBackend, Entry, MemoryBackend};

use crate::error::{ConnectorError, ConnectorErrorKind, Result};
use crate::types::{
    ByteRange, FileInfo, InitContext, LocationInfo, Mac, ObjectKey, Record, Resource,
};
use crate::{ByteStream, Exporter, Importer, RecordStream, Store, safe_relative_path};

/// The connector type name of the reference connectors.
pub const REFERENCE_TYPE: &str = "reference";

/// Parses `ref:///a/b` (or `ref://a/b`, `ref:a`) into the clean absolute path `/a/b`.
pub fn parse_location(location: &str) -> Result<String> {
    let rest = location
        .split_once(':')
        .map(|(_, rest)| rest)
        .ok_or_else(|| {
            ConnectorError::invalid_input(format!("location {location:?} has no scheme"))
        })?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let path = format!("/{}", segments.join("/"));
    safe_relative_path(&path).map_err(|e| e.context(format_args!("location {location:?}")))?;
    Ok(path)
}

/// Builds a backend and root from an `Init` context (used by the reference plugin binary).
pub fn backend_from_config(ctx: &InitContext) -> Result<(Arc<dyn Backend>, String)> {
    let location = ctx
        .config
        .get("location")
        .ok_or_else(|| ConnectorError::invalid_input("missing config key \"location\""))?;
    let root = parse_location(location)?;
    let backend: Arc<dyn Backend> = match ctx.config.get("backend_dir") {
        Some(dir) => {
            if !std::path::Path::new(dir).is_dir() {
                return Err(ConnectorError::invalid_input(format!(
                    "backend_dir {dir:?} is not a directory"
                )));
            }
            Arc::new(DirBackend::new(dir))
        }
        None => Arc::new(MemoryBackend::default()),
    };
    Ok((backend, root))
}

fn join(root: &str, segments: &[String]) -> String {
    let mut path = root.trim_end_matches('/').to_owned();
    for s in segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() {
        "/".to_owned()
    } else {
        path
    }
}

fn location(root: &str) -> LocationInfo {
    LocationInfo {
        origin: "localhost".to_owned(),
        r#type: REFERENCE_TYPE.to_owned(),
        root: root.to_owned(),
        flags: 0,
    }
}

fn base_name(path: &str) -> String {
    if path == "/" {
        "/".to_owned()
    } else {
        path.rsplit('/').next().unwrap_or_default().to_owned()
    }
}

/// The reference kloset store: flat layout (`CONFIG`, `packfiles/`, `states/`, `locks/`).
#[derive(Debug)]
pub struct ReferenceStore {
    backend: Arc<dyn Backend>,
    root: String,
}

impl ReferenceStore {
    /// A store whose kloset lives at `root` in `backend`.
    pub fn new(backend: Arc<dyn Backend>, root: &str) -> Self {
        Self {
            backend,
            root: root.to_owned(),
        }
    }
    fn config_path(&self) -> String {
        join(&self.root, &["CONFIG".to_owned()])
    }
    fn folder(&self, resource: Resource) -> String {
        join(&self.root, &[resource.folder().to_owned()])
    }
    fn object(&self, key: ObjectKey) -> String {
        join(
            &self.root,
            &[key.resource.folder().to_owned(), key.mac.to_hex()],
        )
    }
    /// The flat name, else the 2-hex bucket name if that exists (read-tolerant, §9).
    async fn existing_object(&self, key: ObjectKey) -> Result<(String, Entry)> {
        let flat = self.object(key);
        if let Some(entry) = self.backend.stat(&flat).await? {
            return Ok((flat, entry));
        }
        let hex = key.mac.to_hex();
        let bucket = join(
            &self.root,
            &[key.resource.folder().to_owned(), hex[..2].to_owned(), hex],
        );
        match self.backend.stat(&bucket).await? {
            Some(entry) => Ok((bucket, entry)),
            None => Err(ConnectorError::not_found(format!("{key} not found"))),
        }
    }
}

#[async_trait]
impl Store for ReferenceStore {
    fn location(&self) -> LocationInfo {
        location(&self.root)
    }

    async fn create(&self, config: Bytes) -> Result<()> {
        if self.backend.stat(&self.config_path()).await?.is_some() {
            return Err(ConnectorError::already_exists(format!(
                "kloset already initialized at {}",
                self.root
            )));
        }
        for resource in Resource::ALL {
            self.backend.mkdir_all(&self.folder(resource), None).await?;
        }
        let data = futures::stream::once(async move { Ok(config) }).boxed();
        self.backend.write(&self.config_path(), data, None).await?;
        Ok(())
    }

    async fn open(&self) -> Result<Bytes> {
        let mut data = match self.backend.read(&self.config_path(), 0, None).await {
            Err(err) if err.kind() == ConnectorErrorKind::NotFound => {
                return Err(ConnectorError::not_found(format!(
                    "no kloset found at {}",
                    self.root
                )));
            }
            other => other?,
        };
        let mut config = bytes::BytesMut::new();
        while let Some(chunk) = data.next().await {
            config.extend_from_slice(&chunk?);
        }
        Ok(config.freeze())
    }

    async fn ping(&self) -> Result<()> {
        self.backend.stat("/").await.map(|_| ())
    }

    async fn list(&self, resource: Resource) -> Result<Vec<Mac>> {
        let folder = self.folder(resource);
        let children = match self.backend.list_dir(&folder).await {
            Err(err) if err.kind() == ConnectorErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut macs = std::collections::BTreeSet::new();
        for (name, entry) in children {
            match entry {
                Ok(e) if !e.is_dir => macs.extend(Mac::from_name(&name)),
                Ok(_)
                    if name.len() == 2
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
                {
                    let bucket = join(&folder, &[name]);
                    for (inner, e) in self.backend.list_dir(&bucket).await? {
                        if e.is_ok_and(|e| !e.is_dir) {
                            macs.extend(Mac::from_name(&inner));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(macs.into_iter().collect())
    }

    async fn put(&self, key: ObjectKey, data: ByteStream) -> Result<u64> {
        self.backend.write(&self.object(key), data, None).await
    }

    async fn get(&self, key: ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        if range.is_some_and(|r| r.length == 0) {
            return Ok(futures::stream::empty().boxed());
        }
        let (path, entry) = self.existing_object(key).await?;
        match range {
            None => self.backend.read(&path, 0, None).await,
            Some(r) if r.offset >= entry.size => {
                Err(ConnectorError::range_not_satisfiable(format!(
                    "range offset {} is past the end of {key} ({} bytes)",
                    r.offset, entry.size
                )))
            }
            Some(r) => {
                self.backend
                    .read(&path, r.offset, Some(u64::from(r.length)))
                    .await
            }
        }
    }

    async fn delete(&self, key: ObjectKey) -> Result<()> {
        match self.existing_object(key).await {
            Ok((path, _)) => self.backend.remove(&path).await,
            Err(err) if err.kind() == ConnectorErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }
}

/// The reference importer: lists the tree under its root, parents first.
#[derive(Debug)]
pub struct ReferenceImporter {
    backend: Arc<dyn Backend>,
    root: String,
}

/// Permissions of imported files and directories (fixed, like the Koofr connectors).
const FILE_PERM: u32 = 0o600;
const DIR_PERM: u32 = 0o700;

impl ReferenceImporter {
    /// An importer of the tree at `root` in `backend`.
    pub fn new(backend: Arc<dyn Backend>, root: &str) -> Self {
        Self {
            backend,
            root: root.to_owned(),
        }
    }

    fn record(path: &str, entry: &Entry) -> Record {
        if entry.is_dir {
            Record::directory(
                path,
                FileInfo::directory(base_name(path), DIR_PERM, entry.mtime),
            )
        } else {
            Record::file(
                path,
                FileInfo::file(base_name(path), entry.size as i64, FILE_PERM, entry.mtime),
            )
        }
    }

    async fn walk(backend: Arc<dyn Backend>, root: String, tx: mpsc::Sender<Result<Record>>) {
        let root_entry = match backend.stat(&root).await {
            Ok(Some(entry)) if entry.is_dir => entry,
            Ok(_) => {
                let _ = tx
                    .send(Err(ConnectorError::not_found(format!(
                        "{root}: no such directory"
                    ))))
                    .await;
                return;
            }
            Err(err) => {
                let _ = tx.send(Err(err)).await;
                return;
            }
        };
        // Ancestors of the root first, as the filesystem importer does (§5.4).
        let mut ancestors = Vec::new();
        let mut current = root.as_str();
        while current != "/" {
            current = match current.rfind('/') {
                Some(0) => "/",
                Some(i) => &current[..i],
                None => break,
            };
            ancestors.push(current.to_owned());
        }
        for ancestor in ancestors.into_iter().rev() {
            let record = match backend.stat(&ancestor).await {
                Ok(Some(entry)) => Self::record(&ancestor, &entry),
                Ok(None) => continue,
                Err(err) => Record::error(&ancestor, err.message()),
            };
            if tx.send(Ok(record)).await.is_err() {
                return;
            }
        }
        if tx.send(Ok(Self::record(&root, &root_entry))).await.is_err() {
            return;
        }
        // Depth-first with an explicit stack: memory grows with depth × fan-out, not tree size.
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let children = match backend.list_dir(&dir).await {
                Ok(children) => children,
                Err(err) => {
                    if tx
                        .send(Ok(Record::error(&dir, err.message())))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            let mut subdirs = Vec::new();
            for (name, entry) in children {
                let path = join(&dir, &[name]);
                let record = match entry {
                    Ok(entry) => {
                        if entry.is_dir {
                            subdirs.push(path.clone());
                        }
                        Self::record(&path, &entry)
                    }
                    Err(why) => Record::error(&path, why),
                };
                if tx.send(Ok(record)).await.is_err() {
                    return;
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
    }
}

#[async_trait]
impl Importer for ReferenceImporter {
    fn location(&self) -> LocationInfo {
        location(&self.root)
    }

    async fn ping(&self) -> Result<()> {
        self.backend.stat("/").await.map(|_| ())
    }

    async fn scan(&self) -> Result<RecordStream> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(Self::walk(self.backend.clone(), self.root.clone(), tx));
        Ok(ReceiverStream::new(rx).boxed())
    }

    async fn open(&self, pathname: &str) -> Result<ByteStream> {
        let under_root = pathname == self.root
            || pathname.starts_with(&format!("{}/", self.root.trim_end_matches('/')));
        if !under_root || safe_relative_path(pathname).is_err() {
            return Err(ConnectorError::not_found(format!(
                "{pathname}: not under {}",
                self.root
            )));
        }
        self.backend.read(pathname, 0, None).await
    }
}

/// The reference exporter: restores under its root, refusing hostile pathnames.
#[derive(Debug)]
pub struct ReferenceExporter {
    backend: Arc<dyn Backend>,
    root: String,
    concurrency: usize,
}

impl ReferenceExporter {
    /// An exporter into `root` of `backend`, allowing `concurrency` calls in flight.
    pub fn new(backend: Arc<dyn Backend>, root: &str, concurrency: usize) -> Self {
        Self {
            backend,
            root: root.to_owned(),
            concurrency: concurrency.max(1),
        }
    }
    fn target(&self, pathname: &str) -> Result<String> {
        Ok(join(&self.root, &safe_relative_path(pathname)?))
    }
}

#[async_trait]
impl Exporter for ReferenceExporter {
    fn location(&self) -> LocationInfo {
        location(&self.root)
    }

    async fn ping(&self) -> Result<()> {
        self.backend.stat("/").await.map(|_| ())
    }

    fn max_in_flight(&self) -> usize {
        self.concurrency
    }

    async fn create_directory(&self, pathname: &str, info: &FileInfo) -> Result<()> {
        let target = self.target(pathname)?;
        self.backend.mkdir_all(&target, Some(info.mod_time)).await
    }

    async fn store_file(&self, pathname: &str, info: &FileInfo, content: ByteStream) -> Result<()> {
        let target = self.target(pathname)?;
        let mtime: SystemTime = info.mod_time;
        self.backend
            .write(&target, content, Some(mtime))
            .await
            .map(|_| ())
    }
}
