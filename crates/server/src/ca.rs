//! The cloud's certificate authority for cloudpipe: one CA, a server certificate and key
//! per project (its VPN instance's), a client certificate and key per user of a project on
//! request, and a revocation list. Like nova's `crypto.py` it drives the `openssl` tool
//! (argument vectors, never a shell) instead of doing any cryptography itself, and keeps
//! everything in one directory (the store's data directory's `ca/`), mode 0700 with
//! files 0600.
//!
//! Layout: `ca.key`, `ca.crt`, `crl.pem`, openssl's database (`openssl.cnf`, `index.txt`,
//! `serial`, `crlnumber`, `newcerts/`), `projects/<project>/server.{key,crt}` and
//! `projects/<project>/users/<user>.{key,crt}`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A CRL is regenerated when older than this (it is valid for `default_crl_days`, 30):
/// an expired CRL makes OpenVPN refuse every client.
const CRL_REFRESH: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub enum CaError {
    /// A project or user name that cannot be a certificate's name.
    BadName { field: &'static str, value: String },
    Io {
        what: String,
        source: std::io::Error,
    },
    /// `openssl` failed; its own words.
    Openssl { step: &'static str, stderr: String },
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::BadName { field, value } => write!(
                f,
                "{field} {:?} cannot name a certificate: use 1 to 64 letters, digits, '.', '_' or '-'",
                value
            ),
            CaError::Io { what, source } => write!(f, "{what}: {source}"),
            CaError::Openssl { step, stderr } => {
                write!(f, "openssl could not {step}: {}", stderr.trim())
            }
        }
    }
}

impl std::error::Error for CaError {}

pub type Result<T> = std::result::Result<T, CaError>;

/// A name that goes into a certificate's subject and a file name: no '/', '=', '+', '\',
/// spaces or dots alone, so neither openssl's `-subj` nor the paths can be steered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertName(String);

impl CertName {
    pub fn new(field: &'static str, s: &str) -> Result<CertName> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(CertName(s.to_string()))
        } else {
            Err(CaError::BadName {
                field,
                value: s.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What one end of a VPN (a project's server, a user's client) needs: the CA's certificate,
/// its own certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

pub struct Ca {
    dir: PathBuf,
    /// openssl's database takes one writer at a time.
    lock: Mutex<()>,
    /// Made by `temporary`: removed when dropped.
    temporary: bool,
}

impl Drop for Ca {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

const OPENSSL_CNF: &str = "# Written by novanet: its cloudpipe CA (openssl ca).
[ ca ]
default_ca = novanet

[ novanet ]
database = index.txt
serial = serial
crlnumber = crlnumber
new_certs_dir = newcerts
certificate = ca.crt
private_key = ca.key
default_md = sha256
default_days = 3650
default_crl_days = 30
policy = names
unique_subject = no
copy_extensions = none

[ names ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied

[ req ]
distinguished_name = subject

[ subject ]

[ v3_ca ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[ vpn_server ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ vpn_client ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Elliptic-curve keys: OpenVPN takes them, and openssl makes one in a millisecond where
/// RSA takes a noticeable fraction of a second.
const NEW_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl Ca {
    /// A CA kept in `dir`; nothing is made until it is first used.
    pub fn new(dir: PathBuf) -> Ca {
        Ca {
            // openssl runs in the directory and is given paths inside it.
            dir: std::path::absolute(&dir).unwrap_or(dir),
            lock: Mutex::new(()),
            temporary: false,
        }
    }

    /// For in-process servers (tests, bench): a fresh directory under the system's
    /// temporary directory, removed with the `Ca`.
    pub fn temporary() -> Ca {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut ca =
            Ca::new(std::env::temp_dir().join(format!("novanet-ca-{}-{n}", std::process::id())));
        ca.temporary = true;
        ca
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The CA's certificate (PEM), made on first use.
    pub fn ca_cert(&self) -> Result<String> {
        let _g = self.guard();
        self.ensure()?;
        read(&self.dir.join("ca.crt"))
    }

    /// A project's VPN server certificate and key, issued on first use.
    pub fn server_files(&self, project: &str) -> Result<Credentials> {
        let project = CertName::new("project_id", project)?;
        let _g = self.guard();
        self.ensure()?;
        let dir = self.project_dir(&project);
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        let subject = format!("/O=novanet/OU={}/CN={}-vpn", project.0, project.0);
        self.credentials(&[&dir], &subject, "vpn_server", &cert, &key)
    }

    /// A user's client certificate and key for a project's VPN: the ones issued before,
    /// or new ones (after a revocation, always new ones).
    pub fn client_files(&self, project: &str, user: &str) -> Result<Credentials> {
        let project = CertName::new("project_id", project)?;
        let user = CertName::new("user", user)?;
        let _g = self.guard();
        self.ensure()?;
        let dir = self.project_dir(&project).join("users");
        let (cert, key) = client_paths(&dir, &user);
        let subject = format!("/O=novanet/OU={}/CN={}", project.0, user.0);
        self.credentials(
            &[&self.project_dir(&project), &dir],
            &subject,
            "vpn_client",
            &cert,
            &key,
        )
    }

    /// The pair at `cert` and `key` with the CA's certificate, the pair issued first (in
    /// `dirs`, made in order) unless both files are there. Under the guard.
    fn credentials(
        &self,
        dirs: &[&Path],
        subject: &str,
        extension: &str,
        cert: &Path,
        key: &Path,
    ) -> Result<Credentials> {
        if !cert.is_file() || !key.is_file() {
            for d in dirs {
                make_dir(d)?;
            }
            self.issue(subject, extension, cert, key)?;
        }
        Ok(Credentials {
            ca: read(&self.dir.join("ca.crt"))?,
            cert: read(cert)?,
            key: read(key)?,
        })
    }

    /// Revokes a user's client certificate for a project and publishes the new CRL. False
    /// when the user has none.
    pub fn revoke_client(&self, project: &str, user: &str) -> Result<bool> {
        let project = CertName::new("project_id", project)?;
        let user = CertName::new("user", user)?;
        let _g = self.guard();
        self.ensure()?;
        let dir = self.project_dir(&project).join("users");
        let (cert, key) = client_paths(&dir, &user);
        if !cert.is_file() {
            return Ok(false);
        }
        let cert_arg = path_arg(&cert);
        self.openssl(
            "revoke the certificate",
            &[
                "ca",
                "-batch",
                "-config",
                "openssl.cnf",
                "-revoke",
                &cert_arg,
            ],
        )?;
        // Kept for the record; the next request issues a new pair.
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for p in [&cert, &key] {
            let revoked = p.with_extension(format!(
                "{}.revoked-{stamp}",
                p.extension().and_then(|e| e.to_str()).unwrap_or("")
            ));
            fs::rename(p, &revoked).map_err(|e| io(format!("moving {}", p.display()), e))?;
        }
        self.gen_crl()?;
        Ok(true)
    }

    /// The current certificate revocation list (PEM), refreshed when old.
    pub fn crl(&self) -> Result<String> {
        let _g = self.guard();
        self.ensure()?;
        let path = self.dir.join("crl.pem");
        let old = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age > CRL_REFRESH);
        if old {
            self.gen_crl()?;
        }
        read(&path)
    }

    fn project_dir(&self, project: &CertName) -> PathBuf {
        self.dir.join("projects").join(&project.0)
    }

    /// Makes the directory, openssl's database and the CA's key, certificate and first CRL
    /// when they are missing. Called under the lock.
    fn ensure(&self) -> Result<()> {
        if self.dir.join("ca.crt").is_file() && self.dir.join("crl.pem").is_file() {
            return Ok(());
        }
        make_dir(&self.dir)?;
        make_dir(&self.dir.join("newcerts"))?;
        make_dir(&self.dir.join("projects"))?;
        write_new(&self.dir.join("openssl.cnf"), OPENSSL_CNF)?;
        write_new(&self.dir.join("index.txt"), "")?;
        write_new(&self.dir.join("serial"), "1000\n")?;
        write_new(&self.dir.join("crlnumber"), "1000\n")?;
        if !self.dir.join("ca.crt").is_file() {
            let key = self.dir.join("ca.key");
            private_file(&key)?;
            let mut args = vec!["req", "-x509", "-new"];
            args.extend(NEW_KEY);
            args.extend([
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-subj",
                "/O=novanet/CN=novanet cloudpipe CA",
                "-config",
                "openssl.cnf",
                "-extensions",
                "v3_ca",
            ]);
            self.openssl("make the CA", &args)?;
            restrict(&self.dir.join("ca.crt"))?;
        }
        self.gen_crl()
    }

    /// Makes a key and a certificate signed by the CA (`extensions`: a section of
    /// `openssl.cnf`). Called under the lock.
    fn issue(&self, subject: &str, extensions: &str, cert: &Path, key: &Path) -> Result<()> {
        let csr = cert.with_extension("csr");
        private_file(key)?;
        let (key_arg, csr_arg, cert_arg) = (path_arg(key), path_arg(&csr), path_arg(cert));
        let mut args = vec!["req", "-new"];
        args.extend(NEW_KEY);
        args.extend([
            "-nodes",
            "-keyout",
            &key_arg,
            "-out",
            &csr_arg,
            "-subj",
            subject,
            "-config",
            "openssl.cnf",
        ]);
        self.openssl("make a key and request", &args)?;
        self.openssl(
            "sign the certificate",
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                "openssl.cnf",
                "-extensions",
                extensions,
                "-in",
                &csr_arg,
                "-out",
                &cert_arg,
            ],
        )?;
        let _ = fs::remove_file(&csr);
        restrict(cert)?;
        restrict(key)
    }

    fn gen_crl(&self) -> Result<()> {
        self.openssl(
            "make the revocation list",
            &[
                "ca",
                "-batch",
                "-config",
                "openssl.cnf",
                "-gencrl",
                "-out",
                "crl.pem",
            ],
        )?;
        restrict(&self.dir.join("crl.pem"))
    }

    /// Runs `openssl ARGS` in the CA's directory (the config's paths are relative to it).
    fn openssl(&self, step: &'static str, args: &[&str]) -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| io("running openssl".into(), e))?;
        if out.status.success() {
            for f in ["index.txt", "index.txt.attr", "serial", "crlnumber"] {
                let p = self.dir.join(f);
                if p.exists() {
                    restrict(&p)?;
                }
            }
            Ok(())
        } else {
            Err(CaError::Openssl {
                step,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}

fn client_paths(dir: &Path, user: &CertName) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{}.crt", user.0)),
        dir.join(format!("{}.key", user.0)),
    )
}

/// Paths inside the CA's directory are passed to openssl as they are: they are made of
/// checked names only.
fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

fn io(what: String, source: std::io::Error) -> CaError {
    CaError::Io { what, source }
}

fn read(p: &Path) -> Result<String> {
    fs::read_to_string(p).map_err(|e| io(format!("reading {}", p.display()), e))
}

fn make_dir(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| io(format!("making {}", p.display()), e))
}

/// Creates `p` (empty, mode 0600) so that openssl writes the key into a file no one else
/// could ever read.
fn private_file(p: &Path) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
        .map(drop)
        .map_err(|e| io(format!("creating {}", p.display()), e))?;
    restrict(p)
}

/// Writes `p` (0600) unless it exists.
fn write_new(p: &Path, text: &str) -> Result<()> {
    if p.exists() {
        return Ok(());
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| io(format!("creating {}", p.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io(format!("writing {}", p.display()), e))
}

fn restrict(p: &Path) -> Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(0o600))
        .map_err(|e| io(format!("restricting {}", p.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempCa(Ca);

    fn temp_ca() -> TempCa {
        TempCa(Ca::temporary())
    }

    /// `openssl ARGS` with `input` on a file, its stdout.
    fn openssl_out(args: &[&str]) -> (bool, String) {
        let out = Command::new("openssl").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn names_that_could_steer_openssl_or_paths_are_refused() {
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "x=y",
            "a+b",
            "a b",
            "a\\b",
            &"x".repeat(65),
        ] {
            let e = CertName::new("project_id", bad).unwrap_err();
            assert!(e.to_string().starts_with("project_id "), "{e}");
        }
        assert!(CertName::new("user", "demo-user_1.x").is_ok());
        let ca = temp_ca();
        assert!(matches!(
            ca.0.server_files("../etc"),
            Err(CaError::BadName {
                field: "project_id",
                ..
            })
        ));
        // Nothing was made for a refused name.
        assert!(!ca.0.dir().exists());
    }

    /// A project's server pair and a user's client pair chain to the CA, carry the usage
    /// OpenVPN checks (`remote-cert-tls`), are kept with mode 0600, and are the same pair
    /// when asked again.
    #[test]
    fn server_and_client_certificates_chain_to_the_ca() {
        let ca = temp_ca();
        let server = ca.0.server_files("p1").unwrap();
        let client = ca.0.client_files("p1", "alice").unwrap();
        assert!(server.key.contains("PRIVATE KEY") && client.key.contains("PRIVATE KEY"));
        assert_eq!(server.ca, client.ca);
        let dir = ca.0.dir();
        for (file, usage) in [
            ("projects/p1/server.crt", "TLS Web Server Authentication"),
            (
                "projects/p1/users/alice.crt",
                "TLS Web Client Authentication",
            ),
        ] {
            let (ok, out) = openssl_out(&[
                "verify",
                "-CAfile",
                &path_arg(&dir.join("ca.crt")),
                &path_arg(&dir.join(file)),
            ]);
            assert!(ok, "{out}");
            let (_, text) =
                openssl_out(&["x509", "-noout", "-text", "-in", &path_arg(&dir.join(file))]);
            assert!(text.contains(usage), "{text}");
        }
        let (_, subject) = openssl_out(&[
            "x509",
            "-noout",
            "-subject",
            "-in",
            &path_arg(&dir.join("projects/p1/users/alice.crt")),
        ]);
        assert!(subject.contains("OU = p1, CN = alice"), "{subject}");
        for f in [
            "ca.key",
            "ca.crt",
            "crl.pem",
            "index.txt",
            "projects/p1/server.key",
            "projects/p1/server.crt",
            "projects/p1/users/alice.key",
            "projects/p1/users/alice.crt",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(dir), 0o700);
        assert_eq!(ca.0.server_files("p1").unwrap(), server);
        assert_eq!(ca.0.client_files("p1", "alice").unwrap(), client);
    }

    /// A revoked client certificate is in the CRL (openssl's verification with the CRL
    /// refuses it), the user's next request gets a new certificate that verifies, and
    /// the project's server certificate is untouched.
    #[test]
    fn revocation_reaches_the_crl() {
        let ca = temp_ca();
        ca.0.server_files("p1").unwrap();
        let first = ca.0.client_files("p1", "bob").unwrap();
        assert!(!ca.0.revoke_client("p1", "carol").unwrap());
        let crl_before = ca.0.crl().unwrap();
        assert!(ca.0.revoke_client("p1", "bob").unwrap());
        let crl = ca.0.crl().unwrap();
        assert_ne!(crl, crl_before);
        let dir = ca.0.dir();
        let old = dir.join("old.crt");
        fs::write(&old, &first.cert).unwrap();
        let chain = dir.join("chain.pem");
        fs::write(&chain, format!("{}{}", first.ca, crl)).unwrap();
        let (ok, out) = openssl_out(&[
            "verify",
            "-crl_check",
            "-CAfile",
            &path_arg(&chain),
            &path_arg(&old),
        ]);
        assert!(!ok && out.contains("revoked"), "{out}");
        let second = ca.0.client_files("p1", "bob").unwrap();
        assert_ne!(second.cert, first.cert);
        let new = dir.join("new.crt");
        fs::write(&new, &second.cert).unwrap();
        let (ok, out) = openssl_out(&[
            "verify",
            "-crl_check",
            "-CAfile",
            &path_arg(&chain),
            &path_arg(&new),
        ]);
        assert!(ok, "{out}");
        let (ok, out) = openssl_out(&[
            "verify",
            "-crl_check",
            "-CAfile",
            &path_arg(&chain),
            &path_arg(&dir.join("projects/p1/server.crt")),
        ]);
        assert!(ok, "{out}");
    }
}
