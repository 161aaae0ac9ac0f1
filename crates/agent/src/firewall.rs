//! The iptables driver: the rule model rendered for iptables-restore and applied in one
//! `--noflush` transaction that replaces only novanet's chains.

use std::collections::{BTreeMap, BTreeSet};

use novanet_core::firewall::Ruleset;
use novanet_core::plan::SecurityPlan;

use crate::nft::{full_state, incremental, replace_security, SecState, FILTER_TABLE, SPOOF_TABLE};

use crate::render::{iptables_restore, jumps, owned_chains, restore_delta, OwnedChains};
use crate::sys::{run, Result};

#[derive(Default)]
pub struct Iptables {
    /// novanet's chains as the kernel holds them (read at the first apply of this process,
    /// then as this process left them); None: read them again.
    applied: Option<OwnedChains>,
}

impl Iptables {
    /// Makes the next apply read the kernel's chains again (the periodic resync: somebody
    /// may have flushed a chain or removed a jump).
    pub fn recheck(&mut self) {
        self.applied = None;
    }

    /// Applies `rules` by replacing only the chains that change; returns false when they
    /// were already in place. An agent restart finding its chains in place touches nothing.
    pub fn apply(&mut self, rules: &Ruleset, sec: Option<&SecurityPlan>) -> Result<bool> {
        let wanted = owned_chains(&iptables_restore(rules, sec, &[]));
        let mut missing = Vec::new();
        if self.applied.is_none() {
            let saved = run("iptables-save", &[], None)?;
            let present = owned_lines(&saved);
            missing = jumps()
                .into_iter()
                .filter(|(t, b, j)| !present.contains(&(t.to_string(), format!("-A {b} -j {j}"))))
                .collect();
            self.applied = Some(owned_chains(&saved));
        }
        let text = restore_delta(
            self.applied.as_ref().expect("read above"),
            &wanted,
            &missing,
        );
        if text.is_empty() {
            return Ok(false);
        }
        if let Err(e) = run("iptables-restore", &["--noflush"], Some(&text)) {
            self.applied = None;
            return Err(e);
        }
        self.applied = Some(wanted);
        Ok(true)
    }
}

/// The `-A` lines of an iptables-save (or restore) text, with their table, in order, for
/// the tables novanet uses.
fn owned_lines(text: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if line.starts_with("-A ") && matches!(table.as_str(), "filter" | "nat" | "mangle") {
            out.push((table.clone(), line.to_string()));
        }
    }
    out
}

/// The nftables driver: novanet's own tables, each replaced in one transaction when its
/// text changes. The last applied text is kept in the state directory, so that a restarted
/// agent finding its tables in place leaves them alone.
pub struct Nftables {
    state: std::path::PathBuf,
    last: BTreeMap<String, String>,
    sec_path: std::path::PathBuf,
    /// What the security tables hold, for incremental changes.
    sec: Option<SecState>,
    /// The tables present in the kernel, as last listed and as changed since. `nft list
    /// tables` fetches the whole ruleset (270 ms at 1,000 instances), so it runs only when
    /// this is unknown: at start, after a failure, and on the periodic resync.
    tables: Option<BTreeSet<String>>,
}

impl Nftables {
    pub fn new(state_dir: &std::path::Path) -> Nftables {
        let state = state_dir.join("nft-applied.json");
        let last = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let sec_path = state_dir.join("nft-security.json");
        let sec = std::fs::read_to_string(&sec_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Nftables {
            state,
            last,
            sec_path,
            sec,
            tables: None,
        }
    }

    /// Makes the next apply list the kernel's tables again instead of trusting what this
    /// process applied (the periodic resync: somebody may have removed a table).
    pub fn recheck(&mut self) {
        self.tables = None;
    }

    fn tables(&mut self) -> Result<&BTreeSet<String>> {
        if self.tables.is_none() {
            let listed = self.nft(&["list", "tables"], None)?;
            let names = listed
                .lines()
                .filter_map(|l| l.trim().strip_prefix("table "))
                .map(str::to_string)
                .collect();
            self.tables = Some(names);
        }
        Ok(self.tables.get_or_insert_with(BTreeSet::new))
    }

    /// Runs an nft script; on failure forgets the tables, so the next apply starts over.
    fn run_script(&mut self, script: &str) -> Result<()> {
        let result = self.nft(&["-f", "-"], Some(script)).map(|_| ());
        if result.is_err() {
            self.tables = None;
        }
        result
    }

    fn nft(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        run("nft", args, input)
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_string(&self.last).expect("serializable");
        crate::sys::write_if_changed(&self.state, &text)?;
        if let Some(sec) = &self.sec {
            let text = serde_json::to_string(sec).expect("serializable");
            crate::sys::write_if_changed(&self.sec_path, &text)?;
        }
        Ok(())
    }

    /// The security tables (instances' filters and anti-spoofing): an add-only transaction
    /// for the change, then one retiring what it replaced; a full replace only when needed.
    /// Returns what it did, None when nothing changed.
    pub fn apply_security(&mut self, plan: &SecurityPlan) -> Result<Option<&'static str>> {
        let fkey = format!("inet {FILTER_TABLE}");
        let skey = format!("bridge {SPOOF_TABLE}");
        let tables = self.tables()?;
        let both = tables.contains(&fkey) && tables.contains(&skey);
        // What the tables hold is `sec`, not their text: rendering and keeping two whole
        // tables on every change cost more than the change (agents before kept texts here).
        self.last.remove(&fkey);
        self.last.remove(&skey);
        let step = match self
            .sec
            .as_ref()
            .filter(|_| both)
            .and_then(|old| incremental(old, plan))
        {
            Some((u, _)) if u.hot.is_empty() && u.retire.is_empty() => return Ok(None),
            Some((u, next)) => {
                // Until the new state is saved, none is: a crash in between must lead to a
                // full replace, not to a diff against tables that moved on.
                let _ = std::fs::remove_file(&self.sec_path);
                if !u.hot.is_empty() {
                    if let Err(e) = self.run_script(&u.hot) {
                        // The kernel did not take the diff: replace the tables next time.
                        self.sec = None;
                        return Err(e);
                    }
                }
                self.sec = Some(next);
                if !u.retire.is_empty() {
                    if let Err(e) = self.run_script(&u.retire) {
                        // What the retire left is unknown: the next apply replaces the tables.
                        self.sec = None;
                        return Err(e);
                    }
                }
                "incremental"
            }
            None => {
                let _ = std::fs::remove_file(&self.sec_path);
                self.run_script(&replace_security(plan))?;
                self.sec = Some(full_state(plan));
                "full"
            }
        };
        if let Some(t) = self.tables.as_mut() {
            t.insert(fkey);
            t.insert(skey);
        }
        self.save()?;
        Ok(Some(step))
    }

    /// Applies the given tables ((family, name, body)); returns the names it replaced.
    pub fn apply(&mut self, tables_wanted: &[(&str, &str, String)]) -> Result<Vec<String>> {
        let tables = self.tables()?.clone();
        let mut script = String::new();
        let mut changed = Vec::new();
        for (family, name, body) in tables_wanted {
            let key = format!("{family} {name}");
            if tables.contains(&key) && self.last.get(&key) == Some(body) {
                continue;
            }
            script.push_str(&crate::nft::replace_table(family, name, body));
            changed.push(key);
        }
        if script.is_empty() {
            return Ok(changed);
        }
        self.run_script(&script)?;
        for (family, name, body) in tables_wanted {
            let key = format!("{family} {name}");
            if let Some(t) = self.tables.as_mut() {
                t.insert(key.clone());
            }
            self.last.insert(key, body.clone());
        }
        self.save()?;
        Ok(changed)
    }
}
