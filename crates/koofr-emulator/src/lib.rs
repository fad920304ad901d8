//! An offline emulator of the Koofr REST API, with fault injection, for tests, benchmarks and the demo.
//!
//! Start one in-process with [`Emulator::start`], point a client at [`Emulator::endpoint`] with
//! HTTP Basic auth ([`Emulator::email`], [`Emulator::password`]), seed and inspect files on the
//! primary mount synchronously, read the request log and script faults via [`Emulator::faults`].
//! See the crate README for the differences from the real service.

mod body;
mod control;
mod endpoint;
mod faults;
mod handlers;
pub mod paths;
mod response;
mod server;
mod state;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

pub use endpoint::Endpoint;
pub use faults::{FaultAction, FaultParseError, FaultRule, Faults};

use state::Shared;
use store::{Blob, DiskBlob, FileData};

/// How to start an emulator. `Debug` redacts the password.
#[derive(Clone)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// Account e-mail for Basic auth and `/token`.
    pub email: String,
    /// Application password.
    pub password: String,
    /// None = file contents in memory; Some = blob files in this directory.
    pub data_dir: Option<PathBuf>,
    /// Added to every request.
    pub latency: Duration,
    /// Seeds every random choice (ids, failure rate, shuffle).
    pub seed: u64,
    /// Account quota in bytes.
    pub quota_bytes: u64,
    /// Reject names outside the BMP (emoji) with 400 "Invalid name".
    pub reject_non_bmp: bool,
    /// OAuth2 access-token lifetime.
    pub token_ttl: Duration,
    /// Serve the control API under `/_emulator/` (request log, faults, hooks over HTTP).
    pub control_api: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            email: "me@example.com".into(),
            password: "APP-PASSWORD".into(),
            data_dir: None,
            latency: Duration::ZERO,
            seed: 0,
            quota_bytes: 10 * 1024 * 1024 * 1024,
            reject_non_bmp: true,
            token_ttl: Duration::from_secs(3600),
            control_api: false,
        }
    }
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("data_dir", &self.data_dir)
            .field("latency", &self.latency)
            .field("seed", &self.seed)
            .field("quota_bytes", &self.quota_bytes)
            .field("reject_non_bmp", &self.reject_non_bmp)
            .field("token_ttl", &self.token_ttl)
            .field("control_api", &self.control_api)
            .finish()
    }
}

/// Metadata of a file or folder, as the seeding and inspection API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub modified_ms: i64,
    /// Lowercase hex MD5 (None for folders).
    pub hash: Option<String>,
}

impl NodeInfo {
    fn of(node: &store::Node) -> NodeInfo {
        NodeInfo {
            name: node.name.clone(),
            is_dir: node.is_dir(),
            size: node.size(),
            modified_ms: node.modified,
            hash: node.file().map(|f| f.md5.clone()),
        }
    }
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// "GET", "POST", ...
    pub method: String,
    /// The [`Endpoint::name`] of the request's route, e.g. `"files/put"` (`"unknown"` for a
    /// path that matches no endpoint).
    pub endpoint: &'static str,
    /// The decoded `path` query parameter, if any.
    pub path: Option<String>,
    /// "v2" or "v2.1" ("" for token/oauth and unknown routes).
    pub api_version: &'static str,
    /// Response status; 0 when the connection was dropped without a response.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent so far (final once the body ends).
    pub bytes_out: u64,
}

/// Tokens issued by [`Emulator::issue_oauth_tokens`].
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl fmt::Debug for OAuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthTokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A running emulator; dropping it stops the server and closes its connections.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .field("email", &self.shared.email)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Emulator {
    /// Starts on 127.0.0.1 with an OS-chosen port.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        Emulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<Emulator> {
        let shared = Arc::new(Shared::new(&config)?);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(server::serve(listener, shared.clone(), shutdown_rx));
        tracing::info!(%addr, "koofr emulator listening");
        Ok(Emulator {
            shared,
            addr,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn email(&self) -> &str {
        &self.shared.email
    }

    pub fn password(&self) -> &str {
        &self.shared.password
    }

    pub fn user_id(&self) -> String {
        self.shared.user_id.clone()
    }

    pub fn primary_mount_id(&self) -> String {
        self.shared.lock().mounts[0].id.clone()
    }

    pub fn secondary_mount_id(&self) -> String {
        self.shared.lock().mounts[1].id.clone()
    }

    /// The registered OAuth2 client: (client_id, client_secret).
    pub fn oauth_client(&self) -> (String, String) {
        (
            self.shared.oauth_client_id.clone(),
            self.shared.oauth_client_secret.clone(),
        )
    }

    /// Issues an OAuth2 access and refresh token pair without the browser step (for tests).
    pub fn issue_oauth_tokens(&self) -> OAuthTokens {
        let mut state = self.shared.lock();
        handlers::token::issue_oauth_tokens(&mut state)
    }

    /// Creates `path` and its missing parents on the primary mount.
    ///
    /// # Panics
    /// If the path is invalid or a file is in the way (a test-setup mistake).
    pub fn create_folder_all(&self, path: &str) {
        let segments = seed_path(path);
        assert!(
            self.shared.lock().create_folder_all(0, &segments),
            "create_folder_all({path:?}): a file is in the way"
        );
    }

    /// Stores a file on the primary mount (parents created, an existing file replaced).
    ///
    /// # Panics
    /// If the path is invalid or the root, a folder is in the way, or the data directory
    /// cannot be written (a test-setup mistake).
    pub fn put_file(&self, path: &str, content: impl Into<Bytes>, modified_ms: i64) -> NodeInfo {
        use md5::{Digest, Md5};
        let content: Bytes = content.into();
        let segments = seed_path(path);
        let (name, parent) = segments
            .split_last()
            .unwrap_or_else(|| panic!("put_file({path:?}): the root is not a file"));
        let md5 = hex::encode(Md5::digest(&content));
        let blob = match &self.shared.disk {
            None => Blob::Memory(content.clone()),
            Some(disk) => {
                let blob_path = disk.new_blob_path();
                std::fs::write(&blob_path, &content).unwrap_or_else(|e| {
                    panic!(
                        "put_file({path:?}): cannot write {}: {e}",
                        blob_path.display()
                    )
                });
                Blob::Disk(Arc::new(DiskBlob { path: blob_path }))
            }
        };
        let data = FileData {
            size: content.len() as u64,
            md5,
            blob,
        };
        let mut state = self.shared.lock();
        assert!(
            state.create_folder_all(0, parent),
            "put_file({path:?}): a file is in the way of the parent folder"
        );
        let node = state
            .store_file(0, parent, name, data, modified_ms)
            .unwrap_or_else(|| panic!("put_file({path:?}): a folder is in the way"));
        NodeInfo::of(node)
    }

    /// The content of the file at `path` on the primary mount (None if missing or a folder).
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let segments = paths::normalize_path(path).ok()?;
        let blob = {
            let state = self.shared.lock();
            state.mounts[0].root.get(&segments)?.file()?.blob.clone()
        };
        match blob {
            Blob::Memory(bytes) => Some(bytes.to_vec()),
            Blob::Disk(disk) => std::fs::read(&disk.path).ok(),
        }
    }

    /// Metadata of `path` on the primary mount.
    pub fn stat(&self, path: &str) -> Option<NodeInfo> {
        let segments = paths::normalize_path(path).ok()?;
        let state = self.shared.lock();
        state.mounts[0].root.get(&segments).map(NodeInfo::of)
    }

    /// Everything below the folder `path` on the primary mount (the folder itself excluded),
    /// parents first, as (full path, info). A file path yields just that file; a missing path
    /// yields nothing.
    pub fn walk(&self, path: &str) -> Vec<(String, NodeInfo)> {
        let Ok(segments) = paths::normalize_path(path) else {
            return Vec::new();
        };
        let base = paths::join_path(&segments);
        let state = self.shared.lock();
        let Some(node) = state.mounts[0].root.get(&segments) else {
            return Vec::new();
        };
        if !node.is_dir() {
            return vec![(base, NodeInfo::of(node))];
        }
        state::walk_tree(node, &base, None)
            .into_iter()
            .map(|(p, n)| (p, NodeInfo::of(n)))
            .collect()
    }

    /// Removes `path` (recursively) from the primary mount; false if it did not exist.
    pub fn remove(&self, path: &str) -> bool {
        let Ok(segments) = paths::normalize_path(path) else {
            return false;
        };
        self.shared.lock().remove_node(0, &segments).is_some()
    }

    /// A snapshot of the request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .lock()
            .log
            .iter()
            .map(|e| e.snapshot())
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// A snapshot of the request log, oldest first, emptying it at the same moment (so that no
    /// request arriving meanwhile is lost). A request still being answered is snapshotted as it
    /// stands and does not show its end.
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        let mut state = self.shared.lock();
        let records = state.log.iter().map(|e| e.snapshot()).collect();
        state.log.clear();
        records
    }

    /// A handle to script faults and hooks.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }
}

fn seed_path(path: &str) -> Vec<String> {
    paths::normalize_path(path).unwrap_or_else(|e| panic!("invalid Koofr path {path:?}: {e:?}"))
}
