//! `yunhan alarm …`: alarm rules on VM metrics (and, for admins, the platform's
//! conditions) that tell webhooks when they fire and resolve (docs/alarms.md).

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use yunhan_model::{AlarmRule, AlarmRuleSpec, AlarmState, Comparison, Doc, Severity, Webhook};

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{cell, col, join, Column};
use crate::wait::parse_duration;

/// Alarms: be told (by webhook) when a VM metric stays beyond a threshold
#[derive(Subcommand, Debug, Clone)]
pub enum AlarmCommand {
    #[command(flatten)]
    Common(Common),
    /// Create a rule
    ///
    /// The rule watches the VMs named with --vm (and those with the --selector labels)
    /// every 10 s; it fires when one of them stays beyond the threshold for --for, and
    /// resolves when none does. Each time, every --webhook gets a JSON POST (retried
    /// until it answers 2xx, for up to 10 minutes), signed with HMAC-SHA256 of the body
    /// under --webhook-secret in the header `X-Yunhan-Signature: sha256=<hex>`.
    ///
    /// Metrics: cpu (percent of the VM's vCPUs), memory (bytes), disk_read, disk_write
    /// (bytes/s), disk_read_ops, disk_write_ops, net_rx, net_tx (bytes/s). Admins may
    /// watch the platform instead: platform:host_not_ready, platform:pool_used_percent,
    /// platform:ceph_unhealthy, platform:ha_failovers, platform:vm_start_failures.
    ///
    /// Example:
    ///   yunhan alarm create hot --vm web1 --metric cpu --above 80 --for 30s --webhook http://hooks.example/
    ///   yunhan alarm create quiet --selector tier=web --metric net_rx --below 1000 --for 5m
    ///   yunhan alarm list                      # state ok | firing
    #[command(verbatim_doc_comment)]
    Create(AlarmCreate),
    /// Stop evaluating a rule (it stays ok)
    Disable { name: String },
    /// Evaluate a disabled rule again
    Enable { name: String },
}

#[derive(Args, Debug, Clone)]
pub struct AlarmCreate {
    pub name: String,
    /// The metric to watch (see above)
    #[arg(long)]
    pub metric: String,
    /// A VM to watch, by name or id (repeatable)
    #[arg(long = "vm", value_name = "VM")]
    pub vms: Vec<String>,
    /// Also watch the project's VMs with this label (KEY=VALUE, repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    pub selector: Vec<(String, String)>,
    /// Fire when the value is above this
    #[arg(long, conflicts_with = "below", required_unless_present = "below")]
    pub above: Option<f64>,
    /// Fire when the value is below this
    #[arg(long)]
    pub below: Option<f64>,
    /// How long the value must stay beyond the threshold: 30s, 5m, … [default: 60s]
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub for_: Option<Duration>,
    #[arg(long, value_parser = ["info", "warning", "critical"], default_value = "warning")]
    pub severity: String,
    /// A URL to POST notifications to (repeatable)
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// The secret the webhooks' HMAC-SHA256 signatures are made with
    #[arg(long, value_name = "SECRET", env = "YUNHAN_WEBHOOK_SECRET")]
    pub webhook_secret: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

impl Shown for AlarmRule {
    const NOUN: &'static str = "alarm rule";
    const COLUMNS: &'static [Column<Doc<AlarmRule>>] = &[
        col!("NAME", metadata.name),
        col!("STATE", status.state),
        col!("METRIC", spec.metric),
        Column {
            header: "CONDITION",
            get: condition,
        },
        Column {
            header: "FIRING",
            get: |r| {
                let firing = (r.status.resources.iter())
                    .filter(|x| x.state == AlarmState::Firing)
                    .map(|x| x.name.clone());
                join(&firing.collect::<Vec<_>>())
            },
        },
        col!("SEVERITY", spec.severity),
        col!("ID", metadata.id),
        col!("MESSAGE", status.message),
    ];
}

/// `> 80 for 30s`.
fn condition(r: &Doc<AlarmRule>) -> String {
    let op = match r.spec.comparison {
        Comparison::Above => ">",
        Comparison::Below => "<",
    };
    let off = if r.spec.enabled { "" } else { " (disabled)" };
    let threshold = cell(&r.spec.threshold);
    format!("{op} {threshold} for {}s{off}", r.spec.for_seconds)
}

fn spec_of(a: &AlarmCreate) -> AlarmRuleSpec {
    let (comparison, threshold) = match (a.above, a.below) {
        (_, Some(b)) => (Comparison::Below, b),
        (a, None) => (Comparison::Above, a.unwrap_or_default()),
    };
    let severity = match a.severity.as_str() {
        "info" => Severity::Info,
        "critical" => Severity::Critical,
        _ => Severity::Warning,
    };
    let webhooks = (a.webhooks.iter())
        .map(|url| Webhook {
            url: url.clone(),
            secret: a.webhook_secret.clone(),
            has_secret: false,
        })
        .collect();
    AlarmRuleSpec {
        metric: a.metric.clone(),
        instances: a.vms.clone(),
        selector: a.selector.iter().cloned().collect::<BTreeMap<_, _>>(),
        comparison,
        threshold,
        for_seconds: a.for_.map_or(60, |d| d.as_secs()),
        severity,
        webhooks,
        enabled: true,
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: AlarmCommand) -> Result<(), ClientError> {
    match cmd {
        AlarmCommand::Common(verb) => ctx.common::<AlarmRule>(verb).await,
        AlarmCommand::Create(a) => ctx.create_print::<AlarmRule>(&a.name, spec_of(&a)).await,
        AlarmCommand::Disable { name } => enable(ctx, &name, false).await,
        AlarmCommand::Enable { name } => enable(ctx, &name, true).await,
    }
}

async fn enable(ctx: &Ctx, name: &str, on: bool) -> Result<(), ClientError> {
    let v = ctx
        .update_spec::<AlarmRule>(name, |spec| {
            spec.enabled = on;
            Ok(())
        })
        .await?;
    ctx.print::<AlarmRule>(&v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::Command;
    use crate::testing::Cli;

    fn create(line: &str) -> AlarmCreate {
        match Cli::line(line).unwrap().command {
            Command::Alarm(AlarmCommand::Create(a)) => a,
            other => panic!("{line}: {other:?}"),
        }
    }

    /// The command of the contract, as it is typed.
    #[test]
    fn the_contract_parses_into_a_rule() {
        let a = create(
            "yunhan alarm create hot --vm web1 --metric cpu --above 80 --for 30s --webhook http://127.0.0.1:8080/",
        );
        let spec = spec_of(&a);
        assert_eq!(spec.metric, "cpu");
        assert_eq!(spec.instances, ["web1"]);
        assert_eq!((spec.comparison, spec.threshold), (Comparison::Above, 80.0));
        assert_eq!(spec.for_seconds, 30);
        assert_eq!(spec.webhooks[0].url, "http://127.0.0.1:8080/");
    }

    #[test]
    fn a_threshold_is_required_and_only_one() {
        assert!(Cli::line("yunhan alarm create x --vm a --metric cpu").is_err());
        assert!(
            Cli::line("yunhan alarm create x --vm a --metric cpu --above 1 --below 2").is_err()
        );
        let a = create("yunhan alarm create x --selector tier=web --metric net_rx --below 1000");
        let spec = spec_of(&a);
        assert_eq!(spec.comparison, Comparison::Below);
        assert_eq!(spec.selector["tier"], "web");
        assert_eq!(spec.for_seconds, 60);
    }
}
