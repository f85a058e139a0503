//! Keys that change at the identity provider: picked up without a restart,
//! at a bounded rate, and as the key set's `Cache-Control` says.

use jsonwebtoken::Algorithm;

use super::{list_with, spawn, spawn_with_url, status_with};
use crate::support::jwks::{Answer, JwksServer, TestKey};
use crate::support::{assert_problem, wait_for};

#[tokio::test]
async fn a_key_rotated_in_at_the_provider_works_without_a_restart() {
    let old = TestKey::generate(Algorithm::RS256, "2026-01");
    let new = TestKey::generate(Algorithm::RS256, "2026-02");
    let server = JwksServer::start(Answer::keys(&[&old])).await;
    let app = spawn(&server).await;
    assert_eq!(status_with(&app, &old.token("kim", &[])).await, 200);
    assert_eq!(server.requests(), 1);
    // The provider publishes the new key and signs with it; the set's
    // lifetime (300 s by default) is far off: the unknown kid refetches.
    server.answer(Answer::keys(&[&old, &new]));
    assert_eq!(status_with(&app, &new.token("kim", &[])).await, 200);
    assert_eq!(server.requests(), 2);
    assert_eq!(status_with(&app, &old.token("kim", &[])).await, 200);
    assert_eq!(status_with(&app, &new.token("lee", &[])).await, 200);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_refetches_the_set_at_most_once_per_interval() {
    let key = TestKey::generate(Algorithm::ES256, "real");
    let later = TestKey::generate(Algorithm::ES256, "later");
    let server = JwksServer::start(Answer::keys(&[&key])).await;
    let app = spawn(&server).await;
    assert_eq!(status_with(&app, &key.token("kim", &[])).await, 200);
    assert_eq!(server.requests(), 1);
    let mut floods = Vec::new();
    for i in 0..200 {
        let bogus = key.with_kid(&format!("bogus-{i}"));
        let (http, url) = (app.http.clone(), app.url("/v1/me/notifications"));
        floods.push(tokio::spawn(async move {
            http.get(url)
                .bearer_auth(bogus.token("kim", &[]))
                .send()
                .await
                .unwrap()
        }));
    }
    for flood in floods {
        assert_problem(flood.await.unwrap(), 401, "`kid` names no key").await;
    }
    assert_eq!(server.requests(), 2, "one refetch for 200 unknown kids");
    // Within the interval (30 s) even a genuine new key waits for the
    // set's lifetime or the next interval; the known key works throughout.
    server.answer(Answer::keys(&[&key, &later]));
    assert_problem(
        list_with(&app, &later.token("kim", &[])).await,
        401,
        "`kid` names no key",
    )
    .await;
    assert_eq!(status_with(&app, &key.token("kim", &[])).await, 200);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn the_refetch_interval_is_a_setting() {
    let key = TestKey::generate(Algorithm::EdDSA, "real");
    let later = TestKey::generate(Algorithm::EdDSA, "later");
    let server = JwksServer::start(Answer::keys(&[&key])).await;
    let app = spawn_with_url(server.url(), |s| s.auth.jwks_refetch_secs = 1).await;
    assert_eq!(status_with(&app, &later.token("kim", &[])).await, 401);
    assert_eq!(server.requests(), 2);
    server.answer(Answer::keys(&[&key, &later]));
    let started = std::time::Instant::now();
    // Asking every 20 ms: a refetch once the second is over, not sooner.
    wait_for(|| async { status_with(&app, &later.token("kim", &[])).await == 200 }).await;
    let (fetches, elapsed) = (server.requests() - 2, started.elapsed().as_secs());
    assert!(
        fetches <= elapsed as usize + 1,
        "{fetches} fetches in {elapsed} s"
    );
}

#[tokio::test]
async fn the_key_set_is_refreshed_when_its_max_age_ends() {
    let old = TestKey::generate(Algorithm::RS256, "old");
    let new = TestKey::generate(Algorithm::ES256, "new");
    let server = JwksServer::start(Answer::keys(&[&old]).max_age(1)).await;
    let app = spawn_with_url(server.url(), |s| s.auth.jwks_cache_min_secs = 1).await;
    assert_eq!(status_with(&app, &old.token("kim", &[])).await, 200);
    // The provider drops the old key: once the set's second is over the
    // refreshed set is used, without any token asking for it.
    server.answer(Answer::keys(&[&new]).max_age(1));
    wait_for(|| async { status_with(&app, &old.token("kim", &[])).await == 401 }).await;
    let fetched = server.requests();
    assert!(fetched >= 2);
    assert_eq!(status_with(&app, &new.token("kim", &[])).await, 200);
    // The old token's 401s and the new one's 200 came from the cache.
    assert!(server.requests() <= fetched + 1);
}
