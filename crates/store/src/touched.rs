//! What one write touched: the hosts whose plans it may change and how much of them,
//! gathered by an engine inside the writing transaction, and the change log's rows for it.
//! Engine-independent: SQLite's and PostgreSQL's change logs hold the same rows.

use std::collections::{BTreeMap, BTreeSet};

use novanet_core::model::FloatingIp;

use crate::ChangeScope;

/// More instances of one host changed by one write than this: the host's whole plan.
const INSTANCES_PER_PATCH: usize = 16;

/// The hosts whose plans one write may change, gathered inside its transaction and
/// recorded in the change log with its generation.
#[derive(Default)]
pub(crate) struct Touched {
    /// Every host's plan.
    pub(crate) all: bool,
    /// These hosts' plans, any part of them.
    pub(crate) hosts: BTreeSet<String>,
    /// Only the DHCP entry of (network id, address) on the host serving that network.
    pub(crate) addresses: BTreeSet<(String, i64, String)>,
    /// Only one instance of a host, (host, uuid), with the networks it was on.
    pub(crate) instances: BTreeMap<(String, String), BTreeSet<i64>>,
    /// Only one floating IP bound on a host, (host, address).
    pub(crate) floating: BTreeSet<(String, String)>,
}

impl Touched {
    pub(crate) fn host(&mut self, h: Option<&str>) {
        if let Some(h) = h {
            self.hosts.insert(h.to_string());
        }
    }

    pub(crate) fn hosts(&mut self, hs: Vec<String>) {
        self.hosts.extend(hs);
    }

    pub(crate) fn instance(&mut self, host: Option<&str>, uuid: &str, networks: &[i64]) {
        if let Some(h) = host {
            self.instances
                .entry((h.to_string(), uuid.to_string()))
                .or_default()
                .extend(networks);
        }
    }

    pub(crate) fn floating(&mut self, fl: &FloatingIp) {
        if let Some(h) = &fl.host {
            self.floating.insert((h.clone(), fl.address.clone()));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.all
            && self.hosts.is_empty()
            && self.addresses.is_empty()
            && self.instances.is_empty()
            && self.floating.is_empty()
    }
}

impl Touched {
    /// The change log's rows for this change: (host, scope), `"*"` for every host.
    pub(crate) fn log_rows(&self) -> Vec<(&str, ChangeScope)> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        self.log_rows_with(&NONE)
    }

    /// The rows, with `also` recomputed whole (hosts the engine found affected beyond what
    /// the write gathered, e.g. the other hosts of a VXLAN segment).
    pub(crate) fn log_rows_with<'a>(
        &'a self,
        also: &'a BTreeSet<String>,
    ) -> Vec<(&'a str, ChangeScope)> {
        let mut rows: Vec<(&str, ChangeScope)> = Vec::new();
        // A host with many instances changed at once (a rule of a big group) is recomputed
        // whole: cheaper than one patch per instance.
        let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
        for (h, _) in self.instances.keys() {
            *per_host.entry(h.as_str()).or_default() += 1;
        }
        let whole: BTreeSet<&str> = self
            .hosts
            .iter()
            .chain(also)
            .map(String::as_str)
            .chain(
                per_host
                    .into_iter()
                    .filter(|(_, n)| *n > INSTANCES_PER_PATCH)
                    .map(|(h, _)| h),
            )
            .collect();
        if self.all {
            rows.push(("*", ChangeScope::Plan));
        } else {
            rows.extend(whole.iter().map(|h| (*h, ChangeScope::Plan)));
            // A host whose whole plan changed needs no finer rows.
            for (h, n, a) in self
                .addresses
                .iter()
                .filter(|(h, _, _)| !whole.contains(h.as_str()))
            {
                let scope = ChangeScope::Address {
                    network_id: *n,
                    address: a.clone(),
                };
                rows.push((h.as_str(), scope));
            }
            for (h, a) in self
                .floating
                .iter()
                .filter(|(h, _)| !whole.contains(h.as_str()))
            {
                rows.push((h.as_str(), ChangeScope::Floating { address: a.clone() }));
            }
            for ((h, uuid), nets) in self
                .instances
                .iter()
                .filter(|((h, _), _)| !whole.contains(h.as_str()))
            {
                let scope = ChangeScope::Instance {
                    uuid: uuid.clone(),
                    networks: nets.iter().copied().collect(),
                };
                rows.push((h.as_str(), scope));
            }
        }
        rows
    }
}
