//! A webhook receiver on loopback: records every request it gets and
//! answers each with the status its script chooses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as received, with the status it was answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// `webhook-id`.
    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A script's answer that holds the request unanswered.
pub const HANG: u16 = 0;

type Script = dyn Fn(&Received, usize) -> u16 + Send + Sync;

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    log: Arc<Mutex<Vec<Received>>>,
    _accepting: Arc<Accepting>,
}

/// Stops accepting connections when the last clone of its receiver goes.
struct Accepting(tokio::task::JoinHandle<()>);

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Receiver {
    /// Answers every request 204.
    pub async fn start() -> Self {
        Self::scripted(|_, _| 204).await
    }

    /// Answers with `script(request, how many requests came before it)`,
    /// or never, for [`HANG`].
    pub async fn scripted(
        script: impl Fn(&Received, usize) -> u16 + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let task = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(serve(stream, Arc::clone(&log), Arc::clone(&script)));
                }
            }
        });
        Self {
            url,
            log,
            _accepting: Arc::new(Accepting(task)),
        }
    }

    /// Every request so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The accepted (2xx) requests so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(Received::accepted)
            .collect()
    }
}

/// Serves one connection: HTTP/1.1 requests with a Content-Length body.
async fn serve(stream: tokio::net::TcpStream, log: Arc<Mutex<Vec<Received>>>, script: Arc<Script>) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut received = Received {
            path,
            headers,
            body: String::from_utf8(body).unwrap(),
            status: 0,
            at: std::time::Instant::now(),
        };
        let status = {
            let mut log = log.lock().unwrap();
            let status = script(&received, log.len());
            received.status = status;
            log.push(received);
            status
        };
        if status == HANG {
            // Never answers: the sender's timeout has to end it.
            std::future::pending::<()>().await;
        }
        let answer = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
        if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
