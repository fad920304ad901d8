//! Emulator-only tests: retries and `Retry-After`, authentication failures and renewal
//! (token and OAuth2), truncated and dropped bodies, download resume, upload aborts, stalls,
//! races, quota, offline devices and mount selection, asserted through the request log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use koofr_core::{
    ApiVersion, AuthConfig, Client, Download, ErrorKind, FileInfo, KoofrConfig, KoofrPath,
    ListEntry, Mount, MountSelector, OAuthRefresh, OverwritePolicy, RetryPolicy, Secret, Timeouts,
    UploadBody, UploadOptions,
};
use koofr_emulator::{Emulator, EmulatorConfig, FaultAction, FaultRule};
use koofr_testkit::{Site, collect, content, count, emulator_config};

fn p(s: &str) -> KoofrPath {
    KoofrPath::parse(s).unwrap()
}

/// Injects `rule` into `h`'s emulator.
fn inject(h: &Site, rule: FaultRule) {
    h.emulator().faults().inject(rule);
}

/// Makes `rule` the only fault of `h`'s emulator.
fn inject_only(h: &Site, rule: FaultRule) {
    h.emulator().faults().clear();
    inject(h, rule);
}

/// Every item of a recursive listing of `path` through `client`.
async fn list_all(client: &Client, path: &KoofrPath) -> Vec<koofr_core::Result<ListEntry>> {
    client.list_recursive(path).await.unwrap().collect().await
}

/// One `info` of `h`'s base while `rule` is the only fault: its outcome and its requests.
async fn info_after(
    h: &Site,
    rule: FaultRule,
) -> (koofr_core::Result<koofr_core::FileInfo>, usize) {
    inject_only(h, rule);
    h.take_requests();
    let outcome = h.client().info(h.base()).await;
    (outcome, count(&h.take_requests(), "files/info"))
}

/// `callers` concurrent `info`s of the root through clones of `client`, each succeeding.
async fn concurrent_infos(client: &Client, callers: usize) {
    let calls = (0..callers).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.info(&KoofrPath::root()).await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
}

/// An upload of `body` as `parent/name` with the default options.
async fn upload(
    client: &Client,
    parent: &KoofrPath,
    name: &str,
    body: impl Into<UploadBody>,
) -> koofr_core::Result<FileInfo> {
    client
        .upload(parent, name, body.into(), UploadOptions::default())
        .await
}

/// One upload of `body` as `name` into `h`'s base with `rule` injected: its outcome and its
/// `files/put` requests.
async fn upload_after(
    h: &Site,
    rule: FaultRule,
    name: &str,
    body: UploadBody,
    options: UploadOptions,
) -> (koofr_core::Result<FileInfo>, usize) {
    inject(h, rule);
    h.take_requests();
    let outcome = h.client().upload(h.base(), name, body, options).await;
    (outcome, count(&h.take_requests(), "files/put"))
}

/// Stores `data` at `path` on `h`'s emulator, then starts a download of it whose first
/// response is cut after `cut` bytes (the request log emptied before).
async fn download_cut(h: &Site, path: &str, data: &Bytes, cut: u64) -> Download {
    h.emulator().put_file(path, data.clone(), 1);
    inject(h, FaultRule::truncate_body("files/get", cut));
    h.take_requests();
    h.client().download(&p(path)).await.unwrap()
}

/// The basic-auth config of `emu`'s account with `password` instead of its own.
fn basic_config(emu: &Emulator, password: &str) -> KoofrConfig {
    KoofrConfig::basic(&emu.endpoint(), emu.email(), password)
        .unwrap()
        .with_retry(koofr_testkit::test_retry())
}

/// The token-auth config of `emu`'s account with `password`.
fn token_config(emu: &Emulator, password: &str) -> KoofrConfig {
    emulator_config(emu).with_auth(AuthConfig::Token {
        username: emu.email().to_owned(),
        password: Secret::new(password),
    })
}

/// The mounts of `emu`'s account.
async fn mounts(emu: &Emulator) -> Vec<Mount> {
    Client::new(emulator_config(emu))
        .unwrap()
        .mounts()
        .await
        .unwrap()
}

#[tokio::test]
async fn transient_statuses_are_retried() {
    let h = Site::start_emulator().await.unwrap();
    for status in [500, 502, 503, 504, 499, 429, 408] {
        let (outcome, requests) =
            info_after(&h, FaultRule::status("files/info", status).times(2)).await;
        outcome.unwrap_or_else(|e| panic!("status {status}: {e}"));
        assert_eq!(requests, 3, "status {status}");
    }
}

#[tokio::test]
async fn retries_run_out_into_a_permanent_error_naming_the_attempts() {
    let h = Site::start_emulator().await.unwrap();
    inject(&h, FaultRule::status("files/list", 503).times(100));
    let err = h.client().list(h.base()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(!err.is_temporary());
    assert_eq!(err.attempts(), 4);
    assert!(
        err.to_string().contains("4 attempts") && err.to_string().contains("/test"),
        "{err}"
    );
    assert_eq!(count(&h.take_requests(), "files/list"), 4);
    // Permanent statuses are never retried.
    for status in [400, 403, 404, 409, 413] {
        let (outcome, requests) =
            info_after(&h, FaultRule::status("files/info", status).times(5)).await;
        let err = outcome.unwrap_err();
        assert!(!err.is_temporary(), "{status}: {err}");
        assert_eq!(requests, 1, "status {status}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = Site::start_emulator().await.unwrap();
    inject(&h, FaultRule::status("files/info", 429).retry_after(1));
    let started = Instant::now();
    h.client().info(h.base()).await.unwrap();
    // A lower bound only: the client waited for the server's Retry-After instead of ~1 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&h.take_requests(), "files/info"), 2);
}

#[tokio::test]
async fn login_throttle_is_not_retried() {
    let h = Site::start_emulator().await.unwrap();
    inject(
        &h,
        FaultRule::status("files/info", 429)
            .body("Too many login retries")
            .times(5),
    );
    let err = h.client().info(h.base()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(!err.is_temporary());
    assert_eq!(count(&h.take_requests(), "files/info"), 1);
}

#[tokio::test]
async fn wrong_password_is_one_request_and_one_clear_error() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = Client::new(basic_config(&emu, "WRONG-PASSWORD")).unwrap();
    let err = client.info(&p("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert!(!err.is_temporary());
    let text = err.to_string();
    assert!(
        text.contains("authentication failed (check the e-mail and application password)"),
        "{text}"
    );
    assert!(!text.contains("WRONG-PASSWORD") && !format!("{err:?}").contains("WRONG-PASSWORD"));
    assert!(!format!("{client:?}").contains("WRONG-PASSWORD"));
    assert_eq!(emu.requests().len(), 1);
}

#[tokio::test]
async fn token_login_is_shared_and_renewed_once_after_expiry() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = Client::new(token_config(&emu, emu.password())).unwrap();
    concurrent_infos(&client, 16).await;
    let requests = emu.requests();
    assert_eq!(
        count(&requests, "token"),
        1,
        "one login for 16 concurrent callers"
    );
    emu.clear_requests();

    emu.faults().expire_tokens();
    concurrent_infos(&client, 16).await;
    let requests = emu.requests();
    assert_eq!(
        count(&requests, "token"),
        1,
        "one renewal for all callers: {requests:?}"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.endpoint == "files/info" && r.status == 200)
            .count(),
        16
    );

    // An upload whose token expired is sent again (its body is replayable) after one renewal.
    emu.faults().expire_tokens();
    emu.clear_requests();
    let info = upload(
        &client,
        &KoofrPath::root(),
        "after-expiry.bin",
        content(5, 300_000),
    )
    .await
    .unwrap();
    assert_eq!(info.size, 300_000);
    assert_eq!(
        emu.read_file("/after-expiry.bin").unwrap(),
        content(5, 300_000)
    );
    let requests = emu.requests();
    assert_eq!(count(&requests, "token"), 1, "{requests:?}");
    assert_eq!(count(&requests, "files/put"), 2, "{requests:?}");

    // A wrong password in token mode: one login attempt, a clear error.
    emu.clear_requests();
    let err = Client::new(token_config(&emu, "nope"))
        .unwrap()
        .info(&KoofrPath::root())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(err.to_string().contains("application password"), "{err}");
    assert_eq!(emu.requests().len(), 1);
}

#[tokio::test]
async fn oauth_access_token_is_refreshed_once_after_a_401() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tokens = emu.issue_oauth_tokens();
    let (client_id, client_secret) = emu.oauth_client();
    let config = emulator_config(&emu).with_auth(AuthConfig::OAuth {
        access_token: Secret::new(tokens.access_token.clone()),
        refresh: Some(OAuthRefresh {
            refresh_token: Secret::new(tokens.refresh_token.clone()),
            client_id,
            client_secret: Secret::new(client_secret),
        }),
    });
    let client = Client::new(config).unwrap();
    client.info(&KoofrPath::root()).await.unwrap();
    assert_eq!(count(&emu.requests(), "oauth2/token"), 0);
    emu.faults().expire_tokens();
    emu.clear_requests();
    concurrent_infos(&client, 8).await;
    assert_eq!(
        count(&emu.requests(), "oauth2/token"),
        1,
        "{:?}",
        emu.requests()
    );
    let debug = format!("{client:?}");
    assert!(!debug.contains(&tokens.access_token) && !debug.contains(&tokens.refresh_token));

    // Without a refresh token an expired access token is a clear, permanent failure.
    let tokens = emu.issue_oauth_tokens();
    let bare = emulator_config(&emu).with_auth(AuthConfig::OAuth {
        access_token: Secret::new(tokens.access_token),
        refresh: None,
    });
    let bare = Client::new(bare).unwrap();
    bare.info(&KoofrPath::root()).await.unwrap();
    emu.faults().expire_tokens();
    let err = bare.info(&KoofrPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
}

#[tokio::test]
async fn truncated_download_resumes_with_a_range() {
    let h = Site::start_emulator().await.unwrap();
    let data = content(9, 500_000);
    let download = download_cut(&h, "/test/big.bin", &data, 123_457).await;
    assert_eq!(collect(download.stream).await.unwrap(), data);
    let gets = count(&h.take_requests(), "files/get");
    assert_eq!(gets, 2, "the whole download plus one resumed range");

    // The same for a ranged read.
    inject(&h, FaultRule::truncate_body("files/get", 10_000));
    let got = collect(
        h.client()
            .download_range(&p("/test/big.bin"), 100_000, 300_000)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(got, &data[100_000..400_000]);
    assert_eq!(count(&h.take_requests(), "files/get"), 2);

    // A dropped connection before any byte is retried too.
    inject(&h, FaultRule::drop_connection("files/get"));
    let download = h.client().download(&p("/test/big.bin")).await.unwrap();
    assert_eq!(collect(download.stream).await.unwrap(), data);
}

#[tokio::test]
async fn a_file_changed_during_a_resume_is_an_integrity_error() {
    let h = Site::start_emulator().await.unwrap();
    let download = download_cut(&h, "/test/changing.bin", &content(1, 2_000_000), 1_500_000).await;
    let mut stream = download.stream;
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    h.emulator()
        .put_file("/test/changing.bin", content(2, 2_000_000), 2);
    let mut result = Ok(());
    while let Some(chunk) = stream.next().await {
        if let Err(e) = chunk {
            result = Err(e);
            break;
        }
    }
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("changed"), "{err}");
}

#[tokio::test]
async fn a_truncated_listing_is_resumed_without_duplicates() {
    let h = Site::start_emulator().await.unwrap();
    for i in 0..400 {
        h.emulator()
            .put_file(&format!("/test/d/f{i:03}.txt"), vec![b'x'; i], 1);
    }
    let paths = |items: Vec<koofr_core::Result<ListEntry>>| -> Vec<String> {
        items
            .into_iter()
            .map(|item| match item {
                Ok(ListEntry::File { path, .. }) => path.as_str().to_owned(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let reference = paths(list_all(h.client(), &p("/test/d")).await);
    assert_eq!(reference.len(), 401);
    for cut in [700, 40_000] {
        h.take_requests();
        inject(&h, FaultRule::truncate_body("files/listrecursive", cut));
        let items = list_all(h.client(), &p("/test/d")).await;
        // Wherever the cut falls, the listing is requested again and continues where it broke.
        assert_eq!(paths(items), reference, "cut after {cut} bytes");
        assert_eq!(count(&h.take_requests(), "files/listrecursive"), 2);
    }
    // A listing that keeps breaking gives up after the policy's attempts, as a transport error.
    inject(
        &h,
        FaultRule::truncate_body("files/listrecursive", 700).times(20),
    );
    let items = list_all(h.client(), &p("/test/d")).await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert!(!err.is_temporary(), "{err}");
}

#[tokio::test]
async fn aborted_uploads_are_retried_only_when_safe() {
    let h = Site::start_emulator().await.unwrap();
    let data = content(4, 400_000);
    let aborted = || FaultRule::abort_upload(100_000);
    // Replayable + overwrite: retried, and the stored content is complete.
    let bytes = UploadBody::Bytes(data.clone());
    let (info, puts) = upload_after(&h, aborted(), "a.bin", bytes, Default::default()).await;
    assert_eq!(info.unwrap().size, data.len() as u64);
    assert_eq!(h.emulator().read_file("/test/a.bin").unwrap(), data);
    assert_eq!(puts, 2);

    // A one-shot stream is never retried, and nothing is stored.
    let stream =
        futures::stream::iter(vec![Ok(data.slice(..200_000)), Ok(data.slice(200_000..))]).boxed();
    let stream = UploadBody::Stream(stream);
    let (err, puts) = upload_after(&h, aborted(), "b.bin", stream, Default::default()).await;
    let err = err.unwrap_err();
    assert!(err.kind() == ErrorKind::Transport, "{err}");
    assert!(h.emulator().stat("/test/b.bin").is_none());
    assert_eq!(puts, 1);

    // Autorename is never retried (a retry could create `c (1).bin`).
    let opts = UploadOptions {
        policy: OverwritePolicy::Autorename,
        ..Default::default()
    };
    let refused = FaultRule::status("files/put", 503);
    let bytes = UploadBody::Bytes(data.clone());
    let (err, puts) = upload_after(&h, refused, "c.bin", bytes, opts).await;
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Server);
    assert_eq!(puts, 1);

    // A replayable closure is called again for the retry.
    let opened = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (source, counter) = (data.clone(), opened.clone());
    let replay: koofr_core::ReplayFn = Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        futures::stream::iter(vec![Ok(source.clone())]).boxed()
    });
    let refused = FaultRule::status("files/put", 502);
    let replay = UploadBody::Replayable(replay);
    let (info, _) = upload_after(&h, refused, "d.bin", replay, Default::default()).await;
    info.unwrap();
    assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stalled_requests_fail_and_are_retried() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let config = emulator_config(&emu).with_timeouts(Timeouts {
        connect: Duration::from_secs(5),
        stall: Duration::from_millis(300),
    });
    let client = Client::new(config).unwrap();
    emu.faults()
        .inject(FaultRule::delay("files/info", Duration::from_secs(3)));
    client.info(&KoofrPath::root()).await.unwrap();
    assert_eq!(count(&emu.requests(), "files/info"), 2);

    emu.faults()
        .inject(FaultRule::delay("files/info", Duration::from_secs(3)).times(10));
    let err = client.info(&KoofrPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert!(err.to_string().contains("stalled"), "{err}");
}

#[tokio::test]
async fn a_folder_removed_by_another_client_is_created_again() {
    let h = Site::start_emulator().await.unwrap();
    let dir = p("/test/gone/deeper");
    h.client().create_folder_all(&dir).await.unwrap();
    upload(h.client(), &dir, "a", Bytes::from_static(b"1"))
        .await
        .unwrap();
    // Someone else removes the folder behind this client's back.
    assert!(h.emulator().remove("/test/gone"));
    let err = upload(h.client(), &dir, "b", Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // The 404 dropped the stale cache entry: the folder is created again, and the upload works.
    h.take_requests();
    h.client().create_folder_all(&dir).await.unwrap();
    assert!(count(&h.take_requests(), "files/folder") >= 1);
    upload(h.client(), &dir, "b", Bytes::from_static(b"2"))
        .await
        .unwrap();
    assert_eq!(h.emulator().read_file("/test/gone/deeper/b").unwrap(), b"2");
}

#[tokio::test]
async fn folder_creation_races_are_tolerated() {
    let h = Site::start_emulator().await.unwrap();
    h.emulator().faults().race_folder_create(3);
    h.client()
        .create_folder_all(&p("/test/r1/r2/r3"))
        .await
        .unwrap();
    assert!(h.emulator().stat("/test/r1/r2/r3").unwrap().is_dir);

    h.emulator().faults().race_folder_create(16);
    let target = p("/test/many/x");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = Client::new(h.client().config().clone()).unwrap();
            let target = target.clone();
            tokio::spawn(async move { client.create_folder_all(&target).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(h.emulator().stat("/test/many/x").unwrap().is_dir);

    // Known folders are cached: creating again makes no request; an upload into it is one.
    h.take_requests();
    h.client()
        .create_folder_all(&p("/test/r1/r2/r3"))
        .await
        .unwrap();
    upload(h.client(), &p("/test/r1/r2/r3"), "f", b"1".to_vec())
        .await
        .unwrap();
    let requests = h.take_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
}

#[tokio::test]
async fn quota_offline_device_and_missing_hashes() {
    let h = Site::start_emulator().await.unwrap();
    h.emulator().faults().set_quota(1000);
    let err = upload(h.client(), h.base(), "big", vec![0u8; 5000])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExceeded, "{err}");
    assert!(!err.is_temporary());
    h.emulator().faults().set_quota(10 << 30);

    h.emulator()
        .put_file("/test/nohash/f.bin", content(1, 1000), 1);
    h.emulator().faults().omit_hash("/test/nohash");
    let download = h.client().download(&p("/test/nohash/f.bin")).await.unwrap();
    assert_eq!(download.info.hash, None);
    assert_eq!(collect(download.stream).await.unwrap(), content(1, 1000));
    let info = upload(h.client(), &p("/test/nohash"), "g.bin", content(1, 10))
        .await
        .unwrap();
    assert_eq!(info.hash, None);

    h.emulator()
        .faults()
        .set_mount_offline(&h.emulator().primary_mount_id(), true);
    h.take_requests();
    let err = h.client().info(h.base()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeviceOffline, "{err}");
    assert_eq!(
        err.attempts(),
        4,
        "an offline device is temporary, so it was retried"
    );
    h.emulator()
        .faults()
        .set_mount_offline(&h.emulator().primary_mount_id(), false);
    h.client().info(h.base()).await.unwrap();
}

#[tokio::test]
async fn mount_selection_by_id_and_name() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mounts = mounts(&emu).await;
    let secondary = mounts
        .iter()
        .find(|m| m.id == emu.secondary_mount_id())
        .expect("secondary mount listed");

    let by_id = Client::new(
        emulator_config(&emu).with_mount(MountSelector::IdOrName(secondary.id.clone())),
    )
    .unwrap();
    assert_eq!(by_id.mount_id().await.unwrap(), secondary.id);
    assert_eq!(
        count(&emu.requests(), "mounts"),
        1,
        "an id is used without listing"
    );
    assert_eq!(by_id.mount_info().await.unwrap().id, secondary.id);

    let by_name = Client::new(
        emulator_config(&emu).with_mount(MountSelector::IdOrName(secondary.name.to_uppercase())),
    )
    .unwrap();
    assert_eq!(by_name.mount_id().await.unwrap(), secondary.id);
    let missing =
        Client::new(emulator_config(&emu).with_mount(MountSelector::IdOrName("No such".into())))
            .unwrap();
    let err = missing.info(&KoofrPath::root()).await.unwrap_err();
    assert!(
        err.is_not_found() && err.to_string().contains("No such"),
        "{err}"
    );

    // Files on the secondary mount are separate from the primary's.
    upload(
        &by_id,
        &KoofrPath::root(),
        "on-secondary.txt",
        b"2".to_vec(),
    )
    .await
    .unwrap();
    assert!(emu.stat("/on-secondary.txt").is_none());
}

#[tokio::test]
async fn api_v2_1_statuses_map_to_the_same_kinds() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = Client::new(emulator_config(&emu).with_api_version(ApiVersion::V2_1)).unwrap();
    client.create_folder_all(&p("/v21/a")).await.unwrap();
    let err = client.create_folder(&p("/v21"), "A").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(err.status(), Some(409));
    upload(&client, &p("/v21"), "f", b"x".to_vec())
        .await
        .unwrap();
    let opts = UploadOptions {
        policy: OverwritePolicy::ErrorIfExists,
        ..Default::default()
    };
    let err = client
        .upload(&p("/v21"), "f", b"y".to_vec().into(), opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        emu.requests()
            .iter()
            .all(|r| r.api_version == "v2.1" || r.api_version.is_empty())
    );
    // A permissive server (non-BMP allowed) still never receives emoji names from the client.
    let mut config = EmulatorConfig::default();
    config.reject_non_bmp = false;
    let permissive = Emulator::start(config).await.unwrap();
    let client = Client::new(emulator_config(&permissive)).unwrap();
    let err = client
        .create_folder(&KoofrPath::root(), "\u{1F600}")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(permissive.requests().is_empty());
}

#[tokio::test]
async fn concurrency_limit_holds_permits_until_bodies_are_consumed() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.put_file("/a.bin", content(1, 10), 1);
    emu.put_file("/b.bin", content(2, 10), 1);
    let client = Client::new(emulator_config(&emu).with_concurrency(1)).unwrap();
    let first = client.download(&p("/a.bin")).await.unwrap();
    // With one permit held by `first`'s body, a second transfer must wait for it.
    let second =
        tokio::time::timeout(Duration::from_millis(300), client.download(&p("/b.bin"))).await;
    assert!(
        second.is_err(),
        "the second transfer started while the first held the only permit"
    );
    assert_eq!(collect(first.stream).await.unwrap(), content(1, 10));
    let second = client.download(&p("/b.bin")).await.unwrap();
    assert_eq!(collect(second.stream).await.unwrap(), content(2, 10));
}

#[tokio::test]
async fn request_counts_per_operation() {
    let h = Site::start_emulator().await.unwrap();
    let client = h.client();
    let mut report = Vec::new();
    macro_rules! measure {
        ($name:expr, $op:expr) => {{
            h.take_requests();
            let value = $op;
            let requests = h.take_requests();
            report.push(format!("{:<34} {}", $name, requests.len()));
            (value, requests.len())
        }};
    }
    measure!("user", client.user().await.unwrap());
    measure!("mounts", client.mounts().await.unwrap());
    measure!("mount_info", client.mount_info().await.unwrap());
    measure!("info", client.info(h.base()).await.unwrap());
    measure!("list", client.list(h.base()).await.unwrap());
    let (_, n) = measure!(
        "create_folder_all (3 new levels)",
        client.create_folder_all(&p("/test/x/y/z")).await.unwrap()
    );
    assert_eq!(n, 1 + 1 + 3, "info(full), info(/test/x), then 3 creates");
    let (_, n) = measure!(
        "create_folder_all (cached)",
        client.create_folder_all(&p("/test/x/y/z")).await.unwrap()
    );
    assert_eq!(n, 0);
    let fresh = Client::new(h.client().config().clone()).unwrap();
    let (_, n) = measure!(
        "create_folder_all (exists, uncached)",
        fresh.create_folder_all(&p("/test/x/y/z")).await.unwrap()
    );
    assert_eq!(n, 1);
    let (_, n) = measure!(
        "upload (known folder)",
        upload(client, &p("/test/x/y/z"), "f.bin", content(1, 1000))
            .await
            .unwrap()
    );
    assert_eq!(n, 1);
    let file = p("/test/x/y/z/f.bin");
    let (_, n) = measure!(
        "download (whole, verified)",
        collect(client.download(&file).await.unwrap().stream)
            .await
            .unwrap()
    );
    assert_eq!(n, 1);
    let (_, n) = measure!(
        "download_range",
        collect(client.download_range(&file, 10, 100).await.unwrap())
            .await
            .unwrap()
    );
    assert_eq!(n, 1);
    let (_, n) = measure!("list_recursive", list_all(client, h.base()).await);
    assert_eq!(n, 1);
    measure!(
        "copy",
        client.copy(&file, &p("/test/x/g.bin"), None).await.unwrap()
    );
    measure!(
        "move_to",
        client
            .move_to(&p("/test/x/g.bin"), &p("/test/x/h.bin"))
            .await
            .unwrap()
    );
    let (_, n) = measure!(
        "move_to (case only)",
        client
            .move_to(&p("/test/x/h.bin"), &p("/test/x/H.bin"))
            .await
            .unwrap()
    );
    assert_eq!(n, 2);
    measure!(
        "rename",
        client.rename(&p("/test/x/H.bin"), "i.bin").await.unwrap()
    );
    measure!("remove", client.remove(&p("/test/x")).await.unwrap());
    eprintln!(
        "HTTP requests per operation (emulator request log):\n{}",
        report.join("\n")
    );
}

#[tokio::test]
async fn plakar_config_reaches_the_emulator() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let map = std::collections::HashMap::from([
        ("location".to_owned(), "koofr://backups/plakar".to_owned()),
        ("endpoint".to_owned(), format!("{}/", emu.endpoint())),
        ("passphrase".to_owned(), "ignored".to_owned()),
    ]);
    let (email, password) = (emu.email().to_owned(), emu.password().to_owned());
    let env = move |name: &str| match name {
        "KOOFR_USERNAME" => Some(email.clone()),
        "KOOFR_PASSWORD" => Some(password.clone()),
        _ => None,
    };
    let (config, warnings) = KoofrConfig::from_map(&map, &env).unwrap();
    assert!(warnings.is_empty());
    let client = Client::new(config.with_retry(RetryPolicy::fast_for_tests(2))).unwrap();
    let location = client.config().location().clone();
    client.create_folder_all(&location).await.unwrap();
    assert!(emu.stat("/backups/plakar").unwrap().is_dir);
}

#[allow(dead_code)]
fn unused(_: FaultAction) {}

/// Overwrites the single blob an emulator stored under `data_dir` with same-sized other bytes,
/// so that only the MD5 check can notice.
fn corrupt_only_blob(data_dir: &std::path::Path, seed: u64) {
    let blobs: Vec<_> = std::fs::read_dir(data_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let len = std::fs::metadata(&blobs[0]).unwrap().len() as usize;
    std::fs::write(&blobs[0], content(seed, len)).unwrap();
}

#[tokio::test]
async fn a_corrupted_download_ends_with_an_md5_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::default();
    config.data_dir = Some(dir.path().to_owned());
    let emu = Emulator::start(config).await.unwrap();
    let client = Client::new(emulator_config(&emu)).unwrap();
    let data = content(1, 3_000_000);
    emu.put_file("/test/corrupt.bin", data.clone(), 1);
    // Intact, the MD5 verified off the forwarding task agrees.
    let download = client.download(&p("/test/corrupt.bin")).await.unwrap();
    assert_eq!(collect(download.stream).await.unwrap(), data);

    corrupt_only_blob(dir.path(), 2);
    let download = client.download(&p("/test/corrupt.bin")).await.unwrap();
    let mut stream = download.stream;
    let mut delivered = 0;
    let err = loop {
        match stream.next().await {
            Some(Ok(chunk)) => delivered += chunk.len(),
            Some(Err(e)) => break e,
            None => panic!("a corrupted download ended without an error"),
        }
    };
    // Every byte came through, and the end of the stream turned into the error.
    assert_eq!(delivered, data.len());
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("MD5 mismatch"), "{err}");
    assert!(err.to_string().contains("/test/corrupt.bin"), "{err}");
    assert!(stream.next().await.is_none());

    // Same through a resume: the hash spans both responses.
    emu.faults()
        .inject(FaultRule::truncate_body("files/get", 1_000_000));
    let download = client.download(&p("/test/corrupt.bin")).await.unwrap();
    let err = collect(download.stream).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains("MD5 mismatch"), "{err}");
    assert_eq!(count(&emu.requests(), "files/get"), 4);
}

/// A client of `emu` whose policy allows `attempts` requests per operation.
fn client_with_attempts(emu: &koofr_emulator::Emulator, attempts: u32) -> Client {
    Client::new(emulator_config(emu).with_retry(RetryPolicy::fast_for_tests(attempts))).unwrap()
}

#[tokio::test]
async fn one_retry_budget_covers_a_download_or_listing_and_all_its_resumes() {
    let h = Site::start_emulator().await.unwrap();
    let client = client_with_attempts(h.emulator(), 3);
    let data = content(4, 200_000);
    h.emulator().put_file("/test/cut.bin", data.clone(), 1);
    for i in 0..50 {
        h.emulator()
            .put_file(&format!("/test/d/f{i:02}"), vec![b'x'; 10], 1);
    }

    // Every response is cut: at most 3 requests for the whole download, then one error.
    inject(&h, FaultRule::truncate_body("files/get", 1000).times(20));
    h.take_requests();
    let download = client.download(&p("/test/cut.bin")).await.unwrap();
    let err = collect(download.stream).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert_eq!((err.attempts(), err.is_temporary()), (3, false), "{err}");
    assert_eq!(count(&h.take_requests(), "files/get"), 3);
    let err = collect(
        client
            .download_range(&p("/test/cut.bin"), 5000, 100_000)
            .await
            .unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.attempts(), 3, "{err}");
    assert_eq!(count(&h.take_requests(), "files/get"), 3);

    // A cut that is followed by refused resumes still counts against the same budget.
    inject_only(&h, FaultRule::truncate_body("files/get", 1000));
    inject(&h, FaultRule::status("files/get", 503).skip(1).times(20));
    let download = client.download(&p("/test/cut.bin")).await.unwrap();
    let err = collect(download.stream).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    assert_eq!(count(&h.take_requests(), "files/get"), 3);

    // The same for a listing cut again and again.
    inject_only(
        &h,
        FaultRule::truncate_body("files/listrecursive", 300).times(20),
    );
    let items: Vec<_> = list_all(&client, &p("/test/d")).await;
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(
        (err.kind(), err.attempts()),
        (ErrorKind::Transport, 3),
        "{err}"
    );
    assert_eq!(count(&h.take_requests(), "files/listrecursive"), 3);

    // Within the budget, a cut listing and download still complete.
    inject_only(
        &h,
        FaultRule::truncate_body("files/listrecursive", 300).times(2),
    );
    let items: Vec<_> = list_all(&client, &p("/test/d")).await;
    assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 51);
    assert_eq!(count(&h.take_requests(), "files/listrecursive"), 3);
}

/// A basic-auth client of `endpoint` whose policy allows 8 attempts, more than connecting gets.
fn client_allowing_8_attempts(endpoint: &str, email: &str, password: &str) -> Client {
    let config = KoofrConfig::basic(endpoint, email, password).unwrap();
    Client::new(config.with_retry(RetryPolicy::fast_for_tests(8))).unwrap()
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_after_a_few_attempts_naming_the_cause() {
    // A port that was just free: connecting to it is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = client_allowing_8_attempts(&endpoint, "me@example.com", "pw");
    for err in [
        client.info(&p("/x")).await.unwrap_err(),
        client.mount_info().await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
        assert_eq!(
            err.attempts(),
            3,
            "a short budget, not the policy's 8: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("cannot connect to {endpoint}: connection refused")),
            "{text}"
        );
        assert!(!text.contains("error sending request"), "{text}");
    }

    // TLS spoken to a plain HTTP server: a TLS error, with the same short budget.
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let tls = emu.endpoint().replace("http://", "https://");
    let err = client_allowing_8_attempts(&tls, emu.email(), emu.password())
        .info(&p("/"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.attempts()),
        (ErrorKind::Unreachable, 3),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("cannot connect to {tls}: TLS error")),
        "{err}"
    );

    // A host name that does not resolve (`.invalid` never does).
    let err = client_allowing_8_attempts("https://koofr.invalid", "me@example.com", "pw")
        .info(&p("/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("no such host"), "{err}");
}

#[tokio::test]
async fn refused_credentials_are_never_sent_again() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    for config in [basic_config(&emu, "WRONG"), token_config(&emu, "WRONG")] {
        emu.clear_requests();
        let client = Client::new(config).unwrap();
        let calls = (0..4).map(|_| {
            let client = client.clone();
            async move { client.info(&KoofrPath::root()).await }
        });
        // Concurrent callers, then later ones: the credentials were refused once, for all.
        let mut errors: Vec<_> = futures::future::join_all(calls).await;
        errors.push(
            client
                .list(&KoofrPath::root())
                .await
                .map(|_| unreachable!()),
        );
        errors.push(client.check_mount().await.map(|_| unreachable!()));
        for err in errors {
            let err = err.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
            assert!(err.to_string().contains("application password"), "{err}");
        }
        let refused = emu.requests().iter().filter(|r| r.status == 401).count();
        assert!(
            refused <= 1 && !emu.requests().is_empty(),
            "{:?}",
            emu.requests()
        );
    }
}

#[tokio::test]
async fn mounts_are_chosen_by_name_from_places_on_v2_1() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let name = mounts(&emu)
        .await
        .into_iter()
        .find(|m| m.id == emu.secondary_mount_id())
        .unwrap()
        .name;
    let by_name = || {
        Client::new(
            emulator_config(&emu)
                .with_api_version(ApiVersion::V2_1)
                .with_mount(MountSelector::IdOrName(name.clone())),
        )
        .unwrap()
    };
    emu.clear_requests();
    let checked = by_name().check_mount().await.unwrap();
    assert_eq!(checked.id, emu.secondary_mount_id());
    let requests = emu.requests();
    assert_eq!(requests.len(), 1, "one request checks it all: {requests:?}");
    assert_eq!(
        (requests[0].endpoint, requests[0].api_version),
        ("places", "v2.1")
    );

    // Where `places` is missing, the mounts listing is used instead.
    emu.faults().inject(FaultRule::status("places", 404));
    emu.clear_requests();
    assert_eq!(
        by_name().mount_id().await.unwrap(),
        emu.secondary_mount_id()
    );
    let endpoints: Vec<&str> = emu.requests().into_iter().map(|r| r.endpoint).collect();
    assert_eq!(endpoints, ["places", "mounts"]);

    // An offline mount and a missing one fail the check with one request each.
    emu.faults()
        .set_mount_offline(&emu.secondary_mount_id(), true);
    emu.clear_requests();
    let err = by_name().check_mount().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeviceOffline, "{err}");
    assert!(err.to_string().contains("offline"), "{err}");
    let missing =
        Client::new(emulator_config(&emu).with_mount(MountSelector::IdOrName("Nowhere".into())))
            .unwrap();
    let err = missing.check_mount().await.unwrap_err();
    assert!(
        err.is_not_found() && err.to_string().contains("Nowhere"),
        "{err}"
    );
    assert_eq!(emu.requests().len(), 2, "{:?}", emu.requests());
}

#[tokio::test]
async fn a_refused_recursive_listing_is_unsupported_at_once() {
    let h = Site::start_emulator().await.unwrap();
    for status in [400, 405, 501, 505] {
        inject(
            &h,
            FaultRule::status("files/listrecursive", status).times(5),
        );
        h.take_requests();
        let err = match h.client().list_recursive(h.base()).await {
            Ok(_) => panic!("{status}: the listing was not refused"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{status}: {err}");
        assert_eq!(
            count(&h.take_requests(), "files/listrecursive"),
            1,
            "{status}"
        );
        h.emulator().faults().clear();
    }
}
