//! The read-ahead of ranged `Get`s against the emulator's request log: a lone range is one
//! request of exactly its length; plakar's restore pattern (per file an object, then the chunk
//! just before it) walking forward through a packfile takes a handful of requests instead of one
//! per `Get`; plakar's lookups elsewhere leave the walk going, three reads there drop it; its
//! reads of directory entries going down, beside the walk or on their own, take a few; the
//! object's end, the budget and `0` (off) hold; a window refused by Koofr fails its `Get` as a
//! plain one does, at the same cost; the same through the plugin binary.

use std::path::PathBuf;

use kloset_plugin::suites::{pattern_bytes, verify_pattern};
use kloset_plugin::{ByteRange, ConnectorErrorKind, Mac, Resource, Store};
use koofr_emulator::{FaultRule, RequestRecord};
use koofr_storage::KoofrStore;
use koofr_storage::readahead::ReadAheadLimits;
use koofr_storage::testkit::{KoofrStoreSite, Transport};
use koofr_testkit::{Site, count};

fn mac(seed: u8) -> Mac {
    Mac([seed; 32])
}

/// A packfile of `len` pattern bytes (seed = `seed`) written straight into the emulator.
fn put_packfile(h: &Site, seed: u8, len: usize) {
    let path = format!("/test/kloset/packfiles/{}", mac(seed).to_hex());
    h.emulator().put_file(
        &path,
        pattern_bytes(u64::from(seed), 0, len),
        1_700_000_000_000,
    );
}

fn store(h: &Site, limits: ReadAheadLimits) -> KoofrStore {
    let site = KoofrStoreSite::new(
        h.client().clone(),
        h.plugin_config(&h.path("kloset").unwrap()),
        Transport::Direct,
    )
    .unwrap();
    let default = KoofrStore::from_init(&site.init_context()).unwrap();
    KoofrStore::with_readahead(default.client().clone(), limits)
}

const DEFAULT: ReadAheadLimits = koofr_storage::config::DEFAULT_READAHEAD;

async fn get_and_verify(store: &dyn Store, seed: u8, offset: u64, length: u32) {
    let stream = store
        .get(
            Resource::Packfile.key(mac(seed)),
            Some(ByteRange { offset, length }),
        )
        .await
        .unwrap();
    verify_pattern(stream, u64::from(seed), offset, u64::from(length))
        .await
        .unwrap_or_else(|e| panic!("{offset}+{length}: {e}"));
}

/// The ranges plakar v1.1.4's restore reads for `files` consecutive 16 KiB files starting at
/// `base`: the object (~200 bytes, just after the chunk), then the chunk, each padded at random
/// by a few bytes.
fn restore_pattern(base: u64, files: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut at = base;
    for i in 0..files {
        let jitter = (i * 37) % 150;
        let chunk = 16_400 + jitter as u32;
        out.push((at + u64::from(chunk) - 60 + jitter, 190 + (i % 9) as u32));
        out.push((at.saturating_sub(jitter), chunk + jitter as u32));
        at += u64::from(chunk) + 200;
    }
    out
}

fn gets(log: &[RequestRecord]) -> Vec<u64> {
    log.iter()
        .filter(|r| r.endpoint == "files/get")
        .map(|r| r.bytes_out)
        .collect()
}

#[tokio::test]
async fn a_lone_range_is_one_request_of_exactly_its_length() {
    let h = Site::start_emulator().await.unwrap();
    put_packfile(&h, 1, 3 << 20);
    let store = store(&h, DEFAULT);
    h.take_requests();
    get_and_verify(&store, 1, 1_234_567, 16_467).await;
    assert_eq!(gets(&h.take_requests()), [16_467]);
    // A second read nearby (as `plakar cat`: an object, then its chunk): still exact.
    get_and_verify(&store, 1, 1_218_000, 16_500).await;
    assert_eq!(gets(&h.take_requests()), [16_500]);
    assert_eq!(store.readahead_held(), (0, 0));
    // Ranges of other objects never count as near.
    put_packfile(&h, 2, 100_000);
    h.take_requests();
    get_and_verify(&store, 2, 50_000, 100).await;
    assert_eq!(gets(&h.take_requests()), [100]);
}

#[tokio::test]
async fn a_forward_walk_takes_far_fewer_requests_than_gets() {
    let h = Site::start_emulator().await.unwrap();
    let size = 8 << 20;
    put_packfile(&h, 3, size);
    let store = store(&h, DEFAULT);
    h.take_requests();
    let ranges = restore_pattern(100_000, 400);
    for (offset, length) in &ranges {
        get_and_verify(&store, 3, *offset, *length).await;
    }
    let log = h.take_requests();
    let requests = count(&log, "files/get");
    assert!(
        requests <= 12,
        "{} Gets took {requests} requests: {:?}",
        ranges.len(),
        gets(&log)
    );
    let walked = ranges.last().map(|(o, l)| o + u64::from(*l)).unwrap() - 100_000;
    let fetched: u64 = gets(&log).iter().sum();
    assert!(
        fetched < walked + 2 * u64::from(DEFAULT.window as u32),
        "{fetched} bytes fetched for a walk over {walked}"
    );
    let (held, objects) = store.readahead_held();
    assert!(
        held <= DEFAULT.budget && objects == 1,
        "{held} bytes, {objects}"
    );
}

#[tokio::test]
async fn reads_elsewhere_leave_the_walk_or_drop_it_and_the_object_end_holds() {
    let h = Site::start_emulator().await.unwrap();
    let size: u64 = 8_000_000;
    put_packfile(&h, 4, size as usize);
    let store = store(&h, DEFAULT);
    for (offset, length) in restore_pattern(0, 40) {
        get_and_verify(&store, 4, offset, length).await;
    }
    assert_eq!(store.readahead_held().1, 1, "the walk holds windows");
    let next = &restore_pattern(0, 44)[80..];
    h.take_requests();
    // At each folder plakar reads two blobs stored elsewhere (a directory's object and its
    // pack), with one read of the walk between them or none: one exact request each, and the
    // walk goes on from its windows.
    for (lookups, (walk_offset, walk_length)) in [
        (vec![(7_000_000, 190)], next[0]),
        (vec![(6_990_000, 10_000)], next[1]),
        (vec![(7_100_000, 190), (7_090_000, 10_000)], next[2]),
        (vec![], next[3]),
    ] {
        for (offset, length) in lookups {
            get_and_verify(&store, 4, offset, length).await;
        }
        get_and_verify(&store, 4, walk_offset, walk_length).await;
    }
    let after = gets(&h.take_requests());
    let exact = [190, 10_000, 190, 10_000];
    assert_eq!(
        after.iter().filter(|n| exact.contains(n)).count(),
        4,
        "{after:?}"
    );
    assert!(
        next[..4]
            .iter()
            .all(|(_, l)| !after.contains(&u64::from(*l))),
        "served from the windows: {after:?}"
    );
    assert_eq!(store.readahead_held().1, 1);
    // Three in a row, near each other: the reads moved on. The windows are dropped and the
    // third starts a walk there, as a walk from nowhere would.
    for offset in [7_500_000, 7_520_000, 7_540_000] {
        get_and_verify(&store, 4, offset, 5_000).await;
    }
    let after = gets(&h.take_requests());
    assert_eq!(
        after.iter().filter(|n| **n == 5_000).count(),
        2,
        "{after:?}"
    );
    assert!(
        after.len() <= 3
            && after
                .iter()
                .any(|n| *n >= koofr_storage::readahead::FIRST_WINDOW),
        "{after:?}"
    );
    let (held, objects) = store.readahead_held();
    assert!(
        objects == 1 && held < 2 * u64::from(DEFAULT.window as u32),
        "{held}"
    );
    // A walk up to the object's end: a Get running past it gets the bytes there are, one
    // starting at the end fails as a plain ranged Get does.
    let ranges = restore_pattern(size - 400_000, 30);
    let inside: Vec<_> = ranges
        .iter()
        .filter(|(o, l)| o + u64::from(*l) <= size)
        .collect();
    for (offset, length) in &inside {
        get_and_verify(&store, 4, *offset, *length).await;
    }
    // That walk goes on to the object's end (its windows, and their extension).
    let walk = gets(&h.take_requests());
    assert!(walk.len() <= 2, "{} Gets took {walk:?}", inside.len());
    let stream = store
        .get(
            Resource::Packfile.key(mac(4)),
            Some(ByteRange {
                offset: size - 1000,
                length: 5000,
            }),
        )
        .await
        .unwrap();
    verify_pattern(stream, 4, size - 1000, 1000).await.unwrap();
    let err = match store
        .get(
            Resource::Packfile.key(mac(4)),
            Some(ByteRange {
                offset: size,
                length: 10,
            }),
        )
        .await
    {
        Ok(stream) => kloset_plugin::suites::read_all(stream).await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ConnectorErrorKind::RangeNotSatisfiable, "{err}");
}

/// The ranges plakar v1.1.4's restore reads of a snapshot's directory entries from `top` down,
/// `entries` of them: each entry (~250 bytes), then the ~2 KiB just below it, a little below
/// the previous entry each time (plakar writes them after the files they list and reads them
/// last first).
fn entries_pattern(top: u64, entries: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut at = top;
    for i in 0..entries {
        let jitter = (i * 53) % 400;
        let below = 1_700 + jitter as u32;
        out.push((at - 250, 181 + (i % 70) as u32));
        out.push((at - 250 - u64::from(below), below + 10));
        at -= 250 + u64::from(below) + 20;
    }
    out
}

#[tokio::test]
async fn entries_read_downwards_take_a_few_requests_beside_the_walk_or_on_their_own() {
    let h = Site::start_emulator().await.unwrap();
    put_packfile(&h, 5, 8 << 20);
    put_packfile(&h, 6, 4 << 20);
    let store = store(&h, DEFAULT);
    h.take_requests();
    // A packfile of files and, at its end, their entries: every three files plakar reads one
    // entry (two ranges), as it does at each folder of a local tree backed up into Koofr.
    let files = restore_pattern(0, 300);
    let entries = entries_pattern(8_300_000, 100);
    let mut lookups = entries.chunks(2);
    for (i, (offset, length)) in files.iter().enumerate() {
        get_and_verify(&store, 5, *offset, *length).await;
        if i % 6 == 5
            && let Some(entry) = lookups.next()
        {
            for (offset, length) in entry {
                get_and_verify(&store, 5, *offset, *length).await;
            }
        }
    }
    let log = h.take_requests();
    let requests = count(&log, "files/get");
    let entry_gets = 2 * (files.len() / 6);
    assert!(
        requests <= 20,
        "{} Gets of files and {entry_gets} of entries took {requests} requests: {:?}",
        files.len(),
        gets(&log)
    );
    // A packfile of entries only, read from its end down.
    let entries = entries_pattern(4 << 20, 400);
    for (offset, length) in &entries {
        get_and_verify(&store, 6, *offset, *length).await;
    }
    let log = h.take_requests();
    let requests = count(&log, "files/get");
    assert!(
        requests <= 8,
        "{} Gets down took {requests} requests: {:?}",
        entries.len(),
        gets(&log)
    );
    let (held, _) = store.readahead_held();
    assert!(held <= DEFAULT.budget, "{held} bytes held");
}

#[tokio::test]
async fn interleaved_walks_stay_within_the_budget_and_zero_turns_it_off() {
    let h = Site::start_emulator().await.unwrap();
    for seed in 10..18 {
        put_packfile(&h, seed, 3 << 20);
    }
    // Eight packfiles read at once, as at `-concurrency 16` from a kloset written at 16.
    let limits = ReadAheadLimits {
        budget: 2 << 20,
        window: 512 << 10,
    };
    let store = store(&h, limits);
    let walks: Vec<Vec<(u64, u32)>> = (0..8).map(|_| restore_pattern(10_000, 120)).collect();
    for step in 0..walks[0].len() {
        for (i, walk) in walks.iter().enumerate() {
            let (offset, length) = walk[step];
            get_and_verify(&store, 10 + i as u8, offset, length).await;
            let (held, _) = store.readahead_held();
            assert!(held <= limits.budget, "{held} bytes held at step {step}");
        }
    }
    let log = h.take_requests();
    let gets_done = 8 * walks[0].len();
    assert!(
        count(&log, "files/get") < gets_done / 4,
        "{} requests for {gets_done} Gets",
        count(&log, "files/get")
    );
    // `readahead_mib = 0`: every Get is one exact request.
    let mut config = h.plugin_config(&h.path("kloset").unwrap());
    config.insert("readahead_mib".to_owned(), "0".to_owned());
    let ctx = kloset_plugin::InitContext {
        proto: "koofr".to_owned(),
        config,
        options: None,
    };
    let off = KoofrStore::from_init(&ctx).unwrap();
    let ranges = restore_pattern(10_000, 20);
    for (offset, length) in &ranges {
        get_and_verify(&off, 10, *offset, *length).await;
    }
    let expected: Vec<u64> = ranges.iter().map(|(_, l)| u64::from(*l)).collect();
    assert_eq!(gets(&h.take_requests()), expected);
}

/// The `Get` of `(offset, length)` of packfile `seed` fails; its error.
async fn get_error(
    store: &dyn Store,
    seed: u8,
    offset: u64,
    length: u32,
) -> kloset_plugin::ConnectorError {
    match store
        .get(
            Resource::Packfile.key(mac(seed)),
            Some(ByteRange { offset, length }),
        )
        .await
    {
        Ok(stream) => kloset_plugin::suites::read_all(stream)
            .await
            .expect_err("the Get should fail"),
        Err(e) => e,
    }
}

/// The endpoints of the requests, in order.
fn endpoints(log: &[RequestRecord]) -> Vec<&'static str> {
    log.iter().map(|r| r.endpoint).collect()
}

#[tokio::test]
async fn a_refused_window_fails_its_get_as_a_plain_get_does_at_the_same_cost() {
    let h = Site::start_emulator().await.unwrap();
    put_packfile(&h, 6, 2 << 20);
    let ranges = restore_pattern(100_000, 10);
    // Without read-ahead: what a Get costs once Koofr refuses the credentials.
    let off = store(
        &h,
        ReadAheadLimits {
            budget: 0,
            window: 1 << 20,
        },
    );
    get_and_verify(&off, 6, ranges[0].0, ranges[0].1).await;
    h.emulator()
        .faults()
        .inject(FaultRule::status("files/get", 401));
    h.take_requests();
    let plain = get_error(&off, 6, ranges[2].0, ranges[2].1).await;
    let plain_log = endpoints(&h.take_requests());
    h.emulator().faults().clear();
    // With it, the third Get starts a walk: its window is refused, and the Get gets that error
    // without another request of its own.
    let on = store(&h, DEFAULT);
    get_and_verify(&on, 6, ranges[0].0, ranges[0].1).await;
    get_and_verify(&on, 6, ranges[1].0, ranges[1].1).await;
    h.emulator()
        .faults()
        .inject(FaultRule::status("files/get", 401));
    h.take_requests();
    let err = get_error(&on, 6, ranges[2].0, ranges[2].1).await;
    let log = h.take_requests();
    assert!(plain.is_fatal() && err.is_fatal(), "{plain:?} / {err:?}");
    assert_eq!((err.kind(), err.message()), (plain.kind(), plain.message()));
    assert_eq!(endpoints(&log), plain_log, "{log:?}");
    assert!(
        log.iter()
            .any(|r| r.endpoint == "files/get" && r.status == 401),
        "the window was refused: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_binary_a_lone_range_is_exact_and_a_walk_is_read_ahead() {
    let h = Site::start_emulator().await.unwrap();
    put_packfile(&h, 5, 4 << 20);
    let site = KoofrStoreSite::new(
        h.client().clone(),
        h.plugin_config(&h.path("kloset").unwrap()),
        Transport::Binary(PathBuf::from(env!("CARGO_BIN_EXE_koofr-storage"))),
    )
    .unwrap();
    let remote = site.connect_remote().await.unwrap();
    h.take_requests();
    get_and_verify(&remote, 5, 3_000_000, 16_467).await;
    assert_eq!(gets(&h.take_requests()), [16_467]);
    let ranges = restore_pattern(200_000, 150);
    for (offset, length) in &ranges {
        get_and_verify(&remote, 5, *offset, *length).await;
    }
    let requests = count(&h.take_requests(), "files/get");
    assert!(
        requests <= 10,
        "{} Gets took {requests} requests",
        ranges.len()
    );
    assert_eq!(remote.plugin().shutdown().await.unwrap(), 0);
}
