//! Flavors: platform-wide instance sizes, managed by admins through the
//! generic CRUD handlers (no rules of their own).

use async_trait::async_trait;
use yunhan_model::Flavor;

use crate::resource::Hooks;

#[async_trait]
impl Hooks for Flavor {}
