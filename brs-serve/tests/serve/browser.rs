//! The web page in headless Chromium (through chromedriver and WebDriver): the greeting draws the
//! sample portrait with this server's model; a picked photo shows its progress, then its
//! translation with a before/after slider and a download link; and a screenshot of the page.
//!
//! The screenshot goes to BRS_PAGE_SCREENSHOT when set (docs/page.png is made that way), else to
//! a temp dir; BRS_PAGE_MODEL points the server at a trained run instead of the tests' random
//! generator, so the screenshot shows a real translation (the README says how docs/page.png is made).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::common::{Server, client, fixture_path};
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> std::path::PathBuf {
    let path = std::env::var_os("BRS_CHROMEDRIVER")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/chromedriver"));
    assert!(
        path.is_file(),
        "chromedriver not found at {}: run scripts/setup (it installs Debian's chromium and chromium-driver)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_translates_a_picked_photo_in_headless_chromium() {
    let driver = chromedriver();
    let chromium = std::env::var("BRS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "chromium not found at {chromium}: run scripts/setup"
    );
    let model = std::env::var_os("BRS_PAGE_MODEL").map(std::path::PathBuf::from);
    let s = Server::start(|cfg| {
        if let (Some(model), Some(style)) = (model, cfg.styles.get_mut("default")) {
            style.path = model;
        }
    })
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _driver = Kill(
        Command::new(driver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1000,1200", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let caps = match caps {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a literal object"),
    };
    let t = Instant::now();
    let browser = loop {
        let conn = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match conn {
            Ok(c) => break c,
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a chromium session: {e}"),
        }
    };
    // Runs to the end or panics; either way the browser session is closed below only on success,
    // and the chromedriver process dies with its guard.
    async {
        browser.goto(&s.url("/")).await.expect("open page");
        // Translations come back at the model's size.
        let models: serde_json::Value = client()
            .get(s.url("/v1/models"))
            .send()
            .await
            .expect("GET /v1/models")
            .json()
            .await
            .expect("JSON");
        let side = models["styles"][0]["model"]["img_size"].as_i64().expect("img_size");
        // The greeting: the sample portrait drawn by this server's model, behind a slider.
        wait_for(&browser, "the sample portrait's drawing",
            "const i = document.querySelector('#hero img.after'); return i && i.complete ? i.naturalWidth : 0;",
            side).await;
        let status = script(&browser, "return document.getElementById('hero-status').textContent;").await;
        assert!(status.as_str().is_some_and(|t| t.starts_with("Drawn by")), "{status}");

        // One way to pick files: the "pick files" label; the browser's own button is not drawn.
        let drawn = script(&browser, "const r = document.getElementById('file').getBoundingClientRect(); return r.width * r.height;").await;
        assert!(drawn.as_f64().is_some_and(|a| a <= 1.0), "the native file button is drawn too: {drawn}");
        let input = browser.find(Locator::Css("input#file")).await.expect("file input");
        let photo = fixture_path("astronaut.png");
        input
            .send_keys(photo.to_str().expect("utf8"))
            .await
            .expect("pick the photo");
        // A card with a progress bar appears at once, then the translation replaces it.
        let card = script(&browser, "return document.querySelectorAll('.card progress, .card input[type=range]').length;").await;
        assert_eq!(card.as_u64(), Some(1), "no card for the picked photo");
        wait_for(&browser, "the picked photo's translation",
            "const i = document.querySelector('img.result'); return i && i.complete ? i.naturalWidth : 0;",
            side).await;
        let slider = browser.find(Locator::Css(".card input[type=range]")).await.expect("slider");
        assert_eq!(slider.prop("value").await.expect("value").as_deref(), Some("50"));
        let link = browser.find(Locator::Css(".card .status a")).await.expect("download link");
        let href = link.attr("href").await.expect("href").unwrap_or_default();
        assert!(href.contains("/v1/results/"), "{href}");
        let download = link.attr("download").await.expect("download").unwrap_or_default();
        assert_eq!(download, "astronaut-drawing.png");

        // The page as a visitor sees it: greeting, drop zone, the translated portrait.
        let png = browser.screenshot().await.expect("screenshot");
        let shot = image::load_from_memory(&png).expect("a PNG screenshot").to_rgb8();
        assert!(shot.width() >= 800 && shot.height() >= 800, "{:?}", shot.dimensions());
        let distinct: std::collections::HashSet<[u8; 3]> = shot.pixels().map(|p| p.0).collect();
        assert!(distinct.len() > 1000, "a blank screenshot ({} colours)", distinct.len());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = std::env::var_os("BRS_PAGE_SCREENSHOT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| dir.path().join("page.png"));
        std::fs::write(&path, &png).expect("write the screenshot");
    }
    .await;
    browser.close().await.expect("close browser");
    s.stop().await;
}

async fn script(browser: &Client, js: &str) -> serde_json::Value {
    browser.execute(js, vec![]).await.expect("script")
}

/// Polls `js` (which returns a number) until it returns `want`, for at most 60 s.
async fn wait_for(browser: &Client, what: &str, js: &str, want: i64) {
    let t = Instant::now();
    loop {
        if script(browser, js).await.as_i64() == Some(want) {
            return;
        }
        let status = script(
            browser,
            "return Array.from(document.querySelectorAll('.status')).map(s => s.textContent).join(' | ');",
        )
        .await;
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} never appeared; status lines: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
