//! Process structure: the acceptor thread, the market-data generator thread, one thread per
//! connection (a worker thread that served a connection which ended serves the next one), and
//! the handle that controls them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::conn::{self, ConnCtl};
use super::faults::{FaultKind, FaultRule, Target};
use super::ledger::Ledger;
use super::venue::{ConnId, Venue, VenueParams};
use super::{tls, SimConfig, SimError};

/// State shared by every simulator thread.
pub(crate) struct Shared {
    /// The configuration started with.
    pub cfg: SimConfig,
    /// The venue (one lock for books, orders, accounts, ledger, market-data log).
    pub venue: Mutex<Venue>,
    /// Set once to stop every thread.
    pub shutdown: AtomicBool,
    /// When the simulator started (base of `at=` fault times).
    pub start: Instant,
    /// Fault rules (grows at run time through [`SimHandle::schedule`]).
    pub rules: Mutex<Vec<FaultRule>>,
    /// Control blocks of live connections.
    pub conns: Mutex<HashMap<ConnId, Arc<ConnCtl>>>,
    /// TLS server configuration for `wss`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Market-data notifications written to sockets, all connections.
    pub md_sent: AtomicU64,
    /// Connections accepted so far.
    pub accepted: AtomicU64,
    /// TLS handshakes that resumed an earlier session (a ticket from an earlier connection).
    pub tls_resumed: AtomicU64,
}

impl Shared {
    /// Locks the venue; a panic on another thread while holding the lock does not make the
    /// state unusable for reading the ledger, so poisoning is ignored.
    pub fn venue(&self) -> MutexGuard<'_, Venue> {
        self.venue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

/// Counters of a running simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimStats {
    /// Market-data notifications written to sockets, all connections.
    pub md_sent: u64,
    /// Market-data events generated.
    pub md_generated: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections alive now.
    pub live: usize,
    /// TLS handshakes that resumed an earlier session (counted when the connection's upgrade
    /// request arrives): with `wss`, the server issues TLS 1.3 tickets (rustls' default
    /// stateful cache, two per connection), and a client that keeps its TLS configuration
    /// resumes on its next connection (no certificate sent or verified).
    pub tls_resumed: u64,
    /// Access tokens the venue holds (valid ones, expired ones not yet pruned).
    pub access_tokens: usize,
    /// Unused refresh tokens the venue holds.
    pub refresh_tokens: usize,
}

/// Entry point of the simulator.
pub struct Simulator;

impl Simulator {
    /// Binds the listener, starts the threads, and returns the handle.
    pub fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        if cfg.instruments.is_empty() {
            return Err(SimError::Config("at least one instrument is needed".into()));
        }
        if cfg.instruments.len() > u16::MAX as usize {
            return Err(SimError::Config("too many instruments".into()));
        }
        if let Some(path) = &cfg.ledger_path {
            // Written at shutdown: a path that cannot be written must fail now, not lose the
            // whole ledger then.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| SimError::io(format!("ledger file {}", path.display()), e))?;
        }
        let (tls, ca_file) = match &cfg.tls {
            Some(setup) => {
                let (c, ca) = tls::server_config(setup)?;
                (Some(c), ca)
            }
            None => (None, None),
        };
        let std_listener = std::net::TcpListener::bind(cfg.listen)
            .map_err(|e| SimError::io(format!("bind {}", cfg.listen), e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| SimError::io("listener", e))?;
        let local = std_listener
            .local_addr()
            .map_err(|e| SimError::io("listener", e))?;
        let venue = Venue::new(&VenueParams {
            instruments: cfg.instruments.clone(),
            credentials: cfg.credentials.clone(),
            rate: cfg.rate as f64,
            depth: cfg.depth,
            seed: cfg.seed,
            token_ttl: cfg.token_ttl,
            refresh_ttl: cfg.refresh_ttl,
            log_capacity: cfg.log_capacity,
            signature_window: cfg.signature_window,
        });
        let shared = Arc::new(Shared {
            rules: Mutex::new(cfg.faults.clone()),
            cfg,
            venue: Mutex::new(venue),
            shutdown: AtomicBool::new(false),
            start: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            tls,
            md_sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
        });
        let conn_threads = Arc::new(Mutex::new(Vec::new()));
        let market = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sim-market".into())
                .spawn(move || market_loop(&shared))
                .map_err(|e| SimError::io("spawn market thread", e))?
        };
        let acceptor = {
            let shared = shared.clone();
            let threads = conn_threads.clone();
            let listener = mio::net::TcpListener::from_std(std_listener);
            std::thread::Builder::new()
                .name("sim-accept".into())
                .spawn(move || accept_loop(&shared, listener, &threads))
                .map_err(|e| SimError::io("spawn acceptor thread", e))?
        };
        Ok(SimHandle {
            shared,
            local,
            ca_file,
            threads: vec![market, acceptor],
            conn_threads,
            stopped: false,
        })
    }
}

fn market_loop(shared: &Shared) {
    while !shared.stopping() {
        shared.venue().advance(Instant::now());
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// An accepted connection handed to a worker thread.
struct Job {
    id: ConnId,
    sock: mio::net::TcpStream,
    peer: SocketAddr,
}

/// Connection worker threads: every connection runs on a thread of its own, as before, but a
/// thread whose connection ended waits for the next one instead of exiting. A reconnect is then
/// served by a thread that is already there (a wake-up) rather than by a new one (creating a
/// thread and tearing the old one down, which on a small machine competes with the handshake the
/// client is timing).
struct Workers {
    /// Jobs for idle workers (the acceptor is the only sender).
    tx: std::sync::mpsc::Sender<Job>,
    /// The receiving end, shared by the idle workers.
    rx: Arc<Mutex<std::sync::mpsc::Receiver<Job>>>,
    /// Workers waiting for a job that no job has been sent to yet. The acceptor claims one
    /// (decrements) before sending; a worker adds itself back after its connection ends.
    idle: Arc<std::sync::atomic::AtomicUsize>,
}

impl Workers {
    fn new() -> Workers {
        let (tx, rx) = std::sync::mpsc::channel();
        Workers {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Runs `job` on an idle worker, or on a new one when none is idle.
    fn dispatch(
        &self,
        shared: &Arc<Shared>,
        job: Job,
        threads: &Mutex<Vec<JoinHandle<()>>>,
    ) -> Result<(), std::io::Error> {
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        let job = if claimed {
            match self.tx.send(job) {
                Ok(()) => return Ok(()),
                // Every worker is gone (cannot happen while the acceptor runs): spawn one.
                Err(e) => e.0,
            }
        } else {
            job
        };
        let (sh, rx, idle) = (shared.clone(), self.rx.clone(), self.idle.clone());
        let h = std::thread::Builder::new()
            .name("sim-conn".into())
            .spawn(move || {
                let mut job = Some(job);
                while let Some(Job { id, sock, peer }) = job.take() {
                    conn::run(sh.clone(), id, sock, peer);
                    if sh.stopping() {
                        return;
                    }
                    idle.fetch_add(1, Ordering::AcqRel);
                    // The lock is held only by idle workers, while they wait; the acceptor
                    // dropping its sender at shutdown ends the wait with an error.
                    job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv().ok();
                }
            })?;
        threads.lock().unwrap_or_else(|p| p.into_inner()).push(h);
        Ok(())
    }
}

fn accept_loop(
    shared: &Arc<Shared>,
    mut listener: mio::net::TcpListener,
    threads: &Mutex<Vec<JoinHandle<()>>>,
) {
    let mut poll = match mio::Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sim: cannot create poll: {e}");
            return;
        }
    };
    if let Err(e) = poll
        .registry()
        .register(&mut listener, mio::Token(0), mio::Interest::READABLE)
    {
        eprintln!("sim: cannot register listener: {e}");
        return;
    }
    let workers = Workers::new();
    let mut events = mio::Events::with_capacity(16);
    while !shared.stopping() {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(10))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                eprintln!("sim: poll failed: {e}");
                return;
            }
        }
        loop {
            match listener.accept() {
                Ok((sock, peer)) => {
                    let id = shared.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Err(e) = workers.dispatch(shared, Job { id, sock, peer }, threads) {
                        eprintln!("sim: cannot spawn connection thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("sim: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
    }
    // Dropping `workers` (its sender) releases the idle workers.
}

/// A running simulator. Dropping it shuts it down (without writing the ledger file).
pub struct SimHandle {
    shared: Arc<Shared>,
    local: SocketAddr,
    ca_file: Option<PathBuf>,
    threads: Vec<JoinHandle<()>>,
    conn_threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    stopped: bool,
}

impl SimHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `ws://ADDR/ws/api/v2` or `wss://ADDR/ws/api/v2`.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws/api/v2", self.local)
    }

    /// The CA certificate file clients should trust, when the certificate was generated.
    pub fn ca_file(&self) -> Option<&PathBuf> {
        self.ca_file.as_ref()
    }

    /// A snapshot of the ledger.
    pub fn ledger(&self) -> Ledger {
        self.shared.venue().ledger.clone()
    }

    /// Ids of the connections alive now, in accept order.
    pub fn connections(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        let (md_generated, tokens) = {
            let v = self.shared.venue();
            (v.log.head(), v.token_counts())
        };
        SimStats {
            md_sent: self.shared.md_sent.load(Ordering::Relaxed),
            md_generated,
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            live: self.connections().len(),
            tls_resumed: self.shared.tls_resumed.load(Ordering::Relaxed),
            access_tokens: tokens.access,
            refresh_tokens: tokens.refresh,
        }
    }

    /// Fires a fault now on one connection or all live ones (applied on their next loop
    /// turn, within about a millisecond). Returns how many connections it was given to.
    pub fn inject(&self, target: Target, kind: FaultKind) -> usize {
        let conns = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for (id, ctl) in conns.iter() {
            if target == Target::All || target == Target::Conn(*id) {
                ctl.push(kind.clone());
                n += 1;
            }
        }
        n
    }

    /// Adds a scheduled fault rule; live and future connections take it over.
    pub fn schedule(&self, rule: FaultRule) {
        self.shared
            .rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rule);
    }

    /// Stops every thread (connections get a 1001 close), writes the ledger file if the
    /// configuration names one (a write failure is reported on stderr; use
    /// [`SimHandle::shutdown_checked`] to get it as an error), and returns the final ledger.
    pub fn shutdown(self) -> Ledger {
        let shared = self.shared.clone();
        match self.shutdown_checked() {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sim: {e}");
                shared.venue().ledger.clone()
            }
        }
    }

    /// Like [`SimHandle::shutdown`] but reports a failure to write the ledger file.
    pub fn shutdown_checked(mut self) -> Result<Ledger, SimError> {
        self.stop();
        let ledger = self.ledger();
        if let Some(path) = &self.shared.cfg.ledger_path {
            std::fs::write(path, ledger.to_json()).map_err(|e| SimError::io(path, e))?;
        }
        Ok(ledger)
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.shared.shutdown.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let conns: Vec<JoinHandle<()>> = self
            .conn_threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in conns {
            let _ = t.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;

    fn workers(sim: &SimHandle) -> usize {
        sim.conn_threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Waits until the simulator has accepted `n` connections and none is alive.
    fn wait_all_ended(sim: &SimHandle, n: u64) {
        let end = Instant::now() + Duration::from_secs(5);
        while sim.stats().accepted < n || !sim.connections().is_empty() {
            assert!(Instant::now() < end, "connections did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn connections_one_after_another_reuse_one_worker_thread() {
        let sim = Simulator::start(SimConfig {
            rate: 0,
            ..SimConfig::default()
        })
        .unwrap();
        for n in 1..=5 {
            drop(std::net::TcpStream::connect(sim.local_addr()).unwrap());
            wait_all_ended(&sim, n);
            // The worker adds itself back to the idle ones just after its connection ends.
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(workers(&sim), 1);
        sim.shutdown();
    }

    #[test]
    fn simultaneous_connections_each_get_a_worker_and_shutdown_ends_them_all() {
        let sim = Simulator::start(SimConfig {
            rate: 0,
            ..SimConfig::default()
        })
        .unwrap();
        let a = std::net::TcpStream::connect(sim.local_addr()).unwrap();
        let b = std::net::TcpStream::connect(sim.local_addr()).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while sim.connections().len() < 2 {
            assert!(
                Instant::now() < end,
                "both connections should be served at once"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(workers(&sim), 2);
        drop((a, b));
        wait_all_ended(&sim, 2);
        // Idle workers wait for the next connection; shutdown must still end them (this
        // returns only after joining every worker).
        sim.shutdown();
    }
}
