//! Clusters: which node originates which channel, kept in Redis. A node that holds a channel
//! published to it registers itself as the channel's origin (`SET NX` with a TTL), keeps the key
//! alive while the channel lives (compare-and-expire: only its own key, and the TTL really
//! extends), and removes it when the channel ends (compare-and-delete: never another node's).
//! Any node asked for a channel it does not hold looks the origin up here and relays it as an
//! edge (`super::pull`). Relayed channels are never registered.
//!
//! Redis is never in the way of local work: every call has a short deadline, a publish that
//! cannot be registered goes on (the refresher registers it once Redis answers again, within one
//! refresh interval), and only a lookup that cannot be made fails, with `503`. The key is
//! `trickle:origin:{name}`, its value `{node id} {advertised URL}`.

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;

use crate::protocol::Error;
use crate::server::{Config, Event, Server};

/// How long one Redis call may take before it counts as Redis being unavailable.
const DEADLINE: Duration = Duration::from_secs(1);

/// Extends the key's TTL if it is still ours: 1 extended, 0 missing, -1 another node's.
const EXPIRE_IF_OURS: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
    if v then return -1 end return 0";
/// Deletes the key if it is still ours.
const DELETE_IF_OURS: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// Who originates a channel, as a lookup found it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Nobody (or this node, which does not hold it: a stale key of ours).
    Nobody,
    /// Another node, at this URL.
    At(String),
}

/// The registry `config` asks for (`None` without one, or when its URL is not Redis's: said in
/// the log, as `trickle serve` checks it before).
pub(crate) fn from_config(config: &Config) -> Option<Registry> {
    let url = config.registry.as_deref()?;
    let node = config.node_id.as_deref().unwrap_or("node");
    let advertise = config.advertise.as_deref().unwrap_or_default();
    Registry::new(url, node, advertise, config.registry_ttl)
        .inspect_err(|err| tracing::error!(%err, "no registry"))
        .ok()
}

/// This node's place in the cluster.
pub(crate) struct Registry {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// `{node id} {advertised URL}`: the value of this node's keys.
    me: String,
    ttl: Duration,
    /// Channels this node registered, or will once Redis answers.
    owned: Mutex<HashSet<String>>,
}

/// A publish refused: another node originates the channel.
pub(crate) struct Taken {
    pub(crate) owner: String,
}

/// `SET key value NX PX ttl`: registers `value` if nobody is (`OK`, else nil).
fn set_if_free(key: &str, value: &str, ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value).arg("NX").arg("PX").arg(ttl_ms);
    cmd
}

fn key(name: &str) -> String {
    format!("trickle:origin:{name}")
}

impl Registry {
    /// `url` is Redis's (`redis://host:port`); `node` and `advertise` name this node.
    pub(crate) fn new(
        url: &str,
        node: &str,
        advertise: &str,
        ttl: Duration,
    ) -> Result<Registry, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--registry {url}: {e}"))?;
        Ok(Registry {
            client,
            connection: Mutex::new(None),
            me: format!("{node} {}", advertise.trim_end_matches('/')),
            ttl,
            owned: Mutex::new(HashSet::new()),
        })
    }

    /// How often the keys are refreshed: three times per TTL.
    pub(crate) fn refresh_interval(&self) -> Duration {
        self.ttl / 3
    }

    /// Runs `command` on the shared connection (made if there is none), within [`DEADLINE`]; a
    /// failure drops the connection, so the next call makes a new one.
    async fn query<T: redis::FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let attempt = async {
            let held = self.connection.lock().clone();
            let mut connection = match held {
                Some(connection) => connection,
                None => {
                    let made = self.client.get_multiplexed_async_connection().await?;
                    *self.connection.lock() = Some(made.clone());
                    made
                }
            };
            run(&mut connection).await
        };
        let result = match tokio::time::timeout(DEADLINE, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer within 1 s".to_string(),
        };
        *self.connection.lock() = None;
        Err(format!("registry: {result}"))
    }

    /// Registers this node as the origin of `name`, which is being published here: `Err` if
    /// another node is (the publish is refused). With Redis unavailable the publish goes on and
    /// the refresher registers it later.
    pub(crate) async fn claim(&self, name: &str) -> Result<(), Taken> {
        if self.owned.lock().contains(name) {
            return Ok(());
        }
        let (key, me, ttl) = (key(name), self.me.clone(), self.ttl.as_millis() as u64);
        let set = self
            .query(async |c| {
                let set: Option<String> = set_if_free(&key, &me, ttl).query_async(c).await?;
                let holder: Option<String> = match set {
                    Some(_) => None,
                    None => redis::cmd("GET").arg(&key).query_async(c).await?,
                };
                Ok(holder)
            })
            .await;
        match set {
            Ok(Some(holder)) if holder != self.me => {
                let owner = holder
                    .split_once(' ')
                    .map_or(holder.clone(), |(_, url)| url.into());
                return Err(Taken { owner });
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(channel = name, %err, "publishing on; registered later"),
        }
        self.owned.lock().insert(name.to_string());
        Ok(())
    }

    /// Who originates `name`.
    pub(crate) async fn lookup(&self, name: &str) -> Result<Origin, Error> {
        let key = key(name);
        let value: Option<String> = self
            .query(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await
            .map_err(Error::Unavailable)?;
        Ok(match value {
            Some(value) if value != self.me => match value.split_once(' ') {
                Some((_, url)) => Origin::At(url.to_string()),
                None => Origin::Nobody,
            },
            _ => Origin::Nobody,
        })
    }

    /// Keeps the keys of the channels still held alive, registers those Redis lost (it
    /// restarted, or was down when they were published) and removes those of channels gone.
    async fn refresh(&self, server: &Server) {
        let owned: Vec<String> = self.owned.lock().iter().cloned().collect();
        for name in owned {
            if server.channel(&name).is_none() {
                self.release(&name).await;
                continue;
            }
            let (key, me, ttl) = (key(&name), self.me.clone(), self.ttl.as_millis() as u64);
            let outcome = self
                .query(async |c| {
                    let script = redis::Script::new(EXPIRE_IF_OURS);
                    let extended: i64 = script.key(&key).arg(&me).arg(ttl).invoke_async(c).await?;
                    if extended == 0 {
                        let _: Option<String> = set_if_free(&key, &me, ttl).query_async(c).await?;
                    }
                    Ok(extended)
                })
                .await;
            match outcome {
                Ok(-1) => tracing::warn!(channel = %name, "another node registered this channel"),
                Ok(_) => {}
                Err(err) => tracing::debug!(channel = %name, %err, "not refreshed"),
            }
        }
    }

    /// The channel ended here: its key goes (if still ours).
    async fn release(&self, name: &str) {
        if !self.owned.lock().remove(name) {
            return;
        }
        let (key, me) = (key(name), self.me.clone());
        let deleted = self
            .query(async |c| {
                let script = redis::Script::new(DELETE_IF_OURS);
                let n: i64 = script.key(&key).arg(&me).invoke_async(c).await?;
                Ok(n)
            })
            .await;
        if let Err(err) = deleted {
            // The key lapses within its TTL.
            tracing::debug!(channel = name, %err, "not removed");
        }
    }
}

/// The registry's upkeep for `server`: refreshes every third of the TTL, and removes a channel's
/// key as soon as the channel is gone. Stops with the server.
pub(crate) async fn upkeep(server: Server) {
    let Some(registry) = server.relays().registry() else {
        return;
    };
    let mut events = server.events();
    let mut tick = tokio::time::interval(registry.refresh_interval());
    loop {
        tokio::select! {
            _ = server.shut_down() => return,
            _ = tick.tick() => registry.refresh(&server).await,
            event = events.recv() => match event {
                Ok(Event::ChannelRemoved { channel }) => registry.release(&channel).await,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
