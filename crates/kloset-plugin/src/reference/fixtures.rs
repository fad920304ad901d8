//! Suite fixtures for the reference connectors: in-process, over an in-process duplex pipe,
//! and over stdin/stdout of a plugin binary (e.g. `kloset-reference-plugin`, whose argv[1] is
//! importer|exporter|store and whose backend is then a temporary directory), in protocol v2 or
//! v1.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Backend, DirBackend, MemoryBackend, ReferenceExporter, ReferenceImporter, ReferenceStore,
    parse_location,
};
use crate::error::{ConnectorError, Result};
use crate::host::{InitArgs, RemoteExporter, RemoteImporter, RemoteStore};
use crate::suites::{
    Connections, ExporterCapabilities, ExporterFixture, ImporterFixture, ReadBackEntry,
    StoreFixture, TreeEntry, TreeKind, pattern_stream, read_all,
};
use crate::{ExportPipeline, Exporter, Importer, InitContext, Protocol, Resource, Store};

pub use crate::suites::Transport;

/// Names the reference plugin in release errors.
const PLUGIN_NAME: &str = "kloset-reference-plugin";

/// A backend for one fixture, with the directory behind it for the binary.
#[derive(Debug)]
pub struct Site {
    /// The backend the fixture hooks use.
    pub backend: Arc<dyn Backend>,
    /// The directory behind it, for a plugin binary.
    pub dir: Option<tempfile::TempDir>,
}

impl Site {
    /// A memory backend, or a temporary directory for a binary.
    pub fn new(transport: &Transport) -> std::io::Result<Self> {
        Ok(match transport {
            Transport::Binary(_) => {
                let dir = tempfile::tempdir()?;
                Site {
                    backend: Arc::new(DirBackend::new(dir.path())),
                    dir: Some(dir),
                }
            }
            _ => Site {
                backend: Arc::new(MemoryBackend::default()),
                dir: None,
            },
        })
    }

    /// `Init` arguments for a connector rooted at `root`, plus `extra` config pairs.
    pub fn args(&self, root: &str, extra: &[(&str, &str)]) -> InitArgs {
        let mut config = vec![("location".to_owned(), format!("ref://{root}"))];
        if let Some(dir) = &self.dir {
            config.push(("backend_dir".to_owned(), dir.path().display().to_string()));
        }
        config.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        InitArgs::new("ref", config)
    }
}

/// Removes `path` and everything below it.
pub async fn remove_tree(backend: &dyn Backend, path: &str) -> Result<()> {
    let Some(entry) = backend.stat(path).await.ok().flatten() else {
        // Missing, or a broken entry: try a plain remove.
        let _ = backend.remove(path).await;
        return Ok(());
    };
    if entry.is_dir {
        for (name, _) in backend.list_dir(path).await? {
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            Box::pin(remove_tree(backend, &child)).await?;
        }
    }
    if path != "/" {
        backend.remove(path).await?;
    }
    Ok(())
}

/// All entries under `path` (relative paths), files with content.
pub async fn walk(
    backend: &dyn Backend,
    path: &str,
    prefix: &str,
    out: &mut Vec<ReadBackEntry>,
) -> Result<()> {
    for (name, entry) in backend.list_dir(path).await? {
        let child = if path == "/" {
            format!("/{name}")
        } else {
            format!("{path}/{name}")
        };
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let entry = entry.map_err(ConnectorError::other)?;
        if entry.is_dir {
            out.push(ReadBackEntry {
                path: rel.clone(),
                content: None,
                mtime: entry.mtime,
            });
            Box::pin(walk(backend, &child, &rel, out)).await?;
        } else {
            let content = read_all(backend.read(&child, 0, None).await?).await?;
            out.push(ReadBackEntry {
                path: rel,
                content: Some(content),
                mtime: entry.mtime,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- store

/// The store suite's fixture for the reference store.
#[derive(Debug)]
pub struct StoreSite {
    site: Site,
    connections: Connections<RemoteStore>,
}

const STORE_ROOT: &str = "/klosets/main";

impl StoreSite {
    /// A fixture with a fresh backend.
    pub fn new(transport: Transport) -> std::io::Result<Self> {
        Ok(Self {
            site: Site::new(&transport)?,
            connections: Connections::new(PLUGIN_NAME, transport).with_binary_args(["store"]),
        })
    }

    /// The same fixture over `protocol` (gRPC transports only).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.connections = self.connections.with_protocol(protocol);
        self
    }
}

#[async_trait]
impl StoreFixture for StoreSite {
    async fn connect(&self) -> Result<Arc<dyn Store>> {
        let backend = self.site.backend.clone();
        self.connections
            .connect_store(&self.site.args(STORE_ROOT, &[]), move |ctx: InitContext| {
                let backend = backend.clone();
                async move {
                    let location = ctx.config.get("location").ok_or_else(|| {
                        ConnectorError::invalid_input("missing config key \"location\"")
                    })?;
                    let root = parse_location(location)?;
                    Ok(ReferenceStore::new(backend, &root))
                }
            })
            .await
    }

    async fn release(&self, store: Arc<dyn Store>) -> Result<()> {
        self.connections.release(&store).await
    }

    async fn add_junk(&self, resource: Resource, name: &str) -> Result<()> {
        let folder = format!("{STORE_ROOT}/{}", resource.folder());
        self.site.backend.mkdir_all(&folder, None).await?;
        let data = pattern_stream(1, 10);
        self.site
            .backend
            .write(&format!("{folder}/{name}"), data, None)
            .await
            .map(|_| ())
    }

    async fn remove_junk(&self, resource: Resource, name: &str) -> Result<()> {
        self.site
            .backend
            .remove(&format!("{STORE_ROOT}/{}/{name}", resource.folder()))
            .await
    }
}

// ---------------------------------------------------------------- importer

const SOURCE_ROOT: &str = "/data/src";

/// The importer suite's fixture for the reference importer.
#[derive(Debug)]
pub struct ImporterSite {
    site: Site,
    connections: Connections<RemoteImporter>,
}

impl ImporterSite {
    /// A fixture with a fresh backend.
    pub fn new(transport: Transport) -> std::io::Result<Self> {
        Ok(Self {
            site: Site::new(&transport)?,
            connections: Connections::new(PLUGIN_NAME, transport).with_binary_args(["importer"]),
        })
    }

    /// The same fixture over `protocol` (gRPC transports only).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.connections = self.connections.with_protocol(protocol);
        self
    }

    /// The `Init` arguments of this fixture's importer.
    pub fn args(&self) -> InitArgs {
        self.site.args(SOURCE_ROOT, &[])
    }
}

#[async_trait]
impl ImporterFixture for ImporterSite {
    async fn write_tree(&self, tree: &[TreeEntry]) -> Result<()> {
        let backend = &*self.site.backend;
        remove_tree(backend, SOURCE_ROOT).await?;
        backend.mkdir_all(SOURCE_ROOT, None).await?;
        for entry in tree {
            let path = format!("{SOURCE_ROOT}/{}", entry.path);
            match entry.kind {
                TreeKind::Dir => backend.mkdir_all(&path, None).await?,
                TreeKind::File { seed, len } => {
                    backend
                        .write(&path, pattern_stream(seed, len), Some(entry.mtime))
                        .await?;
                }
            }
        }
        // Directory times last, deepest first: writing children changes them.
        for entry in tree.iter().rev().filter(|e| e.kind == TreeKind::Dir) {
            backend
                .mkdir_all(&format!("{SOURCE_ROOT}/{}", entry.path), Some(entry.mtime))
                .await?;
        }
        Ok(())
    }

    async fn connect(&self) -> Result<Arc<dyn Importer>> {
        let backend = self.site.backend.clone();
        self.connections
            .connect_importer(&self.args(), move |_ctx| {
                let backend = backend.clone();
                async move { Ok(ReferenceImporter::new(backend, SOURCE_ROOT)) }
            })
            .await
    }

    async fn release(&self, importer: Arc<dyn Importer>) -> Result<()> {
        self.connections.release(&importer).await
    }

    async fn break_entry(&self, path: &str) -> Result<bool> {
        self.site
            .backend
            .break_entry(&format!("{SOURCE_ROOT}/{path}"))
            .await
    }
}

// ---------------------------------------------------------------- exporter

const DEST_ROOT: &str = "/restore/dest";

/// The exporter suite's fixture for the reference exporter.
#[derive(Debug)]
pub struct ExporterSite {
    site: Site,
    /// Pipelining limits of the duplex server.
    pub pipeline: ExportPipeline,
    connections: Connections<RemoteExporter>,
}

impl ExporterSite {
    /// A fixture with a fresh backend.
    pub fn new(transport: Transport) -> std::io::Result<Self> {
        Ok(Self {
            site: Site::new(&transport)?,
            pipeline: ExportPipeline::default(),
            connections: Connections::new(PLUGIN_NAME, transport).with_binary_args(["exporter"]),
        })
    }

    /// The same fixture over `protocol` (gRPC transports only).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.connections = self.connections.with_protocol(protocol);
        self
    }
}

#[async_trait]
impl ExporterFixture for ExporterSite {
    async fn clear(&self) -> Result<()> {
        remove_tree(&*self.site.backend, "/").await
    }

    async fn connect(&self) -> Result<Arc<dyn Exporter>> {
        let backend = self.site.backend.clone();
        self.connections
            .connect_exporter(
                &self.site.args(DEST_ROOT, &[("concurrency", "4")]),
                self.pipeline,
                move |_ctx| {
                    let backend = backend.clone();
                    async move { Ok(ReferenceExporter::new(backend, DEST_ROOT, 4)) }
                },
            )
            .await
    }

    async fn release(&self, exporter: Arc<dyn Exporter>) -> Result<()> {
        self.connections.release(&exporter).await
    }

    async fn read_tree(&self) -> Result<Vec<ReadBackEntry>> {
        let mut out = Vec::new();
        if self.site.backend.stat(DEST_ROOT).await?.is_some() {
            walk(&*self.site.backend, DEST_ROOT, "", &mut out).await?;
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn outside_root(&self) -> Result<Vec<String>> {
        let mut all = Vec::new();
        walk(&*self.site.backend, "/", "", &mut all).await?;
        let inside = DEST_ROOT.trim_start_matches('/');
        let allowed = |p: &str| {
            inside.starts_with(p) && (inside.len() == p.len() || inside.as_bytes()[p.len()] == b'/')
        };
        Ok(all
            .into_iter()
            .map(|e| e.path)
            .filter(|p| !(allowed(p) || p.starts_with(&format!("{inside}/"))))
            .collect())
    }

    fn capabilities(&self) -> ExporterCapabilities {
        ExporterCapabilities::default().over(self.connections.protocol())
    }

    async fn make_unwritable(&self, path: &str) -> Result<bool> {
        // A directory squatting the file's name makes the write fail.
        self.site
            .backend
            .mkdir_all(&format!("{DEST_ROOT}/{path}"), None)
            .await?;
        Ok(true)
    }
}
