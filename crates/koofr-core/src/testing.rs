//! Test harness shared by every crate's integration tests (feature `testing`): gives each test
//! a client on the in-process emulator (default) or on real Koofr in a fresh random folder when
//! `KOOFR_ENDPOINT`, `KOOFR_USERNAME` and `KOOFR_PASSWORD` are set.

use std::collections::HashMap;
use std::sync::Once;

use crate::{Client, KoofrConfig, KoofrPath, RetryPolicy};
use koofr_emulator::{Emulator, EmulatorConfig, RequestRecord};

/// One test's backend and the folder it works in.
#[derive(Debug)]
pub struct Harness {
    /// The emulator, when not running live.
    pub emulator: Option<Emulator>,
    /// A client with short retry delays, rooted at the mount root.
    pub client: Client,
    /// A fresh folder for this test (created).
    pub root: KoofrPath,
}

/// The live credentials from the environment, when all three are set.
pub fn live_settings() -> Option<(String, String, String)> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some((
        get("KOOFR_ENDPOINT")?,
        get("KOOFR_USERNAME")?,
        get("KOOFR_PASSWORD")?,
    ))
}

static SKIP_NOTICE: Once = Once::new();

/// The retry policy of test clients: millisecond backoffs.
pub fn test_retry() -> RetryPolicy {
    RetryPolicy::fast_for_tests(4)
}

/// A Basic-auth config for `emulator`.
pub fn emulator_config(emulator: &Emulator) -> KoofrConfig {
    KoofrConfig::basic(&emulator.endpoint(), emulator.email(), emulator.password())
        .expect("emulator config")
        .with_retry(test_retry())
}

/// Starts an emulator with the default configuration.
pub async fn start_emulator() -> Emulator {
    start_emulator_with(EmulatorConfig::default()).await
}

/// Starts an emulator with `config`.
pub async fn start_emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("start emulator")
}

impl Harness {
    /// Live Koofr when configured, else the emulator.
    pub async fn any() -> Harness {
        match live_settings() {
            Some((endpoint, username, password)) => {
                let map = HashMap::from([
                    ("location".to_owned(), "koofr:///".to_owned()),
                    ("endpoint".to_owned(), endpoint),
                    ("username".to_owned(), username),
                    ("password".to_owned(), password),
                ]);
                let (config, _) = KoofrConfig::from_map(&map, &|_| None).expect("live config");
                let client =
                    Client::new(config.with_retry(RetryPolicy::with_attempts(5))).expect("client");
                let tag: u64 = rand_tag();
                let root = KoofrPath::parse(&format!("/koofr-plakar-test-{tag:016x}")).unwrap();
                client
                    .create_folder_all(&root)
                    .await
                    .expect("create the live test folder");
                Harness {
                    emulator: None,
                    client,
                    root,
                }
            }
            None => {
                SKIP_NOTICE.call_once(|| {
                    // Written to the real stderr (not the captured test output) so it is seen.
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "live Koofr run skipped (KOOFR_ENDPOINT, KOOFR_USERNAME and KOOFR_PASSWORD are not all set); using the emulator"
                    );
                });
                Harness::emulator().await
            }
        }
    }

    /// Always the emulator (tests that need its fault hooks or request log).
    pub async fn emulator() -> Harness {
        let emulator = start_emulator().await;
        let client = Client::new(emulator_config(&emulator)).expect("client");
        let root = KoofrPath::parse("/test").unwrap();
        emulator.create_folder_all("/test");
        Harness {
            emulator: Some(emulator),
            client,
            root,
        }
    }

    /// Whether this harness runs against real Koofr.
    pub fn is_live(&self) -> bool {
        self.emulator.is_none()
    }

    /// The emulator; panics on a live run (call only from emulator-only tests).
    pub fn emu(&self) -> &Emulator {
        self.emulator
            .as_ref()
            .expect("this test needs the emulator")
    }

    /// A path below this test's folder.
    pub fn path(&self, relative: &str) -> KoofrPath {
        self.root.join(relative).unwrap()
    }

    /// Requests logged since the last call (empty when live).
    pub fn take_requests(&self) -> Vec<RequestRecord> {
        match &self.emulator {
            Some(emu) => {
                let requests = emu.requests();
                emu.clear_requests();
                requests
            }
            None => Vec::new(),
        }
    }

    /// The flat config map a plugin's `Init` would receive for `location` (a folder below
    /// this test's root, or the root itself for `""`), with short retry delays.
    pub fn plugin_config(&self, relative: &str) -> HashMap<String, String> {
        let location = if relative.is_empty() {
            self.root.clone()
        } else {
            self.path(relative)
        };
        let config = self.client.config();
        let mut map = HashMap::from([
            ("location".to_owned(), format!("koofr://{location}")),
            (
                "endpoint".to_owned(),
                config.endpoint().as_str().trim_end_matches('/').to_owned(),
            ),
            ("retries".to_owned(), "5".to_owned()),
            (
                "retry_delay_ms".to_owned(),
                if self.is_live() { "500" } else { "2" }.to_owned(),
            ),
        ]);
        let (username, password) = self.credentials();
        map.insert("username".to_owned(), username);
        map.insert("password".to_owned(), password);
        map
    }

    /// The e-mail and application password this harness uses.
    pub fn credentials(&self) -> (String, String) {
        match &self.emulator {
            Some(emu) => (emu.email().to_owned(), emu.password().to_owned()),
            None => {
                let (_, username, password) =
                    live_settings().expect("a live harness has live settings");
                (username, password)
            }
        }
    }

    /// Removes the live test folder (the emulator is dropped with the harness).
    pub async fn finish(self) {
        if self.is_live() {
            self.client
                .remove(&self.root)
                .await
                .expect("remove the live test folder");
        }
    }
}

fn rand_tag() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (std::process::id() as u64).rotate_left(32)
}

/// Collects a byte stream.
pub async fn collect(stream: crate::ByteStream) -> crate::Result<Vec<u8>> {
    use futures::StreamExt;
    let mut stream = stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Deterministic test content.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_right(13) as u8 ^ seed)
        .collect()
}

/// Request counts per endpoint name.
pub fn count(requests: &[RequestRecord], endpoint: &str) -> usize {
    requests.iter().filter(|r| r.endpoint == endpoint).count()
}
