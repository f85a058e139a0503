//! Raw TCP clients for what well-formed HTTP clients cannot send: trickled
//! heads and bodies, invented methods, huge headers.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How one connection ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The status of the first answer, if any came.
    pub status: Option<u16>,
    /// When the server closed the connection (EOF, reset, or a refused
    /// write), counted from the connect; None if it was still open when
    /// the client gave up.
    pub closed_after: Option<Duration>,
    pub connect_failed: bool,
}

impl Ended {
    /// "408", "no answer", or "connect failed".
    pub fn label(&self) -> String {
        if self.connect_failed {
            return "connect failed".into();
        }
        self.status
            .map_or_else(|| "no answer".into(), |s| s.to_string())
    }
}

/// The status code of an HTTP/1.x answer's first line.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

/// Connects, writes `head`, then writes one piece of `trickle` every
/// `every` for as long as the server keeps the connection and `hold` has
/// not passed, reading whatever the server sends.
pub async fn trickle(
    addr: &str,
    head: &[u8],
    trickle: &[u8],
    every: Duration,
    hold: Duration,
) -> Ended {
    let started = Instant::now();
    let Ok(Ok(stream)) = tokio::time::timeout(hold, TcpStream::connect(addr)).await else {
        return Ended {
            status: None,
            closed_after: None,
            connect_failed: true,
        };
    };
    let (mut read, mut write) = stream.into_split();
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::from_std(started + hold);
    let mut closed_after = None;
    if write.write_all(head).await.is_err() {
        closed_after = Some(started.elapsed());
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut piece = 0;
    while closed_after.is_none() {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            read = read.read(&mut buf) => match read {
                Ok(0) | Err(_) => closed_after = Some(started.elapsed()),
                Ok(n) => if answer.len() < 1024 { answer.extend_from_slice(&buf[..n]) },
            },
            _ = tick.tick(), if !trickle.is_empty() => {
                let at = piece % trickle.len();
                piece += 1;
                if write.write_all(&trickle[at..=at]).await.is_err() {
                    closed_after = Some(started.elapsed());
                }
            }
        }
    }
    Ended {
        status: status_of(&answer),
        closed_after,
        connect_failed: false,
    }
}

/// Sends `request` on a fresh connection and reads until the server closes
/// it or `within` passes: the status of the first answer.
pub async fn exchange(addr: &str, request: &[u8], within: Duration) -> Ended {
    trickle(addr, request, b"", Duration::from_secs(3600), within).await
}

/// Writes `request` and reads only the first answer's head (the connection
/// is then dropped by the caller): for requests whose server keeps the
/// connection alive.
pub async fn first_status(addr: &str, request: &[u8], within: Duration) -> Ended {
    let started = Instant::now();
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Some((status_of(&answer), true)),
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        return Some((status_of(&answer), false));
                    }
                }
            }
        }
    };
    match tokio::time::timeout(within, attempt).await {
        Ok(Some((status, closed))) => Ended {
            status,
            closed_after: closed.then(|| started.elapsed()),
            connect_failed: false,
        },
        Ok(None) => Ended {
            status: None,
            closed_after: None,
            connect_failed: true,
        },
        Err(_) => Ended {
            status: None,
            closed_after: None,
            connect_failed: false,
        },
    }
}
