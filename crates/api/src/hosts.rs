//! Hosts: registered by their agents; admins read and change them through
//! the generic CRUD handlers (no rules of their own).

use async_trait::async_trait;
use yunhan_model::Host;

use crate::resource::Hooks;

#[async_trait]
impl Hooks for Host {}
