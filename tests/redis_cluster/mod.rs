//! A real Redis Cluster for tests: runs scripts/redis-cluster.py (6 Debian
//! `redis-server`s, 3 masters and 3 replicas, on free loopback ports) and
//! stops it when dropped (or when the test process ends: the script stops
//! its servers when its stdin closes).
//!
//! Without `redis-server` a test is skipped with a message, except under
//! `CI=true`, where that is a failure (CI installs it: scripts/install-test-deps.sh).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

pub struct RedisCluster {
    child: Child,
    stdin: Option<ChildStdin>,
    /// (port, pid) of every server.
    pub nodes: Vec<(u16, u32)>,
    pub seeds: Vec<String>,
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether Redis is here; `false` (skip, said on stderr) only outside CI.
pub fn available(test: &str) -> bool {
    if installed("redis-server") && installed("redis-cli") {
        return true;
    }
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    assert!(
        !ci,
        "{test}: redis-server/redis-cli are not installed (CI=true: this is a failure; \
         scripts/install-test-deps.sh installs them)"
    );
    eprintln!(
        "SKIPPED {test}: redis-server is not installed \
         (apt-get install redis-server redis-tools)"
    );
    false
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/redis-cluster.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 scripts/redis-cluster.py");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (mut nodes, mut seeds) = (Vec::new(), Vec::new());
        for line in stdout.lines() {
            let line = line.expect("script output");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["NODE", port, pid] => nodes.push((port.parse().unwrap(), pid.parse().unwrap())),
                ["SEEDS", list] => seeds = list.split(',').map(str::to_string).collect(),
                ["READY"] => break,
                _ => {}
            }
        }
        assert!(
            nodes.len() == 6 && !seeds.is_empty(),
            "scripts/redis-cluster.py did not start the cluster"
        );
        RedisCluster {
            child,
            stdin,
            nodes,
            seeds,
        }
    }

    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command on the master holding `key`'s slot (`-c` follows MOVED).
    pub fn cli_key(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-c")
            .arg("-p")
            .arg(self.nodes[0].0.to_string())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn alive(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(port, _)| self.cli(*port, &["PING"]).trim() == "PONG")
            .map(|(port, _)| *port)
            .collect()
    }

    pub fn masters(&self) -> Vec<(u16, u32)> {
        self.nodes
            .iter()
            .copied()
            .filter(|(port, _)| self.cli(*port, &["ROLE"]).starts_with("master"))
            .collect()
    }

    /// On every live node: `KEYS` was never run and no command was refused
    /// CROSSSLOT.
    pub fn assert_no_keys_and_no_crossslot(&self) {
        for port in self.alive() {
            let stats = self.cli(port, &["INFO", "commandstats"]);
            assert!(
                !stats.contains("cmdstat_keys:"),
                "KEYS ran on {port}:\n{stats}"
            );
            let errors = self.cli(port, &["INFO", "errorstats"]);
            assert!(
                !errors.contains("CROSSSLOT"),
                "CROSSSLOT on {port}:\n{errors}"
            );
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
