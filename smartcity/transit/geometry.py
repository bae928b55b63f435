"""Distances in metres and the projection of points onto a polyline, vectorised with numpy.

Tracking and prediction both need "how far along its shape is this point": a stop (once, on
import) or a GPS fix (continuously). We never trust a feed's own `shape_dist_traveled`, whose
unit is whatever the publisher chose; distances here are metres on the WGS 84 mean sphere.

Projection works in a local plane (equirectangular around the polyline's mean latitude): at
city scale (tens of km) that distorts lengths by far less than GPS noise, and it turns
"nearest point on a segment" into a few array operations. Distances *along* the polyline are
always the haversine lengths of its segments, so they agree with `cumulative_distance_m`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Mean Earth radius (IUGG R1); the sphere's error against the ellipsoid is < 0.5 %.
EARTH_RADIUS_M = 6_371_008.8

# How much farther along a point may be assigned than the one before it is allowed to go
# backwards (float rounding only): projections are otherwise non-decreasing.
_ALONG_TOLERANCE_M = 1e-6

# A match counts as another pass of the line only this many ambiguity distances behind the
# nearest one: closer, it is the same pass (e.g. the end of the segment before).
_OTHER_PASS_FACTOR = 5.0

# Upper bound on points × segments in one vectorised block, to bound memory (~8 bytes each,
# several temporaries) when projecting many GPS fixes onto a long shape.
_BLOCK_CELLS = 2_000_000


def haversine_m(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Great-circle distance in metres, element-wise."""
    p1 = np.radians(np.asarray(lat1, dtype=np.float64))
    p2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dp / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2.0) ** 2
    return np.asarray(2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def cumulative_distance_m(lats: npt.ArrayLike, lons: npt.ArrayLike) -> FloatArray:
    """Distance from the first point to each point along the polyline, in metres."""
    la = np.asarray(lats, dtype=np.float64)
    lo = np.asarray(lons, dtype=np.float64)
    out = np.zeros(la.shape[0], dtype=np.float64)
    if la.shape[0] > 1:
        out[1:] = np.cumsum(haversine_m(la[:-1], lo[:-1], la[1:], lo[1:]))
    return out


@dataclass(frozen=True, slots=True)
class Projection:
    """Where points fall on a polyline: distance along it, distance off it, which segment."""

    along_m: FloatArray
    offset_m: FloatArray
    segment: IntArray


class Polyline:
    """A shape (or any path) ready for repeated projection."""

    def __init__(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> None:
        self.lats = np.asarray(lats, dtype=np.float64)
        self.lons = np.asarray(lons, dtype=np.float64)
        if self.lats.ndim != 1 or self.lats.shape != self.lons.shape or self.lats.size < 2:
            raise ValueError("a polyline needs two or more points, as equal-length 1-D arrays")
        self.cum_m = cumulative_distance_m(self.lats, self.lons)
        self._lat0 = float(np.radians(self.lats.mean()))
        self._lon0 = float(np.radians(self.lons.mean()))
        x, y = self.to_xy(self.lats, self.lons)
        self._ax, self._ay = x[:-1], y[:-1]
        self._dx, self._dy = x[1:] - x[:-1], y[1:] - y[:-1]
        self._len2 = self._dx**2 + self._dy**2
        self._seg_m = np.diff(self.cum_m)

    @property
    def length_m(self) -> float:
        return float(self.cum_m[-1])

    @property
    def segments(self) -> int:
        return int(self._seg_m.size)

    def to_xy(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Local plane coordinates in metres (east, north) around the polyline's middle."""
        la = np.radians(np.asarray(lats, dtype=np.float64))
        lo = np.radians(np.asarray(lons, dtype=np.float64))
        x = EARTH_RADIUS_M * np.cos(self._lat0) * (lo - self._lon0)
        y = EARTH_RADIUS_M * (la - self._lat0)
        return np.asarray(x), np.asarray(y)

    def candidates(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """For each point (rows) and segment (columns): (along_m, offset_m) of the nearest
        point of that segment."""
        px, py = self.to_xy(lats, lons)
        px, py = px[:, None], py[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = ((px - self._ax) * self._dx + (py - self._ay) * self._dy) / self._len2
        # A zero-length segment (repeated shape point) projects to its start.
        t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)
        offset = np.hypot(px - (self._ax + t * self._dx), py - (self._ay + t * self._dy))
        along = self.cum_m[:-1] + t * self._seg_m
        return np.asarray(along), np.asarray(offset)

    def project(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> Projection:
        """Each point's nearest position on the whole polyline (no ordering between points)."""
        la = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        lo = np.atleast_1d(np.asarray(lons, dtype=np.float64))
        along = np.empty(la.size)
        offset = np.empty(la.size)
        segment = np.empty(la.size, dtype=np.int64)
        block = max(1, _BLOCK_CELLS // self.segments)
        for start in range(0, la.size, block):
            stop = start + block
            a, o = self.candidates(la[start:stop], lo[start:stop])
            best = np.argmin(o, axis=1)
            rows = np.arange(best.size)
            along[start:stop] = a[rows, best]
            offset[start:stop] = o[rows, best]
            segment[start:stop] = best
        return Projection(along, offset, segment)

    def project_window(
        self, lat: float, lon: float, lo_m: float, hi_m: float, ambiguity_m: float = 0.0
    ) -> tuple[float, float]:
        """The nearest point to (lat, lon) on the part of the polyline from `lo_m` to `hi_m`
        along it: (along_m, offset_m). Only the segments overlapping the window are looked at,
        so where a shape passes the same street twice the vehicle is matched on its own pass.
        If both passes lie in the window, points within `ambiguity_m` of the nearest count as
        equally near and the earliest along the line wins (a vehicle moves forward a little
        between fixes, not round a whole loop)."""
        cum = self.cum_m
        lo_m = max(lo_m, 0.0)
        hi_m = min(hi_m, float(cum[-1]))
        if hi_m < lo_m:
            lo_m = hi_m
        first = max(int(np.searchsorted(cum, lo_m, side="right")) - 1, 0)
        last = min(int(np.searchsorted(cum, hi_m, side="left")), self.segments)
        last = max(last, first + 1)
        seg = slice(first, last)
        px, py = self.to_xy(np.array([lat]), np.array([lon]))
        ax, ay = self._ax[seg], self._ay[seg]
        dx, dy = self._dx[seg], self._dy[seg]
        len2, seg_m = self._len2[seg], self._seg_m[seg]
        start = cum[:-1][seg]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = ((px[0] - ax) * dx + (py[0] - ay) * dy) / len2
            # Keep each segment's point inside the window.
            t_lo = np.where(seg_m > 0, (lo_m - start) / seg_m, 0.0)
            t_hi = np.where(seg_m > 0, (hi_m - start) / seg_m, 1.0)
        t = np.nan_to_num(t, nan=0.0)
        t = np.clip(t, np.clip(t_lo, 0.0, 1.0), np.clip(t_hi, 0.0, 1.0))
        offset = np.hypot(px[0] - (ax + t * dx), py[0] - (ay + t * dy))
        along = start + t * seg_m
        best = int(np.argmin(offset))
        # Another pass: as near, and well behind (not just the previous segment's end).
        other = (offset <= offset[best] + ambiguity_m) & (
            along < along[best] - _OTHER_PASS_FACTOR * ambiguity_m
        )
        if other.any():
            best = int(np.argmax(other))  # the first (earliest) of them
        return float(along[best]), float(offset[best])

    def project_in_order(self, lats: npt.ArrayLike, lons: npt.ArrayLike) -> Projection:
        """Positions for points visited in order (a trip's stops): distances along never
        decrease, and among such assignments the total distance off the shape is smallest.

        The nearest-point answer is wrong where a shape loops or doubles back: a stop served
        on the way out and again on the way back is nearest to whichever pass happens to be
        closer. Choosing, for every stop, one candidate per segment with a dynamic programme
        (prefix minima keep it O(stops × segments)) makes the order of the trip decide.
        """
        la = np.atleast_1d(np.asarray(lats, dtype=np.float64))
        lo = np.atleast_1d(np.asarray(lons, dtype=np.float64))
        n, m = la.size, self.segments
        along, offset = self.candidates(la, lo)
        back = np.zeros((n, m), dtype=np.int64)
        cost = offset[0].copy()
        seg_index = np.arange(m)
        for i in range(1, n):
            # Best predecessor on an earlier segment: a running minimum and where it was hit.
            running = np.minimum.accumulate(cost)
            hit = np.maximum.accumulate(np.where(cost == running, seg_index, 0))
            prev_cost = np.full(m, np.inf)
            prev_arg = np.zeros(m, dtype=np.int64)
            prev_cost[1:] = running[:-1]
            prev_arg[1:] = hit[:-1]
            # Or the same segment, if the previous stop lies no farther along it.
            same = along[i - 1] <= along[i] + _ALONG_TOLERANCE_M
            use_same = same & (cost <= prev_cost)
            prev_cost = np.where(use_same, cost, prev_cost)
            back[i] = np.where(use_same, seg_index, prev_arg)
            cost = offset[i] + prev_cost
        if not np.isfinite(cost).any():
            # Only when more stops go backwards within one segment than there are segments
            # to spread them over (a two-point shape): keep each nearest point, made monotonic.
            nearest = self.project(la, lo)
            return Projection(
                np.maximum.accumulate(nearest.along_m), nearest.offset_m, nearest.segment
            )
        chosen = np.empty(n, dtype=np.int64)
        chosen[-1] = int(np.argmin(cost))
        for i in range(n - 1, 0, -1):
            chosen[i - 1] = back[i, chosen[i]]
        rows = np.arange(n)
        return Projection(along[rows, chosen], offset[rows, chosen], chosen)
