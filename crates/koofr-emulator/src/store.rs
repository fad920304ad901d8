//! The emulated file tree of one mount: nodes keyed by `lowercase(NFC(name))`, file contents
//! held in memory or as blob files in the data directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::paths::{child_key, content_type_for};

/// Where a file's bytes live. Cloning is cheap: copies share the blob.
#[derive(Clone, Debug)]
pub(crate) enum Blob {
    Memory(Bytes),
    Disk(Arc<DiskBlob>),
}

/// A blob file in the data directory, deleted when the last reference goes away (so a copy,
/// or a download still streaming an old version, keeps it alive).
#[derive(Debug)]
pub(crate) struct DiskBlob {
    pub(crate) path: PathBuf,
}

impl Drop for DiskBlob {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone, Debug)]
pub(crate) struct FileData {
    pub(crate) size: u64,
    pub(crate) md5: String,
    pub(crate) blob: Blob,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Dir(HashMap<String, Node>),
    File(FileData),
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Stored spelling (NFC), as created.
    pub(crate) name: String,
    pub(crate) modified: i64,
    /// Insertion sequence number, for the deterministic listing order.
    pub(crate) seq: u64,
    pub(crate) tags: BTreeMap<String, Vec<String>>,
    pub(crate) kind: Kind,
}

impl Node {
    pub(crate) fn new_dir(name: String, modified: i64, seq: u64) -> Node {
        Node {
            name,
            modified,
            seq,
            tags: BTreeMap::new(),
            kind: Kind::Dir(HashMap::new()),
        }
    }

    pub(crate) fn new_file(name: String, modified: i64, seq: u64, data: FileData) -> Node {
        Node {
            name,
            modified,
            seq,
            tags: BTreeMap::new(),
            kind: Kind::File(data),
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub(crate) fn file(&self) -> Option<&FileData> {
        match &self.kind {
            Kind::File(f) => Some(f),
            Kind::Dir(_) => None,
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.file().map_or(0, |f| f.size)
    }

    pub(crate) fn children(&self) -> Option<&HashMap<String, Node>> {
        match &self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    pub(crate) fn children_mut(&mut self) -> Option<&mut HashMap<String, Node>> {
        match &mut self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    /// Children in insertion order.
    pub(crate) fn sorted_children(&self) -> Vec<&Node> {
        let mut out: Vec<&Node> = self
            .children()
            .map(|c| c.values().collect())
            .unwrap_or_default();
        out.sort_by_key(|n| n.seq);
        out
    }

    pub(crate) fn get(&self, segments: &[String]) -> Option<&Node> {
        let mut node = self;
        for segment in segments {
            node = node.children()?.get(&child_key(segment))?;
        }
        Some(node)
    }

    pub(crate) fn get_mut(&mut self, segments: &[String]) -> Option<&mut Node> {
        let mut node = self;
        for segment in segments {
            node = node.children_mut()?.get_mut(&child_key(segment))?;
        }
        Some(node)
    }

    /// Total bytes of the files in this subtree.
    pub(crate) fn subtree_bytes(&self) -> u64 {
        match &self.kind {
            Kind::File(f) => f.size,
            Kind::Dir(c) => c.values().map(Node::subtree_bytes).sum(),
        }
    }

    /// The File JSON object of spec §6.1. `with_hash` is false for paths under an omit-hash hook.
    pub(crate) fn to_json(&self, with_hash: bool) -> Value {
        match &self.kind {
            Kind::Dir(_) => json!({
                "name": self.name, "type": "dir", "modified": self.modified, "size": 0,
                "contentType": "", "tags": self.tags,
            }),
            Kind::File(f) => {
                let mut v = json!({
                    "name": self.name, "type": "file", "modified": self.modified,
                    "size": f.size, "contentType": content_type_for(&self.name), "tags": self.tags,
                });
                if with_hash {
                    v["hash"] = Value::String(f.md5.clone());
                }
                v
            }
        }
    }
}

/// The directories a disk backend uses under the data directory.
#[derive(Debug, Clone)]
pub(crate) struct DiskLayout {
    pub(crate) blobs: PathBuf,
    pub(crate) tmp: PathBuf,
}

impl DiskLayout {
    pub(crate) fn create(data_dir: &Path) -> std::io::Result<DiskLayout> {
        let layout = DiskLayout {
            blobs: data_dir.join("blobs"),
            tmp: data_dir.join("tmp"),
        };
        std::fs::create_dir_all(&layout.blobs)?;
        std::fs::create_dir_all(&layout.tmp)?;
        Ok(layout)
    }

    pub(crate) fn new_blob_path(&self) -> PathBuf {
        self.blobs.join(uuid::Uuid::new_v4().to_string())
    }
}
