//! The `o16n` command: parses the command line, resolves the configuration and runs the
//! requested command.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::Parser;
use o16n_server::cli::{
    AdminCommand, Cli, Command, RuntimeCommand, ServerRole, SetupRuntime, UserCommand,
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
            for (name, role) in users {
                println!("{name}\t{role}");
            }
        }),
        AdminCommand::User(UserCommand::Remove { name }) => app
            .remove_user(&name)
            .await
            .map(|()| println!("removed user {name}")),
    };
    store.close().await;
    Ok(outcome?)
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
