//! What every command works with: the client, the output format, and the
//! verbs and edits that are the same for every kind.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use yunhan_model::{Kind, UpdateRequest, User};

use crate::client::{Answer, Client, ClientError};
use crate::config::{default_path, ClientConfig};
use crate::kind::{create_in, path_of, Obj, Shown};
use crate::output::{print_all, print_one, Format};
use crate::wait::wait_for;

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// API endpoint, e.g. http://127.0.0.1:7070 [default: from the config file]
    #[arg(long, env = "YUNHAN_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// API token (yh_…) [default: from the config file]
    #[arg(long, env = "YUNHAN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Client config file [default: ~/.config/yunhan/config.toml]
    #[arg(long, env = "YUNHAN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Output format: a table for people, JSON for scripts
    #[arg(short = 'o', long, value_enum, default_value_t, global = true)]
    pub output: Format,
}

/// `list`, `show` and `delete`: the same for every kind (flattened into each
/// kind's command, next to its `create` and its own verbs).
#[derive(Subcommand, Debug, Clone)]
pub enum Common {
    /// List them (all pages)
    #[command(alias = "ls")]
    List,
    /// Show one, by name or id
    Show { name: String },
    /// Delete one, by name or id
    // Listed after the kind's `create` (which gets the same order, and sorts first).
    #[command(alias = "rm", display_order = 3)]
    Delete {
        name: String,
        /// Wait until it is completely gone
        #[arg(long)]
        wait: bool,
    },
}

/// The verbs of a kind that has only the common ones and `create` (with the
/// arguments `C`). The noun's help is on its variant of `dispatch::Command`.
#[derive(Subcommand, Debug, Clone)]
pub enum Verbs<C: Args> {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(C),
}

/// The arguments of a kind's `create`, and what it does with them.
pub(crate) trait Create {
    /// The kind it creates.
    type Kind: Shown;
    /// Creates the object and prints it.
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError>;
}

impl<C: Args> Verbs<C> {
    /// Runs the verb on `C`'s kind.
    pub(crate) async fn run(self, ctx: &Ctx) -> Result<(), ClientError>
    where
        C: Create,
    {
        match self {
            Verbs::Common(verb) => ctx.common::<C::Kind>(verb).await,
            Verbs::Create(a) => a.run(ctx).await,
        }
    }
}

pub(crate) struct Ctx {
    pub client: Client,
    pub format: Format,
}

/// What `delete -o json` prints.
#[derive(Serialize)]
struct Deleted<'a> {
    deleted: &'a str,
}

impl Ctx {
    /// The client from flags, environment and config file; an empty flag or
    /// variable (`YUNHAN_TOKEN= yunhan …`) counts as unset, so the config's applies.
    pub(crate) fn new(args: &ClientArgs) -> Result<Ctx, ClientError> {
        let path = args.config.clone().unwrap_or_else(default_path);
        let file = ClientConfig::load(&path).ok();
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let endpoint = set(&args.endpoint)
            .or_else(|| file.as_ref().map(|c| c.endpoint.clone()))
            .ok_or_else(|| ClientError::Usage(format!(
                "no API endpoint configured: {} does not exist.\nStart an all-in-one cloud with 'yunhan up' (it writes that file), or pass --endpoint and --token.",
                path.display()
            )))?;
        let token = set(&args.token)
            .or_else(|| file.map(|c| c.token))
            .unwrap_or_default();
        Ok(Ctx {
            client: Client::new(&endpoint, &token),
            format: args.output,
        })
    }

    /// Runs `list`, `show` or `delete` for kind `K`.
    pub(crate) async fn common<K: Shown>(&self, verb: Common) -> Result<(), ClientError> {
        match verb {
            Common::List => self.list::<K>().await,
            Common::Show { name } => self.show::<K>(&name).await,
            Common::Delete { name, wait } => self.delete::<K>(&name, wait).await,
        }
    }

    pub(crate) async fn list<K: Shown>(&self) -> Result<(), ClientError> {
        let items = self.client.list_as(&format!("/v1/{}", K::PLURAL)).await?;
        print_all(self.format, K::COLUMNS, &items);
        Ok(())
    }

    pub(crate) async fn show<K: Shown>(&self, name: &str) -> Result<(), ClientError> {
        let v = self.fetch::<K>(name).await?;
        self.print::<K>(&v);
        Ok(())
    }

    /// One object, by name or id.
    pub(crate) async fn fetch<K: Kind>(&self, name: &str) -> Result<Obj<K>, ClientError> {
        self.client.get_as(&path_of::<K>(name)).await
    }

    /// The id of the user `name` (a name or id), when one is given.
    pub(crate) async fn user_id(
        &self,
        name: Option<String>,
    ) -> Result<Option<String>, ClientError> {
        match name {
            Some(u) => Ok(Some(self.fetch::<User>(&u).await?.value.metadata.id)),
            None => Ok(None),
        }
    }

    /// Prints an object of kind `K` in the chosen format.
    pub(crate) fn print<K: Shown>(&self, v: &Obj<K>) {
        print_one(self.format, K::COLUMNS, v);
    }

    pub(crate) async fn create<K: Kind>(
        &self,
        name: &str,
        spec: K::Spec,
    ) -> Result<Obj<K>, ClientError> {
        self.create_as::<K, _>(name, spec).await
    }

    /// Creates an object, reading the answer as a `T` (e.g. a key with its token).
    pub(crate) async fn create_as<K: Kind, T: DeserializeOwned>(
        &self,
        name: &str,
        spec: K::Spec,
    ) -> Result<Answer<T>, ClientError> {
        create_in::<K, T>(&self.client, name, spec).await
    }

    /// Creates an object and prints it.
    pub(crate) async fn create_print<K: Shown>(
        &self,
        name: &str,
        spec: K::Spec,
    ) -> Result<(), ClientError> {
        let v = self.create::<K>(name, spec).await?;
        self.print::<K>(&v);
        Ok(())
    }

    async fn delete<K: Shown>(&self, name: &str, wait: bool) -> Result<(), ClientError> {
        let path = path_of::<K>(name);
        let obj = self.fetch::<K>(name).await?;
        let id = obj.metadata.id.as_str();
        self.client.request(Method::DELETE, &path, None).await?;
        if wait {
            let by_id = format!("/v1/{}/{id}", K::PLURAL);
            let what = format!("{} {name} to be deleted", K::NOUN);
            let gone = |v: Option<&_>| v.is_none().then_some(Ok(()));
            wait_for::<K>(&self.client, &by_id, &what, Duration::from_secs(300), gone).await?;
        }
        self.deleted(name, id, K::NOUN);
        Ok(())
    }

    /// Says that `noun` `name` (`id`) is deleted (or on its way out).
    pub(crate) fn deleted(&self, name: &str, id: &str, noun: &str) {
        if self.format == Format::Json {
            println!(
                "{}",
                serde_json::to_string(&Deleted { deleted: id }).unwrap_or_default()
            );
        } else {
            eprintln!("deleted {noun} {name} ({id})");
        }
    }

    /// Reads `name`, changes its spec with `change` and writes it back at the read revision.
    pub(crate) async fn update_spec<K: Kind>(
        &self,
        name: &str,
        change: impl FnMut(&mut K::Spec) -> Result<(), ClientError>,
    ) -> Result<Obj<K>, ClientError> {
        Ok(self.edit_spec::<K>(&path_of::<K>(name), change).await?.0)
    }

    /// [`Ctx::update_spec`] that prints the object as written.
    pub(crate) async fn update_print<K: Shown>(
        &self,
        name: &str,
        change: impl FnMut(&mut K::Spec),
    ) -> Result<(), ClientError> {
        let mut change = change;
        let v = self
            .update_spec::<K>(name, |s| {
                change(s);
                Ok(())
            })
            .await?;
        self.print::<K>(&v);
        Ok(())
    }

    /// Read-modify-write of the spec at `path` (compare-and-swap on the read revision).
    /// A write that lost the race to a controller or agent writing the object's status
    /// meanwhile is redone on the fresh object, so a user never sees that race. Returns
    /// the object as written and as it was read.
    pub(crate) async fn edit_spec<K: Kind>(
        &self,
        path: &str,
        mut change: impl FnMut(&mut K::Spec) -> Result<(), ClientError>,
    ) -> Result<(Obj<K>, Obj<K>), ClientError> {
        let mut retries = 5;
        loop {
            let cur: Obj<K> = self.client.get_as(path).await?;
            let mut spec = cur.spec.clone();
            change(&mut spec)?;
            let body = UpdateRequest {
                revision: Some(cur.metadata.revision),
                labels: None,
                spec,
            };
            match self.client.send(Method::PUT, path, &body).await {
                Ok(v) => return Ok((v, cur)),
                Err(ClientError::Api(e, 409))
                    if retries > 0 && e.details.contains_key("revision") =>
                {
                    retries -= 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
