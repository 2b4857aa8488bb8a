//! [`Conn`]: a Redis Cluster or a single Redis behind one type, and the
//! scripts loaded on every master at connect.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, RedisFuture, RedisResult, Value};

use super::RedisSettings;
use crate::limits::{REDIS_CLIENT_RETRIES, REDIS_CONNECT_TIMEOUT_MS, REDIS_RESPONSE_TIMEOUT_MS};

#[derive(Clone)]
pub enum Conn {
    Cluster(redis::cluster_async::ClusterConnection),
    Single(redis::aio::ConnectionManager),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Single(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// `host:port` as the client wants it; an error names the bad entry.
pub fn address(server: &str) -> Result<redis::ConnectionInfo, String> {
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{server}\" is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("\"{server}\": the port is not a number from 1 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ConnectionAddr::Tcp(host.to_string(), port)
        .into_connection_info()
        .map_err(|e| format!("\"{server}\": {e}"))
}

pub async fn connect(settings: &RedisSettings) -> RedisResult<Conn> {
    let mut nodes = Vec::with_capacity(settings.servers.len());
    for server in &settings.servers {
        let info = address(server).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "redis.servers", e))
        })?;
        let info = if settings.password.is_empty() {
            info
        } else {
            let auth = info
                .redis_settings()
                .clone()
                .set_password(&settings.password);
            info.set_redis_settings(auth)
        };
        nodes.push(info);
    }
    let connect_timeout = Duration::from_millis(REDIS_CONNECT_TIMEOUT_MS);
    let response_timeout = Duration::from_millis(REDIS_RESPONSE_TIMEOUT_MS);
    if settings.cluster {
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .retries(REDIS_CLIENT_RETRIES)
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            .build()?;
        Ok(Conn::Cluster(client.get_async_connection().await?))
    } else {
        let first = nodes.into_iter().next().ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "redis.servers is empty",
            ))
        })?;
        let client = redis::Client::open(first)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let manager = tokio::time::timeout(
            connect_timeout,
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "connecting to Redis timed out"))
        })??;
        Ok(Conn::Single(manager))
    }
}

/// `SCRIPT LOAD` on every master (a cluster) or the server: EVALSHA then
/// finds it; a master that lost it (restarted, failed over to a replica
/// that never had it) answers NOSCRIPT and the call loads it again.
pub async fn load_scripts(conn: &mut Conn, sources: &[&str]) -> RedisResult<()> {
    for source in sources {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(*source);
        match conn {
            Conn::Cluster(c) => {
                let all = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                c.route_command(cmd, all).await?;
            }
            Conn::Single(c) => {
                let _: String = cmd.query_async(c).await?;
            }
        }
    }
    Ok(())
}
