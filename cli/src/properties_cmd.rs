//! `hubrelay properties check|sync`: every custom contact property an enabled flow writes (the mapping
//! profile's and the referral flows'), checked or created.

use hubrelay_core::properties;

use crate::portal::{connect, PortalArgs};
use crate::CommandError;

#[derive(clap::Args, Debug)]
pub struct PropertiesArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    portal: PortalArgs,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// List the custom properties hubrelay writes that HubSpot lacks (exit 1 when any is missing, 2 on errors)
    Check,
    /// Create the missing ones
    Sync,
}

pub async fn run(args: PropertiesArgs) -> Result<(), CommandError> {
    let (settings, client) = connect(&args.portal).await?;
    let wanted = properties::required(&settings.mapping, &settings.referral.config);
    match args.action {
        Action::Check => {
            let missing = properties::missing(&client, &wanted).await.map_err(|e| e.to_string())?;
            if missing.is_empty() {
                println!(
                    "all {} properties exist (mapping `{}` and the referral flows)",
                    wanted.len(),
                    settings.mapping.name
                );
                return Ok(());
            }
            println!("missing (mapping `{}` and the referral flows):", settings.mapping.name);
            for p in &missing {
                println!("  {}  ({}, {})", p.name, p.kind, p.label);
            }
            Err(CommandError::check_failed(format!(
                "{} properties missing; run `hubrelay properties sync`",
                missing.len()
            )))
        }
        Action::Sync => {
            let created = properties::sync(&client, &wanted).await.map_err(|e| e.to_string())?;
            if created.is_empty() {
                println!("nothing to create: all {} properties exist", wanted.len());
            }
            for name in created {
                println!("created {name}");
            }
            Ok(())
        }
    }
}
