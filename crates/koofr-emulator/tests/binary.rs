//! The `koofr-emulator` binary: prints its endpoint first on stdout, serves with the given
//! credentials and options, and documents every option in `--help`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the child process when the test ends, even on panic.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A response's body as JSON.
async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn binary_prints_endpoint_and_serves_with_faults() {
    let child = Command::new(env!("CARGO_BIN_EXE_koofr-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--user",
            "bin@example.com",
            "--password",
            "BIN-PASS",
            "--quota-mib",
            "5",
            "--fault",
            "GET user 503 retry-after=2 times=1",
            "--control-api",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut guard = ChildGuard(child);
    let stdout = guard.0.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let endpoint = first_line.trim().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint:?}");

    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{endpoint}{path}"))
            .basic_auth("bin@example.com", Some("BIN-PASS"))
            .send()
    };
    let first = get("/api/v2/user").await.unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "2");
    let user = json(get("/api/v2/user").await.unwrap()).await;
    assert_eq!(user["email"], "bin@example.com");
    let mount = json(get("/api/v2/mounts/primary").await.unwrap()).await;
    assert_eq!(mount["spaceTotal"], 5);
    let wrong = http
        .get(format!("{endpoint}/api/v2/user"))
        .basic_auth("bin@example.com", Some("APP-PASSWORD"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // The control API: script a fault, read the request log.
    let r = http
        .post(format!("{endpoint}/_emulator/faults"))
        .body("GET mounts 502")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("/api/v2/mounts").await.unwrap().status(), 502);
    let bad = http
        .post(format!("{endpoint}/_emulator/faults"))
        .body("GET nowhere 502")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let log = json(
        http.get(format!("{endpoint}/_emulator/requests"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let statuses: Vec<u64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200, 200, 401, 502]);
    let r = http
        .post(format!("{endpoint}/_emulator/quota?bytes=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn help_documents_every_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_koofr-emulator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--listen",
        "--user",
        "--password",
        "--data-dir",
        "--latency-ms",
        "--seed",
        "--fail-rate",
        "--fault",
        "--no-reject-non-bmp",
        "--quota-mib",
        "--token-ttl-secs",
        "--login-throttle",
        "--shuffle-listings",
    ] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_koofr-emulator"))
        .args(["--fault", "GET nowhere 503"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nowhere"));
}
