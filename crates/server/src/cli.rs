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
    /// List users and their roles.
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
