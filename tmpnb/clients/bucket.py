"""A token bucket: `burst` spawns at once, then `rate` a second."""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._rate = rate  # tokens a second
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def level(self, now: float) -> float:
        """Tokens in the bucket at `now` (time never runs backwards here)."""
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
        return self._tokens

    def take(self, now: float) -> bool:
        """Take one token if there is one; whether there was."""
        if self.level(now) < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0 if one is)."""
        missing = 1.0 - self.level(now)
        if missing <= 0:
            return 0.0
        return float("inf") if self._rate <= 0 else missing / self._rate

    def full(self, now: float) -> bool:
        return self.level(now) >= self._burst
