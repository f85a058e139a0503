//! The `herald` command line: `serve` (default), `migrate`, `token`, `config`.
//!
//! stdout carries only what a command is for (a token, the configuration,
//! the local demo's banner); logs go to stderr.

use clap::{Parser, Subcommand};

use crate::app::embedded_pg::{EmbeddedPostgres, Options};
use crate::app::logging;
use crate::app::startup::Application;
use crate::db;
use crate::http::auth::{Scope, Signer};
use crate::settings::Settings;

#[derive(Parser)]
#[command(
    name = "herald",
    // The version and the commit it was built from (build.rs).
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HERALD_GIT_REVISION"), ")"),
    about = "Message-center notifications over SSE, WebSocket and long-polling"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a JWT signed with the configured key.
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Space-separated scopes, e.g. "publish admin"; written into the
        /// token with their configured names (auth.scope_publish,
        /// auth.scope_admin).
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Token { sub, scope, ttl } => {
            let scopes = parse_scopes(&settings, scope.as_deref().unwrap_or(""))?;
            println!(
                "{}",
                Signer::from_settings(&settings.auth)?.token_for(&sub, &scopes, ttl)?
            );
            Ok(())
        }
        Cmd::Config => {
            println!("# HERALD_ENV={}", settings.environment);
            print!("{}", settings.to_redacted_toml());
            Ok(())
        }
        Cmd::Migrate => {
            logging::init_stderr_logging(&settings.log);
            let database = settings.database.clone();
            with_database(&settings, |url| async move {
                let pool = db::pool(&database, &url)?;
                db::migrate(&pool).await?;
                tracing::info!("migrations applied");
                Ok(())
            })
        }
        Cmd::Serve => {
            logging::init_stderr_logging(&settings.log);
            with_database(&settings.clone(), |url| serve(settings, url))
        }
    }
}

/// Runs `f` with a database URL: `DATABASE_URL`, or the private PostgreSQL
/// on `database.embedded_dir`: the one another Herald process already runs
/// there (used as it is, and left running), else one started for the
/// duration of `f`.
fn with_database<F, Fut>(settings: &Settings, f: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(url) = settings.database_url() {
        return runtime.block_on(f(url.to_owned()));
    }
    let dir = &settings.database.embedded_dir;
    let pg = match EmbeddedPostgres::attach(dir)? {
        Some(pg) => {
            tracing::info!(dir = %dir.display(), pid = pg.pid(), "DATABASE_URL is unset: using the private PostgreSQL already running on this directory (it stops with the process that started it)");
            pg
        }
        None => {
            tracing::info!(dir = %dir.display(), "DATABASE_URL is unset: starting a private PostgreSQL");
            EmbeddedPostgres::start(Options {
                data_dir: dir.clone(),
                fsync: true,
                max_connections: 100,
            })?
        }
    };
    let result = runtime.block_on(async {
        pg.create_database("herald").await?;
        f(pg.url("herald")).await
    });
    pg.stop();
    result
}

/// `publish`, `admin` or their configured names.
fn parse_scopes(settings: &Settings, words: &str) -> anyhow::Result<Vec<Scope>> {
    let auth = &settings.auth;
    words
        .split_ascii_whitespace()
        .map(|word| match word {
            "publish" => Ok(Scope::Publish),
            "admin" => Ok(Scope::Admin),
            w if w == auth.scope_publish => Ok(Scope::Publish),
            w if w == auth.scope_admin => Ok(Scope::Admin),
            other => anyhow::bail!(
                "unknown scope {other:?}: use publish or admin ({} or {})",
                auth.scope_publish,
                auth.scope_admin
            ),
        })
        .collect()
}

async fn serve(settings: Settings, url: String) -> anyhow::Result<()> {
    // Tokens are printed only where nobody else can use them: the local
    // demo (private database, loopback, local environment).
    let demo = if settings.is_local_demo() {
        Signer::from_settings(&settings.auth).ok()
    } else {
        None
    };
    let app = Application::build(settings.clone(), &url).await?;
    let handle = app.handle();
    let host = settings
        .server
        .listen
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h);
    let host = if host == "0.0.0.0" || host == "[::]" {
        "127.0.0.1"
    } else {
        host
    };
    let base = format!("http://{host}:{}", app.port());
    tracing::info!(listen = %settings.server.listen, port = app.port(), "listening");
    if let Some(signer) = &demo {
        print_banner(&base, signer);
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.stop().await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

/// The local demo's instructions, with ready-made tokens.
fn print_banner(base: &str, signer: &Signer) {
    println!("Herald is listening on {base}");
    let (Ok(user), Ok(publisher)) = (
        signer.token_for("demo", &[], 24 * 3600),
        signer.token_for("demo-publisher", &[Scope::Publish], 24 * 3600),
    ) else {
        return;
    };
    println!();
    println!("Open the message center of user `demo`:");
    println!("  {base}/#token={user}");
    println!();
    println!("Publish a notification to it:");
    println!(
        "  curl -sS -X POST {base}/v1/notifications -H 'Authorization: Bearer {publisher}' \\\n    -H 'Content-Type: application/json' -d '{{\"recipients\":[\"demo\"],\"title\":\"Hello from Herald\",\"body\":\"It works.\"}}'"
    );
    println!();
    println!("More tokens: herald token --sub USER [--scope \"publish admin\"] [--ttl SECONDS]");
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
