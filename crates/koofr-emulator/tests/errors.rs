//! The error rows of spec §8.1 not covered by `endpoints.rs`, each through real HTTP, plus the
//! strictness rules (unknown endpoints, wrong family, malformed parameters).

mod common;

use common::{send, start, start_with};
use koofr_emulator::EmulatorConfig;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn missing_credentials_give_401_with_an_empty_body_everywhere() {
    let (_emu, c) = start().await;
    for url in [
        "/api/v2/mounts",
        "/api/v2.1/user",
        "/api/v2/mounts/primary/files/info?path=/",
        "/content/api/v2/mounts/primary/files/get?path=/x",
    ] {
        let r = send(c.anon(Method::GET, url)).await;
        assert_eq!(r.status, 401, "{url}");
        assert!(r.body.is_empty(), "{url}");
        let wrong = send(
            c.anon(Method::GET, url)
                .basic_auth("me@example.com", Some("wrong")),
        )
        .await;
        assert_eq!(wrong.status, 401, "{url}");
    }
}

#[tokio::test]
async fn not_found_rows() {
    let (emu, c) = start().await;
    emu.put_file("/file.txt", &b"x"[..], 1);
    c.get("/api/v2/mounts/no-such-mount")
        .await
        .assert_error(404, "NotFound");
    let r = c
        .get("/api/v2/mounts/no-such-mount/files/info?path=/")
        .await;
    r.assert_error(404, "NotFound");
    assert_eq!(r.json()["error"]["message"], "Mount not found");
    for url in [
        "/api/v2/mounts/primary/files/info?path=/nope",
        "/api/v2/mounts/primary/files/list?path=/nope",
        "/content/api/v2/mounts/primary/files/get?path=/nope",
        "/content/api/v2/mounts/primary/files/listrecursive?path=/nope",
    ] {
        let r = c.get(url).await;
        r.assert_error(404, "NotFound");
        assert_eq!(r.json()["error"]["message"], "File not found");
    }
    let r = c
        .json(
            Method::PUT,
            "/api/v2/mounts/primary/files/copy?path=/nope",
            json!({"toMountId": "primary", "toPath": "/x"}),
        )
        .await;
    r.assert_error(404, "NotFound");
    let r = c
        .json(
            Method::PUT,
            "/api/v2/mounts/primary/files/move?path=/file.txt",
            json!({"toMountId": "primary", "toPath": "/no/x"}),
        )
        .await;
    r.assert_error(404, "NotFound");
    let r = c
        .json(
            Method::PUT,
            "/api/v2/mounts/primary/files/copy?path=/file.txt",
            json!({"toMountId": "nope", "toPath": "/x"}),
        )
        .await;
    r.assert_error(404, "NotFound");
}

#[tokio::test]
async fn exists_rows_for_copy_move_rename() {
    let (emu, c) = start().await;
    emu.put_file("/a.txt", &b"a"[..], 1);
    emu.put_file("/b.txt", &b"b"[..], 1);
    for (version, status) in [("v2", 400), ("v2.1", 409)] {
        for op in ["copy", "move"] {
            let r = c
                .json(
                    Method::PUT,
                    &format!("/api/{version}/mounts/primary/files/{op}?path=/a.txt"),
                    json!({"toMountId": "primary", "toPath": "/B.TXT"}),
                )
                .await;
            r.assert_error(status, "AlreadyExists");
        }
        let r = c
            .json(
                Method::PUT,
                &format!("/api/{version}/mounts/primary/files/rename?path=/a.txt"),
                json!({"name": "b.txt"}),
            )
            .await;
        r.assert_error(status, "AlreadyExists");
    }
    // The version header switches v2 paths to v2.1 statuses.
    let r = send(
        c.req(
            Method::PUT,
            "/api/v2/mounts/primary/files/rename?path=/a.txt",
        )
        .header("X-Koofr-Version", "2.1")
        .header("content-type", "application/json")
        .body(json!({"name": "b.txt"}).to_string()),
    )
    .await;
    r.assert_error(409, "AlreadyExists");
}

#[tokio::test]
async fn not_dir_not_file_and_into_self_rows() {
    let (emu, c) = start().await;
    emu.put_file("/dir/f.txt", &b"f"[..], 1);
    c.json(
        Method::PUT,
        "/api/v2/mounts/primary/files/rename?path=/",
        json!({"name": "x"}),
    )
    .await
    .assert_error(400, "NotDir");
    c.get("/content/api/v2/mounts/primary/files/listrecursive?path=/dir/f.txt")
        .await
        .assert_error(400, "NotDir");
    c.get("/api/v2/mounts/primary/files/list?path=/dir/f.txt")
        .await
        .assert_error(400, "NotDir");
    c.get("/content/api/v2.1/mounts/primary/files/get?path=/dir")
        .await
        .assert_error(400, "NotFile");
    for (op, code) in [("copy", "CopyIntoSelf"), ("move", "MoveIntoSelf")] {
        for (src, dst) in [("/dir", "/dir/inner"), ("/dir", "/DIR"), ("/", "/x")] {
            let r = c
                .json(
                    Method::PUT,
                    &format!("/api/v2.1/mounts/primary/files/{op}?path={src}"),
                    json!({"toMountId": "primary", "toPath": dst}),
                )
                .await;
            r.assert_error(400, code);
        }
    }
    let r = c
        .json(
            Method::PUT,
            "/api/v2.1/mounts/primary/files/copy?path=/dir/f.txt",
            json!({"toMountId": "primary", "toPath": "/g.txt", "ifSize": 5}),
        )
        .await;
    r.assert_error(409, "Conflict");
}

#[tokio::test]
async fn invalid_path_and_invalid_name_rows() {
    let (emu, c) = start().await;
    emu.create_folder_all("/d");
    for path in ["/foo/./bar", "/foo/..", "../x", "/a%5Cb", "/%02/foo.txt"] {
        c.get(&format!("/api/v2/mounts/primary/files/info?path={path}"))
            .await
            .assert_error(400, "InvalidPath");
    }
    // Control characters are stripped from paths: /d%01 is /d.
    assert_eq!(
        c.get("/api/v2/mounts/primary/files/info?path=/d%01")
            .await
            .status,
        200
    );
    c.put_raw("v2", "path=/d&filename=a%2Fb", b"x")
        .await
        .assert_error(400, "BadRequest");
    let r = c
        .put_raw("v2", "path=/d&filename=%F0%9F%90%82.txt", b"x")
        .await;
    r.assert_error(400, "BadRequest");
    assert_eq!(r.json()["error"]["message"], "Invalid name");
    let r = c
        .json(
            Method::PUT,
            "/api/v2/mounts/primary/files/rename?path=/d",
            json!({"name": "🐂"}),
        )
        .await;
    r.assert_error(400, "BadRequest");
    let r = c
        .json(
            Method::PUT,
            "/api/v2/mounts/primary/files/copy?path=/d",
            json!({"toMountId": "primary", "toPath": "/🐂"}),
        )
        .await;
    r.assert_error(400, "BadRequest");
    // Missing path parameter.
    let r = c.get("/api/v2/mounts/primary/files/info").await;
    r.assert_error(400, "BadRequest");
    assert!(r.text().contains("path"));
}

#[tokio::test]
async fn permissive_non_bmp_server() {
    let mut config = EmulatorConfig::default();
    config.reject_non_bmp = false;
    let (emu, c) = start_with(config).await;
    let r = c
        .put_raw("v2", "path=/&filename=%F0%9F%90%82.txt&info=true", b"ox")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(emu.read_file("/🐂.txt").unwrap(), b"ox");
}

#[tokio::test]
async fn range_rows() {
    let (emu, c) = start().await;
    emu.put_file("/ten.bin", vec![1u8; 10], 1);
    emu.put_file("/empty.bin", Vec::new(), 1);
    let get = |path: &str, range: &str| {
        send(
            c.req(
                Method::GET,
                &format!("/content/api/v2/mounts/primary/files/get?path={path}"),
            )
            .header("Range", range.to_string()),
        )
    };
    let r = get("/ten.bin", "bytes=10-").await;
    r.assert_error(416, "Other");
    assert_eq!(r.header("content-range").unwrap(), "bytes */10");
    assert_eq!(r.json()["error"]["message"], "Invalid range");
    let r = get("/empty.bin", "bytes=0-").await;
    r.assert_error(416, "Other");
    assert_eq!(r.header("content-range").unwrap(), "bytes */0");
    let r = get("/ten.bin", "bytes=0-1,4-5").await;
    r.assert_error(416, "Other");
    assert_eq!(
        r.json()["error"]["message"],
        "Cannot serve multipart range requests"
    );
    assert_eq!(get("/empty.bin", "").await.status, 200);
}

#[tokio::test]
async fn quota_row_and_mount_report() {
    let (emu, c) = start().await;
    emu.faults().set_quota(1000);
    emu.put_file("/a.bin", vec![0u8; 600], 1);
    let r = c
        .put_raw("v2", "path=/&filename=b.bin&info=true", &[0u8; 500])
        .await;
    r.assert_error(413, "QuotaExceeded");
    assert!(emu.stat("/b.bin").is_none(), "nothing stored");
    // Replacing a file only counts the difference.
    let r = c
        .put_raw("v2", "path=/&filename=a.bin&overwrite=true", &[0u8; 900])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .json(
            Method::PUT,
            "/api/v2/mounts/primary/files/copy?path=/a.bin",
            json!({"toMountId": "primary", "toPath": "/c.bin"}),
        )
        .await;
    r.assert_error(413, "QuotaExceeded");
}

#[tokio::test]
async fn device_offline_row() {
    let (emu, c) = start().await;
    emu.faults().set_mount_offline("primary", true);
    c.get("/api/v2/mounts/primary/files/list?path=/")
        .await
        .assert_error(404, "DeviceOffline");
    c.get("/content/api/v2/mounts/primary/files/listrecursive?path=/")
        .await
        .assert_error(404, "DeviceOffline");
    assert_eq!(
        c.get("/api/v2/mounts").await.json()["mounts"][0]["online"],
        false
    );
    let secondary = emu.secondary_mount_id();
    assert_eq!(
        c.get(&format!("/api/v2/mounts/{secondary}/files/list?path=/"))
            .await
            .status,
        200
    );
    emu.faults()
        .set_mount_offline(&emu.primary_mount_id(), false);
    assert_eq!(
        c.get("/api/v2/mounts/primary/files/list?path=/")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn strictness_unknown_endpoints_methods_and_families() {
    let (_emu, c) = start().await;
    let r = c
        .get("/api/v2/mounts/primary/files/frobnicate?path=/")
        .await;
    r.assert_error(404, "NotFound");
    assert!(r.text().contains("Unknown endpoint"));
    c.get("/api/v3/mounts").await.assert_error(404, "NotFound");
    c.get("/api/v2/mounts/primary/files/search?query=x")
        .await
        .assert_error(501, "Other");
    let r = send(c.req(Method::DELETE, "/api/v2/mounts")).await;
    r.assert_error(405, "BadRequest");
    assert_eq!(r.header("allow").unwrap(), "GET");
    // HEAD is not among the methods of a GET endpoint; links take POST only.
    let r = send(c.req(Method::HEAD, "/api/v2/mounts")).await;
    assert_eq!((r.status, r.header("allow").as_deref()), (405, Some("GET")));
    let r = send(c.req(Method::GET, "/api/v2/mounts/primary/links")).await;
    r.assert_error(405, "BadRequest");
    assert_eq!(r.header("allow").unwrap(), "POST");
    let r = send(c.req(Method::POST, "/token")).await;
    assert_ne!(r.status, 405);
    let r = send(c.req(Method::PUT, "/token")).await;
    assert_eq!(r.header("allow").unwrap(), "GET, POST, DELETE");
    let r = c.put_raw("v2", "path=/&filename=x", b"x").await;
    assert_eq!(r.status, 200);
    let r = send(
        c.req(
            Method::POST,
            "/api/v2/mounts/primary/files/put?path=/&filename=x",
        )
        .body("x"),
    )
    .await;
    r.assert_error(404, "NotFound");
    assert!(r.text().contains("/content/api"));
    let r = c
        .get("/content/api/v2/mounts/primary/files/info?path=/")
        .await;
    r.assert_error(404, "NotFound");
    let r = c
        .json(
            Method::POST,
            "/api/v2/mounts/primary/files/folder?path=/",
            json!({"nom": "x"}),
        )
        .await;
    r.assert_error(400, "BadRequest");
    assert!(r.text().contains("name"));
    let r = send(
        c.req(Method::POST, "/api/v2/mounts/primary/files/folder?path=/")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    r.assert_error(400, "BadRequest");
    let r = send(c.req(
        Method::DELETE,
        "/api/v2/mounts/primary/files/remove?path=/x&removeIfSize=-1",
    ))
    .await;
    r.assert_error(400, "BadRequest");
    assert!(r.text().contains("removeIfSize"));
}

#[tokio::test]
async fn case_only_rename_or_move_in_one_request_is_move_into_self() {
    let (emu, c) = start().await;
    emu.put_file("/a.txt", &b"a"[..], 1);
    emu.create_folder_all("/Dir");
    emu.put_file("/caf\u{e9}.txt", &b"c"[..], 1);
    for version in ["v2", "v2.1"] {
        for (path, name) in [
            ("/a.txt", "A.txt"),
            ("/a.txt", "a.txt"),
            ("/Dir", "dir"),
            // NFD spelling of the same name.
            ("/caf%C3%A9.txt", "cafe\u{301}.txt"),
        ] {
            let url = format!("/api/{version}/mounts/primary/files/rename?path={path}");
            let r = c.json(Method::PUT, &url, json!({ "name": name })).await;
            r.assert_error(400, "MoveIntoSelf");
            assert_eq!(r.json()["error"]["message"], "Cannot move into itself");
        }
        let r = c
            .json(
                Method::PUT,
                &format!("/api/{version}/mounts/primary/files/move?path=/a.txt"),
                json!({"toMountId": "primary", "toPath": "/A.TXT"}),
            )
            .await;
        r.assert_error(400, "MoveIntoSelf");
    }
    assert_eq!(emu.stat("/a.txt").unwrap().name, "a.txt");
    assert_eq!(emu.stat("/dir").unwrap().name, "Dir");
    // The way clients do it: two steps through another name.
    for (path, name) in [("/a.txt", "tmp.txt"), ("/tmp.txt", "A.txt")] {
        let r = c
            .json(
                Method::PUT,
                &format!("/api/v2/mounts/primary/files/rename?path={path}"),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(emu.stat("/a.txt").unwrap().name, "A.txt");
}

#[tokio::test]
async fn json_bodies_without_a_json_content_type_get_415() {
    let (emu, c) = start().await;
    for path in ["/a.txt", "/m.txt", "/r.txt"] {
        emu.put_file(path, &b"a"[..], 1);
    }
    let mounts = "/api/v2/mounts/primary";
    let cases = [
        (
            Method::POST,
            format!("{mounts}/files/folder?path=/"),
            json!({"name": "new"}),
        ),
        (
            Method::PUT,
            format!("{mounts}/files/copy?path=/a.txt"),
            json!({"toMountId": "primary", "toPath": "/copy.txt"}),
        ),
        (
            Method::PUT,
            format!("{mounts}/files/move?path=/m.txt"),
            json!({"toMountId": "primary", "toPath": "/moved.txt"}),
        ),
        (
            Method::PUT,
            format!("{mounts}/files/rename?path=/r.txt"),
            json!({"name": "b.txt"}),
        ),
        (
            Method::POST,
            format!("{mounts}/links"),
            json!({"path": "/a.txt"}),
        ),
        (
            Method::POST,
            "/token".to_string(),
            json!({"email": "me@example.com", "password": "APP-PASSWORD"}),
        ),
    ];
    for (method, url, body) in &cases {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut request = c.req(method.clone(), url).body(body.to_string());
            if let Some(value) = content_type {
                request = request.header("content-type", value);
            }
            let r = send(request).await;
            r.assert_error(415, "BadRequest");
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Content-Type: application/json"),
                "{url}: {}",
                r.text()
            );
        }
    }
    // Nothing was changed by the refused requests.
    let names: Vec<String> = emu.walk("/").into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["/a.txt", "/m.txt", "/r.txt"]);
    // A charset parameter is fine (spec §4.2); the same requests now succeed.
    for (method, url, body) in cases {
        let r = send(
            c.req(method, &url)
                .header("content-type", "Application/JSON; charset=utf-8")
                .body(body.to_string()),
        )
        .await;
        assert!(
            matches!(r.status, 200 | 201),
            "{url}: {} {}",
            r.status,
            r.text()
        );
    }
    assert!(emu.stat("/new").is_some_and(|n| n.is_dir));
    for moved in ["/copy.txt", "/moved.txt", "/b.txt"] {
        assert!(emu.stat(moved).is_some(), "{moved}");
    }
    // Bodies that are not JSON keep their own content types: raw uploads take any.
    let r = send(
        c.req(
            Method::POST,
            "/content/api/v2/mounts/primary/files/put?path=/&filename=raw.txt",
        )
        .header("content-type", "text/plain")
        .body("raw"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
