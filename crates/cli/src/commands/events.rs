//! `yunhan events`: the audit trail, every API write (`GET /v1/events`).

use clap::Args;
use yunhan_model::{AuditEvent, AuditEventList};

use crate::client::{Answer, ClientError};
use crate::ctx::Ctx;
use crate::kind::with_query;
use crate::output::{col, print_all, Column};

/// Events: every API write (who, in which project, what, the outcome), kept 7 days
///
/// Each create, update or delete through the API, and each write of a part of an object
/// (an image's data, a user's keys, …), is an event, whether it worked or not: OUTCOME
/// is the HTTP status it got. Members see their own project's events, admins everyone's
/// (--project narrows them to one project). The newest events of the last --since are
/// printed, oldest first.
///
/// Example:
///   yunhan events --since 10m
///   yunhan events --kind instances --since 1d -o json
///   yunhan events --project demo --limit 50     # admins: one project's
#[derive(Args, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub struct EventsArgs {
    /// How far back: 30s, 10m, 2h, 1d or seconds [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<String>,
    /// Only writes of this kind, as the API's paths name it: instances, vpcs, volumes, …
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this project's events, by name or id (admins)
    #[arg(long)]
    pub project: Option<String>,
    /// At most this many, the newest [default: 500]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a duration like 30s, 10m, 2h, 1d or seconds")]
pub struct BadSince(String);

/// `<n>` or `<n><unit>` with unit s, m, h or d; kept as typed, for the API to read.
pub(crate) fn parse_since(s: &str) -> Result<String, BadSince> {
    let digits = s.strip_suffix(['s', 'm', 'h', 'd']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadSince(s.to_string()));
    }
    Ok(s.to_string())
}

const COLUMNS: &[Column<AuditEvent>] = &[
    col!("TIME", time),
    col!("ACTOR", actor),
    col!("PROJECT", project),
    col!("ACTION", action),
    col!("KIND", kind),
    col!("TARGET", target),
    col!("OUTCOME", outcome),
];

/// `/v1/events` with the filters given, their values URL-encoded.
fn events_path(a: &EventsArgs) -> String {
    let limit = a.limit.map(|n| n.to_string());
    let params = [
        ("since", &a.since),
        ("kind", &a.kind),
        ("project", &a.project),
        ("limit", &limit),
    ];
    with_query("/v1/events", &params)
}

/// The list's items, each with its JSON as the API sent it.
fn items_of(list: Answer<AuditEventList>) -> Vec<Answer<AuditEvent>> {
    let raw = match list.raw {
        serde_json::Value::Object(mut o) => o.remove("items"),
        _ => None,
    };
    let raw = match raw {
        Some(serde_json::Value::Array(items)) => items,
        _ => Vec::new(),
    };
    raw.into_iter()
        .zip(list.value.items)
        .map(|(raw, value)| Answer { raw, value })
        .collect()
}

pub(crate) async fn run(ctx: &Ctx, a: EventsArgs) -> Result<(), ClientError> {
    let list = ctx
        .client
        .get_as::<AuditEventList>(&events_path(&a))
        .await?;
    print_all(ctx.format, COLUMNS, &items_of(list));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    use crate::dispatch::Command;
    use crate::output::{table, Format};
    use crate::testing::Cli;

    fn parse(line: &str) -> Result<(EventsArgs, Format), clap::Error> {
        let cli = Cli::line(line)?;
        match cli.command {
            Command::Events(a) => Ok((a, cli.client.output)),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn help_parses_and_teaches() {
        let help = Cli::help("yunhan events --help");
        assert!(help.contains("Example:\n  yunhan events "), "{help}");
        assert!(help.contains("kept 7 days"), "{help}");
        assert_eq!(yunhan_model::EVENT_RETENTION_SECS, 7 * 86_400);
    }

    /// The command of the issue's contract, as it is typed.
    #[test]
    fn the_contract_parses() {
        let (a, format) = parse("yunhan events --since 10m -o json").unwrap();
        assert_eq!(format, Format::Json);
        assert_eq!(a.since.as_deref(), Some("10m"));
        assert_eq!(events_path(&a), "/v1/events?since=10m");
        let (a, _) = parse("yunhan events").unwrap();
        assert_eq!(events_path(&a), "/v1/events");
        let (a, _) =
            parse("yunhan events --kind instances --since 1d --project my+proj --limit 1000")
                .unwrap();
        assert_eq!(
            events_path(&a),
            "/v1/events?since=1d&kind=instances&project=my%2Bproj&limit=1000"
        );
        for ok in ["30s", "2h", "90"] {
            assert!(
                parse(&format!("yunhan events --since {ok}")).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn bad_limits_and_durations_are_refused() {
        for bad in ["0", "1001", "many"] {
            let e = parse(&format!("yunhan events --limit {bad}")).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        let e = parse("yunhan events --limit 0").unwrap_err().to_string();
        assert!(e.contains("1..=1000"), "{e}");
        for bad in ["1w", "m", "1.5h", "10mm", "1 h", "soon"] {
            let e = Cli::try_parse_from(["yunhan", "events", "--since", bad]).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains("is not a duration like 30s, 10m, 2h, 1d or seconds"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn events_print_as_a_table_and_as_the_api_sent_them() {
        let raw = json!({"items": [
            {"time": "2024-05-01T10:00:00Z", "actor": "alice", "project": "demo",
             "action": "delete", "kind": "instances", "target": "web-1", "outcome": 204},
            {"time": "2024-05-01T10:02:30Z", "actor": "admin", "action": "create",
             "kind": "projects", "outcome": 201},
        ]});
        let list = Answer::read(raw.clone()).unwrap();
        let items = items_of(list);
        let rows: Vec<&AuditEvent> = items.iter().map(|i| &i.value).collect();
        insta::assert_snapshot!(table(COLUMNS, rows), @r"
        TIME                  ACTOR  PROJECT  ACTION  KIND       TARGET  OUTCOME
        2024-05-01T10:00:00Z  alice  demo     delete  instances  web-1   204
        2024-05-01T10:02:30Z  admin  -        create  projects   -       201
        ");
        let json: Vec<_> = items.iter().map(|i| &i.raw).collect();
        assert_eq!(
            json,
            raw["items"].as_array().unwrap().iter().collect::<Vec<_>>()
        );
    }

    /// Answers one request with `status` and `body`; yields the request line.
    async fn serve_once(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", l.local_addr().unwrap());
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let served = tokio::spawn(async move {
            let (mut conn, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client hung up");
                req.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).await.unwrap();
            let req = String::from_utf8_lossy(&req).into_owned();
            req.lines().next().unwrap_or_default().to_string()
        });
        (endpoint, served)
    }

    fn ctx(endpoint: &str) -> Ctx {
        Ctx {
            client: crate::client::Client::new(endpoint, "yh_test"),
            format: Format::Json,
        }
    }

    #[tokio::test]
    async fn asks_the_api_with_the_filters_and_shows_its_errors() {
        let (a, _) = parse("yunhan events --since 10m --kind instances --limit 2").unwrap();
        let body = r#"{"items": [{"time": "2024-05-01T10:00:00Z", "actor": "alice", "action": "create", "kind": "instances", "outcome": 201}]}"#;
        let (endpoint, served) = serve_once("200 OK", body).await;
        run(&ctx(&endpoint), a).await.unwrap();
        assert_eq!(
            served.await.unwrap(),
            "GET /v1/events?since=10m&kind=instances&limit=2 HTTP/1.1"
        );

        let (a, _) = parse("yunhan events --since 99999999d").unwrap();
        let body = r#"{"code": "invalid_field", "message": "since: at most 7d", "details": {"field": "since"}}"#;
        let (endpoint, served) = serve_once("400 Bad Request", body).await;
        let e = run(&ctx(&endpoint), a).await.unwrap_err();
        assert!(matches!(e, ClientError::Api(_, 400)), "{e:?}");
        assert_eq!(e.to_string(), "since: at most 7d");
        served.await.unwrap();
    }
}
