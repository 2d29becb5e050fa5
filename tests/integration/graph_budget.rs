//! `drug_graph` within a memory budget: a tiny budget spills to disk and writes the same
//! bytes as the in-memory build; a bad budget is a load error naming the field.

use crate::support::{Env, text};

/// Generated sources with split records, unicode, quotes and rows left out.
fn write_sources(env: &Env) {
    let dir = env.path("gen");
    std::fs::create_dir_all(&dir).unwrap();
    let mut drugs = String::from("atccode,drug\n");
    for i in 0..40 {
        drugs.push_str(&format!("A{i},DRUG{i}\n"));
    }
    drugs.push_str("V03AB,ÉTHANOL\nX1,ZINC\nX2,ZINC\n");
    std::fs::write(dir.join("drugs.csv"), drugs).unwrap();
    let mut pubmed = String::from("id,title,date,journal\n");
    for i in 0..24_000usize {
        let n = i % 9_000;
        let title = match n % 4 {
            0 => format!("drug{} and drug{} \"\"trial\"\" {n}", n % 40, (n * 7) % 40),
            1 => format!("éthanol et zinc — {n} 😀"),
            2 => format!("DRUG{} only, {}", n % 40, n % 97),
            _ => format!("nothing here {n}"),
        };
        // Every ninth row lacks its id: the same publication split over two rows.
        let id = if i % 9 == 0 {
            String::new()
        } else {
            format!("{}", n)
        };
        let journal = if i % 5 == 0 {
            String::new()
        } else {
            format!("Journal {}", n % 23)
        };
        let date = if i % 1_000 == 7 {
            "someday".to_string()
        } else {
            format!("{:02}/{:02}/2020", n % 28 + 1, n % 12 + 1)
        };
        pubmed.push_str(&format!("{id},\"{title}\",{date},{journal}\n"));
    }
    std::fs::write(dir.join("pubmed.csv"), pubmed).unwrap();
    let mut trials = String::from("id,scientific_title,date,journal\n");
    for i in 0..6_000usize {
        trials.push_str(&format!(
            "NCT{i},Zinc and drug{} in trial {i},2021-01-{:02},Journal {}\n",
            i % 40,
            i % 28 + 1,
            i % 29
        ));
    }
    std::fs::write(dir.join("trials.csv"), trials).unwrap();
}

fn graph_task(name: &str, budget: &str) -> String {
    format!(
        "  {name}:\n    type: drug_graph\n    pubmed: [pubmed]\n    clinical_trials: [trials]\n    \
         output: {name}/graph.json\n    top_journals: {name}/top_journals.json\n    \
         depends_on: [drugs, pubmed, trials]\n{budget}"
    )
}

#[test]
fn a_tiny_budget_spills_and_writes_the_same_bytes() {
    let env = Env::new();
    write_sources(&env);
    let mut dag = String::from("dag_id: big\ntasks:\n");
    for table in ["drugs", "pubmed", "trials"] {
        dag.push_str(&format!(
            "  {table}: {{type: import, source: gen/{table}.csv, table: {table}}}\n"
        ));
    }
    dag.push_str(&graph_task("memory", ""));
    dag.push_str(&graph_task("spilled", "    memory_budget: 1MiB\n"));
    env.dag("big", &dag);
    // What a build killed outright (`kill -9`, out of memory) leaves: an unlocked spill folder,
    // here ten minutes old. The next build removes it.
    let stale = env.path("processed_data/spilled/.graph-spill-killed");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("range-0"), b"rows").unwrap();
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(then)
        .unwrap();
    env.ok(&["run", "big"]);
    assert!(!stale.exists(), "the stale spill folder was left");
    let read = |p: &str| std::fs::read(env.path(&format!("processed_data/{p}"))).unwrap();
    let memory = read("memory/graph.json");
    assert!(memory.len() > 1 << 20, "the graph must pass the budget");
    assert!(
        read("spilled/graph.json") == memory,
        "spilled graph differs"
    );
    assert_eq!(
        read("spilled/top_journals.json"),
        read("memory/top_journals.json")
    );
    assert_eq!(
        read("spilled/graph.rejects.jsonl"),
        read("memory/graph.rejects.jsonl")
    );
    assert!(
        crate::support::index_without_time(&read("spilled/graph.journals.jsonl"))
            == crate::support::index_without_time(&read("memory/graph.journals.jsonl")),
        "spilled journal index differs"
    );
    let run_id = env.runs("big")[0]["run_id"].as_str().unwrap().to_string();
    let log = env.ok(&["logs", &run_id, "spilled"]);
    assert!(log.contains("spilled to disk"), "{log}");
    assert!(
        log.contains("removed 1 spill folder(s)") && log.contains("killed"),
        "{log}"
    );
    assert!(
        !env.ok(&["logs", &run_id, "memory"])
            .contains("spilled to disk")
    );
    let merged = |log: &str| {
        log.lines()
            .find(|l| l.contains("merged into another row"))
            .map(|l| l.split_once("drug(s);").unwrap().1.to_string())
    };
    assert_eq!(merged(&log), merged(&env.ok(&["logs", &run_id, "memory"])));
    // Nothing is left of the spill beside the outputs.
    for dir in ["processed_data", "processed_data/spilled"] {
        for entry in std::fs::read_dir(env.path(dir)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "{dir}/{name} was left behind");
        }
    }
}

#[test]
fn a_bad_memory_budget_is_a_load_error_naming_the_field() {
    let env = Env::new();
    for (name, budget, expected) in [
        (
            "a",
            "12XB",
            "drug_graph 'memory_budget': cannot read '12XB' as a size (write e.g. 256MiB or 1GiB)",
        ),
        (
            "b",
            "1000",
            "drug_graph 'memory_budget': 1000 bytes is below the smallest budget, 1MiB",
        ),
    ] {
        env.dag(
            name,
            &format!(
                "dag_id: {name}\ntasks:\n  g: {{type: drug_graph, memory_budget: '{budget}'}}\n"
            ),
        );
        let out = env.run(&["dags", "validate"]);
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(all.contains(expected), "{all}");
        std::fs::remove_file(env.path(&format!("dags/{name}.yaml"))).unwrap();
    }
    env.dag(
        "c",
        "dag_id: c\ntasks:\n  g: {type: drug_graph, memory_budget: 256MiB}\n  h: {type: drug_graph, memory_budget: 2147483648}\n",
    );
    env.ok(&["dags", "validate"]);
}
