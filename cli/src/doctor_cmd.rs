//! `hubrelay doctor`: is this portal ready for hubrelay? Checks the token, names the portal and its time zone,
//! probes each scope hubrelay needs (a call that writes nothing) and lists the custom properties the enabled
//! flows write that the portal lacks (the deals scope and the referral properties only for the referral programs
//! switched on). Prints what to fix; exits 1 when something needs fixing, 2 when it
//! could not check (bad settings, HubSpot unreachable).

use hubrelay_clients::hubspot::Probe;
use hubrelay_core::properties;

use crate::portal::{connect, PortalArgs};
use crate::CommandError;

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    portal: PortalArgs,
}

pub async fn run(args: DoctorArgs) -> Result<(), CommandError> {
    let (settings, client) = connect(&args.portal).await?;
    println!("HubSpot {} (API version {})", client.base_url(), settings.hubspot_api_version);
    let mut fixes: Vec<String> = Vec::new();

    match client.account_details().await {
        Ok(a) => println!("  ok    token accepted: portal {} (time zone {})", a.portal_id, a.time_zone),
        Err(e) if e.status == Some(401) => {
            println!("  FAIL  token refused (401): {}", e.message);
            return Err(CommandError::check_failed(
                "the token is not valid: create a Service Key (Development → Keys → Service keys) or copy the \
                 project app's access token, and set HUBSPOT_TOKEN",
            ));
        }
        Err(e) => return Err(format!("cannot reach HubSpot: {e}").into()),
    }

    let mut missing_scopes: Vec<&str> = Vec::new();
    // Deals are read only for referral conversions (Extole `converted`, impact.com conversions).
    let referral = &settings.referral.config;
    let conversions = referral.extole_enabled || referral.impact_enabled;
    for probe in Probe::ALL.into_iter().filter(|p| conversions || *p != Probe::DealsRead) {
        let (scope, why) = probe.scope();
        match client.probe(probe).await {
            Ok(()) => println!("  ok    {scope:<28} {why}"),
            Err(e) if e.status == Some(403) => {
                println!("  FAIL  {scope:<28} {why}: missing");
                if !missing_scopes.contains(&scope) {
                    missing_scopes.push(scope);
                }
            }
            Err(e) => return Err(format!("cannot check {scope}: {e}").into()),
        }
    }
    if !missing_scopes.is_empty() {
        fixes.push(format!(
            "grant the token these scopes (Service Key: edit its scopes; project app: add them to the app's \
             configuration and redeploy): {}",
            missing_scopes.join(", ")
        ));
    }

    let wanted = properties::required(&settings.mapping, &settings.referral.config);
    match properties::missing(&client, &wanted).await {
        Ok(missing) if missing.is_empty() => {
            println!(
                "  ok    all {} custom properties exist (mapping `{}`, referral flows)",
                wanted.len(),
                settings.mapping.name
            )
        }
        Ok(missing) => {
            let names: Vec<&str> = missing.iter().map(|p| p.name.as_str()).collect();
            println!("  FAIL  {} custom properties missing: {}", missing.len(), names.join(", "));
            fixes.push("create the missing properties: `hubrelay properties sync`".into());
        }
        // Without the schema scope the list cannot be read; that fix is already listed.
        Err(e) if e.status == Some(403) => {
            println!("  skip  custom properties: cannot list them without crm.schemas.contacts.read")
        }
        Err(e) => return Err(format!("cannot list the contact properties: {e}").into()),
    }

    if fixes.is_empty() {
        println!("ready: hubrelay can deliver to this portal");
        return Ok(());
    }
    println!("to fix:");
    for f in &fixes {
        println!("  - {f}");
    }
    Err(CommandError::check_failed(format!("{} thing(s) to fix before hubrelay can deliver", fixes.len())))
}
