from __future__ import annotations

import math

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (rate: settings API_KEY_RATE, e.g. 12000/min), over a sliding window.

    DRF's SimpleRateThrottle keeps every request's timestamp in one cache entry and
    rewrites the whole list on each request: at 12,000/min that is a list of up to
    12,000 floats pickled twice per request, and two workers can overwrite each
    other's update. This keeps two counters per key instead (this fixed window and
    the one before) and counts the previous window's requests in proportion to how
    much of it still lies inside the sliding span: constant work per request, and
    an atomic increment (Redis INCR) between workers.
    """

    scope = "api_key"
    # Set by SimpleRateThrottle.__init__ from the rate (None without one); the DRF stubs omit them.
    num_requests: int | None
    duration: int | None

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return None

    def allow_request(self, request: Request, view: object) -> bool:
        limit, duration = self.num_requests, self.duration
        if limit is None or duration is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // duration)
        current, previous = f"{key}:{window}", f"{key}:{window - 1}"
        counts: dict[str, int] = self.cache.get_many([current, previous])
        into_window = (now % duration) / duration
        in_span = counts.get(previous, 0) * (1 - into_window) + counts.get(current, 0)
        if in_span >= limit:
            self._wait = self._time_to_room(
                counts.get(previous, 0), counts.get(current, 0), now, into_window, limit, duration
            )
            return False
        try:
            self.cache.incr(current)
        except ValueError:  # the window's first request (or a race to it: then add fails)
            if not self.cache.add(current, 1, timeout=2 * duration):
                self.cache.incr(current)
        return True

    @staticmethod
    def _time_to_room(
        previous: int, current: int, now: float, into_window: float, limit: int, duration: int
    ) -> float:
        """Seconds until the weighted count drops below the limit (the previous window's share
        shrinks as time passes; once it is gone only the current window counts)."""
        left_in_window = duration - (now % duration)
        if current >= limit or previous == 0:
            return left_in_window
        needed = (previous + current - limit + 1) / previous  # share of the window
        return max(0.0, min(left_in_window, (needed - into_window) * duration))

    def wait(self) -> float | None:
        wait = getattr(self, "_wait", None)
        return None if wait is None else max(1.0, math.ceil(wait - 1e-9))
