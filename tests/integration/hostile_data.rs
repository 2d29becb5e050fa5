//! Hostile data files through the real binary (issue 9, items 5 and 6): values are never
//! silently changed, and broken structure fails with the file (and line) named or is
//! rejected with its reason.

use serde_json::Value;

use crate::support::{Env, task, text};

/// A project with the shipped DAGs and the sample data, `files` written over the sample.
fn project(files: &[(&str, &str)]) -> Env {
    let env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config", "data"] {
        crate::cli::copy_dir(&root.join(dir), &env.path(dir));
    }
    for (name, content) in files {
        std::fs::write(env.path(&format!("data/sample/{name}")), content).unwrap();
    }
    env
}

/// Runs `dag`, which must fail, and returns the error of its task `task_id`.
fn failed_error(env: &Env, dag: &str, task_id: &str) -> String {
    let out = env.run(&["run", dag]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let run_id = env.runs(dag)[0]["run_id"].as_str().unwrap().to_string();
    task(&env.run_detail(&run_id), task_id)["error"]
        .as_str()
        .unwrap()
        .to_string()
}

fn mention_ids(graph: &Value, drug: &str, kind: &str) -> Vec<String> {
    let node = graph["drugs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["drug"] == drug)
        .unwrap();
    node[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn numeric_ids_keep_their_source_text_in_graph_json() {
    // Every id of each source is numeric, so nothing makes the columns text by accident.
    let env = project(&[
        (
            "pubmed.csv",
            "id,title,date,journal\n99999999999999999999,Ethanol one,01/01/2020,J\n007,Ethanol two,02/01/2020,J\n",
        ),
        (
            "pubmed.json",
            "[{\"id\": 18446744073709551615, \"title\": \"Ethanol three\", \"date\": \"2020-01-03\", \"journal\": \"J\"},\n {\"id\": 12, \"title\": \"Ethanol four\", \"date\": \"2020-01-04\", \"journal\": \"J\"}]",
        ),
    ]);
    env.ok(&["run", "drugs_orchestrator"]);
    let graph: Value =
        serde_json::from_slice(&std::fs::read(env.path("processed_data/graph.json")).unwrap())
            .unwrap();
    assert_eq!(
        mention_ids(&graph, "ETHANOL", "pubmed"),
        ["99999999999999999999", "007", "18446744073709551615", "12"]
    );
}

#[test]
fn a_json_id_beyond_64_bits_is_rejected_with_line_and_reason() {
    let env = project(&[(
        "pubmed.json",
        "[{\"id\": 1, \"title\": \"Ethanol\", \"date\": \"2020-01-03\", \"journal\": \"J\"},\n {\"id\": 99999999999999999999, \"title\": \"Ethanol\", \"date\": \"2020-01-04\", \"journal\": \"J\"},\n {\"id\": 3, \"title\": [\"Ethanol\"], \"date\": \"2020-01-04\", \"journal\": \"J\"}]",
    )]);
    env.ok(&["run", "drugs_import"]);
    let rejects =
        std::fs::read_to_string(env.path("imported_data/pubmed_json.rejects.jsonl")).unwrap();
    let reasons: Vec<(u64, String)> = rejects
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (
                2,
                "number 99999999999999999999 is beyond 64-bit integers (quote it to keep it as text)"
                    .to_string()
            ),
            (
                3,
                "column 'title': [\"Ethanol\"] is an array, not a single value".to_string()
            ),
        ]
    );
}

#[test]
fn an_unclosed_quote_in_drugs_csv_fails_the_import_with_file_and_line() {
    let env = project(&[(
        "drugs.csv",
        "atccode,drug\nA04AD,DIPHENHYDRAMINE\nV03AB,\"ETHANOL\nA03BA,ATROPINE\n",
    )]);
    assert_eq!(
        failed_error(&env, "drugs_import", "import_drugs"),
        "data/sample/drugs.csv: line 3: a quoted field is never closed (the quote runs to the end of the file)"
    );
}

#[test]
fn an_empty_json_file_or_array_fails_the_import_naming_table_and_file() {
    for (content, what) in [("", "is empty"), ("[]\n", "holds an empty array")] {
        let env = project(&[("pubmed.json", content)]);
        assert_eq!(
            failed_error(&env, "drugs_import", "import_pubmed_json"),
            format!("pubmed_json: nothing to take columns from: data/sample/pubmed.json {what}")
        );
    }
}

#[test]
fn a_header_of_only_delimiters_fails_the_import_with_its_line() {
    let env = project(&[(
        "pubmed.csv",
        ",,,\nid,title,date,journal\n1,Ethanol,01/01/2020,J\n",
    )]);
    assert_eq!(
        failed_error(&env, "drugs_import", "import_pubmed_csv"),
        "data/sample/pubmed.csv: line 1: the header has only delimiters, no column names"
    );
}

#[test]
fn a_graph_argument_that_is_a_directory_says_so() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("out")).unwrap();
    std::fs::create_dir_all(env.path("empty")).unwrap();
    std::fs::write(env.path("out/graph.json"), "{\"drugs\": []}").unwrap();
    for (args, expected) in [
        (
            vec!["graph", "top-journals", "--graph", "out"],
            "error: out: is a directory, not a graph file (did you mean --graph out/graph.json?)",
        ),
        (
            vec!["graph", "related-drugs", "aspirin", "--graph", "empty/"],
            "error: empty/: is a directory, not a graph file",
        ),
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim_end(), expected, "{args:?}");
    }
}
