//! Every table the client prints, from objects as the API writes them: a
//! renamed or retyped field fails here instead of printing a blank.

use serde::de::DeserializeOwned;
use serde_json::Value;
use yunhan_model::network::{ElasticIp, Subnet, Vip, Vpc};
use yunhan_model::network::{NatGateway, NetworkInterface, SecurityGroup};
use yunhan_model::{AlarmRule, Snapshot, SnapshotPolicy, Volume};
use yunhan_model::{ApiKey, Doc, ExternalNetwork, Flavor, Host, Image, Instance};
use yunhan_model::{PlacementGroup, Project, User};

use crate::client::Answer;
use crate::kind::Shown;
use crate::output::table;

fn objects() -> Value {
    serde_json::from_str(include_str!("testdata/objects.json")).unwrap()
}

fn read<T: DeserializeOwned>(v: &Value) -> T {
    Answer::read(v.clone())
        .unwrap_or_else(|e| panic!("{e}: {v}"))
        .value
}

fn answers<T: DeserializeOwned>(list: &Value) -> Vec<Answer<T>> {
    let read = |v: &Value| Answer::read(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    list.as_array().unwrap().iter().map(read).collect()
}

fn kind_table<K: Shown>(all: &Value) -> String {
    let rows: Vec<Doc<K>> = all[K::PLURAL]
        .as_array()
        .unwrap()
        .iter()
        .map(read)
        .collect();
    format!("== {}\n{}", K::PLURAL, table(K::COLUMNS, &rows))
}

#[test]
fn tables_of_every_kind() {
    let all = objects();
    let tables = [
        kind_table::<Host>(&all),
        kind_table::<Project>(&all),
        kind_table::<User>(&all),
        kind_table::<ApiKey>(&all),
        kind_table::<Flavor>(&all),
        kind_table::<Image>(&all),
        kind_table::<Instance>(&all),
        kind_table::<PlacementGroup>(&all),
        kind_table::<Vpc>(&all),
        kind_table::<Subnet>(&all),
        kind_table::<NetworkInterface>(&all),
        kind_table::<SecurityGroup>(&all),
        kind_table::<ExternalNetwork>(&all),
        kind_table::<ElasticIp>(&all),
        kind_table::<NatGateway>(&all),
        kind_table::<Vip>(&all),
        kind_table::<Volume>(&all),
        kind_table::<Snapshot>(&all),
        kind_table::<SnapshotPolicy>(&all),
        kind_table::<AlarmRule>(&all),
        format!(
            "== pools\n{}",
            super::storage::table_of(answers(&all["hosts"]))
        ),
        format!(
            "== rules\n{}",
            super::security_group::table_of(read(&all["security-groups"][0]["spec"]["rules"]))
        ),
    ];
    insta::assert_snapshot!(tables.concat());
}

/// `yunhan usage` and `yunhan price-list show`, from answers as the API writes them.
#[test]
fn usage_and_price_list_tables() {
    let all: Value = serde_json::from_str(include_str!("testdata/usage.json")).unwrap();
    let tables = [
        format!("== usage\n{}", super::usage::table_of(&read(&all["usage"]))),
        format!(
            "== price-list\n{}",
            super::price_list::table_of(&read(&all["price-list"]))
        ),
    ];
    insta::assert_snapshot!(tables.concat());
}
