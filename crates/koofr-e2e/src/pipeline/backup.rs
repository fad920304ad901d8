//! The backup phase: the importer's records and contents packed into packfiles put through
//! a storage process, under a lock, with the state written last.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, ensure};
use futures::StreamExt;
use indicatif::ProgressBar;
use kloset_plugin::host::{InitArgs, RemoteImporter, host_options};
use kloset_plugin::{Importer, Mac, Record, Resource, Store};
use md5::Digest;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{Locations, PipelineOptions, end_process, now_ms, spawn_plugin, start_store};
use crate::index::{IndexEntry, Snapshot, SourceInfo, StoredInfo};
use crate::pack::{PackStats, PackedFile, Packer, PendingPiece, bytes_stream};
use crate::summary::ProcessPeak;
use koofr_testkit::Site;

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: Snapshot,
    /// Its state MAC.
    pub state_mac: Mac,
    /// Records received from the importer.
    pub records: u64,
    /// Regular-file records.
    pub files: u64,
    /// Directory records.
    pub dirs: u64,
    /// Files read with `Open`.
    pub opened: u64,
    /// Files found unchanged and taken from the previous snapshot (no `Open`).
    pub reused: u64,
    /// Content bytes read through `Open`.
    pub bytes_read: u64,
    /// Packfiles put.
    pub packfiles: u64,
    /// Bytes put as packfiles.
    pub packfile_bytes: u64,
    /// `Put` calls (packfiles, state, lock).
    pub puts: u64,
    /// `Delete` calls (the lock).
    pub deletes: u64,
    /// Failed records: (pathname, error).
    pub failures: Vec<(String, String)>,
    /// The importer and storage processes.
    pub processes: Vec<ProcessPeak>,
}

struct WorkerOutput {
    done: Vec<(String, kloset_plugin::FileInfo, PackedFile)>,
    failures: Vec<(String, String)>,
}

async fn pack_worker(
    importer: Arc<RemoteImporter>,
    mut packer: Packer,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Record>>>,
    bar: ProgressBar,
    bytes_read: Arc<AtomicU64>,
) -> anyhow::Result<WorkerOutput> {
    let mut output = WorkerOutput {
        done: Vec::new(),
        failures: Vec::new(),
    };
    loop {
        let next = queue.lock().await.recv().await;
        let Some(record) = next else { break };
        let Some(info) = record.file_info.clone() else {
            continue; // The scan loop only queues records with a FileInfo.
        };
        let pathname = record.pathname;
        let content = match importer.open(&pathname).await {
            Ok(content) => content,
            Err(err) => {
                output
                    .failures
                    .push((pathname, format!("Open failed: {err}")));
                continue;
            }
        };
        let on_bytes = |n: u64| {
            bar.inc(n);
            bytes_read.fetch_add(n, Ordering::Relaxed);
        };
        match packer.pack_file(content, &on_bytes).await? {
            Ok(packed) if i64::try_from(packed.size).ok() == Some(info.size) => {
                output.done.push((pathname, info, packed));
            }
            Ok(packed) => output.failures.push((
                pathname,
                format!("read {} bytes, the record said {}", packed.size, info.size),
            )),
            Err(message) => output.failures.push((pathname, message)),
        }
    }
    packer.seal().await?;
    Ok(output)
}

/// Backs up `locations.source` into the kloset: storage `Init` → `Open` → `Put(lock)`, importer
/// `Init` → `Import` with concurrent `Open`s (files whose `FileInfo` equals `previous`'s are not
/// opened), packfiles and state put, `List(STATE)` checked, lock deleted, `Close`.
pub async fn backup(
    site: &Site,
    options: &PipelineOptions,
    locations: &Locations,
    config: &[u8],
    previous: Option<&Snapshot>,
    expected_bytes: u64,
) -> anyhow::Result<BackupReport> {
    let store = Arc::new(start_store(site, options, &locations.kloset).await?);
    let stored_config = store.open().await.context("storage Open")?;
    ensure!(
        stored_config.as_ref() == config,
        "storage Open returned {} bytes that differ from the {} bytes given to Create",
        stored_config.len(),
        config.len()
    );
    let lock = serde_json::json!({"hostname": "koofr-e2e", "pid": std::process::id(), "time_ms": now_ms()})
        .to_string()
        .into_bytes();
    let lock_mac = Mac(Sha256::digest(&lock).into());
    store
        .put(Resource::Lock.key(lock_mac), bytes_stream(lock))
        .await
        .with_context(|| format!("putting lock {lock_mac}"))?;
    let mut puts = 1u64;

    let mut init = InitArgs::new("koofr", site.plugin_config(&locations.source));
    init.options = host_options(options.open_concurrency as i64);
    let importer = Arc::new(
        RemoteImporter::init(spawn_plugin(&options.binaries.importer).await?, &init)
            .await
            .context("importer Init")?,
    );
    let location = importer.location();
    let stats = Arc::new(PackStats::default());
    let bytes_read = Arc::new(AtomicU64::new(0));
    let bar = options.progress.bytes("backup", expected_bytes);
    let (queue_tx, queue_rx) = mpsc::channel::<Record>(options.open_concurrency * 2);
    let queue_rx = Arc::new(tokio::sync::Mutex::new(queue_rx));
    let workers: Vec<_> = (0..options.open_concurrency.max(1))
        .map(|_| {
            tokio::spawn(pack_worker(
                importer.clone(),
                Packer::new(store.clone(), options.packfile_bytes, stats.clone()),
                queue_rx.clone(),
                bar.clone(),
                bytes_read.clone(),
            ))
        })
        .collect();

    let previous = previous.map(Snapshot::by_path).unwrap_or_default();
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    let (mut records, mut files, mut dirs, mut reused) = (0u64, 0u64, 0u64, 0u64);
    let mut scan = importer.scan().await.context("importer Import")?;
    while let Some(item) = scan.next().await {
        let record = item.context("importer Import stream")?;
        records += 1;
        if let Some(error) = &record.error {
            failures.push((record.pathname.clone(), format!("error record: {error}")));
            continue;
        }
        let Some(info) = record.file_info.clone() else {
            continue; // xattr records carry no FileInfo; Koofr sends none.
        };
        let stored = StoredInfo::from(&info);
        if info.mode.is_dir() {
            dirs += 1;
            entries.push(IndexEntry {
                pathname: record.pathname.clone(),
                info: stored,
                md5: None,
                pieces: Vec::new(),
            });
            continue;
        }
        if !info.mode.is_regular() {
            failures.push((record.pathname.clone(), "not a regular file".to_owned()));
            continue;
        }
        files += 1;
        // As Plakar (§8.4): an identical FileInfo means the cached content is reused, unopened.
        if let Some(earlier) = previous.get(record.pathname.as_str())
            && stored.unchanged_from(&earlier.info)
            && earlier.md5.is_some()
        {
            reused += 1;
            bar.inc(u64::try_from(info.size).unwrap_or(0));
            entries.push((*earlier).clone());
            continue;
        }
        if queue_tx.send(record).await.is_err() {
            break; // Every worker ended: their error is reported below.
        }
    }
    drop(queue_tx);
    let mut opened = 0u64;
    let mut worker_error = None;
    for worker in workers {
        match worker.await.context("packing task panicked")? {
            Ok(output) => {
                failures.extend(output.failures);
                for (pathname, info, packed) in output.done {
                    opened += 1;
                    let pieces = packed
                        .pieces
                        .iter()
                        .map(|p: &PendingPiece| p.resolve(&stats))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    entries.push(IndexEntry {
                        pathname,
                        info: StoredInfo::from(&info),
                        md5: Some(packed.md5),
                        pieces,
                    });
                }
            }
            Err(err) => worker_error = Some(err),
        }
    }
    bar.finish_and_clear();
    if let Some(err) = worker_error {
        return Err(err.context("packing"));
    }
    importer
        .close()
        .await
        .context("importer Close (after acking every record and half-closing Import)")?;
    let importer_peak = end_process("importer", importer.plugin()).await?;

    entries.sort_by(|a, b| a.pathname.cmp(&b.pathname));
    let snapshot = Snapshot {
        version: crate::index::SNAPSHOT_VERSION,
        source: SourceInfo {
            r#type: location.r#type,
            origin: location.origin,
            root: location.root,
        },
        created_ms: now_ms(),
        entries,
    };
    let (state, state_mac) = snapshot.encode()?;
    store
        .put(Resource::State.key(state_mac), bytes_stream(state))
        .await
        .with_context(|| format!("putting state {state_mac}"))?;
    puts += 1;
    let states = store.list(Resource::State).await.context("List(STATE)")?;
    ensure!(
        states.contains(&state_mac),
        "List(STATE) does not return the state {state_mac} just put"
    );
    store
        .delete(Resource::Lock.key(lock_mac))
        .await
        .with_context(|| format!("deleting lock {lock_mac}"))?;
    let locks = store.list(Resource::Lock).await.context("List(LOCK)")?;
    ensure!(
        !locks.contains(&lock_mac),
        "List(LOCK) still returns the deleted lock {lock_mac}"
    );
    store.close().await.context("storage Close")?;
    let storage_peak = end_process("storage (backup)", store.plugin()).await?;
    let packfiles = stats.packfiles.load(Ordering::Relaxed);
    Ok(BackupReport {
        snapshot,
        state_mac,
        records,
        files,
        dirs,
        opened,
        reused,
        bytes_read: bytes_read.load(Ordering::Relaxed),
        packfiles,
        packfile_bytes: stats.packfile_bytes.load(Ordering::Relaxed),
        puts: puts + packfiles,
        deletes: 1,
        failures,
        processes: vec![importer_peak, storage_peak],
    })
}
