"""The outcome of a check, as `taxi-monitor` reports it in its exit code.

* `OK` (0): nothing found, or the action was done;
* `FOUND` (1): something found (anomalies, skew or drift, a firing alert
  rule, an A/B verdict of rollback, a rejected shadow);
* `BAD_INPUT` (2): bad input or an action not done.
"""

OK, FOUND, BAD_INPUT = 0, 1, 2


def of(found: bool, bad_input: bool = False) -> int:
    """`BAD_INPUT` wins over `FOUND`, which wins over `OK`."""
    return BAD_INPUT if bad_input else FOUND if found else OK
