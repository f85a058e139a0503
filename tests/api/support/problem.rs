//! RFC 9457 problem answers.

use serde_json::Value;

/// `response` is a problem+json answer with `status` whose detail contains
/// `detail_contains`; its body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    detail_contains: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let content_type = response.headers()["content-type"].clone();
    let body = response.text().await.unwrap();
    assert_problem_parts(
        status,
        content_type.to_str().unwrap(),
        &body,
        status,
        detail_contains,
    )
}

/// The same check on an answer already read (status, content type, body).
pub fn assert_problem_parts(
    answered: u16,
    content_type: &str,
    body: &str,
    status: u16,
    detail_contains: &str,
) -> Value {
    assert_eq!(answered, status, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://herald.example/problems/"),
        "{body}"
    );
    assert!(!body["title"].as_str().unwrap().is_empty());
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_contains),
        "detail {detail:?} should contain {detail_contains:?}"
    );
    body
}
