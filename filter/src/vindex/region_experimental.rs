//! `region_experimental`: two columns, a region and an id. The keyspace id is the region's
//! last `region_bytes` bytes (1 or 2, big-endian; region 256 in one byte is `00`) followed
//! by `hash` of the id, so each region owns a key range. Given the region alone, it routes
//! to that region's range (Vitess `region_experimental.go`).

use super::hash::vhash;
use super::{Ctx, Destination, KeyRange, KeyspaceId, Params, Value, VindexError};

pub(crate) const PARAMS: &[&str] = &["region_bytes"];
const TYPE: &str = "region_experimental";

/// The `region_experimental` vindex.
#[derive(Debug, Clone)]
pub struct RegionExperimental {
    region_bytes: usize,
}

impl RegionExperimental {
    pub(crate) fn new(ctx: &Ctx<'_>, params: &Params) -> Result<Self, VindexError> {
        let region_bytes = match params.get("region_bytes").map(String::as_str) {
            None => {
                return Err(ctx.bad_param(
                    TYPE,
                    "region_bytes",
                    "region_experimental missing region_bytes param",
                ))
            }
            Some("1") => 1,
            Some("2") => 2,
            Some(other) => {
                return Err(ctx.bad_param(
                    TYPE,
                    "region_bytes",
                    format!("region_bits must be 1 or 2: {other}"),
                ))
            }
        };
        Ok(RegionExperimental { region_bytes })
    }

    /// 1 or 2.
    pub fn region_bytes(&self) -> usize {
        self.region_bytes
    }

    /// The destination of a (region, id) row, or of a region alone.
    pub fn map_row(&self, row: &[Value]) -> Destination {
        let (region, id) = match row {
            [region] => (region, None),
            [region, id] => (region, Some(id)),
            _ => return Destination::None,
        };
        let Ok(region) = region.to_cast_uint64() else {
            return Destination::None;
        };
        let mut ksid = region_prefix(region, self.region_bytes);
        match id {
            None => Destination::KeyRange(KeyRange::from_prefix(&ksid)),
            Some(id) => match id.to_cast_uint64() {
                Ok(n) => {
                    ksid.extend_from_slice(&vhash(n));
                    Destination::KeyspaceId(KeyspaceId::new(ksid))
                }
                Err(_) => Destination::None,
            },
        }
    }
}

/// The last `region_bytes` bytes of `BE16(uint16(region))`.
pub(crate) fn region_prefix(region: u64, region_bytes: usize) -> Vec<u8> {
    let be = (region as u16).to_be_bytes();
    be[2 - region_bytes..].to_vec()
}
