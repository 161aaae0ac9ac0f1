//! Hosts' agents and their heartbeats.

use super::changes::{bump_generation, record_touched, Touched};
use super::*;

impl ServiceStore for SqliteStore {
    fn report_service(&self, r: &ServiceReport, now: i64) -> Result<()> {
        let networks = to_json(&r.networks);
        let options = to_json(&r.options);
        let touched = self.write_raw(|tx| {
            let before: Option<String> = tx
                .query_row(
                    "SELECT options FROM services WHERE host = ?1",
                    [&r.host],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            exec(tx,
                "INSERT INTO services(host, network_host, last_seen, networks, options) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(host) DO UPDATE SET network_host = excluded.network_host, last_seen = excluded.last_seen, \
                 networks = excluded.networks, options = excluded.options",
                params![r.host, r.network_host, now, networks, options],
            )
            .map_err(db)?;
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
            let old: Option<novanet_core::config::HostOptions> = before.and_then(|b| serde_json::from_str(&b).ok());
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
            let mut st = c
                .prepare_cached(
                    "SELECT host, network_host, last_seen, networks, options FROM services ORDER BY host",
                )
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    let networks: String = r.get(3)?;
                    let options: String = r.get(4)?;
                    Ok(Service {
                        host: r.get(0)?,
                        network_host: r.get(1)?,
                        last_seen: r.get(2)?,
                        networks: serde_json::from_str(&networks).unwrap_or_default(),
                        options: serde_json::from_str(&options).unwrap_or_default(),
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn set_diagnosis(&self, host: &str, report: &str, now: i64) -> Result<()> {
        // No generation bump: a diagnosis changes no plan.
        self.write_raw(|tx| {
            exec(
                tx,
                "INSERT INTO host_diagnoses(host, reported_at, report) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(host) DO UPDATE SET reported_at = excluded.reported_at, report = excluded.report",
                params![host, now, report],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn diagnosis(&self, host: &str) -> Result<Option<(String, i64)>> {
        self.read(|c| {
            c.query_row(
                "SELECT report, reported_at FROM host_diagnoses WHERE host = ?1",
                [host],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)
        })
    }
}
