//! One TCP (or TLS) connection to the broker, speaking STOMP 1.2 (or 1.1) with our own codec.
//!
//! A task owns the socket: it writes what the bounded queue holds, reads frames, answers
//! requests when their RECEIPT (or ERROR) arrives, hands MESSAGE frames to the connection's
//! [`Handler`], and keeps heart-beats both ways so a broker that went silent is noticed.
//! Every frame a caller waits on carries a `receipt`; an ERROR naming that receipt fails
//! just that request, an ERROR naming none fails the connection (the broker closes it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_api::CancellationToken;
use bytes::BytesMut;
use metrics::Gauge;
use protocol_stomp::{encode, Command, Decoded, Decoder, Frame, Limits, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::uri::Endpoint;
use crate::backend::BackendError;

/// What we offer: `[can send every, want to hear every]`, in ms.
pub const HEART_BEAT_MS: [u64; 2] = [10_000, 10_000];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Long enough for a broker's producer flow control to let a SEND through.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// A broker that takes longer than this to read what we write is taken for dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// A broker silent for this many of its heart-beat intervals is taken for dead.
const HEART_BEAT_GRACE: u32 = 2;
/// Frames written per flush.
const WRITE_BATCH: usize = 64;

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// Receives what the broker sends on its own (deliveries), and the connection's end.
pub trait Handler: Send + Sync + 'static {
    fn message(&self, conn: u64, frame: Frame);

    /// Frames to write without a queue slot (cumulative ACKs the handler coalesces, so
    /// their number is bounded by the handler); asked after [`Conn::wake`] and each write.
    fn take_control(&self, _out: &mut Vec<Frame>) {}

    /// The connection ended: `None` when the gateway closed it.
    fn closed(&self, _reason: Option<&BackendError>) {}
}

pub struct Options {
    pub max_frame_size: usize,
    /// Frames waiting for the socket; a full queue makes callers wait (or `try_request` fail).
    pub queue: usize,
    /// Counts this connection while it is open.
    pub gauge: Gauge,
}

/// A handle; clones share the connection, which closes (DISCONNECT) when the last one
/// is dropped or [`Conn::close`] is called.
#[derive(Clone)]
pub struct Conn {
    tx: mpsc::Sender<Frame>,
    shared: Arc<Shared>,
}

struct Shared {
    generation: u64,
    version: Version,
    /// The CONNECTED frame's `server` header.
    server: String,
    addr: String,
    pending: Mutex<Pending>,
    wake: Notify,
    stop: CancellationToken,
    /// Cancelled once the connection is gone (after pending requests were failed).
    done: CancellationToken,
}

#[derive(Default)]
struct Pending {
    next: u64,
    waiting: HashMap<u64, oneshot::Sender<Result<(), BackendError>>>,
    /// Why the connection ended.
    ended: Option<BackendError>,
}

/// A request on its way: resolves with the broker's RECEIPT or ERROR.
pub struct Receipt {
    rx: oneshot::Receiver<Result<(), BackendError>>,
    shared: Arc<Shared>,
    id: u64,
}

impl Receipt {
    pub async fn wait(self) -> Result<(), BackendError> {
        match tokio::time::timeout(RECEIPT_TIMEOUT, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.shared.ended()),
            Err(_) => {
                self.shared.lock().waiting.remove(&self.id);
                Err(BackendError::unavailable(format!(
                    "the STOMP broker at {} sent no RECEIPT within {}s",
                    self.shared.addr,
                    RECEIPT_TIMEOUT.as_secs()
                )))
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ended(&self) -> BackendError {
        self.lock().ended.clone().unwrap_or_else(|| {
            BackendError::unavailable(format!(
                "the connection to the STOMP broker at {} was closed",
                self.addr
            ))
        })
    }

    fn register(&self) -> Result<(u64, oneshot::Receiver<Result<(), BackendError>>), BackendError> {
        let mut p = self.lock();
        if let Some(e) = &p.ended {
            return Err(e.clone());
        }
        p.next += 1;
        let id = p.next;
        let (tx, rx) = oneshot::channel();
        p.waiting.insert(id, tx);
        Ok((id, rx))
    }

    fn resolve(&self, id: &str, result: Result<(), BackendError>) -> bool {
        let Some(n) = id.strip_prefix("r-").and_then(|n| n.parse::<u64>().ok()) else {
            return false;
        };
        match self.lock().waiting.remove(&n) {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// The end: every waiting request fails with `reason`, and so will later ones.
    fn finish(&self, reason: BackendError) {
        let waiting = {
            let mut p = self.lock();
            p.ended.get_or_insert(reason.clone());
            std::mem::take(&mut p.waiting)
        };
        for (_, tx) in waiting {
            let _ = tx.send(Err(reason.clone()));
        }
        self.done.cancel();
    }
}

/// The broker's words from an ERROR frame: its `message` header, else its body's first line.
pub fn error_reason(frame: &Frame) -> String {
    if let Some(m) = frame
        .headers
        .get("message")
        .filter(|m| !m.trim().is_empty())
    {
        return m.trim().to_string();
    }
    let body = String::from_utf8_lossy(&frame.body);
    match body.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => line.chars().take(300).collect(),
        None => "ERROR frame without a message".into(),
    }
}

impl Conn {
    /// Connect and log in (`login`: the service's or the client's credentials).
    pub async fn connect(
        endpoint: &Endpoint,
        login: Option<&(String, String)>,
        handler: Arc<dyn Handler>,
        opts: Options,
    ) -> Result<Conn, BackendError> {
        let addr = endpoint.addr();
        let unreachable =
            |why: String| BackendError::unavailable(format!("the STOMP broker at {addr} {why}"));
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Err(_) => return Err(unreachable("did not accept a connection within 5s".into())),
            Ok(Err(e)) => return Err(unreachable(format!("is unreachable ({e})"))),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr): (Reader, Writer) = match &endpoint.tls {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
            Some(tls) => {
                let tls =
                    tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(&endpoint.host, stream))
                        .await
                        .map_err(|_| unreachable("did not complete TLS within 5s".into()))?
                        .map_err(|e| unreachable(format!("over TLS: {e}")))?;
                let (rd, wr) = tokio::io::split(tls);
                (Box::new(rd), Box::new(wr))
            }
        };

        let mut connect = Frame::new(Command::Connect)
            .header("accept-version", "1.1,1.2")
            .header("host", endpoint.vhost.as_str())
            .header(
                "heart-beat",
                format!("{},{}", HEART_BEAT_MS[0], HEART_BEAT_MS[1]),
            );
        if let Some((user, pass)) = login {
            connect = connect
                .header("login", user.as_str())
                .header("passcode", pass.as_str());
        }
        let mut out = BytesMut::new();
        encode(&connect, Version::V1_2, &mut out);
        wr.write_all(&out)
            .await
            .map_err(|e| unreachable(format!("closed the connection ({e})")))?;

        let mut decoder = Decoder::new(Limits {
            max_frame_size: opts.max_frame_size.saturating_add(64 * 1024),
            max_headers: 256,
            max_header_len: 64 * 1024,
        });
        let mut buf = BytesMut::with_capacity(4096);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(Decoded::Frame(f))) => return Ok(f),
                    Ok(Some(Decoded::HeartBeat)) => continue,
                    Ok(None) => {}
                    Err(e) => return Err(unreachable(format!("sent a malformed frame ({e})"))),
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        return Err(unreachable("closed the connection during CONNECT".into()))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(unreachable(format!("closed the connection ({e})"))),
                }
            }
        })
        .await
        .map_err(|_| unreachable("did not answer CONNECT within 5s".into()))??;

        match connected.command {
            Command::Connected => {}
            Command::Error => {
                let user = login.map_or("(no login)", |(u, _)| u.as_str());
                return Err(BackendError::refused(format!(
                    "the STOMP broker refused the login for {user:?}: {}",
                    error_reason(&connected)
                )));
            }
            other => {
                return Err(unreachable(format!(
                    "answered CONNECT with {}",
                    other.as_str()
                )))
            }
        }
        let version = match connected.headers.get("version") {
            Some("1.2") => Version::V1_2,
            Some("1.1") => Version::V1_1,
            v => {
                return Err(unreachable(format!(
                    "speaks STOMP {}; the gateway needs 1.1 or 1.2",
                    v.unwrap_or("1.0")
                )))
            }
        };
        decoder.set_version(version);
        let (send_every, expect_every) = heart_beats(connected.headers.get("heart-beat"));

        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let shared = Arc::new(Shared {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            version,
            server: connected.headers.get("server").unwrap_or("").to_string(),
            addr: addr.clone(),
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
        });
        let io = Io {
            rd,
            wr,
            buf,
            decoder,
            out: BytesMut::new(),
            rx,
            shared: shared.clone(),
            handler,
            send_every,
            expect_every,
            last_read: Instant::now(),
            last_write: Instant::now(),
            scratch: Vec::new(),
        };
        let gauge = opts.gauge;
        gauge.increment(1.0);
        tokio::spawn(async move {
            io.run().await;
            gauge.decrement(1.0);
        });
        Ok(Conn { tx, shared })
    }

    /// Distinguishes connections to the same broker (e.g. before and after a reconnect).
    pub fn generation(&self) -> u64 {
        self.shared.generation
    }

    pub fn version(&self) -> Version {
        self.shared.version
    }

    pub fn server(&self) -> &str {
        &self.shared.server
    }

    /// Send `frame` with a receipt and wait for the broker's RECEIPT (or ERROR).
    pub async fn request(&self, mut frame: Frame) -> Result<(), BackendError> {
        let (id, rx) = self.shared.register()?;
        frame.headers.set("receipt", format!("r-{id}"));
        if self.tx.send(frame).await.is_err() {
            self.shared.lock().waiting.remove(&id);
            return Err(self.shared.ended());
        }
        Receipt {
            rx,
            shared: self.shared.clone(),
            id,
        }
        .wait()
        .await
    }

    /// Queue `frame` with a receipt now (so frames queued under one lock keep their order);
    /// fails at once if the queue is full.
    pub fn try_request(&self, mut frame: Frame) -> Result<Receipt, BackendError> {
        let (id, rx) = self.shared.register()?;
        frame.headers.set("receipt", format!("r-{id}"));
        if let Err(e) = self.tx.try_send(frame) {
            self.shared.lock().waiting.remove(&id);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => BackendError::unavailable(format!(
                    "too many frames are waiting for the STOMP broker at {}",
                    self.shared.addr
                )),
                mpsc::error::TrySendError::Closed(_) => self.shared.ended(),
            });
        }
        Ok(Receipt {
            rx,
            shared: self.shared.clone(),
            id,
        })
    }

    /// Ask the connection to collect the handler's control frames.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Why the connection ended (or "was closed" while it is still open).
    pub fn failure(&self) -> BackendError {
        self.shared.ended()
    }

    /// Resolves once the connection is gone.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.done.clone().cancelled_owned()
    }

    /// DISCONNECT and close, even while other handles exist.
    pub fn close(&self) {
        self.shared.stop.cancel();
    }
}

/// Our intervals from the broker's `heart-beat: sx,sy` (STOMP 1.1 heart-beating): we send
/// every max(our cx, sy) and expect every max(sx, our cy); 0 on either side means never.
fn heart_beats(header: Option<&str>) -> (Option<Duration>, Option<Duration>) {
    let theirs = header
        .and_then(protocol_stomp::parse_heart_beat)
        .unwrap_or((0, 0));
    let [cx, cy] = HEART_BEAT_MS;
    let (out, inc) = protocol_stomp::negotiate_heart_beats((cx, cy), theirs);
    let every = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    (every(out), every(inc))
}

// === impl Io ===

/// Either half of a plain or a TLS stream.
type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

struct Io {
    rd: Reader,
    wr: Writer,
    buf: BytesMut,
    decoder: Decoder,
    out: BytesMut,
    rx: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
    handler: Arc<dyn Handler>,
    send_every: Option<Duration>,
    expect_every: Option<Duration>,
    last_read: Instant,
    last_write: Instant,
    scratch: Vec<Frame>,
}

/// How the IO loop ended.
enum End {
    /// The gateway closed it: DISCONNECT.
    Closed,
    Failed(BackendError),
}

impl Io {
    async fn run(mut self) {
        let end = self.serve().await;
        let reason = match end {
            End::Closed => {
                // What the handler still wants said (final ACKs), then DISCONNECT.
                let mut rest = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(1), self.write(&mut rest)).await;
                let mut out = BytesMut::new();
                encode(
                    &Frame::new(Command::Disconnect),
                    self.shared.version,
                    &mut out,
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), self.wr.write_all(&out)).await;
                let _ = self.wr.shutdown().await;
                None
            }
            End::Failed(e) => Some(e),
        };
        match &reason {
            Some(e) => {
                tracing::debug!(broker = %self.shared.addr, "STOMP broker connection ended: {e}")
            }
            None => tracing::trace!(broker = %self.shared.addr, "STOMP broker connection closed"),
        }
        self.shared.finish(reason.clone().unwrap_or_else(|| {
            BackendError::unavailable(format!(
                "the connection to the STOMP broker at {} was closed",
                self.shared.addr
            ))
        }));
        self.handler.closed(reason.as_ref());
    }

    async fn serve(&mut self) -> End {
        let tick_every = [self.send_every.map(|d| d / 2), self.expect_every]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval_at(Instant::now() + tick_every, tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = self.shared.stop.clone();
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return End::Closed,
                read = self.rd.read_buf(&mut self.buf) => {
                    match read {
                        Ok(0) => return End::Failed(self.lost("closed the connection")),
                        Ok(_) => self.last_read = Instant::now(),
                        Err(e) => return End::Failed(self.lost(&format!("connection failed ({e})"))),
                    }
                    if let Err(e) = self.on_bytes() {
                        return End::Failed(e);
                    }
                    if self.buf.is_empty() && self.buf.capacity() > 256 * 1024 {
                        self.buf = BytesMut::with_capacity(4096);
                    }
                }
                n = self.rx.recv_many(&mut batch, WRITE_BATCH) => {
                    if n == 0 {
                        return End::Closed;
                    }
                    if let Err(e) = self.write(&mut batch).await {
                        return End::Failed(e);
                    }
                }
                _ = self.shared.wake.notified() => {
                    if let Err(e) = self.write(&mut batch).await {
                        return End::Failed(e);
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.heart_beat().await {
                        return End::Failed(e);
                    }
                }
            }
        }
    }

    fn lost(&self, why: &str) -> BackendError {
        BackendError::unavailable(format!("the STOMP broker at {} {why}", self.shared.addr))
    }

    fn on_bytes(&mut self) -> Result<(), BackendError> {
        loop {
            let frame = match self.decoder.decode(&mut self.buf) {
                Ok(None) => return Ok(()),
                Ok(Some(Decoded::HeartBeat)) => continue,
                Ok(Some(Decoded::Frame(f))) => f,
                Err(e) => return Err(self.lost(&format!("sent a malformed frame ({e})"))),
            };
            match frame.command {
                Command::Message => self.handler.message(self.shared.generation, frame),
                Command::Receipt => {
                    if let Some(id) = frame.headers.get("receipt-id") {
                        self.shared.resolve(id, Ok(()));
                    }
                }
                Command::Error => {
                    let reason = error_reason(&frame);
                    let answered = frame.headers.get("receipt-id").is_some_and(|id| {
                        self.shared
                            .resolve(id, Err(BackendError::refused(reason.clone())))
                    });
                    if !answered {
                        // About the connection as a whole: the broker closes it next.
                        tracing::info!(broker = %self.shared.addr, "STOMP broker ERROR: {reason}");
                        return Err(BackendError::refused(reason));
                    }
                }
                _ => {}
            }
        }
    }

    /// Write the handler's control frames, `batch` (frames already taken from the queue)
    /// and whatever else is queued, a batch per flush. Control frames go first: an ACK
    /// the handler coalesced must reach the broker before a later UNSUBSCRIBE.
    async fn write(&mut self, batch: &mut Vec<Frame>) -> Result<(), BackendError> {
        loop {
            let mut frames = std::mem::take(&mut self.scratch);
            self.handler.take_control(&mut frames);
            frames.append(batch);
            if frames.is_empty() {
                self.scratch = frames;
                return Ok(());
            }
            for frame in frames.drain(..) {
                encode(&frame, self.shared.version, &mut self.out);
            }
            self.scratch = frames;
            let out = self.out.split();
            self.write_all(&out).await?;
            while batch.len() < WRITE_BATCH {
                match self.rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
        }
    }

    async fn heart_beat(&mut self) -> Result<(), BackendError> {
        let now = Instant::now();
        if let Some(every) = self.expect_every {
            let allowed = every * HEART_BEAT_GRACE;
            if now.duration_since(self.last_read) > allowed {
                return Err(self.lost(&format!(
                    "sent nothing for {}s (heart-beat every {}s)",
                    allowed.as_secs(),
                    every.as_secs()
                )));
            }
        }
        if let Some(every) = self.send_every {
            if now.duration_since(self.last_write) >= every / 2 {
                self.write_all(protocol_stomp::heart_beat()).await?;
            }
        }
        Ok(())
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.wr.write_all(bytes)).await {
            Ok(Ok(())) => {
                self.last_write = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(self.lost(&format!("connection failed ({e})"))),
            Err(_) => Err(self.lost(&format!(
                "read nothing we sent for {}s",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendErrorKind;
    use tokio::net::TcpListener;

    /// A scripted broker: answers CONNECT, then each frame with `reply(frame)`.
    async fn peer(
        connected: Frame,
        reply: impl Fn(&Frame) -> Option<Frame> + Send + 'static,
    ) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut decoder = Decoder::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut first = true;
            loop {
                while let Ok(Some(d)) = decoder.decode(&mut buf) {
                    let Decoded::Frame(f) = d else { continue };
                    let answer = if first {
                        Some(connected.clone())
                    } else {
                        reply(&f)
                    };
                    first = false;
                    if let Some(a) = answer {
                        let mut out = BytesMut::new();
                        encode(&a, Version::V1_2, &mut out);
                        sock.write_all(&out).await.unwrap();
                    }
                }
                if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        super::super::uri::parse_uri(&format!("stomp://u:p@127.0.0.1:{port}")).unwrap()
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl Handler for Seen {
        fn message(&self, _: u64, frame: Frame) {
            self.0
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&frame.body).into());
        }
        fn closed(&self, reason: Option<&BackendError>) {
            self.0.lock().unwrap().push(format!("closed: {reason:?}"));
        }
    }

    fn opts() -> Options {
        Options {
            max_frame_size: 1024,
            queue: 4,
            gauge: metrics::gauge!("test"),
        }
    }

    #[tokio::test]
    async fn receipts_errors_and_messages() {
        let connected = Frame::new(Command::Connected)
            .header("version", "1.2")
            .header("server", "Test/1");
        let ep = peer(connected, |f| {
            let receipt = f.headers.get("receipt").unwrap_or("").to_string();
            match f.headers.get("destination") {
                Some("/queue/ok") => {
                    Some(Frame::new(Command::Receipt).header("receipt-id", receipt))
                }
                Some("/queue/no") => Some(
                    Frame::new(Command::Error)
                        .header("receipt-id", receipt)
                        .header("message", "not allowed"),
                ),
                Some("/queue/deliver") => Some(
                    Frame::new(Command::Message)
                        .header("subscription", "s-1")
                        .with_body("hello"),
                ),
                _ => Some(Frame::new(Command::Error).header("message", "fatal")),
            }
        })
        .await;
        let seen = Arc::new(Seen::default());
        let conn = Conn::connect(&ep, ep.login.as_ref(), seen.clone(), opts())
            .await
            .unwrap();
        assert_eq!(conn.server(), "Test/1");
        let send = |d: &str| Frame::new(Command::Send).header("destination", d);
        conn.request(send("/queue/ok")).await.unwrap();
        let e = conn.request(send("/queue/no")).await.unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (BackendErrorKind::Refused, "not allowed")
        );
        // Still usable after a refused request; then an ERROR without a receipt ends it.
        conn.request(send("/queue/ok")).await.unwrap();
        let _ = conn.try_request(send("/queue/deliver")).unwrap();
        let e = conn.request(send("/queue/boom")).await.unwrap_err();
        assert_eq!(e.message, "fatal");
        conn.closed().await;
        let e = conn.request(send("/queue/ok")).await.unwrap_err();
        assert_eq!(e.message, "fatal");
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(seen[0], "hello");
        assert!(seen[1].starts_with("closed: Some"), "{seen:?}");
    }

    #[tokio::test]
    async fn refused_login_and_old_versions() {
        let ep = peer(
            Frame::new(Command::Error).header("message", "User name [u] or password is invalid."),
            |_| None,
        )
        .await;
        let e = Conn::connect(&ep, ep.login.as_ref(), Arc::new(Seen::default()), opts())
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind, BackendErrorKind::Refused);
        assert!(
            e.message.contains("User name [u] or password is invalid."),
            "{e}"
        );

        let ep = peer(Frame::new(Command::Connected), |_| None).await;
        let e = Conn::connect(&ep, None, Arc::new(Seen::default()), opts())
            .await
            .err()
            .unwrap();
        assert!(e.message.contains("speaks STOMP 1.0"), "{e}");
    }

    #[test]
    fn heart_beat_negotiation() {
        let s = Some(Duration::from_millis(10_000));
        assert_eq!(heart_beats(Some("10000,10000")), (s, s));
        assert_eq!(heart_beats(Some("0,0")), (None, None));
        assert_eq!(heart_beats(None), (None, None));
        assert_eq!(
            heart_beats(Some("30000,5000")),
            (s, Some(Duration::from_millis(30_000)))
        );
    }

    #[test]
    fn error_reasons() {
        let f =
            Frame::new(Command::Error).header("message", "User name [x] or password is invalid.");
        assert_eq!(error_reason(&f), "User name [x] or password is invalid.");
        let f = Frame::new(Command::Error).with_body("\n  boom\n\tat x\n");
        assert_eq!(error_reason(&f), "boom");
        assert_eq!(
            error_reason(&Frame::new(Command::Error)),
            "ERROR frame without a message"
        );
    }
}
