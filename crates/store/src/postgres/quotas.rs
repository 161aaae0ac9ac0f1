//! Per-project quota overrides.

use super::*;

impl QuotaStore for PgStore {
    fn quota_overrides(&self, project_id: &str) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            Ok(c.rows(
                "SELECT resource, hard_limit FROM quotas WHERE project_id = $1 ORDER BY resource",
                &[&project_id],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn set_quota(&self, project_id: &str, resource: &str, limit: i64) -> Result<()> {
        // Limits are checked when something is made, not rendered: no generation bump.
        self.write_raw(|tx| {
            tx.exec(
                "INSERT INTO quotas(project_id, resource, hard_limit) VALUES ($1, $2, $3) \
                 ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit",
                &[&project_id, &resource, &limit],
            )?;
            Ok(())
        })
    }

    fn delete_quotas(&self, project_id: &str) -> Result<()> {
        self.write_raw(|tx| {
            tx.exec("DELETE FROM quotas WHERE project_id = $1", &[&project_id])?;
            Ok(())
        })
    }
}
