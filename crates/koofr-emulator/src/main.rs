//! The `koofr-emulator` binary: serves the emulated Koofr API until interrupted and prints the
//! endpoint on the first line of stdout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use koofr_emulator::{Emulator, EmulatorConfig, FaultRule};

/// An offline emulator of the Koofr REST API (v2 and v2.1), with fault injection.
///
/// Prints the endpoint (e.g. `http://127.0.0.1:8080`) on the first line of stdout, then logs to
/// stderr. Stop it with Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "koofr-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Account e-mail accepted by Basic auth and /token.
    #[arg(long, default_value = "me@example.com")]
    user: String,
    /// Application password accepted by Basic auth and /token.
    #[arg(
        long,
        env = "KOOFR_EMULATOR_PASSWORD",
        default_value = "APP-PASSWORD",
        hide_env_values = true
    )]
    password: String,
    /// Keep file contents as blob files in this directory instead of memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed for every random choice (ids, failure rate, shuffled listings).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Answer this fraction of all requests with 503 (0.0 to 1.0, seeded).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// A scripted fault, repeatable: `METHOD ENDPOINT ACTION [key=value ...]`, e.g.
    /// 'POST files/put 503 retry-after=1 times=3'. METHOD and ENDPOINT may be `*`; ACTION is a
    /// status, `drop`, `truncate=N`, `abort-upload=N` or `delay-ms=N`; options are times=N,
    /// skip=N, retry-after=S, path=PREFIX, body=TEXT.
    #[arg(long = "fault", value_parser = parse_fault)]
    faults: Vec<FaultRule>,
    /// Accept names outside the Basic Multilingual Plane (emoji) instead of answering 400.
    #[arg(long)]
    no_reject_non_bmp: bool,
    /// Account quota in MiB.
    #[arg(long, default_value_t = 10240)]
    quota_mib: u64,
    /// OAuth2 access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// After this many failed logins, answer 429 "Too many login retries".
    #[arg(long)]
    login_throttle: Option<u32>,
    /// Shuffle listing order (seeded) instead of insertion order.
    #[arg(long)]
    shuffle_listings: bool,
    /// Serve the control API under /_emulator/ (not Koofr's API): GET|DELETE requests,
    /// POST|DELETE faults (body: a --fault rule), POST expire-tokens, clock?ms=, latency?ms=,
    /// failure-rate?rate=[&endpoint=], quota?bytes=, omit-hash?path=,
    /// mount-offline?mount=&offline=, race-folder-create?times=, shuffle-listings?on=,
    /// reject-non-bmp?on=, login-throttle?after=.
    #[arg(long)]
    control_api: bool,
    /// Print the OAuth2 client id and secret to stderr at start.
    #[arg(long)]
    print_oauth_client: bool,
}

fn parse_fault(text: &str) -> Result<FaultRule, String> {
    text.parse::<FaultRule>().map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fail_rate),
        "--fail-rate must be between 0 and 1, got {}",
        args.fail_rate
    );
    let mut config = EmulatorConfig::default();
    config.email = args.user;
    config.password = args.password;
    config.data_dir = args.data_dir;
    config.latency = Duration::from_millis(args.latency_ms);
    config.seed = args.seed;
    config.quota_bytes = args.quota_mib.saturating_mul(1024 * 1024);
    config.reject_non_bmp = !args.no_reject_non_bmp;
    config.token_ttl = Duration::from_secs(args.token_ttl_secs);
    config.control_api = args.control_api;
    let emulator = Emulator::start_on(args.listen, config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let faults = emulator.faults();
    if args.fail_rate > 0.0 {
        faults.set_failure_rate(None, args.fail_rate);
    }
    for rule in args.faults {
        faults.inject(rule);
    }
    faults.set_login_throttle(args.login_throttle);
    faults.shuffle_listings(args.shuffle_listings);
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", emulator.endpoint())?;
        stdout.flush()?;
    }
    tracing::info!(
        endpoint = %emulator.endpoint(),
        user = emulator.email(),
        primary_mount = %emulator.primary_mount_id(),
        secondary_mount = %emulator.secondary_mount_id(),
        "serving the Koofr API"
    );
    if args.print_oauth_client {
        let (id, secret) = emulator.oauth_client();
        eprintln!("oauth client_id={id} client_secret={secret}");
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!("interrupted; stopping");
    Ok(())
}
