//! Exchange rates: the price of 1 BTC in a fiat currency.
//!
//! The default provider speaks Coinbase's public price API (`GET {base}/v2/prices/BTC-USD/spot`
//! answering `{"data": {"amount": "64000.12", "base": "BTC", "currency": "USD"}}`), with a
//! timeout, bounded retries on transient failures, and a short cache so a burst of orders costs
//! one call. Rates are parsed from their decimal strings, never through a float. The `fixed`
//! provider serves demos and offline use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_domain::order::{Currency, Rate};

#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error("the exchange-rate provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the exchange-rate provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the exchange-rate provider sent an unusable answer: {0}")]
    Garbage(String),
    #[error("no fixed rate is configured for {0}")]
    NoFixedRate(Currency),
}

impl strata_domain::error::Coded for RateError {
    fn code(&self) -> strata_domain::ErrorCode {
        strata_domain::ErrorCode::RateUnavailable
    }
}

pub enum RateProvider {
    Fixed(HashMap<Currency, Rate>),
    Coinbase(Coinbase),
}

pub struct Coinbase {
    base: String,
    client: reqwest::Client,
    timeout: Duration,
    retries: u32,
    ttl: Duration,
    cache: Mutex<HashMap<Currency, (Instant, Rate)>>,
}

impl RateProvider {
    /// `USD=64000.12,EUR=59000,GBP=51000.5`
    pub fn fixed_from_spec(spec: &str) -> Result<Self, String> {
        let mut rates = HashMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (c, r) = part.split_once('=').ok_or_else(|| format!("expected CUR=RATE, got {part:?}"))?;
            rates.insert(Currency::parse(c.trim())?, Rate::parse(r.trim())?);
        }
        if rates.is_empty() {
            return Err("no rates given".into());
        }
        Ok(RateProvider::Fixed(rates))
    }

    pub fn coinbase(base: &str, timeout: Duration, retries: u32, ttl: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client");
        RateProvider::Coinbase(Coinbase {
            base: base.trim_end_matches('/').to_string(),
            client,
            timeout,
            retries,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            RateProvider::Fixed(m) => format!("fixed ({} currencies)", m.len()),
            RateProvider::Coinbase(c) => format!("coinbase-compatible at {}", c.base),
        }
    }

    pub async fn spot(&self, currency: Currency) -> Result<Rate, RateError> {
        let result = match self {
            RateProvider::Fixed(m) => m.get(&currency).copied().ok_or(RateError::NoFixedRate(currency)),
            RateProvider::Coinbase(c) => c.spot(currency).await,
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RateError::Timeout(_)) => "timeout",
            Err(RateError::Garbage(_)) => "garbage",
            Err(_) => "error",
        };
        metrics::counter!("strata_rate_lookups_total", "currency" => currency.code(), "outcome" => outcome)
            .increment(1);
        result
    }
}

impl Coinbase {
    async fn spot(&self, currency: Currency) -> Result<Rate, RateError> {
        if let Some((at, rate)) = self.cache.lock().unwrap().get(&currency) {
            if at.elapsed() < self.ttl {
                return Ok(*rate);
            }
        }
        let url = format!("{}/v2/prices/BTC-{}/spot", self.base, currency.code());
        let mut last = RateError::Unavailable("no attempt made".into());
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(4))).await;
            }
            match self.client.get(&url).send().await {
                Err(e) if e.is_timeout() => last = RateError::Timeout(self.timeout),
                Err(e) => last = RateError::Unavailable(e.without_url().to_string()),
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_server_error() || status.as_u16() == 429 {
                        last = RateError::Unavailable(format!("HTTP {status}"));
                        continue;
                    }
                    if !status.is_success() {
                        return Err(RateError::Unavailable(format!("HTTP {status}")));
                    }
                    let body = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) if e.is_timeout() => {
                            last = RateError::Timeout(self.timeout);
                            continue;
                        }
                        Err(e) => {
                            last = RateError::Unavailable(e.without_url().to_string());
                            continue;
                        }
                    };
                    let rate = parse_spot(&body, currency)?;
                    self.cache.lock().unwrap().insert(currency, (Instant::now(), rate));
                    return Ok(rate);
                }
            }
        }
        Err(last)
    }
}

/// Checks the answer is the spot price of BTC in the asked currency, as a decimal string.
pub fn parse_spot(body: &[u8], currency: Currency) -> Result<Rate, RateError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| RateError::Garbage("not JSON".into()))?;
    let data = v.get("data").ok_or_else(|| RateError::Garbage("no \"data\" object".into()))?;
    if data.get("base").and_then(|b| b.as_str()) != Some("BTC") {
        return Err(RateError::Garbage("base is not BTC".into()));
    }
    if data.get("currency").and_then(|c| c.as_str()) != Some(currency.code()) {
        return Err(RateError::Garbage(format!("not a {currency} price")));
    }
    let amount = data
        .get("amount")
        .and_then(|a| a.as_str())
        .ok_or_else(|| RateError::Garbage("amount is not a decimal string".into()))?;
    Rate::parse(amount).map_err(RateError::Garbage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_answers_are_checked_before_use() {
        let ok = br#"{"data": {"amount": "64000.12", "base": "BTC", "currency": "USD"}}"#;
        assert_eq!(parse_spot(ok, Currency::USD).unwrap().to_string(), "64000.12");
        for bad in [
            &br#"{"data": {"amount": 64000.12, "base": "BTC", "currency": "USD"}}"#[..],
            br#"{"data": {"amount": "64000.12", "base": "ETH", "currency": "USD"}}"#,
            br#"{"data": {"amount": "64000.12", "base": "BTC", "currency": "EUR"}}"#,
            br#"{"data": {"amount": "-1", "base": "BTC", "currency": "USD"}}"#,
            br#"<html>"#,
            br#"{}"#,
        ] {
            assert!(parse_spot(bad, Currency::USD).is_err());
        }
        assert!(RateProvider::fixed_from_spec("USD=64000.12,EUR=59000,GBP=51000.5").is_ok());
        assert!(RateProvider::fixed_from_spec("USD=abc").is_err());
        assert!(RateProvider::fixed_from_spec("XYZ=1").is_err());
    }
}
