//! Reading nft's own texts: a table's listing and the echo of a script (`nft -e -f`), both
//! turned into the same shape, rules by chain and elements by set or map, so that what the
//! kernel holds can be compared with what the driver renders whatever nft's spelling.

use std::collections::BTreeSet;

/// A table's rules, in order, each with its chain, and its sets' and maps' elements.
#[derive(Debug, Default, PartialEq)]
pub struct TableContent {
    pub rules: Vec<(String, String)>,
    pub elements: BTreeSet<(String, String)>,
}

/// Elements as nft writes them between braces: `a : b, c : d`.
fn split_elements(set: &str, inner: &str, into: &mut BTreeSet<(String, String)>) {
    for e in inner.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        into.insert((set.to_string(), e.to_string()));
    }
}

/// `nft list table FAMILY NAME` (without handles).
pub fn parse_listing(text: &str) -> TableContent {
    let mut out = TableContent::default();
    let mut chain: Option<String> = None;
    let mut set: Option<String> = None;
    let mut elements: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(acc) = elements.as_mut() {
            acc.push(' ');
            acc.push_str(line);
            if line.ends_with('}') {
                let inner = acc.trim_end_matches('}').to_string();
                split_elements(set.as_deref().unwrap_or(""), &inner, &mut out.elements);
                elements = None;
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.strip_suffix('{').map(|n| n.trim().to_string());
            set = None;
        } else if let Some(rest) = line
            .strip_prefix("map ")
            .or_else(|| line.strip_prefix("set "))
        {
            set = rest.strip_suffix('{').map(|n| n.trim().to_string());
            chain = None;
        } else if let Some(rest) = line.strip_prefix("elements = {") {
            if let Some(inner) = rest.strip_suffix('}') {
                split_elements(set.as_deref().unwrap_or(""), inner, &mut out.elements);
            } else {
                elements = Some(rest.to_string());
            }
        } else if line == "}" {
            chain = None;
            set = None;
        } else if let Some(c) = &chain {
            let declaration = line.starts_with("type ") || line.starts_with("policy ");
            if !line.is_empty() && !declaration {
                out.rules.push((c.clone(), line.to_string()));
            }
        }
    }
    out
}

/// The echo of a script that (re)creates table `family name` (`nft -e -f`): its
/// `add rule` and `add element` lines.
pub fn parse_echo(text: &str, family: &str, name: &str) -> TableContent {
    let mut out = TableContent::default();
    let rule_prefix = format!("add rule {family} {name} ");
    let element_prefix = format!("add element {family} {name} ");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&rule_prefix) {
            if let Some((chain, rule)) = rest.split_once(' ') {
                // The echo sometimes names the new rule's handle first; a listing does not.
                let rule = match rule.trim().strip_prefix("handle ") {
                    Some(r) => r.split_once(' ').map_or("", |(_, r)| r),
                    None => rule.trim(),
                };
                out.rules.push((chain.to_string(), rule.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix(&element_prefix) {
            if let Some((set, inner)) = rest.split_once(' ') {
                let inner = inner.trim().trim_start_matches('{').trim_end_matches('}');
                split_elements(set, inner, &mut out.elements);
            }
        }
    }
    out
}

/// One base chain of `nft -a list ruleset`, with its rules and their handles.
#[derive(Debug, Default, PartialEq)]
pub struct BaseChain {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: String,
    pub policy: String,
    /// (handle, rule text without the handle comment).
    pub rules: Vec<(u64, String)>,
}

/// The base chains (those with a hook) of `nft -a list ruleset`.
pub fn base_chains(text: &str) -> Vec<BaseChain> {
    let mut out: Vec<BaseChain> = Vec::new();
    let mut table: Option<(String, String)> = None;
    let mut current: Option<BaseChain> = None;
    for raw in text.lines() {
        let (line, handle) = match raw.rsplit_once(" # handle ") {
            Some((l, h)) => (l.trim(), h.trim().parse::<u64>().ok()),
            None => (raw.trim(), None),
        };
        if let Some(rest) = line.strip_prefix("table ") {
            let words: Vec<&str> = rest.trim_end_matches('{').split_whitespace().collect();
            if let [family, name] = words.as_slice() {
                table = Some((family.to_string(), name.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("chain ") {
            let (family, t) = table.clone().unwrap_or_default();
            current = Some(BaseChain {
                family,
                table: t,
                chain: rest.trim_end_matches('{').trim().to_string(),
                ..BaseChain::default()
            });
        } else if line == "}" {
            if let Some(c) = current.take() {
                if !c.hook.is_empty() {
                    out.push(c);
                }
            }
        } else if let Some(c) = current.as_mut() {
            if let Some(rest) = line.strip_prefix("type ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let Some(i) = words.iter().position(|w| *w == "hook") {
                    c.hook = words.get(i + 1).unwrap_or(&"").to_string();
                }
                if let Some(i) = words.iter().position(|w| *w == "policy") {
                    c.policy = words
                        .get(i + 1)
                        .unwrap_or(&"")
                        .trim_end_matches(';')
                        .to_string();
                }
                if c.policy.is_empty() {
                    c.policy = "accept".into();
                }
            } else if let (false, Some(h)) = (line.is_empty(), handle) {
                c.rules.push((h, line.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_and_an_echo_compare() {
        let listing = "table ip novanet_nat {
\tmap floating_dnat {
\t\ttype ipv4_addr : ipv4_addr
\t\telements = { 68.99.26.170 : 10.0.0.2,
\t\t\t     68.99.26.171 : 10.0.0.3 }
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 169.254.169.254 tcp dport 80 dnat to 192.168.56.200:8775
\t\tdnat to ip daddr map @floating_dnat
\t}
}
";
        let echo = "add table ip novanet_nat
delete table ip novanet_nat
add table ip novanet_nat
add chain ip novanet_nat prerouting { type nat hook prerouting priority dstnat; policy accept; }
add map ip novanet_nat floating_dnat { type ipv4_addr : ipv4_addr; }
add element ip novanet_nat floating_dnat { 68.99.26.170 : 10.0.0.2, 68.99.26.171 : 10.0.0.3 }
add rule ip novanet_nat prerouting ip daddr 169.254.169.254 tcp dport 80 dnat to 192.168.56.200:8775
add rule ip novanet_nat prerouting handle 15 dnat to ip daddr map @floating_dnat
# new generation 2 by process 1 (nft)
";
        let live = parse_listing(listing);
        assert_eq!(live, parse_echo(echo, "ip", "novanet_nat"));
        assert_eq!(live.rules.len(), 2);
        assert!(live.elements.contains(&(
            "floating_dnat".to_string(),
            "68.99.26.171 : 10.0.0.3".to_string()
        )));
    }

    #[test]
    fn base_chains_carry_hook_policy_and_handles() {
        let ruleset = "table inet site { # handle 7
\tchain fwd { # handle 1
\t\ttype filter hook forward priority filter; policy drop;
\t\tiifname \"br100\" drop # handle 4
\t}
\tchain helper { # handle 2
\t\tdrop # handle 5
\t}
}
";
        let c = base_chains(ruleset);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].family.as_str(), c[0].table.as_str()),
            ("inet", "site")
        );
        assert_eq!(
            (c[0].hook.as_str(), c[0].policy.as_str()),
            ("forward", "drop")
        );
        assert_eq!(c[0].rules, vec![(4, "iifname \"br100\" drop".to_string())]);
    }
}
