//! TEST STAND-IN for a bad network (feature `shim`): a loopback TCP proxy that sits between a
//! device and its central store (Postgres or the REST stand-in) and injects the faults a phone
//! meets in the field: latency, a bandwidth limit, a stall (bytes stop flowing, the connection
//! stays open), and cuts (a request cut short, an answer cut mid-way, or an answer lost right
//! after the server committed). It is what the sync fault tests and `outpost bench sync`'s
//! round-trip figures run through; it is not a thing to deploy.
//!
//! Latency is added one way in each direction (a round trip gains twice `latency`) without
//! limiting throughput: each read is stamped on arrival and written once its time has come, so
//! bytes keep streaming as over a long link. The bandwidth limit applies per direction and per
//! connection. Faults can be changed while connections are open; a cut applies to the next new
//! connection, in the order planned.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The faults every connection sees, changeable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added to each direction (a round trip gains twice this).
    pub latency: Duration,
    /// Bytes per second in each direction of each connection; `None` for no limit.
    pub bytes_per_sec: Option<u64>,
    /// While set, nothing is forwarded either way; connections stay open (a stalled link).
    pub stalled: bool,
    /// While set, new connections are closed as soon as they are accepted (the store is down).
    pub refuse: bool,
}

/// How the proxy breaks one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Forward this many bytes from the client, then drop both sides: a request cut short.
    RequestAfterBytes(usize),
    /// Forward this many bytes of the server's answer, then drop both sides: an answer cut
    /// mid-way.
    ResponseAfterBytes(usize),
    /// Forward up to and including the client's n-th Postgres `COMMIT` (simple query), then
    /// drop both sides: the server commits, and the client never hears about it.
    AfterCommits(usize),
}

/// The simple-query message tokio-postgres sends to commit.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

#[derive(Default)]
struct Shared {
    faults: Mutex<Faults>,
    plan: Mutex<VecDeque<Cut>>,
    connections: AtomicUsize,
    cuts: AtomicUsize,
    up: AtomicU64,
    down: AtomicU64,
    open: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("faults", &self.shared.faults())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `target`, with no faults.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    if shared.faults().refuse {
                        drop(client);
                        continue;
                    }
                    let cut = shared
                        .plan
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let relayed = shared.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(target).await {
                            let _ = client.set_nodelay(true);
                            let _ = server.set_nodelay(true);
                            let _ = relay(client, server, cut, &relayed).await;
                        }
                    });
                    let mut open = shared.open.lock().unwrap_or_else(PoisonError::into_inner);
                    open.retain(|t| !t.is_finished());
                    open.push(task.abort_handle());
                }
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` (`target`, as written in the URL) replaced by this proxy's.
    pub fn url_via(&self, url: &str, target: &str) -> String {
        url.replacen(target, &self.addr.to_string(), 1)
    }

    /// Sets the faults from now on (open connections included).
    pub fn set(&self, faults: Faults) {
        *self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// The faults now.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Breaks the next new connections, one cut each, in order.
    pub fn cut_next(&self, cuts: impl IntoIterator<Item = Cut>) {
        self.shared
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(cuts);
    }

    /// Drops every open connection at once, both sides (a link that went away); new ones are
    /// accepted as the faults say.
    pub fn sever(&self) {
        let open = std::mem::take(
            &mut *self
                .shared
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in open {
            task.abort();
        }
    }

    /// Forgets the cuts planned and not yet used.
    pub fn clear_cuts(&self) {
        self.shared
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections actually cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far: client to server, and server to client.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.up.load(Ordering::SeqCst),
            self.shared.down.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.sever();
    }
}

/// Where a direction's cut falls in a read of `n` bytes: how many of them go through, or
/// `None` when the cut is not in this read.
struct CutPoint {
    limit: Option<usize>,
    commits: Option<usize>,
    sent: usize,
    seen_commits: usize,
    tail: Vec<u8>,
}

impl CutPoint {
    fn new(limit: Option<usize>, commits: Option<usize>) -> Self {
        Self {
            limit,
            commits,
            sent: 0,
            seen_commits: 0,
            tail: Vec::new(),
        }
    }

    fn keep(&mut self, data: &[u8]) -> Option<usize> {
        if let Some(limit) = self.limit {
            let left = limit.saturating_sub(self.sent);
            self.sent += data.len().min(left);
            return (left <= data.len()).then_some(left);
        }
        let want = self.commits?;
        // Search the end of the previous read plus this one, so a COMMIT split across reads
        // is found.
        let start = self.tail.len();
        let mut seen = std::mem::take(&mut self.tail);
        seen.extend_from_slice(data);
        let mut at = 0;
        let mut found = None;
        while let Some(i) = seen[at..].windows(COMMIT.len()).position(|w| w == COMMIT) {
            at += i + COMMIT.len();
            if at <= start {
                continue;
            }
            self.seen_commits += 1;
            if self.seen_commits == want {
                found = Some(at - start);
                break;
            }
        }
        let keep_from = seen.len().saturating_sub(COMMIT.len() - 1);
        self.tail = seen[keep_from..].to_vec();
        found
    }
}

/// Relays one connection both ways, applying the faults and `cut`. After a cut neither side
/// gets another byte: each is sent the end of its stream (not a reset, so the server still reads
/// everything sent before the cut, as after a real cut on the way back), and what the server
/// still answers is read and dropped for up to 5 s.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    cut: Option<Cut>,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let none = || CutPoint::new(None, None);
    let (up_cut, down_cut) = match cut {
        Some(Cut::RequestAfterBytes(n)) => (CutPoint::new(Some(n), None), none()),
        Some(Cut::AfterCommits(n)) => (CutPoint::new(None, Some(n)), none()),
        Some(Cut::ResponseAfterBytes(n)) => (none(), CutPoint::new(Some(n), None)),
        None => (none(), none()),
    };
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    let cut_tx = Arc::new(cut_tx);
    let up = pump(
        from_client,
        to_server,
        up_cut,
        shared.clone(),
        true,
        cut_tx.clone(),
        cut_rx.clone(),
    );
    let down = pump(
        from_server,
        to_client,
        down_cut,
        shared.clone(),
        false,
        cut_tx,
        cut_rx.clone(),
    );
    let both = async { tokio::join!(up, down) };
    tokio::pin!(both);
    let mut cut_seen = cut_rx.clone();
    tokio::select! {
        _ = &mut both => {}
        () = async { drop(cut_seen.wait_for(|c| *c).await) } => {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut both).await;
        }
    }
    Ok(())
}

/// Copies one direction with latency, bandwidth, stall and cut applied. A reader stamps each
/// read on arrival and a writer delivers it when its time comes, so latency delays bytes
/// without slowing their flow. A cut in either direction (`cut_tx`) ends both writers; the
/// readers drain until their end of stream.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: CutPoint,
    shared: Arc<Shared>,
    upstream: bool,
    cut_tx: Arc<tokio::sync::watch::Sender<bool>>,
    mut cut_rx: tokio::sync::watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>, bool)>(64);
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut forwarding = true;
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if !forwarding {
                continue;
            }
            let (n, last) = match cut.keep(&buf[..n]) {
                Some(k) => (k, true),
                None => (n, false),
            };
            if tx
                .send((Instant::now(), buf[..n].to_vec(), last))
                .await
                .is_err()
            {
                forwarding = false;
            }
            forwarding &= !last;
        }
    };
    let writer = async move {
        loop {
            let item = tokio::select! {
                item = rx.recv() => item,
                () = async { drop(cut_rx.wait_for(|c| *c).await) } => None,
            };
            let Some((arrived, data, last)) = item else {
                break;
            };
            loop {
                let f = shared.faults();
                if !f.stalled {
                    tokio::time::sleep_until((arrived + f.latency).into()).await;
                    if let Some(rate) = f.bytes_per_sec.filter(|r| *r > 0) {
                        let secs = data.len() as f64 / rate as f64;
                        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let was_cut = *cut_rx.borrow();
            if was_cut || to.write_all(&data).await.is_err() {
                break;
            }
            let counter = if upstream { &shared.up } else { &shared.down };
            counter.fetch_add(data.len() as u64, Ordering::SeqCst);
            if last {
                shared.cuts.fetch_add(1, Ordering::SeqCst);
                cut_tx.send_replace(true);
                break;
            }
        }
        // The far side gets the end of the stream: after a cut, the connection is over.
        let _ = to.shutdown().await;
        // Nothing more goes this way; dropping the queue lets the reader drain.
        rx.close();
    };
    tokio::join!(reader, writer);
}
