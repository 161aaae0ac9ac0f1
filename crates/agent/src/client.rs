//! The server's API as the agent uses it: a Keystone token, host plans, lease events.

use std::sync::Mutex;
use std::time::Duration;

use novanet_core::delta::PlanDelta;
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

/// What a poll for the host's plan brought.
#[derive(Debug)]
pub enum Polled {
    /// The whole plan (the agent had none, or one the server could not send deltas over),
    /// re-parsed; `refused` names what was left out, the server's own refusals included.
    Plan {
        epoch: u64,
        plan: Box<HostPlan>,
        refused: Vec<String>,
    },
    /// What changed over the plan held, to apply in order; then the plan is at `generation`.
    Deltas {
        generation: u64,
        deltas: Vec<PlanDelta>,
    },
    /// Nothing new: the held plan is the plan at `generation`.
    Unchanged { generation: u64 },
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
        self.call_sized(method, path, body).map(|(v, _)| v)
    }

    /// An API call that also says how many bytes the answer's body had.
    pub fn call_sized(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, usize)> {
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
                    let text = r
                        .into_string()
                        .map_err(|e| AgentError::Server(format!("reading {path}: {e}")))?;
                    // 202 and 204 answers have no body.
                    let v = if text.trim().is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text)
                            .map_err(|e| AgentError::Server(format!("bad JSON from {path}: {e}")))?
                    };
                    return Ok((v, text.len()));
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

    /// A long poll for the host's plan: `held` is the (server epoch, generation) of the plan
    /// this agent holds; the server answers with what changed since (as deltas when
    /// `deltas`, else the whole plan), or after `wait_s` with nothing. Also the body's size.
    pub fn poll(
        &self,
        host: &str,
        held: Option<(u64, u64)>,
        wait_s: u64,
        deltas: bool,
    ) -> Result<(Polled, usize)> {
        let form = if deltas { "delta" } else { "full" };
        let q = match held {
            Some((e, g)) => format!("?epoch={e}&after={g}&wait={wait_s}&form={form}"),
            // No plan yet: the whole plan at once, in the framed form.
            None => "?epoch=0&form=full".to_string(),
        };
        let (v, size) =
            self.call_sized("GET", &format!("/novanet/v1/hosts/{host}/plan{q}"), None)?;
        Ok((parse_poll(v)?, size))
    }

    /// Streams a GET's body (an image's data) into `dest`; returns the data's MD5, hex.
    pub fn download(&self, path: &str, dest: &std::path::Path) -> Result<String> {
        use md5::{Digest, Md5};
        use std::io::{Read, Write};
        let url = format!("{}{path}", self.server);
        let token = self.token(false)?;
        let resp = self
            .http
            .get(&url)
            .set("X-Auth-Token", &token)
            .call()
            .map_err(server_err)?;
        let mut file =
            std::fs::File::create(dest).map_err(|e| crate::sys::io_err(dest.display(), e))?;
        let mut reader = resp.into_reader();
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| AgentError::Server(format!("reading {path}: {e}")))?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| crate::sys::io_err(dest.display(), e))?;
        }
        Ok(md5.finalize().iter().map(|b| format!("{b:02x}")).collect())
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

/// Reads the server's answer to a poll. Every value of a delta is parsed into its validated
/// type: one that does not parse refuses the whole delta (the agent then asks for the whole
/// plan, whose parts are checked one by one).
pub fn parse_poll(mut v: Value) -> Result<Polled> {
    let num = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| AgentError::Server(format!("plan answer without {k}")))
    };
    let (epoch, generation) = (num(&v, "epoch")?, num(&v, "generation")?);
    Ok(if let Some(p) = v.get_mut("plan") {
        let (plan, refused) = crate::plan_check::parse_plan(p.take())?;
        Polled::Plan {
            epoch,
            plan: Box::new(plan),
            refused,
        }
    } else if let Some(d) = v.get_mut("deltas") {
        let deltas: Vec<PlanDelta> = serde_json::from_value(d.take())
            .map_err(|e| AgentError::Server(format!("refused a plan delta: {e}")))?;
        Polled::Deltas { generation, deltas }
    } else {
        Polled::Unchanged { generation }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_with_a_hostile_value_is_refused_whole() {
        let hunk = |name: &str| {
            json!({"epoch": 1, "generation": 5, "deltas": [{"generation": 5, "bridges": [
                {"at": 0, "remove": 0, "insert": [{"network_uuid": "n", "name": name,
                 "interface": null, "gateway": null, "broadcast": null, "vlan": null, "mtu": null}]}]}]})
        };
        match parse_poll(hunk("br100")).unwrap() {
            Polled::Deltas { generation, deltas } => {
                assert_eq!(
                    (generation, deltas[0].bridges[0].insert[0].name.as_str()),
                    (5, "br100")
                )
            }
            other => panic!("{other:?}"),
        }
        for hostile in [
            "br0\nlink set eth0 down",
            "../../etc",
            "waytoolongbridgename",
        ] {
            let e = parse_poll(hunk(hostile)).unwrap_err();
            assert!(e.to_string().contains("refused a plan delta"), "{e}");
        }
        assert!(matches!(
            parse_poll(json!({"epoch": 1, "generation": 7})).unwrap(),
            Polled::Unchanged { generation: 7 }
        ));
        assert!(parse_poll(json!({"generation": 7})).is_err());
    }
}
