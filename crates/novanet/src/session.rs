//! The client's side of the wire: the `--os-*` options, logging in to the identity service,
//! calling the compute API, and errors that say what to check.

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use clap::{ArgMatches, Args, FromArgMatches};
use novanet_agent::client::Servers;
use serde_json::{json, Value};

pub const GLOBAL_HEADING: &str = "Global options";

const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:8774/identity/v3";

// The identity options of novaclient (`--os-*`, or the `OS_*` environment variables). They
// belong to the client commands and the agent, and may be given before the command as with
// `nova` (`novanet --os-username demo list`) or after it. (No doc comment on an `Args`
// struct: clap would make it the about of every command it is added to.)
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct Auth {
    /// The identity service's URL: the server's address with /identity/v3
    #[arg(
        id = "os_auth_url",
        long = "os-auth-url",
        env = "OS_AUTH_URL",
        value_name = "URL",
        default_value = DEFAULT_AUTH_URL
    )]
    pub auth_url: String,
    /// Several servers on one database, separated by commas: the client logs in at the
    /// first that answers and moves to the next when one stops answering. The identity
    /// service is then the server's own (/identity/v3), unless OS_AUTH_URL names another
    #[arg(
        id = "novanet_server",
        long = "novanet-server",
        env = "NOVANET_SERVER",
        value_name = "URL[,URL...]"
    )]
    pub servers: Option<String>,
    /// The user to log in as
    #[arg(
        id = "os_username",
        long = "os-username",
        env = "OS_USERNAME",
        value_name = "NAME",
        default_value = "admin"
    )]
    pub username: String,
    /// The user's password
    #[arg(
        id = "os_password",
        long = "os-password",
        env = "OS_PASSWORD",
        value_name = "PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,
    /// The project to work in (by name)
    #[arg(
        id = "os_project_name",
        long = "os-project-name",
        env = "OS_PROJECT_NAME",
        value_name = "NAME",
        default_value = "admin"
    )]
    pub project: String,
}

// How client commands print what they show.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = GLOBAL_HEADING)]
pub struct Output {
    /// Print JSON instead of tables
    #[arg(id = "output_json", long = "json")]
    pub json: bool,
}

/// Whether `id` was typed on the command line of `m` (not taken from the environment or a
/// default). `m` must define `id`.
fn typed(m: &ArgMatches, id: &str) -> bool {
    m.ids().any(|i| i.as_str() == id)
        && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
}

impl Auth {
    /// The options given after the command (`sub`) win over those given before it.
    pub fn overlay(&mut self, sub: &ArgMatches) {
        if !sub.ids().any(|i| i.as_str() == "os_auth_url") {
            return;
        }
        let Ok(s) = Auth::from_arg_matches(sub) else {
            return;
        };
        if typed(sub, "os_auth_url") {
            self.auth_url = s.auth_url;
        }
        if typed(sub, "novanet_server") {
            self.servers = s.servers;
        }
        if typed(sub, "os_username") {
            self.username = s.username;
        }
        if typed(sub, "os_password") {
            self.password = s.password;
        }
        if typed(sub, "os_project_name") {
            self.project = s.project;
        }
    }
}

impl Output {
    pub fn overlay(&mut self, sub: &ArgMatches) {
        if typed(sub, "output_json") {
            self.json = true;
        }
    }
}

/// A failed command: what went wrong, and on the next lines what to check.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Res<T> = Result<T, ClientError>;

pub fn err(m: impl Into<String>) -> ClientError {
    ClientError(m.into())
}

/// novaclient's exception class for an HTTP status (what it prints in `ERROR (...)`).
fn kind_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        413 => "OverLimit",
        429 => "RateLimit",
        501 => "HTTPNotImplemented",
        _ => "ClientException",
    }
}

/// A fault body's key and message: nova's `{"itemNotFound": {"message": ...}}`, Keystone's
/// `{"error": {"message": ...}}`, or nothing (an empty or non-JSON body).
fn fault(text: &str) -> (Option<String>, String) {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(m) = body.get("message").and_then(Value::as_str) {
        return (None, m.to_string());
    }
    body.as_object()
        .and_then(|o| o.iter().next())
        .and_then(|(k, v)| Some((Some(k.clone()), v.get("message")?.as_str()?.to_string())))
        .unwrap_or((None, String::new()))
}

/// What a failed HTTP call says: `ERROR (Kind): message (HTTP code)` as novaclient prints it.
struct Failure {
    code: u16,
    key: Option<String>,
    message: String,
    /// The server named nothing: for a 404, no such route.
    bare: bool,
}

impl Failure {
    fn line(&self) -> String {
        let kind = if self.key.as_deref() == Some("overLimit") {
            "OverLimit"
        } else {
            kind_of(self.code)
        };
        format!("ERROR ({kind}): {} (HTTP {})", self.message, self.code)
    }
}

fn read_failure(method: &str, url: &str, code: u16, resp: ureq::Response) -> Failure {
    let status = resp.status_text().to_string();
    let text = resp.into_string().unwrap_or_default();
    let (key, mut message) = fault(&text);
    // No fault body, or nova's (and our server's) answer to a path it has no route for.
    let bare = message.is_empty() || message == "The resource could not be found.";
    if message.is_empty() {
        message = format!("{method} {url} answered {code} {status}");
    }
    Failure {
        code,
        key,
        message,
        bare,
    }
}

pub struct Session {
    http: ureq::Agent,
    /// Where calls go now; another server's after a move (NOVANET_SERVER).
    at: RefCell<Endpoints>,
    /// The servers to move between, and the login to repeat on the next one.
    failover: Option<(Servers, Auth)>,
    /// Who we are, for errors that depend on it.
    pub user: String,
    pub project_name: String,
    pub project_id: String,
    pub roles: Vec<String>,
}

/// What to check when the identity service cannot be reached or is not there.
fn auth_url_hint(a: &Auth) -> String {
    format!(
        "Check OS_AUTH_URL (or --os-auth-url), now {}: it should be the novanet server's \
         address and port followed by /identity/v3, e.g. http://192.168.56.200:8774/identity/v3, \
         and `novanet server` should be running there.",
        a.auth_url
    )
}

/// The token and the service URLs of one login.
struct Endpoints {
    token: String,
    compute: String,
    image: String,
}

/// A failed login: the identity service did not answer (another server may), or it did.
enum LoginError {
    Unreachable(ClientError),
    Failed(ClientError),
}

impl From<ClientError> for LoginError {
    fn from(e: ClientError) -> LoginError {
        LoginError::Failed(e)
    }
}

impl From<LoginError> for ClientError {
    fn from(e: LoginError) -> ClientError {
        match e {
            LoginError::Unreachable(e) | LoginError::Failed(e) => e,
        }
    }
}

/// The identity service to log in at on `server`: OS_AUTH_URL when it names an outside
/// one, else the server's own (with OS_AUTH_URL's path when it names one of the servers).
fn identity_on(a: &Auth, servers: &Servers, server: &str) -> String {
    let follows = servers.identity_url(&a.auth_url, server);
    if follows == a.auth_url.trim_end_matches('/') && a.auth_url == DEFAULT_AUTH_URL {
        format!("{server}/identity/v3")
    } else {
        follows
    }
}

/// Whether a call that failed so may be sent to another server: any call that could not
/// connect, and a GET whatever broke (a write that broke mid-way may have been done).
fn may_move_on(method: &str, t: &ureq::Transport) -> bool {
    t.kind() == ureq::ErrorKind::ConnectionFailed || method == "GET"
}

impl Session {
    /// Logs in at OS_AUTH_URL, or with NOVANET_SERVER at the first of its servers that
    /// answers.
    pub fn login(a: &Auth) -> Res<Session> {
        let Some(list) = a.servers.as_deref() else {
            return Ok(Session::login_once(a)?);
        };
        let servers =
            Servers::parse(list).map_err(|e| err(format!("ERROR (CommandError): {e}")))?;
        let mut s = Session::login_from(a, &servers)?;
        s.failover = Some((servers, a.clone()));
        Ok(s)
    }

    /// Logs in at the current server, or the next ones round the list while they do not
    /// answer.
    fn login_from(a: &Auth, servers: &Servers) -> Res<Session> {
        let mut last = None;
        for _ in 0..servers.len() {
            let (i, server) = servers.current();
            let mut at = a.clone();
            at.auth_url = identity_on(a, servers, server);
            at.servers = None;
            match Session::login_once(&at) {
                Ok(s) => return Ok(s),
                Err(LoginError::Unreachable(e)) => {
                    servers.failed(i);
                    last = Some(e);
                }
                Err(LoginError::Failed(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| err("ERROR (ConnectionRefused): no server answers")))
    }

    /// The server in use stopped answering: logs in at the next one that answers; false
    /// without NOVANET_SERVER or when none does.
    fn move_on(&self) -> bool {
        let Some((servers, a)) = &self.failover else {
            return false;
        };
        let (i, _) = servers.current();
        servers.failed(i);
        match Session::login_from(a, servers) {
            Ok(s) => {
                *self.at.borrow_mut() = s.at.into_inner();
                true
            }
            Err(_) => false,
        }
    }

    fn login_once(a: &Auth) -> Result<Session, LoginError> {
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": a.username, "password": a.password, "domain": {"id": "default"}}}},
            "scope": {"project": {"name": a.project, "domain": {"id": "default"}}}}});
        let url = format!("{}/auth/tokens", a.auth_url.trim_end_matches('/'));
        let resp = match http.post(&url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, resp)) => {
                let f = read_failure("POST", &url, code, resp);
                let hint = match code {
                    401 => format!(
                        "The identity service at {} refused user '{}' (OS_USERNAME) with the \
                         password given (OS_PASSWORD{}) in project '{}' (OS_PROJECT_NAME): check \
                         all three, and that the user has a role in that project.",
                        a.auth_url,
                        a.username,
                        if a.password.is_empty() {
                            ", which is empty"
                        } else {
                            ""
                        },
                        a.project
                    ),
                    404 | 405 => format!(
                        "{url} is not an identity service's token URL. {}",
                        auth_url_hint(a)
                    ),
                    _ => format!("POST {url} failed. {}", auth_url_hint(a)),
                };
                return Err(err(format!("{}\n{hint}", f.line())).into());
            }
            Err(ureq::Error::Transport(t)) => {
                let bad_url = matches!(
                    t.kind(),
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme
                );
                let kind = if bad_url {
                    "CommandError"
                } else {
                    "ConnectionRefused"
                };
                let e = err(format!(
                    "ERROR ({kind}): cannot reach the identity service at {url}: {}\n{}",
                    transport_reason(&t),
                    auth_url_hint(a)
                ));
                return Err(if bad_url {
                    LoginError::Failed(e)
                } else {
                    LoginError::Unreachable(e)
                });
            }
        };
        let not_identity = |why: &str| {
            err(format!(
                "ERROR (CommandError): {url} did not answer as an identity service ({why}).\n{}",
                auth_url_hint(a)
            ))
        };
        let token = resp
            .header("x-subject-token")
            .ok_or_else(|| not_identity("no X-Subject-Token header"))?
            .to_string();
        let v: Value = resp
            .into_json()
            .map_err(|e| not_identity(&format!("its answer is not JSON: {e}")))?;
        let url_of = |kind: &str| -> Res<String> {
            v["token"]["catalog"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["type"] == kind)
                .and_then(|s| {
                    s["endpoints"]
                        .as_array()?
                        .iter()
                        .find(|e| e["interface"] == "public")
                })
                .and_then(|e| e["url"].as_str())
                .map(|u| u.trim_end_matches('/').to_string())
                .ok_or_else(|| {
                    err(format!(
                        "ERROR (EndpointNotFound): publicURL endpoint for {kind} service not found\n\
                         The identity service at {} lists no public {kind} endpoint in its catalog.",
                        a.auth_url
                    ))
                })
        };
        let text = |p: &Value| p.as_str().unwrap_or("").to_string();
        Ok(Session {
            at: RefCell::new(Endpoints {
                compute: url_of("compute")?,
                image: url_of("image")?,
                token,
            }),
            failover: None,
            user: text(&v["token"]["user"]["name"]),
            project_name: text(&v["token"]["project"]["name"]),
            project_id: text(&v["token"]["project"]["id"]),
            roles: v["token"]["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| text(&r["name"]))
                .collect(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        let at = self.at.borrow();
        if path.starts_with("/v2/images") {
            format!("{}{path}", at.image)
        } else if path.starts_with("/novanet/") || path == "/metrics" || path == "/healthz" {
            // The server's own paths sit at its root, beside the compute API.
            format!("{}{path}", at.compute.trim_end_matches("/v2.1"))
        } else {
            format!("{}{path}", at.compute)
        }
    }

    fn token(&self) -> String {
        self.at.borrow().token.clone()
    }

    /// Sends one request; with NOVANET_SERVER, again on the next server while the one in
    /// use does not answer (see `may_move_on`).
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Res<(String, ureq::Response)> {
        let tries = self.failover.as_ref().map_or(1, |(s, _)| s.len());
        let mut tried = 0;
        loop {
            tried += 1;
            let url = self.url(path);
            let mut req = self
                .http
                .request(method, &url)
                .set("X-Auth-Token", &self.token());
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let res = match body {
                Some(b) => req.send_json(b.clone()),
                None => req.call(),
            };
            match res {
                Ok(r) => return Ok((url, r)),
                Err(ureq::Error::Transport(t))
                    if tried < tries && may_move_on(method, &t) && self.move_on() =>
                {
                    continue
                }
                Err(e) => return Err(self.explain(method, &url, e)),
            }
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Res<Value> {
        let (url, resp) = self.send(
            method,
            path,
            body.as_ref(),
            &[("X-OpenStack-Nova-API-Version", "2.35")],
        )?;
        let mut text = String::new();
        resp.into_reader()
            .read_to_string(&mut text)
            .map_err(|e| err(format!("ERROR: reading the answer to {method} {url}: {e}")))?;
        Ok(if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    /// A GET whose answer is bytes (a config drive), at most `limit` of them.
    pub fn get_bytes(&self, path: &str, limit: u64) -> Res<Vec<u8>> {
        let (url, resp) = self.send("GET", path, None, &[])?;
        let mut out = Vec::new();
        resp.into_reader()
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("ERROR: reading the answer to GET {url}: {e}")))?;
        Ok(out)
    }

    /// A PUT of a file's bytes as `application/octet-stream`, streamed (an image's data).
    pub fn put_file(&self, path: &str, file: std::fs::File) -> Res<()> {
        let url = self.url(path);
        self.http
            .request("PUT", &url)
            .set("X-Auth-Token", &self.token())
            .set("Content-Type", "application/octet-stream")
            .send(file)
            .map_err(|e| self.explain("PUT", &url, e))?;
        Ok(())
    }

    pub fn get(&self, path: &str) -> Res<Value> {
        self.call("GET", path, None)
    }

    fn who(&self) -> String {
        let roles = if self.roles.is_empty() {
            "no role".to_string()
        } else {
            format!("role {}", self.roles.join(", "))
        };
        format!(
            "user '{}' in project '{}' ({roles})",
            self.user, self.project_name
        )
    }

    /// A failed compute call, with what to check.
    fn explain(&self, method: &str, url: &str, e: ureq::Error) -> ClientError {
        let f = match e {
            ureq::Error::Status(code, resp) => read_failure(method, url, code, resp),
            ureq::Error::Transport(t) => {
                return err(format!(
                "ERROR (ConnectionRefused): cannot reach {url}: {}\nThat address comes from the \
                     identity service's catalog: check that the server runs there, and its \
                     public_endpoint setting.",
                transport_reason(&t)
            ))
            }
        };
        let hint = match (f.code, f.key.as_deref()) {
            (_, Some("overLimit")) => format!(
                "Project '{}' is over its quota: `novanet quota-show` shows it, and an admin \
                 raises it with `novanet quota-update {} --floating-ips N` (or another quota).",
                self.project_name, self.project_id
            ),
            (401, _) => "The token was refused: check OS_USERNAME, OS_PASSWORD and \
                         OS_PROJECT_NAME, and try again."
                .to_string(),
            (403, _) if f.message.contains("Policy") || f.message.contains("admin") => format!(
                "This needs the admin role (the policy named above); you are {}. Run it with an \
                 admin's credentials (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME).",
                self.who()
            ),
            (403, _) => format!("You are {}.", self.who()),
            (404 | 405, _) if f.bare => format!(
                "The server does not offer {method} {url}: it may be older than this client."
            ),
            _ => String::new(),
        };
        if hint.is_empty() {
            err(f.line())
        } else {
            err(format!("{}\n{hint}", f.line()))
        }
    }

    /// The id of a project given by id or name. Ours (by name) comes from the token; others
    /// are looked up in the identity service when it offers `GET /v3/projects` (Keystone
    /// does; novanet's own identity service does not), or must be given by id.
    pub fn project_id_of(&self, auth_url: &str, key: &str) -> Res<String> {
        if key == self.project_name || key == self.project_id {
            return Ok(self.project_id.clone());
        }
        if looks_like_id(key) {
            return Ok(key.to_string());
        }
        let url = format!("{}/projects", auth_url.trim_end_matches('/'));
        let found = self
            .http
            .get(&url)
            .query("name", key)
            .set("X-Auth-Token", &self.token())
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .and_then(|v| {
                v["projects"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == key)
                    .and_then(|p| p["id"].as_str().map(str::to_string))
            });
        found.ok_or_else(|| {
            err(format!(
                "ERROR (CommandError): '{key}' is not a project ID, and the identity service at \
                 {auth_url} cannot look project names up.\nGive the project's ID: `novanet manage \
                 project list` shows the IDs and names."
            ))
        })
    }
}

/// Project IDs are UUIDs, with or without dashes (Keystone's and ours are 32 hex digits).
pub fn looks_like_id(s: &str) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

fn transport_reason(t: &ureq::Transport) -> String {
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s.push_str(": ");
        s.push_str(m);
    }
    if let Some(src) = std::error::Error::source(t) {
        s.push_str(&format!(" ({src})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_in_either_shape() {
        assert_eq!(
            fault(r#"{"itemNotFound": {"code": 404, "message": "gone"}}"#),
            (Some("itemNotFound".into()), "gone".into())
        );
        assert_eq!(
            fault(r#"{"error": {"code": 401, "message": "no"}}"#),
            (Some("error".into()), "no".into())
        );
        assert_eq!(fault(""), (None, String::new()));
        assert_eq!(fault("<html>"), (None, String::new()));
    }

    #[test]
    fn with_several_servers_the_identity_service_is_the_servers_own() {
        let servers = Servers::parse("http://a:1,http://b:2").unwrap();
        let mut a = Auth {
            auth_url: DEFAULT_AUTH_URL.into(),
            servers: Some("http://a:1,http://b:2".into()),
            username: "admin".into(),
            password: String::new(),
            project: "admin".into(),
        };
        assert_eq!(
            identity_on(&a, &servers, "http://b:2"),
            "http://b:2/identity/v3"
        );
        a.auth_url = "http://a:1/identity/v3".into();
        assert_eq!(
            identity_on(&a, &servers, "http://b:2"),
            "http://b:2/identity/v3"
        );
        a.auth_url = "http://keystone:5000/v3".into();
        assert_eq!(
            identity_on(&a, &servers, "http://b:2"),
            "http://keystone:5000/v3"
        );
    }

    #[test]
    fn ids_and_names() {
        assert!(looks_like_id("4b1c0e5b1c2d4e8f9a0b1c2d3e4f5a6b"));
        assert!(looks_like_id("2f3b9e17-4f20-4b05-842a-8d735fbb89cb"));
        assert!(!looks_like_id("demo"));
        assert!(!looks_like_id("4b1c"));
    }
}
