use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use yunhan_model::ApiError;

/// An answer of the API: the JSON as the server sent it (what `-o json`
/// prints) and the same read as the model's type (what the client looks at).
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub raw: Value,
    pub value: T,
}

impl<T: DeserializeOwned> Answer<T> {
    /// Reads `raw` as a `T`; a field the model does not know, or a missing
    /// one it needs, is an error rather than a blank cell.
    pub fn read(raw: Value) -> Result<Answer<T>, ClientError> {
        match T::deserialize(&raw) {
            Ok(value) => Ok(Answer { raw, value }),
            Err(e) => Err(ClientError::Unreadable(e.to_string())),
        }
    }
}

impl<T: Serialize> Answer<T> {
    /// A view the client made itself, printed by `-o json` as it serialises.
    pub fn made(value: T) -> Answer<T> {
        let raw = serde_json::to_value(&value).unwrap_or(Value::Null);
        Answer { raw, value }
    }
}

impl<T> std::ops::Deref for Answer<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One page of a list endpoint.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Value>,
    next_page_token: Option<String>,
}

/// A thin JSON client for the REST API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}", .0.message)]
    Api(ApiError, u16),
    #[error("cannot reach the Yunhan API at {endpoint}: {why}.\nIs the server running? Start an all-in-one cloud with 'yunhan up', or point --endpoint / YUNHAN_ENDPOINT at your server.")]
    Unreachable { endpoint: String, why: String },
    #[error("the Yunhan API at {endpoint} closed the connection while this client was still sending its {bytes}-byte request ({why}).\nThe request is probably larger than the server accepts: {limit}.")]
    ClosedWhileSending {
        endpoint: String,
        bytes: u64,
        why: String,
        /// Which server limit the request probably exceeded.
        limit: &'static str,
    },
    #[error("unexpected response from the API ({status}): {body}")]
    Protocol { status: u16, body: String },
    #[error("the API answered with something this client cannot read ({0}); are the client and the server the same version?")]
    Unreadable(String),
    #[error("{0}")]
    Usage(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

impl Client {
    pub fn new(endpoint: &str, token: &str) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client with only timeouts set always builds");
        Client {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ClientError> {
        let url = format!("{}{}", self.endpoint, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        let mut sent = None;
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b)
                .map_err(|e| ClientError::Usage(format!("cannot encode the request: {e}")))?;
            sent = Some((bytes.len() as u64, BODY_LIMIT));
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let resp = req.send().await.map_err(|e| self.send_error(&e, sent))?;
        Self::decode(&self.endpoint, resp).await
    }

    /// Streams `file` as the body of a PUT (image uploads).
    pub async fn upload(
        &self,
        path: &str,
        file: &std::path::Path,
    ) -> Result<Option<Value>, ClientError> {
        self.put_file(path, file, "application/octet-stream", IMAGE_LIMIT)
            .await
    }

    /// Streams `file` as an object of a bucket (`PUT …/objects/KEY`), with its length
    /// declared (the server streams it on to the S3 gateway).
    pub async fn upload_object(
        &self,
        path: &str,
        file: &std::path::Path,
        content_type: &str,
    ) -> Result<Option<Value>, ClientError> {
        self.put_file(path, file, content_type, OBJECT_LIMIT).await
    }

    /// PUTs `file` streamed, with its content type and length; `limit` names the server
    /// limit a refusal for size is about.
    async fn put_file(
        &self,
        path: &str,
        file: &std::path::Path,
        content_type: &str,
        limit: &'static str,
    ) -> Result<Option<Value>, ClientError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", file.display())))?;
        let size = f.metadata().await.map_or(0, |m| m.len());
        let url = format!("{}{}", self.endpoint, path);
        let resp = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .timeout(Duration::from_secs(3600))
            .body(reqwest::Body::from(f))
            .send()
            .await
            .map_err(|e| self.send_error(&e, Some((size, limit))))?;
        Self::decode(&self.endpoint, resp).await
    }

    /// A GET whose answer's body is the caller's to read (downloads); an error
    /// answer is decoded as usual.
    pub async fn download(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.endpoint, path);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .map_err(|e| self.send_error(&e, None))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        match Self::decode(&self.endpoint, resp).await {
            Err(e) => Err(e),
            Ok(body) => Err(ClientError::Protocol {
                status: 0,
                body: body.map(|b| b.to_string()).unwrap_or_default(),
            }),
        }
    }

    /// A request that failed before its answer: unreachable when no connection
    /// was made (refused, no route, timeout); when one was and the request had
    /// a body (`sent`: its size and the server limit it may exceed), the server
    /// hung up while it was being sent: a server answering 413 before reading
    /// a too-large body does that, and then the answer is often lost.
    fn send_error(&self, e: &reqwest::Error, sent: Option<(u64, &'static str)>) -> ClientError {
        let endpoint = self.endpoint.clone();
        let why = root_cause(e);
        match sent {
            Some((bytes, limit)) if !e.is_connect() && !e.is_timeout() => {
                ClientError::ClosedWhileSending {
                    endpoint,
                    bytes,
                    why,
                    limit,
                }
            }
            _ => ClientError::Unreachable { endpoint, why },
        }
    }

    /// A chunk of an instance's console log from `offset`, and the next offset.
    pub async fn console(&self, id: &str, offset: u64) -> Result<(String, u64), ClientError> {
        let url = format!(
            "{}/v1/instances/{id}/console?offset={offset}",
            self.endpoint
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                why: root_cause(&e),
            })?;
        let status = resp.status().as_u16();
        let next = resp
            .headers()
            .get("x-console-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset);
        let text = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(match serde_json::from_str::<ApiError>(&text) {
                Ok(e) => ClientError::Api(e, status),
                Err(_) => ClientError::Protocol { status, body: text },
            });
        }
        Ok((text, next))
    }

    async fn decode(endpoint: &str, resp: reqwest::Response) -> Result<Option<Value>, ClientError> {
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ClientError::Unreachable {
            endpoint: endpoint.to_string(),
            why: root_cause(&e),
        })?;
        if (200..300).contains(&status) {
            if text.is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|_| ClientError::Protocol { status, body: text });
        }
        match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => Err(ClientError::Api(e, status)),
            Err(_) => Err(ClientError::Protocol { status, body: text }),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self
            .request(reqwest::Method::GET, path, None)
            .await?
            .unwrap_or(Value::Null))
    }

    /// Every item of a list endpoint, following page tokens.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &token {
                Some(t) => format!("{path}{sep}limit=1000&page_token={t}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page: Page = Answer::read(self.get(&url).await?)?.value;
            items.extend(page.items);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(items),
            }
        }
    }

    /// `GET path` read as a `T`.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>, ClientError> {
        Answer::read(self.get(path).await?)
    }

    /// Every item of a list endpoint, each read as a `T`.
    pub async fn list_as<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Vec<Answer<T>>, ClientError> {
        self.list(path)
            .await?
            .into_iter()
            .map(Answer::read)
            .collect()
    }

    /// Sends `body` as JSON and reads the answer as a `T`.
    pub async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<Answer<T>, ClientError> {
        let body = serde_json::to_value(body)
            .map_err(|e| ClientError::Usage(format!("cannot encode the request: {e}")))?;
        let answer = self.request(method, path, Some(&body)).await?;
        Answer::read(answer.unwrap_or(Value::Null))
    }
}

/// The server limit a JSON request may exceed.
const BODY_LIMIT: &str = "its request body limit (the server's --body-limit, 1 MiB by default)";
/// The server limit an image upload may exceed.
const IMAGE_LIMIT: &str = "its largest image upload, or the project's image quota";
const OBJECT_LIMIT: &str = "its largest object upload (5 GiB), or a quota of the bucket or project";

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// An interactive console session over the API's WebSocket.
pub type ConsoleStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Client {
    /// Opens `GET /v1/instances/{id}/console/attach` as a WebSocket.
    pub async fn attach_console(&self, id: &str) -> Result<ConsoleStream, ClientError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let ws_url = match self.endpoint.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}/v1/instances/{id}/console/attach"),
            None => {
                return Err(ClientError::Usage(
                    "interactive consoles need an http:// endpoint; use 'yunhan vm console --read-only'".into(),
                ))
            }
        };
        let mut req = ws_url
            .into_client_request()
            .map_err(|e| ClientError::Usage(format!("bad console URL: {e}")))?;
        let auth = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| ClientError::Usage("the token is not a valid header value".into()))?;
        req.headers_mut().insert("authorization", auth);
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                Err(match serde_json::from_str::<ApiError>(&body) {
                    Ok(e) => ClientError::Api(e, status),
                    Err(_) => ClientError::Protocol { status, body },
                })
            }
            Err(e) => Err(ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                why: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_server_hanging_up_on_a_large_body_is_not_called_unreachable() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((conn, _)) = l.accept().await {
                drop(conn);
            }
        });
        let c = Client::new(&format!("http://{addr}"), "t");
        let big = json!({"spec": {"user_data": "x".repeat(8 << 20)}});
        let e = c
            .request(reqwest::Method::POST, "/v1/instances", Some(&big))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::ClosedWhileSending { bytes, .. } if bytes > 8 << 20),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains("--body-limit"), "{text}");
        assert!(!text.contains("cannot reach"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = Client::new(&format!("http://{addr}"), "t");
        let e = c
            .request(reqwest::Method::POST, "/v1/instances", Some(&json!({})))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("Is the server running?"), "{e}");
    }
}
