//! RFC 9457 problem answers.

use serde_json::Value;

pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    detail_contains: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
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
