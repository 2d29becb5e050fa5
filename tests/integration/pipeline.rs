//! The data tasks and the shipped `drugs` pipeline, end to end on the seed's sample.

use serde_json::{Value, json};

use crate::support::{Env, task, text};

fn project() -> Env {
    let env = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["dags", "config", "data"] {
        crate::cli::copy_dir(&root.join(dir), &env.path(dir));
    }
    env
}

fn read_json(env: &Env, rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(env.path(rel)).unwrap()).unwrap()
}

fn last_run(env: &Env, dag: &str) -> Value {
    let runs = env.runs(dag);
    env.run_detail(runs[0]["run_id"].as_str().unwrap())
}

fn log_of(env: &Env, dag: &str, task_id: &str) -> String {
    let run_id = env.runs(dag)[0]["run_id"].as_str().unwrap().to_string();
    env.ok(&["logs", &run_id, task_id])
}

#[test]
fn the_sample_pipeline_builds_the_expected_graph_and_reruns_byte_identical() {
    let env = project();
    env.ok(&["run", "drugs_orchestrator"]);
    assert_eq!(
        read_json(&env, "processed_data/graph.json"),
        expected_graph()
    );
    assert_eq!(
        read_json(&env, "processed_data/top_journals.json"),
        json!({"max_distinct_drugs": 2, "journals": [
            "Journal of emergency nursing",
            "Psychopharmacology",
            "The journal of maternal-fetal & neonatal medicine",
        ]})
    );
    let rejects = std::fs::read_to_string(env.path("processed_data/graph.rejects.jsonl")).unwrap();
    assert_eq!(
        rejects,
        "{\"source\":\"clinical_trials\",\"row\":3,\"reason\":\"no title\"}\n"
    );
    let log = log_of(&env, "drugs_import", "import_pubmed_csv");
    assert!(log.contains("imported 8 row(s) from 1 file(s) into imported_data/pubmed_csv.parquet; 0 rejected; 1 blank line(s) skipped"), "{log}");

    let outputs = ["graph.json", "top_journals.json", "graph.journals.jsonl"];
    let read_outputs = || -> Vec<Vec<u8>> {
        outputs
            .iter()
            .map(|f| std::fs::read(env.path(&format!("processed_data/{f}"))).unwrap())
            .map(|b| crate::support::index_without_time(&b))
            .collect()
    };
    let before = read_outputs();
    env.ok(&["run", "drugs_orchestrator"]);
    let after = read_outputs();
    assert!(before == after, "a second run changed the outputs");

    // The warehouse holds the loaded tables: the shipped sql example counts per journal.
    env.ok(&["run", "warehouse_report"]);
    let log = log_of(&env, "warehouse_report", "publications_per_journal");
    assert!(
        log.contains("table publications_per_journal now has 12 row(s)"),
        "{log}"
    );
    assert!(log.contains("Journal of emergency nursing | 7"), "{log}");

    let top = env.json(&["graph", "top-journals"]);
    assert_eq!(top["max_distinct_drugs"], 2);
    let related = env.json(&["graph", "related-drugs", "tetracycline"]);
    assert_eq!(
        related,
        json!({"drug": "TETRACYCLINE", "related_drugs": ["ETHANOL"]})
    );

    // Without the task's top_journals.json (or with a stale one), one streamed pass over the
    // graph gives the same answer; a pretty-printed graph streams too.
    let written = std::fs::read(env.path("processed_data/top_journals.json")).unwrap();
    std::fs::remove_file(env.path("processed_data/top_journals.json")).unwrap();
    assert_eq!(env.json(&["graph", "top-journals"]), top);
    let pretty =
        serde_json::to_string_pretty(&read_json(&env, "processed_data/graph.json")).unwrap();
    std::fs::write(env.path("pretty.json"), pretty).unwrap();
    assert_eq!(
        env.json(&["graph", "top-journals", "--graph", "pretty.json"]),
        top
    );
    assert_eq!(
        env.json(&[
            "graph",
            "related-drugs",
            "Tetracycline",
            "--graph",
            "pretty.json"
        ]),
        related
    );
    let stale = br#"{"max_distinct_drugs": 99, "journals": ["stale"]}"#;
    std::fs::write(env.path("processed_data/top_journals.json"), stale).unwrap();
    let graph = env.path("processed_data/graph.json");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&graph)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(env.json(&["graph", "top-journals"]), top);
    std::fs::write(env.path("processed_data/top_journals.json"), written).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&graph)
        .unwrap()
        .set_modified(later - std::time::Duration::from_secs(120))
        .unwrap();
    assert_eq!(env.json(&["graph", "top-journals"]), top);
    let missing = env.run(&["graph", "related-drugs", "nothing"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("drug 'nothing' is not in the graph"));
}

/// `graph related-drugs` for every drug of the sample (and an unknown one): the answers, or
/// the error.
fn related_answers(env: &Env) -> Vec<Value> {
    let drugs = [
        "atropine",
        " Tetracycline ",
        "ETHANOL",
        "diphenhydramine",
        "epinephrine",
    ];
    let mut answers: Vec<Value> = drugs
        .iter()
        .chain(&["isoprenaline", "betamethasone"])
        .map(|d| env.json(&["graph", "related-drugs", d]))
        .collect();
    let missing = env.run(&["graph", "related-drugs", "nothing"]);
    assert_eq!(missing.status.code(), Some(2));
    answers.push(Value::String(text(&missing.stderr)));
    answers
}

#[test]
fn the_journal_index_answers_as_the_graph_and_one_made_with_another_graph_is_ignored() {
    let env = project();
    env.ok(&["run", "drugs_orchestrator"]);
    let index_path = env.path("processed_data/graph.journals.jsonl");
    let index = std::fs::read_to_string(&index_path).unwrap();
    let graph_bytes = std::fs::metadata(env.path("processed_data/graph.json"))
        .unwrap()
        .len();
    let lines: Vec<Value> = index
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{index}");
    assert_eq!(lines[7]["graph_bytes"], graph_bytes);
    assert_eq!(lines[7]["drugs"], 7);
    let names: Vec<&str> = lines[..7]
        .iter()
        .map(|l| l["drug"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "ATROPINE");

    let indexed = related_answers(&env);
    assert!(index_log(&env).contains("answered from the index"));
    assert_eq!(
        indexed[1],
        json!({"drug": "TETRACYCLINE", "related_drugs": ["ETHANOL"]})
    );
    std::fs::remove_file(&index_path).unwrap();
    assert_eq!(
        related_answers(&env),
        indexed,
        "the streamed answers differ"
    );

    // A new publication relates atropine to tetracycline; the index of the graph before it,
    // made to look newer than the graph, is told apart by the graph's size.
    let csv = env.path("data/sample/pubmed.csv");
    let mut rows = std::fs::read_to_string(&csv).unwrap();
    rows.push_str("\n9,\"Atropine and tetracycline\",2020-01-01,\"Journal of food protection\"\n");
    std::fs::write(&csv, rows).unwrap();
    env.ok(&["run", "drugs_orchestrator"]);
    let current = related_answers(&env);
    assert_eq!(
        current[1],
        json!({"drug": "TETRACYCLINE", "related_drugs": ["ATROPINE", "ETHANOL"]})
    );
    std::fs::write(&index_path, &index).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&index_path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(related_answers(&env), current);
    let log = index_log(&env);
    assert!(
        log.contains(&format!(
            "the index was made for a graph of {graph_bytes} bytes"
        )),
        "{log}"
    );

    // A graph of the same size put in place of the one the index was made with (a restore
    // keeping an older time) is told apart by its modification time.
    env.ok(&["run", "drugs_orchestrator"]);
    let graph_path = env.path("processed_data/graph.json");
    let graph = std::fs::read_to_string(&graph_path).unwrap();
    let other = graph.replacen(
        "Journal of food protection",
        "Journal of food protectioN",
        1,
    );
    assert_eq!(other.len(), graph.len());
    std::fs::write(&graph_path, &other).unwrap();
    let earlier = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&graph_path)
        .unwrap()
        .set_modified(earlier)
        .unwrap();
    let log = index_log(&env);
    assert!(log.contains("a graph modified at another time"), "{log}");
}

/// What `graph related-drugs tetracycline` logs of the journal index.
fn index_log(env: &Env) -> String {
    let out = env
        .command(&["graph", "related-drugs", "tetracycline"])
        .env("RUST_LOG", "orchestrator::cli::graph=debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    text(&out.stderr)
}

fn import_dag(source: &str) -> String {
    format!(
        "dag_id: imp\ntasks:\n  t: {{type: import, source: '{source}', table: things, schema: {{score: float}}}}\n"
    )
}

#[test]
fn unreadable_rows_go_to_the_rejects_file_with_line_and_reason() {
    let env = Env::new();
    std::fs::write(
        env.path("in.csv"),
        "\u{feff}id,name,score\n1,a,1.5\n\n2,b\n   \n3,c,not-a-number\n4,\"d, quoted\",2\n",
    )
    .unwrap();
    env.dag("imp", &import_dag("in.csv"));
    std::fs::create_dir(env.path("imported_data")).unwrap();
    // The task's schema makes `score` a float, so row 6's text cannot fit.
    env.ok(&["run", "imp"]);
    let rejects = std::fs::read_to_string(env.path("imported_data/things.rejects.jsonl")).unwrap();
    let lines: Vec<Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"line": 4, "raw": "2,b", "reason": "expected 3 fields, found 2", "file": "in.csv"}),
            json!({"line": 6, "raw": "3,c,not-a-number", "reason": "column 'score': 'not-a-number' is not float", "file": "in.csv"}),
        ]
    );
    let log = log_of(&env, "imp", "t");
    assert!(log.contains("imported 2 row(s) from 1 file(s) into imported_data/things.parquet; 2 rejected (see imported_data/things.rejects.jsonl); 2 blank line(s) skipped"), "{log}");
}

#[test]
fn a_glob_imports_every_matching_file_and_ndjson_is_read() {
    let env = Env::new();
    std::fs::create_dir(env.path("in")).unwrap();
    std::fs::write(env.path("in/a.csv"), "id,name\n1,a\n").unwrap();
    std::fs::write(env.path("in/b.csv"), "id,name\n2,b\n3,c\n").unwrap();
    std::fs::write(env.path("in/c.json"), "{\"id\": 4}\n").unwrap();
    std::fs::create_dir(env.path("in/old")).unwrap();
    std::fs::write(env.path("in/old/d.csv"), "id,name\n5,e\n").unwrap();
    // `*` stays within one folder, and a leading `./` is fine.
    env.dag("imp", &import_dag("./in/*.csv"));
    env.ok(&["run", "imp"]);
    assert!(log_of(&env, "imp", "t").contains("imported 3 row(s) from 2 file(s)"));

    std::fs::write(
        env.path("events.jsonl"),
        "{\"id\": 1, \"tags\": [\"x\"]}\n\n{\"id\": \"2\"}\nnot json\n",
    )
    .unwrap();
    env.dag("imp", &import_dag("events.jsonl"));
    env.ok(&["run", "imp"]);
    let log = log_of(&env, "imp", "t");
    assert!(log.contains("imported 2 row(s) from 1 file(s)"), "{log}");
    let rejects = std::fs::read_to_string(env.path("imported_data/things.rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 1, "{rejects}");
    assert!(rejects.contains("\"line\":4"), "{rejects}");
    assert!(rejects.contains("\"raw\":\"not json\""), "{rejects}");
    assert!(
        rejects.contains("invalid JSON at line 4 column 2"),
        "{rejects}"
    );
}

fn failed_error(env: &Env, dag: &str, task_id: &str) -> String {
    let out = env.run(&["run", dag]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    task(&last_run(env, dag), task_id)["error"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_missing_input_and_broken_json_fail_with_the_file_named() {
    let env = Env::new();
    env.dag("imp", &import_dag("data/nope.csv"));
    assert_eq!(
        failed_error(&env, "imp", "t"),
        "data/nope.csv: no such file"
    );

    std::fs::write(
        env.path("bad.json"),
        "[\n  {\"id\": 1},\n  {\"id\": 2}\n  {\"id\": 3}\n]\n",
    )
    .unwrap();
    env.dag("imp", &import_dag("bad.json"));
    assert_eq!(
        failed_error(&env, "imp", "t"),
        "bad.json: line 4 column 3: expected ',' or ']' after an array element, found '{'"
    );
    assert!(
        !env.path("imported_data/things.parquet").exists(),
        "a failed import must not publish"
    );
}

#[test]
fn an_unwritable_staging_store_is_named() {
    let env = Env::new();
    std::fs::write(env.path("in.csv"), "a\n1\n").unwrap();
    std::fs::write(env.path("imported_data"), "not a folder").unwrap();
    env.dag("imp", &import_dag("in.csv"));
    let err = failed_error(&env, "imp", "t");
    assert!(err.starts_with("imported_data: "), "{err}");
}

#[test]
fn a_table_without_a_needed_column_fails_drug_graph_with_the_columns_found() {
    let env = project();
    std::fs::write(
        env.path("data/sample/clinical_trials.csv"),
        "id,date,journal\nNCT1,1 January 2020,J\n",
    )
    .unwrap();
    env.ok(&["run", "drugs_import"]);
    let err = failed_error(&env, "drugs_process", "drug_graph");
    assert_eq!(
        err,
        "table 'clinical_trials' has no 'title' or 'scientific_title' column (it has: id, date, journal)"
    );
}

pub fn expected_graph() -> Value {
    json!({
        "drugs": [
            {
                "atccode": "A03BA",
                "drug": "ATROPINE",
                "pubmed": [
                    {
                        "id": null,
                        "title": "Comparison of pressure BETAMETHASONE release, phonophoresis and dry needling in treatment of latent myofascial trigger point of upper trapezius ATROPINE muscle.",
                        "date": "2020-03-01",
                        "journal": "The journal of maternal-fetal & neonatal medicine",
                    },
                ],
                "clinical_trials": [],
                "journals": [
                    {
                        "journal": "The journal of maternal-fetal & neonatal medicine",
                        "date": "2020-03-01",
                    },
                ],
            },
            {
                "atccode": "R01AD",
                "drug": "BETAMETHASONE",
                "pubmed": [
                    {
                        "id": "10",
                        "title": "Clinical implications of umbilical artery Doppler changes after betamethasone administration",
                        "date": "2020-01-01",
                        "journal": "The journal of maternal-fetal & neonatal medicine",
                    },
                    {
                        "id": "11",
                        "title": "Effects of Topical Application of Betamethasone on Imiquimod-induced Psoriasis-like Skin Inflammation in Mice.",
                        "date": "2020-01-01",
                        "journal": "Journal of back and musculoskeletal rehabilitation",
                    },
                    {
                        "id": null,
                        "title": "Comparison of pressure BETAMETHASONE release, phonophoresis and dry needling in treatment of latent myofascial trigger point of upper trapezius ATROPINE muscle.",
                        "date": "2020-03-01",
                        "journal": "The journal of maternal-fetal & neonatal medicine",
                    },
                ],
                "clinical_trials": [
                    {
                        "id": "NCT04153396",
                        "title": "Preemptive Infiltration With Betamethasone and Ropivacaine for Postoperative Pain in Laminoplasty or ñ Laminectomy",
                        "date": "2020-01-01",
                        "journal": "Hôpitaux Universitaires de Genève",
                    },
                ],
                "journals": [
                    {"journal": "Hôpitaux Universitaires de Genève", "date": "2020-01-01"},
                    {
                        "journal": "Journal of back and musculoskeletal rehabilitation",
                        "date": "2020-01-01",
                    },
                    {
                        "journal": "The journal of maternal-fetal & neonatal medicine",
                        "date": "2020-01-01",
                    },
                    {
                        "journal": "The journal of maternal-fetal & neonatal medicine",
                        "date": "2020-03-01",
                    },
                ],
            },
            {
                "atccode": "A04AD",
                "drug": "DIPHENHYDRAMINE",
                "pubmed": [
                    {
                        "id": "1",
                        "title": "A 44-year-old man with erythema of the face diphenhydramine, neck, and chest, weakness, and palpitations",
                        "date": "2019-01-01",
                        "journal": "Journal of emergency nursing",
                    },
                    {
                        "id": "2",
                        "title": "An evaluation of benadryl, pyribenzamine, and other so-called diphenhydramine antihistaminic drugs in the treatment of allergy.",
                        "date": "2019-01-01",
                        "journal": "Journal of emergency nursing",
                    },
                    {
                        "id": "3",
                        "title": "Diphenhydramine hydrochloride helps symptoms of ciguatera fish poisoning.",
                        "date": "2019-01-02",
                        "journal": "The Journal of pediatrics",
                    },
                ],
                "clinical_trials": [
                    {
                        "id": "NCT01967433",
                        "title": "Use of Diphenhydramine as an Adjunctive Sedative for Colonoscopy in Patients Chronically on Opioids",
                        "date": "2020-01-01",
                        "journal": "Journal of emergency nursing",
                    },
                    {
                        "id": "NCT04189588",
                        "title": "Phase 2 Study IV QUZYTTIR™ (Cetirizine Hydrochloride Injection) vs V Diphenhydramine",
                        "date": "2020-01-01",
                        "journal": "Journal of emergency nursing",
                    },
                    {
                        "id": "NCT04237091",
                        "title": "Feasibility of a Randomized Controlled Clinical Trial Comparing the Use of Cetirizine to Replace Diphenhydramine in the Prevention of Reactions Related to Paclitaxel",
                        "date": "2020-01-01",
                        "journal": "Journal of emergency nursing",
                    },
                ],
                "journals": [
                    {"journal": "Journal of emergency nursing", "date": "2019-01-01"},
                    {"journal": "Journal of emergency nursing", "date": "2020-01-01"},
                    {"journal": "The Journal of pediatrics", "date": "2019-01-02"},
                ],
            },
            {
                "atccode": "A01AD",
                "drug": "EPINEPHRINE",
                "pubmed": [
                    {
                        "id": "7",
                        "title": "The High Cost of Epinephrine Autoinjectors and Possible Alternatives.",
                        "date": "2020-02-01",
                        "journal": "The journal of allergy and clinical immunology. In practice",
                    },
                    {
                        "id": "8",
                        "title": "Time to epinephrine treatment is associated with the risk of mortality in children who achieve sustained ROSC after traumatic out-of-hospital cardiac arrest.",
                        "date": "2020-03-01",
                        "journal": "The journal of allergy and clinical immunology. In practice",
                    },
                ],
                "clinical_trials": [
                    {
                        "id": "NCT04188184",
                        "title": "Tranexamic Acid Versus Epinephrine During Exploratory Tympanotomy",
                        "date": "2020-04-27",
                        "journal": "Journal of emergency nursing",
                    },
                ],
                "journals": [
                    {"journal": "Journal of emergency nursing", "date": "2020-04-27"},
                    {
                        "journal": "The journal of allergy and clinical immunology. In practice",
                        "date": "2020-02-01",
                    },
                    {
                        "journal": "The journal of allergy and clinical immunology. In practice",
                        "date": "2020-03-01",
                    },
                ],
            },
            {
                "atccode": "V03AB",
                "drug": "ETHANOL",
                "pubmed": [
                    {
                        "id": "6",
                        "title": "Rapid reacquisition of contextual fear following extinction in mice: effects of amount of extinction, tetracycline acute ethanol withdrawal, and ethanol intoxication.",
                        "date": "2020-01-01",
                        "journal": "Psychopharmacology",
                    },
                ],
                "clinical_trials": [],
                "journals": [{"journal": "Psychopharmacology", "date": "2020-01-01"}],
            },
            {
                "atccode": "6302001",
                "drug": "ISOPRENALINE",
                "pubmed": [
                    {
                        "id": "9",
                        "title": "Gold nanoparticles synthesized from Euphorbia fischeriana root by green route method alleviates the isoprenaline hydrochloride induced myocardial infarction in rats.",
                        "date": "2020-01-01",
                        "journal": "Journal of photochemistry and photobiology. B, Biology",
                    },
                ],
                "clinical_trials": [],
                "journals": [
                    {
                        "journal": "Journal of photochemistry and photobiology. B, Biology",
                        "date": "2020-01-01",
                    },
                ],
            },
            {
                "atccode": "S03AA",
                "drug": "TETRACYCLINE",
                "pubmed": [
                    {
                        "id": "4",
                        "title": "Tetracycline Resistance Patterns of Lactobacillus buchneri Group Strains.",
                        "date": "2020-01-01",
                        "journal": "Journal of food protection",
                    },
                    {
                        "id": "6",
                        "title": "Rapid reacquisition of contextual fear following extinction in mice: effects of amount of extinction, tetracycline acute ethanol withdrawal, and ethanol intoxication.",
                        "date": "2020-01-01",
                        "journal": "Psychopharmacology",
                    },
                    {
                        "id": "5",
                        "title": "Appositional Tetracycline bone formation rates in the Beagle.",
                        "date": "2020-01-02",
                        "journal": "American journal of veterinary research",
                    },
                ],
                "clinical_trials": [],
                "journals": [
                    {
                        "journal": "American journal of veterinary research",
                        "date": "2020-01-02",
                    },
                    {"journal": "Journal of food protection", "date": "2020-01-01"},
                    {"journal": "Psychopharmacology", "date": "2020-01-01"},
                ],
            },
        ],
    })
}
