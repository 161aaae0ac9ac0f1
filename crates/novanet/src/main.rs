//! novanet: one binary for the server, the host agent, the client and the admin commands.

mod args;
mod bench;
mod manage;
mod table;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "novanet",
    version,
    about = "nova-network, re-implemented: server, agent and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// nova-manage's commands, on the store directly
    Manage(manage::ManageArgs),
    /// Benchmarks that print figures
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Manage(a) => manage::run(a),
        Command::Bench(b) => bench::run(b),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(match e {
            novanet_core::Error::Invalid { .. } => 2,
            _ => 1,
        });
    }
}
