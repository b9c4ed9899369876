//! `nubo auth`: an app's accounts, sessions and API keys on a node.

use crate::CliResult;
use crate::client::{Client, NodeArgs, enc};
use http::Method;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Manage who can sign in to an app: accounts, sessions, API keys.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  nubo auth users list notes\n  nubo auth users set-roles notes ada@example.com admin\n  nubo auth sessions revoke notes ada@example.com\n  nubo auth keys create notes --name ci --roles deploy\n  nubo auth keys revoke notes ci"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Accounts ([auth] accounts = true).
    #[command(subcommand)]
    Users(Users),
    /// Sessions of an account.
    #[command(subcommand)]
    Sessions(Sessions),
    /// API keys ([auth] api_keys = true).
    #[command(subcommand)]
    Keys(Keys),
}

#[derive(clap::Subcommand)]
pub enum Users {
    /// Every account with its roles.
    List { app: String },
    /// Set an account's roles (none given: clear them).
    SetRoles {
        app: String,
        email: String,
        roles: Vec<String>,
    },
    /// Stop an account from signing in; its sessions stop at once.
    Disable { app: String, email: String },
    /// Let a disabled account sign in again.
    Enable { app: String, email: String },
    /// Delete an account; its sessions stop at once.
    Delete { app: String, email: String },
}

#[derive(clap::Subcommand)]
pub enum Sessions {
    /// End every session of an account, on every node.
    Revoke { app: String, email: String },
}

#[derive(clap::Subcommand)]
pub enum Keys {
    /// Make an API key; it is shown once.
    Create {
        app: String,
        /// A name to list and revoke it by.
        #[arg(long)]
        name: String,
        /// Roles the key holds, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Every API key (names and roles; keys are never shown again).
    List { app: String },
    /// Revoke an API key: requests with it are refused at once.
    Revoke { app: String, name: String },
}

pub fn run(args: Args) -> CliResult<ExitCode> {
    let client = args.node.connect(None)?;
    crate::async_runtime()?.block_on(async move {
        match args.command {
            Cmd::Users(u) => users(&client, u).await,
            Cmd::Sessions(Sessions::Revoke { app, email }) => {
                let path = format!("/v1/apps/{}/auth/users/{}/sessions", enc(&app), enc(&email));
                let _: Value = client.call(Method::DELETE, &path, None::<&()>).await?;
                println!("ended every session of {email}");
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Keys(k) => keys(&client, k).await,
        }
    })
}

fn user_path(app: &str, email: &str) -> String {
    format!("/v1/apps/{}/auth/users/{}", enc(app), enc(email))
}

async fn users(client: &Client, cmd: Users) -> CliResult<ExitCode> {
    let (app, email, change) = match cmd {
        Users::List { app } => {
            let list: Vec<Value> = client
                .get(&format!("/v1/apps/{}/auth/users", enc(&app)))
                .await?;
            if list.is_empty() {
                println!("app `{app}` has no accounts yet");
            }
            for u in list {
                let roles = roles_of(&u);
                let disabled = if u["disabled"] == json!(true) {
                    "  (disabled)"
                } else {
                    ""
                };
                println!(
                    "{}  {}  roles: {roles}{disabled}",
                    str_of(&u, "email"),
                    str_of(&u, "id")
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Users::Delete { app, email } => {
            let _: Value = client
                .call(Method::DELETE, &user_path(&app, &email), None::<&()>)
                .await?;
            println!("deleted {email}");
            return Ok(ExitCode::SUCCESS);
        }
        Users::SetRoles { app, email, roles } => (app, email, json!({ "roles": roles })),
        Users::Disable { app, email } => (app, email, json!({ "disabled": true })),
        Users::Enable { app, email } => (app, email, json!({ "disabled": false })),
    };
    let u: Value = client
        .call(Method::PATCH, &user_path(&app, &email), Some(&change))
        .await?;
    let state = if u["disabled"] == json!(true) {
        "disabled"
    } else {
        "enabled"
    };
    println!("{email}: roles {}, {state}", roles_of(&u));
    Ok(ExitCode::SUCCESS)
}

async fn keys(client: &Client, cmd: Keys) -> CliResult<ExitCode> {
    match cmd {
        Keys::Create { app, name, roles } => {
            let body = json!({ "name": name, "roles": roles });
            let path = format!("/v1/apps/{}/auth/keys", enc(&app));
            let k: Value = client.call(Method::POST, &path, Some(&body)).await?;
            println!("{}", str_of(&k, "key"));
            eprintln!(
                "API key `{name}` for app `{app}` (roles {}). It is shown only now: keep it secret.",
                roles_of(&k)
            );
        }
        Keys::List { app } => {
            let list: Vec<Value> = client
                .get(&format!("/v1/apps/{}/auth/keys", enc(&app)))
                .await?;
            if list.is_empty() {
                println!("app `{app}` has no API keys");
            }
            for k in list {
                println!("{}  roles: {}", str_of(&k, "name"), roles_of(&k));
            }
        }
        Keys::Revoke { app, name } => {
            let path = format!("/v1/apps/{}/auth/keys/{}", enc(&app), enc(&name));
            let _: Value = client.call(Method::DELETE, &path, None::<&()>).await?;
            println!("revoked API key `{name}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn roles_of(v: &Value) -> String {
    let roles: Vec<&str> = v["roles"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if roles.is_empty() {
        "none".into()
    } else {
        roles.join(",")
    }
}
