//! A headless Chromium driven through the DevTools protocol, for the
//! browser tests of the page (`browser.rs`) and of the client library
//! (`client_js`): tabs, script evaluation, waiting for a condition, and
//! screenshots.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A headless Chromium with a fresh profile, killed when dropped.
pub struct Browser {
    _child: Child,
    _profile: PathBuf,
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
}

/// One tab, attached with its own DevTools session.
pub struct Tab<'a> {
    browser: &'a Browser,
    session: String,
    target: String,
}

impl Browser {
    pub async fn launch(name: &str) -> Self {
        Self::launch_with(name, &[]).await
    }

    /// With more command-line flags, e.g. `--accept-lang`, which sets
    /// `navigator.languages` the way a reader's browser settings do.
    pub async fn launch_with(name: &str, flags: &[&str]) -> Self {
        let binary =
            std::env::var("HERALD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "Chromium is needed for the browser tests: install the `chromium` package (scripts/test.sh does)"
        );
        let profile = crate::support::scratch_dir(&format!("chromium-{name}"));
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1000,800",
            ])
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let endpoint = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited before announcing its DevTools endpoint");
        })
        .await
        .expect("chromium announces its DevTools endpoint");
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(endpoint).await.unwrap();
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        });
        let pending: Pending = Arc::default();
        let dispatch = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                let message: Value = serde_json::from_str(&text).unwrap();
                if let Some(id) = message["id"].as_u64()
                    && let Some(reply) = dispatch.lock().await.remove(&id)
                {
                    let _ = reply.send(message);
                }
            }
        });
        Self {
            _child: child,
            _profile: profile,
            out,
            pending,
            next_id: AtomicU64::new(1),
        }
    }

    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params).await {
            Ok(result) => result,
            Err(answer) => panic!("{method} failed: {answer}"),
        }
    }

    /// The result of `method`, or the whole answer when it is an error.
    async fn try_call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.pending.lock().await.insert(id, reply);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        self.out.send(message.to_string()).unwrap();
        let answer = tokio::time::timeout(WAIT, answer)
            .await
            .expect("DevTools answers")
            .unwrap();
        if answer.get("error").is_some() {
            return Err(answer);
        }
        Ok(answer["result"].clone())
    }

    /// A new tab; `before_load` runs in the page before its own scripts.
    pub async fn open(&self, url: &str, before_load: Option<&str>) -> Tab<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let tab = Tab {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_owned(),
            target: target["targetId"].as_str().unwrap().to_owned(),
        };
        tab.call("Page.enable", json!({})).await;
        if let Some(source) = before_load {
            tab.call(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": source}),
            )
            .await;
        }
        tab.call("Page.navigate", json!({"url": url})).await;
        tab
    }
}

impl Tab<'_> {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Closes the tab, as a reader closing it would (the page gets `pagehide`).
    pub async fn close(self) {
        self.browser
            .call(None, "Target.closeTarget", json!({"targetId": self.target}))
            .await;
    }

    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    pub async fn until(&self, expression: &str) {
        self.until_within(expression, WAIT).await;
    }

    /// Waits up to `timeout` until `expression` is true in the page. A
    /// condition may be polled across a navigation (a reload): an
    /// evaluation the navigation cut short counts as "not yet".
    pub async fn until_within(&self, expression: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let params =
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
            match self
                .browser
                .try_call(Some(&self.session), "Runtime.evaluate", params)
                .await
            {
                Ok(result) if result["result"]["value"] == json!(true) => return,
                Ok(_) => {}
                Err(answer) => {
                    let message = answer["error"]["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains("navigated or closed")
                            || message.contains("context was destroyed"),
                        "Runtime.evaluate failed: {answer}"
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                let state = self.eval("JSON.stringify({...document.body.dataset, error: document.querySelector('#error')?.textContent})").await;
                panic!("`{expression}` did not become true; page state {state}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the viewport, written as `dir/name`.
    pub async fn screenshot_into(&self, dir: &Path, name: &str) -> PathBuf {
        // Not halfway through a transition.
        self.until("document.getAnimations().length === 0").await;
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = decode_base64(shot["data"].as_str().unwrap());
        assert_eq!(&png[1..4], b"PNG");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (value(c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
