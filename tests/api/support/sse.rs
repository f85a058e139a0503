//! Server-sent event clients.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::app::TestApp;
use super::wait::WAIT;

impl TestApp {
    /// Opens an SSE stream for `user`, resuming via header and/or query.
    pub async fn sse(&self, user: &str, header: Option<&str>, query: Option<&str>) -> SseClient {
        let token = self.token(user, &[]);
        self.sse_with_token(&token, header, query).await
    }

    pub async fn sse_with_token(
        &self,
        token: &str,
        header: Option<&str>,
        query: Option<&str>,
    ) -> SseClient {
        let mut url = format!("{}?access_token={token}", self.url("/v1/me/stream"));
        if let Some(q) = query {
            url.push_str(&format!("&last_event_id={q}"));
        }
        let mut request = self.http.get(url);
        if let Some(h) = header {
            request = request.header("Last-Event-ID", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseClient {
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }
}

type EventStream = Pin<
    Box<
        dyn Stream<Item = Result<SseEvent, eventsource_stream::EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

pub struct SseClient {
    events: EventStream,
}

impl SseClient {
    /// The next event; panics after `WAIT`. `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.events.next())
            .await
            .expect("an SSE event within the timeout")
            .map(|r| r.expect("a well-formed SSE stream"))
    }

    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<SseEvent>, ()> {
        match tokio::time::timeout(wait, self.events.next()).await {
            Ok(Some(Ok(e))) => Ok(Some(e)),
            Ok(Some(Err(_))) | Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// `n` events, in order.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next().await.expect("stream still open"));
        }
        out
    }

    /// Waits until the server ends the stream.
    pub async fn ended(&mut self) {
        if let Some(e) = self.next().await {
            panic!("expected the stream to end, got {e:?}");
        }
    }
}

pub fn data(e: &SseEvent) -> Value {
    serde_json::from_str(&e.data).unwrap()
}
