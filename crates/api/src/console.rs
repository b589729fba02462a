//! The serial console log of an instance, read from the file the agent
//! publishes in `status.console_log`. (It is a path on the instance's host:
//! this works when the API server shares the host's filesystem, as with
//! `yunhan up` and agents on the same machine.)

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use yunhan_model::{ApiError, ErrorCode, Instance};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::QueryParams;
use crate::lookup::{find_visible, find_writable};
use crate::Shared;

const MAX_CHUNK: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Byte offset to read from (the previous response's `X-Console-Offset`).
    #[serde(default)]
    offset: u64,
    project: Option<String>,
}

/// `GET /v1/instances/{id}/console?offset=N`: up to 1 MiB of the serial log
/// from `offset`, as text; `X-Console-Offset` is where to continue.
pub async fn log(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ConsoleQuery>,
) -> Result<Response> {
    let inst = find_visible::<Instance>(&s, &p, &id, q.project.as_deref()).await?;
    let path = inst
        .status
        .console_log
        .clone()
        .ok_or_else(|| no_console_yet(&inst))?;
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => {
            return Err(ApiError::new(ErrorCode::Conflict, "the console log is not readable from this API server (it lives on the instance's host)").into())
        }
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = q.offset.min(len);
    let _ = f.seek(std::io::SeekFrom::Start(start)).await;
    let mut buf = Vec::new();
    let _ = f.take(MAX_CHUNK).read_to_end(&mut buf).await;
    let next = start + buf.len() as u64;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::HeaderName::from_static("x-console-offset"),
                next.to_string(),
            ),
        ],
        String::from_utf8_lossy(&buf).into_owned(),
    )
        .into_response())
}

/// `GET /v1/instances/{id}/console/attach` (WebSocket): an interactive
/// serial console. Bytes typed by the client go to the guest's ttyS0 through
/// the QEMU chardev socket the agent publishes in `status.console_socket`;
/// the guest's output comes back as binary messages.
pub async fn attach(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ConsoleQuery>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response> {
    let inst = find_writable::<Instance>(&s, &p, &id, q.project.as_deref()).await?;
    let path = inst
        .status
        .console_socket
        .clone()
        .ok_or_else(|| no_console_yet(&inst))?;
    let unix = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
        ApiError::new(ErrorCode::Conflict, format!("the console is not reachable from this API server ({e}); is the VM running on this host?"))
    })?;
    Ok(ws.on_upgrade(move |socket| pipe(socket, unix)))
}

/// 409: the instance has no console yet (no agent has started it).
fn no_console_yet(inst: &Doc<Instance>) -> HttpError {
    let (name, phase) = (&inst.metadata.name, &inst.status.phase);
    let msg = format!("instance {name:?} has no console yet (it is {phase:?})");
    ApiError::new(ErrorCode::Conflict, msg).into()
}

async fn pipe(ws: axum::extract::ws::WebSocket, unix: tokio::net::UnixStream) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut unix_rx, mut unix_tx) = unix.into_split();
    let to_guest = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let bytes = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if unix_tx.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    let from_guest = async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match unix_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    };
    tokio::select! {
        _ = to_guest => {}
        _ = from_guest => {}
    }
}
