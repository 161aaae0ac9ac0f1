//! The server's API as the agent uses it: a Keystone token, host plans, lease events.
//! Several servers on one database may be given: a call that cannot reach one moves on
//! to the next, and the agent's held plan goes with it (see [`Servers`]).

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The servers' URLs, in the order given, and the one calls go to now. A server that
/// stops answering hands over to the next one, round the list.
#[derive(Debug)]
pub struct Servers {
    urls: Vec<String>,
    current: AtomicUsize,
}

impl Servers {
    /// `list`: one URL or several separated by commas (`http://a:8774,http://b:8774`).
    pub fn parse(list: &str) -> Result<Servers> {
        let urls: Vec<String> = list
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(AgentError::Server(format!(
                "no server URL in {list:?}: give one or more, separated by commas, e.g. \
                 http://192.168.56.200:8774,http://192.168.56.201:8774"
            )));
        }
        Ok(Servers {
            urls,
            current: AtomicUsize::new(0),
        })
    }

    /// The server calls go to now: its place in the list and its URL.
    pub fn current(&self) -> (usize, &str) {
        let i = self.current.load(Ordering::SeqCst) % self.urls.len();
        (i, &self.urls[i])
    }

    /// Server `index` did not answer: calls go to the next one from now on, unless another
    /// call already moved on from it (then the server it moved to stays).
    pub fn failed(&self, index: usize) -> (usize, &str) {
        let next = (index + 1) % self.urls.len();
        let _ = self
            .current
            .compare_exchange(index, next, Ordering::SeqCst, Ordering::SeqCst);
        self.current()
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The identity service to log in at on `server`: when the configured one is one of
    /// the servers' own (`<server>/identity/v3`), the same path on `server`, so that
    /// logging in does not depend on the server that stopped answering; else (an outside
    /// Keystone) the configured one.
    pub fn identity_url(&self, auth_url: &str, server: &str) -> String {
        let auth_url = auth_url.trim_end_matches('/');
        for u in &self.urls {
            if let Some(path) = auth_url.strip_prefix(u.as_str()) {
                if path.is_empty() || path.starts_with('/') {
                    return format!("{server}{path}");
                }
            }
        }
        auth_url.to_string()
    }
}

pub struct Client {
    servers: Servers,
    creds: Credentials,
    token: Mutex<Option<String>>,
    http: ureq::Agent,
}

/// A failed call on one server: unreachable (try the next) or answered with an error.
enum Failure {
    Unreachable(String),
    Refused(AgentError),
}

/// Where no other server is tried (a download), a failure is the caller's error.
impl From<Failure> for AgentError {
    fn from(f: Failure) -> AgentError {
        match f {
            Failure::Refused(e) => e,
            Failure::Unreachable(why) => AgentError::Server(why),
        }
    }
}

fn server_err(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            Failure::Refused(AgentError::Server(format!("HTTP {code}: {body}")))
        }
        // Refused, reset, timed out, no such host: the server does not answer.
        ureq::Error::Transport(t) => Failure::Unreachable(t.to_string()),
    }
}

impl Client {
    pub fn new(servers: Servers, creds: Credentials) -> Client {
        let http = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(3))
            .timeout_read(Duration::from_secs(60))
            .build();
        Client {
            servers,
            creds,
            token: Mutex::new(None),
            http,
        }
    }

    /// The server calls go to now.
    pub fn server(&self) -> &str {
        self.servers.current().1
    }

    fn authenticate(&self, server: &str) -> std::result::Result<String, Failure> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.creds.username, "password": self.creds.password, "domain": {"id": "default"}}}},
            "scope": {"project": {"name": self.creds.project, "domain": {"id": "default"}}}}});
        let url = format!(
            "{}/auth/tokens",
            self.servers.identity_url(&self.creds.auth_url, server)
        );
        let resp = self.http.post(&url).send_json(body).map_err(server_err)?;
        resp.header("x-subject-token")
            .map(str::to_string)
            .ok_or_else(|| {
                Failure::Refused(AgentError::Server(
                    "the token response has no X-Subject-Token".into(),
                ))
            })
    }

    fn token(&self, renew: bool, server: &str) -> std::result::Result<String, Failure> {
        let mut t = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if renew || t.is_none() {
            *t = Some(self.authenticate(server)?);
        }
        Ok(t.clone().expect("set"))
    }

    /// One API call, authenticating again once if the token was refused. A server that
    /// does not answer, or breaks off its answer, hands the call to the next one: the call
    /// may then be done twice (the agent's own calls, reports, polls and lease events, may
    /// be; a client that boots through this gets at least one instance per answered boot).
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
        let (mut index, mut server) = self.servers.current();
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call_on(server, method, path, body) {
                Ok(answer) => return Ok(answer),
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Unreachable(why)) if tries < self.servers.len() => {
                    let from = server;
                    (index, server) = self.servers.failed(index);
                    tracing::warn!(
                        server = from,
                        next = server,
                        error = why.as_str(),
                        "the server does not answer; moving to the next one"
                    );
                }
                Err(Failure::Unreachable(why)) => {
                    // Every server was tried: the next call starts with the next one.
                    self.servers.failed(index);
                    return Err(AgentError::Server(format!(
                        "no server answers ({}): {why}",
                        self.servers.urls().join(", ")
                    )));
                }
            }
        }
    }

    /// One call on one server, authenticating again once if the token was refused.
    fn call_on(
        &self,
        server: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::result::Result<(Value, usize), Failure> {
        let url = format!("{server}{path}");
        for attempt in 0..2 {
            let token = self.token(attempt > 0, server)?;
            let req = self.http.request(method, &url).set("X-Auth-Token", &token);
            let res = match body {
                Some(b) => req.send_json(b.clone()),
                None => req.call(),
            };
            match res {
                Ok(r) => {
                    // A server that dies while it answers has not answered.
                    let text = r
                        .into_string()
                        .map_err(|e| Failure::Unreachable(format!("reading {path}: {e}")))?;
                    // 202 and 204 answers have no body.
                    let v = if text.trim().is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).map_err(|e| {
                            Failure::Refused(AgentError::Server(format!(
                                "bad JSON from {path}: {e}"
                            )))
                        })?
                    };
                    return Ok((v, text.len()));
                }
                Err(ureq::Error::Status(401, _)) if attempt == 0 => continue,
                Err(e) => return Err(server_err(e)),
            }
        }
        Err(Failure::Refused(AgentError::Server("unauthorized".into())))
    }

    /// The heartbeat, with the host's own IPv4 networks (no project network may overlap them).
    pub fn report(
        &self,
        host: &str,
        network_host: bool,
        networks: &[String],
        options: &novanet_core::config::HostOptions,
    ) -> Result<()> {
        self.report_with(host, network_host, networks, options, None)
    }

    /// A heartbeat with this host's latest diagnosis, which the server keeps for
    /// `novanet diagnose --host`.
    pub fn report_with(
        &self,
        host: &str,
        network_host: bool,
        networks: &[String],
        options: &novanet_core::config::HostOptions,
        diagnosis: Option<&crate::diagnose::Diagnosis>,
    ) -> Result<()> {
        let mut body =
            json!({"network_host": network_host, "networks": networks, "options": options});
        if let Some(d) = diagnosis {
            body["diagnosis"] = serde_json::to_value(d).expect("serializable");
        }
        self.call(
            "POST",
            &format!("/novanet/v1/hosts/{host}/report"),
            Some(&body),
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
        let server = self.server();
        let url = format!("{server}{path}");
        let token = self.token(false, server)?;
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
    fn servers_are_read_from_a_comma_separated_list() {
        let s = Servers::parse(" http://a:8774/, http://b:8774 ,,http://c:8774").unwrap();
        assert_eq!(
            s.urls(),
            ["http://a:8774", "http://b:8774", "http://c:8774"]
        );
        assert_eq!(s.current(), (0, "http://a:8774"));
        assert_eq!(Servers::parse("http://a:8774").unwrap().len(), 1);
        for none in ["", " , ,"] {
            let e = Servers::parse(none).unwrap_err().to_string();
            assert!(e.contains("no server URL"), "{e}");
        }
    }

    #[test]
    fn a_server_that_fails_hands_over_to_the_next_round_the_list() {
        let s = Servers::parse("http://a:1,http://b:1,http://c:1").unwrap();
        assert_eq!(s.failed(0), (1, "http://b:1"));
        assert_eq!(s.failed(1), (2, "http://c:1"));
        assert_eq!(s.failed(2), (0, "http://a:1"));
        // Two calls saw server a fail at once: the second does not skip b.
        assert_eq!(s.failed(0), (1, "http://b:1"));
        assert_eq!(s.failed(0), (1, "http://b:1"));
        assert_eq!(s.current(), (1, "http://b:1"));
        let one = Servers::parse("http://a:1").unwrap();
        assert_eq!(one.failed(0), (0, "http://a:1"));
    }

    #[test]
    fn the_identity_service_follows_the_server() {
        let s = Servers::parse("http://a:1,http://b:2").unwrap();
        assert_eq!(
            s.identity_url("http://a:1/identity/v3/", "http://b:2"),
            "http://b:2/identity/v3"
        );
        assert_eq!(
            s.identity_url("http://b:2/identity/v3", "http://a:1"),
            "http://a:1/identity/v3"
        );
        // An outside Keystone stays, and so does a host that only starts like a server's.
        assert_eq!(
            s.identity_url("http://keystone:5000/v3", "http://b:2"),
            "http://keystone:5000/v3"
        );
        assert_eq!(
            s.identity_url("http://a:10/identity/v3", "http://b:2"),
            "http://a:10/identity/v3"
        );
    }

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
