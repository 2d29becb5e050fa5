use axum::body::Body;
use axum::http::Request as HttpRequest;
use tower::ServiceExt;

use super::*;
use crate::dag::DagBag;
use crate::web::{AppState, router};

#[test]
fn reads_need_a_viewer_changes_an_op_and_user_management_an_admin() {
    assert_eq!(required_role(&Method::GET, "/api/v2/dags"), Role::Viewer);
    assert_eq!(required_role(&Method::HEAD, "/"), Role::Viewer);
    assert_eq!(required_role(&Method::POST, "/dags/a/trigger"), Role::Op);
    assert_eq!(required_role(&Method::PATCH, "/api/v2/dags/a"), Role::Op);
    assert_eq!(required_role(&Method::DELETE, "/api/v2/x"), Role::Op);
    assert_eq!(required_role(&Method::GET, "/api/v2/users"), Role::Admin);
    assert_eq!(
        required_role(&Method::GET, "/api/v2/users/ann"),
        Role::Admin
    );
    assert_eq!(required_role(&Method::GET, "/api/v2/usersx"), Role::Viewer);
}

#[test]
fn only_local_paths_are_followed_after_login() {
    assert_eq!(next_path(Some("/dags/a?x=1")), "/dags/a?x=1");
    for bad in [
        None,
        Some(""),
        Some("https://evil.example/"),
        Some("//evil.example/"),
        Some("/\\evil.example"),
        Some("/a\r\nSet-Cookie: x"),
        Some("/login?next=/"),
        Some("dags/a"),
    ] {
        assert_eq!(next_path(bad), "/", "{bad:?}");
    }
}

#[test]
fn public_paths_are_the_login_health_version_static_assets_and_wake() {
    for path in [
        "/login",
        "/auth/token",
        "/health",
        "/api/v2/monitor/health",
        "/api/v2/version",
        "/api/v2/openapi.json",
        "/static/style.css",
        "/internal/wake",
    ] {
        assert!(is_public(path), "{path}");
    }
    for path in [
        "/",
        "/api/v2/dags",
        "/metrics",
        "/login/x",
        "/auth/tokens",
        "/static/../dags/a",
        "/static/",
    ] {
        assert!(!is_public(path), "{path}");
    }
}

#[test]
fn credentials_come_from_bearer_basic_or_the_session_cookie() {
    let headers = |pairs: &[(&'static str, &str)]| -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_str(v).unwrap()))
            .collect()
    };
    let basic = format!("Basic {}", STANDARD.encode("ann:pa:ss"));
    assert!(matches!(
        credentials(&headers(&[("authorization", &basic)])),
        Credentials::Basic(n, p) if n == "ann" && p == "pa:ss"
    ));
    assert!(matches!(
        credentials(&headers(&[("authorization", "bearer abc")])),
        Credentials::Bearer(t) if t == "abc"
    ));
    assert!(matches!(
        credentials(&headers(&[("authorization", "Digest x")])),
        Credentials::Malformed
    ));
    let cookie = format!("a=b; {SESSION_COOKIE}=tok; c=d");
    assert!(matches!(
        credentials(&headers(&[("cookie", &cookie)])),
        Credentials::Session(t) if t == "tok"
    ));
    assert!(matches!(credentials(&HeaderMap::new()), Credentials::None));
}

#[test]
fn the_session_cookie_is_http_only_lax_and_secure_behind_tls() {
    let plain = session_cookie_header("t", false, Duration::from_secs(60)).unwrap();
    assert_eq!(
        plain,
        "orchestrator_session=t; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
    );
    let tls = session_cookie_header("t", true, Duration::from_secs(60)).unwrap();
    assert!(tls.to_str().unwrap().ends_with("; Secure"));
    let proxied: HeaderMap = [(
        "x-forwarded-proto".parse().unwrap(),
        "https".parse().unwrap(),
    )]
    .into_iter()
    .collect();
    assert!(over_tls(&proxied) && !over_tls(&HeaderMap::new()));
}

async fn app_with_user(
    backend: crate::store::Backend,
) -> (axum::Router, Service, crate::store::testing::TestDb) {
    let db = crate::store::testing::TestDb::open(backend).await;
    let service = Service::with_bag(db.store(), DagBag::default());
    let app = router(AppState {
        service: service.clone(),
    });
    (app, service, db)
}

async fn send(app: &axum::Router, request: HttpRequest<Body>) -> Response {
    app.clone().oneshot(request).await.unwrap()
}

fn get(path: &str) -> HttpRequest<Body> {
    HttpRequest::get(path)
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap()
}

async fn without_users_everything_is_open_and_with_one_nothing_private_is(
    backend: crate::store::Backend,
) {
    let (app, service, _db) = app_with_user(backend).await;
    assert_eq!(send(&app, get("/")).await.status(), StatusCode::OK);
    service.add_user("ann", Role::Viewer, "pw").await.unwrap();
    let page = send(&app, get("/dags/a?x=1")).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers()["location"],
        "/login?next=%2Fdags%2Fa%3Fx%3D1"
    );
    // Unknown paths too: the 404 is behind the guard.
    let api = send(&app, get("/api/v2/dags")).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert!(api.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(send(&app, get("/health")).await.status().as_u16() / 100, 5);
    assert_eq!(send(&app, get("/login")).await.status(), StatusCode::OK);
}

async fn a_viewer_reads_but_is_forbidden_to_act(backend: crate::store::Backend) {
    let (app, service, _db) = app_with_user(backend).await;
    service.add_user("vic", Role::Viewer, "pw").await.unwrap();
    let who = Principal {
        name: "vic".into(),
        role: Role::Viewer,
    };
    let token = service.issue_token(&who).await.unwrap();
    let bearer = format!("Bearer {token}");
    let read = HttpRequest::get("/api/v2/nothing")
        .header("host", "localhost")
        .header("authorization", &bearer)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, read).await.status(), StatusCode::NOT_FOUND);
    let act = HttpRequest::post("/api/v2/dags/a/dagRuns")
        .header("host", "localhost")
        .header("authorization", &bearer)
        .body(Body::empty())
        .unwrap();
    let response = send(&app, act).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = axum::body::to_bytes(response.into_body(), 10_000)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["detail"],
        "user 'vic' has the role viewer; this needs op"
    );
}

async fn a_locked_out_address_gets_no_answer_from_the_basic_auth_cache(
    backend: crate::store::Backend,
) {
    let (_app, service, _db) = app_with_user(backend).await;
    service.add_user("ann", Role::Op, "pw").await.unwrap();
    let gate = Gate::new(service);
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let right = || Credentials::Basic("ann".into(), "pw".into());
    // The right password, once: now cached.
    let ann = gate.principal(right(), ip).await.unwrap();
    assert_eq!(ann.map(|p| p.name), Some("ann".to_string()));
    // Guesses until the address is held back (a loop, so a slow machine refilling the
    // quota meanwhile cannot fail the test).
    let mut limited = false;
    for _ in 0..100 {
        let guess = Credentials::Basic("ann".into(), "guess".into());
        if let Err(Refusal::RateLimited(_)) = gate.principal(guess, ip).await {
            limited = true;
            break;
        }
    }
    assert!(limited);
    let cached = gate.principal(right(), ip).await;
    assert!(matches!(cached, Err(Refusal::RateLimited(_))), "{cached:?}");
    // Another address with the same credentials is not held back.
    let other = gate.principal(right(), "192.0.2.8".parse().unwrap()).await;
    assert!(matches!(other, Ok(Some(_))), "{other:?}");
}

async fn a_wrong_method_on_auth_token_is_a_json_405(backend: crate::store::Backend) {
    let (app, _service, _db) = app_with_user(backend).await;
    let response = send(&app, get("/auth/token")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["detail"], "/auth/token does not answer GET");
    // The login page keeps its HTML 405.
    let page = send(&app, get("/logout")).await;
    assert_eq!(page.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        page.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

crate::store::testing::on_both!(
    without_users_everything_is_open_and_with_one_nothing_private_is,
    a_viewer_reads_but_is_forbidden_to_act,
    a_locked_out_address_gets_no_answer_from_the_basic_auth_cache,
    a_wrong_method_on_auth_token_is_a_json_405,
);
