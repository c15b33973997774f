//! The web page in headless Chromium (through chromedriver and WebDriver): pick a photo, see its
//! translation appear with a before/after slider and a download link.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::common::{Server, fixture_path};

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
    let s = Server::start(|_| {}).await;
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
                "--disable-dev-shm-usage",
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
        let input = browser.find(Locator::Css("input#file")).await.expect("file input");
        let photo = fixture_path("astronaut.png");
        input
            .send_keys(photo.to_str().expect("utf8"))
            .await
            .expect("pick the photo");
        let t = Instant::now();
        loop {
            let w = browser
                .execute(
                    "const i = document.querySelector('img.result'); return i && i.complete ? i.naturalWidth : 0;",
                    vec![],
                )
                .await
                .expect("script");
            if w.as_u64() == Some(96) {
                break;
            }
            let status = browser
                .execute("const s = document.querySelector('.status'); return s ? s.textContent : '';", vec![])
                .await
                .expect("script");
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no translation shown; status line: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let slider = browser.find(Locator::Css(".card input[type=range]")).await.expect("slider");
        assert_eq!(slider.prop("value").await.expect("value").as_deref(), Some("50"));
        let link = browser.find(Locator::Css(".status a")).await.expect("download link");
        let href = link.attr("href").await.expect("href").unwrap_or_default();
        assert!(href.starts_with("blob:"), "{href}");
        let download = link.attr("download").await.expect("download").unwrap_or_default();
        assert_eq!(download, "astronaut-drawing.png");
    }
    .await;
    browser.close().await.expect("close browser");
    s.stop().await;
}
