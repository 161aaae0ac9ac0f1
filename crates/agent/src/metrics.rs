//! The agent's own figures for Prometheus (`GET /metrics`, the text exposition format) and a
//! health answer (`GET /healthz`), served by a plain thread on the address of
//! `--metrics-listen` (off unless given). Nothing here reads the kernel: the loop records,
//! the endpoint renders.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sys::{io_err, Result};

/// Upper bounds of the apply-duration histogram's buckets, in seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Figures {
    applies: u64,
    /// Per bucket, not cumulative (summed on render).
    apply_buckets: [u64; BUCKETS.len()],
    apply_seconds: f64,
    /// Failed apply steps by kind (sysctl, firewall, segments, links, dhcp, release, vms).
    failures: BTreeMap<&'static str, u64>,
    dnsmasq_starts: u64,
    plan_generation: u64,
    applied_generation: u64,
    /// From receiving a plan generation to having applied it, for the last one applied.
    plan_lag: f64,
    last_apply_ok: bool,
    last_apply: Option<Instant>,
    /// The last diagnosis: check name to how many of its subjects are wrong.
    wrong: BTreeMap<String, u64>,
    drift_found: u64,
    diagnoses: u64,
}

/// Shared between the agent's loop and the endpoint's thread.
#[derive(Clone, Default)]
pub struct AgentMetrics(Arc<Mutex<Figures>>);

impl AgentMetrics {
    fn with<T>(&self, f: impl FnOnce(&mut Figures) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn applied(
        &self,
        generation: u64,
        seconds: f64,
        failures: &[&'static str],
        lag: Option<f64>,
    ) {
        self.with(|m| {
            m.applies += 1;
            if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
                m.apply_buckets[i] += 1;
            }
            m.apply_seconds += seconds;
            for k in failures {
                *m.failures.entry(k).or_default() += 1;
            }
            m.last_apply_ok = failures.is_empty();
            m.last_apply = Some(Instant::now());
            if failures.is_empty() {
                m.applied_generation = generation;
                if let Some(l) = lag {
                    m.plan_lag = l;
                }
            }
        })
    }

    pub fn plan_received(&self, generation: u64) {
        self.with(|m| m.plan_generation = generation)
    }

    pub fn dnsmasq_started(&self, n: usize) {
        self.with(|m| m.dnsmasq_starts += n as u64)
    }

    pub fn diagnosed(&self, d: &crate::diagnose::Diagnosis) {
        self.with(|m| {
            m.diagnoses += 1;
            m.wrong.clear();
            for c in &d.checks {
                *m.wrong.entry(c.check.clone()).or_default() += u64::from(!c.ok);
            }
            if d.checks.iter().any(|c| c.check == "drift" && !c.ok) {
                m.drift_found += 1;
            }
        })
    }

    /// Healthy: the last apply succeeded and was not longer ago than `within`.
    pub fn healthy(&self, within: Duration) -> bool {
        self.with(|m| m.last_apply_ok && m.last_apply.is_some_and(|t| t.elapsed() <= within))
    }

    pub fn render(&self) -> String {
        self.with(|m| {
            let mut o = String::new();
            let head = |o: &mut String, name: &str, kind: &str, help: &str| {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            };
            head(
                &mut o,
                "novanet_agent_applies_total",
                "counter",
                "Applies of the plan to the kernel.",
            );
            let _ = writeln!(o, "novanet_agent_applies_total {}", m.applies);
            head(
                &mut o,
                "novanet_agent_apply_duration_seconds",
                "histogram",
                "Time to apply the plan.",
            );
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(m.apply_buckets) {
                cumulative += c;
                let _ = writeln!(
                    o,
                    "novanet_agent_apply_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                o,
                "novanet_agent_apply_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                m.applies
            );
            let _ = writeln!(
                o,
                "novanet_agent_apply_duration_seconds_sum {}",
                m.apply_seconds
            );
            let _ = writeln!(
                o,
                "novanet_agent_apply_duration_seconds_count {}",
                m.applies
            );
            head(
                &mut o,
                "novanet_agent_apply_failures_total",
                "counter",
                "Failed apply steps, by kind.",
            );
            for k in [
                "sysctl", "firewall", "segments", "links", "dhcp", "release", "vms",
            ] {
                let _ = writeln!(
                    o,
                    "novanet_agent_apply_failures_total{{kind=\"{k}\"}} {}",
                    m.failures.get(k).copied().unwrap_or(0)
                );
            }
            head(
                &mut o,
                "novanet_agent_dnsmasq_starts_total",
                "counter",
                "dnsmasq servers started or restarted (one that died is started again).",
            );
            let _ = writeln!(o, "novanet_agent_dnsmasq_starts_total {}", m.dnsmasq_starts);
            head(
                &mut o,
                "novanet_agent_plan_generation",
                "gauge",
                "Generation of the plan held.",
            );
            let _ = writeln!(o, "novanet_agent_plan_generation {}", m.plan_generation);
            head(
                &mut o,
                "novanet_agent_applied_generation",
                "gauge",
                "Generation of the plan last applied without errors.",
            );
            let _ = writeln!(
                o,
                "novanet_agent_applied_generation {}",
                m.applied_generation
            );
            head(
                &mut o,
                "novanet_agent_plan_lag_seconds",
                "gauge",
                "From receiving the last applied plan generation to having applied it.",
            );
            let _ = writeln!(o, "novanet_agent_plan_lag_seconds {}", m.plan_lag);
            head(
                &mut o,
                "novanet_agent_diagnoses_total",
                "counter",
                "Runs of the diagnose checks.",
            );
            let _ = writeln!(o, "novanet_agent_diagnoses_total {}", m.diagnoses);
            head(
                &mut o,
                "novanet_agent_drift_found_total",
                "counter",
                "Diagnoses that found the kernel's rules away from the plan.",
            );
            let _ = writeln!(o, "novanet_agent_drift_found_total {}", m.drift_found);
            head(
                &mut o,
                "novanet_agent_check_wrong",
                "gauge",
                "The last diagnosis: subjects found wrong, by check.",
            );
            for (c, n) in &m.wrong {
                let _ = writeln!(o, "novanet_agent_check_wrong{{check=\"{c}\"}} {n}");
            }
            o
        })
    }

    /// Serves `/metrics` and `/healthz` on `addr` from a thread; `healthy_within` is how
    /// recent a good apply must be.
    pub fn serve(&self, addr: SocketAddr, healthy_within: Duration) -> Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io_err(format!("metrics listener on {addr}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| io_err("metrics listener", e))?;
        let me = self.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = me.answer(conn, healthy_within) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        });
        Ok(bound)
    }

    fn answer(&self, conn: TcpStream, healthy_within: Duration) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        // The headers are not needed; read them so the client sees a clean close.
        let mut h = String::new();
        while reader.read_line(&mut h)? > 2 {
            h.clear();
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let (status, ctype, body) = match path {
            "/metrics" => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                self.render(),
            ),
            "/healthz" if self.healthy(healthy_within) => ("200 OK", "text/plain", "ok\n".into()),
            "/healthz" => (
                "503 Service Unavailable",
                "text/plain",
                "the last apply failed or is too old\n".into(),
            ),
            _ => (
                "404 Not Found",
                "text/plain",
                "/metrics or /healthz\n".into(),
            ),
        };
        let mut out = conn;
        write!(
            out,
            "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn figures_render_and_are_served() {
        let m = AgentMetrics::default();
        m.plan_received(5);
        m.applied(5, 0.03, &[], Some(0.2));
        m.applied(5, 2.0, &["dhcp"], None);
        m.dnsmasq_started(1);
        let text = m.render();
        for want in [
            "novanet_agent_applies_total 2\n",
            "novanet_agent_apply_duration_seconds_bucket{le=\"0.05\"} 1\n",
            "novanet_agent_apply_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "novanet_agent_apply_failures_total{kind=\"dhcp\"} 1\n",
            "novanet_agent_dnsmasq_starts_total 1\n",
            "novanet_agent_applied_generation 5\n",
            "novanet_agent_plan_lag_seconds 0.2\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        let addr = m
            .serve("127.0.0.1:0".parse().unwrap(), Duration::from_secs(60))
            .unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        assert!(get("/metrics").contains("novanet_agent_applies_total 2"));
        // The last apply failed.
        assert!(get("/healthz").starts_with("HTTP/1.0 503"));
        m.applied(6, 0.01, &[], None);
        assert!(get("/healthz").starts_with("HTTP/1.0 200"));
    }
}
