//! The `shears` command line: serve, worker, migrate, prune, openapi.

use clap::{Parser, Subcommand};
use shears::config::{LogFormat, ServeArgs, StoreArgs, WorkerArgs};

#[derive(Parser)]
#[command(name = "shears", version, about = "Pruning as a service")]
struct Cli {
    /// Log format.
    #[arg(long, env = "SHEARS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and an embedded worker pool.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Run workers only, against a shared database and blob directory.
    Worker {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Prune a local model folder or file with the service's engine.
    Prune(shears::cli::prune::PruneArgs),
    /// Print the OpenAPI document (YAML).
    Openapi,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!(
        "shutting down: no new jobs are claimed; running jobs finish or return to the queue"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve { store, serve } => {
            let running = shears::app::serve(&store, &serve).await?;
            stop_signal().await;
            running.shutdown().await;
        }
        Command::Worker { store, worker } => {
            let running = shears::app::work(&store, &worker).await?;
            stop_signal().await;
            running.shutdown().await;
        }
        Command::Migrate { store } => {
            shears::app::open(&store).await?;
            println!("migrations applied");
        }
        Command::Prune(args) => {
            tokio::task::spawn_blocking(move || shears::cli::prune::run(&args)).await??
        }
        Command::Openapi => print!("{}", shears::api::openapi_yaml()),
    }
    Ok(())
}
