"""Replay scenario: drift -> detection -> alert -> retrain -> canary -> decision.

One command (`taxi-monitor scenario --work-dir DIR [--small]`, or
`python -m monitoring.scenario --work-dir DIR [--small]`) replays the bundled
taxi spans in time order against a real server, with every step done by the
product's own code (the pipeline CLI, `serving.server`, and the functions
behind `taxi-monitor window|monitor-pipeline|quality|alert|watch`:
monitoring/window.py, pipeline/monitoring_runner.py, monitoring/live_quality.py,
monitoring/alert_check.py, monitoring/watch.py), reading only what really
happened: request logs, late labels and ML Metadata.

Data (all written under the work dir; data/ is only read):

* history: `span-2013`, `span-2014` (copies) are in the pipeline's data dir
  from the start; version 1 trains on them;
* live period, 2015: the span's rows, gaps included (empty cells are sent
  as missing: NaN / "", see serving/client.py), shuffled with a fixed seed
  and split into three disjoint parts: A normal traffic, B drifted traffic (the drift window), C drifted
  traffic sent while the canary runs;
* the drifted labelled span that arrives after the drift: `span-2016`, the
  2016 rows plus the 2015 rows not sent as traffic, with the same drift,
  written to the data dir after detection.

The pipeline trains on the newest two spans (`--num-spans 2`): v1 on
2013-2014, the retrained v2 on 2014 and the drifted 2016.

The injected drift (`data.inject_drift`), a broken upstream feed:

* `trip_miles` x 1.609: distances reported in kilometres in the miles column;
* `fare` x 1.5 and `tips` x 1.5: a fare increase, tips in proportion, so
  the label (tips > 20% of the fare) keeps its meaning;
* `payment_type`: every second "Credit Card" trip is reported as "Cash" (a
  card terminal mis-recording payments); the value stays in the schema's
  domain, so ingestion's schema gate still passes.

Why it must be detected: against the previous window of normal traffic,
`fare` moves beyond its Jensen-Shannon threshold and the Cash share of
`payment_type` rises by about 0.2 (L-infinity); the thresholds follow the
window size (monitoring/drift_thresholds.py). `trip_miles` x 1.609 moves the
divergence of a 400-row window by less than sampling noise does. It also hurts the served model: trained when Cash trips
almost never tipped, it now predicts "no big tip" for card trips recorded
as Cash, so live accuracy drops.

Timeline: train v1 -> serve (latest policy, request logging at rate 1.0,
`--canary_traffic_share`) -> window 1: normal traffic (A) -> window 2:
drifted traffic (B) -> late labels -> `window` (skew/drift) and the
monitoring TFX pipeline on window 2 -> `quality` -> `alert` (log file) ->
the drifted span lands -> `watch`: pins v1, runs the pipeline, deploys v2 as
the canary -> canary traffic (C) -> `watch` checks (a `hold` before the
labels arrive, then promote or abort) -> the served version. Every
decision's MLMD execution id is printed, and `scenario.json` keeps the
timeline.

Modules: `settings` (the `--small` and full sizes, the model and schema),
`data` (the spans, the traffic parts, the drift), `live` (the server, the
traffic, late labels, the window check and the Canary executions read back)
and `replay` (`run`, the timeline above, and the command line).
"""
