//! `pureboot-controller`: the daemon (`serve`) and the admin CLI.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // RUST_LOG as usual; `info` when unset.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = pureboot_controller::cli::Cli::parse();
    match pureboot_controller::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
