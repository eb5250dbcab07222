//! STOMP over WebSocket scenarios against any broker URL (the gateway, RabbitMQ Web-STOMP):
//! `stomp-fanout`, `stomp-idle` and `stomp-slow` share what is here.
//!
//! Worker processes hold the subscribers: each opens its share (CONNECT, SUBSCRIBE with a
//! receipt), then reads MESSAGE frames and files each one's latency under the step number
//! carried in its body. The parent publishes from one connection of its own at a fixed rate,
//! one step at a time, and after each step (plus a drain wait) asks every worker for that
//! step's counts: `report S`. Messages of a step that arrive after its report count as late
//! (and so as lost). `slow` makes workers open their stalled subscribers: these CONNECT and
//! SUBSCRIBE, then never read their socket again.

pub mod fanout;
pub mod idle;
pub mod slow;

use std::cell::RefCell;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::{parse_duration, ProcessArgs};
use crate::probe;
use crate::ramp::{ramp, Connected, Pacing, RampReport};
use crate::spread::{self, Plan, Slot};
use crate::stats::{fmt_micros, Errors, Latency, LatencyData, LatencySummary};
use crate::stomp::{self, ReadEnd, StompConn, StompTarget};
use crate::worker::{self, emit, Workers};
use crate::ws::Failure;

/// Where to connect, as whom, and how to open the subscribers.
#[derive(Args, Clone, Debug)]
pub struct StompArgs {
    /// STOMP-over-WebSocket URL (ws:// only): the gateway's ws://127.0.0.1:8080/ws or
    /// RabbitMQ Web-STOMP's ws://127.0.0.1:15674/ws. Several, comma-separated, spread the
    /// subscribers over several gateways: worker process K subscribes through URL K mod N,
    /// the publisher sends through the first.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Topic every subscriber subscribes to and the publisher sends to.
    #[arg(long, default_value = "/topic/bench")]
    pub topic: String,
    /// STOMP login (RabbitMQ: guest).
    #[arg(long)]
    pub login: Option<String>,
    /// STOMP passcode.
    #[arg(long)]
    pub passcode: Option<String>,
    /// STOMP `host` header (RabbitMQ's virtual host).
    #[arg(long, default_value = "/")]
    pub host: String,
    /// Message body size in bytes (at least 64: it carries a timestamp and a step number).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// New subscriber connections per second, over all workers.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Handshakes in flight at once, over all workers.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Give up on one subscriber's connect + CONNECT + SUBSCRIBE after this.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Give up on opening subscribers after this long.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub ramp_limit: Duration,
    /// Loopback source addresses to spread over (0 = as many as the port range needs).
    #[arg(long, default_value_t = 0)]
    pub sources: usize,
    /// The machine may be shared: a step during which other processes used more than
    /// --noisy-threshold percent of a core is repeated (after waiting for a quiet moment) up
    /// to this many times; the last attempt counts either way.
    #[arg(long, default_value_t = 3)]
    pub noisy_retries: u32,
    /// Other processes' CPU, in percent of one core, above which a step is repeated.
    #[arg(long, default_value_t = 25.0)]
    pub noisy_threshold: f64,
    /// Offer these WebSocket extensions, e.g. "permessage-deflate" (messages the server
    /// compresses are inflated; subscribers compress their CONNECT and SUBSCRIBE).
    #[arg(long)]
    pub extensions: Option<String>,
    /// Fill bodies with JSON price levels instead of `x` (realistic for compression).
    #[arg(long)]
    pub price_payload: bool,
    #[command(flatten)]
    pub processes: ProcessArgs,
}

impl StompArgs {
    /// The URLs of --url, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// The first URL's target: the publisher's.
    pub async fn target(&self, kernel_buffer: Option<u32>) -> Result<StompTarget, String> {
        self.target_for(0, kernel_buffer).await
    }

    /// The target of worker process `k`.
    pub async fn target_for(
        &self,
        k: usize,
        kernel_buffer: Option<u32>,
    ) -> Result<StompTarget, String> {
        if self.size < stomp::MIN_BODY {
            return Err(format!("--size must be at least {}", stomp::MIN_BODY));
        }
        let urls = self.urls();
        let url = urls.get(k % urls.len().max(1)).ok_or("--url is empty")?;
        let mut target = StompTarget::resolve(
            url,
            self.login.clone(),
            self.passcode.clone(),
            self.host.clone(),
            kernel_buffer,
        )
        .await?;
        target.extensions = self.extensions.clone();
        stomp::use_price_payload(self.price_payload);
        Ok(target)
    }

    fn plan(&self, total: usize, processes: usize, target: &StompTarget) -> Plan {
        let sources = if !spread::can_spread_sources(&target.server) {
            0
        } else if self.sources > 0 {
            self.sources
        } else {
            spread::auto_sources(total, spread::ephemeral_ports())
        };
        Plan {
            total,
            processes,
            sources,
        }
    }

    fn pacing(&self, processes: usize) -> Pacing {
        let p = processes.max(1);
        Pacing {
            rate: self.connect_rate / p as f64,
            concurrency: self.concurrency.div_ceil(p).max(1),
            limit: self.ramp_limit,
        }
    }
}

/// What the subscriber side of one scenario is.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// All subscribers, stalled ones included.
    pub total: usize,
    /// How many of them stall (open on `slow`, never read).
    pub stalled: usize,
    /// Fixed kernel socket buffers for the subscribers (idle runs), else autotuned.
    pub kernel_buffer: Option<u32>,
    /// Kernel socket buffers for the stalled ones: small, so that the server's queue for
    /// them fills instead of the kernel's.
    pub stalled_buffer: Option<u32>,
}

/// Whether subscriber `g` of `total` is one of the `stalled`, spread evenly over the run.
pub fn is_stalled(g: usize, total: usize, stalled: usize) -> bool {
    stalled > 0 && total > 0 && (g * stalled) / total != ((g + 1) * stalled) / total
}

/// Worker -> parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Progress { established: u64, failed: u64 },
    Ready { ramp: RampReport, nofile: u64 },
    StalledReady { ramp: RampReport },
    Step(Box<StepReport>),
    Fatal { error: String },
}

/// One worker's counts for one step.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StepReport {
    pub step: u32,
    pub received: u64,
    pub latency_us: LatencyData,
    /// Messages of steps already reported, received since the last report.
    pub late: u64,
    /// Healthy subscribers still connected.
    pub alive: u64,
    /// Subscribers the server closed (or that failed) since the start.
    pub closed: u64,
    pub errors: Errors,
    pub samples: Vec<(String, String)>,
    /// MESSAGE frames whose body did not parse as a benchmark body.
    pub foreign: u64,
}

/// One step's tallies in a worker.
struct StepAcc {
    received: u64,
    latency: Latency,
}

/// A worker's tallies; one thread per worker, so a thread-local with no locking.
#[derive(Default)]
struct Tallies {
    steps: Vec<Option<Box<StepAcc>>>,
    reported_through: Option<u32>,
    late: u64,
    alive: u64,
    closed: u64,
    errors: Errors,
    samples: Vec<(String, String)>,
    foreign: u64,
}

/// Steps above this are not counted (a ramp never gets near it).
const MAX_STEP: u32 = 4096;

impl Tallies {
    #[inline]
    fn record(&mut self, step: u32, latency_us: u64) {
        if self.reported_through.is_some_and(|r| step <= r) || step > MAX_STEP {
            self.late += 1;
            return;
        }
        let i = step as usize;
        if self.steps.len() <= i {
            self.steps.resize_with(i + 1, || None);
        }
        let acc = self.steps[i].get_or_insert_with(|| {
            Box::new(StepAcc {
                received: 0,
                latency: Latency::new(),
            })
        });
        acc.received += 1;
        acc.latency.record_micros(latency_us);
    }

    fn failed(&mut self, f: &Failure) {
        self.errors.add(f.kind, 1);
        if self.samples.len() < 8 && !self.samples.iter().any(|(k, _)| k == f.kind) {
            self.samples.push((f.kind.to_string(), f.detail.clone()));
        }
    }

    fn report(&mut self, step: u32) -> StepReport {
        let acc = self
            .steps
            .get_mut(step as usize)
            .and_then(Option::take)
            .map(|b| *b);
        self.reported_through = Some(self.reported_through.map_or(step, |r| r.max(step)));
        // Earlier steps never reported (skipped) count as late too.
        for s in self.steps.iter_mut().take(step as usize) {
            if let Some(acc) = s.take() {
                self.late += acc.received;
            }
        }
        let (received, latency_us) = match acc {
            Some(a) => (a.received, a.latency.to_data()),
            None => (0, LatencyData::default()),
        };
        StepReport {
            step,
            received,
            latency_us,
            late: std::mem::take(&mut self.late),
            alive: self.alive,
            closed: self.closed,
            errors: self.errors.clone(),
            samples: self.samples.clone(),
            foreign: std::mem::take(&mut self.foreign),
        }
    }
}

thread_local! {
    static TALLIES: RefCell<Tallies> = RefCell::new(Tallies::default());
}

/// One subscriber: connect, subscribe, then read and file every MESSAGE until the server
/// closes (or the process ends). A stalled one never reads after its RECEIPT.
async fn subscriber(
    target: std::rc::Rc<StompTarget>,
    topic: std::rc::Rc<str>,
    size: usize,
    slot: Slot,
    conn: Connected,
    stall: bool,
    timeout: Duration,
) {
    let opened = tokio::time::timeout(timeout, async {
        let mut c = StompConn::connect(&target, slot.source, timeout).await?;
        c.subscribe(&topic, &format!("s{}", slot.global), timeout)
            .await?;
        Ok::<_, Failure>(c)
    })
    .await
    .unwrap_or_else(|_| {
        Err(Failure::new(
            "connect_timeout",
            format!("not subscribed within {timeout:?}"),
        ))
    });
    let mut c = match opened {
        Ok(c) => c,
        Err(f) => return conn.done(Err(f)),
    };
    conn.done(Ok(()));
    if stall {
        // Hold the socket, never read it; the process exit closes it.
        std::future::pending::<()>().await;
    }
    TALLIES.with_borrow_mut(|t| t.alive += 1);
    let end = loop {
        let mut now_ns = 0u64;
        let got = c
            .read_batch(|payload| {
                if now_ns == 0 {
                    now_ns = stomp::now_ns();
                }
                TALLIES.with_borrow_mut(|t| match stomp::message_stamp(payload, size) {
                    Some((ts, step)) => t.record(step, now_ns.saturating_sub(ts) / 1000),
                    None => {
                        if payload.starts_with(b"MESSAGE") {
                            t.foreign += 1;
                        } else if payload.starts_with(b"ERROR") {
                            let text = String::from_utf8_lossy(payload)
                                .chars()
                                .take(300)
                                .collect::<String>();
                            t.failed(&Failure::new("stomp_error", text));
                        }
                    }
                });
            })
            .await;
        match got {
            Ok(ReadEnd::Open) => {}
            Ok(ReadEnd::Closed) => break Failure::new("closed", "server closed the connection"),
            Err(f) => break f,
        }
    };
    TALLIES.with_borrow_mut(|t| {
        t.alive -= 1;
        t.closed += 1;
        t.failed(&end);
    });
}

/// A worker never outlives this, whatever the parent does.
const WORKER_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// The worker side of every STOMP scenario.
pub async fn run_worker(args: &StompArgs, spec: Spec, k: usize) -> Result<(), String> {
    let local = tokio::task::LocalSet::new();
    local.run_until(worker_inner(args, spec, k)).await
}

async fn worker_inner(args: &StompArgs, spec: Spec, k: usize) -> Result<(), String> {
    let processes = args.processes.count(spec.total);
    let nofile = probe::raise_own_nofile();
    let target = std::rc::Rc::new(args.target_for(k, spec.kernel_buffer).await?);
    let stalled_target = std::rc::Rc::new(args.target_for(k, spec.stalled_buffer).await?);
    let topic: std::rc::Rc<str> = args.topic.as_str().into();
    let plan = args.plan(spec.total, processes, &target);
    let (stalled, healthy): (Vec<Slot>, Vec<Slot>) = plan
        .slots(k)
        .partition(|s| is_stalled(s.global, spec.total, spec.stalled));
    if (healthy.len() + stalled.len()) as u64 + 64 > nofile {
        let error = format!(
            "worker {k} would need {} descriptors but its open-file limit is {nofile}: use more --processes",
            healthy.len() + stalled.len() + 64
        );
        emit(&Report::Fatal {
            error: error.clone(),
        });
        return Err(error);
    }
    // A worker whose parent is gone ends at once, even in the middle of a ramp.
    let mut from_parent = worker::commands();
    let (to_loop, mut commands) = tokio::sync::mpsc::unbounded_channel();
    tokio::task::spawn_local(async move {
        while let Some(c) = from_parent.recv().await {
            if to_loop.send(c).is_err() {
                return;
            }
        }
        std::process::exit(0);
    });
    let timeout = args.connect_timeout;
    let size = args.size;
    let open = |slots: Vec<Slot>, stall: bool| {
        let target = if stall {
            stalled_target.clone()
        } else {
            target.clone()
        };
        let topic = topic.clone();
        ramp(
            slots,
            args.pacing(processes),
            |established, failed| {
                emit(&Report::Progress {
                    established,
                    failed,
                })
            },
            move |slot, conn| {
                tokio::task::spawn_local(subscriber(
                    target.clone(),
                    topic.clone(),
                    size,
                    slot,
                    conn,
                    stall,
                    timeout,
                ));
            },
        )
    };
    let ramp_report = open(healthy, false).await;
    emit(&Report::Ready {
        ramp: ramp_report,
        nofile,
    });
    let mut stalled = Some(stalled);
    let lifetime = Instant::now() + WORKER_LIFETIME;
    loop {
        let command = tokio::time::timeout_at(lifetime, commands.recv()).await;
        let Ok(Some(command)) = command else {
            return Ok(()); // parent gone, or lifetime over: exiting closes every socket
        };
        let mut words = command.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|s| s.parse::<u32>().ok()),
        ) {
            (Some("report"), Some(step)) => {
                let r = TALLIES.with_borrow_mut(|t| t.report(step));
                emit(&Report::Step(Box::new(r)));
            }
            (Some("stall"), _) => {
                let slots = stalled.take().unwrap_or_default();
                let r = open(slots, true).await;
                emit(&Report::StalledReady { ramp: r });
            }
            (Some("close"), _) => return Ok(()),
            _ => {}
        }
    }
}

/// A step's merged figures.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub step: u32,
    /// Publish rate asked for, messages per second.
    pub rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    /// Messages per second actually published.
    pub sent_rate: f64,
    pub subscribers: u64,
    pub expected: u64,
    pub received: u64,
    pub loss_percent: f64,
    /// Received deliveries per second, all subscribers together.
    pub deliveries_per_sec: f64,
    pub latency_us: LatencySummary,
    /// Messages of earlier steps that arrived after those steps were counted (they count
    /// as lost there, not here).
    pub late: u64,
    pub closed: u64,
    pub foreign: u64,
    pub server_cpu_percent: Option<f64>,
    pub loadgen_cpu_percent: Option<f64>,
    pub machine_busy_percent: Option<f64>,
    /// Server RSS at the start of publishing and every second after, KiB.
    pub server_rss_kib: Vec<u64>,
    pub publisher_error: Option<String>,
    /// Bytes in the kernel send queues of the server's side of its connections as the
    /// step's publishing ended (loopback servers only): (total, largest, sockets).
    pub server_send_queues: Option<(u64, u64, usize)>,
    /// Runs of this step (more than one when others' CPU use spoiled earlier ones).
    pub attempts: u32,
}

impl StepResult {
    /// Server CPU time per delivery, in microseconds.
    pub fn server_cpu_us_per_delivery(&self) -> Option<f64> {
        let cpu = self.server_cpu_percent? / 100.0;
        (self.deliveries_per_sec > 0.0).then(|| cpu / self.deliveries_per_sec * 1e6)
    }

    /// CPU that neither the server nor the generator used (other processes, the kernel's
    /// own threads), in percent of one core; only known with the server's PID.
    pub fn other_cpu_percent(&self) -> Option<f64> {
        Some(self.machine_busy_percent? - self.server_cpu_percent? - self.loadgen_cpu_percent?)
    }

    pub fn human(&self) -> String {
        let cpu = match (
            self.server_cpu_percent,
            self.loadgen_cpu_percent,
            self.machine_busy_percent,
        ) {
            (s, Some(l), Some(m)) => format!(
                "  CPU: server {}{} loadgen {l:.0}% machine {m:.0}%{}",
                s.map_or("?".into(), |s| format!("{s:.0}%")),
                self.server_cpu_us_per_delivery()
                    .map_or(String::new(), |us| format!(" ({us:.1} µs/delivery)")),
                match self.other_cpu_percent() {
                    Some(o) if o > 25.0 => format!(" (others {o:.0}%: figures are low)"),
                    _ => String::new(),
                }
            ),
            _ => String::new(),
        };
        format!(
            "rate {:>9.1}/s  sent {:>9.1}/s  deliveries {:>10.0}/s  received {} of {} (loss {:.3}%{})  latency p50 {} p99 {} p99.9 {} max {}{cpu}",
            self.rate,
            self.sent_rate,
            self.deliveries_per_sec,
            self.received,
            self.expected,
            self.loss_percent,
            if self.late > 0 { format!("; {} late from earlier steps", self.late) } else { String::new() },
            fmt_micros(self.latency_us.p50_us),
            fmt_micros(self.latency_us.p99_us),
            fmt_micros(self.latency_us.p999_us),
            fmt_micros(self.latency_us.max_us),
        )
    }
}

/// CPU time of all `pids` together; `None` without any, or if one is gone.
fn servers_cpu(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| probe::cpu_time(p)).sum()
}

/// RSS of all `pids` together, KiB.
fn servers_rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|&p| probe::memory(p).ok().map(|m| m.rss_kib))
        .sum()
}

/// The parent's side of a run: the workers, the publisher, and the step counter.
pub struct Run {
    pub args: StompArgs,
    pub target: StompTarget,
    pub workers: Workers<Report>,
    pub processes: usize,
    pub spec: Spec,
    pub established: u64,
    pub stalled_established: u64,
    pub ramp: RampReport,
    publisher: Option<StompConn>,
    next_step: u32,
    /// The servers whose CPU and RSS a step reports, summed (several gateways).
    pub server_pids: Vec<u32>,
    pub errors: Errors,
}

fn progress_printer(processes: usize) -> impl FnMut(usize, u64, u64) {
    let mut progress = vec![(0u64, 0u64); processes];
    let mut last_print = Instant::now();
    let started = Instant::now();
    move |k, established, failed| {
        progress[k] = (established, failed);
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            let (e, f) = progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
            eprintln!(
                "  {:>5.1}s  subscribed {e}  failed {f}",
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn print_ramp(what: &str, r: &RampReport, wanted: usize) {
    let secs = r.elapsed_ms as f64 / 1e3;
    println!(
        "{what}: subscribed {} of {wanted}, failed {} ({}) in {secs:.1}s ({:.0}/s); connect+CONNECT+SUBSCRIBE {}",
        r.established,
        r.failed(),
        r.errors.human(),
        r.established as f64 / secs.max(0.001),
        Latency::from_data(&r.connect_us).summary().human()
    );
    for (kind, detail) in &r.samples {
        println!("  first {kind} error: {detail}");
    }
}

impl Run {
    /// Start the workers and wait until every healthy subscriber is subscribed (or failed).
    pub async fn start(args: StompArgs, spec: Spec, server_pids: Vec<u32>) -> Result<Run, String> {
        let processes = args.processes.count(spec.total);
        let target = args.target(None).await?;
        let plan = args.plan(spec.total, processes, &target);
        probe::raise_own_nofile();
        println!(
            "{} subscribers to {} on {} ({}), {processes} worker process(es), {}",
            spec.total,
            args.topic,
            args.urls().join(" + "),
            target.server,
            if plan.sources == 0 {
                "default source address".to_string()
            } else {
                format!("{} source addresses", plan.sources)
            }
        );
        let mut workers: Workers<Report> =
            Workers::spawn(processes).map_err(|e| format!("cannot start workers: {e}"))?;
        let deadline =
            Instant::now() + args.ramp_limit + args.connect_timeout + Duration::from_secs(60);
        let mut show = progress_printer(processes);
        let readies = workers
            .collect(deadline, |k, r| match r {
                Report::Progress {
                    established,
                    failed,
                } => {
                    show(k, established, failed);
                    None
                }
                Report::Ready { ramp, .. } => Some(ramp),
                Report::Fatal { error } => {
                    eprintln!("worker {k}: {error}");
                    None
                }
                _ => None,
            })
            .await?;
        let mut ramp_total = RampReport::default();
        readies.iter().for_each(|r| ramp_total.merge(r));
        print_ramp("subscribers", &ramp_total, spec.total - spec.stalled);
        Ok(Run {
            target,
            workers,
            processes,
            spec,
            established: ramp_total.established,
            stalled_established: 0,
            ramp: ramp_total,
            publisher: None,
            next_step: 0,
            server_pids,
            errors: Errors::default(),
            args,
        })
    }

    /// Open the stalled subscribers.
    pub async fn open_stalled(&mut self) -> Result<RampReport, String> {
        self.workers.tell_all("stall").await;
        let deadline = Instant::now()
            + self.args.ramp_limit
            + self.args.connect_timeout
            + Duration::from_secs(60);
        let mut show = progress_printer(self.processes);
        let readies = self
            .workers
            .collect(deadline, |k, r| match r {
                Report::Progress {
                    established,
                    failed,
                } => {
                    show(k, established, failed);
                    None
                }
                Report::StalledReady { ramp } => Some(ramp),
                _ => None,
            })
            .await?;
        let mut total = RampReport::default();
        readies.iter().for_each(|r| total.merge(r));
        print_ramp("stalled subscribers", &total, self.spec.stalled);
        self.stalled_established = total.established;
        Ok(total)
    }

    async fn publisher(&mut self) -> Result<&mut StompConn, String> {
        if self.publisher.is_none() {
            let timeout = self.args.connect_timeout;
            let c = StompConn::connect(&self.target, None, timeout)
                .await
                .map_err(|f| format!("publisher: {}: {}", f.kind, f.detail))?;
            self.publisher = Some(c);
        }
        Ok(self.publisher.as_mut().expect("just set"))
    }

    /// CPU time of the workers and of this process, for the generator's share.
    fn loadgen_cpu(&self) -> Option<Duration> {
        let mut total = probe::cpu_time(std::process::id())?;
        for pid in self.workers.pids() {
            total += probe::cpu_time(pid)?;
        }
        Some(total)
    }

    /// Publish at `rate` for `duration`, wait `drain`, collect the step's counts.
    pub async fn step(
        &mut self,
        rate: f64,
        duration: Duration,
        drain: Duration,
        tick: Duration,
    ) -> Result<StepResult, String> {
        let step = self.next_step;
        self.next_step += 1;
        let (topic, size) = (self.args.topic.clone(), self.args.size);
        let server_pids = self.server_pids.clone();
        let subscribers = self.established;
        self.publisher().await?;
        let cpu0 = (
            servers_cpu(&server_pids),
            self.loadgen_cpu(),
            probe::machine_cpu(),
        );
        let mut rss = Vec::new();
        let started = Instant::now();
        let publisher = self.publisher.as_mut().expect("connected above");
        let published = publish(publisher, &topic, size, step, rate, duration, tick, || {
            if let Some(kib) = servers_rss_kib(&server_pids) {
                rss.push(kib);
            }
        })
        .await;
        let elapsed = started.elapsed();
        let server_send_queues = if self.target.server.ip().is_loopback() {
            probe::send_queues(self.target.server.port())
        } else {
            None
        };
        let cpu1 = (
            servers_cpu(&server_pids),
            self.loadgen_cpu(),
            probe::machine_cpu(),
        );
        let (sent, publisher_error) = match published {
            Ok(n) => (n, None),
            Err((n, e)) => (n, Some(e)),
        };
        tokio::time::sleep(drain).await;
        let publisher_error =
            publisher_error.or_else(|| self.publisher.as_mut().and_then(StompConn::poll_error));
        if publisher_error.is_some() {
            self.publisher = None; // reconnect for the next step
        }
        self.workers.tell_all(&format!("report {step}")).await;
        let reports = self
            .workers
            .collect(Instant::now() + Duration::from_secs(60), |_, r| match r {
                Report::Step(s) if s.step == step => Some(s),
                _ => None,
            })
            .await?;
        let mut latency = Latency::new();
        let (mut received, mut late, mut closed, mut foreign, mut alive) = (0, 0, 0, 0, 0);
        let mut errors = Errors::default();
        for r in &reports {
            received += r.received;
            late += r.late;
            closed += r.closed;
            foreign += r.foreign;
            alive += r.alive;
            latency.merge(&Latency::from_data(&r.latency_us));
            errors.merge(&r.errors);
            for (k, d) in &r.samples {
                if !self.errors.0.contains_key(k) {
                    println!("  first subscriber {k} error: {d}");
                }
            }
        }
        self.errors = errors;
        let _ = alive;
        let expected = sent * subscribers;
        let secs = elapsed.as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pct = |a: Option<Duration>, b: Option<Duration>| -> Option<f64> {
            Some(b?.saturating_sub(a?).as_secs_f64() / secs * 100.0)
        };
        Ok(StepResult {
            step,
            rate,
            duration_s: secs,
            sent,
            sent_rate: sent as f64 / secs,
            subscribers,
            expected,
            received,
            loss_percent: if expected == 0 {
                0.0
            } else {
                (expected.saturating_sub(received)) as f64 / expected as f64 * 100.0
            },
            deliveries_per_sec: received as f64 / duration.as_secs_f64(),
            latency_us: latency.summary(),
            late,
            closed,
            foreign,
            server_cpu_percent: pct(cpu0.0, cpu1.0),
            loadgen_cpu_percent: pct(cpu0.1, cpu1.1),
            machine_busy_percent: match (cpu0.2, cpu1.2) {
                (Some(a), Some(b)) => Some(probe::cpus_busy(a, b, cores) * 100.0),
                _ => None,
            },
            server_rss_kib: rss,
            publisher_error,
            server_send_queues,
            attempts: 1,
        })
    }

    /// [`Run::step`], repeated while other processes spoil it (see `--noisy-retries`).
    pub async fn clean_step(
        &mut self,
        rate: f64,
        duration: Duration,
        drain: Duration,
        tick: Duration,
    ) -> Result<StepResult, String> {
        let (retries, threshold) = (self.args.noisy_retries, self.args.noisy_threshold);
        let mut attempt = 1;
        loop {
            let mut r = self.step(rate, duration, drain, tick).await?;
            r.attempts = attempt;
            match r.other_cpu_percent() {
                Some(o) if o > threshold && attempt <= retries => {
                    println!(
                        "  (other processes used {o:.0}% of a core during the step at {rate:.1}/s: repeating it)"
                    );
                    wait_quiet(threshold, Duration::from_secs(120)).await;
                    attempt += 1;
                }
                _ => return Ok(r),
            }
        }
    }

    pub async fn finish(mut self) {
        self.workers.tell_all("close").await;
        self.workers.finish(Duration::from_secs(20)).await;
    }
}

/// Wait until the whole machine uses less than `threshold` percent of a core over a second
/// (between steps, the server and the generator are idle), at most `limit`.
pub async fn wait_quiet(threshold: f64, limit: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let give_up = Instant::now() + limit;
    while Instant::now() < give_up {
        let a = probe::machine_cpu();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let (Some(a), Some(b)) = (a, probe::machine_cpu()) {
            if probe::cpus_busy(a, b, cores) * 100.0 < threshold {
                return;
            }
        }
    }
}

/// Publish `step`'s messages at `rate` for `duration`, several per timer tick when the rate
/// is above one per tick; `each_second` runs once a second (and at the start). Returns the
/// number sent, or that number and why publishing stopped.
#[allow(clippy::too_many_arguments)]
async fn publish(
    c: &mut StompConn,
    topic: &str,
    size: usize,
    step: u32,
    rate: f64,
    duration: Duration,
    tick: Duration,
    mut each_second: impl FnMut(),
) -> Result<u64, (u64, String)> {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let start = Instant::now();
    let end = start + duration;
    // A write blocked by the server's flow control may overrun the step a little, not more.
    let hard_end = end + Duration::from_secs(5);
    let mut ticker = tokio::time::interval(tick.max(Duration::from_micros(100)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut next_second = start;
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    // Runs the whole `duration` even once everything is sent, so that CPU and RSS readings
    // cover the step.
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if now >= next_second {
            each_second();
            next_second += Duration::from_secs(1);
        }
        if now >= end {
            break;
        }
        let due = (((now - start).as_secs_f64() * rate) as u64 + 1).min(total);
        if due <= sent {
            continue;
        }
        buf.clear();
        let ts = stomp::now_ns();
        for seq in sent..due {
            stomp::send_frame(&mut buf, topic, &stomp::body(size, ts, step, seq));
        }
        match tokio::time::timeout_at(hard_end, c.write_all(&buf)).await {
            Ok(Ok(())) => sent = due,
            Ok(Err(e)) => return Err((sent, format!("publisher write: {e}"))),
            Err(_) => return Err((sent, "publisher blocked past the step's end".into())),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_subscribers_are_spread_and_counted_exactly() {
        for (total, stalled) in [(1000, 10), (10_000, 100), (7, 3), (5, 0), (100, 100)] {
            let picked: Vec<usize> = (0..total)
                .filter(|&g| is_stalled(g, total, stalled))
                .collect();
            assert_eq!(picked.len(), stalled, "{total} {stalled}");
        }
        let picked: Vec<usize> = (0..1000).filter(|&g| is_stalled(g, 1000, 10)).collect();
        assert_eq!(picked, [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]);
    }

    #[test]
    fn tallies_file_by_step_and_count_late_ones() {
        let mut t = Tallies::default();
        t.record(0, 100);
        t.record(1, 200);
        t.record(1, 300);
        t.record(2, 50);
        let r = t.report(1);
        assert_eq!((r.step, r.received, r.late), (1, 2, 1)); // step 0 never reported: late
        assert_eq!(Latency::from_data(&r.latency_us).len(), 2);
        t.record(1, 10); // after its report
        let r = t.report(2);
        assert_eq!((r.received, r.late), (1, 1));
        let r = t.report(3);
        assert_eq!((r.received, r.late), (0, 0));
    }
}
