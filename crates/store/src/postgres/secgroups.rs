//! Security groups, their rules and members; the default and provider rules.

use super::changes::{instance_host, touch_members, touch_referrers};
use super::instances::load_instance_locked;
use super::networks::{load_networks_tail, lock_project, save_network};
use super::*;

pub(super) fn rules_of(c: &Db, group_id: i64) -> Result<Vec<SecurityGroupRule>> {
    Ok(c.rows(
        "SELECT r.id, r.parent_group_id, r.protocol, r.from_port, r.to_port, r.cidr, r.group_id, g.name, g.project_id \
         FROM security_group_rules r LEFT JOIN security_groups g ON g.id = r.group_id \
         WHERE r.parent_group_id = $1 ORDER BY r.id",
        &[&group_id],
    )?
    .iter()
    .map(rule_from_row)
    .collect())
}

/// The two tables of rules an admin keeps outside any group, of the same shape.
#[derive(Clone, Copy)]
pub(super) enum AdminRules {
    /// Copied into each new `default` group.
    Default,
    /// Dropped for every instance.
    Provider,
}

impl AdminRules {
    fn table(self) -> &'static str {
        match self {
            AdminRules::Default => "security_group_default_rules",
            AdminRules::Provider => "provider_fw_rules",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            AdminRules::Default => "default security group rule",
            AdminRules::Provider => "provider firewall rule",
        }
    }
}

pub(super) fn admin_rules_c(c: &Db, kind: AdminRules) -> Result<Vec<SecurityGroupRule>> {
    let sql = format!(
        "SELECT id, 0::bigint, protocol, from_port, to_port, cidr, NULL::bigint, NULL::text, NULL::text \
         FROM {} ORDER BY id",
        kind.table()
    );
    Ok(c.rows(&sql, &[])?.iter().map(rule_from_row).collect())
}

impl PgStore {
    fn admin_rules(&self, kind: AdminRules) -> Result<Vec<SecurityGroupRule>> {
        self.read(|c| admin_rules_c(c, kind))
    }

    fn add_admin_rule(&self, kind: AdminRules, rule: &NewRule) -> Result<SecurityGroupRule> {
        let id: i64 = self.write_touching(|tx, t| {
            // Provider rules are in every host's plan; default rules in none.
            t.all = matches!(kind, AdminRules::Provider);
            let sql = format!(
                "INSERT INTO {}(protocol, from_port, to_port, cidr) VALUES ($1,$2,$3,$4) RETURNING id",
                kind.table()
            );
            Ok(tx
                .one(&sql, &[&rule.protocol, &rule.from_port, &rule.to_port, &rule.cidr])?
                .get(0))
        })?;
        self.admin_rules(kind)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::Store(format!("{} {id} vanished", kind.noun())))
    }

    fn delete_admin_rule(&self, kind: AdminRules, id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            t.all = matches!(kind, AdminRules::Provider);
            let sql = format!("DELETE FROM {} WHERE id = $1", kind.table());
            if tx.exec(&sql, &[&id])? == 0 {
                return Err(Error::not_found(format!("{} {id} not found", kind.noun())));
            }
            Ok(())
        })
    }
}

pub(super) fn rule_from_row(r: &Row) -> SecurityGroupRule {
    SecurityGroupRule {
        id: r.get(0),
        parent_group_id: r.get(1),
        protocol: r.get(2),
        from_port: r.get(3),
        to_port: r.get(4),
        cidr: r.get(5),
        group_id: r.get(6),
        group_name: r.get(7),
        group_project: r.get(8),
    }
}

fn load_groups_tail(c: &Db, where_sql: &str, tail: &str, p: Params) -> Result<Vec<SecurityGroup>> {
    let sql = format!(
        "SELECT id, project_id, name, description FROM security_groups {where_sql} \
         ORDER BY project_id, name {tail}"
    );
    let groups: Vec<SecurityGroup> = c
        .rows(&sql, p)?
        .iter()
        .map(|r| SecurityGroup {
            id: r.get(0),
            project_id: r.get(1),
            name: r.get(2),
            description: r.get(3),
            rules: Vec::new(),
        })
        .collect();
    groups
        .into_iter()
        .map(|mut g| {
            g.rules = rules_of(c, g.id)?;
            Ok(g)
        })
        .collect()
}

pub(super) fn load_groups(c: &Db, where_sql: &str, p: Params) -> Result<Vec<SecurityGroup>> {
    load_groups_tail(c, where_sql, "", p)
}

/// One group, locked until the transaction ends (its rules change under one writer at a
/// time, so that the duplicate and quota checks hold).
fn locked_group(tx: &Db, id: i64) -> Result<SecurityGroup> {
    load_groups_tail(tx, "WHERE id = $1", "FOR UPDATE", &[&id])?
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("security group {id} not found")))
}

pub(super) fn ensure_default_group_tx(tx: &Db, project_id: &str) -> Result<SecurityGroup> {
    let existing = load_groups(
        tx,
        "WHERE project_id = $1 AND name = 'default'",
        &[&project_id],
    )?;
    if let Some(g) = existing.into_iter().next() {
        return Ok(g);
    }
    // Two first boots of a project at once: the second finds the first's group.
    let inserted = tx.opt(
        "INSERT INTO security_groups(project_id, name, description) VALUES ($1, 'default', 'default') \
         ON CONFLICT DO NOTHING RETURNING id",
        &[&project_id],
    )?;
    let Some(row) = inserted else {
        return load_groups(
            tx,
            "WHERE project_id = $1 AND name = 'default'",
            &[&project_id],
        )?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Store("the default security group vanished".into()));
    };
    let id: i64 = row.get(0);
    tx.exec(
        "INSERT INTO security_group_rules(parent_group_id, protocol, from_port, to_port, cidr) \
         SELECT $1, protocol, from_port, to_port, cidr FROM security_group_default_rules ORDER BY id",
        &[&id],
    )?;
    Ok(load_groups(tx, "WHERE id = $1", &[&id])?.remove(0))
}

impl SecurityGroupStore for PgStore {
    fn security_groups(&self, project_id: Option<&str>) -> Result<Vec<SecurityGroup>> {
        self.read(|c| {
            load_groups(
                c,
                "WHERE $1::text IS NULL OR project_id = $1",
                &[&project_id],
            )
        })
    }

    fn security_group(&self, id: i64) -> Result<SecurityGroup> {
        self.read(|c| {
            load_groups(c, "WHERE id = $1", &[&id])?
                .into_iter()
                .next()
                .ok_or_else(|| Error::not_found(format!("security group {id} not found")))
        })
    }

    fn ensure_default_group(&self, project_id: &str) -> Result<SecurityGroup> {
        if let Some(g) = self
            .read(|c| {
                load_groups(
                    c,
                    "WHERE project_id = $1 AND name = 'default'",
                    &[&project_id],
                )
            })?
            .into_iter()
            .next()
        {
            return Ok(g);
        }
        self.write(|tx| ensure_default_group_tx(tx, project_id))
    }

    fn create_security_group(
        &self,
        project_id: &str,
        name: &str,
        description: &str,
        quota: i64,
    ) -> Result<SecurityGroup> {
        self.write(|tx| {
            ensure_default_group_tx(tx, project_id)?;
            lock_project(tx, project_id)?;
            let count: i64 = tx
                .one("SELECT count(*) FROM security_groups WHERE project_id = $1", &[&project_id])?
                .get(0);
            if quota >= 0 && count >= quota {
                return Err(Error::OverLimit(format!(
                    "quota exceeded: project {project_id} already has {count} security groups (quota_security_groups = {quota})"
                )));
            }
            let inserted = tx.opt(
                "INSERT INTO security_groups(project_id, name, description) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING RETURNING id",
                &[&project_id, &name, &description],
            )?;
            let Some(row) = inserted else {
                return Err(Error::invalid("name", format!("security group {name} already exists")));
            };
            let id: i64 = row.get(0);
            Ok(load_groups(tx, "WHERE id = $1", &[&id])?.remove(0))
        })
    }

    fn delete_security_group(&self, id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            let g = locked_group(tx, id)?;
            if g.name == "default" {
                return Err(Error::invalid(
                    "security_group",
                    "unable to delete system group 'default'",
                ));
            }
            let used: i64 = tx
                .one(
                    "SELECT count(*) FROM instance_security_groups WHERE group_id = $1",
                    &[&id],
                )?
                .get(0);
            if used > 0 {
                return Err(Error::invalid(
                    "security_group",
                    format!("security group {} is still in use", g.name),
                ));
            }
            // Unused, so only the groups whose rules name it as their source change.
            touch_referrers(tx, t, id)?;
            tx.exec(
                "DELETE FROM security_group_rules WHERE parent_group_id = $1 OR group_id = $1",
                &[&id],
            )?;
            tx.exec("DELETE FROM security_groups WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn update_security_group(
        &self,
        id: i64,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup> {
        // A name or a description changes no rule a host renders: no generation bump.
        self.write_raw(|tx| {
            let n = tx
                .try_exec(
                    "UPDATE security_groups SET name = $1, description = $2 WHERE id = $3",
                    &[&name, &description, &id],
                )
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!("security group {name} already exists"))
                    } else {
                        db(e)
                    }
                })?;
            if n == 0 {
                return Err(Error::not_found(format!("security group {id} not found")));
            }
            Ok(load_groups(tx, "WHERE id = $1", &[&id])?.remove(0))
        })
    }

    fn add_security_group_rule(
        &self,
        group_id: i64,
        rule: &NewRule,
        quota: i64,
    ) -> Result<SecurityGroupRule> {
        self.write_touching(|tx, t| {
            let g = locked_group(tx, group_id)?;
            touch_members(tx, t, group_id)?;
            if quota >= 0 && g.rules.len() as i64 >= quota {
                return Err(Error::OverLimit(format!(
                    "quota exceeded: group {} already has {} rules (quota_security_group_rules = {quota})",
                    g.name,
                    g.rules.len()
                )));
            }
            let dup = g.rules.iter().any(|r| {
                r.protocol == rule.protocol
                    && r.from_port == rule.from_port
                    && r.to_port == rule.to_port
                    && r.cidr == rule.cidr
                    && r.group_id == rule.group_id
            });
            if dup {
                return Err(Error::invalid("security_group_rule", "this rule already exists in the group"));
            }
            let id: i64 = tx
                .one(
                    "INSERT INTO security_group_rules(parent_group_id, protocol, from_port, to_port, cidr, group_id) \
                     VALUES ($1,$2,$3,$4,$5,$6) RETURNING id",
                    &[&group_id, &rule.protocol, &rule.from_port, &rule.to_port, &rule.cidr, &rule.group_id],
                )?
                .get(0);
            Ok(rules_of(tx, group_id)?.into_iter().find(|r| r.id == id).expect("just inserted"))
        })
    }

    fn delete_security_group_rule(&self, id: i64) -> Result<SecurityGroupRule> {
        self.write_touching(|tx, t| {
            let parent: i64 = tx
                .opt(
                    "SELECT parent_group_id FROM security_group_rules WHERE id = $1 FOR UPDATE",
                    &[&id],
                )?
                .map(|r| r.get(0))
                .ok_or_else(|| Error::not_found(format!("security group rule {id} not found")))?;
            let rule = rules_of(tx, parent)?
                .into_iter()
                .find(|r| r.id == id)
                .expect("exists");
            touch_members(tx, t, parent)?;
            tx.exec("DELETE FROM security_group_rules WHERE id = $1", &[&id])?;
            Ok(rule)
        })
    }

    fn default_rules(&self) -> Result<Vec<SecurityGroupRule>> {
        self.admin_rules(AdminRules::Default)
    }

    fn add_default_rule(&self, rule: &NewRule) -> Result<SecurityGroupRule> {
        self.add_admin_rule(AdminRules::Default, rule)
    }

    fn delete_default_rule(&self, id: i64) -> Result<()> {
        self.delete_admin_rule(AdminRules::Default, id)
    }

    fn provider_rules(&self) -> Result<Vec<SecurityGroupRule>> {
        self.admin_rules(AdminRules::Provider)
    }

    fn add_provider_rule(&self, rule: &NewRule) -> Result<SecurityGroupRule> {
        self.add_admin_rule(AdminRules::Provider, rule)
    }

    fn delete_provider_rule(&self, id: i64) -> Result<()> {
        self.delete_admin_rule(AdminRules::Provider, id)
    }

    fn instance_security_groups(&self, uuid: &str) -> Result<Vec<SecurityGroup>> {
        self.read(|c| {
            load_groups(
                c,
                "WHERE id IN (SELECT group_id FROM instance_security_groups WHERE instance_uuid = $1)",
                &[&uuid],
            )
        })
    }

    fn security_group_memberships(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            Ok(c.rows(
                "SELECT instance_uuid, group_id FROM instance_security_groups ORDER BY group_id, instance_uuid",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn add_instance_security_group(&self, uuid: &str, group_id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            load_instance_locked(tx, uuid)?;
            t.instance(instance_host(tx, uuid)?.as_deref(), uuid, &[]);
            touch_referrers(tx, t, group_id)?;
            tx.exec(
                "INSERT INTO instance_security_groups(instance_uuid, group_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
                &[&uuid, &group_id],
            )?;
            Ok(())
        })
    }

    fn remove_instance_security_group(&self, uuid: &str, group_id: i64) -> Result<()> {
        self.write_touching(|tx, t| {
            t.instance(instance_host(tx, uuid)?.as_deref(), uuid, &[]);
            touch_referrers(tx, t, group_id)?;
            let n = tx.exec(
                "DELETE FROM instance_security_groups WHERE instance_uuid = $1 AND group_id = $2",
                &[&uuid, &group_id],
            )?;
            if n == 0 {
                return Err(Error::invalid(
                    "security_group",
                    "the instance is not in that security group",
                ));
            }
            Ok(())
        })
    }

    fn scrub_project(&self, project_id: &str) -> Result<ScrubReport> {
        self.write_touching(|tx, t| {
            // Rare and wide (networks lose their host, groups their members): every host.
            t.all = true;
            let nets =
                load_networks_tail(tx, "WHERE project_id = $1", "FOR UPDATE", &[&project_id])?;
            for mut n in nets.clone() {
                n.project_id = None;
                n.host = None;
                save_network(tx, &n)?;
            }
            let groups: Vec<i64> =
                load_groups_tail(tx, "WHERE project_id = $1", "FOR UPDATE", &[&project_id])?
                    .into_iter()
                    .map(|g| g.id)
                    .collect();
            for g in &groups {
                tx.exec(
                    "DELETE FROM security_group_rules WHERE parent_group_id = $1 OR group_id = $1",
                    &[g],
                )?;
                tx.exec(
                    "DELETE FROM instance_security_groups WHERE group_id = $1",
                    &[g],
                )?;
                tx.exec("DELETE FROM security_groups WHERE id = $1", &[g])?;
            }
            Ok(ScrubReport {
                networks: nets.len(),
                security_groups: groups.len(),
            })
        })
    }
}
