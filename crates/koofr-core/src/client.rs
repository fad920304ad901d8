//! The Koofr client: mount selection, metadata, remove, copy, move and rename. Listings live
//! in `listing.rs`, folder creation and the folder cache in `folders.rs`, transfers in
//! `download.rs` and `upload.rs`.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::OnceCell;

use crate::config::{ApiVersion, KoofrConfig, MountSelector};
use crate::error::{Error, ErrorKind, Result};
use crate::folders::FolderCache;
use crate::path::{KoofrPath, encode_component, validate_name};
use crate::retry::Retry;
use crate::transport::{RequestContext, Transport};
use crate::types::{FileInfo, Mount, MountList, User};

pub(crate) const JSON: &str = "application/json";

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
    folders: FolderCache,
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
                folders: FolderCache::default(),
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

    /// The folders this client knows to exist.
    pub(crate) fn folders(&self) -> &FolderCache {
        &self.inner.folders
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

    pub(crate) async fn get_json<T: for<'de> serde::Deserialize<'de>>(
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
        self.folders().forget_within(path);
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
        self.folders().forget_within(from);
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
        self.folders().forget_within(path);
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
}

/// A random name beside `path`, the halfway point of a case-only move or rename.
fn temporary_sibling(path: &KoofrPath) -> Result<KoofrPath> {
    let parent = path.parent().unwrap_or_else(KoofrPath::root);
    let tag: u32 = rand::random();
    Ok(parent.child(&format!(".koofr-tmp-{tag:08x}"))?)
}

/// A mount id as Koofr writes them: a hyphenated UUID (36 characters; the other forms `uuid`
/// accepts, such as 32 bare hex digits, are taken for mount names).
fn looks_like_uuid(value: &str) -> bool {
    value.len() == 36 && uuid::Uuid::try_parse(value).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_detection_and_mount_selection() {
        assert!(looks_like_uuid("9fd62581-3bad-478a-702b-01937d2bf7f1"));
        assert!(looks_like_uuid("9FD62581-3BAD-478A-702B-01937D2BF7F1"));
        assert!(!looks_like_uuid("Koofr"));
        assert!(!looks_like_uuid("9fd625813bad478a702b01937d2bf7f1"));
        assert!(!looks_like_uuid("9fd62581-3bad-478a-702b-01937d2bf7fg"));
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
}
