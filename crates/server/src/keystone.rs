//! Tokens validated against an external Keystone (nova.conf's `[keystone_authtoken]`), as
//! keystonemiddleware does: the service user's own token asks `GET /v3/auth/tokens` about
//! each caller's token, and the answer is kept for a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use novanet_core::config::KeystoneAuthtoken;
use novanet_store::{Project, Token, User};
use serde_json::{json, Value};

/// How long a validated token is believed without asking again (seconds). A revoked token
/// keeps working this long at most; keystonemiddleware's default is five minutes.
pub const TOKEN_CACHE_SECS: i64 = 60;

const TIMEOUT: Duration = Duration::from_secs(5);

pub struct ExternalKeystone {
    conf: KeystoneAuthtoken,
    agent: ureq::Agent,
    /// The service user's token and its expiry.
    service: Mutex<Option<(String, i64)>>,
    /// Caller's token -> (what Keystone said, when it said it).
    cache: Mutex<HashMap<String, (Token, i64)>>,
    /// Tokens Keystone refused, and when: a client retrying a bad token costs Keystone one
    /// request per `REFUSED_CACHE_SECS`, not one per request.
    refused: Mutex<HashMap<String, i64>>,
}

const REFUSED_CACHE_SECS: i64 = 10;

/// Why a token was not accepted: the caller's fault (401) or Keystone's (503).
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Invalid,
    Unavailable(String),
}

impl ExternalKeystone {
    pub fn new(conf: KeystoneAuthtoken) -> ExternalKeystone {
        ExternalKeystone {
            conf,
            agent: ureq::AgentBuilder::new().timeout(TIMEOUT).build(),
            service: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    fn url(&self) -> String {
        format!("{}/auth/tokens", self.conf.auth_url.trim_end_matches('/'))
    }

    fn service_token(&self, now: i64) -> Result<String, Refusal> {
        if let Some((t, exp)) = self
            .service
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if *exp > now + 30 {
                return Ok(t.clone());
            }
        }
        // Logged in without the lock: a Keystone slow to answer must not queue every
        // request behind one login.
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.conf.username, "password": self.conf.password,
                "domain": {"name": self.conf.user_domain_name}}}},
            "scope": {"project": {"name": self.conf.project_name,
                "domain": {"name": self.conf.project_domain_name}}}}});
        let unavailable =
            |e: String| Refusal::Unavailable(format!("keystone at {}: {e}", self.conf.auth_url));
        let resp = self
            .agent
            .post(&self.url())
            .send_json(body)
            .map_err(|e| unavailable(format!("the service user cannot log in: {e}")))?;
        let token = resp
            .header("x-subject-token")
            .map(str::to_string)
            .ok_or_else(|| unavailable("no X-Subject-Token in its answer".into()))?;
        let v: Value = resp.into_json().map_err(|e| unavailable(e.to_string()))?;
        let exp = v["token"]["expires_at"]
            .as_str()
            .and_then(parse_iso8601)
            .unwrap_or(now + 300);
        *self.service.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), exp));
        Ok(token)
    }

    /// The caller behind `token`, as Keystone knows it. Blocking: call it off the runtime.
    pub fn validate(&self, token: &str, now: i64) -> Result<Token, Refusal> {
        if let Some((t, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
        {
            if now - at < TOKEN_CACHE_SECS && t.expires_at > now {
                return Ok(t.clone());
            }
        }
        if self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .is_some_and(|at| now - at < REFUSED_CACHE_SECS)
        {
            return Err(Refusal::Invalid);
        }
        let r = self.ask(token, now);
        if r == Err(Refusal::Invalid) {
            let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            refused.retain(|_, at| now - *at < REFUSED_CACHE_SECS);
            refused.insert(token.to_string(), now);
        }
        r
    }

    fn ask(&self, token: &str, now: i64) -> Result<Token, Refusal> {
        // Keystone answers 404 for a caller's token it does not know and 401 when it no
        // longer takes the service token: then log in again, once.
        let mut retried = false;
        let v: Value = loop {
            let service = self.service_token(now)?;
            let resp = self
                .agent
                .get(&format!("{}?nocatalog", self.url()))
                .set("X-Auth-Token", &service)
                .set("X-Subject-Token", token)
                .call();
            match resp {
                Ok(r) => {
                    break r
                        .into_json()
                        .map_err(|e| Refusal::Unavailable(e.to_string()))?
                }
                Err(ureq::Error::Status(404, _)) => return Err(Refusal::Invalid),
                Err(ureq::Error::Status(401, _)) if !retried => {
                    retried = true;
                    *self.service.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(e) => return Err(Refusal::Unavailable(e.to_string())),
            }
        };
        let t = token_from(token, &v["token"]).ok_or(Refusal::Invalid)?;
        if t.expires_at <= now {
            return Err(Refusal::Invalid);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (c, at)| now - *at < TOKEN_CACHE_SECS && c.expires_at > now);
        cache.insert(token.to_string(), (t.clone(), now));
        Ok(t)
    }
}

/// A Keystone v3 token body as novanet's token.
fn token_from(id: &str, t: &Value) -> Option<Token> {
    let s = |v: &Value| v.as_str().map(str::to_string);
    Some(Token {
        id: id.to_string(),
        user: User {
            id: s(&t["user"]["id"])?,
            name: s(&t["user"]["name"])?,
        },
        project: Project {
            id: s(&t["project"]["id"])?,
            name: s(&t["project"]["name"])?,
        },
        roles: t["roles"]
            .as_array()?
            .iter()
            .filter_map(|r| s(&r["name"]))
            .map(|r| r.to_lowercase())
            .collect(),
        issued_at: t["issued_at"].as_str().and_then(parse_iso8601).unwrap_or(0),
        expires_at: t["expires_at"].as_str().and_then(parse_iso8601)?,
    })
}

/// `2026-11-25T12:00:00[.ffffff]Z` (or `+00:00`) as unix seconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(4..5)? != "-" || s.get(10..11)? != "T" || !(1..=12).contains(&m) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_round_trips() {
        for t in [0, 951_782_400, 1_764_000_000, 1_798_761_599] {
            assert_eq!(parse_iso8601(&crate::iso8601(t)), Some(t), "{t}");
        }
        assert_eq!(parse_iso8601("2026-12-03T14:00:00Z"), Some(1_796_306_400));
        assert_eq!(parse_iso8601("yesterday"), None);
    }
}
