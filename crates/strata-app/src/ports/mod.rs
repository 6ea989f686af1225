//! What the application talks to outside Strata: the exchange-rate source ([`rates`]) and the
//! event bus ([`events`]: embedded, or NATS JetStream).

pub mod events;
pub mod rates;
