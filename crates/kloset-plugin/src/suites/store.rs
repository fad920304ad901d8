//! The store suite: kloset create/open, objects of every resource, the size, object sizes,
//! ranges, concurrency, failed uploads, junk names, and a store that starts and ends empty.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use rand::{Rng, SeedableRng};

use super::data::{failing_stream, pattern_stream, read_all, verify_pattern};
use super::{Case, CaseFailure, CaseResult, SuiteReport, run_cases};
use crate::Store;
use crate::ensure_case;
use crate::error::{ConnectorError, ConnectorErrorKind, Result};
use crate::types::{ByteRange, Mac, ObjectKey, Resource, StoreMode};

/// What a store backend can do in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCapabilities {
    /// Size of the "large object" case, in bytes (a few tens of MiB by default).
    pub large_object_bytes: u64,
    /// The fixture can drop junk names into resource folders.
    pub junk_names: bool,
}

impl Default for StoreCapabilities {
    fn default() -> Self {
        Self {
            large_object_bytes: 24 << 20,
            junk_names: true,
        }
    }
}

/// A store backend under test: constructors plus hooks into its storage.
#[async_trait]
pub trait StoreFixture: Send + Sync {
    /// A new connector on the suite's kloset location, after `Init` (a new process per call for
    /// plugin fixtures). The location holds no kloset when the suite starts.
    async fn connect(&self) -> Result<Arc<dyn Store>>;
    /// Ends a connector from [`StoreFixture::connect`] (plugin fixtures check exit status 0).
    async fn release(&self, store: Arc<dyn Store>) -> Result<()>;
    /// Puts a non-MAC entry named `name` into the resource's folder.
    async fn add_junk(&self, resource: Resource, name: &str) -> Result<()>;
    /// Removes what [`StoreFixture::add_junk`] added.
    async fn remove_junk(&self, resource: Resource, name: &str) -> Result<()>;
    /// Declared capabilities.
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::default()
    }
}

/// The case run of `body`, on a store connected for it (see [`with_store`]).
macro_rules! connected {
    ($body:ident) => {
        |f| with_store(f, $body).boxed()
    };
}

/// Every case of the store suite, in run order.
pub fn store_cases() -> Vec<Case<dyn StoreFixture>> {
    vec![
        Case::new("starts empty", connected!(starts_empty)),
        Case::new("mode is read-write", connected!(mode_read_write)),
        Case::new("create then refuse existing", create_refuses_existing),
        Case::new("open returns config bytes", connected!(open_returns_config)),
        Case::new(
            "put/get/list/delete per resource",
            connected!(crud_per_resource),
        ),
        Case::new("overwrite replaces", connected!(overwrite)),
        Case::new(
            "size is -1 or counts the objects",
            connected!(size_counts_objects),
        ),
        Case::new("boundary sizes", connected!(boundary_sizes)),
        Case::new("large object", large_object),
        Case::new("random ranges", connected!(random_ranges)),
        Case::new("range past end fails", connected!(range_past_end)),
        Case::new(
            "concurrent puts then exact list",
            connected!(concurrent_puts),
        ),
        Case::new("failed put leaves nothing", connected!(failed_put)),
        Case::new("junk names skipped", junk_names),
        Case::new("ends empty", connected!(ends_empty)),
    ]
}

/// Runs the store suite.
pub async fn run_store_suite(target: &str, fixture: &(dyn StoreFixture + 'static)) -> SuiteReport {
    run_cases("store", target, fixture, &store_cases()).await
}

fn mac(seed: u64) -> Mac {
    let mut raw = [0u8; 32];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8;
    }
    raw[0] = (seed & 0xff) as u8;
    raw[1] = ((seed >> 8) & 0xff) as u8;
    Mac(raw)
}

/// Connects, runs the body, then closes and releases even when the body failed.
async fn with_store<F, Fut>(fixture: &dyn StoreFixture, body: F) -> CaseResult
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let store = fixture.connect().await?;
    let outcome = body(store.clone()).await;
    let closed = store.close().await;
    let released = fixture.release(store).await;
    outcome?;
    closed?;
    released?;
    Ok(())
}

async fn put_pattern(store: &dyn Store, key: ObjectKey, seed: u64, len: u64) -> CaseResult {
    let written = store.put(key, pattern_stream(seed, len)).await?;
    ensure_case!(
        written == len,
        "put {key}: bytes_written {written}, expected {len}"
    );
    Ok(())
}

async fn check_pattern(store: &dyn Store, key: ObjectKey, seed: u64, len: u64) -> CaseResult {
    let stream = store.get(key, None).await?;
    verify_pattern(stream, seed, 0, len)
        .await
        .map_err(|e| CaseFailure(format!("get {key}: {e}")))
}

/// The error of a get, or of reading its stream whole; `None` when both succeeded.
async fn get_error(
    store: &dyn Store,
    key: ObjectKey,
    range: Option<ByteRange>,
) -> Option<ConnectorError> {
    let outcome = match store.get(key, range).await {
        Ok(stream) => read_all(stream).await.map(|_| ()),
        Err(e) => Err(e),
    };
    outcome.err()
}

async fn listed(store: &dyn Store, resource: Resource) -> Result<BTreeSet<Mac>, CaseFailure> {
    let macs = store.list(resource).await?;
    let set: BTreeSet<Mac> = macs.iter().copied().collect();
    ensure_case!(
        set.len() == macs.len(),
        "list {resource} returned duplicates"
    );
    Ok(set)
}

async fn starts_empty(store: Arc<dyn Store>) -> CaseResult {
    for resource in Resource::ALL {
        let macs = store.list(resource).await?;
        ensure_case!(
            macs.is_empty(),
            "list {resource} of a fresh location: {} objects",
            macs.len()
        );
    }
    let opened = store.open().await;
    ensure_case!(
        opened.is_err(),
        "open succeeded on a location without a kloset"
    );
    Ok(())
}

async fn mode_read_write(store: Arc<dyn Store>) -> CaseResult {
    ensure_case!(
        store.mode() == StoreMode::READ_WRITE,
        "mode {:?}, expected 6",
        store.mode()
    );
    store.ping().await?;
    let loc = store.location();
    ensure_case!(
        !loc.r#type.is_empty() && loc.root.starts_with('/'),
        "bad location {loc:?}"
    );
    Ok(())
}

const CONFIG: &[u8] = b"\x00kloset config \xff\xfe bytes\n";

fn create_refuses_existing(f: &dyn StoreFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        with_store(f, |store| async move {
            Ok(store.create(Bytes::from_static(CONFIG)).await?)
        })
        .await?;
        with_store(f, |store| async move {
            let again = store.create(Bytes::from_static(b"other")).await;
            ensure_case!(
                again.is_err(),
                "second create on an existing kloset succeeded"
            );
            Ok(())
        })
        .await
    }
    .boxed()
}

async fn open_returns_config(store: Arc<dyn Store>) -> CaseResult {
    let config = store.open().await?;
    ensure_case!(
        config.as_ref() == CONFIG,
        "open returned {} bytes, not the created config",
        config.len()
    );
    Ok(())
}

async fn crud_per_resource(store: Arc<dyn Store>) -> CaseResult {
    for (i, resource) in Resource::ALL.into_iter().enumerate() {
        let m = mac(100 + i as u64);
        put_pattern(&*store, resource.key(m), 5 + i as u64, 1000 + i as u64).await?;
        check_pattern(&*store, resource.key(m), 5 + i as u64, 1000 + i as u64).await?;
        let set = listed(&*store, resource).await?;
        ensure_case!(
            set == BTreeSet::from([m]),
            "list {resource}: {set:?}, expected only {m}"
        );
        for other in Resource::ALL.into_iter().filter(|r| *r != resource) {
            ensure_case!(
                !listed(&*store, other).await?.contains(&m),
                "{m} put as {resource} listed as {other}"
            );
        }
        store.delete(resource.key(m)).await?;
        ensure_case!(
            listed(&*store, resource).await?.is_empty(),
            "list {resource} not empty after delete"
        );
        let e = get_error(&*store, resource.key(m), None)
            .await
            .ok_or_else(|| format!("get {resource} {m} after delete succeeded"))?;
        // Not found, and not any error: "range past end fails" holds the other side.
        ensure_case!(
            e.kind() == ConnectorErrorKind::NotFound,
            "get {resource} {m} after delete: {e:?}, expected not found"
        );
    }
    Ok(())
}

async fn overwrite(store: Arc<dyn Store>) -> CaseResult {
    let m = mac(200);
    put_pattern(&*store, Resource::Lock.key(m), 1, 5000).await?;
    put_pattern(&*store, Resource::Lock.key(m), 2, 300).await?;
    check_pattern(&*store, Resource::Lock.key(m), 2, 300).await?;
    ensure_case!(
        listed(&*store, Resource::Lock).await?.len() == 1,
        "overwrite duplicated the object"
    );
    store.delete(Resource::Lock.key(m)).await?;
    Ok(())
}

async fn size_counts_objects(store: Arc<dyn Store>) -> CaseResult {
    let m = mac(250);
    put_pattern(&*store, Resource::Packfile.key(m), 25, 5000).await?;
    let size = store.size().await?;
    ensure_case!(
        size == -1 || size >= 5000,
        "size {size} with a 5000-byte object stored: expected -1 (unknown) or at least 5000"
    );
    store.delete(Resource::Packfile.key(m)).await?;
    Ok(())
}

const MIB: u64 = 1 << 20;

async fn boundary_sizes(store: Arc<dyn Store>) -> CaseResult {
    for (i, len) in [0, 1, MIB - 1, MIB, MIB + 1].into_iter().enumerate() {
        let m = mac(300 + i as u64);
        put_pattern(&*store, Resource::Packfile.key(m), 30 + i as u64, len).await?;
        check_pattern(&*store, Resource::Packfile.key(m), 30 + i as u64, len).await?;
        if len == 0 {
            let mut stream = store.get(Resource::Packfile.key(m), None).await?;
            ensure_case!(
                stream.next().await.is_none(),
                "empty object yielded a chunk"
            );
        }
        store.delete(Resource::Packfile.key(m)).await?;
    }
    Ok(())
}

fn large_object(f: &dyn StoreFixture) -> BoxFuture<'_, CaseResult> {
    let len = f.capabilities().large_object_bytes;
    with_store(f, move |store| async move {
        let m = mac(400);
        put_pattern(&*store, Resource::Packfile.key(m), 40, len).await?;
        check_pattern(&*store, Resource::Packfile.key(m), 40, len).await?;
        store.delete(Resource::Packfile.key(m)).await?;
        Ok(())
    })
    .boxed()
}

async fn random_ranges(store: Arc<dyn Store>) -> CaseResult {
    let m = mac(500);
    let size = 3 * MIB + 12_345;
    put_pattern(&*store, Resource::Packfile.key(m), 50, size).await?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let mut ranges = vec![
        (0, 0),
        (size - 1, 1),
        (size - 100, 100),
        (0, size as u32),
        (size / 2, 0),
    ];
    while ranges.len() < 50 {
        let offset = rng.random_range(0..size);
        let length = match rng.random_range(0..4) {
            0 => (size - offset) as u32,                // ends exactly at the end
            1 => rng.random_range(0..64),               // tiny (incl. zero)
            _ => rng.random_range(0..(2 * MIB) as u32), // may run past the end
        };
        ranges.push((offset, length));
    }
    for (offset, length) in ranges {
        let stream = store
            .get(
                Resource::Packfile.key(m),
                Some(ByteRange { offset, length }),
            )
            .await?;
        let expected = u64::from(length).min(size - offset);
        verify_pattern(stream, 50, offset, expected)
            .await
            .map_err(|e| CaseFailure(format!("range {offset}+{length}: {e}")))?;
    }
    store.delete(Resource::Packfile.key(m)).await?;
    Ok(())
}

async fn range_past_end(store: Arc<dyn Store>) -> CaseResult {
    let m = mac(600);
    put_pattern(&*store, Resource::Packfile.key(m), 60, 1000).await?;
    for offset in [1000, 5000] {
        let range = ByteRange { offset, length: 10 };
        let e = get_error(&*store, Resource::Packfile.key(m), Some(range))
            .await
            .ok_or_else(|| format!("range at {offset} past the end succeeded"))?;
        ensure_case!(
            e.kind() != ConnectorErrorKind::NotFound,
            "range past the end reported not found: {e}"
        );
    }
    store.delete(Resource::Packfile.key(m)).await?;
    Ok(())
}

async fn concurrent_puts(store: Arc<dyn Store>) -> CaseResult {
    let macs: Vec<Mac> = (0..32).map(|i| mac(700 + i)).collect();
    let puts = macs.iter().enumerate().map(|(i, m)| {
        let store = store.clone();
        let m = *m;
        async move {
            store
                .put(
                    Resource::State.key(m),
                    pattern_stream(i as u64, 10_000 + i as u64 * 997),
                )
                .await
        }
    });
    for outcome in futures::future::join_all(puts).await {
        outcome?;
    }
    let set = listed(&*store, Resource::State).await?;
    ensure_case!(
        set == macs.iter().copied().collect(),
        "listing after 32 concurrent puts has {} entries",
        set.len()
    );
    for (i, m) in macs.iter().enumerate() {
        check_pattern(
            &*store,
            Resource::State.key(*m),
            i as u64,
            10_000 + i as u64 * 997,
        )
        .await?;
    }
    for outcome in
        futures::future::join_all(macs.iter().map(|m| store.delete(Resource::State.key(*m)))).await
    {
        outcome?;
    }
    ensure_case!(
        listed(&*store, Resource::State).await?.is_empty(),
        "states left after deleting all"
    );
    Ok(())
}

async fn failed_put(store: Arc<dyn Store>) -> CaseResult {
    let kept = mac(800);
    put_pattern(&*store, Resource::Packfile.key(kept), 80, 4000).await?;
    let replaced = store
        .put(
            Resource::Packfile.key(kept),
            failing_stream(81, 2 * MIB + 3),
        )
        .await;
    ensure_case!(replaced.is_err(), "put with a failing stream succeeded");
    let fresh = mac(801);
    let created = store
        .put(Resource::Packfile.key(fresh), failing_stream(82, MIB / 2))
        .await;
    ensure_case!(created.is_err(), "put with a failing stream succeeded");
    // The plugin may still be tearing the failed upload down; it must never publish it.
    check_pattern(&*store, Resource::Packfile.key(kept), 80, 4000).await?;
    let set = listed(&*store, Resource::Packfile).await?;
    ensure_case!(
        set == BTreeSet::from([kept]),
        "after failed puts the listing is {set:?}"
    );
    let gone = match store.get(Resource::Packfile.key(fresh), None).await {
        Ok(stream) => read_all(stream).await.map(|_| ()),
        Err(e) => Err(e),
    };
    ensure_case!(gone.is_err(), "a failed first upload is readable");
    store.delete(Resource::Packfile.key(kept)).await?;
    Ok(())
}

const JUNK: [&str; 4] = [
    "junk.txt",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefa",
    "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
];

fn junk_names(f: &dyn StoreFixture) -> BoxFuture<'_, CaseResult> {
    async move {
        if !f.capabilities().junk_names {
            return Ok(());
        }
        for resource in Resource::ALL {
            for name in JUNK {
                f.add_junk(resource, name).await?;
            }
        }
        let outcome = with_store(f, |store| async move {
            let m = mac(900);
            put_pattern(&*store, Resource::Packfile.key(m), 90, 10).await?;
            for resource in Resource::ALL {
                let set = listed(&*store, resource).await?;
                let expected = if resource == Resource::Packfile {
                    BTreeSet::from([m])
                } else {
                    BTreeSet::new()
                };
                ensure_case!(set == expected, "list {resource} with junk names: {set:?}");
            }
            store.delete(Resource::Packfile.key(m)).await?;
            Ok(())
        })
        .await;
        for resource in Resource::ALL {
            for name in JUNK {
                f.remove_junk(resource, name).await?;
            }
        }
        outcome
    }
    .boxed()
}

async fn ends_empty(store: Arc<dyn Store>) -> CaseResult {
    for resource in Resource::ALL {
        let left = store.list(resource).await?;
        ensure_case!(
            left.is_empty(),
            "{} {resource} objects left at the end: {left:?}",
            left.len()
        );
    }
    Ok(())
}
