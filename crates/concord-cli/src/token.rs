//! `concord token new`: make an admin token (`--role viewer|operator`), a storefront key
//! (`--channel CHANNEL`) or a metrics token (`--metrics`: reads `/metrics` and nothing else):
//! 32 random bytes, printed once, with the config entry holding only its SHA-256. Must never
//! write the token anywhere but stdout.

use crate::wiring::ConfigProblem;
use clap::Subcommand;
use concord_engine::config::access::token_hash;
use concord_engine::config::Role;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a new token (admin API) or key (storefront API) and print it once.
    New {
        /// Who holds it (shown in the audit trail): lowercase letters, digits, `_-.@`.
        #[arg(long)]
        name: String,
        /// Admin API role: viewer (read) or operator (also replay, drop, pause, resume, run).
        #[arg(
            long,
            conflicts_with_all = ["channel", "metrics"],
            required_unless_present_any = ["channel", "metrics"]
        )]
        role: Option<String>,
        /// Make a storefront API key for this channel instead of an admin token.
        #[arg(long, conflicts_with = "metrics")]
        channel: Option<String>,
        /// Make a token that may only read `/metrics` (for Prometheus).
        #[arg(long)]
        metrics: bool,
    },
}

pub fn run(action: TokenAction) -> anyhow::Result<ExitCode> {
    let TokenAction::New {
        name,
        role,
        channel,
        metrics,
    } = action;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.' | '@')
        });
    if !valid_name {
        return Err(ConfigProblem(format!(
            "--name: invalid name {name:?}: expected 1-64 of lowercase letters, digits, `_`, `-`, `.`, `@`"
        ))
        .into());
    }
    let token = concord_server::access::random_secret()
        .map_err(|e| anyhow::anyhow!("no randomness source: {e}"))?;
    let hash = hex::encode(token_hash(&token));
    match (role, channel) {
        (None, None) if metrics => {
            println!("metrics token (shown once; it is not stored anywhere):\n  {token}\n");
            println!("Prometheus sends it as `Authorization: Bearer TOKEN` (scrape config: `authorization: {{credentials_file: ...}}`).\n");
            println!("add to the config file:\n");
            println!("[[metrics.tokens]]\nname = \"{name}\"\nsha256 = \"{hash}\"");
        }
        (Some(role), None) => {
            let role = Role::parse(&role).ok_or_else(|| {
                ConfigProblem(format!(
                    "--role: unknown role {role:?}, expected viewer or operator"
                ))
            })?;
            println!(
                "token (shown once; give it to {name}, it is not stored anywhere):\n  {token}\n"
            );
            println!("add to the config file:\n");
            println!("[[admin.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{hash}\"");
        }
        (None, Some(channel)) => {
            println!("storefront key for channel {channel} (shown once; it is not stored anywhere):\n  {token}\n");
            println!("add to the config file:\n");
            println!("[[commerce.keys]]\nname = \"{name}\"\nchannel = \"{channel}\"\nsha256 = \"{hash}\"");
        }
        _ => {
            return Err(
                ConfigProblem("give exactly one of --role, --channel and --metrics".into()).into(),
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}
