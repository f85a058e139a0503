//! `GET /client/herald.js` and `GET /client/miniprogram.js`: the package's
//! module, byte for byte, with a content hash as `ETag`.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use super::js_dir;
use crate::support::TestApp;

#[tokio::test]
async fn the_client_is_served_as_a_module_with_an_etag_and_answers_304_when_current() {
    let app = TestApp::spawn().await;
    let file = std::fs::read_to_string(js_dir().join("herald.js")).unwrap();
    let mut tags = Vec::new();
    for path in ["/client/herald.js", "/client/miniprogram.js"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(r.headers()[CACHE_CONTROL], "public, max-age=3600");
        let etag = r.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(
            etag.len() > 10 && etag.starts_with('"') && etag.ends_with('"'),
            "a strong validator: {etag}"
        );
        assert_eq!(
            r.text().await.unwrap(),
            file,
            "{path} is the package's herald.js"
        );

        for current in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"older\", {etag}"),
            "*".to_owned(),
        ] {
            let r = app
                .http
                .get(app.url(path))
                .header(IF_NONE_MATCH, &current)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 304, "If-None-Match: {current}");
            assert_eq!(r.headers()[ETAG], etag.as_str());
            assert_eq!(r.headers()[CACHE_CONTROL], "public, max-age=3600");
            assert!(r.bytes().await.unwrap().is_empty());
        }
        let r = app
            .http
            .get(app.url(path))
            .header(IF_NONE_MATCH, "\"an-older-version\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "an older copy gets the file");
        assert_eq!(r.text().await.unwrap(), file);
        tags.push(etag);
    }
    assert_eq!(tags[0], tags[1], "one file under two names");
}
