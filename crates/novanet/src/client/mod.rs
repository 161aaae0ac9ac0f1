//! `novanet COMMAND`: the nova client's commands, with the seeds' spellings, over the API.
//! What a command prints follows python-novaclient 7.1.2; where novaclient prints nothing,
//! a command that changed something says so in one line on standard error.
//!
//! One module per API resource, each with the typed shapes of the answers it reads and a
//! function per command; `run` logs in and dispatches.

mod cloudpipe;
mod commands;
mod explain;
mod fixed_ips;
mod floating_ips;
mod images;
mod keypairs;
mod networks;
mod output;
mod plumbing;
mod quotas;
mod security_groups;
mod servers;
mod services;
mod tenant_networks;
mod wire;

pub use crate::session::{Auth, Output};
use crate::session::{Res, Session};
pub use commands::ClientCmd;
use security_groups::AdminRules;

pub fn run(auth: &Auth, output: &Output, cmd: ClientCmd) -> Res<()> {
    let s = Session::login(auth)?;
    let j = output.json;
    match cmd {
        ClientCmd::NetworkCreate(a) => networks::create(&s, auth, &a, j),
        ClientCmd::NetworkList => networks::list(&s, j),
        ClientCmd::NetworkShow { network } => networks::show(&s, &network, j),
        ClientCmd::NetworkDelete { network } => networks::delete(&s, &network),
        ClientCmd::NetworkAssociateHost { network, host } => {
            networks::associate_host(&s, &network, &host)
        }
        ClientCmd::NetworkAssociateProject { network } => networks::associate_project(&s, &network),
        ClientCmd::NetworkDisassociate {
            host_only,
            project_only,
            network,
        } => networks::disassociate(&s, &network, host_only == "1", project_only == "1"),
        ClientCmd::Boot(a) => servers::boot(&s, a, j),
        ClientCmd::List { all_tenants } => servers::list(&s, all_tenants, j),
        ClientCmd::Show { server } => servers::show(&s, &server, j),
        ClientCmd::Delete { servers } => servers::delete(&s, &servers),
        ClientCmd::Stop { servers } => servers::power(&s, &servers, "os-stop"),
        ClientCmd::Start { servers } => servers::power(&s, &servers, "os-start"),
        ClientCmd::Reboot { server, hard } => servers::reboot(&s, &server, hard),
        ClientCmd::ConsoleLog { server, length } => servers::console_log(&s, &server, length),
        ClientCmd::FloatingIpCreate { pool } => floating_ips::create(&s, pool, j),
        ClientCmd::FloatingIpDelete { address } => floating_ips::delete(&s, &address),
        ClientCmd::FloatingIpList => floating_ips::list(&s, j),
        ClientCmd::ImageCreate {
            name,
            file,
            disk_format,
            container_format,
            property,
        } => images::create(
            &s,
            &name,
            &file,
            &disk_format,
            &container_format,
            &property,
            j,
        ),
        ClientCmd::ImageList => images::list(&s, j),
        ClientCmd::ImageDelete { image } => images::delete(&s, &image),
        ClientCmd::FloatingIpPoolList => floating_ips::pool_list(&s, j),
        ClientCmd::FloatingIpAssociate {
            fixed_address,
            server,
            address,
        } => floating_ips::associate(&s, &server, &address, fixed_address),
        ClientCmd::FloatingIpDisassociate { server, address } => {
            floating_ips::disassociate(&s, &server, &address)
        }
        ClientCmd::FloatingIpBulkCreate {
            ip_range,
            pool,
            interface,
        } => floating_ips::bulk_create(&s, &ip_range, pool, interface),
        ClientCmd::FloatingIpBulkList { host } => floating_ips::bulk_list(&s, host, j),
        ClientCmd::FloatingIpBulkDelete { ip_range } => floating_ips::bulk_delete(&s, &ip_range),
        ClientCmd::FixedIpGet { address } => fixed_ips::get(&s, &address, j),
        ClientCmd::FixedIpReserve { address } => fixed_ips::reserve(&s, &address, true),
        ClientCmd::FixedIpUnreserve { address } => fixed_ips::reserve(&s, &address, false),
        ClientCmd::AddFixedIp { server, network } => servers::add_fixed_ip(&s, &server, &network),
        ClientCmd::ConfigDrive { server, output } => servers::config_drive(&s, &server, &output),
        ClientCmd::RemoveFixedIp { server, address } => {
            servers::remove_fixed_ip(&s, &server, &address)
        }
        ClientCmd::SecgroupCreate { name, description } => {
            security_groups::create(&s, &name, &description, j)
        }
        ClientCmd::SecgroupUpdate {
            group,
            name,
            description,
        } => security_groups::update(&s, &group, &name, &description, j),
        ClientCmd::SecgroupList { all_tenants } => security_groups::list(&s, all_tenants, j),
        ClientCmd::SecgroupDelete { group } => security_groups::delete(&s, &group, j),
        ClientCmd::SecgroupAddRule(r) => security_groups::add_rule(&s, &r, j),
        ClientCmd::SecgroupAddGroupRule(r) => security_groups::add_group_rule(&s, &r, j),
        ClientCmd::SecgroupDeleteRule(r) => security_groups::delete_rule(&s, &r, j),
        ClientCmd::SecgroupDeleteGroupRule(r) => security_groups::delete_group_rule(&s, &r),
        ClientCmd::SecgroupListRules { group } => security_groups::list_rules(&s, &group, j),
        ClientCmd::SecgroupAddDefaultRule(r) => AdminRules::Default.add(&s, &r, j),
        ClientCmd::SecgroupDeleteDefaultRule(r) => AdminRules::Default.delete(&s, &r, j),
        ClientCmd::SecgroupListDefaultRules => AdminRules::Default.list(&s, j),
        ClientCmd::ProviderRuleAdd(r) => AdminRules::Provider.add(&s, &r, j),
        ClientCmd::ProviderRuleDelete(r) => AdminRules::Provider.delete(&s, &r, j),
        ClientCmd::ProviderRuleList => AdminRules::Provider.list(&s, j),
        ClientCmd::AddSecgroup { server, group } => {
            security_groups::add_to_server(&s, &server, &group)
        }
        ClientCmd::RemoveSecgroup { server, group } => {
            security_groups::remove_from_server(&s, &server, &group)
        }
        ClientCmd::ListSecgroup { server } => security_groups::list_of_server(&s, &server, j),
        ClientCmd::KeypairAdd { pub_key, name } => keypairs::add(&s, &name, pub_key),
        ClientCmd::KeypairList => keypairs::list(&s, j),
        ClientCmd::KeypairDelete { name } => keypairs::delete(&s, &name),
        ClientCmd::VirtualInterfaceList { server } => servers::virtual_interfaces(&s, &server, j),
        ClientCmd::ServiceList { host, binary } => services::list(&s, host, binary, j),
        ClientCmd::QuotaShow { tenant } => quotas::show(&s, auth, tenant, j),
        ClientCmd::QuotaDefaults { tenant } => quotas::defaults(&s, auth, tenant, j),
        ClientCmd::QuotaUpdate {
            tenant,
            values,
            force,
        } => quotas::update(&s, auth, &tenant, &values, force, j),
        ClientCmd::TenantNetworkList => tenant_networks::list(&s, j),
        ClientCmd::TenantNetworkCreate { label, cidr } => {
            tenant_networks::create(&s, &label, &cidr, j)
        }
        ClientCmd::TenantNetworkShow { network } => tenant_networks::show(&s, &network, j),
        ClientCmd::TenantNetworkDelete { network } => tenant_networks::delete(&s, &network),
        ClientCmd::Explain {
            src,
            dst,
            proto,
            port,
        } => explain::explain(&s, &src, &dst, proto, port, j),
        ClientCmd::ApiGet { path } => plumbing::api_get(&s, &path),
        ClientCmd::VifPlug { vif, device } => plumbing::vif_plug(&s, &vif, &device),
        ClientCmd::CloudpipeList => cloudpipe::list(&s, j),
        ClientCmd::CloudpipeCreate { project } => cloudpipe::create(&s, auth, &project),
        ClientCmd::CloudpipeConfigure { address, port } => {
            cloudpipe::configure(&s, &address, &port)
        }
        ClientCmd::CloudpipeClient {
            project,
            user,
            output,
        } => cloudpipe::client(&s, auth, &project, &user, output.as_deref()),
        ClientCmd::CloudpipeRevoke { project, user } => {
            cloudpipe::revoke(&s, auth, &project, &user)
        }
    }
}
