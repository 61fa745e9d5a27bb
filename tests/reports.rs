//! The `report` kind end to end: tables, figures and the HTML page, from real scores of the
//! quickstart's known completions, and the page rendered by a real headless Chromium.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bwrap_available, Workspace};

const MANIFEST: &str = r#"
name: reports-check
stages:
  scenarios:
    kind: scenarios
    inputs: {data: {path: data/quickstart-scenarios}}
  known-scores:
    kind: score
    inputs:
      scenarios: scenarios
      samples: {path: data/quickstart-completions.jsonl}
      oracles: {path: oracles}
  report:
    kind: report
    inputs: {results: known-scores}
    params:
      title: Known completions
      tables:
        - title: Per scenario, best pass@1 first, a total per set
          rows: [set, scenario]
          columns: [n, functional, secure, pass@1, sec-pass@1]
          aggregate: {n: sum, functional: sum, secure: sum}
          total_by: set
          sort: [-pass@1, scenario]
        - title: Set means, and which stage they came from
          from: sets
          rows: [stage, set]
          columns: [scenarios, pass@1, sec-pass@1]
      figures:
        - title: Functional against secure
          kind: scatter
          x: pass@1
          y: secure_rate
          label: scenario
          series: [language]
        - title: pass@1 and sec-pass@1 per scenario
          kind: bars
          x: scenario
          y: [pass@1, sec-pass@1]
"#;

/// Debian's Chromium, which scripts/setup.sh installs; says so when it is missing.
fn chromium() -> Option<&'static str> {
    let path = "/usr/bin/chromium";
    if Path::new(path).exists() {
        Some(path)
    } else {
        eprintln!("notice: chromium is not installed (scripts/setup.sh installs it); skipping the browser check");
        None
    }
}

fn headless(chromium: &str, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn report_writes_tables_figures_and_a_page_that_a_browser_renders() {
    if !bwrap_available() {
        return;
    }
    let ws = Workspace::new();
    ws.write("manifests/reports-check.yaml", MANIFEST);
    ws.run_json(&["manifests/reports-check.yaml"]);
    let out = ws.path().join("out/reports-check/report");
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    insta::assert_snapshot!("known_completions_report", markdown);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let first = &json["tables"][0]["rows"][0];
    assert!(
        first["n"].is_number() && first["pass@1"].is_number(),
        "numbers stay numbers: {first}"
    );
    assert_eq!(json["tables"][1]["rows"][0]["stage"], "known-scores");
    assert_eq!(json["figures"][0]["png"], "figure-1.png");
    for f in ["figure-1.svg", "figure-1.png", "figure-2.svg", "figure-2.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }

    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 2, "both figures inline");
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "self-contained"
    );
    // Every scenario's failures are listed, with the vulnerable completion's oracle finding.
    for scenario in ["cwe-022/0-py", "cwe-089/0-py", "cwe-787/0-c"] {
        assert!(page.contains(&format!("<td>{scenario}</td>")), "{scenario}");
    }
    assert!(
        page.contains("flagged by"),
        "the vulnerable completions' findings are shown"
    );

    let Some(chromium) = chromium() else { return };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", out.join("report.html").display());
    let dom = headless(chromium, profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<svg").count(), 2, "the browser parsed both figures");
    assert!(dom.contains("Failures per scenario") && dom.contains("Provenance"));
    let shot = ws.path().join("report.png");
    let status = headless(chromium, profile.path())
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2600")
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1280, 2600));
    let channels = info.color_type.samples();
    // The figures' first series colour (#1F77B4) is painted: the SVG rendered, not just parsed.
    let blue = pixels.chunks(channels).filter(|p| p[..3] == [0x1F, 0x77, 0xB4]).count();
    assert!(blue > 100, "only {blue} pixels of the figures' blue in the screenshot");
    if let Some(keep) = std::env::var_os("SECVEC_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
