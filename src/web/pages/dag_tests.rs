//! Handler tests of the DAG list, the DAG page, the source page, the DAG actions and the
//! router's guards: the real router over a temporary SQLite store and DAGs built from YAML.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use tower::ServiceExt;

use crate::dag::build::{DagText, build_dag};
use crate::dag::{DagBag, LoadError};
use crate::ids::DagId;
use crate::service::{RunRow, Service, TriggerRequest};
use crate::state::RunState;
use crate::store::Store;
use crate::web::{AppState, router};

const HOSTILE: &str = "dag_id: hostile\ndescription: '<script>alert(1)</script>'\n\
                       tags: ['<script>tag</script>', etl]\ntasks:\n  t: {type: noop}\n";
const CHAIN: &str = "dag_id: chain\ndescription: Three steps\nschedule: '0 3 * * *'\n\
                     start_date: 2024-01-01\ntags: [demo]\ntasks:\n  \
                     c: {type: noop, depends_on: b}\n  a: {type: noop}\n  \
                     b: {type: noop, depends_on: a}\n";

struct App {
    _db: Option<crate::store::testing::TestDb>,
    store: Store,
    service: Service,
    router: Router,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

fn dag_text(yaml: &str, project: Option<&str>, path: &str) -> Arc<crate::dag::Dag> {
    let dag = build_dag(&DagText {
        path: Path::new(path),
        project,
        default_dag_id: None,
        text: yaml.into(),
    })
    .unwrap();
    Arc::new(dag)
}

fn bag(yamls: &[&str]) -> DagBag {
    let mut bag = DagBag::default();
    for yaml in yamls {
        let dag = dag_text(yaml, None, "dags/d.yaml");
        bag.dags.insert(dag.id.clone(), dag);
    }
    bag
}

async fn app(backend: crate::store::Backend, bag: DagBag) -> App {
    let db = crate::store::testing::TestDb::open(backend).await;
    let store = db.store();
    over(Some(db), store, bag)
}

fn over(db: Option<crate::store::testing::TestDb>, store: Store, bag: DagBag) -> App {
    let service = Service::with_bag(store.clone(), bag);
    let router = router(AppState {
        service: service.clone(),
    });
    App {
        _db: db,
        store,
        service,
        router,
    }
}

impl App {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// A same-origin form POST, as the browser sends it from a page of this server.
    async fn post(&self, uri: &str, form: &str) -> Reply {
        self.send(form_post(uri, form, &[("sec-fetch-site", "same-origin")]))
            .await
    }

    async fn trigger(&self, dag: &str) -> RunRow {
        self.service
            .trigger(dag, TriggerRequest::default())
            .await
            .unwrap()
    }

    async fn paused(&self, dag: &str) -> bool {
        self.service.paused(&DagId::new(dag)).await.unwrap()
    }

    async fn run_count(&self, dag: &str) -> u64 {
        let query = crate::service::RunQuery {
            dags: vec![DagId::new(dag)],
            ..Default::default()
        };
        self.service.list_runs(&query).await.unwrap().1
    }
}

fn form_post(uri: &str, form: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post(uri)
        .header(header::HOST, "127.0.0.1:8888")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(form.to_string())).unwrap()
}

fn is_html(reply: &Reply) -> bool {
    reply.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html")
}

async fn script_in_a_description_or_tag_is_shown_as_text_on_the_list_and_the_dag_page(
    backend: crate::store::Backend,
) {
    let app = app(backend, bag(&[HOSTILE])).await;
    for uri in ["/", "/dags/hostile"] {
        let reply = app.get(uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        assert!(
            reply
                .body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || reply.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{uri}: {}",
            reply.body
        );
        assert!(!reply.body.contains("<script>alert"), "{uri}");
        assert!(!reply.body.contains("<script>tag"), "{uri}");
    }
}

async fn load_errors_are_listed_first_escaped_with_file_and_line(backend: crate::store::Backend) {
    let mut bag = bag(&[CHAIN]);
    bag.errors.push(LoadError {
        file: "dags/bad.yaml".into(),
        line: Some(7),
        dag_id: Some("bad".into()),
        task_id: Some("t".into()),
        message: "unknown field `<script>x</script>`".into(),
    });
    let app = app(backend, bag).await;
    let reply = app.get("/").await;
    assert_eq!(reply.status, StatusCode::OK);
    let errors = reply.body.find("1 DAG load error").unwrap();
    assert!(errors < reply.body.find("href=\"/dags/chain\"").unwrap());
    assert!(reply.body.contains("<code>dags/bad.yaml:7</code>"));
    assert!(
        reply
            .body
            .contains("DAG &#39;bad&#39;: task &#39;t&#39;: unknown field")
    );
    assert!(!reply.body.contains("<script>x"));
}

async fn the_list_shows_schedule_runs_last_and_next_run_and_links_each_run(
    backend: crate::store::Backend,
) {
    let app = app(backend, bag(&[CHAIN, HOSTILE])).await;
    let run = app.trigger("chain").await;
    let reply = app.get("/").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = &reply.body;
    assert!(body.contains("href=\"/dags/chain\""));
    assert!(body.contains("Three steps"));
    assert!(body.contains("0 3 * * *"));
    let run_href = super::links::run("chain", run.run_id.as_str());
    assert!(body.contains(&format!("class=\"mark state-queued\" href=\"{run_href}\"")));
    assert!(body.contains("class=\"badge state-queued\""));
    // The schedule's next interval, and a trigger form and a pause switch per DAG.
    assert!(body.contains("logical date 20"), "{body}");
    assert_eq!(body.matches("action=\"/dags/chain/trigger\"").count(), 1);
    assert_eq!(body.matches("action=\"/dags/chain/pause\"").count(), 1);
    assert!(body.contains("href=\"/?tag=demo\""));
}

async fn pages_are_live_only_while_a_run_is_queued_or_running(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN, HOSTILE])).await;
    for uri in ["/", "/dags/chain"] {
        assert!(
            !app.get(uri).await.body.contains("data-live=\"1\""),
            "{uri}"
        );
    }
    app.trigger("chain").await;
    for uri in ["/", "/dags/chain"] {
        let body = app.get(uri).await.body;
        assert!(body.contains(" data-live=\"1\">"), "{uri}");
        assert!(body.contains("data-live-region"), "{uri}");
    }
    assert!(
        !app.get("/dags/hostile")
            .await
            .body
            .contains("data-live=\"1\"")
    );
}

async fn a_queued_run_of_a_paused_dag_does_not_keep_pages_live(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN])).await;
    app.service.set_paused("chain", true).await.unwrap();
    let queued = app.trigger("chain").await;
    let run_page = super::links::run("chain", queued.run_id.as_str());
    let log_page = super::links::task("chain", queued.run_id.as_str(), "a");
    for uri in ["/", "/dags/chain", run_page.as_str(), log_page.as_str()] {
        let got = app.get(uri).await;
        assert_eq!(got.status, StatusCode::OK, "{uri}");
        assert!(!got.body.contains("data-live=\"1\""), "{uri}: {}", got.body);
    }
    // Unpaused, the run will start: pages follow it again.
    app.service.set_paused("chain", false).await.unwrap();
    for uri in ["/", "/dags/chain", run_page.as_str()] {
        assert!(
            app.get(uri).await.body.contains(" data-live=\"1\">"),
            "{uri}"
        );
    }
    // A running run of a paused DAG goes on, so it still counts.
    app.service.set_paused("chain", true).await.unwrap();
    sqlx::query("UPDATE dag_run SET state = 'running' WHERE id = $1")
        .bind(queued.key.0)
        .execute(app.store.test_pool())
        .await
        .unwrap();
    for uri in ["/", "/dags/chain"] {
        assert!(
            app.get(uri).await.body.contains(" data-live=\"1\">"),
            "{uri}"
        );
    }
}

async fn three_hundred_dags_are_listed_a_hundred_a_page_with_search_and_filters(
    backend: crate::store::Backend,
) {
    let yamls: Vec<String> = (0..300)
        .map(|i| {
            let tag = if i % 3 == 0 { "three" } else { "other" };
            format!("dag_id: d{i:03}\ntags: [{tag}]\ntasks:\n  t: {{type: noop}}\n")
        })
        .collect();
    let refs: Vec<&str> = yamls.iter().map(String::as_str).collect();
    let app = app(backend, bag(&refs)).await;
    for i in (0..300).step_by(7) {
        app.trigger(&format!("d{i:03}")).await;
    }
    let first = app.get("/").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body.matches("class=\"dag-id\"").count(), 100);
    assert!(first.body.contains("1–100 of 300 DAGs"));
    assert!(first.body.contains("href=\"/?offset=100\""));
    let last = app.get("/?offset=200").await;
    assert!(last.body.contains("href=\"/dags/d299\""));
    assert!(last.body.contains("201–300 of 300 DAGs"));
    assert!(!last.body.contains("Next →"));
    let tagged = app.get("/?tag=three").await;
    assert!(tagged.body.contains("1–100 of 100 DAGs"));
    assert!(tagged.body.contains("class=\"tag active\""));
    let search = app.get("/?search=D29").await;
    assert_eq!(search.body.matches("class=\"dag-id\"").count(), 10);
    app.service.set_paused("d007", true).await.unwrap();
    let paused = app.get("/?paused=true").await;
    assert_eq!(paused.body.matches("class=\"dag-id\"").count(), 1);
    assert!(paused.body.contains("href=\"/dags/d007\""));
    let none = app.get("/?search=nothing-like-this").await;
    assert!(none.body.contains("No DAG matches these filters"));
}

async fn an_empty_dag_folder_says_how_to_add_one(backend: crate::store::Backend) {
    let app = app(backend, DagBag::default()).await;
    let reply = app.get("/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("No DAGs yet"));
}

async fn generated_dags_show_their_project_and_template(backend: crate::store::Backend) {
    let mut bag = DagBag::default();
    let yaml = "dag_id: drugs_import\ntasks:\n  t: {type: noop}\n";
    let dag = dag_text(yaml, Some("drugs"), "dags/templates/import.yaml");
    bag.dags.insert(dag.id.clone(), dag);
    let app = app(backend, bag).await;
    let reply = app.get("/").await;
    assert!(reply.body.contains("project <strong>drugs</strong>"));
    assert!(reply.body.contains("template <code>import.yaml</code>"));
    let source = app.get("/dags/drugs_import/source").await;
    assert_eq!(source.status, StatusCode::OK);
    assert!(source.body.contains("<dd>drugs</dd>"));
}

async fn unknown_dags_versions_runs_and_paths_get_an_html_404_page(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN])).await;
    for uri in [
        "/dags/nope",
        "/dags/nope/source",
        "/dags/chain/source?version=0123abcd",
        "/dags/chain?run_id=no_such_run",
        "/no/such/page",
    ] {
        let reply = app.get(uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(is_html(&reply), "{uri}");
        assert!(reply.body.contains("404 Not Found"), "{uri}");
    }
    let reply = app.post("/dags/nope/trigger", "conf=").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app.post("/dags/nope/pause", "next=/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

async fn actions_are_post_only(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN])).await;
    for action in ["trigger", "pause", "unpause"] {
        let reply = app.get(&format!("/dags/chain/{action}")).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{action}");
        assert!(is_html(&reply));
    }
    assert_eq!(app.run_count("chain").await, 0);
    assert!(!app.paused("chain").await);
}

async fn cross_site_posts_are_refused_and_change_nothing(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN])).await;
    let attempts: [&[(&str, &str)]; 4] = [
        &[("origin", "http://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.0.1:8888"),
        ],
        &[("origin", "null")],
    ];
    for headers in attempts {
        for (uri, form) in [
            ("/dags/chain/pause", "next=/"),
            ("/dags/chain/trigger", "conf=%7B%7D"),
        ] {
            let reply = app.send(form_post(uri, form, headers)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri} {headers:?}");
            assert!(reply.body.contains("came from another site"));
        }
    }
    assert!(!app.paused("chain").await);
    assert_eq!(app.run_count("chain").await, 0);
    // The same form from this server's own page (or from the CLI, without those headers).
    let same = [("origin", "http://127.0.0.1:8888")];
    let reply = app
        .send(form_post("/dags/chain/pause", "next=/", &same))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let reply = app
        .send(form_post("/dags/chain/unpause", "next=/", &[]))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
}

async fn trigger_with_bad_conf_is_a_400_page_saying_why_and_queues_nothing(
    backend: crate::store::Backend,
) {
    let app = app(backend, bag(&[CHAIN])).await;
    let reply = app.post("/dags/chain/trigger", "conf=%7Boops").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(is_html(&reply));
    assert!(
        reply.body.contains("The conf is not valid JSON"),
        "{}",
        reply.body
    );
    let reply = app.post("/dags/chain/trigger", "conf=%5B1%2C2%5D").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("must be a JSON object"));
    assert_eq!(app.run_count("chain").await, 0);
}

async fn trigger_queues_a_run_with_its_conf_and_comes_back_with_a_flash_shown_once(
    backend: crate::store::Backend,
) {
    let app = app(backend, bag(&[CHAIN])).await;
    let form = "conf=%7B%22who%22%3A+%22%3Cscript%3E%22%7D&next=%2Fdags%2Fchain%3Foffset%3D0";
    let reply = app.post("/dags/chain/trigger", form).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/dags/chain?offset=0");
    let query = crate::service::RunQuery {
        dags: vec![DagId::new("chain")],
        limit: 10,
        ..Default::default()
    };
    let (runs, _) = app.service.list_runs(&query).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].conf, serde_json::json!({"who": "<script>"}));
    let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    let page = app
        .send(
            Request::get("/dags/chain")
                .header(header::COOKIE, pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(
        page.body
            .contains(&format!("Queued run {}.", runs[0].run_id))
    );
    let cleared = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("flash=;") && cleared.contains("Max-Age=0"));
    // An empty conf is `{}`, and without `next` the user lands on the DAG list.
    let reply = app.post("/dags/chain/trigger", "conf=").await;
    assert_eq!(reply.headers[header::LOCATION], "/");
    assert_eq!(app.run_count("chain").await, 2);
}

async fn pause_and_unpause_change_the_flag_and_only_go_back_to_local_pages(
    backend: crate::store::Backend,
) {
    let app = app(backend, bag(&[CHAIN])).await;
    let reply = app.post("/dags/chain/pause", "next=%2F%3Ftag%3Ddemo").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers[header::LOCATION], "/?tag=demo");
    assert!(app.paused("chain").await);
    let page = app.get("/dags/chain").await;
    assert!(page.body.contains("action=\"/dags/chain/unpause\""));
    assert!(page.body.contains("aria-checked=\"false\""));
    for evil in [
        "https%3A%2F%2Fevil.example%2F",
        "%2F%2Fevil.example",
        "%2F%5Cevil.example",
    ] {
        let reply = app
            .post("/dags/chain/unpause", &format!("next={evil}"))
            .await;
        assert_eq!(reply.headers[header::LOCATION], "/", "{evil}");
    }
    assert!(!app.paused("chain").await);
}

async fn the_grid_shows_runs_oldest_left_tasks_in_dependency_order_25_a_page(
    backend: crate::store::Backend,
) {
    let app = app(backend, bag(&[CHAIN])).await;
    let mut runs = Vec::new();
    for _ in 0..30 {
        runs.push(app.trigger("chain").await);
    }
    let page = app.get("/dags/chain").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert_eq!(body.matches("<th class=\"run").count(), 25);
    let href = |run: &RunRow| super::links::run("chain", run.run_id.as_str());
    // Newest 25: runs[5] (oldest shown) left of runs[29] (newest, selected).
    let oldest = body.find(&href(&runs[5])).unwrap();
    assert!(oldest < body.find(&href(&runs[29])).unwrap());
    assert!(!body.contains(&format!("\"{}\"", href(&runs[4]))));
    // Rows follow the dependencies a → b → c, whatever the file order (c, a, b).
    let row = |t: &str| body.find(&format!("id=\"task-{t}\"")).unwrap();
    assert!(row("a") < row("b") && row("b") < row("c"));
    let cell = super::links::task("chain", runs[29].run_id.as_str(), "b");
    assert!(body.contains(&format!("class=\"cell state-none\" href=\"{cell}\"")));
    assert!(body.contains("href=\"/dags/chain?offset=25\""));
    assert!(body.contains("30 runs"));
    let older = app.get("/dags/chain?offset=25").await;
    assert_eq!(older.body.matches("<th class=\"run").count(), 5);
    assert!(older.body.contains(&href(&runs[0])));
    assert!(older.body.contains("href=\"/dags/chain\">Newer runs"));
    assert!(!older.body.contains("No runs on this page"));
    // Past the last run: not "no runs yet", but a way back to the newest.
    let past = app.get("/dags/chain?offset=500").await;
    assert_eq!(past.status, StatusCode::OK);
    assert!(!past.body.contains("No runs yet"), "{}", past.body);
    assert!(
        past.body
            .contains("No runs on this page — <a href=\"/dags/chain\">show the newest runs</a>")
    );
    assert!(past.body.contains("30 runs"));
}

async fn the_graph_shows_the_selected_run_and_links_its_task_logs(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN])).await;
    let empty = app.get("/dags/chain").await;
    assert!(empty.body.contains("No runs yet — trigger one"));
    assert!(empty.body.contains("<svg"));
    assert!(empty.body.contains("href=\"#task-a\""));
    let first = app.trigger("chain").await;
    let second = app.trigger("chain").await;
    let task = |run: &RunRow| super::links::task("chain", run.run_id.as_str(), "a");
    let latest = app.get("/dags/chain").await;
    assert!(graph_part(&latest.body).contains(&task(&second)));
    let uri = format!(
        "/dags/chain?{}",
        super::links::query(&[("run_id", first.run_id.as_str())])
    );
    let chosen = app.get(&uri).await;
    assert_eq!(chosen.status, StatusCode::OK);
    let graph = graph_part(&chosen.body);
    assert!(graph.contains(&task(&first)) && !graph.contains(&task(&second)));
}

fn graph_part(body: &str) -> &str {
    &body[body.find("id=\"graph\"").unwrap()..]
}

async fn the_source_page_shows_the_yaml_and_the_version_a_run_executed(
    backend: crate::store::Backend,
) {
    let db = crate::store::testing::TestDb::open(backend).await;
    let store = db.store();
    let v1 = over(None, store.clone(), bag(&[CHAIN]));
    let run = v1.trigger("chain").await;
    let old_hash = run.dag_version.clone().unwrap();
    let changed = CHAIN.replace("Three steps", "Three <b>steps</b>, changed");
    let v2 = over(Some(db), store, bag(&[&changed]));
    let now = v2.get("/dags/chain/source").await;
    assert_eq!(now.status, StatusCode::OK);
    assert!(
        now.body.contains("Three &#60;b&#62;steps") || now.body.contains("Three &lt;b&gt;steps")
    );
    assert!(now.body.contains("loaded now"));
    let old = v2
        .get(&super::links::source_version("chain", &old_hash))
        .await;
    assert_eq!(old.status, StatusCode::OK);
    assert!(old.body.contains("description: Three steps"));
    assert!(old.body.contains("stored version a run executed"));
    drop(v1.store);
}

async fn a_finished_run_colours_the_grid_and_the_graph(backend: crate::store::Backend) {
    let app = app(backend, bag(&[CHAIN])).await;
    let run = finished_run(&app, "chain").await;
    assert_eq!(run.state, RunState::Success);
    let page = app.get("/dags/chain").await;
    assert!(!page.body.contains("data-live=\"1\""));
    let cell = super::links::task("chain", run.run_id.as_str(), "c");
    assert!(
        page.body
            .contains(&format!("class=\"cell state-success\" href=\"{cell}\""))
    );
    assert!(page.body.contains("c · "));
    assert!(page.body.contains("success · try 1/1 · "));
    assert!(graph_part(&page.body).contains("state-success"));
}

/// Runs `dag` to its end with an engine in this process, as `orchestrator run` does.
async fn finished_run(app: &App, dag: &str) -> RunRow {
    let config = crate::config::Config::default();
    let owner = app
        .service
        .register_foreground(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let run = app
        .service
        .trigger(
            dag,
            TriggerRequest {
                conf: serde_json::json!({}),
                owner: Some(owner.clone()),
            },
        )
        .await
        .unwrap();
    let engine = app.service.start_engine(
        crate::scheduler::Mode::Foreground { root: run.key },
        crate::daemon::scheduler_config(&config).unwrap(),
        owner,
        tokio_util::sync::CancellationToken::new(),
        None,
    );
    engine.done.await.unwrap().unwrap();
    app.service.refresh(&run).await.unwrap()
}

crate::store::testing::on_both!(
    script_in_a_description_or_tag_is_shown_as_text_on_the_list_and_the_dag_page,
    load_errors_are_listed_first_escaped_with_file_and_line,
    the_list_shows_schedule_runs_last_and_next_run_and_links_each_run,
    pages_are_live_only_while_a_run_is_queued_or_running,
    a_queued_run_of_a_paused_dag_does_not_keep_pages_live,
    three_hundred_dags_are_listed_a_hundred_a_page_with_search_and_filters,
    an_empty_dag_folder_says_how_to_add_one,
    generated_dags_show_their_project_and_template,
    unknown_dags_versions_runs_and_paths_get_an_html_404_page,
    actions_are_post_only,
    cross_site_posts_are_refused_and_change_nothing,
    trigger_with_bad_conf_is_a_400_page_saying_why_and_queues_nothing,
    trigger_queues_a_run_with_its_conf_and_comes_back_with_a_flash_shown_once,
    pause_and_unpause_change_the_flag_and_only_go_back_to_local_pages,
    the_grid_shows_runs_oldest_left_tasks_in_dependency_order_25_a_page,
    the_graph_shows_the_selected_run_and_links_its_task_logs,
    the_source_page_shows_the_yaml_and_the_version_a_run_executed,
    a_finished_run_colours_the_grid_and_the_graph,
);
