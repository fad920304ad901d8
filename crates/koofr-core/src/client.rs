//! The Koofr client: mount selection, metadata operations, listings and folder management.
//! Transfers (download, upload) live in `download.rs` and `upload.rs`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::OnceCell;

use crate::config::{ApiVersion, KoofrConfig, MountSelector};
use crate::error::{Error, ErrorKind, Result};
use crate::path::{KoofrPath, encode_component, is_key_within, validate_name};
use crate::retry::Retry;
use crate::transport::{ByteStream, RequestContext, Transport, body_stream};
use crate::types::{FileInfo, FileList, ListEntry, Mount, MountList, RecursiveItem, User};

pub(crate) const JSON: &str = "application/json";

/// More folders than this in the cache and it starts over (bounds memory on huge trees).
const MAX_CACHED_FOLDERS: usize = 100_000;

/// Longest accepted line of a recursive listing.
const MAX_LISTING_LINE: usize = 4 * 1024 * 1024;

/// Which URL family an endpoint lives in (spec §2.2).
#[derive(Clone, Copy)]
pub(crate) enum Family {
    Api,
    Content,
}

/// A Koofr API client. Cheap to clone (shared state); its `Debug` output holds no secrets.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: KoofrConfig,
    pub(crate) transport: Transport,
    mount_id: OnceCell<String>,
    /// Case keys of folders known to exist.
    folders: Mutex<HashSet<String>>,
    /// One gate per folder being ensured, so concurrent callers of `create_folder_all` on one
    /// client wait for the first instead of racing it (different clients still race, which the
    /// "already exists" handling tolerates).
    folder_gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("transport", &self.inner.transport)
            .field("mount_id", &self.inner.mount_id.get())
            .finish()
    }
}

impl Client {
    /// Builds a client; makes no network request.
    pub fn new(config: KoofrConfig) -> Result<Client> {
        let transport = Transport::new(&config)?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                transport,
                mount_id: OnceCell::new(),
                folders: Mutex::new(HashSet::new()),
                folder_gates: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &KoofrConfig {
        &self.inner.config
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Runs `f` under the configured retry policy.
    pub(crate) async fn with_retry<T, F, Fut>(&self, retryable: bool, f: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.new_retry().run(retryable, f).await
    }

    /// A fresh retry state for one operation under the configured policy.
    pub(crate) fn new_retry(&self) -> Retry {
        Retry::new(self.inner.config.retry())
    }

    /// Runs `attempt(n)` (`n` counts from 1) under the client's retry policy, for a request
    /// that the client itself does not retry because only the caller knows how to make a
    /// repeat safe (e.g. an exclusive upload whose first answer may have been lost).
    pub async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.with_retry(true, attempt).await
    }

    fn api_url(&self, rest: &str) -> String {
        format!(
            "{}/api/{}{rest}",
            self.transport().base(),
            self.inner.config.api_version().as_str()
        )
    }

    /// `…/mounts/{m}/files/{endpoint}?path={path}{extra}`; `extra` starts with `&` when set.
    pub(crate) async fn files_url(
        &self,
        family: Family,
        endpoint: &str,
        path: &KoofrPath,
        extra: &str,
    ) -> Result<String> {
        path.check_supported()?;
        let mount = self.mount_id().await?;
        let prefix = match family {
            Family::Api => "api",
            Family::Content => "content/api",
        };
        Ok(format!(
            "{}/{prefix}/{}/mounts/{}/files/{endpoint}?path={}{extra}",
            self.transport().base(),
            self.inner.config.api_version().as_str(),
            encode_component(&mount),
            encode_component(path.as_str()),
        ))
    }

    /// The id used in URLs for the selected mount: `primary` unless a mount was configured.
    /// A configured name (or a non-UUID value) is resolved once with a mounts listing.
    pub async fn mount_id(&self) -> Result<String> {
        match self.inner.config.mount() {
            MountSelector::Primary => Ok("primary".to_owned()),
            MountSelector::IdOrName(value) if looks_like_uuid(value) => Ok(value.clone()),
            MountSelector::IdOrName(value) => self
                .inner
                .mount_id
                .get_or_try_init(|| async {
                    let mounts = self.mounts().await?;
                    select_mount(&mounts, value).map(|m| m.id.clone())
                })
                .await
                .cloned(),
        }
    }

    async fn get_json<T: for<'de> serde::Deserialize<'de>>(
        &self,
        op: &'static str,
        path: Option<&KoofrPath>,
        url: &str,
    ) -> Result<T> {
        self.get_json_with(op, path, url, &mut self.new_retry())
            .await
    }

    async fn get_json_with<T: for<'de> serde::Deserialize<'de>>(
        &self,
        op: &'static str,
        path: Option<&KoofrPath>,
        url: &str,
        retry: &mut Retry,
    ) -> Result<T> {
        let ctx = RequestContext {
            op,
            path: path.map(KoofrPath::as_str),
            exists_possible: false,
        };
        retry
            .run(true, |_| {
                self.transport()
                    .json(ctx, move |http| Ok(http.get(url).header(ACCEPT, JSON)))
            })
            .await
    }

    /// The current user (a cheap credential check).
    pub async fn user(&self) -> Result<User> {
        self.get_json("get user", None, &self.api_url("/user"))
            .await
    }

    /// All mounts of the user: `GET /api/v2.1/places` on API v2.1, as Koofr's own v2.1 clients
    /// do, else `GET /api/v2/mounts`; the other listing when that one answers 404.
    pub async fn mounts(&self) -> Result<Vec<Mount>> {
        let base = self.transport().base();
        let mounts = format!(
            "{base}/api/{}/mounts",
            self.inner.config.api_version().as_str()
        );
        let places = format!("{base}/api/v2.1/places");
        let (first, second) = match self.inner.config.api_version() {
            ApiVersion::V2_1 => (&places, &mounts),
            ApiVersion::V2 => (&mounts, &places),
        };
        let list: MountList = match self.get_json("list mounts", None, first).await {
            Err(e) if e.is_not_found() => self.get_json("list mounts", None, second).await?,
            other => other?,
        };
        Ok(list.into_mounts())
    }

    /// Details (and quota) of the selected mount, in ONE request: the mount itself, or the
    /// mounts listing when the mount is chosen by name and not resolved yet.
    pub async fn mount_info(&self) -> Result<Mount> {
        if let MountSelector::IdOrName(value) = self.inner.config.mount()
            && !looks_like_uuid(value)
            && self.inner.mount_id.get().is_none()
        {
            let mounts = self.mounts().await?;
            let mount = select_mount(&mounts, value)?.clone();
            let _ = self.inner.mount_id.set(mount.id.clone());
            return Ok(mount);
        }
        let mount = self.mount_id().await?;
        self.get_json(
            "get mount",
            None,
            &self.api_url(&format!("/mounts/{}", encode_component(&mount))),
        )
        .await
    }

    /// Checks the endpoint, the credentials and the selected mount with ONE request (see
    /// [`Client::mount_info`]): an error when any of them is wrong, or when Koofr reports the
    /// mount offline. Connectors call it before work that would otherwise fail item by item.
    pub async fn check_mount(&self) -> Result<Mount> {
        let mount = self.mount_info().await?;
        if mount.online == Some(false) {
            return Err(Error::permanent(
                ErrorKind::DeviceOffline,
                "check mount",
                format!("the mount {:?} is offline", mount.name),
            ));
        }
        Ok(mount)
    }

    /// Metadata of a file or folder.
    pub async fn info(&self, path: &KoofrPath) -> Result<FileInfo> {
        self.info_with(path, &mut self.new_retry()).await
    }

    /// [`Client::info`] as part of an operation that owns `retry`.
    pub(crate) async fn info_with(&self, path: &KoofrPath, retry: &mut Retry) -> Result<FileInfo> {
        let url = self.files_url(Family::Api, "info", path, "").await?;
        self.get_json_with("info", Some(path), &url, retry).await
    }

    /// The direct children of a folder (no pagination: one response).
    pub async fn list(&self, dir: &KoofrPath) -> Result<Vec<FileInfo>> {
        let url = self.files_url(Family::Api, "list", dir, "").await?;
        let list: FileList = self.get_json("list", Some(dir), &url).await?;
        self.remember_folder(dir);
        Ok(list.files)
    }

    /// Streams the whole tree below `dir` (`dir` itself first, parents before children), parsed
    /// line by line as it arrives. A server error line becomes a [`ListEntry::Error`] item and
    /// ends the stream. A connection that breaks mid-listing is resumed: the listing
    /// is requested again and the entries already yielded are skipped (checked by the path of
    /// the last one, so a listing that changed order fails instead of skipping wrongly). The
    /// first request and every resume share ONE retry state, so the whole listing sends at most
    /// the policy's attempts. A mount that refuses recursive listings gives
    /// [`ErrorKind::Unsupported`] before any entry.
    pub async fn list_recursive(
        &self,
        dir: &KoofrPath,
    ) -> Result<BoxStream<'static, Result<ListEntry>>> {
        let mut retry = self.new_retry();
        let first = self.open_listing(dir, &mut retry).await?;
        Ok(resuming_listing(self.clone(), dir.clone(), first, retry))
    }

    /// One `files/listrecursive` request (retried until its response starts).
    async fn open_listing(
        &self,
        dir: &KoofrPath,
        retry: &mut Retry,
    ) -> Result<BoxStream<'static, Result<ListEntry>>> {
        let url = self
            .files_url(Family::Content, "listrecursive", dir, "")
            .await?;
        let ctx = RequestContext {
            op: "list recursively",
            path: Some(dir.as_str()),
            exists_possible: false,
        };
        let url = url.as_str();
        let response = retry
            .run(true, |_| async move {
                self.transport()
                    .send(ctx, None, move |http| {
                        Ok(http.get(url).header(ACCEPT, "application/x-ndjson"))
                    })
                    .await
                    .map_err(|e| {
                        // Some connected external mounts refuse the listing itself with a bare 400.
                        if e.kind() == ErrorKind::InvalidInput && e.code() != Some("InvalidPath") {
                            e.with_kind(ErrorKind::Unsupported)
                        } else {
                            e
                        }
                    })
            })
            .await?;
        let body = body_stream(
            response,
            ctx.op,
            Some(dir.to_string()),
            self.transport().stall(),
        );
        Ok(ndjson_entries(body, dir.clone()))
    }

    /// Creates one folder `name` inside `parent` (which must exist). An existing folder of that
    /// name gives an [`ErrorKind::AlreadyExists`] error.
    pub async fn create_folder(&self, parent: &KoofrPath, name: &str) -> Result<()> {
        let name = validate_name(name)?;
        let child = parent.child(&name)?;
        let url = self.files_url(Family::Api, "folder", parent, "").await?;
        let ctx = RequestContext {
            op: "create folder",
            path: Some(child.as_str()),
            exists_possible: true,
        };
        let body = Bytes::from(serde_json::json!({ "name": name }).to_string());
        let url = url.as_str();
        let child_ref = &child;
        let result = self
            .with_retry(true, |attempt| {
                let body = body.clone();
                async move {
                    let sent = self
                        .transport()
                        .empty(ctx, move |http| {
                            Ok(http.post(url).header(CONTENT_TYPE, JSON).body(body.clone()))
                        })
                        .await;
                    match sent {
                        // A lost answer to an earlier attempt that did create the folder.
                        Err(e) if attempt > 1 && e.kind() == ErrorKind::AlreadyExists => {
                            match self.info(child_ref).await {
                                Ok(info) if info.is_dir() => Ok(()),
                                _ => Err(e),
                            }
                        }
                        other => other,
                    }
                }
            })
            .await;
        if result.is_ok() {
            self.remember_folder(&child);
        }
        result
    }

    /// Makes sure `path` and all its parents exist as folders ("mkdir -p", spec §9.2). Known
    /// folders are cached; "already exists" answers from racing creators count as success once
    /// `info` confirms a folder.
    pub async fn create_folder_all(&self, path: &KoofrPath) -> Result<()> {
        if path.is_root() || self.knows_folder(path) {
            return Ok(());
        }
        let key = path.case_key();
        let gate = {
            let mut gates = self
                .inner
                .folder_gates
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            gates.entry(key.clone()).or_default().clone()
        };
        let result = {
            let _turn = gate.lock().await;
            if self.knows_folder(path) {
                Ok(())
            } else {
                self.ensure_folders(path).await
            }
        };
        let mut gates = self
            .inner
            .folder_gates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if gates.get(&key).is_some_and(|g| Arc::ptr_eq(g, &gate)) && Arc::strong_count(&gate) <= 2 {
            gates.remove(&key);
        }
        result
    }

    async fn ensure_folders(&self, path: &KoofrPath) -> Result<()> {
        match self.info(path).await {
            Ok(info) if info.is_dir() => {
                self.remember_folder(path);
                return Ok(());
            }
            Ok(_) => return Err(not_a_folder(path)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        // Walk from the top; once a level had to be created, its children cannot exist yet.
        let mut creating = false;
        for folder in path.ancestors_from_top() {
            if !creating {
                if self.knows_folder(&folder) {
                    continue;
                }
                if folder != *path {
                    match self.info(&folder).await {
                        Ok(info) if info.is_dir() => {
                            self.remember_folder(&folder);
                            continue;
                        }
                        Ok(_) => return Err(not_a_folder(&folder)),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                creating = true;
            }
            let (parent, name) = folder
                .split()
                .expect("an ancestor below the root has a parent");
            match self.create_folder(&parent, name).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => match self.info(&folder).await {
                    Ok(info) if info.is_dir() => self.remember_folder(&folder),
                    Ok(_) => return Err(not_a_folder(&folder)),
                    Err(_) => return Err(e.with_op("create folders")),
                },
                Err(e) => return Err(e.with_op("create folders")),
            }
        }
        Ok(())
    }

    /// Removes a file or a whole folder (recursive; Koofr moves it to the trash).
    pub async fn remove(&self, path: &KoofrPath) -> Result<()> {
        if path.is_root() {
            return Err(Error::permanent(
                ErrorKind::InvalidInput,
                "remove",
                "refusing to remove the mount root",
            )
            .with_path(path));
        }
        let url = self.files_url(Family::Api, "remove", path, "").await?;
        let ctx = RequestContext {
            op: "remove",
            path: Some(path.as_str()),
            exists_possible: false,
        };
        let url = url.as_str();
        let result = self
            .with_retry(true, |attempt| async move {
                match self
                    .transport()
                    .empty(ctx, move |http| Ok(http.delete(url).header(ACCEPT, JSON)))
                    .await
                {
                    // An earlier attempt removed it but its answer was lost.
                    Err(e) if attempt > 1 && e.is_not_found() => Ok(()),
                    other => other,
                }
            })
            .await;
        self.forget_folders(path);
        result
    }

    /// Copies a file or folder to the full destination path `to` (whose parent must exist);
    /// `modified_ms` sets the copy's modification time.
    pub async fn copy(
        &self,
        from: &KoofrPath,
        to: &KoofrPath,
        modified_ms: Option<i64>,
    ) -> Result<()> {
        to.check_supported()?;
        let mount = self.mount_id().await?;
        let mut body = serde_json::json!({ "toMountId": mount, "toPath": to.as_str() });
        if let Some(ms) = modified_ms {
            body["modified"] = serde_json::json!(ms);
        }
        self.put_transfer(
            "copy",
            "copy",
            from,
            to,
            Bytes::from(body.to_string()),
            ErrorKind::AlreadyExists,
        )
        .await
    }

    /// Moves a file or folder to the full destination path `to`. A case-only change is done in
    /// two steps through a temporary name (Koofr refuses it in one).
    pub async fn move_to(&self, from: &KoofrPath, to: &KoofrPath) -> Result<()> {
        if from == to {
            return Ok(());
        }
        if from.case_key() == to.case_key() {
            let temporary = temporary_sibling(from)?;
            self.move_once(from, &temporary).await?;
            return self.move_once(&temporary, to).await;
        }
        self.move_once(from, to).await
    }

    async fn move_once(&self, from: &KoofrPath, to: &KoofrPath) -> Result<()> {
        to.check_supported()?;
        let mount = self.mount_id().await?;
        let body = serde_json::json!({ "toMountId": mount, "toPath": to.as_str() });
        let result = self
            .put_transfer(
                "move",
                "move",
                from,
                to,
                Bytes::from(body.to_string()),
                ErrorKind::NotFound,
            )
            .await;
        self.forget_folders(from);
        result
    }

    /// Renames a file or folder within its folder (case-only renames in two steps).
    pub async fn rename(&self, path: &KoofrPath, new_name: &str) -> Result<()> {
        let new_name = validate_name(new_name)?;
        let Some((parent, old_name)) = path.split() else {
            return Err(Error::permanent(
                ErrorKind::InvalidInput,
                "rename",
                "cannot rename the mount root",
            )
            .with_path(path));
        };
        if old_name == new_name {
            return Ok(());
        }
        let target = parent.child(&new_name)?;
        if target.case_key() == path.case_key() {
            let temporary = temporary_sibling(path)?;
            self.rename_once(path, temporary.name()).await?;
            return self.rename_once(&temporary, &new_name).await;
        }
        self.rename_once(path, &new_name).await
    }

    async fn rename_once(&self, path: &KoofrPath, new_name: &str) -> Result<()> {
        let target = path
            .parent()
            .unwrap_or_else(KoofrPath::root)
            .child(new_name)?;
        let body = serde_json::json!({ "name": new_name });
        let result = self
            .put_transfer(
                "rename",
                "rename",
                path,
                &target,
                Bytes::from(body.to_string()),
                ErrorKind::NotFound,
            )
            .await;
        self.forget_folders(path);
        result
    }

    /// PUT with a JSON body for copy, move and rename. After a lost answer, a retry that finds
    /// `lost_answer_kind` counts as success when the destination now exists.
    async fn put_transfer(
        &self,
        op: &'static str,
        endpoint: &str,
        from: &KoofrPath,
        to: &KoofrPath,
        body: Bytes,
        lost_answer_kind: ErrorKind,
    ) -> Result<()> {
        let url = self.files_url(Family::Api, endpoint, from, "").await?;
        let ctx = RequestContext {
            op,
            path: Some(from.as_str()),
            exists_possible: true,
        };
        let url = url.as_str();
        self.with_retry(true, |attempt| {
            let body = body.clone();
            async move {
                let sent = self
                    .transport()
                    .empty(ctx, move |http| {
                        Ok(http
                            .put(url)
                            .header(CONTENT_TYPE, JSON)
                            .header(ACCEPT, JSON)
                            .body(body.clone()))
                    })
                    .await;
                match sent {
                    Err(e) if attempt > 1 && e.kind() == lost_answer_kind => {
                        match self.info(to).await {
                            Ok(_) => Ok(()),
                            Err(_) => Err(e),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e.with_path(to)),
                    other => other,
                }
            }
        })
        .await
    }

    pub(crate) fn knows_folder(&self, path: &KoofrPath) -> bool {
        path.is_root()
            || self
                .inner
                .folders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&path.case_key())
    }

    pub(crate) fn remember_folder(&self, path: &KoofrPath) {
        let mut folders = self.inner.folders.lock().unwrap_or_else(|e| e.into_inner());
        if folders.len() >= MAX_CACHED_FOLDERS {
            folders.clear();
        }
        folders.insert(path.case_key());
    }

    /// Drops `path` and each of its ancestors (not their other children) from the folder cache:
    /// after a 404 under `path`, any of them may be the folder that is gone.
    pub(crate) fn forget_folder_and_ancestors(&self, path: &KoofrPath) {
        let mut folders = self.inner.folders.lock().unwrap_or_else(|e| e.into_inner());
        for folder in path.ancestors_from_top() {
            folders.remove(&folder.case_key());
        }
    }

    /// Drops `path` and everything below it from the folder cache.
    pub(crate) fn forget_folders(&self, path: &KoofrPath) {
        let base = path.case_key();
        self.inner
            .folders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key| !is_key_within(key, &base));
    }
}

fn not_a_folder(path: &KoofrPath) -> Error {
    Error::permanent(
        ErrorKind::NotADirectory,
        "create folders",
        "a file is in the way of a folder",
    )
    .with_path(path)
}

fn temporary_sibling(path: &KoofrPath) -> Result<KoofrPath> {
    let parent = path.parent().unwrap_or_else(KoofrPath::root);
    let tag: u32 = rand::random();
    Ok(parent.child(&format!(".koofr-tmp-{tag:08x}"))?)
}

fn looks_like_uuid(value: &str) -> bool {
    value.len() == 36
        && value.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Picks a mount by id, then by exact name, then by case-insensitive name (unique).
fn select_mount<'a>(mounts: &'a [Mount], wanted: &str) -> Result<&'a Mount> {
    if let Some(m) = mounts
        .iter()
        .find(|m| m.id == wanted)
        .or_else(|| mounts.iter().find(|m| m.name == wanted))
    {
        return Ok(m);
    }
    let folded: Vec<&Mount> = mounts
        .iter()
        .filter(|m| m.name.to_lowercase() == wanted.to_lowercase())
        .collect();
    match folded.as_slice() {
        [one] => Ok(one),
        [] => {
            let names: Vec<&str> = mounts.iter().map(|m| m.name.as_str()).collect();
            Err(Error::permanent(
                ErrorKind::NotFound,
                "select mount",
                format!(
                    "failed to find mount {wanted:?} (available: {})",
                    names.join(", ")
                ),
            ))
        }
        _ => Err(Error::permanent(
            ErrorKind::InvalidInput,
            "select mount",
            format!("several mounts are named {wanted:?}; configure the mount id instead"),
        )),
    }
}

/// Splits a byte stream into NDJSON items without ever holding more than one line.
fn ndjson_entries(body: ByteStream, dir: KoofrPath) -> BoxStream<'static, Result<ListEntry>> {
    struct State {
        body: ByteStream,
        buf: Vec<u8>,
        dir: KoofrPath,
        eof: bool,
        done: bool,
    }
    let state = State {
        body,
        buf: Vec::new(),
        dir,
        eof: false,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let line = if let Some(i) = st.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = st.buf.drain(..=i).collect();
                line
            } else if st.eof {
                if st.buf.is_empty() {
                    return None;
                }
                std::mem::take(&mut st.buf)
            } else {
                match st.body.next().await {
                    Some(Ok(chunk)) => {
                        st.buf.extend_from_slice(&chunk);
                        if st.buf.len() > MAX_LISTING_LINE && !st.buf.contains(&b'\n') {
                            st.done = true;
                            let e = Error::permanent(
                                ErrorKind::Unexpected,
                                "list recursively",
                                format!("a listing line exceeds {MAX_LISTING_LINE} bytes"),
                            )
                            .with_path(&st.dir);
                            return Some((Err(e), st));
                        }
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    None => st.eof = true,
                }
                continue;
            };
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            match parse_recursive_line(text, &st.dir) {
                Ok(Some((entry, last))) => {
                    st.done = last;
                    return Some((Ok(entry), st));
                }
                Ok(None) => continue,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
    })
    .boxed()
}

/// Where a resumed listing stands.
struct Resume {
    client: Client,
    dir: KoofrPath,
    entries: Option<BoxStream<'static, Result<ListEntry>>>,
    /// Entries handed to the caller so far.
    yielded: u64,
    /// The key of the last entry handed out (checked when skipping after a restart).
    last: Option<String>,
    /// Entries of a restarted listing still to skip.
    skip: u64,
    /// The listing's one retry state, shared by the first request and every resume.
    retry: Retry,
}

fn entry_key(entry: &ListEntry) -> String {
    match entry {
        ListEntry::File { path, .. } => path.as_str().to_owned(),
        ListEntry::Error { message, .. } => format!("error: {message}"),
    }
}

fn resuming_listing(
    client: Client,
    dir: KoofrPath,
    first: BoxStream<'static, Result<ListEntry>>,
    retry: Retry,
) -> BoxStream<'static, Result<ListEntry>> {
    let state = Resume {
        client,
        dir,
        entries: Some(first),
        yielded: 0,
        last: None,
        skip: 0,
        retry,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            let item = st.entries.as_mut()?.next().await;
            match item {
                None => return None,
                Some(Ok(entry)) if st.skip > 0 => {
                    st.skip -= 1;
                    if st.skip == 0 && st.last.as_deref() != Some(entry_key(&entry).as_str()) {
                        st.entries = None;
                        let e = Error::permanent(
                            ErrorKind::Unexpected,
                            "list recursively",
                            "the listing changed order while it was resumed after a broken connection",
                        )
                        .with_path(&st.dir);
                        return Some((Err(e), st));
                    }
                }
                Some(Ok(entry)) => {
                    st.yielded += 1;
                    st.last = Some(entry_key(&entry));
                    st.retry.progressed();
                    return Some((Ok(entry), st));
                }
                Some(Err(e)) => {
                    st.entries = None;
                    if let Err(e) = st.retry.failed(e, true).await {
                        return Some((Err(e), st));
                    }
                    tracing::debug!(attempt = st.retry.attempts() + 1, "koofr: resuming a broken listing");
                    let (client, dir) = (st.client.clone(), st.dir.clone());
                    match client.open_listing(&dir, &mut st.retry).await {
                        Ok(entries) => {
                            st.entries = Some(entries);
                            st.skip = st.yielded;
                        }
                        Err(e) => return Some((Err(e), st)),
                    }
                }
            }
        }
    })
    .boxed()
}

/// One listing line as an entry, and whether the server ends the listing with it (an error
/// line is always the last one).
fn parse_recursive_line(line: &str, dir: &KoofrPath) -> Result<Option<(ListEntry, bool)>> {
    let bad = |message: String| {
        Error::permanent(ErrorKind::Unexpected, "list recursively", message).with_path(dir)
    };
    let item: RecursiveItem = serde_json::from_str(line)
        .map_err(|e| bad(format!("unparsable listing line ({e}): {:.120}", line)))?;
    let join = |rel: &str| {
        dir.join(rel)
            .map_err(|e| bad(format!("invalid path in listing: {e}")))
    };
    match item.item_type.as_str() {
        "file" => {
            let rel = item
                .path
                .ok_or_else(|| bad("a listing item has no path".to_owned()))?;
            let info = item
                .file
                .ok_or_else(|| bad(format!("listing item {rel:?} has no file")))?;
            // One odd name must not abort a whole listing: it becomes an error item for the
            // caller to report, and the listing goes on.
            Ok(Some((
                match join(&rel) {
                    Ok(path) => ListEntry::File { path, info },
                    Err(e) => ListEntry::Error {
                        path: None,
                        code: "InvalidPath".to_owned(),
                        message: format!(
                            "listing item {rel:?} has an unusable path: {}",
                            e.message()
                        ),
                    },
                },
                false,
            )))
        }
        "error" => {
            let detail = item.error;
            Ok(Some((
                ListEntry::Error {
                    path: item.path.and_then(|rel| join(&rel).ok()),
                    code: detail
                        .as_ref()
                        .and_then(|d| d.code.clone())
                        .unwrap_or_default(),
                    message: detail.and_then(|d| d.message).unwrap_or_default(),
                },
                true,
            )))
        }
        other => {
            tracing::debug!(
                item_type = other,
                "koofr: skipping an unknown listing item type"
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_detection_and_mount_selection() {
        assert!(looks_like_uuid("9fd62581-3bad-478a-702b-01937d2bf7f1"));
        assert!(!looks_like_uuid("Koofr"));
        let mounts: Vec<Mount> = serde_json::from_str(
            r#"[{"id":"a","name":"Koofr","isPrimary":true},{"id":"b","name":"Dropbox"},{"id":"c","name":"dropbox"}]"#,
        )
        .unwrap();
        assert_eq!(select_mount(&mounts, "b").unwrap().id, "b");
        assert_eq!(select_mount(&mounts, "Dropbox").unwrap().id, "b");
        assert_eq!(select_mount(&mounts, "koofr").unwrap().id, "a");
        assert_eq!(
            select_mount(&mounts, "DROPBOX").unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(select_mount(&mounts, "GDrive").unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn ndjson_transport_error_mid_stream_ends_the_listing() {
        let line = r#"{"type":"file","path":"/","file":{"name":"d","type":"dir"}}"#;
        let chunks: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from(format!("{line}\n{{\"type\":\"fi"))),
            Err(Error::new(
                ErrorKind::Transport,
                true,
                "list recursively",
                "the response body broke off",
            )),
            Ok(Bytes::from_static(b"never read\n")),
        ];
        let dir = KoofrPath::parse("/d").unwrap();
        let entries: Vec<_> = ndjson_entries(futures::stream::iter(chunks).boxed(), dir)
            .collect()
            .await;
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0], Ok(ListEntry::File { .. })));
        assert_eq!(
            entries[1].as_ref().unwrap_err().kind(),
            ErrorKind::Transport
        );
    }

    #[tokio::test]
    async fn an_unusable_item_path_is_an_error_item_and_the_listing_goes_on() {
        let lines = concat!(
            r#"{"type":"file","path":"/a/../b","file":{"name":"..","type":"file","modified":1,"size":0,"contentType":""}}"#,
            "\n",
            r#"{"type":"file","path":"/ok","file":{"name":"ok","type":"file","modified":2,"size":1,"contentType":""}}"#,
            "\n",
        );
        let body = futures::stream::iter([Ok(Bytes::from_static(lines.as_bytes()))]).boxed();
        let entries: Vec<_> = ndjson_entries(body, KoofrPath::parse("/r").unwrap())
            .collect()
            .await;
        assert_eq!(entries.len(), 2, "{entries:?}");
        match &entries[0] {
            Ok(ListEntry::Error {
                path,
                code,
                message,
            }) => {
                assert!(path.is_none());
                assert_eq!(code, "InvalidPath");
                assert!(message.contains("/a/../b"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&entries[1], Ok(ListEntry::File { path, .. }) if path.as_str() == "/r/ok")
        );
    }

    #[tokio::test]
    async fn ndjson_is_split_across_chunks() {
        let lines = concat!(
            r#"{"type":"file","path":"/","file":{"name":"backup","type":"dir","modified":1,"size":0,"contentType":""}}"#,
            "\n",
            r#"{"type":"file","path":"/a b.bin","file":{"name":"a b.bin","type":"file","modified":2,"size":3,"contentType":"","hash":"abc"}}"#,
            "\n",
            r#"{"type":"error","path":"/sub","error":{"code":"Other","message":"boom"}}"#,
            "\n",
            r#"{"type":"file","path":"/never","file":{"name":"never","type":"file"}}"#,
        );
        let chunks: Vec<Result<Bytes>> = lines
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let dir = KoofrPath::parse("/backup").unwrap();
        let entries: Vec<_> = ndjson_entries(futures::stream::iter(chunks).boxed(), dir)
            .collect()
            .await;
        assert_eq!(entries.len(), 3);
        match &entries[1] {
            Ok(ListEntry::File { path, info }) => {
                assert_eq!(path.as_str(), "/backup/a b.bin");
                assert_eq!(info.size, 3);
            }
            other => panic!("{other:?}"),
        }
        match &entries[0] {
            Ok(ListEntry::File { path, .. }) => assert_eq!(path.as_str(), "/backup"),
            other => panic!("{other:?}"),
        }
        match &entries[2] {
            Ok(ListEntry::Error {
                path,
                code,
                message,
            }) => {
                assert_eq!(path.as_ref().unwrap().as_str(), "/backup/sub");
                assert_eq!((code.as_str(), message.as_str()), ("Other", "boom"));
            }
            other => panic!("{other:?}"),
        }
    }
}
