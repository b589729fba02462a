//! `yunhan lb rule …`: a listener's layer-7 rules (host and path → members of their own,
//! a redirect, or a refusal).

use clap::{Args, Subcommand};
use yunhan_model::{L7Action, L7Rule, Listener, LoadBalancer};

use super::{edit, listener_at};
use crate::client::{Answer, ClientError};
use crate::ctx::Ctx;
use crate::output::{col, join, print_all, Column};

#[derive(Subcommand, Debug, Clone)]
pub enum RuleCommand {
    /// List a listener's rules, in the order they are tried
    #[command(alias = "ls")]
    List(RuleOf),
    /// Add a rule (tried after the ones already there)
    Add(RuleAdd),
    /// Remove a rule with its members
    #[command(alias = "rm")]
    Remove {
        #[command(flatten)]
        of: RuleOf,
        /// The rule ('yunhan lb rule list')
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RuleOf {
    /// The load balancer (name or id)
    pub lb: String,
    /// The http or https listener ('yunhan lb listener list')
    #[arg(long)]
    pub listener: String,
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("match").required(true).multiple(true).args(["host", "path_prefix"])))]
pub struct RuleAdd {
    #[command(flatten)]
    pub of: RuleOf,
    /// Its name, unique in the listener (letters, digits, '-', '_')
    #[arg(long)]
    pub name: String,
    /// Requests for this host name (without a port; any case)
    #[arg(long)]
    pub host: Option<String>,
    /// Requests whose path starts with this (e.g. /api/)
    #[arg(long)]
    pub path_prefix: Option<String>,
    /// Answer matching requests with a redirect to this URL (http:// or https://) rather
    /// than send them to members of the rule
    #[arg(long, value_name = "URL", conflicts_with = "reject")]
    pub redirect: Option<String>,
    /// With --redirect: 301, 302, 303, 307 or 308
    #[arg(
        long,
        value_name = "CODE",
        requires = "redirect",
        default_value_t = 302
    )]
    pub redirect_code: u16,
    /// Refuse matching requests (403 Forbidden)
    #[arg(long)]
    pub reject: bool,
}

const RULE_COLUMNS: &[Column<L7Rule>] = &[
    col!("NAME", name),
    Column {
        header: "ACTION",
        get: action,
    },
    Column {
        header: "HOST",
        get: |r| or_any(&r.host),
    },
    Column {
        header: "PATH_PREFIX",
        get: |r| or_any(&r.path_prefix),
    },
    Column {
        header: "MEMBERS",
        get: |r| join(&r.members.iter().map(member).collect::<Vec<_>>()),
    },
];

pub(super) async fn run(ctx: &Ctx, cmd: RuleCommand) -> Result<(), ClientError> {
    match cmd {
        RuleCommand::List(of) => {
            let v = ctx.fetch::<LoadBalancer>(&of.lb).await?;
            let i = listener_at(&v.value.spec, &of.lb, &of.listener)?;
            let raw = &v.raw["spec"]["listeners"][i]["rules"];
            let rows: Vec<_> = (v.value.spec.listeners[i].rules.iter().enumerate())
                .map(|(k, r)| Answer {
                    raw: raw[k].clone(),
                    value: r.clone(),
                })
                .collect();
            print_all(ctx.format, RULE_COLUMNS, &rows);
            Ok(())
        }
        RuleCommand::Add(a) => {
            let action = match (&a.redirect, a.reject) {
                (Some(_), _) => L7Action::Redirect,
                (None, true) => L7Action::Reject,
                (None, false) => L7Action::Forward,
            };
            let rule = L7Rule {
                name: a.name,
                host: a.host.unwrap_or_default(),
                path_prefix: a.path_prefix.unwrap_or_default(),
                action,
                redirect_code: a.redirect.is_some().then_some(a.redirect_code),
                redirect_url: a.redirect,
                members: Vec::new(),
            };
            edit(ctx, &a.of.lb, |s| {
                let i = listener_at(s, &a.of.lb, &a.of.listener)?;
                s.listeners[i].rules.push(rule.clone());
                Ok(())
            })
            .await
        }
        RuleCommand::Remove { of, name } => {
            edit(ctx, &of.lb, |s| {
                let i = listener_at(s, &of.lb, &of.listener)?;
                let l = &mut s.listeners[i];
                let k = rule_at(l, &of.lb, &name)?;
                l.rules.remove(k);
                Ok(())
            })
            .await
        }
    }
}

/// What a matching request gets, in words.
fn action(r: &L7Rule) -> String {
    match r.action {
        L7Action::Forward => "forward".into(),
        L7Action::Reject => "reject (403)".into(),
        L7Action::Redirect => format!(
            "redirect {} {}",
            r.redirect_code.unwrap_or(302),
            r.redirect_url.as_deref().unwrap_or("")
        ),
    }
}

fn or_any(s: &str) -> String {
    if s.is_empty() { "*" } else { s }.to_string()
}

fn member(m: &yunhan_model::LbMember) -> String {
    format!("{}:{}", m.address, m.port)
}

/// The index of rule `name` of listener `l`; none is an error saying what there is.
pub(super) fn rule_at(l: &Listener, lb: &str, name: &str) -> Result<usize, ClientError> {
    if let Some(k) = l.rules.iter().position(|r| r.name == name) {
        return Ok(k);
    }
    let names: Vec<_> = l.rules.iter().map(|r| r.name.as_str()).collect();
    let listener = &l.name;
    Err(ClientError::Usage(if names.is_empty() {
        format!(
            "listener {listener} of load balancer {lb} has no rules; add one with 'yunhan lb rule add {lb} --listener {listener} --name NAME --host HOST'"
        )
    } else {
        format!(
            "listener {listener} of load balancer {lb} has no rule {name:?}; it has {} ('yunhan lb rule list {lb} --listener {listener}')",
            names.join(", ")
        )
    }))
}
