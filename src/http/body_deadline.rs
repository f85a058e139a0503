//! Slow-body protection: a request body must arrive within
//! `server.client_request_timeout_ms` of its head.
//!
//! actix cuts a connection whose first request head is too slow (408), but
//! nothing bounds how long a body may trickle in. This middleware gives
//! every body a deadline: past it the body reads fail, the request answers
//! 408 and the connection is closed. Requests without a body (streams,
//! WebSocket handshakes, long-polls) are untouched, so long-lived
//! connections are never cut by it.
//!
//! A handler may also answer without reading the body at all (a 401, or
//! `/healthz` sent with a body). actix would then keep reading and
//! discarding the rest of the body with no timer, for as long as the client
//! trickles it. So when the answer is ready, what has already arrived is
//! discarded; if the body has not ended by then, the answer closes the
//! connection instead of waiting for the rest.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::{FutureExt, Stream, StreamExt};

use crate::http::error::ApiError;

/// Wraps the body of `req` (if it has one) so that reading it fails once
/// `timeout` has passed; a request whose body ran late answers 408 and
/// its connection closes.
pub async fn enforce(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    timeout: Duration,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    if !has_body(&req) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let late = Rc::new(Cell::new(false));
    let ended = Rc::new(Cell::new(false));
    // Shared, so that an unread body outlives the handler (see below).
    let inner = Rc::new(RefCell::new(req.take_payload()));
    let reader = Rc::clone(&inner);
    let mut deadline = Box::pin(tokio::time::sleep(timeout));
    let (late_flag, ended_flag) = (Rc::clone(&late), Rc::clone(&ended));
    let mut done = false;
    let body = futures_util::stream::poll_fn(move |cx| {
        if done {
            return Poll::Ready(None);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            done = true;
            late_flag.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body arrived too slowly",
            )))));
        }
        let next = Pin::new(&mut *reader.borrow_mut()).poll_next(cx);
        done = matches!(next, Poll::Ready(None));
        ended_flag.set(done);
        next
    });
    req.set_payload(Payload::Stream {
        payload: Box::pin(body),
    });
    let mut response = next.call(req).await?;
    if !late.get() {
        if ended.get() || discard_arrived(&mut inner.borrow_mut()) {
            return Ok(response.map_into_left_body());
        }
        // The handler did not read the body and the rest has not arrived:
        // answer, then close rather than wait for it (see `HoldingBody`).
        response
            .response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        let response = response.map_body(|_, body| HoldingBody {
            body: BoxBody::new(body),
            _unread: inner,
        });
        return Ok(response.map_into_right_body());
    }
    // Whatever the handler made of the failed read, the answer is 408, and
    // the rest of the body is not waited for.
    let (request, _) = response.into_parts();
    let mut answer = ApiError::RequestTimeout(format!(
        "the request body did not arrive within {} ms",
        timeout.as_millis()
    ))
    .error_response();
    answer
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    // actix closes the connection after an answer if the request body is
    // unread and still alive when the answer ends; dropped, it would keep
    // reading (draining) a chunked body for as long as the client trickles
    // it. So the answer holds the body until it is sent.
    let answer = answer.map_body(|_, body| HoldingBody {
        body,
        _unread: inner,
    });
    Ok(ServiceResponse::new(request, answer).map_into_right_body())
}

/// Discards the part of an unread body that has already arrived, without
/// waiting for more; true when that was the whole body.
fn discard_arrived(payload: &mut Payload) -> bool {
    loop {
        match payload.next().now_or_never() {
            Some(Some(Ok(_))) => continue,
            Some(None) => return true,
            Some(Some(Err(_))) | None => return false,
        }
    }
}

/// A response body that keeps the unread request body alive.
struct HoldingBody {
    body: BoxBody,
    _unread: Rc<RefCell<Payload>>,
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// A body announced by length (non-zero) or by chunked encoding; an
/// upgrade (WebSocket) is never treated as one.
fn has_body(req: &ServiceRequest) -> bool {
    if req.head().upgrade() {
        return false;
    }
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}
