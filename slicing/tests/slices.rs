//! Slices of small fixes whose dependences are known, API calls, code that does not parse, and
//! snapshots of slices of real SVEN fixes (skipped without the data).

use std::path::PathBuf;

use secvec_artifacts::language::Language;
use secvec_slicing::pdg::Pdg;
use secvec_slicing::slice::changed_lines;
use secvec_slicing::{api_calls, slice_fix, Fix};

const PY_BEFORE: &str = r#"def download(request):
    name = request.args["f"]
    base = "/srv/files"
    path = os.path.join(base, name)
    log.info("start")
    count = 0
    data = open(path).read()
    return data
"#;

const PY_AFTER: &str = r#"def download(request):
    name = request.args["f"]
    base = "/srv/files"
    path = safe_join(base, name)
    if path is None:
        abort(404)
    log.info("start")
    count = 0
    data = open(path).read()
    return data
"#;

#[test]
fn a_python_slice_keeps_what_the_changed_line_depends_on_and_affects() {
    let (deleted, added) = changed_lines(PY_BEFORE, PY_AFTER);
    assert_eq!((deleted.clone(), added.clone()), (vec![4], vec![4, 5, 6]));
    let s = slice_fix(
        &Fix {
            language: Language::Python,
            before: PY_BEFORE,
            after: PY_AFTER,
            deleted,
            added,
        },
        2,
    );
    // Backward: base (3), name (2), and through name the parameter (1). Forward: path is read
    // at 7, whose data is returned at 8. The log call and the counter are unrelated.
    assert_eq!(s.vulnerable_lines, vec![1, 2, 3, 4, 7, 8]);
    // The secure side: its own slice plus the vulnerable side's context, line for line.
    assert_eq!(s.secure_lines, vec![1, 2, 3, 4, 5, 6, 9, 10]);
    assert!(!s.secure.contains("log.info") && !s.secure.contains("count"));
    assert_eq!(
        (s.loc_before, s.loc_after, s.loc_vulnerable, s.loc_secure),
        (8, 10, 6, 8)
    );
    assert_eq!(s.parse_errors, 0);
}

#[test]
fn a_hop_limit_of_one_stops_one_edge_away() {
    let (deleted, added) = changed_lines(PY_BEFORE, PY_AFTER);
    let s = slice_fix(
        &Fix {
            language: Language::Python,
            before: PY_BEFORE,
            after: PY_AFTER,
            deleted,
            added,
        },
        1,
    );
    // 8 is two edges from 4; 1 stays as the function's header.
    assert_eq!(s.vulnerable_lines, vec![1, 2, 3, 4, 7]);
}

const C_BEFORE: &str = r#"int copy_name(const char *input, int verbose) {
    char buf[16];
    int n = 0;
    if (verbose) {
        puts("copying");
    }
    strcpy(buf, input);
    n = strlen(buf);
    return n;
}
"#;

const C_AFTER: &str = r#"int copy_name(const char *input, int verbose) {
    char buf[16];
    int n = 0;
    if (verbose) {
        puts("copying");
    }
    strncpy(buf, input, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = '\0';
    n = strlen(buf);
    return n;
}
"#;

#[test]
fn a_c_slice_follows_the_buffer_and_leaves_the_unrelated_branch() {
    let (deleted, added) = changed_lines(C_BEFORE, C_AFTER);
    let s = slice_fix(
        &Fix {
            language: Language::C,
            before: C_BEFORE,
            after: C_AFTER,
            deleted,
            added,
        },
        2,
    );
    // strcpy writes buf (declared at 2) from input (the header); strlen reads buf at 8, whose n
    // is returned at 9. `n = 0` is overwritten before any read; the verbose branch is unrelated.
    assert_eq!(s.vulnerable_lines, vec![1, 2, 7, 8, 9]);
    assert!(s.vulnerable.contains("strcpy(buf, input);") && !s.vulnerable.contains("puts"));
    assert!(s.secure.contains("strncpy") && s.secure.contains("buf[sizeof(buf) - 1] = '\\0';"));
}

#[test]
fn control_dependence_brings_the_condition_and_loop_carried_definitions_reach_back() {
    let code = "def f(xs, limit):\n    total = 0\n    for x in xs:\n        if x > limit:\n            total = total + x\n    return total\n";
    let pdg = Pdg::build(Language::Python, code);
    let line_of = |s: usize| pdg.statements[s].lines[0] + 1;
    let edges = |e: &[(usize, usize)]| e.iter().map(|&(a, b)| (line_of(a), line_of(b))).collect::<Vec<_>>();
    let control = edges(&pdg.control);
    let data = edges(&pdg.data);
    assert!(control.contains(&(4, 5)) && control.contains(&(3, 4)), "{control:?}");
    // total at 5 reads the initial value (2) and its own previous iteration (5 is also a def,
    // but an edge to itself is left out); x comes from the loop header; limit from the header.
    assert!(
        data.contains(&(2, 5)) && data.contains(&(3, 4)) && data.contains(&(1, 4)),
        "{data:?}"
    );
    assert!(data.contains(&(5, 6)) && data.contains(&(2, 6)), "{data:?}");
}

#[test]
fn api_calls_are_the_callees_as_written() {
    assert_eq!(
        api_calls(Language::Python, PY_BEFORE),
        vec!["os.path.join", "log.info", "open(path).read", "open"]
    );
    assert_eq!(api_calls(Language::C, C_AFTER), vec!["puts", "strncpy", "strlen"]);
}

#[test]
fn code_that_does_not_parse_still_slices_what_parsed_and_says_so() {
    let before = "def f(a):\n    b = a +\n    c = g(a)\n    return c\n";
    let after = "def f(a):\n    b = a +\n    c = h(a)\n    return c\n";
    let (deleted, added) = changed_lines(before, after);
    let s = slice_fix(
        &Fix {
            language: Language::Python,
            before,
            after,
            deleted,
            added,
        },
        2,
    );
    assert!(s.parse_errors > 0);
    assert!(s.vulnerable.contains("c = g(a)") && s.secure.contains("c = h(a)"));
}

fn sven() -> Option<PathBuf> {
    let dir = std::env::var_os("SECVEC_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join("sven/data_train_val/train");
    let ok = dir.is_dir();
    if !ok {
        let why = "no SVEN data (set SECVEC_DATA or see ../shared/data)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why}; under CI it is required"
        );
        eprintln!("notice: {why}; skipping the real-fix snapshots");
    }
    ok.then_some(dir)
}

#[test]
fn slices_of_real_sven_fixes() {
    let Some(dir) = sven() else {
        return;
    };
    for (file, line) in [
        ("cwe-022.jsonl", 0),
        ("cwe-078.jsonl", 0),
        ("cwe-787.jsonl", 0),
        ("cwe-476.jsonl", 1),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let record: serde_json::Value = serde_json::from_str(text.lines().nth(line).unwrap()).unwrap();
        let lines = |side: &str| -> Vec<usize> {
            record["line_changes"][side]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["line_no"].as_u64().unwrap() as usize)
                .collect()
        };
        let language = Language::from_file_name(record["file_name"].as_str().unwrap()).unwrap();
        let s = slice_fix(
            &Fix {
                language,
                before: record["func_src_before"].as_str().unwrap(),
                after: record["func_src_after"].as_str().unwrap(),
                deleted: lines("deleted"),
                added: lines("added"),
            },
            2,
        );
        assert!(s.loc_vulnerable <= s.loc_before && s.loc_secure <= s.loc_after);
        insta::assert_snapshot!(
            format!("sven_{}_{line}", file.trim_end_matches(".jsonl")),
            format!(
                "{file}:{} ({}, {} -> {} / {} -> {} lines, {} parse errors)\n--- vulnerable\n{}\n--- secure\n{}\n",
                line + 1,
                record["func_name"],
                s.loc_before,
                s.loc_vulnerable,
                s.loc_after,
                s.loc_secure,
                s.parse_errors,
                s.vulnerable,
                s.secure
            )
        );
    }
}
