//! The iptables driver: the rule model rendered for iptables-restore and applied in one
//! `--noflush` transaction that replaces only novanet's chains.

use novanet_core::firewall::Ruleset;

use crate::render::{iptables_restore, jumps};
use crate::sys::{run, Result};

#[derive(Default)]
pub struct Iptables {
    last: Option<String>,
}

impl Iptables {
    /// Applies `rules`; returns false when they were already in place.
    pub fn apply(&mut self, rules: &Ruleset) -> Result<bool> {
        // Which jumps from the builtin chains exist is read once per process: after the
        // first apply they are ours and stay.
        let missing = if self.last.is_none() {
            let saved = run("iptables-save", &[], None)?;
            let mut table = "";
            let mut present = Vec::new();
            for line in saved.lines() {
                if let Some(t) = line.strip_prefix('*') {
                    table = match t {
                        "filter" => "filter",
                        "nat" => "nat",
                        "mangle" => "mangle",
                        _ => "",
                    };
                } else if line.starts_with("-A ") {
                    present.push((table, line.to_string()));
                }
            }
            jumps()
                .into_iter()
                .filter(|(t, b, j)| {
                    !present
                        .iter()
                        .any(|(pt, l)| pt == t && *l == format!("-A {b} -j {j}"))
                })
                .collect()
        } else {
            Vec::new()
        };
        let text = iptables_restore(rules, &missing);
        if missing.is_empty() && self.last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        run("iptables-restore", &["--noflush"], Some(&text))?;
        // Remember the text without the jumps: the next identical plan renders the same.
        self.last = Some(iptables_restore(rules, &[]));
        Ok(true)
    }
}
