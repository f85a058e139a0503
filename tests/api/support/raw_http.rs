//! Raw HTTP/1.1 over a plain TCP connection, for what an HTTP client
//! library will not send.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::app::TestApp;
use super::wait::WAIT;

/// `127.0.0.1:port` of the application.
pub fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Writes `request` on a fresh connection (write errors are ignored: the
/// server may stop reading early) and returns everything the server sends
/// until it closes the connection.
pub async fn raw_exchange(app: &TestApp, request: Vec<u8>) -> String {
    let stream = TcpStream::connect(host(app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let answer = read_until_closed(&mut read).await;
    drop(writer.await);
    answer
}

/// Everything readable until the peer closes; panics after `WAIT`.
pub async fn read_until_closed(read: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(WAIT, read.read(&mut buf))
            .await
            .expect("the server closes the connection in time")
        {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&answer).into_owned(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}
