//! Web console sessions through the router: logins by password, API key and one-time
//! link; the cookie's attributes; CSRF and cross-site refusals; logout, expiry, a new
//! password ending sessions; a member's session refused admin endpoints; the console's
//! pages under a strict Content-Security-Policy (docs/console.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use yunhan_store::objects::Objects;

struct Api {
    app: Router,
    admin_token: String,
    objects: Objects,
}

async fn api(session_ttl: Duration) -> Api {
    let store = Arc::new(yunhan_store::MemStore::new());
    let objects = Objects::new(store.clone());
    let boot = yunhan_api::bootstrap(&objects).await.unwrap().unwrap();
    let config = yunhan_api::ApiConfig {
        session_ttl,
        ..Default::default()
    };
    Api {
        app: yunhan_api::router(store, config),
        admin_token: boot.admin_token,
        objects,
    }
}

async fn body_of(resp: Response<Body>) -> Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

impl Api {
    async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(req).await.unwrap()
    }

    async fn login(&self, body: Value) -> (StatusCode, Option<String>, Value) {
        let req = Request::post("/v1/sessions")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.send(req).await;
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .map(|c| c.to_str().unwrap().to_string());
        (resp.status(), cookie, body_of(resp).await)
    }

    /// A session (cookie value, CSRF token) logged in with `body`.
    async fn session(&self, body: Value) -> (String, String) {
        let (status, cookie, info) = self.login(body).await;
        assert_eq!(status, StatusCode::CREATED, "{info}");
        let cookie = cookie.expect("a session cookie");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        let value = cookie.split(';').next().unwrap().to_string();
        (value, info["csrf_token"].as_str().unwrap().to_string())
    }

    /// `method path` with the session cookie, optional CSRF token and Origin.
    async fn with_cookie(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        csrf: Option<&str>,
        origin: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie)
            .header(header::HOST, "127.0.0.1:7070");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let req = if method == "POST" {
            req.header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"metadata": {"name": "v1"}, "spec": {"cidr": "10.9.0.0/16"}})
                        .to_string(),
                ))
        } else {
            req.body(Body::empty())
        };
        let resp = self.send(req.unwrap()).await;
        (resp.status(), body_of(resp).await)
    }

    async fn set_password(&self, user: &str, password: &str) -> StatusCode {
        let req = Request::put(format!("/v1/users/{user}/password"))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.admin_token),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "password": password }).to_string()))
            .unwrap();
        self.send(req).await.status()
    }

    /// A member `name` with `password`, in a project of their own.
    async fn member(&self, name: &str, password: &str) {
        let admin = format!("Bearer {}", self.admin_token);
        let post = |path: &str, body: Value| {
            Request::post(path)
                .header(header::AUTHORIZATION, admin.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let resp = self
            .send(post(
                "/v1/projects",
                json!({"metadata": {"name": format!("{name}-project")}, "spec": {}}),
            ))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let p2 = body_of(resp).await["metadata"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let user = json!({"metadata": {"name": name}, "spec": {"project": p2, "role": "member"}});
        assert_eq!(
            self.send(post("/v1/users", user)).await.status(),
            StatusCode::CREATED
        );
        assert_eq!(
            self.set_password(name, password).await,
            StatusCode::NO_CONTENT
        );
    }
}

#[tokio::test]
async fn a_password_login_gives_a_cookie_session_that_needs_its_csrf_token_to_change_things() {
    let api = api(Duration::from_secs(3600)).await;
    assert_eq!(
        api.set_password("admin", "short").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.set_password("admin", "correct horse").await,
        StatusCode::NO_CONTENT
    );
    let (status, cookie, err) = api
        .login(json!({"username": "admin", "password": "wrong one"}))
        .await;
    assert_eq!(
        (status, cookie, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, None, Some("unauthenticated"))
    );
    let (cookie, csrf) = api
        .session(json!({"username": "admin", "password": "correct horse"}))
        .await;

    let (status, me) = api
        .with_cookie("GET", "/v1/session", &cookie, None, None)
        .await;
    assert_eq!(
        (status, me["username"].as_str(), me["role"].as_str()),
        (StatusCode::OK, Some("admin"), Some("admin"))
    );
    assert_eq!(me["csrf_token"].as_str(), Some(csrf.as_str()));
    // Reads need only the cookie; changes need the CSRF token too.
    let (status, _) = api
        .with_cookie("GET", "/v1/vpcs", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = api
        .with_cookie("POST", "/v1/vpcs", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("X-CSRF-Token"),
        "{err}"
    );
    let (status, _) = api
        .with_cookie(
            "POST",
            "/v1/vpcs",
            &cookie,
            Some("0".repeat(64).as_str()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // From another site's page: refused even with the token.
    let evil = Some("http://evil.example");
    let (status, err) = api
        .with_cookie("POST", "/v1/vpcs", &cookie, Some(&csrf), evil)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    let (status, _) = api
        .with_cookie("GET", "/v1/vpcs", &cookie, None, evil)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let same = Some("http://127.0.0.1:7070");
    let (status, vpc) = api
        .with_cookie("POST", "/v1/vpcs", &cookie, Some(&csrf), same)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{vpc}");
    // The console's writes are in the audit trail like the CLI's, by the session's user:
    // the refused ones with their 403, the create with the new object's id.
    let (status, events) = api
        .with_cookie("GET", "/v1/events?since=10m&kind=vpcs", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let items = events["items"].as_array().unwrap();
    let outcomes: Vec<(u64, &str)> = (items.iter())
        .map(|e| {
            (
                e["outcome"].as_u64().unwrap(),
                e["target"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let vpc_id = vpc["metadata"]["id"].as_str().unwrap();
    assert_eq!(
        outcomes,
        [(403, ""), (403, ""), (403, ""), (201, vpc_id)],
        "{events}"
    );
    assert!(
        items.iter().all(|e| e["actor"] == me["user"]),
        "{events} {me}"
    );

    // Logout ends the session.
    let (status, _) = api
        .with_cookie("DELETE", "/v1/session", &cookie, Some(&csrf), same)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, err) = api
        .with_cookie("GET", "/v1/vpcs", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
}

#[tokio::test]
async fn api_keys_and_one_time_links_log_in_and_a_new_password_ends_sessions() {
    let api = api(Duration::from_secs(3600)).await;
    let (cookie, csrf) = api.session(json!({"token": api.admin_token})).await;
    let (status, link) = api
        .with_cookie("POST", "/v1/sessions/links", &cookie, Some(&csrf), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let code = link["login_link"].as_str().unwrap();
    let (by_link, _) = api.session(json!({"login_link": code})).await;
    // A link works once.
    let (status, _, err) = api.login(json!({"login_link": code})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    let (status, _, err) = api
        .login(json!({"token": "yh_nope", "login_link": code}))
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    assert_eq!(
        api.set_password("admin", "a new password").await,
        StatusCode::NO_CONTENT
    );
    for c in [&cookie, &by_link] {
        let (status, _) = api.with_cookie("GET", "/v1/session", c, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_members_session_is_refused_admin_endpoints_and_sessions_expire() {
    let api = api(Duration::from_secs(1)).await;
    api.member("bob", "bobs password").await;
    let (cookie, _) = api
        .session(json!({"username": "bob", "password": "bobs password"}))
        .await;
    let (status, _) = api
        .with_cookie("GET", "/v1/hosts", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, me) = api
        .with_cookie("GET", "/v1/whoami", &cookie, None, None)
        .await;
    assert_eq!(
        (status, me["role"].as_str()),
        (StatusCode::OK, Some("member"))
    );
    // The session lasts one second from its login.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, err) = api
            .with_cookie("GET", "/v1/whoami", &cookie, None, None)
            .await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(
                err["message"].as_str().unwrap().contains("expired"),
                "{err}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the session did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Expired sessions are swept from the store at the next login.
    let _ = api.session(json!({"token": api.admin_token})).await;
    let left = yunhan_store::StoreExt::range_all(
        api.objects.store().as_ref(),
        yunhan_store::objects::SESSION_PREFIX,
    )
    .await
    .unwrap();
    assert_eq!(left.len(), 1);
}

#[tokio::test]
async fn console_pages_carry_a_strict_content_security_policy() {
    let api = api(Duration::from_secs(60)).await;
    for path in [
        "/console/",
        "/console/vms/ins-1",
        "/console/assets/no-such.js",
    ] {
        let resp = api
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        let csp = resp.headers().get(header::CONTENT_SECURITY_POLICY).unwrap();
        assert_eq!(csp, yunhan_api::CONTENT_SECURITY_POLICY);
        assert!(csp.to_str().unwrap().contains("script-src 'self';"));
        assert_eq!(resp.headers().get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    }
    let resp = api
        .send(
            Request::get("/console/assets/no-such.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = api
        .send(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.headers().get(header::LOCATION).unwrap(), "/console/");
}

#[tokio::test]
async fn changing_your_own_password_keeps_your_session_and_ends_the_others() {
    let api = api(Duration::from_secs(3600)).await;
    api.member("bob", "bobs password").await;
    let login = json!({"username": "bob", "password": "bobs password"});
    let (other, _) = api.session(login.clone()).await;
    let (cookie, csrf) = api.session(login).await;
    let change = |current: &str| {
        let body = json!({"password": "bobs new password", "current_password": current});
        Request::put("/v1/users/bob/password")
            .header(header::COOKIE, cookie.as_str())
            .header("x-csrf-token", csrf.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let wrong = api.send(change("a wrong guess")).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let right = api.send(change("bobs password")).await;
    assert_eq!(right.status(), StatusCode::NO_CONTENT);
    let (status, _) = api
        .with_cookie("GET", "/v1/whoami", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .with_cookie("GET", "/v1/whoami", &other, None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Users are the admins' business.
    let (status, err) = api
        .with_cookie("GET", "/v1/users", &cookie, None, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
}
