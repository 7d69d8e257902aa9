"""Monitoring thresholds and defaults: inert constants, read by every check and the CLI.

Nothing here reads the environment or touches the filesystem. A flag of
`taxi-monitor` (or a component parameter) overrides a value for one run;
the defaults live only here. The model name is `core.constants.MODEL_NAME`.
"""

# -- skew and drift (monitoring/drift.py, monitoring/drift_thresholds.py) ------
LINF_THRESHOLD = 0.1
"""L-infinity distance (largest change of one category's share): the threshold of
categorical features without a comparator in the schema, and the floor of the
window-size thresholds."""
JSD_THRESHOLD = 0.1
"""Jensen-Shannon divergence of the quantile histograms: the same for numeric features."""
MAX_MALFORMED_FRACTION = 0.0
"""Malformed request-log records allowed in a window before it is bad input."""

# -- alert rules (monitoring/alerts.py) ----------------------------------------
MAX_SKEW_FEATURES = 0
"""Features above their skew threshold before the critical skew alert fires."""
MAX_DRIFT_FEATURES = 0
"""Features above their drift threshold before the drift alert fires."""
MAX_ERROR_RATE = 0.01
"""Server error rate (errors / requests since the last scrape) that fires an alert."""
MAX_P99_MS = 100.0
"""Server p99 latency in milliseconds that fires an alert."""
MAX_ACCURACY_DROP = 0.05
"""Live accuracy below the baseline by more than this fires the critical quality alert."""
ALERT_COOLDOWN_SECONDS = 3600.0
"""An open incident is notified again after this many seconds."""

# -- live quality and the A/B test (monitoring/quality.py, monitoring/ab.py) ---
POSITIVE_THRESHOLD = 0.5
"""A prediction is positive (a big tip) at this probability or above."""
MIN_SAMPLES = 200
"""Labelled predictions per version before the A/B test may decide."""
ALPHA = 0.05
"""Significance level of the A/B test."""

# -- canary decisions (monitoring/decide.py, monitoring/watch.py) --------------
CANARY_MAX_CHECKS = 12
"""Looks at a live canary before it is aborted for insufficient evidence."""
CANARY_MAX_SECONDS = 3 * 3600.0
"""Seconds after its deploy before a canary is aborted for insufficient evidence."""

# -- shadow comparison (monitoring/shadow.py) ----------------------------------
SHADOW_MIN_ROWS = 200
"""Mirrored requests needed before a shadow verdict."""
SHADOW_MIN_LABELLED = 200
"""Labelled mirrored requests needed before the shadow's accuracy counts."""
SHADOW_MAX_ERROR_RATE = 0.01
"""Shadow error rate above which it is rejected."""
SHADOW_MAX_ACCURACY_DROP = 0.02
"""Shadow accuracy below the stable one's by more than this rejects it."""

# -- HTTP endpoints (the `exporter` and `alert-receiver` commands) -------------
EXPORTER_LISTEN = ("127.0.0.1", 9108)
"""host, port of the Prometheus exporter (deploy/prometheus scrapes :9108)."""
ALERT_RECEIVER_LISTEN = ("127.0.0.1", 9095)
"""host, port of Alertmanager's webhook (deploy/alertmanager posts to :9095)."""
