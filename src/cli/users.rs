//! `users add|list|remove|set-password`: manage the users of the dashboard and the REST API
//! through the service. Passwords come from a prompt (twice) on a terminal, otherwise from
//! the first line of stdin — never from an argument, where `ps` and shell history see them.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use super::output::{json, table, time};
use super::{Config, Format, Outcome, UsersCommand};

/// What `users remove` says when it removed the last user.
const LAST_USER_GONE: &str = "warning: no users remain: authentication is now off for servers \
     listening on loopback (and those started with --insecure-no-auth); servers listening \
     beyond loopback refuse every request until a user is added (`orchestrator users add \
     NAME --role admin`)";

pub(super) async fn execute(config: &Config, cmd: UsersCommand) -> anyhow::Result<Outcome> {
    let service = super::open_runs(config).await?;
    match cmd {
        UsersCommand::Add { name, role } => {
            let password = read_password(&format!("Password for {name}: "))?;
            let user = service.add_user(&name, role.into(), &password).await?;
            println!("added user {} with role {}", user.name, user.role);
        }
        UsersCommand::List(output) => {
            let users = service.users().await?;
            if output.format == Format::Json {
                json(&users)?;
                return Ok(Outcome::Success);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| vec![u.name.clone(), u.role.to_string(), time(Some(u.created_at))])
                .collect();
            table(&["NAME", "ROLE", "CREATED"], &rows);
        }
        UsersCommand::Remove { name } => {
            service.remove_user(&name).await?;
            println!("removed user {name}");
            if !service.any_user().await? {
                eprintln!("{LAST_USER_GONE}");
            }
        }
        UsersCommand::SetPassword { name } => {
            let password = read_password(&format!("New password for {name}: "))?;
            service.set_password(&name, &password).await?;
            println!("password of {name} changed; tokens issued before no longer work");
        }
    }
    Ok(Outcome::Success)
}

/// A password typed twice at a prompt, or the first line of a non-terminal stdin.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).context("cannot read the password")?;
        let again =
            rpassword::prompt_password("Repeat it: ").context("cannot read the password")?;
        if first != again {
            bail!("the two passwords differ; nothing was changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        bail!("the password must not be empty (type it at the prompt or pipe it on stdin)");
    }
    Ok(password)
}
