//! The emulator's shared state (mounts, trees, tokens, hooks, request log) behind one mutex,
//! which is never held across an await.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::endpoint::Endpoint;
use crate::faults::FaultState;
use crate::paths::child_key;
use crate::store::{DiskLayout, FileData, Kind, Node};
use crate::{EmulatorConfig, RequestRecord};

/// The request log keeps at most this many records (oldest dropped first), so a long benchmark
/// cannot grow it without bound.
pub(crate) const REQUEST_LOG_CAPACITY: usize = 1_000_000;

pub(crate) const MIB: u64 = 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) disk: Option<DiskLayout>,
    pub(crate) email: String,
    pub(crate) password: String,
    pub(crate) user_id: String,
    pub(crate) oauth_client_id: String,
    pub(crate) oauth_client_secret: String,
    pub(crate) control_api: bool,
}

impl Shared {
    pub(crate) fn new(config: &EmulatorConfig) -> std::io::Result<Shared> {
        let disk = match &config.data_dir {
            Some(dir) => Some(DiskLayout::create(dir)?),
            None => None,
        };
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let mut uuid = || {
            uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string()
        };
        let user_id = uuid();
        let primary_id = uuid();
        let secondary_id = uuid();
        let oauth_client_secret = uuid();
        let now = wall_clock_ms();
        let mounts = vec![
            MountState {
                id: primary_id,
                name: "Koofr".into(),
                origin: "hosted",
                is_primary: true,
                added_ms: now,
                root: Node::new_dir(String::new(), now, 0),
            },
            MountState {
                id: secondary_id,
                name: "Backup Disk".into(),
                origin: "hosted",
                is_primary: false,
                added_ms: now,
                root: Node::new_dir(String::new(), now, 0),
            },
        ];
        let faults = FaultState {
            latency: config.latency,
            ..FaultState::default()
        };
        let state = State {
            mounts,
            quota_bytes: config.quota_bytes,
            used_bytes: 0,
            reject_non_bmp: config.reject_non_bmp,
            token_ttl: config.token_ttl,
            faults,
            failed_logins: 0,
            auth: AuthState::default(),
            log: VecDeque::new(),
            rng: SmallRng::seed_from_u64(config.seed.wrapping_add(1)),
            next_seq: 1,
        };
        Ok(Shared {
            state: Mutex::new(state),
            disk,
            email: config.email.clone(),
            password: config.password.clone(),
            user_id,
            oauth_client_id: "koofr-emulator-client".into(),
            oauth_client_secret,
            control_api: config.control_api,
        })
    }

    /// Locks the state. A panic while locked leaves consistent-enough test state, so poisoning
    /// is ignored rather than cascading panics through every later request.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug)]
pub(crate) struct MountState {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) origin: &'static str,
    pub(crate) is_primary: bool,
    pub(crate) added_ms: i64,
    pub(crate) root: Node,
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub(crate) legacy_tokens: HashSet<String>,
    /// OAuth access token → expiry (ms, emulator clock).
    pub(crate) access_tokens: HashMap<String, i64>,
    pub(crate) refresh_tokens: HashSet<String>,
    /// Authorization code → redirect URI it was issued for.
    pub(crate) auth_codes: HashMap<String, String>,
}

/// One request in the log; counters are shared with the body wrappers that update them.
#[derive(Debug)]
pub(crate) struct LogEntry {
    pub(crate) method: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) path: Option<String>,
    pub(crate) api_version: &'static str,
    pub(crate) status: AtomicU16,
    pub(crate) bytes_in: Arc<AtomicU64>,
    pub(crate) bytes_out: Arc<AtomicU64>,
}

impl LogEntry {
    pub(crate) fn snapshot(&self) -> RequestRecord {
        RequestRecord {
            method: self.method.clone(),
            endpoint: self.endpoint.name(),
            path: self.path.clone(),
            api_version: self.api_version,
            status: self.status.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) mounts: Vec<MountState>,
    pub(crate) quota_bytes: u64,
    /// Bytes of every file on every mount (the quota is account-wide).
    pub(crate) used_bytes: u64,
    pub(crate) reject_non_bmp: bool,
    pub(crate) token_ttl: Duration,
    pub(crate) faults: FaultState,
    pub(crate) failed_logins: u32,
    pub(crate) auth: AuthState,
    pub(crate) log: VecDeque<Arc<LogEntry>>,
    pub(crate) rng: SmallRng,
    pub(crate) next_seq: u64,
}

impl State {
    pub(crate) fn now_ms(&self) -> i64 {
        self.faults.clock_ms.unwrap_or_else(wall_clock_ms)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub(crate) fn random_id(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    /// Maps `primary` to the primary mount's id; other ids are returned unchanged.
    pub(crate) fn resolve_mount_id(&self, id: &str) -> String {
        if id == "primary" {
            self.mounts[0].id.clone()
        } else {
            id.to_string()
        }
    }

    pub(crate) fn mount_index(&self, id: &str) -> Option<usize> {
        if id == "primary" {
            return Some(0);
        }
        self.mounts.iter().position(|m| m.id == id)
    }

    pub(crate) fn is_offline(&self, index: usize) -> bool {
        self.faults.offline_mounts.contains(&self.mounts[index].id)
    }

    pub(crate) fn push_log(&mut self, entry: Arc<LogEntry>) {
        if self.log.len() >= REQUEST_LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// The File JSON of `node` at `path`, honouring the omit-hash hook.
    pub(crate) fn file_json(&self, node: &Node, path: &str) -> Value {
        node.to_json(!self.faults.hash_omitted(path))
    }

    /// The Mount JSON of spec §6.2.
    pub(crate) fn mount_json(&self, index: usize) -> Value {
        let m = &self.mounts[index];
        let total_mib = self.quota_bytes / MIB;
        let used_mib = self.used_bytes.div_ceil(MIB);
        json!({
            "id": m.id, "name": m.name, "type": "device", "origin": m.origin,
            "online": !self.is_offline(index), "isPrimary": m.is_primary, "isShared": false,
            "isDir": true, "canWrite": true, "canUpload": true,
            "overQuota": self.used_bytes >= self.quota_bytes,
            "almostOverQuota": self.used_bytes.saturating_mul(10) >= self.quota_bytes.saturating_mul(9),
            "spaceTotal": total_mib, "spaceUsed": used_mib, "version": 1, "userAdded": m.added_ms,
            "permissions": {"READ": true, "WRITE": true, "OWNER": true, "MOUNT": true,
                            "CREATE_RECEIVER": true, "CREATE_LINK": true, "COMMENT": true},
            "users": [], "groups": [],
            "capabilities": {"externalLinks": false, "externalStatus": false,
                             "officeOnline": true, "rawThumbnails": true, "tags": true},
        })
    }

    /// Creates every missing folder along `segments` on mount `index` (seeding helper).
    /// Returns false if a file is in the way.
    pub(crate) fn create_folder_all(&mut self, index: usize, segments: &[String]) -> bool {
        let now = self.now_ms();
        let mut seqs = Vec::new();
        for _ in segments {
            seqs.push(self.next_seq());
        }
        let mut node = &mut self.mounts[index].root;
        for (segment, seq) in segments.iter().zip(seqs) {
            let Some(children) = node.children_mut() else {
                return false;
            };
            node = children
                .entry(child_key(segment))
                .or_insert_with(|| Node::new_dir(segment.clone(), now, seq));
        }
        node.is_dir()
    }

    /// Stores a file at `segments` (parents must exist), replacing a file with the same key,
    /// keeping its tags and taking the new spelling. Returns None if the parent is missing or
    /// is a file, or if a folder is in the way.
    pub(crate) fn store_file(
        &mut self,
        index: usize,
        parent: &[String],
        name: &str,
        data: FileData,
        modified: i64,
    ) -> Option<&Node> {
        let seq = self.next_seq();
        let new_size = data.size;
        let parent_node = self.mounts[index].root.get_mut(parent)?;
        let children = parent_node.children_mut()?;
        let key = child_key(name);
        let old_size = match children.get(&key) {
            Some(existing) if existing.is_dir() => return None,
            Some(existing) => Some(existing.size()),
            None => None,
        };
        self.used_bytes = self.used_bytes - old_size.unwrap_or(0) + new_size;
        let node = match children.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => {
                let existing = entry.into_mut();
                existing.name = name.to_string();
                existing.modified = modified;
                existing.kind = Kind::File(data);
                existing
            }
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(Node::new_file(name.to_string(), modified, seq, data))
            }
        };
        Some(&*node)
    }

    /// Removes the node at `segments` (not the root). Returns it if it existed.
    pub(crate) fn remove_node(&mut self, index: usize, segments: &[String]) -> Option<Node> {
        let (last, parent) = segments.split_last()?;
        let removed = self.mounts[index]
            .root
            .get_mut(parent)?
            .children_mut()?
            .remove(&child_key(last))?;
        self.used_bytes -= removed.subtree_bytes();
        Some(removed)
    }
}

/// Every node below `node` as (path relative to it, node), parents first, children in
/// listing order (insertion order, or shuffled with `shuffle`).
pub(crate) fn walk_tree<'a>(
    node: &'a Node,
    base: &str,
    mut shuffle: Option<&mut SmallRng>,
) -> Vec<(String, &'a Node)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &'a Node)> = Vec::new();
    let push_children = |shuffle: &mut Option<&mut SmallRng>,
                         stack: &mut Vec<(String, &'a Node)>,
                         dir: &'a Node,
                         dir_path: &str| {
        let mut children = listing_order(dir, shuffle.as_deref_mut());
        children.reverse();
        for child in children {
            let path = if dir_path == "/" {
                format!("/{}", child.name)
            } else {
                format!("{dir_path}/{}", child.name)
            };
            stack.push((path, child));
        }
    };
    push_children(&mut shuffle, &mut stack, node, base);
    while let Some((path, child)) = stack.pop() {
        if child.is_dir() {
            push_children(&mut shuffle, &mut stack, child, &path);
        }
        out.push((path, child));
    }
    out
}

/// The children of `dir` in listing order (shuffled when `shuffle` is given).
pub(crate) fn listing_order<'a>(dir: &'a Node, shuffle: Option<&mut SmallRng>) -> Vec<&'a Node> {
    let mut children = dir.sorted_children();
    if let Some(rng) = shuffle {
        use rand::seq::SliceRandom;
        children.shuffle(rng);
    }
    children
}
