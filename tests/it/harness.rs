//! Start `hubrelay serve` on a free port with a fresh data dir; kill it on drop (or `kill` it, keeping the
//! data dir, and `restart` it on the same data and the same address).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

pub const TOKEN: &str = "test-token-1";
pub const SANDBOX_TOKEN: &str = "sandbox-test-token";

pub struct Serve {
    child: Child,
    pub url: String,
    pub sandbox_url: String,
    /// The Extole and impact sandboxes' base URLs (empty when partner credentials are configured).
    pub extole_url: String,
    pub impact_url: String,
    pub data_dir: tempfile::TempDir,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
    /// Every line `serve` printed on stdout so far.
    lines: Lines,
}

type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl Serve {
    /// `hubrelay serve` with a bearer token configured plus `env`.
    pub fn start(env: &[(&str, &str)]) -> Serve {
        Serve::start_in(tempfile::tempdir().expect("temp dir"), env)
    }

    /// `hubrelay serve` on a data dir prepared beforehand (tenants added with `hubrelay tenants`).
    pub fn start_in(data_dir: tempfile::TempDir, env: &[(&str, &str)]) -> Serve {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, url, sandbox_url, [extole_url, impact_url], lines) = spawn(data_dir.path(), "127.0.0.1:0", &env);
        Serve { child, url, sandbox_url, extole_url, impact_url, data_dir, http: reqwest::Client::new(), env, lines }
    }

    /// The first line `serve` printed that contains `needle`, waiting up to 20 s for it.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(std::time::Instant::now() < deadline, "serve never printed a line with {needle:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start `serve` again (after [`Serve::kill`]) on the same data dir, the same address and the same
    /// settings. The embedded sandbox comes back with its data (and a new port, no faults).
    pub fn restart(&mut self) {
        self.kill();
        let listen = self.url.trim_start_matches("http://").to_string();
        let (child, url, sandbox_url, [extole_url, impact_url], lines) =
            spawn(self.data_dir.path(), &listen, &self.env);
        (self.extole_url, self.impact_url, self.lines) = (extole_url, impact_url, lines);
        self.child = child;
        self.url = url;
        self.sandbox_url = sandbox_url;
    }
}

type Spawned = (Child, String, String, [String; 2], Lines);

fn spawn(data_dir: &std::path::Path, listen: &str, env: &[(String, String)]) -> Spawned {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubrelay"));
    cmd.args(["serve", "--listen", listen, "--sandbox-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("HUBSPOT_TOKEN")
        .env_remove("HUBRELAY_CONFIG")
        .env("HUBRELAY_API_TOKENS", format!("{TOKEN},test-token-2"))
        .env("HUBRELAY_SANDBOX_TOKEN", SANDBOX_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start hubrelay serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Lines::default();
    let kept = lines.clone();
    std::thread::spawn(move || {
        let mut url = None;
        let mut partners = [String::new(), String::new()];
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            kept.lock().unwrap().push(line.clone());
            if let Some(u) = line.strip_prefix("hubrelay listening on ") {
                url = Some(u.trim().to_string());
            }
            for (i, prefix) in ["Extole sandbox ", "impact sandbox "].iter().enumerate() {
                if let Some(rest) = line.trim().strip_prefix(prefix) {
                    partners[i] = rest.split_whitespace().next().unwrap_or_default().to_string();
                }
            }
            if let Some(rest) = line.trim().strip_prefix("HubSpot sandbox ") {
                let sandbox = rest.split_whitespace().next().unwrap_or_default().to_string();
                let _ = tx.send((url.clone().unwrap_or_default(), sandbox, partners.clone()));
            }
            // A HubSpot (or a test's own sandbox) given by HUBSPOT_TOKEN and HUBSPOT_BASE_URL: no embedded one.
            if line.trim().starts_with("HubSpot API ") {
                let _ = tx.send((url.clone().unwrap_or_default(), String::new(), partners.clone()));
            }
        }
    });
    let (url, sandbox_url, partners) =
        rx.recv_timeout(Duration::from_secs(60)).expect("hubrelay serve did not report its address");
    (child, url, sandbox_url, partners, lines)
}

impl Serve {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.path().join("hubrelay.db")
    }

    pub async fn post_lead(&self, body: &Value, headers: HeaderMap) -> (u16, HeaderMap, Value) {
        self.post_raw("application/json", body.to_string().into_bytes(), headers).await
    }

    /// POST /v1/leads with the default bearer token unless `headers` carries auth of its own.
    pub async fn post_raw(&self, content_type: &str, body: Vec<u8>, headers: HeaderMap) -> (u16, HeaderMap, Value) {
        self.post_to("/v1/leads", content_type, body, headers).await
    }

    /// POST /v1/leads/status (JSON, default token).
    pub async fn post_status(&self, body: &Value) -> (u16, Value) {
        let (status, _, v) =
            self.post_to("/v1/leads/status", "application/json", body.to_string().into(), headers(&[])).await;
        (status, v)
    }

    /// POST /v1/leads/activities (JSON, default token).
    pub async fn post_activity(&self, body: &Value) -> (u16, HeaderMap, Value) {
        self.post_to("/v1/leads/activities", "application/json", body.to_string().into(), headers(&[])).await
    }

    /// The engagements of one type (`notes`, `calls`, ...) associated with a contact, each with the given
    /// properties, and the association type ids the listing reports.
    pub async fn engagements(&self, contact_id: &str, object: &str, properties: &[&str]) -> Vec<(Value, Vec<u64>)> {
        let list: Value = self
            .http
            .get(format!("{}/crm/v4/objects/contacts/{contact_id}/associations/{object}", self.sandbox_url))
            .bearer_auth(SANDBOX_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut out = Vec::new();
        for r in list["results"].as_array().cloned().unwrap_or_default() {
            let id = r["toObjectId"].as_u64().expect("toObjectId");
            let types = r["associationTypes"].as_array().unwrap().iter().filter_map(|t| t["typeId"].as_u64()).collect();
            let url = format!("{}/crm/v3/objects/{object}/{id}?properties={}", self.sandbox_url, properties.join(","));
            let e: Value = self.http.get(url).bearer_auth(SANDBOX_TOKEN).send().await.unwrap().json().await.unwrap();
            out.push((e, types));
        }
        out
    }

    /// POST `path` with the default bearer token unless `headers` carries auth of its own.
    pub async fn post_to(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        mut headers: HeaderMap,
    ) -> (u16, HeaderMap, Value) {
        let has_auth = ["authorization", "webhook-signature", "x-hubspot-signature-v3", "x-api-key"]
            .iter()
            .any(|h| headers.contains_key(*h));
        if !has_auth && !headers.contains_key("x-no-auth") {
            headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        }
        headers.remove("x-no-auth");
        if !content_type.is_empty() {
            headers.insert("content-type", content_type.parse().unwrap());
        }
        let resp =
            self.http.post(format!("{}{path}", self.url)).headers(headers).body(body).send().await.expect("POST");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"));
        (status, headers, value)
    }

    /// A contact as the sandbox holds it, by email.
    pub async fn contact(&self, email: &str) -> Option<Value> {
        self.contact_in(&self.sandbox_url, SANDBOX_TOKEN, email).await
    }

    /// A contact as the sandbox at `sandbox_url` holds it (a tenant's portal), by email.
    pub async fn contact_in(&self, sandbox_url: &str, token: &str, email: &str) -> Option<Value> {
        // Ask for every property the portal has, as HubSpot returns only a default few otherwise.
        let defs: Value = self
            .http
            .get(format!("{sandbox_url}/crm/v3/properties/contacts"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = defs["results"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
        let resp = self
            .http
            .get(format!(
                "{sandbox_url}/crm/v3/objects/contacts/{email}?idProperty=email&properties={}",
                names.join(",")
            ))
            .bearer_auth(token)
            .send()
            .await
            .expect("sandbox GET");
        if resp.status().as_u16() == 404 {
            return None;
        }
        assert!(resp.status().is_success(), "sandbox GET {}", resp.status());
        Some(resp.json().await.unwrap())
    }

    /// Every contact in the sandbox.
    pub async fn all_contacts(&self) -> Vec<Value> {
        self.all_contacts_with(&[]).await
    }

    /// Every contact in the sandbox, with these properties besides the default ones.
    pub async fn all_contacts_with(&self, properties: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        let extra =
            if properties.is_empty() { String::new() } else { format!("&properties=email,{}", properties.join(",")) };
        loop {
            let mut url = format!("{}/crm/v3/objects/contacts?limit=100{extra}", self.sandbox_url);
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let v: Value = self.http.get(url).bearer_auth(SANDBOX_TOKEN).send().await.unwrap().json().await.unwrap();
            out.extend(v["results"].as_array().cloned().unwrap_or_default());
            match v.pointer("/paging/next/after").and_then(Value::as_str) {
                Some(a) => after = Some(a.to_string()),
                None => return out,
            }
        }
    }

    pub async fn set_faults(&self, faults: Value) {
        let resp = self.http.post(format!("{}/__sandbox/faults", self.sandbox_url)).json(&faults).send().await.unwrap();
        assert!(resp.status().is_success(), "set faults: {}", resp.status());
    }

    /// The sandbox's counters (`requests`, `rate_limited`, `faults_injected`, `by_endpoint`).
    pub async fn sandbox_stats(&self) -> Value {
        self.http.get(format!("{}/__sandbox/stats", self.sandbox_url)).send().await.unwrap().json().await.unwrap()
    }

    /// `GET /metrics`: each sample's value by its series (`name{labels}`), after checking the answer is the
    /// Prometheus text format (its content type, `# HELP`/`# TYPE` before each family, one sample per line).
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let resp = self.http.get(format!("{}/metrics", self.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let text = resp.text().await.unwrap();
        let mut typed = std::collections::HashSet::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(typed.contains(name) || typed.contains(family), "{name} has no # TYPE before it");
            let value = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            assert!(samples.insert(series.to_string(), value).is_none(), "{series} twice");
        }
        samples
    }

    /// Requests the sandbox received for one endpoint, e.g. "POST /crm/objects/{version}/contacts/batch/upsert".
    pub async fn sandbox_calls(&self, endpoint: &str) -> u64 {
        let v: Value =
            self.http.get(format!("{}/__sandbox/stats", self.sandbox_url)).send().await.unwrap().json().await.unwrap();
        v["by_endpoint"][endpoint].as_u64().unwrap_or(0)
    }
}

impl Serve {
    /// Signs into the console as serve's local operator (the token in the data dir) and checks `tenant`'s
    /// portal (`POST /console/portals/check`): the page that answers.
    pub async fn console_check_portal(&self, tenant: &str) -> String {
        let token = std::fs::read_to_string(self.data_dir.path().join("console-token")).unwrap();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let login = http.post(format!("{}/console/login", self.url)).form(&[("token", token.trim())]).send().await;
        let login = login.unwrap();
        assert_eq!(login.status(), 303);
        let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let page = http.get(format!("{}/console/portals", self.url)).header("cookie", &cookie).send().await;
        let page = page.unwrap().text().await.unwrap();
        let at = page.find("name=\"csrf\" value=\"").expect("a CSRF token") + 19;
        let csrf = page[at..].split('"').next().unwrap().to_string();
        let checked = http
            .post(format!("{}/console/portals/check", self.url))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("tenant", tenant)])
            .send()
            .await
            .unwrap();
        assert_eq!(checked.status(), 200);
        checked.text().await.unwrap()
    }
}

impl Serve {
    /// SIGKILL the process, keeping its data dir.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const UPSERT: &str = "POST /crm/objects/{version}/contacts/batch/upsert";

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    h
}

/// `hubrelay sandbox` on its own (any free port), stopped on drop: `.1` is its URL.
pub struct SandboxProcess(Child, pub String);

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hubrelay sandbox --listen 127.0.0.1:0 <args>`, once it says where it listens.
pub fn start_sandbox(args: &[&str]) -> SandboxProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sandbox");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("HubSpot sandbox listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("sandbox did not start");
    SandboxProcess(child, url)
}

/// `hubrelay <args> --data-dir <dir>`: whether it succeeded, and its stdout followed by its stderr.
pub fn hubrelay_in(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubrelay"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("HUBRELAY_DATA_DIR")
        .output()
        .expect("run hubrelay");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
