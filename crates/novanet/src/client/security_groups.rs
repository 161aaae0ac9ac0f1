//! Security groups (`/os-security-groups`), their rules, the servers' groups, and the
//! admin's rules outside any group: the defaults copied into new `default` groups and the
//! provider rules.

use std::collections::HashMap;

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::output::{done, or_dash, print_items, print_json_list, print_table, Column};
use super::servers;
use super::wire::{read, Id, Item};
use crate::session::{err, Res, Session};

// No doc comment here: clap would show it as the about of every command without its own.
// A rule outside any group, as novaclient's default-rule commands spell it.
#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct AdminRuleArgs {
    /// IP protocol (icmp, tcp, udp)
    #[arg(value_name = "IP_PROTO")]
    ip_proto: String,
    /// Port at start of range (ICMP: the type, -1 for any)
    #[arg(value_name = "FROM_PORT")]
    from_port: i32,
    /// Port at end of range (ICMP: the code, -1 for any)
    #[arg(value_name = "TO_PORT")]
    to_port: i32,
    /// CIDR for address range (ex: 0.0.0.0/0)
    #[arg(value_name = "CIDR")]
    cidr: String,
}

// A rule of a group, from an address range.
#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct GroupRuleArgs {
    /// ID or name of security group
    #[arg(value_name = "GROUP")]
    group: String,
    /// IP protocol (icmp, tcp, udp)
    #[arg(value_name = "IP_PROTO")]
    ip_proto: String,
    /// Port at start of range (ICMP: the type, -1 for any)
    #[arg(value_name = "FROM_PORT")]
    from_port: i32,
    /// Port at end of range (ICMP: the code, -1 for any)
    #[arg(value_name = "TO_PORT")]
    to_port: i32,
    /// CIDR for address range (ex: 0.0.0.0/0)
    #[arg(value_name = "CIDR")]
    cidr: String,
}

// A rule of a group, from the members of another group.
#[derive(Args, Debug, Clone)]
#[command(allow_negative_numbers = true)]
pub struct SourceGroupRuleArgs {
    /// ID or name of security group
    #[arg(value_name = "GROUP")]
    group: String,
    /// ID or name of source group
    #[arg(value_name = "SOURCE_GROUP")]
    source_group: String,
    /// IP protocol (icmp, tcp, udp)
    #[arg(value_name = "IP_PROTO")]
    ip_proto: String,
    /// Port at start of range (ICMP: the type, -1 for any)
    #[arg(value_name = "FROM_PORT")]
    from_port: i32,
    /// Port at end of range (ICMP: the code, -1 for any)
    #[arg(value_name = "TO_PORT")]
    to_port: i32,
}

#[derive(Deserialize, Debug)]
pub struct Group {
    id: Id,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    rules: Vec<Item<Rule>>,
}

#[derive(Deserialize)]
struct GroupBody {
    security_group: Item<Group>,
}

#[derive(Deserialize)]
struct GroupList {
    #[serde(default)]
    security_groups: Vec<Item<Group>>,
}

/// A rule of a group, or one of the admin's (which have no source group).
#[derive(Deserialize, Debug)]
pub struct Rule {
    id: Id,
    #[serde(default)]
    ip_protocol: Option<String>,
    #[serde(default)]
    from_port: Option<i64>,
    #[serde(default)]
    to_port: Option<i64>,
    #[serde(default)]
    ip_range: IpRange,
    /// The source group, for a rule from another group's members.
    #[serde(default)]
    group: SourceGroup,
}

#[derive(Deserialize, Debug, Default)]
struct IpRange {
    #[serde(default)]
    cidr: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
struct SourceGroup {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RuleBody {
    security_group_rule: Item<Rule>,
}

const GROUP_COLUMNS: &[Column<Group>] = &[
    ("Id", |g| g.id.to_string()),
    ("Name", |g| g.name.clone()),
    ("Description", |g| or_dash(&g.description)),
];

const ALL_TENANTS_GROUP_COLUMNS: &[Column<Group>] = &[
    ("Id", |g| g.id.to_string()),
    ("Name", |g| g.name.clone()),
    ("Description", |g| or_dash(&g.description)),
    ("Tenant_ID", |g| or_dash(&g.tenant_id)),
];

/// A rule's cells: a missing protocol, port, range or source group is blank, as novaclient
/// shows them.
fn blank<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

const RULE_COLUMNS: &[Column<Rule>] = &[
    ("IP Protocol", |r| blank(&r.ip_protocol)),
    ("From Port", |r| blank(&r.from_port)),
    ("To Port", |r| blank(&r.to_port)),
    ("IP Range", |r| blank(&r.ip_range.cidr)),
    ("Source Group", |r| blank(&r.group.name)),
];

const ADMIN_RULE_COLUMNS: &[Column<Rule>] = &[
    ("IP Protocol", |r| blank(&r.ip_protocol)),
    ("From Port", |r| blank(&r.from_port)),
    ("To Port", |r| blank(&r.to_port)),
    ("IP Range", |r| blank(&r.ip_range.cidr)),
];

/// Rules as a table, or (`--json`) as sent with the table's cells added under the keys
/// `--json` has always printed them with (`_range`, `_group`; blanks for missing fields).
fn print_rules(rules: &[Item<Rule>], cols: &[Column<Rule>], as_json: bool) {
    if !as_json {
        print_table(rules.iter().map(|r| &r.fields), cols);
        return;
    }
    let rows = rules
        .iter()
        .map(|r| {
            let mut raw = r.raw.clone();
            raw["_range"] = json!(blank(&r.ip_range.cidr));
            raw["_group"] = json!(blank(&r.group.name));
            for k in ["ip_protocol", "from_port", "to_port"] {
                if raw[k].is_null() {
                    raw[k] = json!("");
                }
            }
            raw
        })
        .collect();
    print_json_list(rows);
}

fn same_proto(rule: &Rule, proto: &str) -> bool {
    rule.ip_protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(proto))
}

/// A group of the current project by name or ID.
fn find(s: &Session, key: &str) -> Res<Item<Group>> {
    let list: GroupList = read(s.get("/os-security-groups")?, "GET /os-security-groups")?;
    list.security_groups
        .into_iter()
        .find(|g| g.name == key || g.id.to_string() == key)
        .ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): Secgroup ID or name '{key}' not found.\n\
                 `novanet secgroup-list` shows the groups of project '{}'.",
                s.project_name
            ))
        })
}

pub fn create(s: &Session, name: &str, description: &str, as_json: bool) -> Res<()> {
    let v: GroupBody = read(
        s.call(
            "POST",
            "/os-security-groups",
            Some(json!({"security_group": {"name": name, "description": description}})),
        )?,
        "POST /os-security-groups",
    )?;
    print_items(&[v.security_group], GROUP_COLUMNS, as_json);
    Ok(())
}

pub fn update(s: &Session, group: &str, name: &str, description: &str, as_json: bool) -> Res<()> {
    let g = find(s, group)?;
    let path = format!("/os-security-groups/{}", g.id);
    let v: GroupBody = read(
        s.call(
            "PUT",
            &path,
            Some(json!({"security_group": {"name": name, "description": description}})),
        )?,
        &format!("PUT {path}"),
    )?;
    print_items(&[v.security_group], GROUP_COLUMNS, as_json);
    Ok(())
}

pub fn list(s: &Session, all_tenants: Option<String>, as_json: bool) -> Res<()> {
    let all = all_tenants.as_deref().is_some_and(|a| a != "0");
    let q = all_tenants
        .map(|a| format!("?all_tenants={a}"))
        .unwrap_or_default();
    let path = format!("/os-security-groups{q}");
    let v: GroupList = read(s.get(&path)?, &format!("GET {path}"))?;
    let cols = if all {
        ALL_TENANTS_GROUP_COLUMNS
    } else {
        GROUP_COLUMNS
    };
    print_items(&v.security_groups, cols, as_json);
    Ok(())
}

pub fn delete(s: &Session, group: &str, as_json: bool) -> Res<()> {
    let g = find(s, group)?;
    s.call("DELETE", &format!("/os-security-groups/{}", g.id), None)?;
    // novaclient prints the group it deleted.
    print_items(&[g], GROUP_COLUMNS, as_json);
    Ok(())
}

pub fn add_rule(s: &Session, r: &GroupRuleArgs, as_json: bool) -> Res<()> {
    let g = find(s, &r.group)?;
    let body = json!({"security_group_rule": {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "cidr": r.cidr, "group_id": null, "parent_group_id": g.raw["id"]}});
    post_rule(s, body, as_json)
}

pub fn add_group_rule(s: &Session, r: &SourceGroupRuleArgs, as_json: bool) -> Res<()> {
    let g = find(s, &r.group)?;
    let src = find(s, &r.source_group)?;
    let body = json!({"security_group_rule": {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "group_id": src.raw["id"], "parent_group_id": g.raw["id"]}});
    post_rule(s, body, as_json)
}

fn post_rule(s: &Session, body: Value, as_json: bool) -> Res<()> {
    let v: RuleBody = read(
        s.call("POST", "/os-security-group-rules", Some(body))?,
        "POST /os-security-group-rules",
    )?;
    print_rules(&[v.security_group_rule], RULE_COLUMNS, as_json);
    Ok(())
}

pub fn delete_rule(s: &Session, r: &GroupRuleArgs, as_json: bool) -> Res<()> {
    let g = find(s, &r.group)?;
    let Some(rule) = g.fields.rules.into_iter().find(|x| {
        same_proto(x, &r.ip_proto)
            && x.from_port == Some(r.from_port.into())
            && x.to_port == Some(r.to_port.into())
            && x.ip_range.cidr.as_deref() == Some(r.cidr.as_str())
    }) else {
        return Err(err(format!(
            "ERROR (CommandError): Rule not found\nGroup {} has no rule {} {} {} {}: \
             `novanet secgroup-list-rules {}` shows its rules.",
            r.group, r.ip_proto, r.from_port, r.to_port, r.cidr, r.group
        )));
    };
    // novaclient prints the rule it deletes.
    print_rules(std::slice::from_ref(&rule), RULE_COLUMNS, as_json);
    s.call(
        "DELETE",
        &format!("/os-security-group-rules/{}", rule.id),
        None,
    )?;
    Ok(())
}

pub fn delete_group_rule(s: &Session, r: &SourceGroupRuleArgs) -> Res<()> {
    let g = find(s, &r.group)?;
    let src = find(s, &r.source_group)?;
    let rule = g
        .rules
        .iter()
        .find(|x| {
            same_proto(x, &r.ip_proto)
                && x.from_port == Some(r.from_port.into())
                && x.to_port == Some(r.to_port.into())
                && x.group.name.as_deref() == Some(src.name.as_str())
        })
        .ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): Rule not found\nGroup {} has no rule {} {} {} from \
                 group {}: `novanet secgroup-list-rules {}` shows its rules.",
                r.group, r.ip_proto, r.from_port, r.to_port, r.source_group, r.group
            ))
        })?;
    s.call(
        "DELETE",
        &format!("/os-security-group-rules/{}", rule.id),
        None,
    )?;
    done(format_args!(
        "Deleted rule {} {} {} from group {} in group {}",
        r.ip_proto, r.from_port, r.to_port, src.name, g.name
    ));
    Ok(())
}

pub fn list_rules(s: &Session, group: &str, as_json: bool) -> Res<()> {
    let g = find(s, group)?;
    print_rules(&g.rules, RULE_COLUMNS, as_json);
    Ok(())
}

/// The servers' groups.
pub fn add_to_server(s: &Session, server: &str, group: &str) -> Res<()> {
    let srv = servers::find(s, server)?;
    servers::action(s, &srv, json!({"addSecurityGroup": {"name": group}}))?;
    done(format_args!(
        "Added security group {group} to server {}",
        srv.name
    ));
    Ok(())
}

pub fn remove_from_server(s: &Session, server: &str, group: &str) -> Res<()> {
    let srv = servers::find(s, server)?;
    servers::action(s, &srv, json!({"removeSecurityGroup": {"name": group}}))?;
    done(format_args!(
        "Removed security group {group} from server {}",
        srv.name
    ));
    Ok(())
}

pub fn list_of_server(s: &Session, server: &str, as_json: bool) -> Res<()> {
    let srv = servers::find(s, server)?;
    let path = format!("/servers/{}/os-security-groups", srv.id);
    let v: GroupList = read(s.get(&path)?, &format!("GET {path}"))?;
    print_items(&v.security_groups, GROUP_COLUMNS, as_json);
    Ok(())
}

/// The admin's two kinds of rules outside any group; the API spells both the same way
/// under different paths and keys.
#[derive(Clone, Copy)]
pub enum AdminRules {
    /// Copied into every new project's `default` group.
    Default,
    /// Dropped for every instance, whatever its groups allow.
    Provider,
}

impl AdminRules {
    fn path(self) -> &'static str {
        match self {
            AdminRules::Default => "/os-security-group-default-rules",
            AdminRules::Provider => "/os-provider-firewall-rules",
        }
    }

    /// The key of one rule in a body; the list's is the plural.
    fn key(self) -> &'static str {
        match self {
            AdminRules::Default => "security_group_default_rule",
            AdminRules::Provider => "provider_firewall_rule",
        }
    }

    fn list_command(self) -> &'static str {
        match self {
            AdminRules::Default => "secgroup-list-default-rules",
            AdminRules::Provider => "provider-rule-list",
        }
    }

    fn all(self, s: &Session) -> Res<Vec<Item<Rule>>> {
        let call = format!("GET {}", self.path());
        let mut body: HashMap<String, Vec<Item<Rule>>> = read(s.get(self.path())?, &call)?;
        Ok(body.remove(&format!("{}s", self.key())).unwrap_or_default())
    }

    pub fn list(self, s: &Session, as_json: bool) -> Res<()> {
        print_rules(&self.all(s)?, ADMIN_RULE_COLUMNS, as_json);
        Ok(())
    }

    pub fn add(self, s: &Session, r: &AdminRuleArgs, as_json: bool) -> Res<()> {
        let body = json!({ self.key(): {"ip_protocol": r.ip_proto, "from_port": r.from_port, "to_port": r.to_port, "cidr": r.cidr}});
        let call = format!("POST {}", self.path());
        let mut v: HashMap<String, Item<Rule>> =
            read(s.call("POST", self.path(), Some(body))?, &call)?;
        let rule = v.remove(self.key()).ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): the answer to {call} has no {}",
                self.key()
            ))
        })?;
        print_rules(&[rule], ADMIN_RULE_COLUMNS, as_json);
        Ok(())
    }

    /// Deletes the rule with these fields (found by them, as novaclient does).
    pub fn delete(self, s: &Session, r: &AdminRuleArgs, as_json: bool) -> Res<()> {
        let proto = r.ip_proto.to_lowercase();
        let Some(rule) = self.all(s)?.into_iter().find(|x| {
            x.ip_protocol.as_deref() == Some(proto.as_str())
                && x.from_port == Some(r.from_port.into())
                && x.to_port == Some(r.to_port.into())
                && x.ip_range.cidr.as_deref() == Some(r.cidr.as_str())
        }) else {
            return Err(err(format!(
                "ERROR (CommandError): Rule not found\nNo rule {} {} {} {}: `novanet {}` shows them.",
                r.ip_proto,
                r.from_port,
                r.to_port,
                r.cidr,
                self.list_command()
            )));
        };
        print_rules(std::slice::from_ref(&rule), ADMIN_RULE_COLUMNS, as_json);
        s.call("DELETE", &format!("{}/{}", self.path(), rule.id), None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_cells_are_blank_where_nova_sends_nothing() {
        let r: Rule = serde_json::from_value(json!({
            "id": 3, "ip_protocol": "tcp", "from_port": 80, "to_port": 80,
            "ip_range": {}, "group": {"name": "web"}
        }))
        .unwrap();
        let cells: Vec<String> = RULE_COLUMNS.iter().map(|(_, show)| show(&r)).collect();
        assert_eq!(cells, ["tcp", "80", "80", "", "web"]);
        assert!(same_proto(&r, "TCP"));
        let r: Rule = serde_json::from_value(json!({"id": 4, "ip_protocol": null})).unwrap();
        let cells: Vec<String> = ADMIN_RULE_COLUMNS
            .iter()
            .map(|(_, show)| show(&r))
            .collect();
        assert_eq!(cells, ["", "", "", ""]);
    }
}
