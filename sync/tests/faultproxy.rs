//! The fault-injecting proxy behaves like the bad network it stands in for: each fault is
//! checked against a loopback echo server, with nothing else in the way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_sync::faultproxy::{Cut, FaultProxy, Faults};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A loopback server that sends back every byte it reads, and keeps a count of them.
async fn echo_server() -> TestResult<(SocketAddr, tokio::sync::mpsc::UnboundedReceiver<usize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0;
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    total += n;
                }
                let _ = tx.send(total);
            });
        }
    });
    Ok((addr, rx))
}

/// Sends `data` and reads back what arrives until the end of the stream or `limit` bytes.
async fn round_trip(addr: SocketAddr, data: &[u8], limit: usize) -> TestResult<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(data).await?;
        Ok::<_, std::io::Error>(())
    };
    let receive = async {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < limit {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    };
    let (sent, got) = tokio::join!(send, receive);
    let _ = sent;
    Ok(got)
}

#[tokio::test]
async fn without_faults_every_byte_goes_through_both_ways() -> TestResult {
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let got = round_trip(proxy.addr(), &data, data.len()).await?;
    assert_eq!(got, data);
    assert_eq!(proxy.bytes(), (data.len() as u64, data.len() as u64));
    Ok(())
}

#[tokio::test]
async fn latency_is_added_each_way_without_limiting_throughput() -> TestResult {
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    proxy.set(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    });
    let started = Instant::now();
    let got = round_trip(proxy.addr(), b"ping", 4).await?;
    let rtt = started.elapsed();
    assert_eq!(got, b"ping");
    assert!(
        rtt >= Duration::from_millis(200),
        "one round trip took {rtt:?}"
    );
    // Many writes in flight are delayed once, not once each: a long link, not a slow one.
    let data = vec![7u8; 4_000_000];
    let started = Instant::now();
    let got = round_trip(proxy.addr(), &data, data.len()).await?;
    assert_eq!(got.len(), data.len());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "4 MB at 100 ms each way took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn the_bandwidth_limit_slows_a_transfer_to_its_rate() -> TestResult {
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    proxy.set(Faults {
        bytes_per_sec: Some(200_000),
        ..Faults::default()
    });
    let data = vec![1u8; 100_000];
    let started = Instant::now();
    let got = round_trip(proxy.addr(), &data, data.len()).await?;
    assert_eq!(got.len(), data.len());
    // 100 kB at 200 kB/s: at least half a second (both directions overlap).
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_stalled_link_keeps_the_connection_and_delivers_nothing_until_it_recovers() -> TestResult
{
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    proxy.set(Faults {
        stalled: true,
        ..Faults::default()
    });
    let mut s = TcpStream::connect(proxy.addr()).await?;
    s.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
    assert!(early.is_err(), "bytes came through a stalled link");
    proxy.set(Faults::default());
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await??;
    assert_eq!(&buf, b"hello");
    Ok(())
}

#[tokio::test]
async fn an_answer_cut_mid_way_delivers_exactly_its_first_bytes_then_the_end() -> TestResult {
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    proxy.cut_next([Cut::ResponseAfterBytes(1_000)]);
    let data = vec![3u8; 50_000];
    let got = round_trip(proxy.addr(), &data, data.len()).await?;
    assert_eq!(got.len(), 1_000);
    assert_eq!(proxy.cuts(), 1);
    // The next connection is whole again.
    let got = round_trip(proxy.addr(), &data, data.len()).await?;
    assert_eq!(got.len(), data.len());
    Ok(())
}

#[tokio::test]
async fn a_request_cut_short_reaches_the_server_up_to_the_cut_then_ends() -> TestResult {
    let (server, mut totals) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    proxy.cut_next([Cut::RequestAfterBytes(700)]);
    let got = round_trip(proxy.addr(), &[9u8; 5_000], 5_000).await?;
    assert!(got.len() <= 700, "{} bytes came back", got.len());
    let served = tokio::time::timeout(Duration::from_secs(5), totals.recv()).await?;
    assert_eq!(
        served,
        Some(700),
        "the server read exactly the bytes before the cut"
    );
    assert_eq!(proxy.cuts(), 1);
    Ok(())
}

#[tokio::test]
async fn a_refusing_proxy_closes_new_connections_at_once() -> TestResult {
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    proxy.set(Faults {
        refuse: true,
        ..Faults::default()
    });
    let got = round_trip(proxy.addr(), b"anyone?", 7).await?;
    assert!(got.is_empty());
    assert_eq!(proxy.connections(), 1);
    Ok(())
}

#[tokio::test]
async fn severing_drops_the_open_connections_and_accepts_new_ones() -> TestResult {
    let (server, _) = echo_server().await?;
    let proxy = FaultProxy::start(server).await?;
    let mut s = TcpStream::connect(proxy.addr()).await?;
    s.write_all(b"one").await?;
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await?;
    proxy.sever();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "the connection stayed open: {n:?}"
    );
    let got = round_trip(proxy.addr(), b"two", 3).await?;
    assert_eq!(got, b"two");
    Ok(())
}
