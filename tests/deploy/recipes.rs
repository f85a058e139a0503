//! `docs/api.md` and `README.zh-CN.md` run as written: its ```sh blocks, in order, in one bash
//! with `set -euo pipefail`, against a fresh `herald serve` (with `herald`
//! on PATH for the token recipes). Every line a block shows after `# → ` is
//! compared with what the block printed, line by line: JSON (also after an
//! SSE `data: `) structurally, where `"…"` matches any value and objects may
//! have members the example leaves out; other lines literally, with `…`
//! matching any text. A failing curl (HTTP status >= 400) fails the test.
//! ```shell blocks are shown, not run.

use std::path::Path;

use serde_json::Value;

use crate::cluster::{Herald, SECRET, fresh_database, scratch_dir};

/// Runs before the blocks. curl prints each body on its own line and fails
/// on an error status; a stream ended by its own `--max-time` (`-N`, exit
/// 28) is a normal end.
const PRELUDE: &str = r#"set -euo pipefail
curl() {
    local rc=0
    command curl --fail-with-body -w '\n' "$@" || rc=$?
    if [ $rc -eq 28 ] && [[ " $* " == *" -N "* ]]; then rc=0; fi
    return $rc
}
"#;

const MARK: &str = "@@ end of block @@";

struct Block {
    code: String,
    expected: Vec<String>,
    line: usize,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (n, line) in doc.lines().enumerate() {
        match (&mut current, line) {
            (None, "```sh") => {
                current = Some(Block {
                    code: String::new(),
                    expected: Vec::new(),
                    line: n + 1,
                })
            }
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                if let Some(shown) = line.strip_prefix("# → ") {
                    block.expected.push(shown.to_owned());
                }
                block.code.push_str(line);
                block.code.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unterminated ```sh block");
    blocks
}

/// `actual` has every member of `template`, `"…"` matching anything.
fn json_matches(template: &Value, actual: &Value) -> bool {
    match (template, actual) {
        (Value::String(s), _) if s == "…" => true,
        (Value::Object(t), Value::Object(a)) => t
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|x| json_matches(v, x))),
        (Value::Array(t), Value::Array(a)) => {
            t.len() == a.len() && t.iter().zip(a).all(|(t, a)| json_matches(t, a))
        }
        _ => template == actual,
    }
}

/// Literal text, `…` matching any run of characters.
fn text_matches(template: &str, actual: &str) -> bool {
    let parts: Vec<&str> = template.split('…').collect();
    let Some(rest) = actual.strip_prefix(parts[0]) else {
        return false;
    };
    if parts.len() == 1 {
        return rest.is_empty();
    }
    let mut rest = rest;
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(parts[parts.len() - 1])
}

fn line_matches(template: &str, actual: &str) -> bool {
    let split = |s: &str| match s.strip_prefix("data: ") {
        Some(rest) => ("data: ", rest.to_owned()),
        None => ("", s.to_owned()),
    };
    let ((tp, tj), (ap, aj)) = (split(template), split(actual));
    if let (Ok(t), Ok(a)) = (
        serde_json::from_str::<Value>(&tj),
        serde_json::from_str::<Value>(&aj),
    ) && (t.is_object() || t.is_array())
    {
        return tp == ap && json_matches(&t, &a);
    }
    text_matches(template, actual)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_recipes_run_as_written_and_answer_as_shown() {
    run_recipes("docs/api.md", 12, "recipes_en").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chinese_readme_recipes_run_as_written_and_answer_as_shown() {
    run_recipes("README.zh-CN.md", 8, "recipes_zh").await;
}

/// Runs the ```sh blocks of `doc` (at least `min_blocks` of them) against
/// a fresh server on database `name`.
async fn run_recipes(doc: &str, min_blocks: usize, name: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join(doc)).unwrap();
    let blocks = blocks(&text);
    assert!(
        blocks.len() >= min_blocks,
        "{doc}: only {} runnable blocks",
        blocks.len()
    );

    let db = fresh_database(name).await;
    let herald = Herald::start(&db, scratch_dir(name).join("herald.log")).await;
    let mut script = PRELUDE.to_owned();
    for block in &blocks {
        script.push_str(&block.code);
        script.push_str(&format!("echo '{MARK}'\n"));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_herald")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin.to_owned()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch_dir(&format!("{name}-shell")))
        .env("PATH", path)
        .env("HERALD", format!("http://127.0.0.1:{}", herald.port))
        .env("HERALD_JWT_SECRET", SECRET)
        .env("HERALD_CONFIG_DIR", root.join("config"))
        .env_remove("HERALD_ENV")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the recipes failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    let outputs: Vec<&str> = stdout.split(&format!("{MARK}\n")).collect();
    assert_eq!(outputs.len(), blocks.len() + 1, "{stdout}");
    for (block, output) in blocks.iter().zip(&outputs) {
        // Blank lines separate SSE events; `:` lines are SSE heartbeats.
        let printed: Vec<&str> = output
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(':'))
            .collect();
        let matches = printed.len() == block.expected.len()
            && block
                .expected
                .iter()
                .zip(&printed)
                .all(|(t, a)| line_matches(t, a));
        assert!(
            matches,
            "{doc} line {}: the block shows\n{}\nbut printed\n{}",
            block.line,
            block.expected.join("\n"),
            printed.join("\n")
        );
    }
}

#[test]
fn the_matcher_tells_shown_from_printed_answers_apart() {
    assert!(line_matches(
        r#"{"a":"…","b":[1]}"#,
        r#"{"a":{"x":1},"b":[1],"c":2}"#
    ));
    assert!(!line_matches(
        r#"{"a":"…","b":[1]}"#,
        r#"{"a":1,"b":[1,2]}"#
    ));
    assert!(!line_matches(r#"{"a":"…","b":1}"#, r#"{"b":1}"#));
    assert!(line_matches(
        r#"data: {"id":"…"}"#,
        r#"data: {"id": "x", "n": 1}"#
    ));
    assert!(!line_matches(r#"data: {"id":"…"}"#, r#"{"id": "x"}"#));
    assert!(line_matches("id: …", "id: 5"));
    assert!(!line_matches("id: 5", "id: 6"));
    assert!(line_matches("…", "01a21d1b-54b5"));
    assert!(!line_matches("retry: 2000", "retry: 20000"));
}
