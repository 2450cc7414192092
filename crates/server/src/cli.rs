//! The command line: `o16n serve` and the `o16n admin` commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use o16n_types::Role;

use crate::config::Overrides;

/// The port of a compute node when none is given (the reference's).
pub const COMPUTE_NODE_PORT: u16 = 12805;

/// o16n: publish R and Python code and models as versioned REST web services.
#[derive(Debug, Parser)]
#[command(name = "o16n", version)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A TOML configuration file (see config/o16n.example.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory [default: ./o16n-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A `sqlite:` or `postgres://` database URL [default: SQLite in the data directory].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a server: the one-box server (default), a web node or a compute node.
    Serve(ServeArgs),
    /// Administer local accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage the runtimes that run R and Python code.
    #[command(subcommand)]
    Runtime(RuntimeCommand),
}

/// `runtime` subcommands.
#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Create or update a managed runtime environment, showing progress.
    Setup {
        /// The runtime: python.
        #[arg(value_enum)]
        runtime: SetupRuntime,
    },
}

/// Runtimes that `runtime setup` can prepare.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SetupRuntime {
    /// The Python environment (numpy, pandas, scikit-learn, dill).
    Python,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// What this process is: the one-box server (web and compute node in one process), a web
    /// node (REST API, database, realtime scoring, batches; R and Python work goes to
    /// registered compute nodes) or a compute node (R and Python workers only).
    #[arg(long, value_enum, default_value_t = ServerRole::Onebox)]
    pub role: ServerRole,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Port to listen on; 0 picks a free port [default: 12800, 12805 for a compute node].
    #[arg(long)]
    pub port: Option<u16>,
}

/// What a server process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerRole {
    /// Web node and compute node in one process.
    Onebox,
    /// A web node of a cluster.
    Web,
    /// A compute node of a cluster.
    Compute,
}

/// `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Change the admin password (read from standard input, or prompted for on a terminal).
    Password,
    /// Manage local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Evaluate the capacity of a running server by ramping load on a service.
    #[command(subcommand)]
    Capacity(CapacityCommand),
    /// Check a running server step by step.
    #[command(subcommand)]
    Diagnostic(DiagnosticCommand),
}

/// How the admin tools that talk to a running server reach it. The password is read from
/// standard input (or prompted for on a terminal).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's address [default: from the configuration's http.bind and http.port].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Who to sign in as; an Owner sees the stage timings.
    #[arg(long, default_value = "admin")]
    pub user: String,
}

/// `admin capacity` subcommands.
#[derive(Debug, Subcommand)]
pub enum CapacityCommand {
    /// Ramp closed-loop callers on one service and report throughput, latency percentiles,
    /// errors, pool occupancy and the stages of each request.
    Run(CapacityArgs),
}

/// Options of `admin capacity run`, named and defaulted as the reference's tool.
#[derive(Debug, Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// `latency`: add callers until the mean latency passes --latency (or --max-thread is
    /// reached); `thread`: until --max-thread.
    #[arg(long, value_enum, default_value = "latency")]
    pub strategy: crate::capacity::Strategy,
    /// The mean latency, in milliseconds, at which the latency strategy stops.
    #[arg(long, default_value_t = 250.0)]
    pub latency: f64,
    /// Callers of the first step.
    #[arg(long, default_value_t = 10)]
    pub min_thread: usize,
    /// The most callers.
    #[arg(long, default_value_t = 50)]
    pub max_thread: usize,
    /// Callers added at each step.
    #[arg(long, default_value_t = 10)]
    pub increment: usize,
    /// The service to load [default: a small Python service the tool publishes].
    #[arg(long, requires = "version")]
    pub service: Option<String>,
    /// The service's version.
    #[arg(long, requires = "service")]
    pub version: Option<String>,
    /// The inputs of every request as JSON, e.g. '{"x": 1}' [default: {"x": 1} for the
    /// default service, {} otherwise].
    #[arg(long)]
    pub args: Option<String>,
    /// How long each step runs, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Where the HTML report goes [default: capacity-report-<time>.html].
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Where the figures go as JSON.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// `admin diagnostic` subcommands.
#[derive(Debug, Subcommand)]
pub enum DiagnosticCommand {
    /// Check configuration, database, authentication, every compute node and runtime, and
    /// publish and consume a small R and Python service; exits non-zero when a step fails.
    Run(ServerArgs),
}

/// `admin user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input, or prompted for on a terminal.
    Add {
        /// The user name.
        name: String,
        /// The user's role.
        #[arg(long, default_value = "Contributor")]
        role: Role,
    },
    /// List users, their roles and where they sign in (local, or ldap for directory users).
    List,
    /// Remove a user and end their login sessions.
    Remove {
        /// The user name.
        name: String,
    },
}

impl Cli {
    /// The command-line overrides of the configuration.
    pub fn overrides(&self) -> Overrides {
        let (bind, port) = match &self.command {
            Command::Serve(args) => (
                args.bind.clone(),
                // A compute node listens on the reference's compute node port unless told.
                args.port
                    .or((args.role == ServerRole::Compute).then_some(COMPUTE_NODE_PORT)),
            ),
            Command::Admin(_) | Command::Runtime(_) => (None, None),
        };
        Overrides {
            data_dir: self.global.data_dir.clone(),
            database_url: self.global.database_url.clone(),
            bind,
            port,
        }
    }
}
