//! A service's AMQP connections: a fixed number (`pool_size`), each kept up by a supervisor
//! task that reconnects with backoff; channels are multiplexed on them, so the number of
//! connections never grows with the number of clients. With pass-through credentials a
//! client's own connection is a pool of one that is not re-established.
//!
//! Given a cluster's nodes, connection `i` starts on node `i mod nodes` (so the pool is
//! spread over them), and a supervisor whose connection is lost reconnects to the least
//! loaded other node at once, then walks the list with the usual backoff. Connections stay
//! where they are when a node comes back (moving them would cut channels that work).

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io;

use bridge_tls::TlsClient;
use futures::StreamExt;
use lapin::tcp::{AMQPUriTcpExt, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, ConnectionStatus, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::errors::describe_connect;
use crate::metrics::{NodeMetrics, PoolMetrics as Metrics};
use crate::Error;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Reconnect attempts back off up to this; a restarted broker is found within it.
const MAX_RETRY: Duration = Duration::from_secs(3);
/// How often a supervisor looks at its connection's state between events.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// A channel the gauge knows about: counted while open, closed (and uncounted) on drop.
pub struct Chan {
    channel: Channel,
    connection: ConnectionStatus,
    node: Arc<str>,
    metrics: Arc<Metrics>,
}

impl Chan {
    fn new(
        channel: Channel,
        connection: ConnectionStatus,
        node: Arc<str>,
        metrics: Arc<Metrics>,
    ) -> Chan {
        metrics.channels.increment(1.0);
        Chan {
            channel,
            connection,
            node,
            metrics,
        }
    }

    /// The broker node (`host:port`) this channel's connection is on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The broker is blocking publishers on this connection (a resource alarm).
    pub fn blocked(&self) -> bool {
        self.connection.blocked()
    }

    pub fn usable(&self) -> bool {
        self.channel.status().connected() && self.connection.connected()
    }
}

impl Deref for Chan {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.channel
    }
}

impl Drop for Chan {
    fn drop(&mut self) {
        // Dropping the last handle closes the channel (lapin's closer); unacknowledged
        // deliveries on it go back to their queues.
        self.metrics.channels.decrement(1.0);
    }
}

struct Slot {
    /// The connection and the node it is on.
    conn: Mutex<Option<(Arc<Connection>, usize)>>,
}

struct Node {
    uri: AMQPUri,
    /// `host:port`, for messages, logs and the `node` label.
    endpoint: Arc<str>,
    metrics: NodeMetrics,
}

pub struct Pool {
    nodes: Vec<Node>,
    /// For `amqps://`.
    tls: Option<TlsClient>,
    name: String,
    slots: Vec<Slot>,
    rr: AtomicUsize,
    /// Connected slots; watchers wait on it for the broker to come back.
    up: watch::Sender<usize>,
    /// Bumped on every (re)connection, so caches of declared objects can be dropped.
    generation: AtomicU64,
    last_error: Mutex<String>,
    shutdown: CancellationToken,
    /// False for a pass-through client's own connection: once lost it stays lost.
    reconnects: bool,
    metrics: Arc<Metrics>,
}

pub fn endpoint(uri: &AMQPUri) -> String {
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

/// One connection to the first node of `nodes` that takes it, trying them in turn from
/// `start` (pass-through credentials: a client's own connection). A refused login is the
/// answer of the whole cluster (users are shared) and is returned at once; otherwise the
/// last node's error. Gives the connection and the index of its node.
pub async fn connect_any(
    nodes: &[AMQPUri],
    start: usize,
    tls: Option<&TlsClient>,
    name: &str,
) -> Result<(Connection, usize), lapin::Error> {
    let mut last = None;
    for k in 0..nodes.len() {
        let i = (start + k) % nodes.len();
        match connect(&nodes[i], tls, name).await {
            Ok(c) => return Ok((c, i)),
            Err(e) if crate::is_refusal(&e) => return Err(e),
            Err(e) => {
                if nodes.len() > 1 {
                    tracing::debug!(broker = %endpoint(&nodes[i]), "cannot connect: {}", describe_connect(&e));
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        lapin::Error::from(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no broker node",
        ))
    }))
}

/// One connection: plain for `amqp://`, over the service's TLS client for `amqps://`.
pub async fn connect(
    uri: &AMQPUri,
    tls: Option<&TlsClient>,
    name: &str,
) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let attempt = async {
        match tls {
            None => Connection::connect_uri(uri.clone(), props).await,
            Some(tls) => connect_tls(uri, tls, props).await,
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        ))),
    }
}

/// lapin's own TLS (`OwnedTLSConfig`) can add roots and a client identity but not a
/// verifier, so it can neither pin a key nor trust a CA:TRUE server certificate as it is;
/// its `connector` takes any stream instead, and this one is made with the service's
/// rustls configuration.
async fn connect_tls(
    uri: &AMQPUri,
    tls: &TlsClient,
    props: ConnectionProperties,
) -> Result<Connection, lapin::Error> {
    let name = tls
        .name_for(&uri.authority.host)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS server name {e}")))?
        .to_str()
        .into_owned();
    let connector = RustlsConnector::from(tls.config());
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connector(
        uri.clone(),
        runtime,
        async move |uri: AMQPUri, runtime| {
            let mut plain = uri;
            plain.scheme = AMQPScheme::AMQP;
            let tcp = plain.connect_async(&runtime).await?;
            tcp.into_rustls(&connector, &name).await.map_err(|e| {
                lapin::Error::from(io::Error::new(
                    e.kind(),
                    format!(
                        "TLS handshake with {name} failed: {}",
                        bridge_tls::describe(&e)
                    ),
                ))
            })
        },
        props,
    )
    .await
}

impl Pool {
    fn new(
        uris: Vec<AMQPUri>,
        tls: Option<TlsClient>,
        name: String,
        size: usize,
        reconnects: bool,
        metrics: Arc<Metrics>,
    ) -> Pool {
        assert!(!uris.is_empty(), "a pool needs a broker node");
        Pool {
            nodes: uris
                .into_iter()
                .map(|uri| {
                    let endpoint: Arc<str> = endpoint(&uri).into();
                    Node {
                        metrics: (metrics.node)(&endpoint),
                        endpoint,
                        uri,
                    }
                })
                .collect(),
            tls,
            name,
            slots: (0..size)
                .map(|_| Slot {
                    conn: Mutex::new(None),
                })
                .collect(),
            rr: AtomicUsize::new(0),
            up: watch::Sender::new(0),
            generation: AtomicU64::new(0),
            last_error: Mutex::new("not connected yet".into()),
            shutdown: CancellationToken::new(),
            reconnects,
            metrics,
        }
    }

    /// `size` supervised connections spread over `nodes` (one or more URIs of the same
    /// cluster); none is opened before [`start`](Self::start).
    pub fn supervised(
        nodes: Vec<AMQPUri>,
        tls: Option<TlsClient>,
        name: String,
        size: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Pool> {
        Arc::new(Pool::new(nodes, tls, name, size, true, metrics))
    }

    /// Connect in the background from now on, one supervisor per connection on `tasks`,
    /// until `shutdown`: then each supervisor closes its connection politely (AMQP
    /// `connection.close`) and ends, so whoever waits for `tasks` knows they are closed.
    pub fn start(self: &Arc<Self>, tasks: &TaskTracker, shutdown: CancellationToken) {
        for i in 0..self.slots.len() {
            tasks.spawn(self.clone().supervise(i));
        }
        let pool = Arc::downgrade(self);
        tasks.spawn(async move {
            shutdown.cancelled().await;
            if let Some(pool) = pool.upgrade() {
                pool.stop();
            }
        });
    }

    /// A pool of one already open connection that is not re-established when lost
    /// (pass-through credentials: the client reconnects as itself). `on_lost` runs once
    /// with the reason when it goes.
    pub fn single(
        conn: Connection,
        uri: AMQPUri,
        name: String,
        metrics: Arc<Metrics>,
        on_lost: impl FnOnce(String) + Send + 'static,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool::new(vec![uri], None, name, 1, false, metrics));
        let conn = Arc::new(conn);
        pool.attach(0, conn.clone(), 0);
        let p = pool.clone();
        tokio::spawn(async move {
            let reason = p.watch(&conn).await;
            p.detach(0, &reason);
            p.shutdown.cancel();
            if let Some(reason) = reason {
                on_lost(reason);
            }
        });
        pool
    }

    fn slot(&self, i: usize) -> Option<(Arc<Connection>, usize)> {
        self.slots[i]
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn attach(&self, i: usize, conn: Arc<Connection>, node: usize) {
        *self.slots[i].conn.lock().unwrap_or_else(|p| p.into_inner()) = Some((conn, node));
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.metrics.connections.increment(1.0);
        self.nodes[node].metrics.connections.increment(1.0);
        self.up.send_modify(|n| *n += 1);
    }

    fn detach(&self, i: usize, reason: &Option<String>) {
        let was = self.slots[i]
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((_, node)) = was {
            self.metrics.connections.decrement(1.0);
            self.nodes[node].metrics.connections.decrement(1.0);
            self.up.send_modify(|n| *n = n.saturating_sub(1));
        }
        if let Some(r) = reason {
            self.set_error(r.clone());
        }
    }

    fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Whether a lost connection comes back (what is built on it may wait for that).
    pub fn reconnects(&self) -> bool {
        self.reconnects
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow() > 0
    }

    /// The number of connected slots, changing as connections are lost and made: a session
    /// waits on it to notice an outage without a timer of its own.
    pub fn watch_up(&self) -> watch::Receiver<usize> {
        self.up.subscribe()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The broker's nodes as `host:port, host:port`, for messages.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(|n| &*n.endpoint)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Which node (`host:port`) each connection is on now; `None` while it is down.
    pub fn placement(&self) -> Vec<Option<String>> {
        (0..self.slots.len())
            .map(|i| {
                self.slot(i)
                    .map(|(_, n)| self.nodes[n].endpoint.to_string())
            })
            .collect()
    }

    /// What becomes of a session's broker-side state lost with `node`, for the ERROR that
    /// tells its client: where the gateway's connections go now.
    pub fn failover_note(&self, node: &str) -> String {
        let others: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| &*n.endpoint)
            .filter(|e| *e != node)
            .collect();
        if !self.reconnects {
            "reconnect to carry on".into()
        } else if others.is_empty() {
            format!(
                "the gateway reconnects to {node} when it is back; reconnect and subscribe again"
            )
        } else {
            format!(
                "the gateway reconnects to another node ({}); reconnect and subscribe again",
                others.join(", ")
            )
        }
    }

    /// Why the broker cannot be used right now, for ERROR frames and logs.
    pub fn outage(&self) -> String {
        let e = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        format!("RabbitMQ at {} is unavailable ({e})", self.endpoints())
    }

    /// Wait until a connection is up; false if the pool was shut down (or `stop` fired).
    pub async fn wait_up(&self, stop: &CancellationToken) -> bool {
        let mut rx = self.up.subscribe();
        tokio::select! {
            r = rx.wait_for(|n| *n > 0) => r.is_ok() && !self.shutdown.is_cancelled(),
            _ = self.shutdown.cancelled() => false,
            _ = stop.cancelled() => false,
        }
    }

    /// A new channel on one of the connections (round robin), or the outage as an error.
    pub async fn channel(&self) -> Result<Chan, Error> {
        self.channel_and_slot().await.map(|(c, _)| c)
    }

    /// [`channel`](Self::channel), and which connection it is on, so a client can keep all
    /// its channels on one connection ([`channel_on`](Self::channel_on)).
    pub async fn channel_and_slot(&self) -> Result<(Chan, usize), Error> {
        let n = self.slots.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            match self.channel_on(i).await {
                Ok(c) => return Ok((c, i)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::unavailable(self.outage())))
    }

    /// A new channel on connection `i`.
    pub async fn channel_on(&self, i: usize) -> Result<Chan, Error> {
        let Some((conn, node)) = self.slot(i % self.slots.len()) else {
            return Err(Error::unavailable(self.outage()));
        };
        let node = self.nodes[node].endpoint.clone();
        match conn.create_channel().await {
            Ok(ch) => Ok(Chan::new(
                ch,
                conn.status().clone(),
                node,
                self.metrics.clone(),
            )),
            Err(e) => Err(Error::unavailable(format!(
                "RabbitMQ at {node}: cannot open a channel ({e})"
            ))),
        }
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Close every connection and stop reconnecting.
    pub async fn close(&self) {
        self.shutdown.cancel();
        for i in 0..self.slots.len() {
            if let Some((conn, _)) = self.slot(i) {
                self.detach(i, &None);
                let _ = conn.close(200, "bye".into()).await;
            }
        }
    }

    /// Stop reconnecting without waiting (the owner is going away).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Keep connection `i` up until shutdown, on node `i mod nodes` first.
    async fn supervise(self: Arc<Self>, i: usize) {
        let mut delay = FIRST_RETRY;
        let mut was_up = false;
        let mut failures = 0usize;
        let mut node = i % self.nodes.len();
        let name = if self.slots.len() > 1 {
            format!("{} #{}", self.name, i + 1)
        } else {
            self.name.clone()
        };
        while !self.shutdown.is_cancelled() {
            let target = &self.nodes[node];
            match connect(&target.uri, self.tls.as_ref(), &name).await {
                Ok(conn) => {
                    if was_up {
                        self.metrics.reconnects.increment(1);
                        target.metrics.reconnects.increment(1);
                    }
                    tracing::info!(
                        service = %self.metrics.service,
                        broker = %target.endpoint,
                        connection = i + 1,
                        "connected to RabbitMQ"
                    );
                    was_up = true;
                    failures = 0;
                    delay = FIRST_RETRY;
                    let conn = Arc::new(conn);
                    self.attach(i, conn.clone(), node);
                    let reason = self.watch(&conn).await;
                    self.detach(i, &reason.as_ref().map(|r| self.on_node(node, r)));
                    let Some(r) = reason else {
                        // Shut down: leave politely.
                        let _ = conn.close(200, "gateway shutting down".into()).await;
                        return;
                    };
                    // The node is likely gone (stopped, partitioned): go to another at once.
                    let next = self.failover_target(node);
                    tracing::warn!(
                        service = %self.metrics.service,
                        broker = %target.endpoint,
                        connection = i + 1,
                        next = %self.nodes[next].endpoint,
                        "lost the RabbitMQ connection: {r}; reconnecting"
                    );
                    node = next;
                }
                Err(e) => {
                    let why = describe_connect(&e);
                    // Once per node and outage at warn level, then quietly.
                    if failures < self.nodes.len() {
                        tracing::warn!(
                            service = %self.metrics.service,
                            broker = %target.endpoint,
                            connection = i + 1,
                            "cannot connect to RabbitMQ: {why}; retrying with backoff"
                        );
                    } else {
                        tracing::debug!(broker = %target.endpoint, "still cannot connect: {why}");
                    }
                    failures += 1;
                    self.set_error(self.on_node(node, &why));
                    node = (node + 1) % self.nodes.len();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// `why` with the node it happened on, when there is more than one.
    fn on_node(&self, node: usize, why: &str) -> String {
        if self.nodes.len() > 1 {
            format!("{}: {why}", self.nodes[node].endpoint)
        } else {
            why.to_string()
        }
    }

    /// Where a connection lost on node `lost` goes: the node with the fewest of this pool's
    /// connections among the others (the next in the list on a tie), so the pool stays
    /// spread over the survivors.
    fn failover_target(&self, lost: usize) -> usize {
        let n = self.nodes.len();
        if n == 1 {
            return lost;
        }
        let mut load = vec![0usize; n];
        for i in 0..self.slots.len() {
            if let Some((_, node)) = self.slot(i) {
                load[node] += 1;
            }
        }
        (1..n)
            .map(|k| (lost + k) % n)
            .min_by_key(|&c| load[c])
            .unwrap_or(lost)
    }

    /// Until the connection is lost (`Some(reason)`) or the pool shuts down (`None`).
    async fn watch(&self, conn: &Connection) -> Option<String> {
        let mut events = conn.events_listener();
        let mut tick = tokio::time::interval(WATCH_PERIOD);
        let mut last_error = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                ev = events.next() => match ev {
                    // Channel errors (a refused declare) come here too: only the
                    // connection's state says whether it is gone.
                    Some(Event::Error(e)) => last_error = Some(describe_connect(&e)),
                    Some(_) => continue,
                    None => {}
                },
                _ = tick.tick() => {}
            }
            if !conn.status().connected() {
                return Some(last_error.unwrap_or_else(|| "connection closed".into()));
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
