//! A portal admin's part of an OAuth install, against the sandbox's OAuth app: approve on its authorize page
//! (non-interactively), and, for tests that play the relay too, exchange the code.

use std::collections::HashMap;

use hubrelay_clients::oauth::{exchange_code, OAuthApp};

/// Approves `form` (the authorize page's query: `client_id`, `scope`, `redirect_uri`, `state`) on the sandbox at
/// `sandbox`; the redirect back to the relay, with `code` and `state`.
pub async fn approve(sandbox: &str, form: &HashMap<String, String>) -> String {
    let mut form = form.clone();
    form.insert("decision".into(), "approve".into());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = http
        .post(format!("{sandbox}/oauth/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "the approve step");
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// The query of a URL, by name.
pub fn query(url: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(url.split_once('?').map(|(_, q)| q).unwrap_or_default()).unwrap()
}

/// An install made directly (the relay's part played by the test): approved for `client_id`, the code exchanged
/// with `client_secret`. The refresh token.
pub async fn refresh_token(sandbox: &str, client_id: &str, client_secret: &str) -> String {
    let redirect = "https://relay.example.com/oauth/callback";
    let form = HashMap::from([
        ("client_id".to_string(), client_id.to_string()),
        ("scope".to_string(), "oauth crm.objects.contacts.write crm.objects.contacts.read".to_string()),
        ("redirect_uri".to_string(), redirect.to_string()),
        ("state".to_string(), "test".to_string()),
    ]);
    let back = approve(sandbox, &form).await;
    let app = OAuthApp { client_id: client_id.into(), client_secret: client_secret.into(), base_url: sandbox.into() };
    exchange_code(&app, &query(&back)["code"], redirect).await.unwrap().refresh_token
}
