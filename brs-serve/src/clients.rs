//! Telling clients apart and keeping each to its share: an identity per client (its API key when
//! `[auth]` is on, else its address as the load balancer saw it), token buckets (governor) for the
//! images and the other calls it may make per second, and caps on what it may have in flight.
//! One client flooding the server gets 429 with a Retry-After; the others do not notice. One
//! that keeps breaking its limits is turned away for a while (`bans`).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::bans::{BanPolicy, Bans};
use crate::config::{AuthConfig, ClientLimits};

/// Who is asking: `key:<8 hex of the key's hash>` or `ip:<address>` (IPv6 by /64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientId(String);

impl ClientId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a client is turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("an API key is required (Authorization: Bearer KEY or x-api-key: KEY)")]
    MissingKey,
    #[error("the API key is not valid")]
    BadKey,
    #[error("too many requests from this client; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("this client already has {limit} requests in flight")]
    TooManyInFlight { limit: usize },
    #[error(
        "this client kept breaking its limits and is turned away; retry after {retry_after:?} \
         (coming back earlier starts that wait again)"
    )]
    Banned { retry_after: Duration },
}

type Bucket = RateLimiter<ClientId, DefaultKeyedStateStore<ClientId>, DefaultClock>;

fn bucket(per_sec: f64, burst: u32) -> Bucket {
    let period = Duration::from_secs_f64(1.0 / per_sec.max(1e-6));
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::keyed(quota)
}

/// Per-client counts of things in flight.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<ClientId, usize>>);

/// One thing in flight for a client, released when dropped.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    counts: Arc<InFlight>,
    id: ClientId,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.id);
            }
        }
    }
}

fn begin(counts: &Arc<InFlight>, id: &ClientId, limit: usize) -> Result<InFlightGuard, Refusal> {
    let mut m = counts.0.lock().unwrap_or_else(|e| e.into_inner());
    let n = m.entry(id.clone()).or_default();
    if *n >= limit {
        return Err(Refusal::TooManyInFlight { limit });
    }
    *n += 1;
    Ok(InFlightGuard {
        counts: counts.clone(),
        id: id.clone(),
    })
}

pub(crate) struct Clients {
    limits: ClientLimits,
    trusted: Vec<IpNet>,
    /// SHA-256 hex digests of the accepted keys; `None`: no keys needed.
    keys: Option<HashSet<String>>,
    images: Bucket,
    reads: Bucket,
    work: Arc<InFlight>,
    streams: Arc<InFlight>,
    bans: Bans,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("limits", &self.limits)
            .finish()
    }
}

/// `sha256:<hex>` of an API key, as `[auth] keys` stores it.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

impl Clients {
    pub(crate) fn new(
        limits: &ClientLimits,
        trusted: &[IpNet],
        auth: Option<&AuthConfig>,
    ) -> Clients {
        Clients {
            limits: limits.clone(),
            trusted: trusted.to_vec(),
            keys: auth.map(|a| a.keys.iter().map(|k| k.to_ascii_lowercase()).collect()),
            images: bucket(limits.images_per_sec, limits.image_burst),
            reads: bucket(limits.reads_per_sec, limits.read_burst),
            work: Arc::default(),
            streams: Arc::default(),
            bans: Bans::new(BanPolicy {
                after: limits.ban_after,
                window: limits.ban_window,
                ban_for: limits.ban_for,
            }),
        }
    }

    /// The address the request came from: the peer, or, when the peer is a trusted proxy, the
    /// rightmost `X-Forwarded-For` entry that is not (a client can prepend anything to that
    /// header, but not what our own proxies append).
    pub(crate) fn address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else {
            return peer;
        };
        let hops: Vec<IpAddr> = chain
            .split(',')
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !trusted(ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    /// The identity of an anonymous client at `ip`.
    pub(crate) fn by_address(ip: IpAddr) -> ClientId {
        match ip {
            IpAddr::V4(v4) => ClientId(format!("ip:{v4}")),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientId(format!("ip:{v4}")),
                // One subscriber gets a whole /64: count it as one client.
                None => {
                    let s = v6.segments();
                    ClientId(format!(
                        "ip:{:x}:{:x}:{:x}:{:x}::/64",
                        s[0], s[1], s[2], s[3]
                    ))
                }
            },
        }
    }

    /// The identity of a work request: its key when keys are configured (required then),
    /// else its address.
    pub(crate) fn for_work(&self, ip: IpAddr, key: Option<&str>) -> Result<ClientId, Refusal> {
        match &self.keys {
            None => Ok(Clients::by_address(ip)),
            Some(keys) => {
                let key = key.filter(|k| !k.is_empty()).ok_or(Refusal::MissingKey)?;
                let hashed = hash_key(key);
                if !keys.contains(&hashed) {
                    return Err(Refusal::BadKey);
                }
                Ok(ClientId(format!("key:{}", &hashed[7..15])))
            }
        }
    }

    /// Who a request is from for bans: its work identity, or its address when that cannot be
    /// formed (no key, a wrong key).
    pub(crate) fn identify(&self, ip: IpAddr, key: Option<&str>) -> ClientId {
        self.for_work(ip, key)
            .unwrap_or_else(|_| Clients::by_address(ip))
    }

    /// Refuses a banned client (see `bans`).
    pub(crate) fn check_ban(&self, id: &ClientId) -> Result<(), Refusal> {
        self.bans
            .check(id, Instant::now())
            .map_err(|retry_after| Refusal::Banned { retry_after })
    }

    /// Counts a refusal for the client's limits; true when it bans the client.
    pub(crate) fn strike(&self, id: &ClientId) -> bool {
        self.bans.strike(id, Instant::now())
    }

    fn charge(bucket: &Bucket, per_sec: f64, id: &ClientId, n: u32) -> Result<(), Refusal> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match bucket.check_key_n(id, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::RateLimited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }),
            // More than the whole burst at once: it can never pass; wait for a full bucket.
            Err(_) => Err(Refusal::RateLimited {
                retry_after: Duration::from_secs_f64(f64::from(n.get()) / per_sec.max(1e-6)),
            }),
        }
    }

    /// Takes `n` images from the client's image bucket.
    pub(crate) fn charge_images(&self, id: &ClientId, n: u32) -> Result<(), Refusal> {
        Clients::charge(&self.images, self.limits.images_per_sec, id, n)
    }

    /// Takes one call from the client's bucket of other calls.
    pub(crate) fn charge_read(&self, id: &ClientId) -> Result<(), Refusal> {
        Clients::charge(&self.reads, self.limits.reads_per_sec, id, 1)
    }

    /// Counts one work request in flight.
    pub(crate) fn begin_work(&self, id: &ClientId) -> Result<InFlightGuard, Refusal> {
        begin(&self.work, id, self.limits.max_concurrent)
    }

    /// Counts one open event stream.
    pub(crate) fn begin_stream(&self, id: &ClientId) -> Result<InFlightGuard, Refusal> {
        begin(&self.streams, id, self.limits.max_streams)
    }

    /// Forgets clients whose buckets are full again, so memory follows active clients only.
    pub(crate) fn forget_idle(&self) {
        for b in [&self.images, &self.reads] {
            b.retain_recent();
            b.shrink_to_fit();
        }
        self.bans.forget_idle(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(limits: ClientLimits, auth: Option<AuthConfig>) -> Clients {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/16".parse().expect("cidr")];
        Clients::new(&limits, &trusted, auth.as_ref())
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let c = clients(ClientLimits::default(), None);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // From the internet directly: the header is the client's own invention.
        assert_eq!(
            c.address(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // Through the load balancer: the rightmost address it did not add.
        assert_eq!(
            c.address(ip("10.0.1.5"), Some("6.6.6.6, 198.51.100.7, 10.0.2.2")),
            ip("198.51.100.7")
        );
        assert_eq!(c.address(ip("10.0.1.5"), None), ip("10.0.1.5"));
        assert_eq!(c.address(ip("10.0.1.5"), Some("junk")), ip("10.0.1.5"));
        let a = Clients::by_address(ip("2001:db8:1:2:aaaa::1"));
        let b = Clients::by_address(ip("2001:db8:1:2:bbbb::9"));
        assert_eq!(a, b, "one /64 is one client");
    }

    #[test]
    fn keys_are_required_and_checked_when_configured() {
        let auth = AuthConfig {
            keys: vec![hash_key("s3cret-key")],
        };
        let c = clients(ClientLimits::default(), Some(auth));
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(c.for_work(ip, None), Err(Refusal::MissingKey));
        assert_eq!(c.for_work(ip, Some("guess")), Err(Refusal::BadKey));
        let id = c.for_work(ip, Some("s3cret-key")).expect("valid key");
        assert!(id.as_str().starts_with("key:") && !id.as_str().contains("s3cret"));
        let open = clients(ClientLimits::default(), None);
        assert_eq!(
            open.for_work(ip, None).expect("open").as_str(),
            "ip:198.51.100.7"
        );
    }

    #[test]
    fn buckets_and_in_flight_caps_are_per_client() {
        let limits = ClientLimits {
            images_per_sec: 1.0,
            image_burst: 3,
            max_concurrent: 2,
            ..ClientLimits::default()
        };
        let c = clients(limits, None);
        let (a, b) = (ClientId("ip:a".into()), ClientId("ip:b".into()));
        c.charge_images(&a, 2).expect("within burst");
        c.charge_images(&a, 1).expect("within burst");
        match c.charge_images(&a, 1) {
            Err(Refusal::RateLimited { retry_after }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        c.charge_images(&b, 3).expect("b has its own bucket");
        let g1 = c.begin_work(&a).expect("1");
        let _g2 = c.begin_work(&a).expect("2");
        assert_eq!(
            c.begin_work(&a).err(),
            Some(Refusal::TooManyInFlight { limit: 2 })
        );
        let _gb = c.begin_work(&b).expect("b is not limited by a");
        drop(g1);
        c.begin_work(&a).expect("a slot came back");
    }
}
