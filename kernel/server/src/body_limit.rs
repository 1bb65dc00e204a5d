//! `server.max_body_bytes` on the bytes actually read, whatever the framing: a body declared
//! too large is refused before any of it is read, and a chunked body (or one that lies about
//! its length) fails the read at the limit, and the request is answered 413 whichever surface
//! read it. Extractors' own limits only cover axum's extractors; this covers every reader.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use super::AppState;
use super::error::ApiError;

pub async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let max = state.config.max_body_bytes as u64;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return ApiError::payload_too_large().into_response();
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let request = request
        .map(|body| Body::new(Capped { inner: body, remaining: max, exceeded: Arc::clone(&exceeded) }));
    let response = next.run(request).await;
    if exceeded.load(Ordering::Relaxed) {
        return ApiError::payload_too_large().into_response();
    }
    response
}

/// A body that fails once more than `remaining` bytes came through, and says so in `exceeded`.
struct Capped {
    inner: Body,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than server.max_body_bytes")]
struct TooLarge;

impl http_body::Body for Capped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let length = data.len() as u64;
            if length > self.remaining {
                self.exceeded.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(axum::Error::new(TooLarge))));
            }
            self.remaining -= length;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
