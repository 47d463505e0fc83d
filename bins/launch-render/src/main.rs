//! `launch-render`: print the Kubernetes objects the launch agent would create for a run spec.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = rlaunch_render_cli::Args::parse();
    let env = |name: &str| std::env::var(name).ok();
    match rlaunch_render_cli::run(&args, &mut std::io::stdin(), &env) {
        Ok(output) => {
            for warning in &output.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", output.stdout);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
