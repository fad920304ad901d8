//! Every client operation against the emulator (or real Koofr when configured): metadata,
//! transfers of boundary sizes, ranges, awkward names, folders, copy/move/rename/remove, errors,
//! and the number of HTTP requests each operation makes.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use koofr_core::{ErrorKind, KoofrPath, ListEntry, OverwritePolicy, UploadBody, UploadOptions};
use koofr_testkit::{Site, collect, content, count};

fn overwrite(modified_ms: i64) -> UploadOptions {
    UploadOptions {
        modified_ms: Some(modified_ms),
        ..UploadOptions::default()
    }
}

#[tokio::test]
async fn metadata_operations() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let user = h.client().user().await.unwrap();
    assert!(!user.email.is_empty());
    let mounts = h.client().mounts().await.unwrap();
    assert_eq!(mounts.iter().filter(|m| m.is_primary).count(), 1);
    let mount = h.client().mount_info().await.unwrap();
    assert!(mount.is_primary);
    assert!(mount.total_bytes().unwrap() > 0);
    let root = h.client().info(&KoofrPath::root()).await.unwrap();
    assert!(root.is_dir());
    assert_eq!(root.name, "");
    let folder = h.client().info(h.base()).await.unwrap();
    assert!(folder.is_dir());
    if !h.is_live() {
        assert_eq!(user.email, h.emulator().email());
        let requests = h.take_requests();
        // The primary mount is addressed as `primary`: no mounts listing before `info`.
        assert_eq!(count(&requests, "mounts"), 1, "{requests:?}");
        assert_eq!(requests.len(), 5, "{requests:?}");
    }
    h.finish().await.unwrap();
}

#[tokio::test]
async fn upload_and_download_boundary_sizes() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let dir = h.path("sizes").unwrap();
    h.client().create_folder_all(&dir).await.unwrap();
    h.take_requests();
    const MIB: usize = 1024 * 1024;
    for (i, size) in [0, 1, MIB - 1, MIB, MIB + 1].into_iter().enumerate() {
        let data = content(i as u64, size);
        let name = format!("f{size}.bin");
        let info = h
            .client()
            .upload(
                &dir,
                &name,
                UploadBody::Bytes(data.clone()),
                overwrite(1_700_000_000_000 + i as i64),
            )
            .await
            .unwrap();
        assert_eq!(info.size, size as u64);
        assert_eq!(info.modified, 1_700_000_000_000 + i as i64);
        assert_eq!(info.name, name);
        let download = h
            .client()
            .download(&dir.child(&name).unwrap())
            .await
            .unwrap();
        assert_eq!(download.info.size, size as u64);
        assert_eq!(collect(download.stream).await.unwrap(), data, "size {size}");
        if !h.is_live() {
            let requests = h.take_requests();
            // An upload into a known folder is ONE request; a whole download too.
            assert_eq!(count(&requests, "files/put"), 1, "{requests:?}");
            assert_eq!(count(&requests, "files/get"), 1, "{requests:?}");
            assert_eq!(requests.len(), 2, "{requests:?}");
        }
    }
    h.finish().await.unwrap();
}

#[tokio::test]
async fn ranged_reads() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let data = content(7, 100_000);
    let file = h.path("ranges.bin").unwrap();
    h.client()
        .upload(h.base(), "ranges.bin", data.clone().into(), overwrite(1))
        .await
        .unwrap();
    h.take_requests();
    for (offset, len) in [
        (0u64, 1u64),
        (0, 100_000),
        (99_999, 1),
        (12_345, 54_321),
        (90_000, 50_000),
        (5, 0),
    ] {
        let got = collect(h.client().download_range(&file, offset, len).await.unwrap())
            .await
            .unwrap();
        let end = (offset + len).min(data.len() as u64) as usize;
        assert_eq!(got, &data[offset as usize..end], "range {offset}+{len}");
        if !h.is_live() {
            let requests = h.take_requests();
            assert_eq!(
                requests.len(),
                usize::from(len > 0),
                "range {offset}+{len}: {requests:?}"
            );
        }
    }
    let err = h
        .client()
        .download_range(&file, 100_000, 10)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::RangeNotSatisfiable, "{err}");
    assert!(!err.is_temporary());
    assert!(!err.is_not_found());
    // An empty file: a zero-length read sends nothing, any other read is past the end.
    h.client()
        .upload(h.base(), "empty", Vec::new().into(), overwrite(1))
        .await
        .unwrap();
    let empty = h.path("empty").unwrap();
    assert!(
        collect(h.client().download_range(&empty, 0, 0).await.unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        h.client()
            .download_range(&empty, 0, 1)
            .await
            .err()
            .unwrap()
            .kind(),
        ErrorKind::RangeNotSatisfiable
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn awkward_names_round_trip() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let names = [
        "with space.txt",
        "plus+sign",
        "100% sure",
        "hash#tag",
        "what?",
        "a&b=c",
        "čšž àéîõü",
        "semi;colon,comma'quote\"",
        "ünïcödé folder",
    ];
    for (i, name) in names.iter().enumerate() {
        let dir = h.base().child(name).unwrap();
        h.client().create_folder_all(&dir).await.unwrap();
        let info = h
            .client()
            .upload(&dir, name, content(i as u64, 10).into(), overwrite(5))
            .await
            .unwrap();
        assert_eq!(info.name, *name);
        let file = dir.child(name).unwrap();
        assert_eq!(h.client().info(&file).await.unwrap().size, 10);
        assert_eq!(
            collect(h.client().download(&file).await.unwrap().stream)
                .await
                .unwrap(),
            content(i as u64, 10)
        );
    }
    let listed: Vec<String> = h
        .client()
        .list(h.base())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    for name in names {
        assert!(
            listed.iter().any(|l| l == name),
            "{name:?} missing from {listed:?}"
        );
    }
    // NFD input is normalised to NFC, so both spellings reach the same file.
    let nfd = "cafe\u{301}.txt";
    let info = h
        .client()
        .upload(h.base(), nfd, b"nfd".to_vec().into(), overwrite(5))
        .await
        .unwrap();
    assert_eq!(info.name, "caf\u{e9}.txt");
    let via_nfd = KoofrPath::parse(&format!("{}/{nfd}", h.base())).unwrap();
    assert_eq!(
        h.client().info(&via_nfd).await.unwrap().name,
        "caf\u{e9}.txt"
    );
    if !h.is_live() {
        assert_eq!(
            h.emulator().read_file("/test/100% sure/100% sure").unwrap(),
            content(2, 10)
        );
        assert!(h.emulator().stat("/test/caf\u{e9}.txt").is_some());
    }
    // Emoji names are refused before any request is made.
    h.take_requests();
    let err = h
        .client()
        .upload(
            h.base(),
            "ox \u{1F402}.txt",
            b"x".to_vec().into(),
            overwrite(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.to_string().contains("ox \u{1F402}.txt")
            && err.to_string().contains("Basic Multilingual"),
        "{err}"
    );
    let emoji_path = h.base().join("\u{1F402}").unwrap();
    assert_eq!(
        h.client().info(&emoji_path).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert!(h.take_requests().is_empty());
    h.finish().await.unwrap();
}

#[tokio::test]
async fn folders_listing_and_recursive_listing() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let deep = h.path("a/b/c").unwrap();
    h.client().create_folder_all(&deep).await.unwrap();
    assert!(h.client().info(&deep).await.unwrap().is_dir());
    h.client()
        .upload(&deep, "x.bin", content(1, 3).into(), overwrite(9))
        .await
        .unwrap();
    h.client()
        .upload(
            &h.path("a").unwrap(),
            "y.bin",
            content(1, 4).into(),
            overwrite(9),
        )
        .await
        .unwrap();
    h.client()
        .create_folder(&h.path("a").unwrap(), "empty")
        .await
        .unwrap();
    let err = h
        .client()
        .create_folder(&h.path("a").unwrap(), "EMPTY")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

    let mut names: Vec<String> = h
        .client()
        .list(&h.path("a").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    assert_eq!(names, ["b", "empty", "y.bin"]);
    assert!(
        h.client()
            .list(&h.path("a/empty").unwrap())
            .await
            .unwrap()
            .is_empty()
    );

    let entries: Vec<ListEntry> = h
        .client()
        .list_recursive(&h.path("a").unwrap())
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    let paths: Vec<String> = entries
        .iter()
        .map(|e| match e {
            ListEntry::File { path, .. } => path.to_string(),
            ListEntry::Error { code, message, .. } => panic!("listing error {code}: {message}"),
        })
        .collect();
    let a = h.path("a").unwrap().to_string();
    assert_eq!(paths[0], a, "the first item is the folder itself");
    let mut sorted = paths.clone();
    sorted.sort();
    let mut want: Vec<String> = ["", "/b", "/b/c", "/b/c/x.bin", "/empty", "/y.bin"]
        .iter()
        .map(|s| format!("{a}{s}"))
        .collect();
    want.sort();
    assert_eq!(sorted, want);
    for (i, p) in paths.iter().enumerate() {
        let parent = KoofrPath::parse(p).unwrap().parent().unwrap().to_string();
        if i > 0 {
            assert!(paths[..i].contains(&parent), "{p} listed before its parent");
        }
    }
    // A file in the way of a folder.
    let err = h
        .client()
        .create_folder_all(&h.path("a/y.bin/z").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotADirectory, "{err}");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn copy_move_rename_remove() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let src = h.path("src.txt").unwrap();
    h.client()
        .upload(
            h.base(),
            "src.txt",
            b"hello".to_vec().into(),
            overwrite(1000),
        )
        .await
        .unwrap();
    h.client()
        .create_folder_all(&h.path("dst").unwrap())
        .await
        .unwrap();

    let copy = h.path("dst/copy.txt").unwrap();
    h.client().copy(&src, &copy, Some(4242)).await.unwrap();
    assert_eq!(h.client().info(&copy).await.unwrap().modified, 4242);
    assert_eq!(
        collect(h.client().download(&copy).await.unwrap().stream)
            .await
            .unwrap(),
        b"hello"
    );
    let err = h.client().copy(&src, &copy, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

    let moved = h.path("dst/moved.txt").unwrap();
    h.client().move_to(&src, &moved).await.unwrap();
    assert!(h.client().info(&src).await.unwrap_err().is_not_found());
    assert_eq!(h.client().info(&moved).await.unwrap().modified, 1000);

    // Case-only move and rename go through a temporary name.
    let upper = h.path("dst/MOVED.txt").unwrap();
    h.client().move_to(&moved, &upper).await.unwrap();
    assert_eq!(h.client().info(&upper).await.unwrap().name, "MOVED.txt");
    h.client().rename(&upper, "Moved.txt").await.unwrap();
    let names: Vec<String> = h
        .client()
        .list(&h.path("dst").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        names.contains(&"Moved.txt".to_owned()) && names.len() == 2,
        "{names:?}"
    );

    h.client()
        .rename(&h.path("dst/Moved.txt").unwrap(), "renamed.txt")
        .await
        .unwrap();
    assert!(
        h.client()
            .info(&h.path("dst/renamed.txt").unwrap())
            .await
            .unwrap()
            .is_file()
    );

    // Moving a folder invalidates the folder cache below it.
    h.client()
        .create_folder_all(&h.path("tree/sub").unwrap())
        .await
        .unwrap();
    h.client()
        .move_to(&h.path("tree").unwrap(), &h.path("tree2").unwrap())
        .await
        .unwrap();
    h.client()
        .create_folder_all(&h.path("tree/sub").unwrap())
        .await
        .unwrap();
    assert!(
        h.client()
            .info(&h.path("tree/sub").unwrap())
            .await
            .unwrap()
            .is_dir()
    );

    h.client().remove(&h.path("dst").unwrap()).await.unwrap();
    assert!(
        h.client()
            .info(&h.path("dst/renamed.txt").unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        h.client()
            .remove(&h.path("dst").unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    // The cache forgot `dst`: it is really created again.
    h.client()
        .create_folder_all(&h.path("dst/again").unwrap())
        .await
        .unwrap();
    assert!(
        h.client()
            .info(&h.path("dst/again").unwrap())
            .await
            .unwrap()
            .is_dir()
    );
    h.finish().await.unwrap();
}

#[tokio::test]
async fn error_kinds() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let missing = h.path("missing.txt").unwrap();
    let err = h.client().info(&missing).await.unwrap_err();
    assert!(err.is_not_found() && !err.is_temporary(), "{err}");
    assert!(err.to_string().contains(missing.as_str()), "{err}");
    assert!(
        h.client()
            .download(&missing)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(h.client().list(&missing).await.unwrap_err().is_not_found());

    h.client()
        .upload(h.base(), "f.txt", b"1".to_vec().into(), overwrite(1))
        .await
        .unwrap();
    let file = h.path("f.txt").unwrap();
    let err = h
        .client()
        .upload(
            h.base(),
            "F.TXT",
            b"2".to_vec().into(),
            UploadOptions {
                policy: OverwritePolicy::ErrorIfExists,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Conflict | ErrorKind::AlreadyExists),
        "{err}"
    );
    let renamed = h
        .client()
        .upload(
            h.base(),
            "f.txt",
            b"3".to_vec().into(),
            UploadOptions {
                policy: OverwritePolicy::Autorename,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "f (1).txt");
    let err = match h.client().list_recursive(&file).await {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(err.kind(), ErrorKind::NotADirectory, "{err}");
    let err = h
        .client()
        .upload(
            &h.path("nowhere").unwrap(),
            "x",
            b"1".to_vec().into(),
            overwrite(1),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    h.client()
        .create_folder_all(&h.path("folder").unwrap())
        .await
        .unwrap();
    let err = h
        .client()
        .upload(h.base(), "folder", b"1".to_vec().into(), overwrite(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAFile, "{err}");
    let err = h.client().remove(&KoofrPath::root()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = h
        .client()
        .copy(
            &h.path("folder").unwrap(),
            &h.path("folder/inside").unwrap(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn concurrent_folder_creation_of_one_path() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let target = h.path("race/x/y/z").unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = koofr_core::Client::new(h.client().config().clone()).unwrap();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            client.create_folder_all(&target).await?;
            client
                .upload(
                    &target,
                    &format!("f{i}"),
                    vec![i as u8].into(),
                    UploadOptions::default(),
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(h.client().list(&target).await.unwrap().len(), 16);

    // 16 tasks sharing one client wait for the first creator instead of racing it.
    let shared = h.path("shared/x/y").unwrap();
    h.take_requests();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let client = h.client().clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                client.create_folder_all(&shared).await?;
                client
                    .upload(
                        &shared,
                        &format!("f{i}"),
                        vec![i as u8].into(),
                        UploadOptions::default(),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    if !h.is_live() {
        let requests = h.take_requests();
        assert_eq!(count(&requests, "files/folder"), 3, "{requests:?}");
        assert_eq!(count(&requests, "files/put"), 16);
        // info(full), info(/test), info(/test/shared), 3 creates, 16 uploads.
        assert_eq!(requests.len(), 3 + 3 + 16, "{requests:?}");
    }
    h.finish().await.unwrap();
}

#[tokio::test]
async fn streamed_and_replayable_uploads() {
    let h = Site::start_live_or_emulator("core").await.unwrap();
    let data = content(3, 300_000);
    let chunks: Vec<koofr_core::Result<Bytes>> = data
        .chunks(7_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let info = h
        .client()
        .upload(
            h.base(),
            "streamed.bin",
            UploadBody::Stream(futures::stream::iter(chunks).boxed()),
            UploadOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    let replay_data = data.clone();
    let replay: koofr_core::ReplayFn = Arc::new(move || {
        futures::stream::iter(vec![
            Ok(replay_data.slice(..1000)),
            Ok(replay_data.slice(1000..)),
        ])
        .boxed()
    });
    let info = h
        .client()
        .upload(
            h.base(),
            "replayable.bin",
            UploadBody::Replayable(replay),
            UploadOptions {
                size_hint: Some(data.len() as u64),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        info.hash,
        h.client()
            .info(&h.path("streamed.bin").unwrap())
            .await
            .unwrap()
            .hash
    );
    // A source shorter than announced aborts the upload and stores nothing.
    let short = futures::stream::iter(vec![Ok(Bytes::from_static(b"abc"))]).boxed();
    let err = h
        .client()
        .upload(
            h.base(),
            "short.bin",
            UploadBody::Stream(short),
            UploadOptions {
                size_hint: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains("short.bin") && err.to_string().contains("announced 10"),
        "{err}"
    );
    assert!(
        h.client()
            .info(&h.path("short.bin").unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    h.finish().await.unwrap();
}
