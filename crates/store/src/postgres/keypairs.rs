//! Users' SSH key pairs.

use super::*;

impl KeypairStore for PgStore {
    fn create_keypair(&self, kp: &Keypair) -> Result<()> {
        self.write(|tx| {
            let inserted = tx.opt(
                "INSERT INTO keypairs(user_id, name, public_key, fingerprint, type, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &kp.user_id,
                    &kp.name,
                    &kp.public_key,
                    &kp.fingerprint,
                    &kp.kind,
                    &kp.created_at,
                ],
            )?;
            if inserted.is_none() {
                return Err(Error::conflict(format!(
                    "key pair {} already exists",
                    kp.name
                )));
            }
            Ok(())
        })
    }

    fn keypairs(&self, user_id: &str) -> Result<Vec<Keypair>> {
        self.read(|c| {
            Ok(c.rows(
                "SELECT name, user_id, public_key, fingerprint, type, created_at, id FROM keypairs \
                 WHERE user_id = $1 ORDER BY name",
                &[&user_id],
            )?
            .iter()
            .map(|r| Keypair {
                name: r.get(0),
                user_id: r.get(1),
                public_key: r.get(2),
                fingerprint: r.get(3),
                kind: r.get(4),
                created_at: r.get(5),
                id: r.get(6),
            })
            .collect())
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
            let n = tx.exec(
                "DELETE FROM keypairs WHERE user_id = $1 AND name = $2",
                &[&user_id, &name],
            )?;
            if n == 0 {
                return Err(Error::not_found(format!("key pair {name} not found")));
            }
            Ok(())
        })
    }
}
