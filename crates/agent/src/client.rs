//! The server's API as the agent uses it: a Keystone token, host plans, lease events.

use std::sync::Mutex;
use std::time::Duration;

use novanet_core::plan::HostPlan;
use serde_json::{json, Value};

use crate::sys::{AgentError, Result};

#[derive(Clone, Debug)]
pub struct Credentials {
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub project: String,
}

pub struct Client {
    pub server: String,
    creds: Credentials,
    token: Mutex<Option<String>>,
    http: ureq::Agent,
}

fn server_err(e: ureq::Error) -> AgentError {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            AgentError::Server(format!("HTTP {code}: {body}"))
        }
        ureq::Error::Transport(t) => AgentError::Server(t.to_string()),
    }
}

impl Client {
    pub fn new(server: &str, creds: Credentials) -> Client {
        let http = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(3))
            .timeout_read(Duration::from_secs(60))
            .build();
        Client {
            server: server.trim_end_matches('/').to_string(),
            creds,
            token: Mutex::new(None),
            http,
        }
    }

    fn authenticate(&self) -> Result<String> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.creds.username, "password": self.creds.password, "domain": {"id": "default"}}}},
            "scope": {"project": {"name": self.creds.project, "domain": {"id": "default"}}}}});
        let url = format!("{}/auth/tokens", self.creds.auth_url.trim_end_matches('/'));
        let resp = self.http.post(&url).send_json(body).map_err(server_err)?;
        resp.header("x-subject-token")
            .map(str::to_string)
            .ok_or_else(|| AgentError::Server("the token response has no X-Subject-Token".into()))
    }

    fn token(&self, renew: bool) -> Result<String> {
        let mut t = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if renew || t.is_none() {
            *t = Some(self.authenticate()?);
        }
        Ok(t.clone().expect("set"))
    }

    /// One API call, authenticating again once if the token was refused.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{path}", self.server);
        for attempt in 0..2 {
            let token = self.token(attempt > 0)?;
            let req = self.http.request(method, &url).set("X-Auth-Token", &token);
            let res = match body {
                Some(b) => req.send_json(b.clone()),
                None => req.call(),
            };
            match res {
                Ok(r) => {
                    return r
                        .into_json()
                        .map_err(|e| AgentError::Server(format!("bad JSON from {path}: {e}")))
                }
                Err(ureq::Error::Status(401, _)) if attempt == 0 => continue,
                Err(e) => return Err(server_err(e)),
            }
        }
        Err(AgentError::Server("unauthorized".into()))
    }

    /// The heartbeat, with the host's own IPv4 networks (no project network may overlap them).
    pub fn report(
        &self,
        host: &str,
        network_host: bool,
        networks: &[String],
        options: &novanet_core::config::HostOptions,
    ) -> Result<()> {
        self.call(
            "POST",
            &format!("/novanet/v1/hosts/{host}/report"),
            Some(&json!({"network_host": network_host, "networks": networks, "options": options})),
        )
        .map(|_| ())
    }

    pub fn plan(&self, host: &str, after: Option<u64>, wait_s: u64) -> Result<HostPlan> {
        let q = match after {
            Some(g) => format!("?after={g}&wait={wait_s}"),
            None => String::new(),
        };
        let v = self.call("GET", &format!("/novanet/v1/hosts/{host}/plan{q}"), None)?;
        let (plan, refused) = crate::plan_check::parse_plan(v)?;
        for r in &refused {
            eprintln!("novanet agent: refused part of the plan: {r}");
        }
        Ok(plan)
    }

    pub fn lease(
        &self,
        action: &str,
        address: &str,
        mac: &str,
        hostname: Option<&str>,
    ) -> Result<()> {
        let body = json!({"action": action, "address": address, "mac": mac, "hostname": hostname});
        self.call("POST", "/novanet/v1/leases", Some(&body))
            .map(|_| ())
    }
}
