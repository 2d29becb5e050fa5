//! Users, tokens, logins and roles against the real binary: users added through the CLI
//! (password on stdin), tokens from `POST /auth/token`, bearer and basic auth, the
//! dashboard's login and session cookie, roles, the failed-login limit, the wake secret,
//! and `serve`'s refusal to listen beyond loopback without users.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use serde_json::Value;

use crate::browser::Browser;
use crate::support::{Env, PATIENCE, text, wait_until};

const HELLO: &str = "dag_id: hello
tasks:
  greet: {type: shell, command: 'echo hello'}
";

/// A response: status, header lines (lower-case names), body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request with extra header lines and a body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

pub(crate) fn add_user(env: &Env, name: &str, role: &str, password: &str) -> std::process::Output {
    let mut child = env
        .command(&["users", "add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

pub(crate) fn token(addr: &str, name: &str, password: &str) -> Reply {
    let body = serde_json::json!({"username": name, "password": password}).to_string();
    let json = [("Content-Type", "application/json")];
    request(addr, "POST", "/auth/token", &json, &body)
}

fn basic(name: &str, password: &str) -> String {
    use base64::Engine;
    let pair = format!("{name}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[test]
fn users_from_stdin_get_tokens_and_the_api_refuses_everyone_else_with_401() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    let out = add_user(&env, "ann", "op", "correct horse");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "added user ann with role op\n");
    let server = env.serve();
    let addr = server.addr.as_str();

    let none = request(addr, "GET", "/api/v2/dags", &[], "");
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["detail"], "Not authenticated");
    assert!(
        none.headers
            .iter()
            .any(|(n, v)| n == "www-authenticate" && v == "Bearer")
    );
    let bad = request(
        addr,
        "GET",
        "/api/v2/dags",
        &[("Authorization", "Bearer x.y.z")],
        "",
    );
    assert_eq!(
        (bad.status, bad.json()["detail"].clone()),
        (401, "Invalid or expired credentials".into())
    );

    let issued = token(addr, "ann", "correct horse");
    assert_eq!(issued.status, 201, "{}", issued.body);
    let access = issued.json()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {access}");
    // With this branch alone `/api/v2/dags` is the 404 behind the guard; with the API, 200.
    let ok = request(
        addr,
        "GET",
        "/api/v2/dags",
        &[("Authorization", &bearer)],
        "",
    );
    assert!(ok.status != 401 && ok.status != 403, "{}", ok.status);
    let by_basic = basic("ann", "correct horse");
    let ok = request(
        addr,
        "GET",
        "/api/v2/dags",
        &[("Authorization", &by_basic)],
        "",
    );
    assert!(ok.status != 401 && ok.status != 403, "{}", ok.status);
    let page = request(
        addr,
        "GET",
        "/dags/hello",
        &[("Authorization", &by_basic)],
        "",
    );
    assert_eq!(page.status, 200);

    // A form body works as in Airflow; wrong password and unknown user read the same.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let by_form = request(
        addr,
        "POST",
        "/auth/token",
        &form,
        "username=ann&password=correct+horse",
    );
    assert_eq!(by_form.status, 201);
    let wrong = token(addr, "ann", "wrong");
    let nobody = token(addr, "nobody", "wrong");
    assert_eq!((wrong.status, nobody.status), (401, 401));
    assert_eq!(wrong.json()["detail"], "Invalid credentials");
    assert_eq!(wrong.json(), nobody.json());
    let empty = token(addr, "ann", "");
    assert_eq!(empty.status, 400);

    // Public: health and version.
    assert_ne!(request(addr, "GET", "/api/v2/version", &[], "").status, 401);
    let log = server.log();
    assert!(
        !log.contains("correct horse") && !log.contains(&access),
        "{log}"
    );
}

#[test]
fn a_viewer_reads_but_may_not_act_and_an_op_may() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "vic", "viewer", "pw-v").status.success());
    assert!(add_user(&env, "ann", "op", "pw-a").status.success());
    let server = env.serve();
    let addr = server.addr.as_str();
    let vic = format!(
        "Bearer {}",
        token(addr, "vic", "pw-v").json()["access_token"]
            .as_str()
            .unwrap()
    );
    let ann = basic("ann", "pw-a");
    assert_eq!(
        request(addr, "GET", "/dags/hello", &[("Authorization", &vic)], "").status,
        200
    );
    let pause = |auth: &str| {
        let headers = [
            ("Authorization", auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        request(addr, "POST", "/dags/hello/pause", &headers, "next=%2F")
    };
    let refused = pause(&vic);
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("has the role viewer; this needs op"),
        "{}",
        refused.body
    );
    let api = request(
        addr,
        "POST",
        "/api/v2/dags/hello/dagRuns",
        &[("Authorization", &vic)],
        "{}",
    );
    assert_eq!(api.status, 403);
    assert_eq!(
        api.json()["detail"],
        "user 'vic' has the role viewer; this needs op"
    );
    assert_eq!(pause(&ann).status, 303);
    assert_eq!(env.json(&["dags", "list"])[0]["paused"], true);
}

#[test]
fn the_dashboard_sends_strangers_to_the_login_page_and_the_form_gives_a_session_cookie() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "ann", "op", "pw").status.success());
    let server = env.serve();
    let addr = server.addr.as_str();

    let away = request(addr, "GET", "/dags/hello", &[], "");
    assert_eq!(away.status, 303);
    assert_eq!(away.header("location"), Some("/login?next=%2Fdags%2Fhello"));
    let login = request(addr, "GET", "/login?next=%2Fdags%2Fhello", &[], "");
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains(r#"name="next" value="/dags/hello""#),
        "{}",
        login.body
    );

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let wrong = request(
        addr,
        "POST",
        "/login",
        &form,
        "username=ann&password=no&next=%2F",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Invalid user name or password."));
    let body = "username=ann&password=pw&next=%2Fdags%2Fhello";
    let ok = request(addr, "POST", "/login", &form, body);
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/dags/hello"));
    let cookie = ok.header("set-cookie").unwrap().to_string();
    assert!(cookie.starts_with("orchestrator_session="), "{cookie}");
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let behind_tls = [form[0], ("X-Forwarded-Proto", "https")];
    let tls = request(addr, "POST", "/login", &behind_tls, body);
    assert!(tls.header("set-cookie").unwrap().ends_with("; Secure"));

    let session = cookie.split(';').next().unwrap();
    let page = request(addr, "GET", "/dags/hello", &[("Cookie", session)], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("signed in as <strong>ann</strong> (op)"));
    // A cookie with a token from another store is no session.
    let forged = "orchestrator_session=eyJhbGciOiJIUzI1NiJ9.e30.x";
    assert_eq!(
        request(addr, "GET", "/dags/hello", &[("Cookie", forged)], "").status,
        303
    );
    // The login does not send anyone elsewhere.
    let away = "username=ann&password=pw&next=https%3A%2F%2Fevil.example%2F";
    assert_eq!(
        request(addr, "POST", "/login", &form, away).header("location"),
        Some("/")
    );
}

#[test]
fn failed_logins_are_rate_limited_per_client_even_with_the_right_password_after() {
    let mut env = Env::new();
    assert!(add_user(&env, "ann", "op", "pw").status.success());
    let server = env.serve();
    let addr = server.addr.as_str();
    // The first five fail plainly; the limit then holds the address back (a loop, not a
    // count, so a slow machine refilling the quota meanwhile cannot fail the test).
    for _ in 0..5 {
        assert_eq!(token(addr, "ann", "guess").status, 401);
    }
    let limited = (0..100)
        .map(|_| token(addr, "ann", "guess"))
        .find(|r| r.status != 401)
        .unwrap();
    assert_eq!(limited.status, 429);
    assert!(
        limited.json()["detail"]
            .as_str()
            .unwrap()
            .starts_with("Too many failed logins")
    );
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&wait), "{wait}");
    assert_eq!(token(addr, "ann", "pw").status, 429);
    let by_basic = basic("ann", "pw");
    let api = request(
        addr,
        "GET",
        "/api/v2/dags",
        &[("Authorization", &by_basic)],
        "",
    );
    assert_eq!(api.status, 429);
}

#[test]
fn the_wake_up_needs_the_stores_secret_and_trigger_still_wakes_the_server() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "ann", "op", "pw").status.success());
    let server = env.serve();
    let refused = request(&server.addr, "POST", "/internal/wake", &[], "");
    assert_eq!(refused.status, 403);
    let guessed = [("X-Orchestrator-Wake-Secret", "guess")];
    assert_eq!(
        request(&server.addr, "POST", "/internal/wake", &guessed, "").status,
        403
    );
    let out = env.ok(&["trigger", "hello"]);
    assert!(!out.contains("no server answers"), "{out}");
    wait_until("the triggered run succeeds", || {
        env.runs("hello").iter().any(|r| r["state"] == "success")
    });
}

#[test]
fn users_are_listed_removed_and_given_new_passwords_and_empty_ones_are_refused() {
    let env = Env::new();
    let empty = add_user(&env, "ann", "op", "");
    assert!(!empty.status.success());
    assert!(
        text(&empty.stderr).contains("the password must not be empty"),
        "{}",
        text(&empty.stderr)
    );
    assert!(add_user(&env, "ann", "admin", "pw").status.success());
    let again = add_user(&env, "ann", "op", "pw");
    assert!(text(&again.stderr).contains("user 'ann' already exists"));
    let users = env.json(&["users", "list"]);
    assert_eq!(users[0]["name"], "ann");
    assert_eq!(users[0]["role"], "admin");
    let mut child = env
        .command(&["users", "set-password", "ann"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "new").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        env.ok(&["users", "remove", "ann"])
            .contains("removed user ann")
    );
    let gone = env.run(&["users", "remove", "ann"]);
    assert!(
        text(&gone.stderr).contains("no user named 'ann'"),
        "{}",
        text(&gone.stderr)
    );
}

#[test]
fn serve_refuses_a_non_loopback_bind_without_users_unless_told_to() {
    let env = Env::new();
    let out = env.run(&["serve", "--bind", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0: no users exist"),
        "{err}"
    );
    assert!(
        err.contains("orchestrator users add") && err.contains("--insecure-no-auth"),
        "{err}"
    );

    let mut child = env
        .command(&["serve", "--bind", "0.0.0.0:0", "--insecure-no-auth"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    use std::io::BufRead;
    while !seen.contains("serving on") {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("serving on http://0.0.0.0:"), "{seen}");
    assert!(seen.contains("without authentication"), "{seen}");
}

#[test]
fn a_server_beyond_loopback_refuses_everything_once_its_last_user_is_removed() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "ann", "admin", "pw").status.success());
    assert!(add_user(&env, "bob", "op", "pw").status.success());
    let server = env.serve_beyond_loopback();
    let addr = server.addr.as_str();
    assert_eq!(request(addr, "GET", "/api/v2/dags", &[], "").status, 401);

    let one_left = env.run(&["users", "remove", "bob"]);
    assert!(one_left.status.success());
    assert_eq!(text(&one_left.stderr), "");
    let last = env.run(&["users", "remove", "ann"]);
    assert!(last.status.success(), "{}", text(&last.stderr));
    let warning = text(&last.stderr);
    assert!(
        warning.contains("warning: no users remain")
            && warning.contains("servers listening beyond loopback refuse every request"),
        "{warning}"
    );

    // Not open: every private request is refused, saying how to add a user.
    let api = request(addr, "GET", "/api/v2/dags", &[], "");
    assert_eq!(api.status, 503);
    let detail = api.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("orchestrator users add"), "{detail}");
    let page = request(addr, "GET", "/dags/hello", &[], "");
    assert_eq!(page.status, 503);
    assert!(
        page.body.contains("orchestrator users add"),
        "{}",
        page.body
    );
    assert_eq!(request(addr, "GET", "/metrics", &[], "").status, 503);
    assert_eq!(request(addr, "GET", "/health", &[], "").status, 200);

    // A user added again can sign in.
    assert!(add_user(&env, "cy", "op", "pw").status.success());
    let issued = token(addr, "cy", "pw");
    assert_eq!(issued.status, 201);
    let bearer = format!("Bearer {}", issued.json()["access_token"].as_str().unwrap());
    let dags = request(
        addr,
        "GET",
        "/api/v2/dags",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(dags.status, 200);
}

#[test]
fn a_browser_signs_in_sees_who_it_is_and_signs_out() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "ann", "viewer", "pw").status.success());
    let server = env.serve();
    browser.goto(&format!("http://{}/dags/hello", server.addr));
    browser.wait_for("form input#password");
    assert!(browser.url().contains("/login?next=%2Fdags%2Fhello"));
    // The page is styled: its assets are public.
    assert_eq!(browser.computed_style("header.topbar", "display"), "flex");
    browser.screenshot("login");
    browser.set_scheme(crate::browser::Scheme::Dark);
    browser.screenshot("login-dark");
    browser.set_scheme(crate::browser::Scheme::Light);
    browser.fill("#username", "ann");
    browser.fill("#password", "wrong");
    browser.click("button[type=submit]");
    browser.wait_for(".flash-error");
    browser.screenshot("login-failed");
    browser.fill("#password", "pw");
    browser.click("button[type=submit]");
    browser.wait_for(".topbar .who");
    assert!(browser.url().ends_with("/dags/hello"), "{}", browser.url());
    assert_eq!(browser.text(".topbar .who"), "signed in as ann (viewer)");
    browser.screenshot("signed-in-viewer");
    browser.click(".topbar .signout");
    browser.wait_for("form input#password");
    browser.goto(&format!("http://{}/", server.addr));
    browser.wait_for("form input#password");
}

#[test]
fn an_admin_manages_users_through_the_api_and_nobody_else_may() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "root", "admin", "pw-root").status.success());
    assert!(add_user(&env, "ann", "op", "pw-a").status.success());
    assert!(add_user(&env, "vic", "viewer", "pw-v").status.success());
    let server = env.serve();
    let addr = server.addr.as_str();
    let bearer = |name: &str, password: &str| {
        let issued = token(addr, name, password);
        assert_eq!(issued.status, 201, "{}", issued.body);
        format!("Bearer {}", issued.json()["access_token"].as_str().unwrap())
    };
    let root = bearer("root", "pw-root");
    let call = |auth: &str, method: &str, path: &str, body: &str| {
        let headers = [
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ];
        request(addr, method, path, &headers, body)
    };

    // Listing: names, roles and dates, never hashes.
    let listed = call(&root, "GET", "/api/v2/users", "");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let names: Vec<_> = listed.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].clone(), u["role"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("ann".into(), "op".into()),
            ("root".into(), "admin".into()),
            ("vic".into(), "viewer".into())
        ]
    );
    assert_eq!(listed.json()["total_entries"], 3);
    assert!(listed.json()["users"][0]["created_at"].is_string());
    assert!(!listed.body.contains("argon2"), "{}", listed.body);

    // Adding: 201, then the new user gets a token; duplicates and bad input are refused.
    let new = r#"{"username": "bob", "password": "pw-b", "role": "viewer"}"#;
    let added = call(&root, "POST", "/api/v2/users", new);
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        (
            added.json()["username"].clone(),
            added.json()["role"].clone()
        ),
        ("bob".into(), "viewer".into())
    );
    assert_eq!(token(addr, "bob", "pw-b").status, 201);
    assert_eq!(call(&root, "POST", "/api/v2/users", new).status, 409);
    for bad in [
        r#"{"username": "eve", "password": "pw", "role": "root"}"#,
        r#"{"username": "eve", "password": "", "role": "op"}"#,
        r#"{"username": "eve", "password": "pw", "role": "op", "admin": true}"#,
        r#"{"username": "e ve", "password": "pw", "role": "op"}"#,
    ] {
        let refused = call(&root, "POST", "/api/v2/users", bad);
        assert_eq!(refused.status, 422, "{bad}: {}", refused.body);
        assert!(refused.json()["detail"][0]["msg"].is_string(), "{bad}");
    }

    // Changing the role applies to the user's existing token at once.
    let bob = bearer("bob", "pw-b");
    let trigger = "/api/v2/dags/hello/dagRuns";
    assert_eq!(call(&bob, "POST", trigger, "{}").status, 403);
    let patched = call(&root, "PATCH", "/api/v2/users/bob", r#"{"role": "op"}"#);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["role"], "op");
    assert_ne!(call(&bob, "POST", trigger, "{}").status, 403);
    // A new password: the old one stops working.
    let patched = call(
        &root,
        "PATCH",
        "/api/v2/users/bob",
        r#"{"password": "pw-b2"}"#,
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(token(addr, "bob", "pw-b").status, 401);
    assert_eq!(token(addr, "bob", "pw-b2").status, 201);
    let nobody = call(&root, "PATCH", "/api/v2/users/nobody", r#"{"role": "op"}"#);
    assert_eq!(nobody.status, 404);
    let empty = call(&root, "PATCH", "/api/v2/users/bob", r#"{"password": ""}"#);
    assert_eq!(empty.status, 422);
    // An admin cannot lock themselves out.
    let demote = call(&root, "PATCH", "/api/v2/users/root", r#"{"role": "op"}"#);
    assert_eq!(demote.status, 409, "{}", demote.body);
    assert_eq!(call(&root, "DELETE", "/api/v2/users/root", "").status, 409);

    // Operators and viewers may not manage users, not even list them.
    for (name, password) in [("ann", "pw-a"), ("vic", "pw-v")] {
        let who = bearer(name, password);
        assert_eq!(call(&who, "GET", "/api/v2/users", "").status, 403);
        let add = r#"{"username": "mal", "password": "pw", "role": "admin"}"#;
        assert_eq!(call(&who, "POST", "/api/v2/users", add).status, 403);
        let promote = call(
            &who,
            "PATCH",
            &format!("/api/v2/users/{name}"),
            r#"{"role": "admin"}"#,
        );
        assert_eq!(promote.status, 403);
        assert_eq!(call(&who, "DELETE", "/api/v2/users/bob", "").status, 403);
    }

    // Removing: 204, then 404; the removed user's token stops working.
    let bob = bearer("bob", "pw-b2");
    let removed = call(&root, "DELETE", "/api/v2/users/bob", "");
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(call(&root, "DELETE", "/api/v2/users/bob", "").status, 404);
    assert_eq!(call(&bob, "GET", "/api/v2/dags", "").status, 401);
    let listed = call(&root, "GET", "/api/v2/users", "");
    assert_eq!(listed.json()["total_entries"], 3);
}

#[test]
fn the_users_page_lists_adds_and_removes_users_for_admins_only() {
    let mut env = Env::new();
    env.dag("hello", HELLO);
    assert!(add_user(&env, "root", "admin", "pw-root").status.success());
    assert!(add_user(&env, "ann", "op", "pw-a").status.success());
    let server = env.serve();
    let addr = server.addr.as_str();
    let root = basic("root", "pw-root");
    let form = |path: &str, body: &str| {
        let headers = [
            ("Authorization", root.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        request(addr, "POST", path, &headers, body)
    };

    // Admins see the link and the page; an op sees neither.
    let page = request(addr, "GET", "/users", &[("Authorization", &root)], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"<a href="/users""#), "{}", page.body);
    assert!(page.body.contains("ann") && page.body.contains("(you)"));
    let ann = basic("ann", "pw-a");
    assert_eq!(
        request(addr, "GET", "/users", &[("Authorization", &ann)], "").status,
        403
    );
    let dags = request(addr, "GET", "/", &[("Authorization", &ann)], "");
    assert!(!dags.body.contains(r#"<a href="/users""#));

    // Adding redirects back with a flash; the new user signs in.
    let added = form("/users", "username=bob&password=pw+b&role=viewer");
    assert_eq!(added.status, 303, "{}", added.body);
    assert_eq!(added.header("location"), Some("/users"));
    assert_eq!(token(addr, "bob", "pw b").status, 201);
    assert_eq!(
        form("/users", "username=bob&password=x&role=op").status,
        409
    );
    assert_eq!(
        form("/users", "username=eve&password=x&role=root").status,
        400
    );
    assert_eq!(form("/users", "username=eve&password=&role=op").status, 400);

    // Removing: others yes, oneself no.
    assert_eq!(form("/users/bob/remove", "").status, 303);
    assert_eq!(token(addr, "bob", "pw b").status, 401);
    assert_eq!(form("/users/bob/remove", "").status, 404);
    assert_eq!(form("/users/root/remove", "").status, 409);
    let post = [("Authorization", ann.as_str())];
    assert_eq!(
        request(addr, "POST", "/users/root/remove", &post, "").status,
        403
    );
}
