//! openapi.yaml describes exactly the routes the server registers.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

#[test]
fn openapi_paths_and_methods_match_the_route_table() {
    let spec: Value =
        serde_yaml_ng::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml parses");
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&method) {
                documented.insert((method.to_owned(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    let served: BTreeSet<_> = herald::http::routes::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[tokio::test]
async fn the_server_serves_its_spec() {
    let app = crate::support::TestApp::spawn().await;
    let r = app.http.get(app.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), include_str!("../../openapi.yaml"));
}
