//! `yunhan whoami`: who the configured token belongs to.

use serde::{Deserialize, Serialize};
use yunhan_model::Role;

use crate::client::ClientError;
use crate::ctx::Ctx;
use crate::output::{col, print_one, Column};

/// The answer of `GET /v1/whoami` (the API's `WhoAmI`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WhoAmI {
    user: String,
    project: String,
    role: Role,
}

const COLUMNS: &[Column<WhoAmI>] = &[
    col!("USER", user),
    col!("PROJECT", project),
    col!("ROLE", role),
];

pub(crate) async fn run(ctx: &Ctx) -> Result<(), ClientError> {
    let v = ctx.client.get_as::<WhoAmI>("/v1/whoami").await?;
    print_one(ctx.format, COLUMNS, &v);
    Ok(())
}
