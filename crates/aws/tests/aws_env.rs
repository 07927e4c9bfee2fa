//! `hubrelay_aws::sdk::sdk_config` honours the SDK's endpoint variables, so local runs can point at moto.
//! A binary of its own: it changes the process environment, which must not race with other tests.

use hubrelay_testkit::moto;

#[tokio::test]
async fn sdk_config_honours_global_and_per_service_endpoint_urls() {
    let general = moto::shared();
    let dynamodb_only = moto::MotoServer::start().unwrap_or_else(|e| panic!("{e}"));

    // The only test in this binary: nothing else reads the environment concurrently.
    for (name, value) in [
        ("AWS_ENDPOINT_URL", general.endpoint()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_only.endpoint()),
        ("AWS_REGION", moto::REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent/hubrelay-test-config".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/hubrelay-test-credentials".to_owned()),
    ] {
        std::env::set_var(name, value);
    }
    for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SSM"] {
        std::env::remove_var(name);
    }

    let config = hubrelay_aws::sdk::sdk_config().await;
    let table = moto::unique("env-table");
    let queue = moto::unique("env-queue");

    // DynamoDB goes to its own endpoint ...
    aws_sdk_dynamodb::Client::new(&config)
        .list_tables()
        .send()
        .await
        .expect("DynamoDB through AWS_ENDPOINT_URL_DYNAMODB");
    let on = |server: &moto::MotoServer| {
        let client = moto::dynamodb(server);
        let table = table.clone();
        async move { client.list_tables().send().await.unwrap().table_names().contains(&table) }
    };
    aws_sdk_dynamodb::Client::new(&config)
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    assert!(on(&dynamodb_only).await, "table not on the AWS_ENDPOINT_URL_DYNAMODB server");
    assert!(!on(general).await, "table went to the general endpoint");

    // ... SQS and SSM use the general one.
    aws_sdk_sqs::Client::new(&config).create_queue().queue_name(&queue).send().await.expect("SQS");
    let urls = moto::sqs(general).list_queues().send().await.unwrap().queue_urls.unwrap_or_default();
    assert!(urls.iter().any(|u| u.ends_with(&queue)), "{urls:?}");

    let parameter = format!("/hubrelay/{}", moto::unique("env-secret"));
    moto::ssm(general)
        .put_parameter()
        .name(&parameter)
        .value("s3cret")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    std::env::set_var("HUBRELAY_TEST_SECRET_SSM_PARAMETER", &parameter);
    let ssm = aws_sdk_ssm::Client::new(&config);
    let secret = hubrelay_aws::sdk::secret_from_env(&ssm, "HUBRELAY_TEST_SECRET").await.unwrap();
    assert_eq!(secret.as_deref(), Some("s3cret"));
    assert!(matches!(
        hubrelay_aws::sdk::required_secret(&ssm, "HUBRELAY_TEST_UNSET").await,
        Err(hubrelay_aws::sdk::AwsConfigError::Missing(m)) if m.contains("HUBRELAY_TEST_UNSET_SSM_PARAMETER")
    ));
}
