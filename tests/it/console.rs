//! The console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, installed by
//! scripts/install-test-tools) driven through chromedriver against a real `serve`. An operator signs in, finds leads
//! retrying while HubSpot is down and then dead-lettered, reads one's timeline, previews a redrive (a dry run),
//! confirms it once HubSpot is back, and sees the leads delivered; the audit trail names the operator. A screenshot
//! of each page is kept in `target/console-screenshots/` (the docs show copies: docs/console.md).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::{headers, Serve};

const OPERATOR_TOKEN: &str = "alice-console-token-0123456789";

/// chromedriver on a free loopback port, killed when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromedriver not found: run scripts/install-test-tools chromium (Debian's chromium-driver)");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    Driver(child, port)
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let connected = ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.1))
            .await;
        match connected {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("chromedriver did not start Chromium: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The element `css` of the page a click led to, once it is there (at most 20 s).
async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    match client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => {
            panic!("no {css} ({e}) on {}: {}", client.current_url().await.unwrap(), client.source().await.unwrap())
        }
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the page's table `id` once it shows `count` rows (reloading `url` until it does, for 45 s: the
/// whole suite shares a slow machine's cores).
async fn rows(client: &Client, url: &str, table: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        client.goto(url).await.unwrap();
        let found = client.find_all(Locator::Css(&format!("#{table} tbody tr"))).await.unwrap();
        let mut texts = Vec::new();
        for row in &found {
            texts.push(row.text().await.unwrap());
        }
        if texts.len() == count || Instant::now() > deadline {
            assert_eq!(texts.len(), count, "{url}: {texts:?}");
            return texts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_parked_leads_and_redrives_them_in_the_browser() {
    let operators = format!("alice:{OPERATOR_TOKEN}");
    let serve = Serve::start(&[
        ("HUBRELAY_CONSOLE_OPERATORS", &operators),
        ("HUBRELAY_RETRY_SCHEDULE", "8s,2s"),
        ("HUBRELAY_RETRY_JITTER", "0"),
        ("RUST_LOG", "error"),
    ]);
    let driver = chromedriver();
    let client = browser(&driver).await;
    let console = format!("{}/console", serve.url);

    // Signed out, the console asks for an operator token; a sender's token is not one.
    client.goto(&console).await.unwrap();
    assert!(client.current_url().await.unwrap().path().ends_with("/console/login"));
    shot(&client, "1-sign-in").await;
    find(&client, "input[name=token]").await.send_keys("test-token-1").await.unwrap();
    find(&client, "button[type=submit]").await.click().await.unwrap();
    assert!(find(&client, "p.error").await.text().await.unwrap().contains("not an operator token"));
    find(&client, "input[name=token]").await.send_keys(OPERATOR_TOKEN).await.unwrap();
    find(&client, "button[type=submit]").await.click().await.unwrap();
    find(&client, "table#events").await;
    assert!(client.current_url().await.unwrap().path().ends_with("/console/events"));

    // HubSpot is down: each lead is queued. They are posted once the operator is signed in, so that a slow machine
    // (starting Chromium takes seconds) still finds them retrying: the first retry waits 8 s.
    serve.set_faults(json!({"failure_rate": 1.0, "failure_status": 503})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let lead = json!({"email": format!("console-{i}@example.com"), "first_name": "Ada", "priority": "high"});
        let (status, _, body) = serve.post_lead(&lead, headers(&[])).await;
        assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
        ids.push(body["event_id"].as_str().unwrap().to_string());
    }

    // Retrying, then dead-lettered once the schedule (two retries, 8 s and 2 s apart) is spent.
    let retrying = rows(&client, &format!("{console}/events?status=retrying"), "events", 3).await;
    assert!(retrying.iter().all(|r| r.contains("retrying") && r.contains("c***@e***.com")), "{retrying:?}");
    assert!(!client.source().await.unwrap().contains("console-0@example.com"), "emails are masked");
    shot(&client, "2-events-retrying").await;
    let parked = rows(&client, &format!("{console}/events?status=dead_lettered"), "events", 3).await;
    assert!(parked.iter().all(|r| r.contains("retries_exhausted")), "{parked:?}");
    shot(&client, "3-events-dead-lettered").await;

    // One event's timeline: three attempts, each a HubSpot 503.
    client.goto(&format!("{console}/events/{}", ids[0])).await.unwrap();
    let attempts = client.find_all(Locator::Css("#attempts tbody tr")).await.unwrap();
    assert_eq!(attempts.len(), 3);
    for row in &attempts {
        let text = row.text().await.unwrap();
        assert!(text.contains("hubspot") && text.contains("503") && text.contains("hubspot_unavailable"), "{text}");
    }
    shot(&client, "4-event-timeline").await;

    // HubSpot is back. Select the three dead letters, preview the redrive (nothing moves), then confirm it.
    serve.set_faults(json!({"failure_rate": 0.0})).await;
    rows(&client, &format!("{console}/dead-letters"), "dead-letters", 3).await;
    for checkbox in client.find_all(Locator::Css("#dead-letters input[type=checkbox]")).await.unwrap() {
        checkbox.click().await.unwrap();
    }
    shot(&client, "5-dead-letters").await;
    find(&client, "button[value=redrive]").await.click().await.unwrap();
    let preview = find(&client, "#preview").await.text().await.unwrap();
    assert!(preview.contains("3 back on the retry queue"), "{preview}");
    shot(&client, "6-redrive-preview").await;
    let dlq = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["dlq", "list", "--json", "--data-dir"])
        .arg(serve.data_dir.path())
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&dlq.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "the dry run moved nothing: {listed}");
    find(&client, "button[name=confirm]").await.click().await.unwrap();
    let result = find(&client, "#result").await.text().await.unwrap();
    assert!(result.contains("3 redriven"), "{result}");
    shot(&client, "7-redriven").await;

    // Delivered, each with its failures and one delivery in its timeline.
    let delivered = rows(&client, &format!("{console}/events?status=delivered"), "events", 3).await;
    assert!(delivered.iter().all(|r| r.contains("delivered")), "{delivered:?}");
    shot(&client, "8-events-delivered").await;
    // A time range (UTC): the three were received after 2000 and before 3000, not before 2000.
    rows(
        &client,
        &format!("{console}/events?status=delivered&from=2000-01-01T00:00&until=3000-01-01T00:00"),
        "events",
        3,
    )
    .await;
    rows(&client, &format!("{console}/events?status=delivered&until=2000-01-01T00:00"), "events", 0).await;
    client.goto(&format!("{console}/events/{}", ids[0])).await.unwrap();
    assert_eq!(client.find_all(Locator::Css("#attempts tbody tr")).await.unwrap().len(), 4);

    // Search by email: the address bar keeps only the email's hash; one lead matches, shown masked. The CLI finds
    // the same one.
    client.goto(&format!("{console}/events")).await.unwrap();
    find(&client, "#email-search input[name=email]").await.send_keys("not an email").await.unwrap();
    find(&client, "#email-search button").await.click().await.unwrap();
    assert!(find(&client, "p.error").await.text().await.unwrap().contains("not a valid email address"));
    find(&client, "#email-search input[name=email]").await.send_keys(" Console-1@Example.com").await.unwrap();
    find(&client, "#email-search button").await.click().await.unwrap();
    find(&client, "#email-filter").await;
    let url = client.current_url().await.unwrap().to_string();
    assert!(url.contains("email_hash=") && !url.to_lowercase().contains("example"), "{url}");
    let matched = client.find_all(Locator::Css("#events tbody tr")).await.unwrap();
    assert_eq!(matched.len(), 1);
    let row = matched[0].text().await.unwrap();
    assert!(row.contains(&ids[1]) && row.contains("c***@e***.com"), "{row}");
    assert!(!client.source().await.unwrap().to_lowercase().contains("console-1@example.com"));
    shot(&client, "12-events-by-email").await;
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["events", "list", "--json", "--email", "console-1@example.com", "--data-dir"])
        .arg(serve.data_dir.path())
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[1].as_str()]);

    // A lead the portal cannot take (a property it lacks) is parked. Its payload is masked until the operator
    // reveals it, which the audit trail records; then it is purged, after a confirmation.
    let mut bad = json!({"email": "console-parked@example.com", "first_name": "Ada"});
    bad["properties"] = json!({"no_such_property": "x"});
    let (status, _, body) = serve.post_lead(&bad, headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("parked")), "{body}");
    let parked_id = body["event_id"].as_str().unwrap().to_string();
    client.goto(&format!("{console}/events/{parked_id}")).await.unwrap();
    assert!(!client.source().await.unwrap().contains("console-parked@example.com"));
    find(&client, "form[action$=reveal] button").await.click().await.unwrap();
    assert!(find(&client, "#payload").await.text().await.unwrap().contains("console-parked@example.com"));
    rows(&client, &format!("{console}/dead-letters"), "dead-letters", 1).await;
    find(&client, "#dead-letters input[type=checkbox]").await.click().await.unwrap();
    find(&client, "button[value=purge]").await.click().await.unwrap();
    shot(&client, "9-purge-confirmation").await;
    find(&client, "button[name=confirm]").await.click().await.unwrap();
    assert!(find(&client, "#result").await.text().await.unwrap().contains(&format!("{parked_id}: 1 copies removed")));
    rows(&client, &format!("{console}/dead-letters"), "dead-letters", 0).await;

    // The portals page: checking the default portal finds every property its mapping needs. A property archived
    // in HubSpot (the sandbox) is then named.
    client.goto(&format!("{console}/portals")).await.unwrap();
    let portals = client.find(Locator::Css("#portals")).await.unwrap().text().await.unwrap();
    assert!(portals.contains("default"), "{portals}");
    let check_default = "#portals form.inline input[value=default] ~ button";
    find(&client, check_default).await.click().await.unwrap();
    let checked = find(&client, "#check").await.text().await.unwrap();
    assert!(checked.contains("custom properties it needs exist"), "{checked}");
    let archived = reqwest::Client::new()
        .delete(format!("{}/crm/v3/properties/contacts/lead_priority", serve.sandbox_url))
        .bearer_auth(crate::harness::SANDBOX_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(archived.status(), 204);
    // From a page without a result, so the result found next is the new check's (not the old page's, going stale).
    client.goto(&format!("{console}/portals")).await.unwrap();
    find(&client, check_default).await.click().await.unwrap();
    let checked = find(&client, "#check").await.text().await.unwrap();
    assert!(checked.contains("lacks 1 of the") && checked.contains("lead_priority"), "{checked}");
    let row = client.find(Locator::Css("#portals tbody tr")).await.unwrap().text().await.unwrap();
    assert!(row.contains("lead_priority"), "{row}");
    shot(&client, "10-portals").await;

    // The privacy page: an erasure needs its confirmation; then the person's events are gone from the lists, and
    // the receipt names the operator, never the person.
    client.goto(&format!("{console}/privacy")).await.unwrap();
    find(&client, "#erase input[name=email]").await.send_keys("console-1@example.com").await.unwrap();
    find(&client, "#erase button").await.click().await.unwrap();
    assert!(find(&client, "#erase-error").await.text().await.unwrap().contains("confirmation"));
    find(&client, "#erase input[name=email]").await.send_keys("Console-1@Example.com").await.unwrap();
    find(&client, "#erase input[name=hubspot_gdpr_delete]").await.click().await.unwrap();
    find(&client, "#erase input[name=confirm]").await.click().await.unwrap();
    find(&client, "#erase button").await.click().await.unwrap();
    let erased = find(&client, "#erased").await.text().await.unwrap();
    assert!(erased.contains("Erased: receipt era_") && !erased.contains(" 0 event records"), "{erased}");
    let receipts = client.find(Locator::Css("#receipts")).await.unwrap().text().await.unwrap();
    assert!(receipts.contains("alice") && !receipts.to_lowercase().contains("console-1"), "{receipts}");
    // The box ticked: HubSpot GDPR-deleted the contact too.
    assert!(receipts.contains("deleted"), "{receipts}");
    assert!(serve.contact("console-1@example.com").await.is_none(), "HubSpot no longer has the contact");
    shot(&client, "13-privacy").await;
    client.goto(&format!("{console}/events")).await.unwrap();
    find(&client, "table#events").await;
    let listed = client.source().await.unwrap();
    assert!(!listed.contains(&ids[1]) && listed.contains(&ids[0]), "console-1's events are gone, the others stay");

    client.goto(&format!("{console}/audit")).await.unwrap();
    let audit = client.find(Locator::Css("#audit")).await.unwrap().text().await.unwrap();
    assert!(audit.contains("alice") && audit.contains("redrive") && audit.contains(&ids[0]), "{audit}");
    assert!(audit.contains("sign_in"), "{audit}");
    assert!(audit.contains("reveal") && audit.contains("purge") && audit.contains(&parked_id), "{audit}");
    assert!(audit.contains("erasure") && !audit.to_lowercase().contains("console-1@"), "{audit}");
    shot(&client, "11-audit").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_operators_serve_makes_a_local_token_in_the_data_dir() {
    let serve = Serve::start(&[("RUST_LOG", "error")]);
    let path = serve.data_dir.path().join("console-token");
    let line = serve.wait_for_line("console ");
    assert!(line.contains(&format!("operator `local`, token in {}", path.display())), "{line}");
    let token = std::fs::read_to_string(&path).unwrap();
    assert!(!line.contains(token.trim()), "the banner never shows the token");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let signed_in =
        http.post(format!("{}/console/login", serve.url)).form(&[("token", token.trim())]).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let refused = http.post(format!("{}/console/login", serve.url)).form(&[("token", "test-token-1")]).send().await;
    assert_eq!(refused.unwrap().status(), 401, "a sender's token is not an operator's");
    // Signed out, every page sends to the sign-in page, and every action too.
    for path in
        ["/console/events", "/console/events/evt_x", "/console/dead-letters", "/console/portals", "/console/audit"]
    {
        let page = http.get(format!("{}{path}", serve.url)).send().await.unwrap();
        let location = page.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        assert_eq!((page.status().as_u16(), location.as_deref()), (303, Some("/console/login")), "{path}");
    }
    // Signed in, a form without the session's CSRF token does nothing (a parked lead stays parked).
    let mut parked = json!({"email": "csrf@example.com"});
    parked["properties"] = json!({"no_such_property": "x"});
    let (status, _, body) = serve.post_lead(&parked, headers(&[])).await;
    assert_eq!((status, body["status"].as_str()), (202, Some("parked")), "{body}");
    let id = body["event_id"].as_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_string();
    for (path, csrf) in
        [("/console/dead-letters/purge", ""), ("/console/dead-letters/purge", "forged"), ("/console/logout", "")]
    {
        let form = [("tenant", "default"), ("id", id), ("confirm", "yes"), ("csrf", csrf)];
        let refused = http.post(format!("{}{path}", serve.url)).header("cookie", &session).form(&form).send().await;
        let refused = refused.unwrap();
        assert_eq!(
            (refused.status().as_u16(), refused.headers()["location"].to_str().unwrap()),
            (303, "/console/login")
        );
    }
    let page = http.get(format!("{}/console/dead-letters", serve.url)).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200, "still signed in: the logout without the token did nothing");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(id), "the parked lead is still there");
    assert!(!html.contains("<script") && !html.contains("src=\"http"), "no script, nothing fetched from elsewhere");
}
