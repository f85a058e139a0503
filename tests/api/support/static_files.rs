//! Test pages on an origin of their own, as an application using Herald has
//! (so the page reaches Herald across origins, through its CORS settings).
//! A minimal HTTP/1.1 file server: GET only, one request per connection.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves the files of `roots` (the first that has a path wins) until dropped.
pub struct StaticFiles {
    pub origin: String,
    task: JoinHandle<()>,
}

impl StaticFiles {
    pub async fn serve(roots: Vec<PathBuf>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let roots = roots.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("/");
                    let path = path
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .trim_start_matches('/');
                    let file = (!path.contains(".."))
                        .then(|| roots.iter().map(|r| r.join(path)).find(|f| f.is_file()))
                        .flatten();
                    let answer = match file.and_then(|f| Some((std::fs::read(&f).ok()?, f))) {
                        Some((body, f)) => {
                            let kind = match f.extension().and_then(|e| e.to_str()) {
                                Some("html") => "text/html; charset=utf-8",
                                Some("js") => "text/javascript; charset=utf-8",
                                Some("css") => "text/css; charset=utf-8",
                                _ => "application/octet-stream",
                            };
                            let mut answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                                 Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            answer.extend_from_slice(&body);
                            answer
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = socket.write_all(&answer).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { origin, task }
    }
}

impl Drop for StaticFiles {
    fn drop(&mut self) {
        self.task.abort();
    }
}
