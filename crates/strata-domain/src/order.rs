//! BTC buy orders: currencies, amounts, exchange rates and the exact BTC amount.
//!
//! Money never touches floating point. A fiat amount is an integer number of minor units
//! (cents, pence); an exchange rate is a decimal string from the provider (price of 1 BTC in the
//! fiat); the BTC amount is an integer number of satoshis, computed as
//! `ceil(minor * 10^(scale + 6) / rate_units)`, that is `amount / rate` rounded **up** to 8
//! decimals, with integer arithmetic throughout (i128 has room for every allowed input).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;

pub const SATS_PER_BTC: i64 = 100_000_000;
/// The default cap on a tenant's book: 100 BTC.
pub const DEFAULT_CAP_SATS: i64 = 100 * SATS_PER_BTC;
/// Amounts must be below one billion units of the currency.
const MAX_AMOUNT_UNITS: i64 = 1_000_000_000;
/// Rates carry at most this many decimals (providers send 2 to 8).
const MAX_RATE_SCALE: u32 = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Currency {
    EUR,
    GBP,
    USD,
}

impl Currency {
    pub const ALL: [Currency; 3] = [Currency::EUR, Currency::GBP, Currency::USD];

    pub fn code(self) -> &'static str {
        match self {
            Currency::EUR => "EUR",
            Currency::GBP => "GBP",
            Currency::USD => "USD",
        }
    }

    /// Decimal places of the minor unit (ISO 4217): 2 for all three.
    pub fn decimals(self) -> u32 {
        2
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "EUR" => Ok(Currency::EUR),
            "GBP" => Ok(Currency::GBP),
            "USD" => Ok(Currency::USD),
            _ => Err(format!("currency must be EUR, GBP or USD (got {:?})", s.chars().take(12).collect::<String>())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A fiat amount in minor units, `0 < amount < 1,000,000,000` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiatAmount {
    pub currency: Currency,
    pub minor: i64,
}

impl FiatAmount {
    /// Parses an amount as Python's `Decimal` reads it (what the py-dist-arch seed's clients
    /// send): surrounding whitespace, a sign, `_` between digits and an exponent are allowed
    /// (`"1e3"`, `" 5 "`, `"1_000"`), strictly between 0 and 1,000,000,000. One deliberate
    /// difference from the seed: more decimals than the currency has are refused (the seed's
    /// database rounded them silently), unless the extra digits are zeros.
    pub fn parse_python_decimal(currency: Currency, text: &str) -> Result<Self, String> {
        let t = text.trim();
        let digits_ok = |part: &str| {
            !part.is_empty()
                && !part.starts_with('_')
                && !part.ends_with('_')
                && !part.contains("__")
                && part.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], Some(&t[i + 1..])),
            None => (t, None),
        };
        let unsigned = mantissa.strip_prefix(['+', '-']).unwrap_or(mantissa);
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let well_formed = t.len() <= 64
            && (int.is_empty() || digits_ok(int))
            && (frac.is_empty() || digits_ok(frac))
            && !(int.is_empty() && frac.is_empty())
            && exponent.is_none_or(|e| digits_ok(e.strip_prefix(['+', '-']).unwrap_or(e)));
        if !well_formed {
            return Err(format!(
                "amount must be a decimal number (got {:?})",
                text.chars().take(32).collect::<String>()
            ));
        }
        let clean = t.replace('_', "");
        let value = match exponent {
            Some(_) => rust_decimal::Decimal::from_scientific(&clean).ok(),
            None => rust_decimal::Decimal::from_str_exact(&clean).ok(),
        };
        let too_big = || "amount must be less than 1000000000".to_string();
        let Some(value) = value else {
            // Exponents or digits beyond what 96 bits hold are far outside the bounds.
            return Err(if clean.starts_with('-') { "amount must be positive".into() } else { too_big() });
        };
        if value <= rust_decimal::Decimal::ZERO {
            return Err("amount must be positive".into());
        }
        if value >= rust_decimal::Decimal::from(1_000_000_000) {
            return Err(too_big());
        }
        let value = value.normalize();
        if value.scale() > currency.decimals() {
            return Err(format!(
                "{currency} amounts have at most {} decimals; {text:?} would have to be rounded",
                currency.decimals()
            ));
        }
        Self::parse(currency, &value.to_string())
    }

    /// Parses a decimal string: digits, an optional point and at most the currency's decimals.
    /// Nothing is rounded: more decimals than the currency has is an error.
    pub fn parse(currency: Currency, s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "amount must be a decimal string like \"100.50\" (got {:?})",
                s.chars().take(32).collect::<String>()
            )
        };
        let d = currency.decimals();
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if s.starts_with('-') {
            return Err("amount must be greater than 0".into());
        }
        if int.is_empty()
            || int.len() > 12
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || s.ends_with('.')
        {
            return Err(bad());
        }
        if frac.len() as u32 > d {
            return Err(format!("{currency} amounts have at most {d} decimals (got {})", frac.len()));
        }
        let units: i64 = int.parse().map_err(|_| bad())?;
        let mut frac_minor: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| bad())? };
        for _ in frac.len() as u32..d {
            frac_minor *= 10;
        }
        let minor = units * 10i64.pow(d) + frac_minor;
        if minor <= 0 {
            return Err("amount must be greater than 0".into());
        }
        if units >= MAX_AMOUNT_UNITS {
            return Err("amount must be less than 1,000,000,000".into());
        }
        Ok(Self { currency, minor })
    }

    pub fn to_decimal_string(self) -> String {
        let d = self.currency.decimals();
        let p = 10i64.pow(d);
        format!("{}.{:0width$}", self.minor / p, self.minor % p, width = d as usize)
    }
}

/// An exchange rate: the price of 1 BTC in a fiat currency, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(Decimal);

impl Rate {
    /// From the provider's decimal string. Refuses zero, negatives, exponents and junk.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let ok_shape = !t.is_empty()
            && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && t.bytes().filter(|b| *b == b'.').count() <= 1
            && !t.starts_with('.')
            && !t.ends_with('.');
        if !ok_shape {
            return Err(format!("not a decimal rate: {:?}", t.chars().take(32).collect::<String>()));
        }
        let d = Decimal::from_str(t).map_err(|e| format!("not a decimal rate: {e}"))?;
        if d.scale() > MAX_RATE_SCALE || d <= Decimal::ZERO {
            return Err(format!("rate out of range: {t}"));
        }
        if d > Decimal::from(1_000_000_000_000i64) {
            return Err(format!("rate out of range: {t}"));
        }
        Ok(Rate(d.normalize()))
    }

    pub fn decimal(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `amount / rate` in satoshis, rounded up, exactly: the largest amount at the smallest rate
/// is far beyond what an `i64` of satoshis holds (and beyond any cap), and the refusal must
/// still say the true figure.
pub fn btc_sats(amount: FiatAmount, rate: Rate) -> i128 {
    let d = amount.currency.decimals();
    let r = rate.0;
    let scale = r.scale();
    let units: i128 = r.mantissa();
    // amount/10^d BTC-fiat / (units/10^scale) * 10^8 sats = minor * 10^(scale + 8 - d) / units
    let exp = scale + 8 - d;
    let num: i128 = amount.minor as i128 * 10i128.pow(exp);
    let q = num / units;
    if num % units == 0 {
        q
    } else {
        q + 1
    }
}

/// Satoshis as a BTC decimal string with exactly 8 decimals.
pub fn format_btc(sats: impl Into<i128>) -> String {
    let sats: i128 = sats.into();
    let per = SATS_PER_BTC as i128;
    let sign = if sats < 0 { "-" } else { "" };
    format!("{sign}{}.{:08}", (sats / per).abs(), (sats % per).abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn usd(s: &str) -> FiatAmount {
        FiatAmount::parse(Currency::USD, s).unwrap()
    }

    #[test]
    fn the_seeds_rounding_bug_is_not_repeated() {
        // 100 USD at 48478.88: the seed stored 0.00206275; rounded up it is 0.00206276.
        let sats = btc_sats(usd("100"), Rate::parse("48478.88").unwrap());
        assert_eq!(format_btc(sats), "0.00206276");
    }

    #[test]
    fn exact_quotients_are_not_rounded_up() {
        assert_eq!(btc_sats(usd("50000"), Rate::parse("50000").unwrap()), SATS_PER_BTC as i128);
        assert_eq!(btc_sats(usd("0.01"), Rate::parse("0.01").unwrap()), SATS_PER_BTC as i128);
    }

    #[test]
    fn the_largest_order_at_the_smallest_rate_is_exact() {
        let sats = btc_sats(usd("999999999.99"), Rate::parse("0.01").unwrap());
        assert_eq!(format_btc(sats), "99999999999.00000000");
        assert!(sats > i64::MAX as i128);
    }

    #[test]
    fn rounding_never_goes_down_and_never_more_than_one_satoshi_up() {
        // A property test over random exact inputs, checked with independent integer maths.
        let mut rng = rand::rng();
        for _ in 0..200_000 {
            let minor: i64 = rng.random_range(1..100_000_000_000);
            let scale: u32 = rng.random_range(0..=8);
            let units: i64 = rng.random_range(1..1_000_000_000_000);
            let rate = Rate::parse(&Decimal::from_i128_with_scale(units as i128, scale).to_string()).unwrap();
            let amount = FiatAmount { currency: Currency::EUR, minor };
            let sats = btc_sats(amount, rate);
            // exact quotient q = minor * 10^(s+6) / units' (with the rate normalised)
            let (u, s) = (rate.decimal().mantissa(), rate.decimal().scale());
            let num = minor as i128 * 10i128.pow(s + 6);
            assert!(sats * u >= num, "rounded down: {minor} / {rate}");
            assert!((sats - 1) * u < num, "more than one satoshi up: {minor} / {rate}");
        }
    }

    #[test]
    fn amounts_are_validated_without_rounding() {
        assert_eq!(usd("100.5").minor, 10050);
        assert_eq!(usd("999999999.99").minor, 99_999_999_999);
        for bad in ["0", "0.00", "-1", "1e3", "1.234", "abc", "", ".5", "5.", "1000000000", " 1", "1,5", "NaN"] {
            assert!(FiatAmount::parse(Currency::USD, bad).is_err(), "{bad}");
        }
        assert_eq!(usd("7").to_decimal_string(), "7.00");
    }

    #[test]
    fn rates_must_be_positive_decimal_strings() {
        assert!(Rate::parse("64000.12").is_ok());
        for bad in ["0", "0.0", "-5", "1e5", "abc", "", "NaN", "Infinity", "1.2.3"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert!(Currency::parse("usd").is_err());
        assert_eq!(format_btc(1), "0.00000001");
    }
}

/// A stored order, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    /// Microseconds since the epoch, UTC.
    pub created_at: i64,
    pub amount: FiatAmount,
    pub rate: Rate,
    pub sats: i64,
}

impl Order {
    /// The API representation: decimals as strings, `btc_amount` with exactly 8 decimals.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "created_at": crate::value::format_datetime(self.created_at),
            "currency": self.amount.currency.code(),
            "amount": self.amount.to_decimal_string(),
            "exchange_rate": self.rate.to_string(),
            "btc_amount": format_btc(self.sats),
        })
    }
}

/// The body of a refusal because the book would exceed its cap (stored for replays).
pub fn cap_exceeded_json(room_sats: i64, cap_sats: i64, wanted_sats: i128) -> serde_json::Value {
    serde_json::json!({"error": {
        "code": "btc_cap_exceeded",
        "message": format!(
            "this order needs {} BTC but the book has only {} BTC left under its cap of {} BTC",
            format_btc(wanted_sats), format_btc(room_sats.max(0)), format_btc(cap_sats)
        ),
        "details": {"room_btc": format_btc(room_sats.max(0)), "cap_btc": format_btc(cap_sats), "requested_btc": format_btc(wanted_sats)}
    }})
}
