//! Folders: creating one, or a path with all its parents ("mkdir -p"), and the cache of
//! folders known to exist that spares the requests of checking them again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use crate::client::{Client, Family, JSON};
use crate::error::{Error, ErrorKind, Result};
use crate::path::{KoofrPath, is_key_within, validate_name};
use crate::transport::RequestContext;

/// More folders than this in the cache and it starts over (bounds memory on huge trees).
const MAX_CACHED_FOLDERS: usize = 100_000;

/// Folders known to exist, by case key, and one gate per folder being ensured.
#[derive(Default)]
pub(crate) struct FolderCache {
    known: Mutex<HashSet<String>>,
    /// One gate per folder being ensured, so concurrent callers of `create_folder_all` on one
    /// client wait for the first instead of racing it (different clients still race, which the
    /// "already exists" handling tolerates).
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl FolderCache {
    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `path` is known to be a folder (the root always is).
    pub(crate) fn knows(&self, path: &KoofrPath) -> bool {
        path.is_root() || self.known().contains(&path.case_key())
    }

    /// Records that `path` is a folder.
    pub(crate) fn remember(&self, path: &KoofrPath) {
        let mut known = self.known();
        if known.len() >= MAX_CACHED_FOLDERS {
            known.clear();
        }
        known.insert(path.case_key());
    }

    /// Drops `path` and each of its ancestors (not their other children): after a 404 under
    /// `path`, any of them may be the folder that is gone.
    pub(crate) fn forget_with_ancestors(&self, path: &KoofrPath) {
        let mut known = self.known();
        for folder in path.ancestors_from_top() {
            known.remove(&folder.case_key());
        }
    }

    /// Drops `path` and everything below it (removed, moved or renamed).
    pub(crate) fn forget_within(&self, path: &KoofrPath) {
        let base = path.case_key();
        self.known().retain(|key| !is_key_within(key, &base));
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.gates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The gate of the folder with case key `key`, shared by everyone ensuring it now.
    fn gate(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.gates().entry(key.to_owned()).or_default().clone()
    }

    /// Drops the gate of `key` once no other caller holds it (the map only keeps folders
    /// being ensured).
    fn release_gate(&self, key: &str, gate: &Arc<tokio::sync::Mutex<()>>) {
        let mut gates = self.gates();
        if gates.get(key).is_some_and(|g| Arc::ptr_eq(g, gate)) && Arc::strong_count(gate) <= 2 {
            gates.remove(key);
        }
    }
}

impl Client {
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
            self.folders().remember(&child);
        }
        result
    }

    /// Makes sure `path` and all its parents exist as folders ("mkdir -p", spec §9.2). Known
    /// folders are cached; "already exists" answers from racing creators count as success once
    /// `info` confirms a folder.
    pub async fn create_folder_all(&self, path: &KoofrPath) -> Result<()> {
        if path.is_root() || self.folders().knows(path) {
            return Ok(());
        }
        let key = path.case_key();
        let gate = self.folders().gate(&key);
        let result = {
            let _turn = gate.lock().await;
            if self.folders().knows(path) {
                Ok(())
            } else {
                self.ensure_folders(path).await
            }
        };
        self.folders().release_gate(&key, &gate);
        result
    }

    async fn ensure_folders(&self, path: &KoofrPath) -> Result<()> {
        match self.info(path).await {
            Ok(info) if info.is_dir() => {
                self.folders().remember(path);
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
                if self.folders().knows(&folder) {
                    continue;
                }
                if folder != *path {
                    match self.info(&folder).await {
                        Ok(info) if info.is_dir() => {
                            self.folders().remember(&folder);
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
                    Ok(info) if info.is_dir() => self.folders().remember(&folder),
                    Ok(_) => return Err(not_a_folder(&folder)),
                    Err(_) => return Err(e.with_op("create folders")),
                },
                Err(e) => return Err(e.with_op("create folders")),
            }
        }
        Ok(())
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
