//! The iptables driver: the rule model rendered for iptables-restore and applied in one
//! `--noflush` transaction that replaces only novanet's chains.

use std::collections::BTreeMap;

use novanet_core::firewall::Ruleset;
use novanet_core::plan::SecurityPlan;

use crate::render::{iptables_restore, jumps, PREFIX};
use crate::sys::{run, Result};

#[derive(Default)]
pub struct Iptables {
    last: Option<String>,
}

impl Iptables {
    /// Applies `rules`; returns false when they were already in place.
    pub fn apply(&mut self, rules: &Ruleset, sec: Option<&SecurityPlan>) -> Result<bool> {
        let mut missing = Vec::new();
        if self.last.is_none() {
            // First apply of this process: read what the kernel holds. If our chains already
            // hold exactly these rules (an agent restart), leave them alone: replacing them
            // would reset counters and briefly race with traffic.
            let saved = run("iptables-save", &[], None)?;
            let present = owned_lines(&saved);
            missing = jumps()
                .into_iter()
                .filter(|(t, b, j)| !present.contains(&(t.to_string(), format!("-A {b} -j {j}"))))
                .collect();
            let by_chain = |lines: &[(String, String)]| {
                let mut m: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
                for (table, line) in lines {
                    let chain = line.split_whitespace().nth(1).unwrap_or("");
                    if chain.starts_with(&format!("{PREFIX}-")) {
                        m.entry((table.clone(), chain.to_string()))
                            .or_default()
                            .push(line.clone());
                    }
                }
                m
            };
            let wanted = owned_lines(&iptables_restore(rules, sec, &[]));
            if missing.is_empty() && by_chain(&present) == by_chain(&wanted) {
                self.last = Some(iptables_restore(rules, sec, &[]));
                return Ok(false);
            }
        }
        let text = iptables_restore(rules, sec, &missing);
        if missing.is_empty() && self.last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        run("iptables-restore", &["--noflush"], Some(&text))?;
        // Remember the text without the jumps: the next identical plan renders the same.
        self.last = Some(iptables_restore(rules, sec, &[]));
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
}

impl Nftables {
    pub fn new(state_dir: &std::path::Path) -> Nftables {
        let state = state_dir.join("nft-applied.json");
        let last = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Nftables { state, last }
    }

    /// Applies the given tables ((family, name, body)); returns the names it replaced.
    pub fn apply(&mut self, tables: &[(&str, &str, String)]) -> Result<Vec<String>> {
        let present = run("nft", &["list", "tables"], None)?;
        let mut script = String::new();
        let mut changed = Vec::new();
        for (family, name, body) in tables {
            let exists = present
                .lines()
                .any(|l| l.trim() == format!("table {family} {name}"));
            let key = format!("{family} {name}");
            if exists && self.last.get(&key) == Some(body) {
                continue;
            }
            script.push_str(&crate::nft::replace_table(family, name, body));
            changed.push(key);
        }
        if script.is_empty() {
            return Ok(changed);
        }
        run("nft", &["-f", "-"], Some(&script))?;
        for (family, name, body) in tables {
            self.last.insert(format!("{family} {name}"), body.clone());
        }
        let text = serde_json::to_string(&self.last).expect("serializable");
        crate::sys::write_if_changed(&self.state, &text)?;
        Ok(changed)
    }
}
