//! Every endpoint of spec §7 through real HTTP on 127.0.0.1: success paths and shapes.

mod common;

use common::{enc, md5_hex, send, start};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn mounts_places_mount_and_user() {
    let (emu, c) = start().await;
    let r = c.get("/api/v2/mounts").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    assert!(r.header("x-request-id").is_some());
    let mounts = r.json()["mounts"].as_array().unwrap().clone();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0]["id"], emu.primary_mount_id());
    assert_eq!(mounts[0]["isPrimary"], true);
    assert_eq!(mounts[1]["id"], emu.secondary_mount_id());
    assert_eq!(mounts[1]["isPrimary"], false);
    assert_eq!(mounts[0]["spaceTotal"], 10240);

    let places = c.get("/api/v2.1/places").await;
    assert_eq!(places.status, 200);
    assert_eq!(places.json()["places"].as_array().unwrap().len(), 2);
    // places is v2.1 only, unless the version header says 2.1.
    assert_eq!(c.get("/api/v2/places").await.status, 404);
    let via_header = send(
        c.req(Method::GET, "/api/v2/places")
            .header("X-Koofr-Version", "2.1"),
    )
    .await;
    assert_eq!(via_header.status, 200);

    emu.put_file("/big.bin", vec![7u8; 1024 * 1024 + 1], 1);
    let m = c.get("/api/v2/mounts/primary").await.json();
    assert_eq!(m["id"], emu.primary_mount_id());
    assert_eq!(m["spaceUsed"], 2, "used MiB are rounded up");
    let m2 = c
        .get(&format!("/api/v2/mounts/{}", emu.secondary_mount_id()))
        .await;
    assert_eq!(m2.json()["isPrimary"], false);

    let user = c.get("/api/v2/user").await.json();
    assert_eq!(user["email"], "me@example.com");
    assert!(user["id"].is_string());
}

#[tokio::test]
async fn info_and_list() {
    let (emu, c) = start().await;
    emu.create_folder_all("/Docs/empty");
    let stored = emu.put_file("/Docs/report.pdf", &b"%PDF"[..], 1_591_868_314_156);
    emu.put_file("/Docs/b.txt", &b"abc"[..], 5);

    let root = c
        .get("/api/v2/mounts/primary/files/info?path=%2F")
        .await
        .json();
    assert_eq!(root["name"], "");
    assert_eq!(root["type"], "dir");
    let info = c
        .get("/api/v2/mounts/primary/files/info?path=%2FDocs%2Freport.pdf")
        .await
        .json();
    assert_eq!(
        info,
        json!({"name": "report.pdf", "type": "file", "modified": 1_591_868_314_156i64, "size": 4,
               "contentType": "application/pdf", "hash": stored.hash.unwrap(), "tags": {}})
    );
    // Case-insensitive lookup, `+` as space, NFC-equivalent spellings.
    emu.put_file("/My Files/čaj.txt", &b"x"[..], 1);
    let r = c
        .get("/api/v2/mounts/primary/files/info?path=/my+files/C%CC%8Caj.TXT")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "čaj.txt");

    // Accent-distinct names coexist; request ids on errors too.
    emu.put_file("/My Files/caj.txt", &b"y"[..], 1);
    assert_eq!(emu.read_file("/my files/caj.txt").unwrap(), b"y");
    assert_eq!(emu.read_file("/my files/čaj.txt").unwrap(), b"x");
    let missing = c.get("/api/v2/mounts/primary/files/info?path=/nope").await;
    assert_eq!(
        missing.header("x-request-id").unwrap(),
        missing.json()["requestId"]
    );

    let list = c
        .get("/api/v2/mounts/primary/files/list?path=/Docs")
        .await
        .json();
    let names: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["empty", "report.pdf", "b.txt"], "insertion order");
    assert!(
        list["files"][0].get("hash").is_none(),
        "folders carry no hash"
    );
    let empty = c
        .get("/api/v2/mounts/primary/files/list?path=/Docs/empty")
        .await
        .json();
    assert_eq!(empty, json!({"files": []}));
}

#[tokio::test]
async fn tree_and_listrecursive() {
    let (emu, c) = start().await;
    emu.put_file("/backup/a.bin", vec![1u8; 10], 1);
    emu.put_file("/backup/sub/b.txt", &b"abc"[..], 2);
    emu.create_folder_all("/backup/sub/empty");

    let tree = c
        .get("/api/v2/mounts/primary/files/tree?path=/backup")
        .await
        .json();
    assert_eq!(tree["name"], "backup");
    assert_eq!(tree["children"][0]["name"], "a.bin");
    assert_eq!(tree["children"][1]["children"][1]["children"], json!([]));
    assert_eq!(
        c.get("/api/v2.1/mounts/primary/files/tree?path=/")
            .await
            .status,
        404
    );

    let r = c
        .get("/content/api/v2/mounts/primary/files/listrecursive?path=/backup")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/x-ndjson; charset=utf-8"
    );
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let paths: Vec<&str> = lines.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/", "/a.bin", "/sub", "/sub/b.txt", "/sub/empty"]);
    assert!(lines.iter().all(|l| l["type"] == "file"));
    assert_eq!(lines[0]["file"]["name"], "backup");
    assert_eq!(lines[3]["file"]["hash"], "900150983cd24fb0d6963f7d28e17f72");
    // Only on the content family.
    assert_eq!(
        c.get("/api/v2/mounts/primary/files/listrecursive?path=/")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn listrecursive_streams_a_large_tree_in_many_chunks() {
    let (emu, c) = start().await;
    for i in 0..3000 {
        emu.put_file(&format!("/d{}/file-{i:05}.bin", i % 10), vec![], 1);
    }
    let mut response = c
        .req(
            Method::GET,
            "/content/api/v2/mounts/primary/files/listrecursive?path=/",
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("content-length").is_none(),
        "chunked, not buffered"
    );
    let (mut chunks, mut lines) = (0, 0);
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks += 1;
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(lines, 1 + 10 + 3000);
    assert!(chunks > 3, "streamed in {chunks} chunks");
}

#[tokio::test]
async fn download_full_range_and_redirect() {
    let (emu, c) = start().await;
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    emu.put_file("/f/data.bin", content.clone(), 42);
    let url = "/content/api/v2/mounts/primary/files/get?path=%2Ff%2Fdata.bin";

    let full = c.get(url).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body.as_ref(), content.as_slice());
    assert_eq!(full.header("content-length").unwrap(), "200000");
    assert_eq!(full.header("accept-ranges").unwrap(), "bytes");
    assert_eq!(
        full.header("content-type").unwrap(),
        "application/octet-stream"
    );
    let info: serde_json::Value =
        serde_json::from_str(&full.header("x-file-info").unwrap()).unwrap();
    assert_eq!(info["hash"], md5_hex(&content));
    assert_eq!(info["modified"], 42);

    let part = send(c.req(Method::GET, url).header("Range", "bytes=10-19")).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range").unwrap(), "bytes 10-19/200000");
    assert_eq!(part.body.as_ref(), &content[10..20]);
    let open = send(c.req(Method::GET, url).header("Range", "bytes=199990-")).await;
    assert_eq!(open.status, 206);
    assert_eq!(open.body.as_ref(), &content[199_990..]);
    let clamped = send(
        c.req(Method::GET, url)
            .header("Range", "bytes=199999-500000"),
    )
    .await;
    assert_eq!(
        clamped.header("content-range").unwrap(),
        "bytes 199999-199999/200000"
    );
    let suffix = send(c.req(Method::GET, url).header("Range", "bytes=-5")).await;
    assert_eq!(suffix.body.as_ref(), &content[199_995..]);

    // Non-ASCII in X-File-Info is sent as raw UTF-8.
    emu.put_file("/Žaba.txt", &b"z"[..], 1);
    let r = c
        .get("/content/api/v2/mounts/primary/files/get?path=/%C5%BDaba.txt")
        .await;
    assert!(r.header("x-file-info").unwrap().contains("Žaba.txt"));

    let redirect = c
        .get("/api/v2/mounts/primary/files/get?path=%2Ff%2Fdata.bin")
        .await;
    assert_eq!(redirect.status, 303);
    let location = redirect.header("location").unwrap();
    assert!(
        location.ends_with("/content/api/v2/mounts/primary/files/get?path=%2Ff%2Fdata.bin"),
        "{location}"
    );
    let followed = send(
        c.http
            .get(&location)
            .basic_auth(&c.email, Some(&c.password)),
    )
    .await;
    assert_eq!(followed.body.len(), 200_000);
}

#[tokio::test]
async fn upload_raw_multipart_chunked_and_legacy_response() {
    let (emu, c) = start().await;
    emu.create_folder_all("/up");
    let r = c
        .put_raw(
            "v2",
            "path=%2Fup&filename=raw.txt&info=true&modified=1700000000000",
            b"hello",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"name": "raw.txt", "type": "file", "modified": 1_700_000_000_000i64, "size": 5,
               "contentType": "text/plain", "hash": md5_hex(b"hello"), "tags": {}})
    );
    assert_eq!(emu.read_file("/up/raw.txt").unwrap(), b"hello");

    // Multipart, chunked (a streamed body has no Content-Length); query filename wins.
    let boundary = "XyZboundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nignored\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dummy\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    body.extend_from_slice(b"multipart content");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let r = send(
        c.req(
            Method::POST,
            "/content/api/v2/mounts/primary/files/put?path=%2Fup&filename=mp.bin&info=true",
        )
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "mp.bin");
    assert_eq!(emu.read_file("/up/mp.bin").unwrap(), b"multipart content");

    // Without info=true: the legacy array. Without filename in the query: the part's filename.
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"part name.txt\"\r\n\r\nxy\r\n--{boundary}--\r\n").as_bytes());
    let r = send(
        c.req(
            Method::POST,
            "/content/api/v2/mounts/primary/files/put?path=%2Fup",
        )
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body),
    )
    .await;
    assert_eq!(r.json(), json!([{"name": "part name.txt", "type": "file"}]));

    // Zero-length upload.
    let r = c
        .put_raw("v2", "path=%2Fup&filename=empty&info=true", b"")
        .await;
    assert_eq!(r.json()["size"], 0);
    assert_eq!(r.json()["hash"], "d41d8cd98f00b204e9800998ecf8427e");
    let requests = emu.requests();
    let puts: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint == "files/put")
        .collect();
    assert_eq!(puts.len(), 4);
    assert_eq!(puts[0].bytes_in, 5);
    assert_eq!(puts[0].path.as_deref(), Some("/up"));
    assert_eq!(puts[0].api_version, "v2");
}

#[tokio::test]
async fn upload_conflict_rules() {
    let (emu, c) = start().await;
    emu.put_file("/d/a.txt", &b"old"[..], 100);
    emu.create_folder_all("/d/folder");
    let q = |extra: &str| format!("path=%2Fd&info=true&{extra}");

    // Autorename is the default; a folder also counts as used; split at the last dot.
    let r = c.put_raw("v2", &q("filename=A.txt"), b"1").await;
    assert_eq!(r.json()["name"], "A (1).txt");
    let r = c.put_raw("v2", &q("filename=folder"), b"1").await;
    assert_eq!(r.json()["name"], "folder (1)");
    emu.put_file("/d/x.tar.gz", &b""[..], 1);
    assert_eq!(
        c.put_raw("v2", &q("filename=x.tar.gz"), b"").await.json()["name"],
        "x.tar (1).gz"
    );

    // Error mode (autorename=false, no overwrite): 400 in v2, 409 in v2.1.
    c.put_raw("v2", &q("filename=a.txt&autorename=false"), b"n")
        .await
        .assert_error(400, "Conflict");
    c.put_raw("v2.1", &q("filename=a.txt&autorename=false"), b"n")
        .await
        .assert_error(409, "Conflict");

    // Overwrite: the spelling of the upload wins; tags kept; contents replaced.
    let r = c
        .put_raw("v2", &q("filename=A.TXT&overwrite=true&modified=5"), b"new")
        .await;
    assert_eq!(r.json()["name"], "A.TXT");
    assert_eq!(r.json()["modified"], 5);
    assert_eq!(emu.read_file("/d/a.txt").unwrap(), b"new");

    // Conditions, checked in the order modified, size, hash.
    let hash = md5_hex(b"new");
    for (conditions, failed) in [
        ("overwriteIfModified=6&overwriteIfSize=999", "modified"),
        ("overwriteIfModified=5&overwriteIfSize=999", "size"),
        ("overwriteIfHash=00000000000000000000000000000000", "hash"),
    ] {
        let r = c
            .put_raw("v2", &q(&format!("filename=a.txt&{conditions}")), b"z")
            .await;
        r.assert_error(409, "Conflict");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(failed), "{conditions}: {message}");
    }
    let r = c
        .put_raw(
            "v2",
            &q(&format!(
                "filename=a.txt&overwriteIfModified=5&overwriteIfSize=3&overwriteIfHash={hash}"
            )),
            b"cond",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(emu.read_file("/d/a.txt").unwrap(), b"cond");

    // Conditions on a missing target: 409, unless overwriteIgnoreNonexisting= (either spelling).
    let r = c
        .put_raw("v2", &q("filename=new.txt&overwriteIfSize=1"), b"n")
        .await;
    r.assert_error(409, "Conflict");
    assert_eq!(r.json()["error"]["message"], "Overwrite file not found");
    let r = c
        .put_raw(
            "v2",
            &q("filename=new.txt&overwriteIfSize=1&overwriteIgnoreNonexisting="),
            b"n",
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .put_raw(
            "v2",
            &q("filename=new2.txt&overwriteIfSize=1&overwriteIgnoreNonexistent="),
            b"n",
        )
        .await;
    assert_eq!(r.status, 200);

    // The project's create-or-replace combination never renames.
    let combo = "filename=a.txt&overwrite=true&autorename=false&overwriteIgnoreNonexisting=";
    assert_eq!(
        c.put_raw("v2", &q(combo), b"again").await.json()["name"],
        "a.txt"
    );

    // Overwrite onto a folder.
    c.put_raw("v2", &q("filename=folder&overwrite=true"), b"x")
        .await
        .assert_error(400, "NotFile");
    // Parent must exist; uploads never create parents.
    c.put_raw("v2", "path=%2Fnope&filename=a&info=true", b"x")
        .await
        .assert_error(404, "NotFound");
    // Raw body without filename.
    let r = c.put_raw("v2", "path=%2Fd", b"x").await;
    r.assert_error(400, "BadRequest");
    assert!(r.text().contains("filename"));
    // Malformed parameter names the parameter.
    let r = c
        .put_raw("v2", &q("filename=a.txt&overwriteIfSize=big"), b"x")
        .await;
    r.assert_error(400, "BadRequest");
    assert!(r.text().contains("overwriteIfSize"));
}

#[tokio::test]
async fn folder_create_remove_and_conditions() {
    let (emu, c) = start().await;
    let r = c.mkdir("v2", "/", "Photos").await;
    assert_eq!(r.status, 200);
    assert!(emu.stat("/photos").unwrap().is_dir);
    for (api, parent, name, status, code) in [
        ("v2", "/", "PHOTOS", 400, "AlreadyExists"),
        ("v2.1", "/", "photos", 409, "AlreadyExists"),
        ("v2", "/missing", "x", 404, "NotFound"),
        ("v2", "/", "bad\u{1}name", 400, "BadRequest"),
        ("v2", "/", "..", 400, "BadRequest"),
        ("v2", "/", "🐂", 400, "BadRequest"),
    ] {
        c.mkdir(api, parent, name).await.assert_error(status, code);
    }
    emu.faults().set_reject_non_bmp(false);
    assert_eq!(c.mkdir("v2", "/", "🐂").await.status, 200);

    emu.put_file("/Photos/x/a.jpg", &b"jpeg"[..], 10);
    let rm = |q: &str| {
        c.req(
            Method::DELETE,
            &format!("/api/v2/mounts/primary/files/remove?{q}"),
        )
    };
    for conditions in [
        "path=/Photos&removeIfEmpty=",
        "path=/Photos/x/a.jpg&removeIfSize=5",
        "path=/Photos/x/a.jpg&removeIfModified=11",
        "path=/Photos/x/a.jpg&removeIfHash=abc",
    ] {
        send(rm(conditions)).await.assert_error(409, "Conflict");
    }
    let hash = md5_hex(b"jpeg");
    let ok = send(rm(&format!(
        "path=/Photos/x/a.jpg&removeIfSize=4&removeIfModified=10&removeIfHash={hash}"
    )))
    .await;
    assert_eq!(ok.status, 200);
    assert!(ok.body.is_empty());
    emu.put_file("/Photos/x/b.jpg", &b"jpeg"[..], 10);
    assert_eq!(send(rm("path=/photos")).await.status, 200, "recursive");
    assert!(emu.stat("/Photos/x/b.jpg").is_none());
    send(rm("path=/photos")).await.assert_error(404, "NotFound");
    send(rm("path=/")).await.assert_error(400, "NotDir");
    assert_eq!(c.get("/api/v2/mounts/primary").await.json()["spaceUsed"], 0);
}

#[tokio::test]
async fn copy_move_and_rename() {
    let (emu, c) = start().await;
    emu.put_file("/src/a.txt", &b"aaa"[..], 7);
    emu.put_file("/src/sub/b.txt", &b"bb"[..], 8);
    emu.create_folder_all("/dst");
    let url = |op: &str, v: &str, path: &str| {
        format!("/api/{v}/mounts/primary/files/{op}?path={}", enc(path))
    };

    // Copy a folder recursively, to a full destination path, primary alias in toMountId.
    let r = c
        .json(
            Method::PUT,
            &url("copy", "v2.1", "/src"),
            json!({"toMountId": "primary", "toPath": "/dst/copy"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"name": "copy"}));
    assert_eq!(emu.read_file("/dst/copy/sub/b.txt").unwrap(), b"bb");
    assert_eq!(emu.stat("/dst/copy/a.txt").unwrap().modified_ms, 7);
    // Copy with `modified`.
    let r = c
        .json(
            Method::PUT,
            &url("copy", "v2", "/src/a.txt"),
            json!({"toMountId": emu.primary_mount_id(), "toPath": "/dst/a2.txt", "modified": 99}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(emu.stat("/dst/a2.txt").unwrap().modified_ms, 99);
    // Cross-mount copy.
    let r = c
        .json(
            Method::PUT,
            &url("copy", "v2", "/src/a.txt"),
            json!({"toMountId": emu.secondary_mount_id(), "toPath": "/a.txt"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let other = c
        .get(&format!(
            "/api/v2/mounts/{}/files/info?path=/a.txt",
            emu.secondary_mount_id()
        ))
        .await;
    assert_eq!(other.json()["size"], 3);

    // Move keeps modified; source disappears.
    let r = c
        .json(
            Method::PUT,
            &url("move", "v2.1", "/dst/a2.txt"),
            json!({"toMountId": "primary", "toPath": "/moved.txt"}),
        )
        .await;
    assert_eq!(r.json(), json!({"name": "moved.txt"}));
    assert!(emu.stat("/dst/a2.txt").is_none());
    assert_eq!(emu.stat("/moved.txt").unwrap().modified_ms, 99);
    // Move with source conditions (v2.1).
    let r = c
        .json(
            Method::PUT,
            &url("move", "v2.1", "/moved.txt"),
            json!({"toMountId": "primary", "toPath": "/m2.txt", "ifModified": 1}),
        )
        .await;
    r.assert_error(409, "Conflict");
    let r = c.json(Method::PUT, &url("move", "v2.1", "/moved.txt"), json!({"toMountId": "primary", "toPath": "/m2.txt", "ifSize": 3, "ifHash": md5_hex(b"aaa")})).await;
    assert_eq!(r.status, 200);

    // Rename keeps the parent.
    let r = c
        .json(
            Method::PUT,
            &url("rename", "v2", "/m2.txt"),
            json!({"name": "final.txt"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(emu.stat("/final.txt").is_some());
}

#[tokio::test]
async fn public_link() {
    let (emu, c) = start().await;
    emu.put_file("/file.txt", &b"x"[..], 1);
    let r = c
        .json(
            Method::POST,
            "/api/v2/mounts/primary/links",
            json!({"path": "/file.txt"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let link = r.json();
    assert_eq!(link["name"], "file.txt");
    assert_eq!(link["path"], "/file.txt");
    assert_eq!(link["mountId"], emu.primary_mount_id());
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("https://app.koofr.net/links/")
    );
}

#[tokio::test]
async fn request_log_counts_requests_and_bytes() {
    let (emu, c) = start().await;
    emu.put_file("/a.bin", vec![0u8; 1000], 1);
    emu.clear_requests();
    c.get("/content/api/v2.1/mounts/primary/files/get?path=/a.bin")
        .await;
    c.get("/api/v2/mounts/primary/files/info?path=/nope").await;
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].endpoint, "files/get");
    assert_eq!(log[0].api_version, "v2.1");
    assert_eq!(log[0].status, 200);
    assert_eq!(log[0].bytes_out, 1000);
    assert_eq!(log[1].endpoint, "files/info");
    assert_eq!(log[1].status, 404);
    assert_eq!(log[1].path.as_deref(), Some("/nope"));
}
