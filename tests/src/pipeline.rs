//! The phases of a backup and restore through the real plugin binaries, driven as Plakar does:
//! create the kloset (`Init` → `Create`), back up (importer `Import` + up to N concurrent `Open`s,
//! packing into packfiles put through a second storage process with a lock and a state),
//! restore (ranged `Get`s through a third storage process, one `Export` stream to the exporter),
//! verify, and the whole demo with its summary.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use kloset_plugin::host::{
    InitArgs, PluginConnection, PluginHandle, RemoteExporter, RemoteImporter, RemoteStore,
    host_options,
};
use kloset_plugin::suites::read_all;
use kloset_plugin::{
    ByteRange, ByteStream, ConnectorError, Exporter, FileMode, Importer, Mac, Record, Resource,
    Store,
};
use koofr_core::KoofrPath;
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::binaries::PluginBinaries;
use crate::index::{IndexEntry, Snapshot, SourceInfo, StoredInfo};
use crate::pack::{
    DEFAULT_PACKFILE_BYTES, PackStats, PackedFile, Packer, PendingPiece, bytes_stream,
};
use crate::progress::Progress;
use crate::site::{RemoteEntry, Site};
use crate::summary::{PhaseSummary, ProcessPeak, RunSummary, peak_rss_kib};
use crate::tree::{Manifest, TreeSpec, generate, seed};

/// How the host drives the plugins.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The plugin executables.
    pub binaries: PluginBinaries,
    /// Packfile target size.
    pub packfile_bytes: u64,
    /// Concurrent importer `Open`s (and packers).
    pub open_concurrency: usize,
    /// Export records whose results may be outstanding at once.
    pub export_in_flight: usize,
    /// Progress bars.
    pub progress: Progress,
}

impl PipelineOptions {
    /// Defaults: 16 MiB packfiles, 8 concurrent Opens, 16 export records in flight.
    pub fn new(binaries: PluginBinaries, progress: Progress) -> PipelineOptions {
        PipelineOptions {
            binaries,
            packfile_bytes: DEFAULT_PACKFILE_BYTES,
            open_concurrency: 8,
            export_in_flight: 16,
            progress,
        }
    }
}

/// The three folders of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The backed-up tree.
    pub source: KoofrPath,
    /// The kloset.
    pub kloset: KoofrPath,
    /// Where the restore goes.
    pub restore: KoofrPath,
}

impl Locations {
    /// `source`, `kloset` and `restore` below the site's base folder.
    pub fn under(site: &Site) -> anyhow::Result<Locations> {
        Ok(Locations {
            source: site.path("source")?,
            kloset: site.path("kloset")?,
            restore: site.path("restore")?,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The opaque kloset configuration the host stores with `Create`.
pub fn kloset_config(packfile_bytes: u64) -> Vec<u8> {
    serde_json::json!({
        "kloset": "koofr-e2e",
        "version": 1,
        "hashing": "SHA256",
        "packfile_bytes": packfile_bytes,
        "created_ms": now_ms(),
    })
    .to_string()
    .into_bytes()
}

/// Starts a plugin binary with no arguments, as Plakar does.
pub async fn spawn_plugin(program: &std::path::Path) -> anyhow::Result<PluginConnection> {
    PluginConnection::spawn(program, std::iter::empty::<&str>())
        .await
        .with_context(|| format!("starting {}", program.display()))
}

async fn start_store(
    site: &Site,
    options: &PipelineOptions,
    kloset: &KoofrPath,
) -> anyhow::Result<RemoteStore> {
    let connection = spawn_plugin(&options.binaries.storage).await?;
    RemoteStore::init(
        connection,
        &InitArgs::new("koofr", site.plugin_config(kloset)),
    )
    .await
    .context("storage Init")
}

/// Reads the plugin's peak memory and CPU time, closes its input and checks it exits with
/// status 0.
pub async fn end_process(role: &str, plugin: &PluginHandle) -> anyhow::Result<ProcessPeak> {
    let pid = plugin.pid();
    let peak_kib = pid.and_then(peak_rss_kib);
    let cpu = pid.and_then(crate::summary::cpu_time);
    let exit_code = plugin
        .shutdown()
        .await
        .with_context(|| format!("{role}: shutting the plugin down"))?;
    ensure!(
        exit_code == 0,
        "{role}: plugin exited with status {exit_code} after EOF"
    );
    Ok(ProcessPeak {
        role: role.to_owned(),
        pid,
        peak_kib,
        cpu,
        exit_code: Some(exit_code),
    })
}

/// `Init` → `Create(config)` in one storage process, no `Close` (as `plakar create`).
pub async fn create_kloset(
    site: &Site,
    options: &PipelineOptions,
    kloset: &KoofrPath,
    config: &[u8],
) -> anyhow::Result<ProcessPeak> {
    let store = start_store(site, options, kloset).await?;
    store
        .create(bytes::Bytes::copy_from_slice(config))
        .await
        .with_context(|| format!("storage Create at {kloset}"))?;
    end_process("storage (create)", store.plugin()).await
}

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
        .put(Resource::Lock, lock_mac, bytes_stream(lock))
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
        .put(Resource::State, state_mac, bytes_stream(state))
        .await
        .with_context(|| format!("putting state {state_mac}"))?;
    puts += 1;
    let states = store.list(Resource::State).await.context("List(STATE)")?;
    ensure!(
        states.contains(&state_mac),
        "List(STATE) does not return the state {state_mac} just put"
    );
    store
        .delete(Resource::Lock, lock_mac)
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

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Records sent on the `Export` stream.
    pub records: u64,
    /// Of which regular files.
    pub files: u64,
    /// Of which directories.
    pub dirs: u64,
    /// Content bytes sent.
    pub bytes: u64,
    /// Ranged `Get`s of packfiles.
    pub ranged_gets: u64,
    /// Records answered with an Ok result.
    pub results_ok: u64,
    /// Records answered with an error: (pathname, error).
    pub failures: Vec<(String, String)>,
    /// The storage and exporter processes.
    pub processes: Vec<ProcessPeak>,
}

/// The record pathname of `pathname` once the snapshot root is re-rooted to `/` (§6.4), or
/// None for entries above the root.
pub fn reroot(root: &str, pathname: &str) -> Option<String> {
    if pathname == root {
        return Some("/".to_owned());
    }
    if root == "/" {
        return pathname.starts_with('/').then(|| pathname.to_owned());
    }
    pathname
        .strip_prefix(root)
        .filter(|rest| rest.starts_with('/'))
        .map(str::to_owned)
}

/// A file's content read back with one ranged `Get` per piece, checked against its size and
/// MD5 at the end (a mismatch ends the stream with an error: the exporter then aborts the file).
fn restore_content(
    store: Arc<RemoteStore>,
    entry: &IndexEntry,
    gets: Arc<AtomicU64>,
    bar: ProgressBar,
) -> anyhow::Result<ByteStream> {
    let pieces = entry
        .pieces
        .iter()
        .map(|p| Ok((p.mac()?, p.offset, p.length)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pathname = entry.pathname.clone();
    let expected_size = u64::try_from(entry.info.size).unwrap_or(0);
    let expected_md5 = entry.md5.clone().unwrap_or_default();
    let seen = Arc::new(std::sync::Mutex::new((Md5::new(), 0u64)));
    let body = futures::stream::iter(pieces)
        .then(move |(mac, offset, length)| {
            let store = store.clone();
            let gets = gets.clone();
            async move {
                gets.fetch_add(1, Ordering::Relaxed);
                store
                    .get(Resource::Packfile, mac, Some(ByteRange { offset, length }))
                    .await
                    .map_err(|e| {
                        e.context(format_args!(
                            "ranged Get of packfile {mac} at {offset}+{length}"
                        ))
                    })
            }
        })
        .try_flatten();
    let hashing = seen.clone();
    let body = body.map_ok(move |chunk| {
        let mut state = hashing.lock().unwrap_or_else(|e| e.into_inner());
        state.0.update(&chunk);
        state.1 += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        chunk
    });
    let check = futures::stream::once(async move {
        let (hasher, size) = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
        let md5 = hex::encode(hasher.finalize());
        if size != expected_size || md5 != expected_md5 {
            Err(ConnectorError::other(format!(
                "{pathname}: read back {size} bytes with MD5 {md5}, the index says {expected_size} bytes with MD5 {expected_md5}"
            )))
        } else {
            Ok(bytes::Bytes::new())
        }
    })
    .try_filter(|chunk| futures::future::ready(!chunk.is_empty()));
    Ok(body.chain(check).boxed())
}

/// Restores the snapshot of state `state_mac` into `locations.restore`: storage `Init` →
/// `Open` → `List(STATE)` → `Get(state)` → ranged `Get`s; exporter `Init` → one `Export` stream
/// (parents first, file chunks ≤ 1 MiB then the empty terminator) → `Close`.
pub async fn restore(
    site: &Site,
    options: &PipelineOptions,
    locations: &Locations,
    config: &[u8],
    state_mac: Mac,
) -> anyhow::Result<RestoreReport> {
    let store = Arc::new(start_store(site, options, &locations.kloset).await?);
    let stored_config = store.open().await.context("storage Open")?;
    ensure!(
        stored_config.as_ref() == config,
        "storage Open returned other config bytes than Create stored"
    );
    let states = store.list(Resource::State).await.context("List(STATE)")?;
    ensure!(
        states.contains(&state_mac),
        "List(STATE) does not return state {state_mac}"
    );
    let state = read_all(
        store
            .get(Resource::State, state_mac, None)
            .await
            .with_context(|| format!("Get of state {state_mac}"))?,
    )
    .await
    .with_context(|| format!("reading state {state_mac}"))?;
    let snapshot = Snapshot::decode(&state, &state_mac)?;

    let mut init = InitArgs::new("koofr", site.plugin_config(&locations.restore));
    init.options = host_options(options.open_concurrency as i64);
    let exporter = Arc::new(
        RemoteExporter::init(spawn_plugin(&options.binaries.exporter).await?, &init)
            .await
            .context("exporter Init")?,
    );
    let total: u64 = snapshot
        .files()
        .map(|e| u64::try_from(e.info.size).unwrap_or(0))
        .sum();
    let bar = options.progress.bytes("restore", total);
    let gets = Arc::new(AtomicU64::new(0));
    let root = snapshot.source.root.clone();
    let mut work = Vec::new();
    for entry in &snapshot.entries {
        if let Some(pathname) = reroot(&root, &entry.pathname) {
            work.push((pathname, entry.clone()));
        }
    }
    let (mut files, mut dirs, mut bytes) = (0u64, 0u64, 0u64);
    for (_, entry) in &work {
        let mode = FileMode(entry.info.mode);
        if mode.is_dir() {
            dirs += 1;
        } else if mode.is_regular() {
            files += 1;
            bytes += u64::try_from(entry.info.size).unwrap_or(0);
        }
    }
    let records = work.len() as u64;
    // Calls start in record order (the exporter client sends them on its stream in the order
    // they queue), so parents precede children; results are awaited concurrently.
    let results: Vec<(String, Result<(), String>)> = futures::stream::iter(work)
        .map(|(pathname, entry)| {
            let exporter = exporter.clone();
            let content = FileMode(entry.info.mode)
                .is_regular()
                .then(|| restore_content(store.clone(), &entry, gets.clone(), bar.clone()));
            async move {
                let info = entry.info.to_file_info();
                let outcome = match content {
                    Some(Ok(content)) => exporter.store_file(&pathname, &info, content).await,
                    Some(Err(err)) => Err(ConnectorError::other(format!("{err:#}"))),
                    None if info.mode.is_dir() => exporter.create_directory(&pathname, &info).await,
                    None => exporter.other(&Record::file(pathname.clone(), info)).await,
                };
                (pathname, outcome.map_err(|e| e.to_string()))
            }
        })
        .buffered(options.export_in_flight.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    exporter
        .close()
        .await
        .context("exporter Close (half-close of Export, every result received)")?;
    let exporter_peak = end_process("exporter", exporter.plugin()).await?;
    store.close().await.context("storage Close")?;
    let storage_peak = end_process("storage (restore)", store.plugin()).await?;
    let mut failures = Vec::new();
    let mut results_ok = 0;
    for (pathname, outcome) in results {
        match outcome {
            Ok(()) => results_ok += 1,
            Err(err) => failures.push((pathname, err)),
        }
    }
    Ok(RestoreReport {
        records,
        files,
        dirs,
        bytes,
        ranged_gets: gets.load(Ordering::Relaxed),
        results_ok,
        failures,
        processes: vec![storage_peak, exporter_peak],
    })
}

/// Differences between a listing and the manifest (path named in each).
pub fn compare_with_manifest(entries: &[RemoteEntry], manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen_files = 0;
    let mut seen_folders = 0;
    for entry in entries {
        if entry.is_dir {
            if manifest.folders.contains(&entry.path) {
                seen_folders += 1;
            } else {
                problems.push(format!("{}: unexpected folder", entry.path));
            }
            continue;
        }
        let Some(expected) = manifest.files.get(&entry.path) else {
            problems.push(format!("{}: unexpected file", entry.path));
            continue;
        };
        seen_files += 1;
        if entry.size != expected.size {
            problems.push(format!(
                "{}: size {} instead of {}",
                entry.path, entry.size, expected.size
            ));
        }
        match &entry.md5 {
            Some(md5) if *md5 == expected.md5 => {}
            other => problems.push(format!(
                "{}: MD5 {other:?} instead of {}",
                entry.path, expected.md5
            )),
        }
        if entry.modified_ms != expected.mtime_ms {
            problems.push(format!(
                "{}: mtime {} instead of {}",
                entry.path, entry.modified_ms, expected.mtime_ms
            ));
        }
    }
    if seen_files != manifest.files.len() || seen_folders != manifest.folders.len() {
        let present: std::collections::HashSet<&str> =
            entries.iter().map(|e| e.path.as_str()).collect();
        for path in manifest
            .files
            .keys()
            .chain(manifest.folders.iter())
            .filter(|p| !present.contains(p.as_str()))
        {
            problems.push(format!("{path}: missing"));
        }
    }
    problems
}

/// What verification checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files compared.
    pub files: u64,
    /// Folders compared.
    pub folders: u64,
    /// Bytes of the files compared.
    pub bytes: u64,
}

fn bail_on(phase: &str, problems: &[String]) -> anyhow::Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = problems.iter().take(10).map(String::as_str).collect();
    bail!(
        "{phase}: {} difference(s), first: {}",
        problems.len(),
        shown.join("; ")
    )
}

/// Checks that the source and the restored tree both equal the manifest (names, sizes, MD5s,
/// mtimes), and that the snapshot recorded the right MD5 for every file.
pub async fn verify(
    site: &Site,
    locations: &Locations,
    manifest: &Manifest,
    snapshot: &Snapshot,
) -> anyhow::Result<VerifyReport> {
    let source = site.walk(&locations.source).await?;
    bail_on(
        "verify (source vs seeded tree)",
        &compare_with_manifest(&source, manifest),
    )?;
    let restored = site.walk(&locations.restore).await?;
    bail_on(
        "verify (restored tree vs original)",
        &compare_with_manifest(&restored, manifest),
    )?;
    let root = snapshot.source.root.clone();
    let mut problems = Vec::new();
    let recorded: HashMap<String, &IndexEntry> = snapshot
        .files()
        .filter_map(|e| {
            Some((
                reroot(&root, &e.pathname)?
                    .trim_start_matches('/')
                    .to_owned(),
                e,
            ))
        })
        .collect();
    for (path, expected) in &manifest.files {
        match recorded.get(path).and_then(|e| e.md5.as_ref()) {
            Some(md5) if *md5 == expected.md5 => {}
            other => problems.push(format!(
                "{path}: snapshot MD5 {other:?} instead of {}",
                expected.md5
            )),
        }
    }
    bail_on("verify (snapshot index)", &problems)?;
    Ok(VerifyReport {
        files: manifest.files.len() as u64,
        folders: manifest.folders.len() as u64,
        bytes: manifest.total_bytes(),
    })
}

/// Everything a demo run produced.
#[derive(Debug, Clone)]
pub struct DemoRun {
    /// The printed summary.
    pub summary: RunSummary,
    /// Where things went.
    pub locations: Locations,
    /// The seeded tree's expected state.
    pub manifest: Manifest,
    /// The first backup.
    pub backup: BackupReport,
    /// The restore.
    pub restore: RestoreReport,
    /// The verification.
    pub verify: VerifyReport,
    /// The second backup of the unchanged tree (incremental).
    pub rescan: BackupReport,
}

fn fail_on_records(phase: &str, failures: &[(String, String)]) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = failures
        .iter()
        .take(10)
        .map(|(path, err)| format!("{path}: {err}"))
        .collect();
    bail!(
        "{phase}: {} record(s) failed: {}",
        failures.len(),
        shown.join("; ")
    )
}

/// Seeds `spec` on the site, then create → backup → restore → verify → backup again, timing
/// each phase and recording its requests; fails (naming the phase and the file) on any problem.
pub async fn run_demo(
    site: &Site,
    spec: &TreeSpec,
    options: &PipelineOptions,
) -> anyhow::Result<DemoRun> {
    let started = Instant::now();
    let locations = Locations::under(site)?;
    let mut phases = Vec::new();
    let mut processes = Vec::new();
    let phase = |name: &'static str, files: u64, bytes: u64, since: Instant| {
        let requests = site.requests();
        site.clear_requests();
        PhaseSummary {
            name,
            files,
            bytes,
            duration: since.elapsed(),
            // Verification compares Koofr's MD5s and metadata; it moves no content.
            transferred: name != "verify",
            requests,
        }
    };

    let tree = generate(spec);
    site.clear_requests();
    let t = Instant::now();
    let manifest = seed(site, &locations.source, &tree, &options.progress)
        .await
        .context("phase seed")?;
    phases.push(phase(
        "seed",
        manifest.files.len() as u64,
        manifest.total_bytes(),
        t,
    ));

    let t = Instant::now();
    let config = kloset_config(options.packfile_bytes);
    processes.push(
        create_kloset(site, options, &locations.kloset, &config)
            .await
            .context("phase create")?,
    );
    phases.push(phase("create", 0, 0, t));

    let t = Instant::now();
    let backup = backup(
        site,
        options,
        &locations,
        &config,
        None,
        manifest.total_bytes(),
    )
    .await
    .context("phase backup")?;
    fail_on_records("phase backup", &backup.failures)?;
    processes.extend(backup.processes.iter().cloned());
    phases.push(phase("backup", backup.opened, backup.bytes_read, t));

    let t = Instant::now();
    let restored = restore(site, options, &locations, &config, backup.state_mac)
        .await
        .context("phase restore")?;
    fail_on_records("phase restore", &restored.failures)?;
    processes.extend(restored.processes.iter().cloned());
    phases.push(phase("restore", restored.files, restored.bytes, t));

    let t = Instant::now();
    let verified = verify(site, &locations, &manifest, &backup.snapshot)
        .await
        .context("phase verify")?;
    phases.push(phase("verify", verified.files, verified.bytes, t));

    let t = Instant::now();
    let rescan = self::backup(
        site,
        options,
        &locations,
        &config,
        Some(&backup.snapshot),
        manifest.total_bytes(),
    )
    .await
    .context("phase rescan (incremental backup)")?;
    fail_on_records("phase rescan", &rescan.failures)?;
    processes.extend(rescan.processes.iter().map(|p| ProcessPeak {
        role: format!("{} (rescan)", p.role.replace(" (backup)", "")),
        ..p.clone()
    }));
    phases.push(phase("rescan", rescan.opened, rescan.bytes_read, t));

    let facts = vec![
        ("tree".to_owned(), manifest.describe(spec.seed)),
        (
            "backup".to_owned(),
            format!(
                "{} records ({} files, {} dirs), {} opened, {} packfiles ({:.1} MiB), {} puts, 0 failed",
                backup.records,
                backup.files,
                backup.dirs,
                backup.opened,
                backup.packfiles,
                backup.packfile_bytes as f64 / 1048576.0,
                backup.puts
            ),
        ),
        (
            "restore".to_owned(),
            format!(
                "{} records, {} results ok, {} failed, {} ranged gets",
                restored.records,
                restored.results_ok,
                restored.failures.len(),
                restored.ranged_gets
            ),
        ),
        (
            "verify".to_owned(),
            format!(
                "restored tree equals the original: {} files, {} folders (names, sizes, MD5, mtimes)",
                verified.files, verified.folders
            ),
        ),
        (
            "rescan".to_owned(),
            format!(
                "{} records, {} files unchanged and not opened, {} opened",
                rescan.records, rescan.reused, rescan.opened
            ),
        ),
    ];
    let summary = RunSummary {
        backend: site.backend_name(),
        phases,
        processes,
        facts,
        total: started.elapsed(),
    };
    Ok(DemoRun {
        summary,
        locations,
        manifest,
        backup,
        restore: restored,
        verify: verified,
        rescan,
    })
}
