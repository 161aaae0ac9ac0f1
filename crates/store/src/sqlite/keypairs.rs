//! Users' SSH key pairs.

use super::*;

impl KeypairStore for SqliteStore {
    fn create_keypair(&self, kp: &Keypair) -> Result<()> {
        self.write(|tx| {
            exec(
                tx,
                "INSERT INTO keypairs(user_id, name, public_key, fingerprint, type, created_at) VALUES (?1,?2,?3,?4,?5,?6)",
                params![kp.user_id, kp.name, kp.public_key, kp.fingerprint, kp.kind, kp.created_at],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("key pair {} already exists", kp.name))
                } else {
                    db(e)
                }
            })?;
            Ok(())
        })
    }

    fn keypairs(&self, user_id: &str) -> Result<Vec<Keypair>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached("SELECT name, user_id, public_key, fingerprint, type, created_at, rowid FROM keypairs WHERE user_id = ?1 ORDER BY name")
                .map_err(db)?;
            let rows = st
                .query_map([user_id], |r| {
                    Ok(Keypair {
                        name: r.get(0)?,
                        user_id: r.get(1)?,
                        public_key: r.get(2)?,
                        fingerprint: r.get(3)?,
                        kind: r.get(4)?,
                        created_at: r.get(5)?,
                        id: r.get(6)?,
                    })
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn keypair(&self, user_id: &str, name: &str) -> Result<Keypair> {
        self.keypairs(user_id)?
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| Error::not_found(format!("key pair {name} not found")))
    }

    fn delete_keypair(&self, user_id: &str, name: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM keypairs WHERE user_id = ?1 AND name = ?2",
                    [user_id, name],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("key pair {name} not found")));
            }
            Ok(())
        })
    }
}
