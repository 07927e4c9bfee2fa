//! `hubrelay properties check|sync`.

use hubrelay_clients::HubSpotClient;
use hubrelay_core::mapping::Mapping;

use crate::CommandError;

#[derive(clap::Args, Debug)]
pub struct PropertiesArgs {
    #[command(subcommand)]
    action: Action,
    /// Mapping profile: a built-in name (aimbase, chat-widget) or a TOML file
    #[arg(long, env = "HUBRELAY_MAPPING", hide_env_values = true, default_value = hubrelay_core::config::DEFAULT_MAPPING, global = true)]
    mapping: String,
    /// HubSpot API base URL (a sandbox's URL works too)
    #[arg(long, env = "HUBSPOT_BASE_URL", hide_env_values = true, default_value = hubrelay_core::hubspot::DEFAULT_BASE_URL, global = true)]
    hubspot_url: String,
    /// Private-app token
    #[arg(long, env = "HUBSPOT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// List the custom properties the mapping needs that HubSpot lacks (exit 1 when any is missing, 2 on errors)
    Check,
    /// Create the missing ones
    Sync,
}

pub async fn run(args: PropertiesArgs) -> Result<(), CommandError> {
    let mapping = Mapping::load(&args.mapping).map_err(|e| e.to_string())?;
    let token = args.token.ok_or("HUBSPOT_TOKEN (or --token) is required")?;
    let client =
        HubSpotClient::new(&args.hubspot_url, &token, std::time::Duration::from_secs(20)).map_err(|e| e.to_string())?;
    match args.action {
        Action::Check => {
            let missing = hubrelay_core::properties::missing(&client, &mapping).await.map_err(|e| e.to_string())?;
            if missing.is_empty() {
                println!("all {} properties of mapping `{}` exist", mapping.properties().len(), mapping.name);
                return Ok(());
            }
            println!("missing for mapping `{}`:", mapping.name);
            for p in &missing {
                println!("  {}  ({}, {})", p.name, p.kind, p.label);
            }
            Err(CommandError::check_failed(format!(
                "{} properties missing; run `hubrelay properties sync`",
                missing.len()
            )))
        }
        Action::Sync => {
            let created = hubrelay_core::properties::sync(&client, &mapping).await.map_err(|e| e.to_string())?;
            if created.is_empty() {
                println!("nothing to create: mapping `{}` is complete", mapping.name);
            }
            for name in created {
                println!("created {name}");
            }
            Ok(())
        }
    }
}
