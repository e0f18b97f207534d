//! `region_json`: two columns, an id and a country. The country is looked up in a JSON map
//! of country → region number (the file named by `region_map`); the keyspace id is the
//! region's last `region_bytes` bytes followed by `hash` of the id. A country missing from
//! the map routes nowhere (Vitess `region_json.go`).

use std::collections::HashMap;

use super::hash::vhash;
use super::region_experimental::region_prefix;
use super::{atoi, Ctx, Destination, KeyspaceId, Params, Value, VindexError};

pub(crate) const PARAMS: &[&str] = &["region_bytes", "region_map"];
const TYPE: &str = "region_json";

/// The `region_json` vindex.
#[derive(Debug, Clone)]
pub struct RegionJson {
    region_map: HashMap<String, u64>,
    region_bytes: usize,
}

impl RegionJson {
    pub(crate) fn new(ctx: &Ctx<'_>, params: &Params) -> Result<Self, VindexError> {
        let path = params.get("region_map").map(String::as_str).unwrap_or("");
        let data = ctx
            .files
            .load(path)
            .map_err(|e| ctx.bad_param(TYPE, "region_map", e))?;
        let region_map: HashMap<String, u64> = serde_json::from_slice(&data)
            .map_err(|e| ctx.bad_param(TYPE, "region_map", e.to_string()))?;
        let text = params.get("region_bytes").map(String::as_str).unwrap_or("");
        let region_bytes = atoi(text).map_err(|e| ctx.bad_param(TYPE, "region_bytes", e))?;
        if region_bytes != 1 && region_bytes != 2 {
            return Err(ctx.bad_param(
                TYPE,
                "region_bytes",
                format!("region_bytes must be 1 or 2: {region_bytes}"),
            ));
        }
        Ok(RegionJson {
            region_map,
            region_bytes: region_bytes as usize,
        })
    }

    /// The destination of an (id, country) row.
    pub fn map_row(&self, row: &[Value]) -> Destination {
        let [id, country] = row else {
            return Destination::None;
        };
        let Ok(n) = id.to_cast_uint64() else {
            return Destination::None;
        };
        let Some(region) = self.region_map.get(&country.to_text()) else {
            return Destination::None;
        };
        let mut ksid = region_prefix(*region, self.region_bytes);
        ksid.extend_from_slice(&vhash(n));
        Destination::KeyspaceId(KeyspaceId::new(ksid))
    }
}
