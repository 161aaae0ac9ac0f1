//! Keystone's projects, users, role assignments and tokens.

use super::*;
use crate::passwords::{check_identity_name, dummy_hash, hash_password, verify_password};

fn roles_of(c: &Db, user_id: &str, project_id: &str) -> Result<Vec<String>> {
    strings(
        c,
        "SELECT role FROM role_assignments WHERE user_id = $1 AND project_id = $2 ORDER BY role",
        &[&user_id, &project_id],
    )
}

fn find_project(c: &Db, key: &str) -> Result<Project> {
    c.opt(
        "SELECT id, name FROM projects WHERE id = $1 OR name = $1",
        &[&key],
    )?
    .map(|r| Project {
        id: r.get(0),
        name: r.get(1),
    })
    .ok_or_else(|| Error::not_found(format!("project {key} not found")))
}

fn find_user(c: &Db, key: &str) -> Result<Option<User>> {
    Ok(c.opt(
        "SELECT id, name FROM users WHERE name = $1 OR id = $1",
        &[&key],
    )?
    .map(|r| User {
        id: r.get(0),
        name: r.get(1),
    }))
}

/// Runs an insert or update of a unique name: a taken name is `taken`'s conflict.
fn unique(out: std::result::Result<u64, PgError>, taken: impl FnOnce() -> Error) -> Result<u64> {
    out.map_err(|e| {
        if is_unique_violation(&e) {
            taken()
        } else {
            db(e)
        }
    })
}

impl IdentityStore for PgStore {
    fn create_project(&self, name: &str) -> Result<Project> {
        check_identity_name("project", name)?;
        self.write(|tx| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            unique(
                tx.try_exec(
                    "INSERT INTO projects(id, name) VALUES ($1, $2)",
                    &[&id, &name],
                ),
                || Error::conflict(format!("project {name} already exists")),
            )?;
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
        self.read(|c| {
            Ok(c.rows("SELECT id, name FROM projects ORDER BY name", &[])?
                .iter()
                .map(|r| Project {
                    id: r.get(0),
                    name: r.get(1),
                })
                .collect())
        })
    }

    fn create_user(&self, name: &str, password: &str) -> Result<User> {
        check_identity_name("user", name)?;
        if password.is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        let hash = hash_password(password)?;
        self.write(|tx| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            unique(
                tx.try_exec(
                    "INSERT INTO users(id, name, password_hash, salt) VALUES ($1, $2, $3, '')",
                    &[&id, &name, &hash],
                ),
                || Error::conflict(format!("user {name} already exists")),
            )?;
            Ok(User {
                id,
                name: name.into(),
            })
        })
    }

    fn user(&self, name: &str) -> Result<User> {
        self.read(|c| find_user(c, name))?
            .ok_or_else(|| Error::not_found(format!("user {name} not found")))
    }

    fn assign_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        if !matches!(role, "admin" | "member" | "reader") {
            return Err(Error::invalid(
                "role",
                format!("{role:?} is not one of admin, member, reader"),
            ));
        }
        self.write(|tx| {
            tx.exec(
                "INSERT INTO role_assignments(user_id, project_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&user_id, &project_id, &role],
            )?;
            Ok(())
        })
    }

    fn users(&self) -> Result<Vec<User>> {
        self.read(|c| {
            Ok(c.rows("SELECT id, name FROM users ORDER BY name", &[])?
                .iter()
                .map(|r| User {
                    id: r.get(0),
                    name: r.get(1),
                })
                .collect())
        })
    }

    fn rename_project(&self, id: &str, name: &str) -> Result<Project> {
        check_identity_name("project", name)?;
        self.write_raw(|tx| {
            let n = unique(
                tx.try_exec("UPDATE projects SET name = $1 WHERE id = $2", &[&name, &id]),
                || Error::conflict(format!("project {name} already exists")),
            )?;
            if n == 0 {
                return Err(Error::not_found(format!("project {id} not found")));
            }
            find_project(tx, id)
        })
    }

    fn delete_project(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            if tx.exec("DELETE FROM projects WHERE id = $1", &[&id])? == 0 {
                return Err(Error::not_found(format!("project {id} not found")));
            }
            tx.exec("DELETE FROM role_assignments WHERE project_id = $1", &[&id])?;
            tx.exec("DELETE FROM tokens WHERE project_id = $1", &[&id])?;
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
            if tx
                .opt("SELECT id FROM users WHERE id = $1 FOR UPDATE", &[&id])?
                .is_none()
            {
                return Err(Error::not_found(format!("user {id} not found")));
            }
            if let Some(n) = name {
                unique(
                    tx.try_exec("UPDATE users SET name = $1 WHERE id = $2", &[&n, &id]),
                    || Error::conflict(format!("user {n} already exists")),
                )?;
            }
            if let Some(h) = &hash {
                tx.exec(
                    "UPDATE users SET password_hash = $1, salt = '' WHERE id = $2",
                    &[h, &id],
                )?;
                tx.exec("DELETE FROM tokens WHERE user_id = $1", &[&id])?;
            }
            let r = tx.one("SELECT id, name FROM users WHERE id = $1", &[&id])?;
            Ok(User {
                id: r.get(0),
                name: r.get(1),
            })
        })
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        self.write_raw(|tx| {
            if tx.exec("DELETE FROM users WHERE id = $1", &[&id])? == 0 {
                return Err(Error::not_found(format!("user {id} not found")));
            }
            for t in ["role_assignments", "tokens", "keypairs"] {
                tx.exec(&format!("DELETE FROM {t} WHERE user_id = $1"), &[&id])?;
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
            Ok(c.rows(
                "SELECT user_id, project_id, role FROM role_assignments \
                 WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR project_id = $2) \
                 ORDER BY user_id, project_id, role",
                &[&user_id, &project_id],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
        })
    }

    fn remove_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        self.write_raw(|tx| {
            let n = tx.exec(
                "DELETE FROM role_assignments WHERE user_id = $1 AND project_id = $2 AND role = $3",
                &[&user_id, &project_id, &role],
            )?;
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
        // The hash is checked outside any transaction: it is slow on purpose.
        let row: Option<(String, String, String, String)> = self.read(|c| {
            Ok(c.opt(
                "SELECT id, name, password_hash, salt FROM users WHERE name = $1 OR id = $1",
                &[&user],
            )?
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
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
                tx.exec(
                    "UPDATE users SET password_hash = $1, salt = '' WHERE id = $2 AND password_hash = $3",
                    &[h, &uid, &hash],
                )?;
            }
            let p = find_project(tx, project).map_err(|_| unauthorized())?;
            let roles = roles_of(tx, &uid, &p.id)?;
            if roles.is_empty() {
                return Err(unauthorized());
            }
            // Expired tokens are dropped as new ones are made.
            tx.exec("DELETE FROM tokens WHERE expires_at < $1", &[&now])?;
            let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            tx.exec(
                "INSERT INTO tokens(id, user_id, project_id, issued_at, expires_at) VALUES ($1,$2,$3,$4,$5)",
                &[&id, &uid, &p.id, &now, &(now + ttl)],
            )?;
            Ok(Token {
                id,
                user: User {
                    id: uid.clone(),
                    name: uname.clone(),
                },
                project: p,
                roles,
                issued_at: now,
                expires_at: now + ttl,
            })
        })
    }

    fn token(&self, id: &str, now: i64) -> Result<Token> {
        self.read(|c| {
            let r = c
                .opt(
                    "SELECT user_id, project_id, issued_at, expires_at FROM tokens WHERE id = $1",
                    &[&id],
                )?
                .ok_or_else(|| {
                    Error::not_found("the token is unknown or was revoked".to_string())
                })?;
            let (uid, pid, issued_at, expires_at): (String, String, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if expires_at <= now {
                return Err(Error::not_found("the token has expired".to_string()));
            }
            let r = c.one("SELECT id, name FROM users WHERE id = $1", &[&uid])?;
            let user = User {
                id: r.get(0),
                name: r.get(1),
            };
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
            if tx.exec("DELETE FROM tokens WHERE id = $1", &[&id])? == 0 {
                return Err(Error::not_found(
                    "the token is unknown or was revoked".to_string(),
                ));
            }
            Ok(())
        })
    }
}
