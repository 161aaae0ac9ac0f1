//! `novanet manage`: nova-manage's commands, working on the store directly.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use novanet_core::config::Config;
use novanet_core::floating::parse_range;
use novanet_core::{Error, Result};
use novanet_store::{NetworkUpdate, SqliteStore, Store};

use crate::args::NetworkCreateArgs;

#[derive(Args, Debug)]
pub struct ManageArgs {
    #[arg(long, env = "NOVANET_DATA_DIR", default_value = "/var/lib/novanet")]
    pub data_dir: PathBuf,
    #[arg(long, env = "NOVANET_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ManageCommand,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ManageCommand {
    /// Networks: create, list, delete, modify
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Fixed IPs: reserve, unreserve, list
    #[command(subcommand)]
    Fixed(FixedCmd),
    /// Floating IP pools: create, list, delete
    #[command(subcommand)]
    Floating(FloatingCmd),
    /// Projects: create, scrub
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Users: create
    #[command(subcommand)]
    User(UserCmd),
    /// Creates project admin and user admin with role admin (as keystone-manage bootstrap)
    Bootstrap {
        #[arg(long = "bootstrap-password", alias = "bootstrap_password")]
        bootstrap_password: String,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    Create(NetworkCreateArgs),
    List,
    Delete {
        fixed_range_pos: Option<String>,
        #[arg(long = "fixed_range", alias = "fixed-range")]
        fixed_range: Option<String>,
        #[arg(long)]
        uuid: Option<String>,
    },
    Modify {
        #[arg(long = "fixed_range", alias = "fixed-range")]
        fixed_range: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long = "disassociate-project", alias = "disassociate_project")]
        disassociate_project: bool,
        #[arg(long = "disassociate-host", alias = "disassociate_host")]
        disassociate_host: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FixedCmd {
    Reserve {
        #[arg(long)]
        address: String,
    },
    Unreserve {
        #[arg(long)]
        address: String,
    },
    List {
        #[arg(long)]
        host: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FloatingCmd {
    Create {
        ip_range_pos: Option<String>,
        #[arg(long = "ip_range", alias = "ip-range")]
        ip_range: Option<String>,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        interface: Option<String>,
    },
    List {
        #[arg(long)]
        host: Option<String>,
    },
    Delete {
        ip_range_pos: Option<String>,
        #[arg(long = "ip_range", alias = "ip-range")]
        ip_range: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    Create {
        name: String,
    },
    List,
    /// Disassociates the project's networks and deletes its security groups
    Scrub {
        project_pos: Option<String>,
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    Create {
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        project: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
}

pub fn load_config(path: Option<&std::path::Path>) -> Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::invalid("config", format!("cannot read {}: {e}", p.display()))
            })?;
            let l = Config::load(&text, &p.display().to_string())?;
            for w in &l.warnings {
                eprintln!("novanet: {}: {w}", p.display());
            }
            Ok(l.config)
        }
    }
}

fn either(field: &str, a: &Option<String>, b: &Option<String>) -> Result<String> {
    a.clone()
        .or_else(|| b.clone())
        .ok_or_else(|| Error::invalid(field, format!("give --{field}")))
}

fn none(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("None")
}

pub fn run(args: ManageArgs) -> Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    let store = SqliteStore::open_dir(&args.data_dir)?;
    match args.command {
        ManageCommand::Network(cmd) => network(&store, &cfg, cmd),
        ManageCommand::Fixed(FixedCmd::Reserve { address }) => {
            store.set_fixed_reserved(&address, true)
        }
        ManageCommand::Fixed(FixedCmd::Unreserve { address }) => {
            store.set_fixed_reserved(&address, false)
        }
        ManageCommand::Fixed(FixedCmd::List { host }) => {
            println!(
                "{:<18}\t{:<15}\t{:<15}\thost",
                "network", "IP address", "hostname"
            );
            for f in store.fixed_ips(host.as_deref())? {
                println!(
                    "{:<18}\t{:<15}\t{:<15}\t{}",
                    f.network_cidr,
                    f.fixed.address,
                    none(&f.hostname),
                    none(&f.instance_host)
                );
            }
            Ok(())
        }
        ManageCommand::Floating(cmd) => floating(&store, &cfg, cmd),
        ManageCommand::Project(ProjectCmd::Create { name }) => {
            let p = store.create_project(&name)?;
            println!("{}", p.id);
            Ok(())
        }
        ManageCommand::Project(ProjectCmd::List) => {
            for p in store.projects()? {
                println!("{}\t{}", p.id, p.name);
            }
            Ok(())
        }
        ManageCommand::Project(ProjectCmd::Scrub {
            project_pos,
            project,
        }) => {
            let key = either("project", &project, &project_pos)?;
            // Accept a project's name as well as its id.
            let id = store.project(&key).map(|p| p.id).unwrap_or(key);
            let r = store.scrub_project(&id)?;
            eprintln!(
                "scrubbed project {id}: {} networks disassociated, {} security groups deleted",
                r.networks, r.security_groups
            );
            Ok(())
        }
        ManageCommand::User(UserCmd::Create {
            name,
            password,
            project,
            role,
        }) => {
            let p = store.project(&project)?;
            let u = store.create_user(&name, &password)?;
            store.assign_role(&u.id, &p.id, &role)?;
            println!("{}", u.id);
            Ok(())
        }
        ManageCommand::Bootstrap { bootstrap_password } => bootstrap(&store, &bootstrap_password),
    }
}

/// Idempotent, as keystone-manage bootstrap is: existing records are kept.
pub fn bootstrap(store: &dyn Store, password: &str) -> Result<()> {
    let p = match store.project("admin") {
        Ok(p) => p,
        Err(Error::NotFound(_)) => store.create_project("admin")?,
        Err(e) => return Err(e),
    };
    let u = match store.user("admin") {
        Ok(u) => u,
        Err(Error::NotFound(_)) => store.create_user("admin", password)?,
        Err(e) => return Err(e),
    };
    store.assign_role(&u.id, &p.id, "admin")?;
    store.ensure_default_group(&p.id)?;
    Ok(())
}

fn network(store: &SqliteStore, cfg: &Config, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create(a) => {
            let req = a.to_request()?;
            novanet_core::planning::check_requested_range(&req)?;
            let (nets, warnings) = store.create_networks(&req, cfg)?;
            novanet_server::compute::claim_for_live_network_host(
                store,
                novanet_server::unix_now(),
            )?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            for n in nets {
                println!(
                    "{}\t{}\t{}",
                    n.uuid,
                    n.label,
                    n.cidr.as_deref().or(n.cidr_v6.as_deref()).unwrap_or("")
                );
            }
            Ok(())
        }
        NetworkCmd::List => {
            let nets = store.networks()?;
            if nets.is_empty() {
                println!("No networks found");
                return Ok(());
            }
            let row = |c: [&str; 9]| {
                println!(
                    "{:<5}\t{:<18}\t{:<15}\t{:<15}\t{:<15}\t{:<15}\t{:<15}\t{:<15}\t{:<15}",
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
                )
            };
            row([
                "id",
                "IPv4",
                "IPv6",
                "start address",
                "DNS1",
                "DNS2",
                "VlanID",
                "project",
                "uuid",
            ]);
            for n in nets {
                let vlan = n.vlan.map(|v| v.to_string());
                row([
                    &n.id.to_string(),
                    none(&n.cidr),
                    none(&n.cidr_v6),
                    none(&n.dhcp_start),
                    none(&n.dns1),
                    none(&n.dns2),
                    none(&vlan),
                    none(&n.project_id),
                    &n.uuid,
                ]);
            }
            Ok(())
        }
        NetworkCmd::Delete {
            fixed_range_pos,
            fixed_range,
            uuid,
        } => {
            let key = uuid.or(fixed_range).or(fixed_range_pos).ok_or_else(|| {
                Error::invalid("fixed_range", "give --fixed_range CIDR or --uuid UUID")
            })?;
            let n = store.delete_network(&key, true)?;
            eprintln!("deleted network {} ({})", n.label, n.uuid);
            Ok(())
        }
        NetworkCmd::Modify {
            fixed_range,
            project,
            host,
            disassociate_project,
            disassociate_host,
        } => {
            if (disassociate_project && project.is_some()) || (disassociate_host && host.is_some())
            {
                return Err(Error::invalid(
                    "disassociate",
                    "a disassociate flag cannot be mixed with a value for the same field",
                ));
            }
            let update = NetworkUpdate {
                project_id: if disassociate_project {
                    Some(None)
                } else {
                    project.map(Some)
                },
                host: if disassociate_host {
                    Some(None)
                } else {
                    host.map(Some)
                },
            };
            store.update_network(&fixed_range, &update)?;
            Ok(())
        }
    }
}

fn floating(store: &SqliteStore, cfg: &Config, cmd: FloatingCmd) -> Result<()> {
    match cmd {
        FloatingCmd::Create {
            ip_range_pos,
            ip_range,
            pool,
            interface,
        } => {
            let range = either("ip_range", &ip_range, &ip_range_pos)?;
            let addrs = parse_range("ip_range", &range)?;
            let pool = pool.unwrap_or_else(|| cfg.default_floating_pool.clone());
            let interface = interface.unwrap_or_else(|| cfg.public_interface.clone());
            store.create_floating_ips(&pool, &interface, &addrs)?;
            Ok(())
        }
        FloatingCmd::List { host } => {
            let all = store.floating_ips(None)?;
            if all.is_empty() {
                println!("No floating IP addresses have been defined.");
            }
            for f in all.iter().filter(|f| host.is_none() || f.host == host) {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    none(&f.project_id),
                    f.address,
                    none(&f.instance_uuid),
                    f.pool,
                    f.interface
                );
            }
            Ok(())
        }
        FloatingCmd::Delete {
            ip_range_pos,
            ip_range,
        } => {
            let range = either("ip_range", &ip_range, &ip_range_pos)?;
            let addrs = parse_range("ip_range", &range)?;
            store.delete_floating_ips(&addrs)?;
            Ok(())
        }
    }
}
