//! novanet: one binary for the server, the host agent, the client and the admin commands.

mod args;
mod bench;
mod client;
mod lab;
mod manage;
mod scale;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "novanet",
    version,
    about = "nova-network, re-implemented: server, agent and client"
)]
struct Cli {
    #[command(flatten)]
    auth: client::Auth,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The API server (identity, compute, host plans) and the metadata service
    Server(ServerArgs),
    /// The host agent: makes this host's kernel match its plan
    Agent(AgentArgs),
    /// dnsmasq's --dhcp-script (relays lease events to the agent)
    #[command(hide = true)]
    DhcpHook {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        network: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// nova-manage's commands, on the store directly
    Manage(manage::ManageArgs),
    /// Benchmarks that print figures
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// The seed tutorial's cloud in network namespaces
    #[command(subcommand)]
    Lab(lab::LabCmd),
    #[command(flatten)]
    Client(client::ClientCmd),
}

#[derive(Args, Debug)]
struct ServerArgs {
    #[arg(long, env = "NOVANET_DATA_DIR", default_value = "/var/lib/novanet")]
    data_dir: PathBuf,
    #[arg(long, env = "NOVANET_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8774")]
    listen: SocketAddr,
    /// Overrides metadata_listen:metadata_listen_port; "off" disables the metadata service
    #[arg(long)]
    metadata_listen: Option<String>,
    /// Creates the admin project and user with this password first (idempotent)
    #[arg(long, env = "NOVANET_BOOTSTRAP_PASSWORD")]
    bootstrap_password: Option<String>,
}

#[derive(Args, Debug)]
struct AgentArgs {
    #[arg(long)]
    host: String,
    /// The server's URL, e.g. http://192.168.56.200:8774
    #[arg(long, env = "NOVANET_SERVER")]
    server: String,
    /// Serve single-host networks from this host (gateway, DHCP, NAT)
    #[arg(long)]
    network_host: bool,
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds between full re-applies without changes
    #[arg(long, default_value_t = 60)]
    resync: u64,
    /// Apply once and exit
    #[arg(long)]
    once: bool,
    /// nova.conf (INI, flag file or TOML): this host's own options (flat_interface,
    /// public_interface, vlan_interface, routing_source_ip, my_ip) come from here
    #[arg(long, env = "NOVANET_CONFIG")]
    config: Option<PathBuf>,
}

fn fail(msg: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("{msg}");
    std::process::exit(code)
}

fn run_server(a: ServerArgs) -> Result<(), String> {
    let cfg = manage::load_config(a.config.as_deref()).map_err(|e| format!("error: {e}"))?;
    let store =
        novanet_store::SqliteStore::open_dir(&a.data_dir).map_err(|e| format!("error: {e}"))?;
    if let Some(pw) = &a.bootstrap_password {
        manage::bootstrap(&store, pw).map_err(|e| format!("error: {e}"))?;
    }
    let metadata = a
        .metadata_listen
        .clone()
        .unwrap_or_else(|| format!("{}:{}", cfg.metadata_listen, cfg.metadata_listen_port));
    let mut cfg = cfg;
    if cfg.public_endpoint.is_none() && !a.listen.ip().is_unspecified() {
        cfg.public_endpoint = Some(format!("http://{}", a.listen));
    } else if cfg.public_endpoint.is_none() {
        cfg.public_endpoint = Some(format!("http://{}:{}", cfg.my_ip, a.listen.port()));
    }
    let state = novanet_server::AppState::new(Arc::new(store), cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let api = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| format!("error: cannot listen on {}: {e}", a.listen))?;
        if metadata != "off" {
            let md = tokio::net::TcpListener::bind(&metadata)
                .await
                .map_err(|e| format!("error: cannot listen on {metadata}: {e}"))?;
            tokio::spawn(novanet_server::serve_metadata(state.clone(), md));
        }
        eprintln!(
            "novanet server: API on {}, metadata on {metadata}",
            a.listen
        );
        novanet_server::serve(state, api)
            .await
            .map_err(|e| e.to_string())
    })
}

fn run_agent(a: AgentArgs, auth: &client::Auth) -> Result<(), String> {
    let creds = novanet_agent::client::Credentials {
        auth_url: auth.auth_url.clone(),
        username: auth.username.clone(),
        password: auth.password.clone(),
        project: auth.project.clone(),
    };
    let binary = std::env::current_exe().map_err(|e| e.to_string())?;
    let cfg = manage::load_config(a.config.as_deref()).map_err(|e| format!("error: {e}"))?;
    let opts = novanet_agent::AgentOptions {
        host_options: novanet_core::config::HostOptions::from_config(&cfg),
        state_dir: a
            .state_dir
            .unwrap_or_else(|| PathBuf::from(format!("/var/lib/novanet/agent-{}", a.host))),
        host: a.host,
        network_host: a.network_host,
        binary,
        resync: Duration::from_secs(a.resync),
        once: a.once,
    };
    let client = novanet_agent::client::Client::new(&a.server, creds);
    let mut agent = novanet_agent::Agent::new(opts, client).map_err(|e| format!("error: {e}"))?;
    agent.run().map_err(|e| format!("error: {e}"))
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {
        Command::Server(a) => run_server(a),
        Command::Agent(a) => run_agent(a, &cli.auth),
        Command::DhcpHook {
            socket,
            network,
            args,
        } => novanet_agent::dhcp_hook(&socket, &network, &args).map_err(|e| format!("error: {e}")),
        Command::Manage(a) => manage::run(a).map_err(|e| {
            let code = if matches!(e, novanet_core::Error::Invalid { .. }) {
                2
            } else {
                1
            };
            fail(format!("error: {e}"), code)
        }),
        Command::Bench(b) => bench::run(b).map_err(|e| format!("error: {e}")),
        Command::Lab(l) => lab::run(l).map_err(|e| format!("error: {e}")),
        Command::Client(c) => client::run(&cli.auth, c).map_err(|e| e.0),
    };
    if let Err(e) = result {
        fail(e, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a command line as a shell would for these (no quotes in them).
    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("novanet").chain(line.split_whitespace()))
    }

    /// Every command the seeds show, verbatim, with `novanet` for `nova` and
    /// `novanet manage` for `nova-manage` (placeholders filled in).
    #[test]
    fn the_seeds_commands_parse_verbatim() {
        let seeds = [
            "network-create vmnet --fixed-range-v4 10.0.0.0/16 --fixed-cidr 10.0.20.0/24 --bridge br100",
            "network-create vmnet --fixed-range-v4=10.0.0.0/24 --fixed-cidr=10.20.0.0/16 --bridge=br100",
            "network-create vmnet --fixed-range-v4 10.0.0.0/24 --bridge br100 --multi-host T",
            "network-create public --fixed-range-v4 10.0.3.0/24 --vlan 100 --vpn 1000 --fixed-range-v6 fd00:1::/48",
            "network-create public --fixed-range-v4 10.0.2.0/24 --fixed-range-v6 fd00:1::/48",
            "network-create public --fixed-range-v4 10.0.1.0/24 --vlan 100 --vpn 1000 --fixed-range-v6 fd00:1::/48",
            "network-create first-net --fixed-range-v4 20.20.0.0/24 --project-id 4b1c",
            "network-create first-net --fixed-range-v4=20.20.0.0/24 --project-id=4b1c",
            "network-list",
            "boot --image cirros --flavor 1 cirros",
            "boot --image ed8b2a37-5535-4a5f-a615-443513036d71 --flavor 1 --nic net-id=n1 --nic net-id=n2 test-vm1",
            "list",
            "secgroup-add-rule default icmp -1 -1 0.0.0.0/0",
            "secgroup-add-rule default tcp 22 22 0.0.0.0/0",
            "secgroup-list-rules default",
            "floating-ip-create",
            "floating-ip-create nova",
            "floating-ip-list",
            "floating-ip-pool-list",
            "floating-ip-associate cirros 68.99.26.170",
            "floating-ip-disassociate cirros 68.99.26.170",
            "floating-ip-delete 68.99.26.170",
            "manage floating create --pool nova --ip_range 68.99.26.170/31",
            "manage floating create --pool POOL_NAME --ip_range 10.0.0.0/29",
            "manage floating list",
            "manage floating delete 68.99.26.170/31",
            "manage fixed reserve --address 10.0.0.5",
            "manage project scrub --project 4b1c",
            "manage network list",
            "manage network delete 2f3b9e17-4f20-4b05-842a-8d735fbb89cb",
            "manage network create --label vmnet --fixed_range_v4 10.0.0.0/24 --bridge br100",
        ];
        all_parse(&seeds);
    }

    fn all_parse(lines: &[&str]) {
        for line in lines {
            if let Err(e) = parse(line) {
                panic!("`{line}` does not parse:\n{e}");
            }
        }
    }

    #[test]
    fn the_issues_commands_parse() {
        let lines = [
            "network-show vmnet",
            "network-delete vmnet",
            "network-associate-host vmnet compute-1",
            "network-disassociate vmnet",
            "boot --image cirros --flavor 1 --nic net-id=n1,v4-fixed-ip=10.0.0.9 --key-name k --user-data /dev/null --meta a=b --security-groups default,web --availability-zone nova:compute-2 vm2",
            "show cirros",
            "delete cirros",
            "floating-ip-bulk-create 68.99.26.0/29 --pool nova",
            "floating-ip-bulk-list",
            "floating-ip-bulk-delete 68.99.26.0/29",
            "fixed-ip-get 10.0.0.2",
            "fixed-ip-reserve 10.0.0.2",
            "fixed-ip-unreserve 10.0.0.2",
            "secgroup-create web servers",
            "secgroup-list",
            "secgroup-delete web",
            "secgroup-delete-rule default tcp 22 22 0.0.0.0/0",
            "secgroup-add-group-rule default web tcp 80 80",
            "secgroup-add-default-rule tcp 80 80 0.0.0.0/0",
            "secgroup-list-default-rules",
            "provider-rule-add tcp 25 25 0.0.0.0/0",
            "provider-rule-list",
            "add-secgroup cirros web",
            "remove-secgroup cirros web",
            "keypair-add mykey",
            "keypair-list",
            "manage fixed unreserve --address 10.0.0.5",
            "manage fixed list",
            "manage network modify --fixed_range 10.0.0.0/24 --project demo --host compute-1",
            "manage floating create --pool nova --ip-range 68.99.26.170/31 --interface eth1",
        ];
        all_parse(&lines);
        // Bad input names the problem.
        let e = parse("secgroup-add-rule default tcp twenty-two 22 0.0.0.0/0").unwrap_err();
        assert!(e.to_string().contains("FROM_PORT"), "{e}");
    }
}
