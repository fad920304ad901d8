//! `cargo xtask demo`: builds the three plugin binaries, seeds a realistic tree on the
//! in-process Koofr emulator (or a fresh folder on real Koofr), backs it up and restores it
//! through the real plugins, verifies, and prints a summary. The host is a real plakar when one
//! is found (`--host plakar`), else kloset-plugin's own host (`--host builtin`).

use anyhow::{Context, bail};
use koofr_e2e::pipeline::{PipelineOptions, run_demo};
use koofr_e2e::plakar::{Plakar, PlakarPackage};
use koofr_e2e::plakar_demo::run_plakar_demo;
use koofr_e2e::{Progress, TreeSpec, build_plugins};
use koofr_emulator::EmulatorConfig;
use koofr_testkit::{EmulatorOptions, LiveAuth, LiveCredentials, Site};

/// Who drives the plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Host {
    /// A real plakar v1.1.x ($PLAKAR, else `plakar` on PATH) running its own commands.
    Plakar,
    /// kloset-plugin's host, driving the plugins over stdin/stdout as plakar does.
    Builtin,
}

/// Options of `cargo xtask demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Number of files in the seeded tree.
    #[arg(long, default_value_t = 1000)]
    pub files: usize,
    /// Largest file in MiB (one file has exactly this size).
    #[arg(long, default_value_t = 24)]
    pub max_file_mib: u64,
    /// Seed of the tree (names, sizes, times, contents).
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Latency the emulator adds to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Packfile target size in MiB (builtin host; plakar sizes its own packfiles).
    #[arg(long, default_value_t = 16)]
    pub packfile_mib: u64,
    /// Build and run the plugins in release mode.
    #[arg(long)]
    pub release: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Who drives the plugins (default: plakar when one is found, else builtin).
    #[arg(long, value_enum)]
    pub host: Option<Host>,
    /// Where to run: the emulator, or real Koofr.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// Real Koofr credentials, shared by the commands that can run against it.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// Real Koofr endpoint (with --access-token, or --username and --password: run on real Koofr).
    #[arg(long, env = "KOOFR_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Real Koofr account e-mail.
    #[arg(long, env = "KOOFR_USERNAME")]
    pub username: Option<String>,
    /// Real Koofr application password.
    #[arg(long, env = "KOOFR_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// An OAuth2 access token instead of the e-mail and password.
    #[arg(long, env = "KOOFR_ACCESS_TOKEN", hide_env_values = true)]
    pub access_token: Option<String>,
    /// The Koofr API version the connectors use (`2` or `2.1`).
    #[arg(long, env = "KOOFR_API_VERSION")]
    pub api_version: Option<String>,
}

/// The live credentials when an endpoint and a complete credential are given (a token first);
/// an error when only some are.
pub fn live_credentials(args: &LiveArgs) -> anyhow::Result<Option<LiveCredentials>> {
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let auth = match (
        given(&args.access_token),
        given(&args.username),
        given(&args.password),
    ) {
        (Some(token), _, _) => Some(LiveAuth::AccessToken(token)),
        (None, Some(username), Some(password)) => Some(LiveAuth::Password { username, password }),
        (None, None, None) => None,
        (None, u, p) => {
            let missing: Vec<&str> = [
                ("--username/KOOFR_USERNAME", u.is_none()),
                ("--password/KOOFR_PASSWORD", p.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            bail!(
                "a real Koofr run needs an access token, or a username and a password; missing {}",
                missing.join(", ")
            )
        }
    };
    match (given(&args.endpoint), auth) {
        (Some(endpoint), Some(auth)) => Ok(Some(LiveCredentials {
            endpoint,
            auth,
            api_version: given(&args.api_version),
        })),
        (None, None) => Ok(None),
        (None, Some(_)) => bail!("a real Koofr run needs --endpoint/KOOFR_ENDPOINT"),
        (Some(_), None) => bail!(
            "a real Koofr run needs --access-token/KOOFR_ACCESS_TOKEN, or --username/KOOFR_USERNAME and --password/KOOFR_PASSWORD"
        ),
    }
}

/// The host to use, and the plakar for `Host::Plakar`; says which and why on stderr.
fn choose_host(asked: Option<Host>) -> anyhow::Result<Option<Plakar>> {
    match (asked, Plakar::find()) {
        (Some(Host::Builtin), _) => {
            eprintln!("Host: builtin (kloset-plugin's host), as asked");
            Ok(None)
        }
        (_, Ok(Some(plakar))) => {
            eprintln!(
                "Host: plakar {} ({})",
                plakar.version(),
                plakar.program().display()
            );
            Ok(Some(plakar))
        }
        (Some(Host::Plakar), Ok(None)) => bail!(
            "--host plakar: no plakar found ($PLAKAR is unset and there is no `plakar` on PATH; \
             e.g. PATH=$PWD/../shared/tools/plakar:$PATH)"
        ),
        (Some(Host::Plakar), Err(err)) => Err(err.context("--host plakar")),
        (None, Ok(None)) => {
            eprintln!(
                "Host: builtin (kloset-plugin's host): no plakar found ($PLAKAR is unset and \
                 there is no `plakar` on PATH)"
            );
            Ok(None)
        }
        (None, Err(err)) => {
            eprintln!("Host: builtin (kloset-plugin's host): {err:#}");
            Ok(None)
        }
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let live = live_credentials(&args.live)?;
    anyhow::ensure!(args.files >= 3, "--files must be at least 3");
    anyhow::ensure!(args.max_file_mib >= 1, "--max-file-mib must be at least 1");
    anyhow::ensure!(
        (1..=1024).contains(&args.packfile_mib),
        "--packfile-mib must be 1..=1024"
    );
    let plakar = choose_host(args.host)?;
    eprintln!("Building the plugin binaries…");
    let binaries = build_plugins(args.release).context("phase build")?;
    let progress = if args.no_progress {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let mut options = PipelineOptions::new(binaries, progress);
    options.packfile_bytes = args.packfile_mib << 20;
    let spec = TreeSpec {
        files: args.files,
        max_file_bytes: args.max_file_mib << 20,
        seed: args.seed,
    };
    tokio::runtime::Runtime::new()?.block_on(async move {
        let site = match &live {
            Some(credentials) => Site::start_live(credentials, "demo").await?,
            None => {
                let mut config = EmulatorConfig::default();
                config.latency = std::time::Duration::from_millis(args.latency_ms);
                Site::start_emulator_with(EmulatorOptions {
                    config,
                    // Contents on disk: the account holds the tree three times over.
                    on_disk: true,
                })
                .await?
            }
        };
        eprintln!(
            "Backend: {} (base folder {}); tree: {} files up to {} MiB, seed {}",
            site.backend_name(),
            site.base(),
            spec.files,
            args.max_file_mib,
            spec.seed
        );
        let outcome = match &plakar {
            Some(plakar) => {
                async {
                    let dir = koofr_e2e::binaries::target_directory()?.join("plakar-package");
                    let package = PlakarPackage::create(plakar, &options.binaries, &dir)
                        .await
                        .context("phase package (plakar pkg create)")?;
                    run_plakar_demo(&site, &spec, plakar, &package, &progress)
                        .await
                        .map(|run| run.summary)
                }
                .await
            }
            None => run_demo(&site, &spec, &options)
                .await
                .map(|run| run.summary),
        };
        // The live folder is removed whatever happened.
        let cleanup = site.finish().await;
        let summary = outcome?;
        cleanup?;
        println!("{summary}");
        Ok(())
    })
}
