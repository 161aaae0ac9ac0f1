//! Hosts' agents and their heartbeats.

use super::*;

impl ServiceStore for PgStore {
    fn report_service(&self, r: &ServiceReport, now: i64) -> Result<()> {
        let networks = to_json(&r.networks);
        let options = to_json(&r.options);
        let touched = self.write_raw(|tx| {
            let before: Option<String> = tx
                .opt(
                    "SELECT options FROM services WHERE host = $1 FOR UPDATE",
                    &[&r.host],
                )?
                .map(|row| row.get(0));
            tx.exec(
                "INSERT INTO services(host, network_host, last_seen, networks, options) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (host) DO UPDATE SET network_host = excluded.network_host, last_seen = excluded.last_seen, \
                 networks = excluded.networks, options = excluded.options",
                &[&r.host, &r.network_host, &now, &networks, &options],
            )?;
            // Heartbeats do not bump the generation, unless the host's own options changed
            // (or are heard of first): then its plan did.
            if before.as_deref() == Some(options.as_str()) {
                return Ok(None);
            }
            let generation = bump_generation(tx)?;
            let mut t = Touched {
                hosts: BTreeSet::from([r.host.clone()]),
                ..Touched::default()
            };
            // Another address: the hosts that share a VLAN network flood to it (VXLAN).
            let old: Option<novanet_core::config::HostOptions> =
                before.and_then(|b| serde_json::from_str(&b).ok());
            if old.and_then(|o| o.my_ip) != r.options.my_ip {
                t.hosts(super::changes::segment_neighbours(tx, &r.host)?);
            }
            record_touched(tx, generation, &t)?;
            Ok(Some(generation))
        })?;
        if let Some(g) = touched {
            self.run_hooks(g);
        }
        Ok(())
    }

    fn services(&self) -> Result<Vec<Service>> {
        self.read(|c| {
            Ok(c.rows(
                "SELECT host, network_host, last_seen, networks, options FROM services ORDER BY host",
                &[],
            )?
            .iter()
            .map(|r| {
                let networks: String = r.get(3);
                let options: String = r.get(4);
                Service {
                    host: r.get(0),
                    network_host: r.get(1),
                    last_seen: r.get(2),
                    networks: serde_json::from_str(&networks).unwrap_or_default(),
                    options: serde_json::from_str(&options).unwrap_or_default(),
                }
            })
            .collect())
        })
    }

    fn set_diagnosis(&self, host: &str, report: &str, now: i64) -> Result<()> {
        // No generation bump: a diagnosis changes no plan.
        self.write_raw(|tx| {
            tx.exec(
                "INSERT INTO host_diagnoses(host, reported_at, report) VALUES ($1, $2, $3) \
                 ON CONFLICT (host) DO UPDATE SET reported_at = excluded.reported_at, report = excluded.report",
                &[&host, &now, &report],
            )?;
            Ok(())
        })
    }

    fn diagnosis(&self, host: &str) -> Result<Option<(String, i64)>> {
        self.read(|c| {
            Ok(c.opt(
                "SELECT report, reported_at FROM host_diagnoses WHERE host = $1",
                &[&host],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })
    }
}
