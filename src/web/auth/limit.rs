//! Two memories of the auth layer, both bounded: failed logins per client address (an
//! IPv6 client's by its /64 prefix; a `governor` GCRA limiter; past its burst the address
//! is refused with 429 until the quota refills, whatever the credentials), and basic-auth
//! credentials verified recently, so a client sending basic auth on every request costs one
//! argon2 check a minute instead of one per request. The cache is keyed by an HMAC of the credentials under a key that
//! lives only in this process, so it holds no password and no usable hash of one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Failed logins an address may make in a burst before it must wait.
pub const FAILED_LOGIN_BURST: u32 = 5;

/// After the burst, one more failed login is allowed per this period.
pub const FAILED_LOGIN_PERIOD: Duration = Duration::from_secs(12);

/// How long a verified basic-auth credential is trusted without a new argon2 check.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);

/// Most addresses and credentials remembered before old entries are dropped.
const MAX_ENTRIES: usize = 10_000;

/// Failed logins per client address.
pub struct FailedLogins {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailedLogins {
    /// A limiter allowing [`FAILED_LOGIN_BURST`] failures, then one per
    /// [`FAILED_LOGIN_PERIOD`].
    pub fn new() -> Self {
        const BURST: NonZeroU32 = match NonZeroU32::new(FAILED_LOGIN_BURST) {
            Some(n) => n,
            None => panic!("the burst must not be zero"),
        };
        let quota = Quota::with_period(FAILED_LOGIN_PERIOD)
            .unwrap_or_else(|| Quota::per_minute(BURST))
            .allow_burst(BURST);
        Self {
            limiter: RateLimiter::keyed(quota),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must still wait before it may try to log in, if it must.
    pub fn wait(&self, ip: IpAddr) -> Option<Duration> {
        let ip = client_key(ip);
        let blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(&ip)?;
        until.checked_duration_since(Instant::now())
    }

    /// Records a failed login from `ip`; returns how long it must now wait when this one
    /// went past the quota.
    pub fn fail(&self, ip: IpAddr) -> Option<Duration> {
        let ip = client_key(ip);
        if self.limiter.len() > MAX_ENTRIES {
            self.limiter.retain_recent();
        }
        let not_until = self.limiter.check_key(&ip).err()?;
        let wait = not_until
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_secs(1));
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            if blocked.len() >= MAX_ENTRIES {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, now + wait);
        }
        Some(wait)
    }
}

/// The key failed logins count under: an IPv4 address (also when it reaches a dual-stack
/// listener as `::ffff:a.b.c.d`), or an IPv6 client's /64 prefix — one host usually holds
/// a whole /64, so keying by the full address would give it 2^64 fresh quotas.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Basic-auth credentials verified recently: who they belong to and when.
pub struct BasicCache {
    key: Option<[u8; 32]>,
    entries: Mutex<HashMap<[u8; 32], (String, i64, Instant)>>,
}

impl BasicCache {
    /// An empty cache under a fresh random key (no cache if the OS has no randomness).
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        let key = getrandom::fill(&mut key).ok().map(|()| key);
        Self {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, name: &str, password: &str) -> Option<[u8; 32]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key?).ok()?;
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(password.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// The user these credentials were verified for, and when (unix seconds), if that was
    /// less than a minute ago.
    pub fn get(&self, name: &str, password: &str) -> Option<(String, i64)> {
        let slot = self.slot(name, password)?;
        let entries = self.entries.lock().ok()?;
        let (user, verified_at, until) = entries.get(&slot)?;
        (*until > Instant::now()).then(|| (user.clone(), *verified_at))
    }

    /// Remembers credentials just verified for `user`.
    pub fn put(&self, name: &str, password: &str, verified_at: i64) {
        let Some(slot) = self.slot(name, password) else {
            return;
        };
        if let Ok(mut entries) = self.entries.lock() {
            let now = Instant::now();
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (_, _, until)| *until > now);
            }
            if entries.len() < MAX_ENTRIES {
                entries.insert(slot, (name.to_string(), verified_at, now + BASIC_CACHE_TTL));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_back_after_its_burst_of_failures_and_others_are_not() {
        let limits = FailedLogins::new();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..FAILED_LOGIN_BURST {
            assert_eq!(limits.fail(ip), None);
            assert_eq!(limits.wait(ip), None);
        }
        let wait = limits.fail(ip).unwrap();
        assert!(
            wait >= Duration::from_secs(1) && wait <= FAILED_LOGIN_PERIOD,
            "{wait:?}"
        );
        assert!(limits.wait(ip).is_some());
        assert_eq!(limits.wait("192.0.2.2".parse().unwrap()), None);
    }

    #[test]
    fn ipv6_clients_share_the_limit_of_their_64_prefix() {
        let limits = FailedLogins::new();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A burst of failures, each from a new address of the same /64.
        for n in 1..=FAILED_LOGIN_BURST {
            assert_eq!(limits.fail(ip(&format!("2001:db8:1:2::{n:x}"))), None);
        }
        assert!(
            limits
                .fail(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
                .is_some()
        );
        assert!(limits.wait(ip("2001:db8:1:2:abcd::1")).is_some());
        assert_eq!(limits.wait(ip("2001:db8:1:3::1")), None);
        assert_eq!(client_key(ip("2001:db8:1:2:abcd::1")), ip("2001:db8:1:2::"));
        // IPv4 clients of a dual-stack listener keep their own address.
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn cached_credentials_match_only_the_same_name_and_password() {
        let cache = BasicCache::new();
        cache.put("ann", "pw", 7);
        assert_eq!(cache.get("ann", "pw"), Some(("ann".into(), 7)));
        assert_eq!(cache.get("ann", "pw2"), None);
        assert_eq!(cache.get("an", "npw"), None);
    }
}
