//! The `o16n` command: parses the command line, resolves the configuration and runs the
//! requested command.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::Parser;
use o16n_server::cli::{
    AdminCommand, CapacityArgs, CapacityCommand, Cli, Command, DiagnosticCommand, RuntimeCommand,
    ServerArgs, ServerRole, SetupRuntime, UserCommand,
};
use o16n_server::config::Config;
use o16n_server::startup::{Application, Bootstrap, open_app};
use o16n_server::telemetry;
use secrecy::SecretString;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(
        cli.global.config.as_deref(),
        std::env::vars(),
        cli.overrides(),
    )?;
    match cli.command {
        Command::Serve(args) => serve(config, args.role).await,
        Command::Admin(command) => {
            // Administrative commands print their results; only warnings belong on stderr.
            telemetry::init("warn");
            admin(config, command).await
        }
        Command::Runtime(RuntimeCommand::Setup {
            runtime: SetupRuntime::Python,
        }) => {
            telemetry::init("warn");
            let interpreter = o16n_runtime::python_env::setup(&config.python_config()).await?;
            println!("{}", interpreter.display());
            Ok(())
        }
    }
}

async fn serve(config: Config, role: ServerRole) -> anyhow::Result<()> {
    telemetry::init(&config.log.level);
    tracing::info!(?role, ?config, "starting");
    let bootstrap = Bootstrap {
        admin_password: std::env::var("O16N_ADMIN_PASSWORD")
            .ok()
            .map(SecretString::from),
        compute: None,
    };
    let application = Application::build_as(role, &config, bootstrap).await?;
    // Scripts and tests wait for exactly this line on stdout.
    println!(
        "listening on {}://{}",
        application.scheme(),
        application.local_addr()
    );
    application.run_until_stopped(shutdown_signal()).await
}

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    // These talk to a running server over its REST API rather than to the database.
    match command {
        AdminCommand::Capacity(CapacityCommand::Run(args)) => return capacity(&config, args).await,
        AdminCommand::Diagnostic(DiagnosticCommand::Run(args)) => {
            return diagnostic(&config, args).await;
        }
        _ => {}
    }
    let (app, store) = open_app(&config, std::sync::Arc::new(o16n_compute::NoNodes)).await?;
    let outcome = match command {
        AdminCommand::Password => {
            let password = read_password("New admin password: ")?;
            app.change_password(o16n_app::ADMIN_USERNAME, &password)
                .await
                .map(|()| println!("admin password changed; existing logins of admin were ended"))
        }
        AdminCommand::User(UserCommand::Add { name, role }) => {
            let password = read_password(&format!("Password for {name}: "))?;
            app.add_user(&name, role, &password)
                .await
                .map(|()| println!("added user {name} with role {role}"))
        }
        AdminCommand::User(UserCommand::List) => app.list_users().await.map(|users| {
            for (name, role, source) in users {
                println!("{name}\t{role}\t{source}");
            }
        }),
        AdminCommand::User(UserCommand::Remove { name }) => app
            .remove_user(&name)
            .await
            .map(|()| println!("removed user {name}")),
        AdminCommand::Capacity(_) | AdminCommand::Diagnostic(_) => {
            unreachable!("handled above")
        }
    };
    store.close().await;
    Ok(outcome?)
}

/// The server the admin tools talk to: `--url`, else the configured listener.
fn server_url(config: &Config, args: &ServerArgs) -> String {
    args.url.clone().unwrap_or_else(|| {
        let host = match config.http.bind.as_str() {
            "0.0.0.0" | "::" => "127.0.0.1",
            bind => bind,
        };
        format!("http://{host}:{}", config.http.port)
    })
}

/// Reads the password of the admin tools' user: prompted for once on a terminal, else the
/// first line of standard input.
fn read_login_password(user: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(format!(
            "Password for {user}: "
        ))?)
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the password from standard input")?;
        Ok(input.lines().next().unwrap_or_default().to_owned())
    }
}

async fn capacity(config: &Config, args: CapacityArgs) -> anyhow::Result<()> {
    let url = server_url(config, &args.server);
    let password = read_login_password(&args.server.user)?;
    let server =
        o16n_server::remote::RemoteServer::sign_in(&url, &args.server.user, &password).await?;
    let inputs = args
        .args
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--args must be JSON, e.g. '{\"x\": 1}'")?;
    anyhow::ensure!(
        args.duration > 0.0 && args.duration.is_finite(),
        "--duration must be a positive number of seconds"
    );
    let report = args.report.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        format!("capacity-report-{now}.html").into()
    });
    let options = o16n_server::capacity::CapacityOptions {
        strategy: args.strategy,
        latency_ms: args.latency,
        min_thread: args.min_thread,
        max_thread: args.max_thread,
        increment: args.increment,
        service: args.service.zip(args.version),
        args: inputs,
        step_duration: std::time::Duration::from_secs_f64(args.duration),
        report,
        json: args.json,
    };
    o16n_server::capacity::run(server, options).await.map(drop)
}

async fn diagnostic(config: &Config, args: ServerArgs) -> anyhow::Result<()> {
    let url = server_url(config, &args);
    let password = read_login_password(&args.user)?;
    let configuration = format!(
        "loaded (data directory {}, server {url})",
        config.data_dir.display()
    );
    let checks = o16n_server::diagnostic::run(&url, &args.user, &password, configuration).await;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|check| !check.passed)
        .map(|check| check.step.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} steps failed: {}",
        failed.len(),
        checks.len(),
        failed.join(", ")
    );
    println!("all {} steps passed", checks.len());
    Ok(())
}

/// Reads a password: prompted for twice on a terminal, else the first line of standard input.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let second = rpassword::prompt_password("Repeat it: ")?;
        anyhow::ensure!(first == second, "the passwords differ");
        Ok(first)
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the password from standard input")?;
        let password = input.lines().next().unwrap_or_default().to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok(password)
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        tokio::signal::ctrl_c()
            .await
            .expect("SIGINT handler installs");
    };
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs")
            .recv()
            .await;
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
