//! `novanet manage`: nova-manage's commands, working on the store directly.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use novanet_core::config::Config;
use novanet_core::explain::{explain, Cloud, Traffic};
use novanet_core::floating::parse_range;
use novanet_core::{Error, Result};
use novanet_store::prelude::*;
use novanet_store::{Location, NetworkUpdate, SQLITE_FILE};

use crate::args::NetworkCreateArgs;
use crate::table::out;

// No doc comment on the struct: clap would show it as the about of `manage`.
#[derive(Args, Debug)]
pub struct ManageArgs {
    /// The server's data dir, where its store (state.sqlite) is
    #[arg(long, env = "NOVANET_DATA_DIR", default_value = "/var/lib/novanet")]
    pub data_dir: PathBuf,
    /// The server's PostgreSQL database instead (postgres://user@host/dbname); nova.conf's
    /// `[database] connection` names it too
    #[arg(long, env = "NOVANET_DB", value_name = "URL")]
    pub db: Option<String>,
    /// The configuration (nova.conf's INI, a flag file, or TOML): the defaults for new
    /// networks and floating IPs come from here
    #[arg(long, env = "NOVANET_CONFIG")]
    pub config: Option<PathBuf>,
    /// Make a new, empty store if the data dir holds none (bootstrap always may)
    #[arg(long)]
    pub create: bool,
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
    /// Floating IPs: create, list, delete
    #[command(subcommand)]
    Floating(FloatingCmd),
    /// Projects: create, list, scrub
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Users: create
    #[command(subcommand)]
    User(UserCmd),
    /// Cloudpipe: `vpn change` sets where a project's VPN is reached from outside
    #[command(subcommand)]
    Vpn(VpnCmd),
    /// The store's schema: `db sync` creates or upgrades it; `db migrate --to URL` copies
    /// the data dir's SQLite store into an empty PostgreSQL database
    #[command(subcommand)]
    Db(DbCmd),
    /// Configuration: `config show` prints every option's effective value and its source
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Create the store if needed, project admin and user admin with role admin (as
    /// keystone-manage bootstrap; idempotent)
    #[command(
        after_help = "Example:\n  novanet manage --data-dir /var/lib/novanet bootstrap --bootstrap-password PW"
    )]
    Bootstrap {
        /// The admin user's password (kept if the user exists)
        #[arg(
            long = "bootstrap-password",
            alias = "bootstrap_password",
            value_name = "PASSWORD"
        )]
        bootstrap_password: String,
    },
    /// Images: `image build-test` makes a small bootable test image from Debian's packages
    #[command(subcommand)]
    Image(ImageCmd),
    /// Why SRC can or cannot reach DST, from the store without a server (as `novanet
    /// explain`)
    #[command(after_help = "Example:\n  novanet manage explain outside 68.99.26.170 tcp 22")]
    Explain {
        /// An instance's name or UUID, a fixed or floating address, an address, or `outside`
        src: String,
        /// Where the traffic goes, in the same forms
        dst: String,
        /// tcp, udp or icmp (default: a ping)
        proto: Option<String>,
        /// TCP or UDP port, or ICMP type
        port: Option<String>,
        /// Print the explanation as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Build the test image (Debian's cloud kernel and a busybox initramfs that takes a DHCP
    /// lease on every NIC and prints it and its metadata hostname on the serial console):
    /// writes DIR/vmlinuz and DIR/initrd.img. Downloads are cached in $NOVANET_IMAGE_CACHE,
    /// else DATA_DIR/cache/packages.
    BuildTest {
        /// The output directory (default DATA_DIR/test-image)
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// Create the store's schema, or upgrade it to this novanet's (either engine)
    #[command(after_help = "Examples:\n  \
        novanet manage --data-dir /var/lib/novanet db sync\n  \
        novanet manage --db postgresql://novanet@db/novanet db sync")]
    Sync,
    /// Copy the data dir's SQLite store into an empty PostgreSQL database, checking every
    /// table's row count (the SQLite store is only read)
    #[command(after_help = "Example:\n  \
        novanet manage --data-dir /var/lib/novanet db migrate --to postgresql://novanet@db/novanet")]
    Migrate {
        /// The PostgreSQL database to fill
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Every option with its effective value and where it came from (the file's line, or
    /// nova's default); secrets are masked
    #[command(
        after_help = "Example:\n  novanet manage --config /etc/novanet/nova.conf config show"
    )]
    Show,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create networks (nova-manage splits the range into --num-networks of --network-size)
    #[command(after_help = "Example:\n  \
        novanet manage network create --label vmnet --fixed_range_v4 10.0.0.0/24 --bridge br100")]
    Create(NetworkCreateArgs),
    /// List all networks
    #[command(after_help = "Example:\n  novanet manage network list")]
    List,
    /// Delete a network (it must have no project and no instances)
    #[command(after_help = "Examples:\n  \
        novanet manage network delete 2f3b9e17-4f20-4b05-842a-8d735fbb89cb\n  \
        novanet manage network delete --fixed_range 10.0.0.0/24")]
    Delete {
        /// UUID or CIDR of the network
        #[arg(value_name = "NETWORK")]
        fixed_range_pos: Option<String>,
        /// CIDR of the network
        #[arg(long = "fixed_range", alias = "fixed-range", value_name = "CIDR")]
        fixed_range: Option<String>,
        /// UUID of the network
        #[arg(long, value_name = "UUID")]
        uuid: Option<String>,
    },
    /// Associate a network with a project or a host, or disassociate it
    #[command(after_help = "Examples:\n  \
        novanet manage network modify --fixed_range 10.0.0.0/24 --project demo --host compute-1\n  \
        novanet manage network modify --fixed_range 10.0.0.0/24 --disassociate-project")]
    Modify {
        /// CIDR (or UUID) of the network
        #[arg(long = "fixed_range", alias = "fixed-range", value_name = "CIDR")]
        fixed_range: String,
        /// Associate the network with this project (ID or name)
        #[arg(long, value_name = "PROJECT")]
        project: Option<String>,
        /// Associate the network with this host (its network host)
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Take the network away from its project
        #[arg(long = "disassociate-project", alias = "disassociate_project")]
        disassociate_project: bool,
        /// Take the network away from its host
        #[arg(long = "disassociate-host", alias = "disassociate_host")]
        disassociate_host: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FixedCmd {
    /// Reserve a fixed IP: it is never handed to an instance
    #[command(after_help = "Example:\n  novanet manage fixed reserve --address 10.0.0.5")]
    Reserve {
        /// The fixed IP address
        #[arg(long, value_name = "ADDRESS")]
        address: String,
    },
    /// Unreserve a fixed IP
    Unreserve {
        /// The fixed IP address
        #[arg(long, value_name = "ADDRESS")]
        address: String,
    },
    /// List fixed IPs: network, address, hostname, host
    List {
        /// Only those of instances on this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FloatingCmd {
    /// Create floating IPs for a range
    #[command(after_help = "Example:\n  \
        novanet manage floating create --pool nova --ip_range 68.99.26.170/31")]
    Create {
        /// The range (CIDR or a single address), or --ip_range
        #[arg(value_name = "IP_RANGE")]
        ip_range_pos: Option<String>,
        /// The range (CIDR or a single address)
        #[arg(long = "ip_range", alias = "ip-range", value_name = "IP_RANGE")]
        ip_range: Option<String>,
        /// The pool (default: default_floating_pool, nova)
        #[arg(long, value_name = "POOL")]
        pool: Option<String>,
        /// The interface the addresses go on (default: public_interface)
        #[arg(long, value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// List floating IPs: project, address, instance, pool, interface
    #[command(after_help = "Example:\n  novanet manage floating list")]
    List {
        /// Only those of this host
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Delete the floating IPs of a range
    #[command(after_help = "Example:\n  novanet manage floating delete 68.99.26.170/31")]
    Delete {
        /// The range (CIDR or a single address), or --ip_range
        #[arg(value_name = "IP_RANGE")]
        ip_range_pos: Option<String>,
        /// The range (CIDR or a single address)
        #[arg(long = "ip_range", alias = "ip-range", value_name = "IP_RANGE")]
        ip_range: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    /// Create a project (prints its ID)
    Create {
        /// The project's name
        name: String,
    },
    /// List projects: ID and name
    List,
    /// Disassociate the project's networks and delete its security groups
    #[command(after_help = "Example:\n  novanet manage project scrub --project 4b1c")]
    Scrub {
        /// The project (ID or name), or --project
        #[arg(value_name = "PROJECT")]
        project_pos: Option<String>,
        /// The project (ID or name)
        #[arg(long, value_name = "PROJECT")]
        project: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum VpnCmd {
    /// Set the VPN public address and port of all of a project's networks (the network
    /// host DNATs ADDRESS:PORT/udp to the project's VPN instance)
    #[command(
        after_help = "Example:\n  novanet manage vpn change --project demo --ip 192.168.56.200 --port 1000"
    )]
    Change {
        /// The project (ID or name)
        #[arg(long, value_name = "PROJECT")]
        project: String,
        /// The public IPv4 address
        #[arg(long, value_name = "IP")]
        ip: String,
        /// The public UDP port
        #[arg(long, value_name = "PORT")]
        port: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user with a role in a project (prints its ID)
    #[command(after_help = "Example:\n  \
        novanet manage user create demo --password PW --project demo --role member")]
    Create {
        /// The user's name
        name: String,
        /// The user's password
        #[arg(long)]
        password: String,
        /// The project the user gets a role in (ID or name)
        #[arg(long, value_name = "PROJECT")]
        project: String,
        /// The role: member, or admin (every project, every policy)
        #[arg(long, default_value = "member")]
        role: String,
    },
}

/// `manage config show`: what the server and agents would run with, option by option.
fn config_show(path: Option<&std::path::Path>) -> Result<()> {
    let loaded = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Error::invalid("config", format!("cannot read {}: {e}", p.display()))
            })?;
            Config::load(&text, &p.display().to_string())?
        }
        None => Config::load("", "none")?,
    };
    let values = serde_json::to_value(&loaded.config)
        .map_err(|e| Error::Store(format!("cannot show the configuration: {e}")))?;
    let mut text = format!(
        "# format: {}\n",
        if path.is_some() {
            loaded.format
        } else {
            "none (defaults)"
        }
    );
    let secret = |k: &str| k.contains("password") || k.contains("secret");
    let mut lines: Vec<(String, String)> = Vec::new();
    for (k, v) in values.as_object().into_iter().flatten() {
        match v {
            serde_json::Value::Object(section) => {
                for (sk, sv) in section {
                    let key = format!("{k}.{sk}");
                    let shown = if secret(sk) {
                        "\"***\"".to_string()
                    } else {
                        sv.to_string()
                    };
                    lines.push((key, shown));
                }
            }
            v => {
                let shown = if secret(k) && v.as_str().is_some_and(|s| !s.is_empty()) {
                    "\"***\"".to_string()
                } else {
                    v.to_string()
                };
                lines.push((k.clone(), shown));
            }
        }
    }
    for (k, v) in lines {
        let source = loaded
            .sources
            .get(&k)
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        text.push_str(&format!("{k} = {v}  # {source}\n"));
    }
    for w in &loaded.warnings {
        text.push_str(&format!("# note: {w}\n"));
    }
    out(text.trim_end());
    Ok(())
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
    a.clone().or_else(|| b.clone()).ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "give --{field} {} (or it alone, as the first argument)",
                field.to_uppercase()
            ),
        )
    })
}

fn none(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("None")
}

/// Opens the store, refusing to make an SQLite one unless asked: a mistyped `--data-dir`
/// would otherwise get a new, empty store and every command would seem to work.
fn open_store(location: &Location, create: bool) -> Result<std::sync::Arc<dyn Store>> {
    if !create && !location.exists() {
        let dir = location.describe();
        return Err(Error::invalid(
            "data_dir",
            format!(
                "{dir} holds no novanet store ({SQLITE_FILE}). Check --data-dir (or NOVANET_DATA_DIR): \
                 it must be the server's data dir. To start a new one, run `novanet manage \
                 --data-dir {dir} bootstrap --bootstrap-password PW` (or give --create)."
            ),
        ));
    }
    location.open()
}

/// `db sync` and `db migrate`.
fn db(args: &ManageArgs, location: &Location, cmd: &DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Sync => {
            open_store(location, true)?;
            eprintln!("the store at {} is up to date", location.describe());
            Ok(())
        }
        DbCmd::Migrate { to } => {
            if !novanet_store::is_postgres_url(to) {
                return Err(Error::invalid(
                    "to",
                    format!("{to:?} is not a PostgreSQL URL (postgresql://user@host/dbname)"),
                ));
            }
            let to = Location::choose(Some(to), &Config::default(), &args.data_dir)?;
            let Location::Postgres(url) = &to else {
                unreachable!("a PostgreSQL URL was checked")
            };
            let counts =
                novanet_store::migrate::sqlite_to_postgres(&args.data_dir.join(SQLITE_FILE), url)?;
            let mut text = format!("{:<30}\t{:>8}\t{:>8}", "table", "sqlite", "postgres");
            for c in &counts {
                text.push_str(&format!(
                    "\n{:<30}\t{:>8}\t{:>8}",
                    c.table, c.source, c.target
                ));
            }
            out(&text);
            eprintln!(
                "copied {} into {}: every table's rows counted alike; point the servers at it \
                 with --db or [database] connection",
                args.data_dir.display(),
                to.describe()
            );
            Ok(())
        }
    }
}

/// A project's ID from its ID or name. An ID the store does not know is taken as it is
/// (projects may live in an external Keystone); a name must be known.
pub fn project_id(store: &dyn Store, key: &str) -> Result<String> {
    match store.project(key) {
        Ok(p) => Ok(p.id),
        Err(Error::NotFound(_)) if crate::session::looks_like_id(key) => {
            eprintln!(
                "warning: no project {key} in this store; taking it as the ID of a project kept elsewhere (an external Keystone)"
            );
            Ok(key.to_string())
        }
        Err(Error::NotFound(_)) => Err(Error::not_found(format!(
            "project {key} not found: `novanet manage project list` shows the projects (ID and name)"
        ))),
        Err(e) => Err(e),
    }
}

pub fn run(args: ManageArgs) -> Result<()> {
    if let ManageCommand::Config(ConfigCmd::Show) = args.command {
        return config_show(args.config.as_deref());
    }
    if let ManageCommand::Image(ImageCmd::BuildTest { output }) = &args.command {
        return build_test_image(&args.data_dir, output.as_deref());
    }
    let cfg = load_config(args.config.as_deref())?;
    let location = Location::choose(args.db.as_deref(), &cfg, &args.data_dir)?;
    if let ManageCommand::Db(cmd) = &args.command {
        return db(&args, &location, cmd);
    }
    let create = args.create || matches!(args.command, ManageCommand::Bootstrap { .. });
    let shared = open_store(&location, create)?;
    let store = shared.as_ref();
    match args.command {
        ManageCommand::Db(_) => unreachable!("handled above"),
        ManageCommand::Explain {
            src,
            dst,
            proto,
            port,
            json,
        } => {
            let traffic = Traffic::parse(proto.as_deref(), port.as_deref())?;
            let st = novanet_server::AppState::new(shared.clone(), cfg);
            let (plans, instances) = novanet_server::explain::cloud_from_store(&st)
                .map_err(|e| Error::Store(e.message))?;
            let cloud = Cloud {
                plans: &plans,
                instances: &instances,
            };
            let e = explain(&cloud, &src, &dst, traffic)?;
            if json {
                out(&serde_json::to_string_pretty(&e).expect("an explanation serialises"));
            } else {
                out(e.render().trim_end());
            }
            Ok(())
        }
        ManageCommand::Config(ConfigCmd::Show) => config_show(args.config.as_deref()),
        ManageCommand::Network(cmd) => network(store, &cfg, cmd),
        ManageCommand::Fixed(FixedCmd::Reserve { address }) => {
            store.set_fixed_reserved(&address, true)?;
            eprintln!("reserved fixed IP {address}");
            Ok(())
        }
        ManageCommand::Fixed(FixedCmd::Unreserve { address }) => {
            store.set_fixed_reserved(&address, false)?;
            eprintln!("unreserved fixed IP {address}");
            Ok(())
        }
        ManageCommand::Fixed(FixedCmd::List { host }) => {
            let mut text = format!(
                "{:<18}\t{:<15}\t{:<15}\thost",
                "network", "IP address", "hostname"
            );
            for f in store.fixed_ips(host.as_deref())? {
                text.push_str(&format!(
                    "\n{:<18}\t{:<15}\t{:<15}\t{}",
                    f.network_cidr,
                    f.fixed.address,
                    none(&f.hostname),
                    none(&f.instance_host)
                ));
            }
            out(&text);
            Ok(())
        }
        ManageCommand::Floating(cmd) => floating(store, &cfg, cmd),
        ManageCommand::Project(ProjectCmd::Create { name }) => {
            let p = store.create_project(&name)?;
            out(&p.id);
            Ok(())
        }
        ManageCommand::Project(ProjectCmd::List) => {
            let lines: Vec<String> = store
                .projects()?
                .iter()
                .map(|p| format!("{}\t{}", p.id, p.name))
                .collect();
            if !lines.is_empty() {
                out(&lines.join("\n"));
            }
            Ok(())
        }
        ManageCommand::Project(ProjectCmd::Scrub {
            project_pos,
            project,
        }) => {
            let key = either("project", &project, &project_pos)?;
            let id = project_id(store, &key)?;
            let r = store.scrub_project(&id)?;
            eprintln!(
                "scrubbed project {id}: {} networks disassociated, {} security groups deleted",
                r.networks, r.security_groups
            );
            Ok(())
        }
        ManageCommand::Vpn(VpnCmd::Change { project, ip, port }) => {
            let id = project_id(store, &project)?;
            let ip: std::net::Ipv4Addr = ip
                .parse()
                .map_err(|_| Error::invalid("ip", format!("{ip:?} is not an IPv4 address")))?;
            let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                Error::invalid("port", format!("{port:?} is not a port (1 to 65535)"))
            })?;
            let update = NetworkUpdate {
                vpn_public: Some((ip.to_string(), u32::from(port))),
                ..Default::default()
            };
            let mut n = 0;
            for net in store.networks()? {
                if net.project_id.as_deref() == Some(id.as_str()) {
                    store.update_network(&net.uuid, &update)?;
                    n += 1;
                }
            }
            eprintln!("project {id}: VPN at {ip}:{port}/udp on {n} networks");
            Ok(())
        }
        ManageCommand::User(UserCmd::Create {
            name,
            password,
            project,
            role,
        }) => {
            let p = store.project(&project).map_err(|e| match e {
                Error::NotFound(_) => Error::not_found(format!(
                    "project {project} not found: `novanet manage project create {project}` makes it"
                )),
                e => e,
            })?;
            let u = store.create_user(&name, &password)?;
            store.assign_role(&u.id, &p.id, &role)?;
            out(&u.id);
            Ok(())
        }
        ManageCommand::Image(ImageCmd::BuildTest { output }) => {
            build_test_image(&args.data_dir, output.as_deref())
        }
        ManageCommand::Bootstrap { bootstrap_password } => {
            bootstrap(store, &bootstrap_password)?;
            eprintln!(
                "bootstrapped {}: project admin, user admin with role admin",
                location.describe()
            );
            Ok(())
        }
    }
}

/// Needs no store: the image is made from Debian's packages alone.
fn build_test_image(data_dir: &Path, output: Option<&Path>) -> Result<()> {
    use novanet_lab::test_image;
    let dir = output.map_or_else(|| data_dir.join("test-image"), Path::to_path_buf);
    let image = test_image::build(&test_image::cache_dir(data_dir), &dir)
        .map_err(|e| Error::invalid("image build-test", e.to_string()))?;
    out(&format!(
        "kernel\t{}\ninitrd\t{}\ncmdline\t{}",
        image.kernel.display(),
        image.initrd.display(),
        test_image::CMDLINE
    ));
    Ok(())
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

fn network(store: &dyn Store, cfg: &Config, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Create(a) => {
            let mut req = a.to_request()?;
            if let Some(p) = &req.project_id {
                req.project_id = Some(project_id(store, p)?);
            }
            novanet_core::planning::check_requested_range(&req)?;
            let (nets, warnings) = store.create_networks(&req, cfg)?;
            novanet_server::compute::claim_for_live_network_host(
                store,
                novanet_server::unix_now(),
            )?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let lines: Vec<String> = nets
                .iter()
                .map(|n| {
                    format!(
                        "{}\t{}\t{}",
                        n.uuid,
                        n.label,
                        n.cidr.as_deref().or(n.cidr_v6.as_deref()).unwrap_or("")
                    )
                })
                .collect();
            out(&lines.join("\n"));
            Ok(())
        }
        NetworkCmd::List => {
            let nets = store.networks()?;
            if nets.is_empty() {
                out("No networks found");
                return Ok(());
            }
            let mut text = String::new();
            let mut row = |c: [&str; 9]| {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "{:<5}\t{:<18}\t{:<15}\t{:<15}\t{:<15}\t{:<15}\t{:<15}\t{:<15}\t{:<15}",
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
                ))
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
            out(&text);
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
            if project.is_none() && host.is_none() && !disassociate_project && !disassociate_host {
                return Err(Error::invalid(
                    "modify",
                    "nothing to change: give --project, --host, --disassociate-project or --disassociate-host",
                ));
            }
            let project = project.map(|p| project_id(store, &p)).transpose()?;
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
                ..Default::default()
            };
            let n = store.update_network(&fixed_range, &update)?;
            eprintln!(
                "network {} ({}): project {}, host {}",
                n.label,
                n.cidr.as_deref().unwrap_or(&n.uuid),
                none(&n.project_id),
                none(&n.host)
            );
            Ok(())
        }
    }
}

fn floating(store: &dyn Store, cfg: &Config, cmd: FloatingCmd) -> Result<()> {
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
            eprintln!(
                "created {} floating IPs ({range}) in pool {pool} on {interface}",
                addrs.len()
            );
            Ok(())
        }
        FloatingCmd::List { host } => {
            let all = store.floating_ips(None)?;
            if all.is_empty() {
                out("No floating IP addresses have been defined.");
                return Ok(());
            }
            let lines: Vec<String> = all
                .iter()
                .filter(|f| host.is_none() || f.host == host)
                .map(|f| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        none(&f.project_id),
                        f.address,
                        none(&f.instance_uuid),
                        f.pool,
                        f.interface
                    )
                })
                .collect();
            if !lines.is_empty() {
                out(&lines.join("\n"));
            }
            Ok(())
        }
        FloatingCmd::Delete {
            ip_range_pos,
            ip_range,
        } => {
            let range = either("ip_range", &ip_range, &ip_range_pos)?;
            let addrs = parse_range("ip_range", &range)?;
            let n = store.delete_floating_ips(&addrs)?;
            eprintln!("deleted {n} floating IPs ({range})");
            Ok(())
        }
    }
}
