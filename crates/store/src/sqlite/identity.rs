//! Keystone's projects, users, role assignments and tokens; password hashing.

use super::*;
use crate::passwords::{check_identity_name, dummy_hash, hash_password, verify_password};

/// `(id, name)` rows of a query without parameters (projects, users).
pub(super) fn id_name_rows(c: &Connection, sql: &str) -> Result<Vec<(String, String)>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    Ok(rows)
}

pub(super) fn roles_of(c: &Connection, user_id: &str, project_id: &str) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached("SELECT role FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 ORDER BY role")
        .map_err(db)?;
    let roles = st
        .query_map([user_id, project_id], |r| r.get(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(db)?;
    Ok(roles)
}

pub(super) fn find_project(c: &Connection, key: &str) -> Result<Project> {
    qrow(
        c,
        "SELECT id, name FROM projects WHERE id = ?1 OR name = ?1",
        [key],
        |r| {
            Ok(Project {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| Error::not_found(format!("project {key} not found")))
}

impl IdentityStore for SqliteStore {
    fn create_project(&self, name: &str) -> Result<Project> {
        check_identity_name("project", name)?;
        self.write(|tx| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            exec(
                tx,
                "INSERT INTO projects(id, name) VALUES (?1, ?2)",
                [&id, name],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("project {name} already exists"))
                } else {
                    db(e)
                }
            })?;
            Ok(Project {
                id,
                name: name.into(),
            })
        })
    }

    fn project(&self, key: &str) -> Result<Project> {
        self.read(|c| find_project(c, key))
    }

    fn projects(&self) -> Result<Vec<Project>> {
        let rows = self.read(|c| id_name_rows(c, "SELECT id, name FROM projects ORDER BY name"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| Project { id, name })
            .collect())
    }

    fn create_user(&self, name: &str, password: &str) -> Result<User> {
        check_identity_name("user", name)?;
        if password.is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let hash = hash_password(password)?;
        self.write(|tx| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            exec(
                tx,
                "INSERT INTO users(id, name, password_hash, salt) VALUES (?1, ?2, ?3, '')",
                params![id, name, hash],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("user {name} already exists"))
                } else {
                    db(e)
                }
            })?;
            Ok(User {
                id,
                name: name.into(),
            })
        })
    }

    fn user(&self, name: &str) -> Result<User> {
        self.read(|c| {
            qrow(
                c,
                "SELECT id, name FROM users WHERE name = ?1 OR id = ?1",
                [name],
                |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| Error::not_found(format!("user {name} not found")))
        })
    }

    fn assign_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        if !matches!(role, "admin" | "member" | "reader") {
            return Err(Error::invalid(
                "role",
                format!("{role:?} is not one of admin, member, reader"),
            ));
        }
        self.write(|tx| {
            exec(tx,
                "INSERT OR IGNORE INTO role_assignments(user_id, project_id, role) VALUES (?1, ?2, ?3)",
                [user_id, project_id, role],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn users(&self) -> Result<Vec<User>> {
        let rows = self.read(|c| id_name_rows(c, "SELECT id, name FROM users ORDER BY name"))?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| User { id, name })
            .collect())
    }

    fn rename_project(&self, id: &str, name: &str) -> Result<Project> {
        check_identity_name("project", name)?;
        self.write_raw(|tx| {
            let n = tx
                .execute("UPDATE projects SET name = ?1 WHERE id = ?2", [name, id])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::conflict(format!("project {name} already exists"))
                    } else {
                        db(e)
                    }
                })?;
            if n == 0 {
                return Err(Error::not_found(format!("project {id} not found")));
            }
            find_project(tx, id)
        })
    }

    fn delete_project(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute("DELETE FROM projects WHERE id = ?1", [id])
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("project {id} not found")));
            }
            exec(
                tx,
                "DELETE FROM role_assignments WHERE project_id = ?1",
                [id],
            )
            .map_err(db)?;
            exec(tx, "DELETE FROM tokens WHERE project_id = ?1", [id]).map_err(db)?;
            Ok(())
        })
    }

    fn update_user(&self, id: &str, name: Option<&str>, password: Option<&str>) -> Result<User> {
        if let Some(n) = name {
            check_identity_name("user", n)?;
        }
        if password.is_some_and(str::is_empty) {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let hash = password.map(hash_password).transpose()?;
        self.write_raw(|tx| {
            let exists: Option<String> = tx
                .query_row("SELECT id FROM users WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .map_err(db)?;
            if exists.is_none() {
                return Err(Error::not_found(format!("user {id} not found")));
            }
            if let Some(n) = name {
                tx.execute("UPDATE users SET name = ?1 WHERE id = ?2", [n, id])
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            Error::conflict(format!("user {n} already exists"))
                        } else {
                            db(e)
                        }
                    })?;
            }
            if let Some(h) = &hash {
                exec(
                    tx,
                    "UPDATE users SET password_hash = ?1, salt = '' WHERE id = ?2",
                    [h.as_str(), id],
                )
                .map_err(db)?;
                exec(tx, "DELETE FROM tokens WHERE user_id = ?1", [id]).map_err(db)?;
            }
            tx.query_row("SELECT id, name FROM users WHERE id = ?1", [id], |r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            })
            .map_err(db)
        })
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute("DELETE FROM users WHERE id = ?1", [id])
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!("user {id} not found")));
            }
            for t in ["role_assignments", "tokens", "keypairs"] {
                exec(tx, &format!("DELETE FROM {t} WHERE user_id = ?1"), [id]).map_err(db)?;
            }
            Ok(())
        })
    }

    fn role_assignments(
        &self,
        user_id: Option<&str>,
        project_id: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT user_id, project_id, role FROM role_assignments \
                     WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR project_id = ?2) \
                     ORDER BY user_id, project_id, role",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![user_id, project_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            Ok(rows)
        })
    }

    fn remove_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM role_assignments WHERE user_id = ?1 AND project_id = ?2 AND role = ?3",
                    [user_id, project_id, role],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(format!(
                    "the user has no role {role} on that project"
                )));
            }
            Ok(())
        })
    }

    fn issue_token(
        &self,
        user: &str,
        password: &str,
        project: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Token> {
        let unauthorized =
            || Error::Forbidden("the request you have made requires authentication".into());
        // The hash is checked outside any lock: it is slow on purpose.
        let row: Option<(String, String, String, String)> = self.read(|c| {
            c.query_row(
                "SELECT id, name, password_hash, salt FROM users WHERE name = ?1 OR id = ?1",
                [user],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db)
        })?;
        let Some((uid, uname, hash, salt)) = row else {
            // As slow as a wrong password, so that timing does not tell which users exist.
            let _ = verify_password(dummy_hash(), "", password);
            return Err(unauthorized());
        };
        let (ok, legacy) = verify_password(&hash, &salt, password);
        if !ok {
            return Err(unauthorized());
        }
        let upgraded = if legacy {
            Some(hash_password(password)?)
        } else {
            None
        };
        // Tokens are not state agents render: issuing one does not bump the generation.
        self.write_raw(|tx| {
            if let Some(h) = &upgraded {
                exec(
                    tx,
                    "UPDATE users SET password_hash = ?1, salt = '' WHERE id = ?2 AND password_hash = ?3",
                    params![h, uid, hash],
                )
                .map_err(db)?;
            }
            let p = find_project(tx, project).map_err(|_| unauthorized())?;
            let roles = roles_of(tx, &uid, &p.id)?;
            if roles.is_empty() {
                return Err(unauthorized());
            }
            // Expired tokens are dropped as new ones are made.
            exec(tx, "DELETE FROM tokens WHERE expires_at < ?1", [now]).map_err(db)?;
            let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            exec(tx,
                "INSERT INTO tokens(id, user_id, project_id, issued_at, expires_at) VALUES (?1,?2,?3,?4,?5)",
                params![id, uid, p.id, now, now + ttl],
            )
            .map_err(db)?;
            Ok(Token {
                id,
                user: User { id: uid, name: uname },
                project: p,
                roles,
                issued_at: now,
                expires_at: now + ttl,
            })
        })
    }

    fn token(&self, id: &str, now: i64) -> Result<Token> {
        self.read(|c| {
            let row: Option<(String, String, i64, i64)> = c
                .query_row(
                    "SELECT user_id, project_id, issued_at, expires_at FROM tokens WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(db)?;
            let (uid, pid, issued_at, expires_at) = row.ok_or_else(|| {
                Error::not_found("the token is unknown or was revoked".to_string())
            })?;
            if expires_at <= now {
                return Err(Error::not_found("the token has expired".to_string()));
            }
            let user: User = c
                .query_row("SELECT id, name FROM users WHERE id = ?1", [&uid], |r| {
                    Ok(User {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                })
                .map_err(db)?;
            let project = find_project(c, &pid)?;
            // Roles are read now, not when the token was issued: a removed role takes
            // effect on live tokens at once, and a token with no role left is no token.
            let roles = roles_of(c, &uid, &pid)?;
            if roles.is_empty() {
                return Err(Error::not_found(
                    "the token's user no longer has a role on its project".to_string(),
                ));
            }
            Ok(Token {
                id: id.into(),
                user,
                project,
                roles,
                issued_at,
                expires_at,
            })
        })
    }

    fn revoke_token(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx
                .execute("DELETE FROM tokens WHERE id = ?1", [id])
                .map_err(db)?;
            if n == 0 {
                return Err(Error::not_found(
                    "the token is unknown or was revoked".to_string(),
                ));
            }
            Ok(())
        })
    }
}
