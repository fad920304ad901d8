//! Test harness shared by every crate's integration tests (feature `testing`): gives each test
//! a client on the in-process emulator (default) or on real Koofr in a fresh random folder when
//! a live account is configured ([`LiveCredentials::from_env`]: `KOOFR_ENDPOINT` with
//! `KOOFR_ACCESS_TOKEN` or with `KOOFR_USERNAME` and `KOOFR_PASSWORD`, and optionally
//! `KOOFR_API_VERSION`).

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

/// A real Koofr account for live runs. Its secret never appears in `Debug`.
#[derive(Clone)]
pub struct LiveCredentials {
    /// Base URL, e.g. `https://app.koofr.net`.
    pub endpoint: String,
    /// How to sign in.
    pub auth: LiveAuth,
    /// The `api_version` key (`2` or `2.1`), when set.
    pub api_version: Option<String>,
}

/// How a live run signs in.
#[derive(Clone)]
pub enum LiveAuth {
    /// The account e-mail and an application password.
    Password {
        /// Account e-mail.
        username: String,
        /// Application password.
        password: String,
    },
    /// An OAuth2 bearer token.
    AccessToken(String),
}

impl std::fmt::Debug for LiveAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveAuth::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            LiveAuth::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

impl std::fmt::Debug for LiveCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCredentials")
            .field("endpoint", &self.endpoint)
            .field("auth", &self.auth)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl LiveCredentials {
    /// From `KOOFR_ENDPOINT` with `KOOFR_ACCESS_TOKEN`, or with `KOOFR_USERNAME` and
    /// `KOOFR_PASSWORD` (a token first, as the connectors' own config does), plus
    /// `KOOFR_API_VERSION`; `None` unless an endpoint and a complete credential are set.
    pub fn from_env() -> Option<LiveCredentials> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let auth = match get("KOOFR_ACCESS_TOKEN") {
            Some(token) => LiveAuth::AccessToken(token),
            None => LiveAuth::Password {
                username: get("KOOFR_USERNAME")?,
                password: get("KOOFR_PASSWORD")?,
            },
        };
        Some(LiveCredentials {
            endpoint: get("KOOFR_ENDPOINT")?,
            auth,
            api_version: get("KOOFR_API_VERSION"),
        })
    }

    /// The keys of a plugin config map for this account: `endpoint`, the credential
    /// (`username` and `password`, or `access_token`) and `api_version` when set.
    pub fn config_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([("endpoint".to_owned(), self.endpoint.clone())]);
        match &self.auth {
            LiveAuth::Password { username, password } => {
                map.insert("username".to_owned(), username.clone());
                map.insert("password".to_owned(), password.clone());
            }
            LiveAuth::AccessToken(token) => {
                map.insert("access_token".to_owned(), token.clone());
            }
        }
        if let Some(version) = &self.api_version {
            map.insert("api_version".to_owned(), version.clone());
        }
        map
    }

    /// The secret (application password or access token), for checks that it never leaks.
    pub fn secret(&self) -> &str {
        match &self.auth {
            LiveAuth::Password { password, .. } => password,
            LiveAuth::AccessToken(token) => token,
        }
    }
}

/// The live account from the environment, if one is configured.
pub fn live_settings() -> Option<LiveCredentials> {
    LiveCredentials::from_env()
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
            Some(live) => {
                let mut map = live.config_map();
                map.insert("location".to_owned(), "koofr:///".to_owned());
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
                        "live Koofr run skipped (KOOFR_ENDPOINT with KOOFR_ACCESS_TOKEN or KOOFR_USERNAME and KOOFR_PASSWORD is not set); using the emulator"
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
            Some(emu) => emu.take_requests(),
            None => Vec::new(),
        }
    }

    /// The flat config map a plugin's `Init` would receive for `location` (a folder below
    /// this test's root, or the root itself for `""`): the account's endpoint and credentials
    /// (a token on a token live run), its API version, and short retry delays.
    pub fn plugin_config(&self, relative: &str) -> HashMap<String, String> {
        let location = if relative.is_empty() {
            self.root.clone()
        } else {
            self.path(relative)
        };
        let mut map = self.account().config_map();
        map.extend([
            ("location".to_owned(), format!("koofr://{location}")),
            ("retries".to_owned(), "5".to_owned()),
            (
                "retry_delay_ms".to_owned(),
                if self.is_live() { "500" } else { "2" }.to_owned(),
            ),
        ]);
        map
    }

    /// The account this harness uses: the emulator's user and password, or the live one.
    pub fn account(&self) -> LiveCredentials {
        match &self.emulator {
            Some(emu) => LiveCredentials {
                endpoint: emu.endpoint(),
                auth: LiveAuth::Password {
                    username: emu.email().to_owned(),
                    password: emu.password().to_owned(),
                },
                api_version: None,
            },
            None => live_settings().expect("a live harness has live settings"),
        }
    }

    /// The account's secret (password or token), for checks that it never leaks.
    pub fn secret(&self) -> String {
        self.account().secret().to_owned()
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
