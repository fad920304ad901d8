//! Authentication (spec §3): Basic, legacy `/token`, OAuth2 grants, token expiry and the login
//! throttle, through real HTTP.

mod common;

use std::time::Duration;

use common::{send, start, start_with};
use koofr_emulator::EmulatorConfig;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn legacy_token_flow_all_header_forms_and_revoke() {
    let (emu, c) = start().await;
    let r = send(
        c.anon(Method::POST, "/token")
            .header("content-type", "application/json")
            .body(json!({"email": "ME@example.com", "password": "APP-PASSWORD"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").unwrap(),
        "application/json; charset=utf-8"
    );
    assert_eq!(r.header("x-user-id").unwrap(), emu.user_id());
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 36);
    for header in [
        format!("Token token={token}"),
        format!("Token token=\"{token}\""),
        format!("Token {token}"),
    ] {
        let r = send(
            c.anon(Method::GET, "/api/v2/user")
                .header("Authorization", header.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "{header}");
    }
    let bad = send(
        c.anon(Method::GET, "/api/v2/user")
            .header("Authorization", "Token token=nope"),
    )
    .await;
    assert_eq!(bad.status, 401);

    let r = send(
        c.anon(Method::GET, "/token")
            .header("X-Koofr-Email", "me@example.com")
            .header("X-Koofr-Password", "APP-PASSWORD"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let header_token = r.header("x-koofr-token").unwrap();
    let r = send(
        c.anon(Method::GET, "/api/v2/mounts")
            .header("Authorization", format!("Token token={header_token}")),
    )
    .await;
    assert_eq!(r.status, 200);

    let r = send(
        c.anon(Method::DELETE, "/token")
            .header("Authorization", format!("Token {token}")),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = send(
        c.anon(Method::GET, "/api/v2/user")
            .header("Authorization", format!("Token {token}")),
    )
    .await;
    assert_eq!(r.status, 401, "revoked");

    let wrong = send(
        c.anon(Method::POST, "/token")
            .header("content-type", "application/json")
            .body(json!({"email": "me@example.com", "password": "x"}).to_string()),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.is_empty());

    // Expire on demand: the still-valid header token now fails, Basic keeps working.
    emu.faults().expire_tokens();
    let r = send(
        c.anon(Method::GET, "/api/v2/mounts")
            .header("Authorization", format!("Token token={header_token}")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(c.get("/api/v2/mounts").await.status, 200);
}

#[tokio::test]
async fn oauth2_code_and_refresh_grants_with_expiry() {
    let mut config = EmulatorConfig::default();
    config.token_ttl = Duration::from_secs(60);
    let (emu, c) = start_with(config).await;
    let (client_id, secret) = emu.oauth_client();
    let r = send(c.anon(Method::GET, &format!(
        "/oauth2/auth?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=s1"))).await;
    assert_eq!(r.status, 302);
    let location = url::Url::parse(&r.header("location").unwrap()).unwrap();
    assert_eq!(location.path(), "/cb");
    let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "s1");
    let code = pairs["code"].clone();

    let token_request = |form: String| {
        send(
            c.anon(Method::POST, "/oauth2/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
        )
    };
    let r = token_request(format!("grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&client_id={client_id}&client_secret={secret}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tokens = r.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 60);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    // A code works once.
    let again = token_request(format!(
        "grant_type=authorization_code&code={code}&client_id={client_id}&client_secret={secret}"
    ))
    .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
    let bad_client = token_request(format!(
        "grant_type=refresh_token&refresh_token={refresh}&client_id={client_id}&client_secret=nope"
    ))
    .await;
    assert_eq!(bad_client.status, 401);

    let bearer = |t: &str| send(c.anon(Method::GET, "/api/v2.1/mounts").bearer_auth(t));
    assert_eq!(bearer(&access).await.status, 200);
    // The access token expires after the TTL on the emulator clock.
    emu.faults().set_clock(Some(koofr_now_ms() + 61_000));
    assert_eq!(bearer(&access).await.status, 401);
    let r = token_request(format!("grant_type=refresh_token&refresh_token={refresh}&client_id={client_id}&client_secret={secret}")).await;
    assert_eq!(r.status, 200);
    let fresh = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(bearer(&fresh).await.status, 200);
    emu.faults().expire_tokens();
    assert_eq!(bearer(&fresh).await.status, 401);

    let issued = emu.issue_oauth_tokens();
    assert_eq!(bearer(&issued.access_token).await.status, 200);
    assert!(
        !format!("{issued:?}").contains(&issued.access_token),
        "Debug redacts tokens"
    );
}

fn koofr_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn login_throttle_after_failures() {
    let (emu, c) = start().await;
    emu.faults().set_login_throttle(Some(3));
    for _ in 0..3 {
        let r = send(
            c.anon(Method::GET, "/api/v2/mounts")
                .basic_auth("me@example.com", Some("bad")),
        )
        .await;
        assert_eq!(r.status, 401);
    }
    let r = send(
        c.anon(Method::GET, "/api/v2/mounts")
            .basic_auth("me@example.com", Some("bad")),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.text(), "Too many login retries");
    assert_eq!(
        c.get("/api/v2/mounts").await.status,
        429,
        "the throttle applies to the whole client"
    );
    emu.faults().set_login_throttle(None);
    assert_eq!(c.get("/api/v2/mounts").await.status, 200);
}

#[test]
fn config_debug_redacts_the_password() {
    let mut config = EmulatorConfig::default();
    config.password = "s3cret-app-password".into();
    let text = format!("{config:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("me@example.com"));
}
