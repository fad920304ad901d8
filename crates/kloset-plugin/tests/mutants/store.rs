//! Store mutants: the reference store with one behaviour broken, against the store suite.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use kloset_plugin::reference::fixtures::{StoreSite, Transport};
use kloset_plugin::suites::{
    StoreCapabilities, StoreFixture, SuiteReport, run_store_suite, store_cases,
};
use kloset_plugin::{
    ByteRange, ByteStream, ConnectorError, ConnectorErrorKind, LocationInfo, Mac, ObjectKey,
    Resource, Result, Store, StoreMode,
};

use super::{
    Handed, Mutant, assert_each_caught, counted, cut_after, drop_last_byte, flip_first_byte,
    one_chunk, rekind, run_each, until_break,
};

/// One broken behaviour of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreMutant {
    /// `open` of a location without a kloset answers an empty config.
    OpenMissingIsEmpty,
    /// `mode` answers read-only.
    ModeReadOnly,
    /// `ping` fails.
    PingFails,
    /// `create` on an existing kloset answers Ok (and keeps the old config).
    CreateAcceptsExisting,
    /// `open` answers the config through a lossy UTF-8 round trip.
    ConfigLossyText,
    /// `size` fails.
    SizeFails,
    /// `size` answers 0, a known size that counts nothing.
    SizeZero,
    /// `list` flips the last bit of every MAC.
    ListWrongMac,
    /// `list` repeats its first MAC.
    ListDuplicates,
    /// `list` answers the first 16 MACs only (the next page is never fetched).
    ListFirstPageOnly,
    /// `list` of one resource answers the objects of all three (one folder for all).
    ListAllResources,
    /// `put` stores the object one byte short (and reports every byte received).
    PutStoresTruncated,
    /// `put` of an empty object stores nothing.
    PutSkipsEmpty,
    /// `put` refuses objects over 4 MiB (one-request uploads only).
    PutRefusesOver4MiB,
    /// `put` on an existing object keeps the old one.
    PutKeepsExisting,
    /// `put` on an existing object fails (a create-only upload).
    PutRefusesExisting,
    /// `put` whose data breaks stores what arrived (and reports the error).
    PutPublishesPartial,
    /// `put` takes its MAC from a slot of the connector: concurrent puts land under one MAC.
    PutSharedSlot,
    /// `get` yields the object with one bit flipped.
    GetWrongBytes,
    /// `get` reads the packfile of that MAC, whatever resource was asked.
    GetIgnoresResource,
    /// `get` ends after 4 MiB, silently (one response's worth).
    GetEndsAt4MiB,
    /// `get` of a range yields one byte fewer than asked.
    RangeOneByteShort,
    /// `get` of a zero-length range yields the whole object.
    ZeroRangeReadsAll,
    /// `get` of a range past the end answers an empty stream.
    RangePastEndIsEmpty,
    /// `get` of a range past the end answers not found.
    RangePastEndIsNotFound,
    /// `get` of a missing object answers `Other` instead of `NotFound`.
    MissingIsOther,
    /// `delete` answers Ok and removes nothing.
    DeleteDoesNothing,
}

impl Mutant for StoreMutant {
    const ALL: &'static [Self] = &[
        Self::OpenMissingIsEmpty,
        Self::ModeReadOnly,
        Self::PingFails,
        Self::CreateAcceptsExisting,
        Self::ConfigLossyText,
        Self::SizeFails,
        Self::SizeZero,
        Self::ListWrongMac,
        Self::ListDuplicates,
        Self::ListFirstPageOnly,
        Self::ListAllResources,
        Self::PutStoresTruncated,
        Self::PutSkipsEmpty,
        Self::PutRefusesOver4MiB,
        Self::PutKeepsExisting,
        Self::PutRefusesExisting,
        Self::PutPublishesPartial,
        Self::PutSharedSlot,
        Self::GetWrongBytes,
        Self::GetIgnoresResource,
        Self::GetEndsAt4MiB,
        Self::RangeOneByteShort,
        Self::ZeroRangeReadsAll,
        Self::RangePastEndIsEmpty,
        Self::RangePastEndIsNotFound,
        Self::MissingIsOther,
        Self::DeleteDoesNothing,
    ];

    fn caught_by(self) -> &'static [&'static str] {
        match self {
            Self::OpenMissingIsEmpty => &["starts empty"],
            Self::ModeReadOnly => &["mode is read-write"],
            Self::PingFails => &["mode is read-write"],
            Self::CreateAcceptsExisting => &["create then refuse existing"],
            Self::ConfigLossyText => &["open returns config bytes"],
            Self::SizeFails => &["size is -1 or counts the objects"],
            Self::SizeZero => &["size is -1 or counts the objects"],
            Self::ListWrongMac => &["put/get/list/delete per resource"],
            Self::ListDuplicates => &["put/get/list/delete per resource"],
            Self::ListFirstPageOnly => &["concurrent puts then exact list"],
            Self::ListAllResources => &["put/get/list/delete per resource"],
            Self::PutStoresTruncated => &["put/get/list/delete per resource", "boundary sizes"],
            Self::PutSkipsEmpty => &["boundary sizes"],
            Self::PutRefusesOver4MiB => &["large object"],
            Self::PutKeepsExisting => &["overwrite replaces"],
            Self::PutRefusesExisting => &["overwrite replaces"],
            Self::PutPublishesPartial => &["failed put leaves nothing"],
            Self::PutSharedSlot => &["concurrent puts then exact list"],
            Self::GetWrongBytes => &["put/get/list/delete per resource", "random ranges"],
            Self::GetIgnoresResource => &["put/get/list/delete per resource"],
            Self::GetEndsAt4MiB => &["large object"],
            Self::RangeOneByteShort => &["random ranges"],
            Self::ZeroRangeReadsAll => &["random ranges"],
            Self::RangePastEndIsEmpty => &["range past end fails"],
            Self::RangePastEndIsNotFound => &["range past end fails"],
            Self::MissingIsOther => &["put/get/list/delete per resource"],
            Self::DeleteDoesNothing => &["put/get/list/delete per resource", "ends empty"],
        }
    }
}

/// A store that forwards to `inner`, except for its mutation.
struct MutantStore {
    inner: Arc<dyn Store>,
    mutant: Option<StoreMutant>,
    /// The MAC the next upload goes to ([`StoreMutant::PutSharedSlot`]).
    slot: Mutex<Option<Mac>>,
}

impl MutantStore {
    fn is(&self, mutant: StoreMutant) -> bool {
        self.mutant == Some(mutant)
    }
}

#[async_trait]
impl Store for MutantStore {
    fn location(&self) -> LocationInfo {
        self.inner.location()
    }

    async fn create(&self, config: Bytes) -> Result<()> {
        match self.inner.create(config).await {
            Err(e)
                if self.is(StoreMutant::CreateAcceptsExisting)
                    && e.kind() == ConnectorErrorKind::AlreadyExists =>
            {
                Ok(())
            }
            other => other,
        }
    }

    async fn open(&self) -> Result<Bytes> {
        match self.inner.open().await {
            Err(e)
                if self.is(StoreMutant::OpenMissingIsEmpty)
                    && e.kind() == ConnectorErrorKind::NotFound =>
            {
                Ok(Bytes::new())
            }
            Ok(config) if self.is(StoreMutant::ConfigLossyText) => {
                Ok(Bytes::from(String::from_utf8_lossy(&config).into_owned()))
            }
            other => other,
        }
    }

    async fn ping(&self) -> Result<()> {
        if self.is(StoreMutant::PingFails) {
            return Err(ConnectorError::other("ping refused (mutant)"));
        }
        self.inner.ping().await
    }

    fn mode(&self) -> StoreMode {
        if self.is(StoreMutant::ModeReadOnly) {
            StoreMode::READ
        } else {
            self.inner.mode()
        }
    }

    async fn size(&self) -> Result<i64> {
        match self.mutant {
            Some(StoreMutant::SizeFails) => Err(ConnectorError::other("size unknown (mutant)")),
            Some(StoreMutant::SizeZero) => Ok(0),
            _ => self.inner.size().await,
        }
    }

    async fn list(&self, resource: Resource) -> Result<Vec<Mac>> {
        let mut macs = self.inner.list(resource).await?;
        if self.is(StoreMutant::ListAllResources) {
            for other in Resource::ALL.into_iter().filter(|r| *r != resource) {
                macs.extend(self.inner.list(other).await?);
            }
        }
        match self.mutant {
            Some(StoreMutant::ListWrongMac) => macs.iter_mut().for_each(|m| m.0[31] ^= 1),
            Some(StoreMutant::ListDuplicates) => macs.extend(macs.first().copied()),
            Some(StoreMutant::ListFirstPageOnly) => macs.truncate(16),
            _ => {}
        }
        Ok(macs)
    }

    async fn put(&self, key: ObjectKey, data: ByteStream) -> Result<u64> {
        match self.mutant {
            Some(StoreMutant::PutStoresTruncated) => {
                let seen = Arc::new(AtomicU64::new(0));
                let data = drop_last_byte(counted(data, seen.clone()));
                self.inner.put(key, data).await?;
                Ok(seen.load(Ordering::Relaxed))
            }
            Some(StoreMutant::PutSkipsEmpty) => {
                let mut data = data.peekable();
                if std::pin::Pin::new(&mut data).peek().await.is_none() {
                    return Ok(0);
                }
                self.inner.put(key, data.boxed()).await
            }
            Some(StoreMutant::PutRefusesOver4MiB) => {
                let mut total = 0;
                let data = data.map(move |chunk| {
                    let chunk = chunk?;
                    total += chunk.len();
                    if total > 4 << 20 {
                        return Err(ConnectorError::other("object too large for one request"));
                    }
                    Ok(chunk)
                });
                self.inner.put(key, data.boxed()).await
            }
            Some(StoreMutant::PutKeepsExisting) if self.inner.get(key, None).await.is_ok() => {
                let (data, broke) = until_break(data).await;
                broke.map_or(Ok(data.len() as u64), Err)
            }
            Some(StoreMutant::PutRefusesExisting) if self.inner.get(key, None).await.is_ok() => {
                Err(ConnectorError::already_exists(format!(
                    "{key} already exists"
                )))
            }
            Some(StoreMutant::PutPublishesPartial) => {
                let (good, broke) = until_break(data).await;
                let written = self.inner.put(key, one_chunk(good)).await?;
                broke.map_or(Ok(written), Err)
            }
            Some(StoreMutant::PutSharedSlot) => {
                *self.slot.lock().unwrap() = Some(key.mac);
                // Another call may set the slot meanwhile: the upload goes wherever it says.
                tokio::task::yield_now().await;
                let mac = self.slot.lock().unwrap().unwrap_or(key.mac);
                self.inner.put(key.resource.key(mac), data).await
            }
            _ => self.inner.put(key, data).await,
        }
    }

    async fn get(&self, key: ObjectKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let asked = match (self.mutant, range) {
            (Some(StoreMutant::RangeOneByteShort), Some(r)) if r.length > 0 => Some(ByteRange {
                length: r.length - 1,
                ..r
            }),
            (Some(StoreMutant::ZeroRangeReadsAll), Some(r)) if r.length == 0 => None,
            _ => range,
        };
        let key = if self.is(StoreMutant::GetIgnoresResource) {
            Resource::Packfile.key(key.mac)
        } else {
            key
        };
        match (self.mutant, self.inner.get(key, asked).await) {
            (Some(StoreMutant::GetWrongBytes), Ok(stream)) => Ok(flip_first_byte(stream)),
            (Some(StoreMutant::GetEndsAt4MiB), Ok(stream)) => Ok(cut_after(stream, 4 << 20)),
            (Some(StoreMutant::RangePastEndIsEmpty), Err(e))
                if e.kind() == ConnectorErrorKind::RangeNotSatisfiable =>
            {
                Ok(futures::stream::empty().boxed())
            }
            (Some(StoreMutant::RangePastEndIsNotFound), Err(e))
                if e.kind() == ConnectorErrorKind::RangeNotSatisfiable =>
            {
                Err(rekind(&e, ConnectorErrorKind::NotFound))
            }
            (Some(StoreMutant::MissingIsOther), Err(e))
                if e.kind() == ConnectorErrorKind::NotFound =>
            {
                Err(rekind(&e, ConnectorErrorKind::Other))
            }
            (_, got) => got,
        }
    }

    async fn delete(&self, key: ObjectKey) -> Result<()> {
        if self.is(StoreMutant::DeleteDoesNothing) {
            return Ok(());
        }
        self.inner.delete(key).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// The "large object" of the mutant runs, faithful one included.
const LARGE_OBJECT_BYTES: u64 = 6 << 20;

/// The reference store fixture, its connectors wrapped in a [`MutantStore`].
struct MutantStoreSite {
    inner: StoreSite,
    mutant: Option<StoreMutant>,
    handed: Handed<dyn Store>,
}

impl MutantStoreSite {
    fn new(mutant: Option<StoreMutant>) -> Self {
        Self {
            inner: StoreSite::new(Transport::Direct).expect("store fixture"),
            mutant,
            handed: Handed::default(),
        }
    }
}

#[async_trait]
impl StoreFixture for MutantStoreSite {
    async fn connect(&self) -> Result<Arc<dyn Store>> {
        let inner = self.inner.connect().await?;
        let outer = Arc::new(MutantStore {
            inner: inner.clone(),
            mutant: self.mutant,
            slot: Mutex::default(),
        });
        Ok(self.handed.keep(outer, inner))
    }

    async fn release(&self, store: Arc<dyn Store>) -> Result<()> {
        self.inner.release(self.handed.take(&store)?).await
    }

    async fn add_junk(&self, resource: Resource, name: &str) -> Result<()> {
        self.inner.add_junk(resource, name).await
    }

    async fn remove_junk(&self, resource: Resource, name: &str) -> Result<()> {
        self.inner.remove_junk(resource, name).await
    }

    fn capabilities(&self) -> StoreCapabilities {
        // A smaller "large object" (still over the 4 MiB the size mutants need): some thirty
        // suite runs, in an unoptimised test build. `suites.rs` runs the full size.
        StoreCapabilities {
            large_object_bytes: LARGE_OBJECT_BYTES,
            ..self.inner.capabilities()
        }
    }
}

async fn store_suite(mutant: Option<StoreMutant>) -> SuiteReport {
    let site = MutantStoreSite::new(mutant);
    run_store_suite(&format!("{mutant:?}"), &site).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faithful_store_wrapper_passes_every_case() {
    let report = store_suite(None).await;
    assert_eq!(report.outcomes.len(), store_cases().len());
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_mutant_fails_the_case_it_breaks() {
    let reports = run_each(|m| store_suite(Some(m))).await;
    let cases: Vec<_> = store_cases().iter().map(|c| c.name).collect();
    assert_each_caught::<StoreMutant>(&cases, &reports);
}
