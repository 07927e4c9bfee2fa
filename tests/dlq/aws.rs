//! `hubrelay dlq` and `hubrelay events` against moto server: the SQS dead-letter and retry queues, the
//! DynamoDB event log, and a CloudFormation stack's outputs for `--stack`.

use std::time::Duration;

use hubrelay_aws::dynamodb::DynamoIdempotencyStore;
use hubrelay_aws::sqs::SqsRetryQueue;
use hubrelay_core::domain::RetryMessage;
use hubrelay_core::store::{EventLog, EventStatus, RetryQueue};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::fixtures::*;
use hubrelay_testkit::moto;

/// What the child process needs to reach moto.
fn aws_env() -> Vec<(&'static str, String)> {
    let server = moto::shared();
    vec![
        ("AWS_ENDPOINT_URL", server.endpoint()),
        ("AWS_REGION", moto::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
    ]
}

/// Every message now on `url` (deleted), as retry messages.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<RetryMessage> {
    let mut out = Vec::new();
    loop {
        let got =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
    }
}

/// How many messages `url` holds (received, left invisible for a while: for the end of a test).
async fn raw_count(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let mut n = 0;
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            return n;
        }
        n += got.messages().len();
    }
}

fn approx_visible(v: &Value) -> usize {
    v.as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_on_sqs_with_the_event_log_in_dynamodb() {
    let server = moto::shared();
    let sqs = moto::sqs(server);
    let dynamo = moto::dynamodb(server);
    let table = moto::idempotency_table(&dynamo).await;
    let (queue_url, dlq_url) = moto::retry_queues(&sqs).await;
    let queue = SqsRetryQueue::new(sqs.clone(), &queue_url, &dlq_url);
    let events = DynamoIdempotencyStore::new(dynamo.clone(), &table);

    // Dead-lettered by our code (with a reason and the error_code attribute), one delivered meanwhile.
    for (id, age, attempts, code, status) in [
        ("evt_a", 3 * HOUR, 3, "property_doesnt_exist", EventStatus::DeadLettered),
        ("evt_b", HOUR, 1, "invalid_option", EventStatus::DeadLettered),
        ("evt_d", 5 * HOUR, 2, "property_doesnt_exist", EventStatus::Delivered),
    ] {
        let (m, reason) = dead_letter(id, age, attempts, code);
        queue.dead_letter(&m, &reason).await.unwrap();
        events.put_event(&record(&m, &reason, status)).await.unwrap();
    }
    // Moved by SQS itself after maxReceiveCount: no reason in the body.
    let (moved_by_sqs, _) = dead_letter("evt_m", 2 * HOUR, 4, "hubspot_unavailable");
    SqsRetryQueue::new(sqs.clone(), &dlq_url, &dlq_url).enqueue(&moved_by_sqs).await.unwrap();
    // Something that is not ours.
    sqs.send_message().queue_url(&dlq_url).message_body("not json").send().await.unwrap();

    let mut env = aws_env();
    let flags = ["--dlq-url", dlq_url.as_str(), "--queue-url", queue_url.as_str(), "--table", table.as_str()];
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter().map(|s| s.to_string()).chain(flags.iter().map(|s| s.to_string())).collect()
    };
    let run_json = |args: &[&'static str], env: &[(&str, String)]| -> Value {
        let args = with(args);
        ok_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    };

    let list = run_json(&["dlq", "list", "--json"], &env);
    assert_eq!(ids(&list), ["evt_a", "evt_b", "evt_d", "evt_m"]);
    let m = list.as_array().unwrap().iter().find(|x| x["event_id"] == "evt_m").unwrap();
    assert!(m["reason"].is_null());
    assert_eq!(m["last_error_code"], "hubspot_unavailable");
    assert!(list[0]["dead_lettered_at"].is_string());
    // Looking released them: a second look sees the same, at once.
    let again = run_json(&["dlq", "list", "--json"], &env);
    assert_eq!(approx_visible(&again), 4);

    // Flags may come from the environment too.
    env.push(("HUBRELAY_DLQ_URL", dlq_url.clone()));
    let shown = ok(&["dlq", "show", "evt_a"], &env);
    assert!(shown.contains("j***@e***.com") && !shown.contains(EMAIL), "{shown}");
    assert!(shown.contains("corr-evt_a-3"), "{shown}");
    let revealed = ok_json(&["dlq", "show", "evt_a", "--reveal", "--json"], &env);
    assert_eq!(revealed["message"]["event"]["email"], EMAIL);

    // A redrive needs the table.
    let out = hubrelay(&["dlq", "redrive", "--all", "--queue-url", &queue_url], &env);
    assert!(!out.status.success() && stderr(&out).contains("idempotency table"), "{}", stderr(&out));

    let dry = run_json(&["dlq", "redrive", "--error-code", "property_doesnt_exist", "--dry-run", "--json"], &env);
    assert_eq!(strs(&dry["moved"]), ["evt_a"]);
    assert_eq!(strs(&dry["already_delivered"]), ["evt_d"]);
    assert_eq!(dry["not_matched"], 2);
    assert_eq!(dry["unreadable"], 1);
    assert_eq!(approx_visible(&run_json(&["dlq", "list", "--json"], &env)), 4, "a dry run changes nothing");

    let before = OffsetDateTime::now_utc();
    let report = run_json(&["dlq", "redrive", "--error-code", "property_doesnt_exist", "--json"], &env);
    assert_eq!(strs(&report["moved"]), ["evt_a"]);
    assert_eq!(strs(&report["already_delivered"]), ["evt_d"]);
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");

    // On the retry queue: evt_a only, schedule restarted and due now, history kept.
    let redriven = drain(&sqs, &queue_url).await;
    assert_eq!(redriven.len(), 1, "{redriven:?}");
    let a = &redriven[0];
    assert_eq!(a.event_id, "evt_a");
    assert_eq!(a.attempts.len(), 3);
    assert_eq!(a.schedule_offset, 3);
    assert!(a.dead_letter_reason.is_none());
    assert!(a.not_before >= before - Duration::from_secs(1) && a.not_before <= OffsetDateTime::now_utc());
    assert_eq!(events.get_event("evt_a").await.unwrap().unwrap().status, EventStatus::Retrying);
    assert_eq!(events.get_event("evt_d").await.unwrap().unwrap().status, EventStatus::Delivered);

    // The DLQ keeps evt_b, evt_m and the unreadable message.
    let list = run_json(&["dlq", "list", "--json"], &env);
    assert_eq!(ids(&list), ["evt_b", "evt_m"]);

    let purged = ok(&["dlq", "purge", "evt_b", "--yes"], &env);
    assert!(purged.contains("purged evt_b"), "{purged}");
    let list = run_json(&["dlq", "list", "--json"], &env);
    assert_eq!(ids(&list), ["evt_m"]);

    // By id: evt_m has no event record at all, so it is redriven.
    let report = run_json(&["dlq", "redrive", "evt_m", "--json"], &env);
    assert_eq!(strs(&report["moved"]), ["evt_m"]);
    let redriven = drain(&sqs, &queue_url).await;
    assert_eq!(redriven.iter().map(|m| m.event_id.as_str()).collect::<Vec<_>>(), ["evt_m"]);
    assert_eq!(redriven[0].schedule_offset, 4);
    let left = raw_count(&sqs, &dlq_url).await;
    assert_eq!(left, 1, "only the unreadable message remains");

    // events on AWS: from the table.
    let env_table = [aws_env(), vec![("HUBRELAY_IDEMPOTENCY_TABLE", table.clone())]].concat();
    let shown = ok(&["events", "show", "evt_a"], &env_table);
    assert!(shown.contains("status       retrying"), "{shown}");
    let dead = ok_json(&["events", "list", "--status", "dead_lettered", "--json"], &env_table);
    assert_eq!(ids(&dead), ["evt_b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_outputs_name_the_queues_and_the_table() {
    let server = moto::shared();
    let cfn = cloudformation(server);
    let stack = moto::unique("hubrelay-stack");
    let template = json!({
        "Resources": {
            "RetryQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": moto::unique("retry")}},
            "DeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": moto::unique("dlq")}},
            "IdempotencyTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
                "TableName": moto::unique("idempotency"),
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]
            }}
        },
        "Outputs": {
            "RetryQueueUrl": {"Value": {"Ref": "RetryQueue"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "DeadLetterQueueArn": {"Value": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
            "IdempotencyTableName": {"Value": {"Ref": "IdempotencyTable"}}
        }
    });
    cfn.create_stack().stack_name(&stack).template_body(template.to_string()).send().await.unwrap();
    let described = cfn.describe_stacks().stack_name(&stack).send().await.unwrap();
    let output = |key: &str| -> String {
        described.stacks()[0]
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(key))
            .and_then(|o| o.output_value())
            .unwrap_or_else(|| panic!("moto stack without output {key}"))
            .to_string()
    };
    let (queue_url, dlq_url, table) =
        (output("RetryQueueUrl"), output("DeadLetterQueueUrl"), output("IdempotencyTableName"));

    let sqs = moto::sqs(server);
    let events = DynamoIdempotencyStore::new(moto::dynamodb(server), &table);
    let queue = SqsRetryQueue::new(sqs.clone(), &queue_url, &dlq_url);
    for (id, status) in [("evt_s1", EventStatus::DeadLettered), ("evt_s2", EventStatus::Delivered)] {
        let (m, reason) = dead_letter(id, HOUR, 2, "property_doesnt_exist");
        queue.dead_letter(&m, &reason).await.unwrap();
        events.put_event(&record(&m, &reason, status)).await.unwrap();
    }

    let env = aws_env();
    let list = ok_json(&["dlq", "list", "--json", "--stack", &stack], &env);
    assert_eq!(ids(&list), ["evt_s1", "evt_s2"]);
    let listed = ok_json(&["events", "list", "--json", "--stack", &stack], &env);
    assert_eq!(ids(&listed), ["evt_s1", "evt_s2"]);
    let text = ok(&["dlq", "redrive", "--all", "--stack", &stack], &env);
    assert!(text.contains("redrive: moved 1, skipped as delivered 1, not matched 0"), "{text}");
    let redriven = drain(&sqs, &queue_url).await;
    assert_eq!(redriven.iter().map(|m| m.event_id.as_str()).collect::<Vec<_>>(), ["evt_s1"]);
    assert_eq!(raw_count(&sqs, &dlq_url).await, 0, "the delivered one was removed, not re-sent");

    let out = hubrelay(&["dlq", "list", "--stack", "no-such-stack"], &env);
    assert!(!out.status.success() && stderr(&out).contains("no-such-stack"), "{}", stderr(&out));
}

fn cloudformation(server: &moto::MotoServer) -> aws_sdk_cloudformation::Client {
    let config = aws_sdk_cloudformation::Config::builder()
        .behavior_version(aws_sdk_cloudformation::config::BehaviorVersion::latest())
        .region(aws_sdk_cloudformation::config::Region::new(moto::REGION))
        .credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .endpoint_url(server.endpoint())
        .http_client(hubrelay_aws::sdk::http_client())
        .build();
    aws_sdk_cloudformation::Client::from_conf(config)
}

/// The library directly: duplicate copies of one event in the DLQ are moved once and the extra copy removed;
/// progress counts events, not copies.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_copies_move_once() {
    use hubrelay_aws::SqsDeadLetters;
    use hubrelay_core::dlq::{DeadLetters, Redriver, Selection};
    use std::sync::Arc;

    let server = moto::shared();
    let sqs = moto::sqs(server);
    let table = moto::idempotency_table(&moto::dynamodb(server)).await;
    let (queue_url, dlq_url) = moto::retry_queues(&sqs).await;
    let queue = SqsRetryQueue::new(sqs.clone(), &queue_url, &dlq_url);
    let (m, reason) = dead_letter("evt_dup", HOUR, 2, "property_doesnt_exist");
    queue.dead_letter(&m, &reason).await.unwrap();
    queue.dead_letter(&m, &reason).await.unwrap();
    let (other, reason2) = dead_letter("evt_other", HOUR, 1, "invalid_option");
    queue.dead_letter(&other, &reason2).await.unwrap();

    let dlq = SqsDeadLetters::new(sqs.clone(), &dlq_url)
        .with_retry_queue(&queue_url)
        .with_event_log(Arc::new(DynamoIdempotencyStore::new(moto::dynamodb(server), &table)));
    assert_eq!(dlq.list().await.unwrap().len(), 2, "one line per event");
    assert_eq!(dlq.get("evt_dup").await.unwrap().unwrap().attempts(), 2);

    let mut seen = Vec::new();
    let report = Redriver::new(&dlq)
        .run(&Selection::ids(["evt_dup"]), false, OffsetDateTime::now_utc(), &mut |d, t| seen.push((d, t)))
        .await
        .unwrap();
    assert_eq!(report.moved, ["evt_dup"]);
    assert_eq!(report.duplicates_removed, 1);
    assert_eq!(report.not_matched, 1);
    assert_eq!(seen, [(0, 1), (1, 1)]);
    let redriven = drain(&sqs, &queue_url).await;
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].schedule_offset, 2);
    let left = dlq.list().await.unwrap();
    assert_eq!(left.iter().map(|l| l.event_id()).collect::<Vec<_>>(), ["evt_other"]);
    assert_eq!(dlq.purge("evt_other").await.unwrap(), 1);
    assert_eq!(dlq.purge("evt_other").await.unwrap(), 0);
    assert!(dlq.list().await.unwrap().is_empty());
}

/// Without AWS credentials, `--stack` fails in one line that says what to set: no SDK warnings, no error
/// chain, no call to AWS (the metadata service is off in `hubrelay()`, and HOME holds no ~/.aws).
#[test]
fn without_credentials_the_aws_target_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AWS_REGION", "us-east-1".to_string()), ("HOME", dir.path().display().to_string())];
    for args in [vec!["dlq", "list", "--stack", "hubrelay-prod"], vec!["events", "list", "--table", "hubrelay-prod"]] {
        let out = hubrelay(&args, &env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line, got:\n{err}");
        assert!(err.contains("no AWS credentials") && err.contains("AWS_PROFILE"), "{err}");
    }
}

/// `hubrelay tenants` on a stack (`--table`, `--key-parameter`): the registry in the table, sealed under the
/// key in SSM; `--tenant` then shows that tenant's dead letters and events only, and the default view none
/// of them.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_on_a_stack_and_their_own_dead_letters_and_events() {
    let server = moto::shared();
    let (dynamo, sqs, ssm) = (moto::dynamodb(server), moto::sqs(server), moto::ssm(server));
    let table = moto::idempotency_table(&dynamo).await;
    let (queue_url, dlq_url) = moto::retry_queues(&sqs).await;
    let key_parameter = format!("/hubrelay/{}/tenant-secrets-key", moto::unique("tenants"));
    let env = aws_env();
    let init = ["tenants", "init-key", "--key-parameter", key_parameter.as_str(), "--kms-key", "alias/hubrelay-test"];
    assert!(ok(&init, &env).contains("created"));
    // Never overwritten: the tenants' secrets are sealed under it.
    let again = hubrelay(&init, &env);
    assert!(!again.status.success() && stderr(&again).contains("exists already"), "{}", stderr(&again));
    let stored = ssm.get_parameter().name(&key_parameter).with_decryption(true).send().await.unwrap();
    assert_eq!(stored.parameter().unwrap().value().unwrap().len(), 64);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("service-key");
    std::fs::write(&token_file, "pat-na1-oem-service-key\n").unwrap();
    let registry = ["--table", table.as_str(), "--key-parameter", key_parameter.as_str()];
    let with = |args: &[&str]| -> Vec<String> { args.iter().chain(registry.iter()).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);

    let token_path = token_file.display().to_string();
    let add =
        ["tenants", "add", "oem", "--hub-id", "4242", "--mapping", "aimbase", "--hubspot-token-file", &token_path];
    let added = run(with(&add));
    assert!(added.contains("added tenant oem") && added.contains("new API token"), "{added}");
    let listed = run(with(&["tenants", "list"]));
    assert!(listed.contains("oem") && listed.contains("4242") && !listed.contains("pat-na1"), "{listed}");
    let shown = run(with(&["tenants", "show", "oem", "--reveal"]));
    assert!(shown.contains("pat-na1-oem-service-key") && shown.contains(&format!("table {table}")), "{shown}");
    let refresh_file = dir.path().join("refresh-token");
    std::fs::write(&refresh_file, "oem-refresh-token").unwrap();
    let refresh_path = refresh_file.display().to_string();
    let updated = run(with(&["tenants", "update", "oem", "--oauth-refresh-token-file", &refresh_path]));
    assert!(updated.contains("HubSpot oauth"), "{updated}");
    // The install link for the stack's oauth-install function, signed with a key derived from the tenant key.
    let connect = run(with(&["tenants", "connect", "oem", "--public-url", "https://relay.example.com/prod"]));
    assert!(connect.starts_with("https://relay.example.com/prod/oauth/install?tenant=oem&expires="), "{connect}");
    // `properties` and `doctor --tenant` reach a tenant's portal with its credential from the stack's registry.
    let options = hubrelay_sandbox::hubspot::SandboxOptions { token: Some("probe-key".into()), ..Default::default() };
    let portal = hubrelay_sandbox::hubspot::spawn(options, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let probe_key = dir.path().join("probe-key");
    std::fs::write(&probe_key, "probe-key\n").unwrap();
    let (probe_key, portal_url) = (probe_key.display().to_string(), portal.url());
    let probe = ["--mapping", "chat-widget", "--hubspot-token-file", &probe_key, "--hubspot-base-url", &portal_url];
    run(with(&[&["tenants", "add", "probe"][..], &probe[..]].concat()));
    let synced = tokio::task::block_in_place(|| run(with(&["properties", "sync", "--tenant", "probe"])));
    assert!(synced.contains("vehicle_of_interest"), "{synced}");
    let doctor = tokio::task::block_in_place(|| run(with(&["doctor", "--tenant", "probe"])));
    assert!(doctor.contains("token accepted: portal"), "{doctor}");

    // Without the key, nothing opens: the registry holds no credential in the clear.
    let items = dynamo.scan().table_name(&table).send().await.unwrap();
    assert!(!format!("{:?}", items.items()).contains("oem-refresh-token"));

    // One dead letter of the tenant's, one of the default tenant's.
    let queue = SqsRetryQueue::new(sqs.clone(), &queue_url, &dlq_url);
    let (theirs, reason) = dead_letter("evt_oem_1", HOUR, 3, "validation_error");
    queue.for_tenant(&"oem".parse().unwrap()).dead_letter(&theirs, &reason).await.unwrap();
    let (ours, reason) = dead_letter("evt_default_1", HOUR, 3, "validation_error");
    queue.dead_letter(&ours, &reason).await.unwrap();
    let flags = ["--dlq-url", dlq_url.as_str(), "--queue-url", queue_url.as_str(), "--table", table.as_str()];
    let list = |tenant: Option<&str>| {
        let mut args = vec!["dlq", "list"];
        args.extend(flags);
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        ok(&args, &env)
    };
    let (tenant_view, default_view) = (list(Some("oem")), list(None));
    assert!(tenant_view.contains("evt_oem_1") && !tenant_view.contains("evt_default_1"), "{tenant_view}");
    assert!(default_view.contains("evt_default_1") && !default_view.contains("evt_oem_1"), "{default_view}");

    // Events: the tenant's slice of the table.
    let store = DynamoIdempotencyStore::new(dynamo.clone(), &table);
    let record = record(&theirs, &reason, EventStatus::DeadLettered);
    store.for_tenant(&"oem".parse().unwrap()).put_event(&record).await.unwrap();
    let events = |tenant: Option<&str>| {
        let mut args = vec!["events", "list", "--table", table.as_str()];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        ok(&args, &env)
    };
    assert!(events(Some("oem")).contains("evt_oem_1"));
    assert!(!events(None).contains("evt_oem_1"));

    // A tenant's redrive takes its own dead letters only, and they go back marked with the tenant.
    let mut redrive = vec!["dlq", "redrive", "--all", "--tenant", "oem"];
    redrive.extend(flags);
    ok(&redrive, &env);
    let requeued = drain(&sqs, &queue_url).await;
    assert_eq!(requeued.iter().map(|m| m.event_id.as_str()).collect::<Vec<_>>(), ["evt_oem_1"]);
    assert_eq!(requeued[0].tenant.as_ref().map(|t| t.as_str()), Some("oem"));
    assert!(list(None).contains("evt_default_1"));

    let removed = run(with(&["tenants", "remove", "oem"]));
    assert!(removed.contains("removed tenant oem"), "{removed}");
    assert!(!run(with(&["tenants", "list"])).contains("oem"));
}

/// `hubrelay import --table --queue-url`: the checked rows onto the stack's retry queue (a tenant's carrying the
/// tenant), the checkpoint in its table, a second run queuing nothing; the checkpoint moves only from where it was.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_into_a_stack_queues_its_rows_once_with_a_checkpoint() {
    let server = moto::shared();
    let sqs = moto::sqs(server);
    let dynamo = moto::dynamodb(server);
    let table = moto::idempotency_table(&dynamo).await;
    let (queue_url, _) = moto::retry_queues(&sqs).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leads.csv");
    let mut csv = String::from("email,first_name\n");
    for i in 0..35 {
        csv.push_str(&format!("stack{i}@example.com,Row{i}\n"));
    }
    csv.push_str("not-an-email,Bad\n");
    std::fs::write(&file, csv).unwrap();
    let file = file.to_str().unwrap();
    let env = aws_env();
    let import = |extra: &[&str]| {
        let mut args =
            vec!["import", file, "--skip-invalid", "--table", table.as_str(), "--queue-url", queue_url.as_str()];
        args.extend_from_slice(extra);
        hubrelay(&args, &env)
    };

    let out = import(&[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("35 rows queued"), "{}", stdout(&out));
    assert!(stdout(&out).contains("line 37 `email`"), "the bad row named: {}", stdout(&out));
    let sealer = hubrelay_aws::sqs_seal::MessageSealer::new(DynamoIdempotencyStore::new(dynamo.clone(), &table));
    let open = |queued: Vec<RetryMessage>| {
        let sealer = sealer.clone();
        async move {
            let mut opened = Vec::new();
            for m in queued {
                assert!(!m.event.to_string().contains("@example.com"), "rows are sealed on the queue: {}", m.event);
                match sealer.open(&m).await.unwrap() {
                    hubrelay_aws::sqs_seal::Opened::Opened(m) => opened.push(m),
                    other => panic!("{other:?}"),
                }
            }
            opened
        }
    };
    let queued = open(drain(&sqs, &queue_url).await).await;
    assert_eq!(queued.len(), 35);
    assert!(queued
        .iter()
        .all(|m| m.function == hubrelay_core::domain::FunctionName::LeadCaptured && m.tenant.is_none()));
    let mut firsts: Vec<String> = queued.iter().map(|m| m.event["first_name"].as_str().unwrap().to_string()).collect();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 35, "each row once");

    let again = import(&[]);
    assert!(stdout(&again).contains("queued by an earlier run"), "{}", stdout(&again));
    assert!(drain(&sqs, &queue_url).await.is_empty());

    // A tenant's import: its own checkpoint, its messages carry the tenant.
    let out = import(&["--tenant", "acme"]);
    assert!(out.status.success() && stdout(&out).contains("35 rows queued"), "{}{}", stdout(&out), stderr(&out));
    let queued = open(drain(&sqs, &queue_url).await).await;
    assert!(queued.len() == 35 && queued.iter().all(|m| m.tenant.as_ref().map(|t| t.as_str()) == Some("acme")));

    // The checkpoint: a resumed import starts from the cursor; an importer behind the cursor cannot move it.
    let store = DynamoIdempotencyStore::new(dynamo.clone(), &table);
    let now = OffsetDateTime::now_utc();
    assert_eq!(store.start_import("imp_x", "leads", 50, now).await.unwrap().cursor, 0);
    store.advance_import("imp_x", 0, 10).await.unwrap();
    assert!(store.advance_import("imp_x", 0, 10).await.is_err(), "a second importer at the old cursor");
    let resumed = store.start_import("imp_x", "leads", 50, now).await.unwrap();
    assert_eq!((resumed.rows, resumed.cursor), (50, 10));
}
