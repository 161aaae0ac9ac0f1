//! Per-project quota overrides.

use super::*;

impl QuotaStore for SqliteStore {
    fn quota_overrides(&self, project_id: &str) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT resource, hard_limit FROM quotas WHERE project_id = ?1 ORDER BY resource")
                .map_err(db)?;
            let rows = st
                .query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn set_quota(&self, project_id: &str, resource: &str, limit: i64) -> Result<()> {
        // Limits are checked when something is made, not rendered: no generation bump.
        self.write_raw(|tx| {
            exec(
                tx,
                "INSERT INTO quotas(project_id, resource, hard_limit) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
                params![project_id, resource, limit],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn delete_quotas(&self, project_id: &str) -> Result<()> {
        self.write_raw(|tx| {
            exec(tx, "DELETE FROM quotas WHERE project_id = ?1", [project_id]).map_err(db)?;
            Ok(())
        })
    }
}
