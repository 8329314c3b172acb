//! Prices: Spot from `DescribeSpotPriceHistory` (refreshed every `spotPriceRefresh`),
//! on-demand from the bundled catalog (the Pricing API needs another endpoint and
//! changes rarely).
//!
//! A reported Spot price below [`MIN_SPOT_FRACTION`] of the on-demand price is treated
//! as bogus and the bundled estimate kept: real Spot discounts stop around 90%, and an
//! emulator (moto reports 0.00001 for everything) or a glitch must not make one type
//! look free and attract every launch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::primitives::DateTime;

use super::errors;
use super::ops;
use crate::cloud::{CloudError, Offering};
use crate::core::instance::{CapacityType, Catalog};

/// Spot prices under 1% of on-demand are ignored.
pub const MIN_SPOT_FRACTION: f64 = 0.01;

/// The latest Spot price per (instance type, zone), as reported.
pub type SpotHistory = HashMap<(String, String), f64>;

/// The latest Linux Spot price of every type in every zone: with `StartTime` = now the
/// API returns only the current price of each (type, zone).
pub async fn spot_history(ec2: &aws_sdk_ec2::Client) -> Result<SpotHistory, CloudError> {
    let mut pages = ec2
        .describe_spot_price_history()
        .product_descriptions("Linux/UNIX")
        .start_time(DateTime::from(std::time::SystemTime::now()))
        .max_results(1000)
        .into_paginator()
        .send();
    let mut out = SpotHistory::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| errors::map(ops::DESCRIBE_SPOT_PRICE_HISTORY, e))?;
        for p in page.spot_price_history() {
            let (Some(t), Some(z), Some(price)) =
                (p.instance_type(), p.availability_zone(), p.spot_price())
            else {
                continue;
            };
            if let Ok(v) = price.parse::<f64>() {
                out.insert((t.as_str().to_string(), z.to_string()), v);
            }
        }
    }
    Ok(out)
}

/// Every catalog offering with its current price: Spot from `history` when plausible,
/// else the catalog's estimate; on-demand from the catalog.
pub fn offering_prices(catalog: &Catalog, history: &SpotHistory) -> Vec<Offering> {
    let mut out = Vec::new();
    for t in &catalog.types {
        let on_demand = t
            .offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::OnDemand)
            .map(|o| o.price_per_hour)
            .fold(f64::NAN, f64::max);
        for o in &t.offerings {
            let zone = catalog.zones[o.zone].clone();
            let mut price = o.price_per_hour;
            if o.capacity_type == CapacityType::Spot {
                if let Some(&reported) = history.get(&(t.name.clone(), zone.clone())) {
                    if plausible(reported, on_demand) {
                        price = reported;
                    }
                }
            }
            out.push(Offering {
                instance_type: t.name.clone(),
                zone,
                capacity_type: o.capacity_type,
                price_per_hour: price,
            });
        }
    }
    out
}

/// A Spot price is used when positive and not absurdly below on-demand (without an
/// on-demand price to compare, any positive price is accepted).
pub fn plausible(spot: f64, on_demand: f64) -> bool {
    if !(spot.is_finite() && spot > 0.0) {
        return false;
    }
    on_demand.is_nan() || spot >= on_demand * MIN_SPOT_FRACTION
}

/// When the Spot prices were last fetched, and what they were.
#[derive(Debug, Default)]
pub struct SpotCache {
    fetched: Option<Instant>,
    history: SpotHistory,
}

impl SpotCache {
    /// Due when never fetched or fetched `interval` ago.
    pub fn due(&self, now: Instant, interval: Duration) -> bool {
        self.fetched
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
    }

    pub fn store(&mut self, now: Instant, history: SpotHistory) {
        self.fetched = Some(now);
        self.history = history;
    }

    pub fn history(&self) -> &SpotHistory {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{load_embedded, CatalogOptions};

    #[test]
    fn bogus_spot_prices_keep_the_catalog_estimate() {
        let catalog = load_embedded(&CatalogOptions::default()).unwrap();
        let t = &catalog.types[catalog.find("m5.large").unwrap()];
        let estimate = t
            .offerings
            .iter()
            .find(|o| o.capacity_type == CapacityType::Spot && o.zone == 0)
            .unwrap()
            .price_per_hour;
        let mut history = SpotHistory::new();
        history.insert(("m5.large".into(), "us-east-1a".into()), 0.00001);
        history.insert(("m5.large".into(), "us-east-1b".into()), 0.0421);
        let prices = offering_prices(&catalog, &history);
        let price = |zone: &str, ct| {
            prices
                .iter()
                .find(|o| o.instance_type == "m5.large" && o.zone == zone && o.capacity_type == ct)
                .unwrap()
                .price_per_hour
        };
        assert_eq!(price("us-east-1a", CapacityType::Spot), estimate);
        assert_eq!(price("us-east-1b", CapacityType::Spot), 0.0421);
        assert_eq!(price("us-east-1b", CapacityType::OnDemand), 0.096);
    }

    #[test]
    fn plausibility_bounds() {
        assert!(!plausible(0.00001, 0.096));
        assert!(plausible(0.001, 0.096));
        assert!(!plausible(0.0, f64::NAN));
        assert!(!plausible(f64::NAN, 0.1));
        assert!(plausible(0.5, f64::NAN));
    }

    #[test]
    fn refresh_is_due_after_the_interval() {
        let mut c = SpotCache::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(600);
        assert!(c.due(t0, every));
        c.store(t0, SpotHistory::new());
        assert!(!c.due(t0 + Duration::from_secs(599), every));
        assert!(c.due(t0 + every, every));
    }
}
