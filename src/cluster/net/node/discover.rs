//! The loop's discovery half: the periodic tick that dials static seeds,
//! remembered peers or what DNS answers, and the remembered peers file.

use std::net::SocketAddr;

use tracing::warn;

use super::{Inner, Node};
use crate::cluster::net::discovery;
use crate::cluster::net::settings::Discovery;
use crate::limits;

impl Node {
    pub(super) fn on_discovery_tick(&mut self) {
        let interval = self.settings.timing.discovery_interval;
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(interval).await;
            let _ = inbox.send(Inner::DiscoveryTick).await;
        });
        self.refresh_link_gauges();
        if self.left {
            return;
        }
        match &self.settings.discovery {
            Discovery::Singleton => {}
            Discovery::Manual => {
                for addr in self.remembered.clone() {
                    self.dial_unless_linked(addr);
                }
            }
            Discovery::Static(seeds) => {
                for addr in seeds.clone() {
                    self.dial_unless_linked(addr);
                }
            }
            Discovery::Dns {
                name,
                record_type,
                port,
                nameserver,
            } => {
                let (name, record_type, port, nameserver) =
                    (name.clone(), *record_type, *port, *nameserver);
                let inbox = self.inbox.clone();
                tokio::spawn(async move {
                    let result = match discovery::resolver(nameserver) {
                        Ok(r) => discovery::resolve(&r, &name, record_type, port).await,
                        Err(e) => Err(e),
                    };
                    let _ = inbox.send(Inner::Resolved(result)).await;
                });
            }
        }
    }

    pub(super) fn remember(&mut self, addr: SocketAddr) {
        if self.self_addrs.contains(&addr) || self.remembered.len() >= limits::CLUSTER_PEERS_MAX {
            return;
        }
        if self.remembered.insert(addr) {
            self.save_remembered();
        }
    }

    pub(super) fn save_remembered(&self) {
        if !matches!(self.settings.discovery, Discovery::Manual) {
            return;
        }
        let path = discovery::peers_file(&self.settings.data_dir);
        if let Err(e) = discovery::save_peers(&path, &self.remembered) {
            warn!("cluster: cannot write {}: {e}", path.display());
        }
    }
}
