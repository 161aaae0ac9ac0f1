//! novanet: one binary for the server, the host agent, the client and the admin commands.

mod args;
mod client;
mod diagnose;
mod logging;
mod manage;
mod session;
mod table;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "novanet",
    version,
    about = "nova-network, re-implemented: server, agent and client",
    long_about = "nova-network, re-implemented: server, agent and client.\n\n\
        The client commands are nova's (python-novaclient 7.1.2) and log in with the OS_* \
        variables or the --os-* options; `novanet manage` is nova-manage, on the store itself.",
    after_help = "Examples:\n  \
        novanet manage --data-dir /var/lib/novanet bootstrap --bootstrap-password PW\n  \
        novanet server --data-dir /var/lib/novanet --listen 0.0.0.0:8774\n  \
        export OS_AUTH_URL=http://192.168.56.200:8774/identity/v3 OS_USERNAME=admin OS_PASSWORD=PW OS_PROJECT_NAME=admin\n  \
        novanet network-create vmnet --fixed-range-v4 10.0.0.0/24 --bridge br100\n  \
        novanet boot --image cirros --flavor 1 cirros\n  \
        novanet manage floating create --pool nova --ip_range 68.99.26.170/31"
)]
struct Cli {
    #[command(flatten)]
    auth: client::Auth,
    #[command(flatten)]
    output: client::Output,
    #[command(flatten)]
    log: logging::LogOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The API server (identity, compute, host plans) and the metadata service
    #[command(after_help = "Example:\n  \
        novanet server --data-dir /var/lib/novanet --config /etc/novanet/novanet.conf --listen 0.0.0.0:8774")]
    Server(ServerArgs),
    /// The host agent: makes this host's kernel match its plan
    #[command(
        after_help = "Example (with the OS_* variables of a user with the admin role):\n  \
        novanet agent --host controller --network-host --server http://192.168.56.200:8774"
    )]
    Agent(AgentArgs),
    /// Checks this host against its agent's plan (the seeds' troubleshooting: sysctls,
    /// promiscuous interface, bridges, dnsmasq, NAT, floating addresses, metadata, drift),
    /// or shows another host's latest checks; exit status 1 when something is wrong
    #[command(after_help = "Examples:\n  \
        novanet diagnose                      # this host, now (as root)\n  \
        novanet diagnose --host compute-1     # compute-1's latest report, from the server\n  \
        novanet diagnose --host compute-1 --json")]
    Diagnose(diagnose::DiagnoseArgs),
    /// dnsmasq's --dhcp-script (relays lease events to the agent)
    #[command(hide = true)]
    DhcpHook {
        /// The agent's socket
        #[arg(long)]
        socket: PathBuf,
        /// The network (bridge) the lease is on
        #[arg(long)]
        network: String,
        /// dnsmasq's arguments: add|old|del MAC IP [HOSTNAME]
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// nova-manage's commands, on the store directly (run them where the server's data dir is)
    Manage(manage::ManageArgs),
    /// Benchmarks that print figures
    #[command(subcommand)]
    Bench(novanet_bench::BenchCmd),
    /// The seed tutorial's cloud in network namespaces
    #[command(subcommand)]
    Lab(novanet_lab::LabCmd),
    /// Print a completion script for a shell on standard output
    #[command(after_help = "Examples:\n  \
        novanet completions bash > /etc/bash_completion.d/novanet\n  \
        novanet completions zsh > ~/.zfunc/_novanet\n  \
        novanet completions fish > ~/.config/fish/completions/novanet.fish")]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(client::ClientCmd),
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Where the store (state.sqlite) lives; made if missing
    #[arg(long, env = "NOVANET_DATA_DIR", default_value = "/var/lib/novanet")]
    data_dir: PathBuf,
    /// Keep the state in this PostgreSQL database instead (postgres://user@host/dbname), which
    /// several servers may share; nova.conf's `[database] connection` names it too
    #[arg(long, env = "NOVANET_DB", value_name = "URL")]
    db: Option<String>,
    /// The configuration: TOML with nova.conf's option names (network_manager, ...)
    #[arg(long, env = "NOVANET_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port of the API (identity, compute, host plans)
    #[arg(long, default_value = "127.0.0.1:8774")]
    listen: SocketAddr,
    /// Overrides metadata_listen:metadata_listen_port; "off" disables the metadata service
    #[arg(long, value_name = "ADDRESS:PORT|off")]
    metadata_listen: Option<String>,
    /// Creates the admin project and user with this password first (idempotent)
    #[arg(long, env = "NOVANET_BOOTSTRAP_PASSWORD", hide_env_values = true)]
    bootstrap_password: Option<String>,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// This host's name (as availability zones and service-list name it)
    #[arg(long)]
    host: String,
    /// The server's URL, e.g. http://192.168.56.200:8774, or several servers' (on one
    /// database) separated by commas: when one stops answering the agent moves to the next
    #[arg(long, env = "NOVANET_SERVER", value_name = "URL[,URL...]")]
    server: String,
    /// Serve single-host networks from this host (gateway, DHCP, NAT)
    #[arg(long)]
    network_host: bool,
    /// Where the agent keeps dnsmasq's files and what it applied [default: /var/lib/novanet/agent-HOST]
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
    /// What runs this host's instances: none (no VMs), qemu (qemu started directly), or
    /// libvirt (nova's compute_driver)
    #[arg(long, env = "NOVANET_COMPUTE_DRIVER", default_value = "none",
          value_parser = novanet_agent::hypervisor::ComputeDriver::parse)]
    compute_driver: novanet_agent::hypervisor::ComputeDriver,
    /// Serve the agent's /metrics (Prometheus text) and /healthz on this address, e.g.
    /// 127.0.0.1:9775 (not served unless given)
    #[arg(long, env = "NOVANET_AGENT_METRICS", value_name = "ADDRESS:PORT")]
    metrics_listen: Option<SocketAddr>,
}

/// The command line as parsed: `Cli`'s definition, with the `--os-*` options (and `--json`)
/// also accepted after the commands that use them. They are not global (clap's `global`):
/// `server`, `manage`, `lab` and `bench` neither take nor show them, and manage's own
/// `--project` cannot pick up `--os-project-name`'s value.
fn cli_command() -> clap::Command {
    let mut cmd = Cli::command();
    let client_commands: Vec<String> =
        <client::ClientCmd as Subcommand>::augment_subcommands(clap::Command::new("client"))
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
    for name in client_commands {
        cmd = cmd.mut_subcommand(name, |c| {
            <client::Output as Args>::augment_args(<client::Auth as Args>::augment_args(c))
        });
    }
    cmd = cmd.mut_subcommand("agent", <client::Auth as Args>::augment_args);
    cmd = cmd.mut_subcommand("diagnose", <client::Auth as Args>::augment_args);
    cmd
}

fn parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let m = cli_command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&m)?;
    if let Some((_, sub)) = m.subcommand() {
        cli.auth.overlay(sub);
        cli.output.overlay(sub);
    }
    Ok(cli)
}

fn fail(msg: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("{msg}");
    std::process::exit(code)
}

fn run_server(a: ServerArgs) -> Result<(), String> {
    let cfg = manage::load_config(a.config.as_deref()).map_err(|e| format!("error: {e}"))?;
    let store = novanet_store::Location::choose(a.db.as_deref(), &cfg, &a.data_dir)
        .and_then(|l| l.open())
        .map_err(|e| format!("error: {e}"))?;
    if let Some(pw) = &a.bootstrap_password {
        manage::bootstrap(store.as_ref(), pw).map_err(|e| format!("error: {e}"))?;
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
    let images_dir = a.data_dir.join("images");
    let images = novanet_server::compute::ImageStore::in_dir(images_dir.clone())
        .map_err(|e| format!("error: images in {}: {e}", images_dir.display()))?;
    let ca = novanet_server::ca::Ca::new(a.data_dir.join("ca"));
    let state = novanet_server::AppState::with_parts(store, cfg, images, ca);
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
        compute_driver: a.compute_driver,
        libvirt_uri: cfg.libvirt_uri.clone(),
        metrics_listen: a.metrics_listen,
    };
    let servers =
        novanet_agent::client::Servers::parse(&a.server).map_err(|e| format!("error: {e}"))?;
    let client = novanet_agent::client::Client::new(servers, creds);
    let mut agent = novanet_agent::Agent::new(opts, client).map_err(|e| format!("error: {e}"))?;
    agent.run().map_err(|e| format!("error: {e}"))
}

fn completions(shell: clap_complete::Shell) {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli_command(), "novanet", &mut script);
    table::out_bytes(&script);
}

fn main() {
    let cli = parse_cli(std::env::args_os()).unwrap_or_else(|e| e.exit());
    logging::init(&cli.log);
    let result: Result<(), String> = match cli.command {
        Command::Server(a) => run_server(a),
        Command::Agent(a) => run_agent(a, &cli.auth),
        Command::Diagnose(a) => match diagnose::run(a, &cli.auth) {
            Ok(code) => std::process::exit(code),
            Err(e) => fail(e, 2),
        },
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
        Command::Bench(b) => novanet_bench::run(b).map_err(|e| format!("error: {e}")),
        Command::Lab(l) => novanet_lab::run(l).map_err(|e| format!("error: {e}")),
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
        Command::Client(c) => client::run(&cli.auth, &cli.output, c).map_err(|e| e.0),
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
        parse_cli(std::iter::once("novanet").chain(line.split_whitespace()))
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
            "explain outside 68.99.26.170 tcp 22",
            "explain vm2 cirros",
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

    /// Every visible command says what it does, and every visible argument too; no two
    /// commands side by side say the same (one showing another's text).
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("`{path}` argument {}: no help", a.get_id()));
                }
                let names = a.get_value_names().unwrap_or_default();
                if names.iter().any(|n| n.ends_with("_POS")) {
                    missing.push(format!("`{path}` argument {}: named {names:?}", a.get_id()));
                }
            }
            let mut abouts = std::collections::HashMap::new();
            for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
                let p = format!("{path} {}", sub.get_name());
                match sub.get_about() {
                    None => missing.push(format!("`{p}`: no about")),
                    Some(about) => {
                        if let Some(other) = abouts.insert(about.to_string(), sub.get_name()) {
                            missing.push(format!("`{p}` shows the text of `{path} {other}`"));
                        }
                    }
                }
                walk(sub, &p, missing);
            }
        }
        let mut cmd = cli_command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "novanet", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    fn has_os_options(cmd: &clap::Command) -> bool {
        cmd.get_arguments()
            .any(|a| a.get_id().as_str().starts_with("os_") || a.get_id() == "output_json")
    }

    /// The `--os-*` options are the client's: `server`, `manage`, `lab` and `bench` neither
    /// take nor show them; the client commands show them under their own heading.
    #[test]
    fn global_options_only_where_they_belong() {
        let mut cmd = cli_command();
        cmd.build();
        fn none_below(cmd: &clap::Command, path: &str) {
            assert!(!has_os_options(cmd), "`{path}` takes the --os-* options");
            for sub in cmd.get_subcommands() {
                none_below(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        for name in ["server", "manage", "lab", "bench", "completions"] {
            none_below(cmd.find_subcommand(name).unwrap(), name);
        }
        for name in [
            "agent",
            "network-create",
            "list",
            "quota-update",
            "service-list",
        ] {
            let sub = cmd.find_subcommand(name).unwrap();
            assert!(has_os_options(sub), "`{name}` lacks the --os-* options");
        }
        let heading = |c: &clap::Command| {
            c.get_arguments()
                .find(|a| a.get_id() == "os_auth_url")
                .and_then(|a| a.get_help_heading())
                .map(str::to_string)
        };
        assert_eq!(heading(&cmd).as_deref(), Some("Global options"));
        let list = cmd.find_subcommand("list").unwrap();
        assert_eq!(heading(list).as_deref(), Some("Global options"));
        assert!(parse("manage --os-username x network list").is_err());
        assert!(parse("server --os-password x").is_err());
    }

    #[test]
    fn os_options_go_before_or_after_the_command() {
        let c = parse("--os-username demo --os-project-name demo list").unwrap();
        assert_eq!(
            (c.auth.username.as_str(), c.auth.project.as_str()),
            ("demo", "demo")
        );
        let c = parse("list --os-username demo --json").unwrap();
        assert_eq!(c.auth.username, "demo");
        assert!(c.output.json);
        // After the command wins, as the nearer word.
        let c = parse("--os-username a list --os-username b").unwrap();
        assert_eq!(c.auth.username, "b");
        let c = parse("--os-auth-url http://h:1/identity/v3 agent --host h --server http://h:1")
            .unwrap();
        assert_eq!(c.auth.auth_url, "http://h:1/identity/v3");
    }

    /// manage's `--project` is its own: without it, nothing is scrubbed or modified in the
    /// name of the client's project (`--os-project-name`, default admin).
    #[test]
    fn manage_project_is_not_the_client_project() {
        let c = parse("--os-project-name admin manage project scrub").unwrap();
        let Command::Manage(m) = c.command else {
            panic!("not manage")
        };
        match m.command {
            manage::ManageCommand::Project(manage::ProjectCmd::Scrub {
                project,
                project_pos,
            }) => assert_eq!((project, project_pos), (None, None)),
            other => panic!("{other:?}"),
        }
        let c = parse("manage network modify --fixed_range 10.0.0.0/24 --host compute-1").unwrap();
        let Command::Manage(m) = c.command else {
            panic!("not manage")
        };
        match m.command {
            manage::ManageCommand::Network(manage::NetworkCmd::Modify { project, .. }) => {
                assert_eq!(project, None)
            }
            other => panic!("{other:?}"),
        }
    }

    /// The log options go anywhere on the line, for every command.
    #[test]
    fn log_options_are_global() {
        let c = parse("--log-level debug list").unwrap();
        assert_eq!(c.log.level.as_deref(), Some("debug"));
        let c = parse("server --log-format json --log-level novanet_server=trace").unwrap();
        assert_eq!(c.log.format, logging::LogFormat::Json);
        assert_eq!(c.log.level.as_deref(), Some("novanet_server=trace"));
        let c = parse("manage --log-level warn network list").unwrap();
        assert_eq!(c.log.level.as_deref(), Some("warn"));
        assert!(parse("list --log-level loud=yes").is_err());
        assert!(parse("list --log-format xml").is_err());
    }

    #[test]
    fn completions_know_the_commands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli_command(), "novanet", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in [
                "network-create",
                "secgroup-delete-group-rule",
                "os-auth-url",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
        assert!(parse("completions bash").is_ok());
        assert!(parse("completions tcsh").is_err());
    }

    #[test]
    fn the_new_commands_parse() {
        let lines = [
            "service-list",
            "service-list --host compute-1 --binary nova-network",
            "quota-show",
            "quota-show --tenant demo",
            "quota-defaults",
            "quota-update 4b1c --floating-ips 10 --fixed-ips 100 --security-groups 5",
            "tenant-network-list",
            "tenant-network-create mynet 172.16.0.0/24",
            "tenant-network-show mynet",
            "tenant-network-delete mynet",
            "secgroup-update web web2 servers",
            "list-secgroup cirros",
            "secgroup-delete-group-rule default web tcp 80 80",
            "secgroup-delete-group-rule default web icmp -1 -1",
            "network-disassociate --host-only 1 vmnet",
            "manage --create project create demo",
        ];
        all_parse(&lines);
        // Each of a rule's numbers is named when it is wrong.
        let e = parse("secgroup-add-rule default tcp 22 twenty-two 0.0.0.0/0").unwrap_err();
        assert!(e.to_string().contains("TO_PORT"), "{e}");
        let e = parse("quota-update demo --floating-ips many").unwrap_err();
        assert!(e.to_string().contains("--floating-ips"), "{e}");
    }
}
