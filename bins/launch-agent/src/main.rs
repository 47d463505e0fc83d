//! `launch-agent`: the W&B Launch agent for Kubernetes. Parses flags and the environment,
//! sets up logging and signals, and runs [`rlaunch_agent::Agent`] (or `check`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use rlaunch_agent::{Agent, Cli, Command, StopReason};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let (config, api_key) = match rlaunch_agent::load(&env, &cli.flags) {
        Ok(loaded) => loaded,
        Err(error) => return fail(&error),
    };
    rlaunch_agent::init_logging(config.log_format, config.verbosity);
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            let lines = rlaunch_agent::check(&config, api_key).await;
            let mut ok = true;
            for line in &lines {
                match &line.result {
                    Ok(detail) => println!("ok    {}: {detail}", line.what),
                    Err(reason) => {
                        ok = false;
                        println!("FAIL  {}: {reason}", line.what);
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Run => {
            let (trigger, shutdown) = rlaunch_agent::shutdown_channel();
            let _signals = rlaunch_agent::stop_on_signals(trigger);
            let agent = match Agent::new(config, api_key).await {
                Ok(agent) => agent,
                Err(error) => return fail(&error),
            };
            match agent.run(shutdown).await {
                Ok(StopReason::Signal | StopReason::StopPolling) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("caused by: {cause}");
        source = cause.source();
    }
    ExitCode::FAILURE
}
