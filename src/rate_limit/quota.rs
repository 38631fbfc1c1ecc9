use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::ConfigError;

/// How many requests a key may make: a sustained rate plus a burst, enforced as GCRA (the
/// "generic cell rate algorithm" of `governor`: a token bucket without timers or refill tasks).
///
/// ```
/// use portcullis::rate_limit::Quota;
///
/// let quota = Quota::per_minute(600).burst(50); // 10 per second on average, 50 at once
/// assert_eq!(quota.burst_size(), 50);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Quota {
    rate: u32,
    period: Duration,
    burst: Option<u32>,
}

impl Quota {
    /// `rate` requests per second (and, unless [`burst`](Self::burst) says otherwise, all of
    /// them at once).
    pub const fn per_second(rate: u32) -> Self {
        Self::per(rate, Duration::from_secs(1))
    }

    /// `rate` requests per minute.
    pub const fn per_minute(rate: u32) -> Self {
        Self::per(rate, Duration::from_secs(60))
    }

    /// `rate` requests per hour.
    pub const fn per_hour(rate: u32) -> Self {
        Self::per(rate, Duration::from_secs(3600))
    }

    /// `rate` requests per `period`.
    pub const fn per(rate: u32, period: Duration) -> Self {
        Self {
            rate,
            period,
            burst: None,
        }
    }

    /// How many requests may arrive at once (default: the rate).
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The burst size.
    pub fn burst_size(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// Time for one unit of the quota to come back (the GCRA emission interval).
    pub fn emission_interval(&self) -> Duration {
        self.period / self.rate.max(1)
    }

    /// Seconds for an emptied bucket to fill up again: the window of the `RateLimit-Policy`.
    pub(crate) fn window_secs(&self) -> u64 {
        self.emission_interval()
            .checked_mul(self.burst_size())
            .map_or(u64::MAX, |window| window.as_secs_f64().ceil() as u64)
            .max(1)
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.rate == 0 || self.burst_size() == 0 || self.period.is_zero() {
            return Err(ConfigError::new(
                "a quota needs a non-zero rate, burst and period",
            ));
        }
        if self.emission_interval().is_zero() {
            return Err(ConfigError::new(
                "a quota's rate is too high for its period",
            ));
        }
        if self
            .emission_interval()
            .checked_mul(self.burst_size())
            .is_none()
        {
            return Err(ConfigError::new(
                "a quota's burst times its interval is too long",
            ));
        }
        Ok(())
    }

    pub(crate) fn to_governor(self) -> Result<governor::Quota, ConfigError> {
        self.check()?;
        let burst = NonZeroU32::new(self.burst_size())
            .ok_or_else(|| ConfigError::new("a quota needs a non-zero burst"))?;
        governor::Quota::with_period(self.emission_interval())
            .map(|quota| quota.allow_burst(burst))
            .ok_or_else(|| ConfigError::new("a quota's rate is too high for its period"))
    }
}
