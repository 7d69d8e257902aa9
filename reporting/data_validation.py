"""Data validation views: TFDV statistics, schema, anomalies, drift between spans.

Inputs are MLMD artifacts found by ``lineage.runs``; everything else is
computed by TFDV (statistics loading, validation, drift comparators).

Over 400 lines: the loaders, tables and drift views of one artifact family (TFDV
statistics, schema, anomalies) that the run report, the notebooks and the model card all
render; each section is short and they share the schema helpers.
"""

from __future__ import annotations

import copy
import dataclasses
import os

import pandas as pd
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

import lineage
from lineage import runs as runs_lib
from monitoring.artifacts import load_split_statistics
from monitoring.config import JSD_THRESHOLD, LINF_THRESHOLD
from monitoring.features import is_categorical

ANOMALIES_FILE = "SchemaDiff.pb"
SCHEMA_FILE = "schema.pbtxt"

# What an anomaly type means for this pipeline and what to do about it.
_EXPLANATIONS = {
    "ENUM_TYPE_UNEXPECTED_STRING_VALUES": (
        "The column holds category values that are not in the schema's domain. "
        "Either upstream data changed (new code, typo, encoding) or the domain in "
        "data/schema/schema.pbtxt must be extended deliberately."
    ),
    "INT_TYPE_BIG_INT": (
        "Integer values above the schema's int_domain max: out-of-range values "
        "(e.g. an hour of 30). Fix the source or widen the domain if the values are real."
    ),
    "INT_TYPE_SMALL_INT": "Integer values below the schema's int_domain min: out-of-range values.",
    "FLOAT_TYPE_BIG_FLOAT": "Float values above the schema's float_domain max.",
    "FLOAT_TYPE_SMALL_FLOAT": "Float values below the schema's float_domain min (e.g. negative fares).",
    "FLOAT_TYPE_HAS_NAN": "NaN values in a float column the schema says must not contain NaN.",
    "FEATURE_TYPE_LOW_FRACTION_PRESENT": (
        "The column is missing in more rows than the schema's presence.min_fraction "
        "allows: an upstream join or export dropped values."
    ),
    "FEATURE_TYPE_LOW_NUMBER_PRESENT": "Fewer rows carry this column than presence.min_count requires.",
    "FEATURE_TYPE_NOT_PRESENT": "The column is absent from every row of this split.",
    "SCHEMA_MISSING_COLUMN": "A column the schema requires is not in the data at all.",
    "SCHEMA_NEW_COLUMN": (
        "The data has a column the schema does not know. Add it to the schema (or "
        "drop it upstream) so it is validated."
    ),
    "SCHEMA_TRAINING_SERVING_SKEW": "The column's presence differs between training and serving environments.",
    "COMPARATOR_L_INFTY_HIGH": (
        "Drift/skew: the share of at least one category changed by more than the "
        "L-infinity threshold between the compared datasets."
    ),
    "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH": (
        "Drift/skew: the value distribution changed by more than the Jensen-Shannon "
        "divergence threshold between the compared datasets."
    ),
    "DATASET_LOW_NUM_EXAMPLES": "The split has fewer examples than the schema's dataset constraints allow.",
    "DATASET_HIGH_NUM_EXAMPLES": "The split has more examples than the schema's dataset constraints allow.",
    "NO_DATA_IN_SPAN": "The span holds no examples at all.",
}
_PREFIX_EXPLANATIONS = {
    "ENUM_TYPE": "The column's values do not match its string domain.",
    "INT_TYPE": "The column's values do not match the integer type or domain in the schema.",
    "FLOAT_TYPE": "The column's values do not match the float type or domain in the schema.",
    "BOOL_TYPE": "The column's values do not match its boolean domain.",
    "FEATURE_TYPE": "The column's presence or value counts violate the schema.",
    "COMPARATOR": "A dataset comparison (drift or skew) exceeded its threshold.",
    "STRING_TYPE": "The column changed its physical type.",
}


def explain_anomaly(type_name: str) -> str:
    """A plain-language explanation of an ``AnomalyInfo.Type`` name."""
    if type_name in _EXPLANATIONS:
        return _EXPLANATIONS[type_name]
    for prefix, text in _PREFIX_EXPLANATIONS.items():
        if type_name.startswith(prefix):
            return text
    return "See the TFDV description; check the data source against data/schema/schema.pbtxt."


# -- loading -------------------------------------------------------------------


def _tfdv():
    import tensorflow_data_validation as tfdv

    return tfdv


def load_statistics(artifact) -> dict[str, statistics_pb2.DatasetFeatureStatisticsList]:
    """Split name -> statistics of a StatisticsGen artifact."""
    return {
        split: load_split_statistics(artifact, split) for split in lineage.split_names(artifact)
    }


def load_schema(artifact) -> schema_pb2.Schema:
    """The schema of a Schema artifact (ImportSchemaGen or SchemaGen)."""
    return _tfdv().load_schema_text(os.path.join(artifact.uri, SCHEMA_FILE))


def load_anomalies(artifact) -> dict[str, anomalies_pb2.Anomalies]:
    """Split name -> anomalies of an ExampleAnomalies artifact."""
    result = {}
    for split in lineage.split_names(artifact):
        anomalies = anomalies_pb2.Anomalies()
        with open(os.path.join(artifact.uri, f"Split-{split}", ANOMALIES_FILE), "rb") as f:
            anomalies.ParseFromString(f.read())
        result[split] = anomalies
    return result


def named(
    stats: statistics_pb2.DatasetFeatureStatisticsList, name: str
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A copy of ``stats`` whose (single) dataset is called ``name`` (for Facets legends)."""
    result = copy.deepcopy(stats)
    for dataset in result.datasets:
        dataset.name = name
    return result


# -- tables --------------------------------------------------------------------


def _feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return feature.name or ".".join(feature.path.step)


def feature_summary(stats: statistics_pb2.DatasetFeatureStatisticsList) -> pd.DataFrame:
    """One row per feature: type, missing share and the main numbers or top values."""
    dataset = stats.datasets[0]
    rows = []
    for feature in dataset.features:
        type_name = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
        row = {"feature": _feature_name(feature), "type": type_name}
        which = feature.WhichOneof("stats")
        if which == "num_stats":
            num = feature.num_stats
            common = num.common_stats
            row.update(
                mean=num.mean, std=num.std_dev, min=num.min, max=num.max, zeros=num.num_zeros
            )
        elif which == "string_stats":
            common = feature.string_stats.common_stats
            top = feature.string_stats.top_values
            row.update(
                unique=feature.string_stats.unique,
                top_value=top[0].value if top else None,
                top_count=int(top[0].frequency) if top else None,
            )
        else:
            continue
        total = dataset.num_examples or 1
        row["missing_pct"] = 100.0 * common.num_missing / total
        rows.append(row)
    columns = [
        "feature",
        "type",
        "missing_pct",
        "mean",
        "std",
        "min",
        "max",
        "zeros",
        "unique",
        "top_value",
        "top_count",
    ]
    frame = pd.DataFrame(rows)
    return (
        frame.reindex(columns=columns).set_index("feature")
        if rows
        else pd.DataFrame(columns=columns)
    )


def example_counts(
    stats_by_split: dict[str, statistics_pb2.DatasetFeatureStatisticsList],
) -> dict[str, int]:
    return {split: int(stats.datasets[0].num_examples) for split, stats in stats_by_split.items()}


@dataclasses.dataclass
class AnomalyRow:
    split: str
    feature: str
    type: str
    short: str
    description: str
    explanation: str


def anomaly_rows(by_split: dict[str, anomalies_pb2.Anomalies]) -> list[AnomalyRow]:
    """One row per (split, feature, reason) with an explanation of the reason."""
    rows = []
    for split, anomalies in sorted(by_split.items()):
        infos = sorted(anomalies.anomaly_info.items())
        if anomalies.HasField("dataset_anomaly_info"):
            infos.append(("[dataset]", anomalies.dataset_anomaly_info))
        for feature, info in infos:
            reasons = list(info.reason) or [info]
            for reason in reasons:
                type_name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                rows.append(
                    AnomalyRow(
                        split=split,
                        feature=feature,
                        type=type_name,
                        short=reason.short_description or info.short_description,
                        description=reason.description or info.description,
                        explanation=explain_anomaly(type_name),
                    )
                )
    return rows


def anomalies_table(by_split: dict[str, anomalies_pb2.Anomalies]) -> pd.DataFrame:
    """Anomalies of every split as a DataFrame (empty if the data is clean)."""
    columns = [f.name for f in dataclasses.fields(AnomalyRow)]
    return pd.DataFrame([dataclasses.astuple(r) for r in anomaly_rows(by_split)], columns=columns)


def schema_tables(schema: schema_pb2.Schema) -> tuple[pd.DataFrame, pd.DataFrame]:
    """TFDV's (features, domains) DataFrames of a schema."""
    from tensorflow_data_validation.utils import display_util

    return display_util.get_schema_dataframe(schema)


def schema_differences(curated: schema_pb2.Schema, inferred: schema_pb2.Schema) -> pd.DataFrame:
    """Features whose type or presence differ between the curated and the inferred schema."""
    rows = []
    cur = {f.name: f for f in curated.feature}
    inf = {f.name: f for f in inferred.feature}
    for name in sorted(set(cur) | set(inf)):
        a, b = cur.get(name), inf.get(name)
        if a is None or b is None:
            rows.append((name, "only in " + ("inferred" if a is None else "curated"), "", ""))
            continue
        for field in ("type",):
            if getattr(a, field) != getattr(b, field):
                rows.append(
                    (
                        name,
                        field,
                        schema_pb2.FeatureType.Name(a.type),
                        schema_pb2.FeatureType.Name(b.type),
                    )
                )
        if a.presence.min_fraction != b.presence.min_fraction:
            rows.append(
                (name, "presence.min_fraction", a.presence.min_fraction, b.presence.min_fraction)
            )
    return pd.DataFrame(rows, columns=["feature", "difference", "curated", "inferred"])


# -- drift ---------------------------------------------------------------------


def schema_with_drift_comparators(
    schema: schema_pb2.Schema,
    linf_threshold: float = LINF_THRESHOLD,
    jsd_threshold: float = JSD_THRESHOLD,
) -> schema_pb2.Schema:
    """A copy of ``schema`` with a drift comparator on every feature.

    L-infinity distance for categorical features, Jensen-Shannon divergence
    for numeric ones.
    """
    result = copy.deepcopy(schema)
    for feature in result.feature:
        feature.ClearField("drift_comparator")
        if is_categorical(feature):
            feature.drift_comparator.infinity_norm.threshold = linf_threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = jsd_threshold
    return result


_MEASURES = {
    anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L-infinity",
    anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon",
    anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: "normalized abs. difference",
}
DRIFT_COLUMNS = ["previous_span", "span", "feature", "measure", "value", "threshold", "drifted"]


def drift(
    schema: schema_pb2.Schema,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    linf_threshold: float = LINF_THRESHOLD,
    jsd_threshold: float = JSD_THRESHOLD,
) -> list[tuple[str, str, float, float]]:
    """Per feature drift of ``current`` vs ``previous``, computed by TFDV.

    Returns:
      ``(feature, measure, value, threshold)`` for every compared feature.
    """
    compared = schema_with_drift_comparators(schema, linf_threshold, jsd_threshold)
    anomalies = _tfdv().validate_statistics(current, compared, previous_statistics=previous)
    rows = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for measurement in info.drift_measurements:
            rows.append(
                (
                    feature,
                    _MEASURES.get(measurement.type, str(measurement.type)),
                    measurement.value,
                    measurement.threshold,
                )
            )
    return sorted(rows)


def span_drift_table(
    schema: schema_pb2.Schema,
    stats_by_span: dict[int, statistics_pb2.DatasetFeatureStatisticsList],
    linf_threshold: float = LINF_THRESHOLD,
    jsd_threshold: float = JSD_THRESHOLD,
) -> pd.DataFrame:
    """Drift of each span vs the span before it, one row per (span pair, feature)."""
    rows = []
    spans = sorted(stats_by_span)
    for previous, span in zip(spans, spans[1:], strict=False):
        for feature, measure, value, threshold in drift(
            schema, stats_by_span[previous], stats_by_span[span], linf_threshold, jsd_threshold
        ):
            rows.append((previous, span, feature, measure, value, threshold, value > threshold))
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


# -- one run -------------------------------------------------------------------


@dataclasses.dataclass
class RunDataValidation:
    """Everything the data validation views show for one run."""

    run: runs_lib.Run
    span: int | None
    previous_span: int | None
    statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList]  # split -> stats
    previous_statistics: dict[str, statistics_pb2.DatasetFeatureStatisticsList]
    schema: schema_pb2.Schema | None
    schema_uri: str | None
    inferred_schema: schema_pb2.Schema | None
    anomalies: dict[str, anomalies_pb2.Anomalies]
    statistics_uri: str | None
    anomalies_uri: str | None
    stats_by_span: dict[int, statistics_pb2.DatasetFeatureStatisticsList]  # train split

    @property
    def anomalies_table(self) -> pd.DataFrame:
        return anomalies_table(self.anomalies)

    def drift_table(
        self, linf_threshold: float = LINF_THRESHOLD, jsd_threshold: float = JSD_THRESHOLD
    ) -> pd.DataFrame:
        """Drift between consecutive spans up to this run's span."""
        if self.schema is None:
            return pd.DataFrame(columns=DRIFT_COLUMNS)
        stats = {s: v for s, v in self.stats_by_span.items() if self.span is None or s <= self.span}
        return span_drift_table(self.schema, stats, linf_threshold, jsd_threshold)

    def newest_span_drift(self) -> pd.DataFrame:
        table = self.drift_table()
        return table[table["span"] == self.span] if self.span is not None else table


def for_run(store: runs_lib.RunStore, run: runs_lib.Run, split: str = "train") -> RunDataValidation:
    """Loads statistics, schema and anomalies of ``run`` and its previous span.

    ``split`` is the split compared between spans.
    """
    stats_artifact = store.output(run, "StatisticsGen", "ExampleStatistics")
    anomalies_artifact = store.output(run, "ExampleValidator", "ExampleAnomalies")
    schema_artifact = store.output(run, "ImportSchemaGen", "Schema")
    inferred_artifact = store.output(run, "SchemaGen", "Schema")
    span = store.span_of_run(run)
    by_span_artifacts = store.statistics_by_span()
    if span is not None and stats_artifact is not None:
        by_span_artifacts[span] = stats_artifact
    previous_spans = [s for s in by_span_artifacts if span is not None and s < span]
    previous_span = max(previous_spans) if previous_spans else None
    stats_by_span = {}
    for s, artifact in by_span_artifacts.items():
        if split in lineage.split_names(artifact):
            stats_by_span[s] = load_split_statistics(artifact, split)
    return RunDataValidation(
        run=run,
        span=span,
        previous_span=previous_span,
        statistics=load_statistics(stats_artifact) if stats_artifact else {},
        previous_statistics=load_statistics(by_span_artifacts[previous_span])
        if previous_span is not None
        else {},
        schema=load_schema(schema_artifact) if schema_artifact else None,
        schema_uri=os.path.join(schema_artifact.uri, SCHEMA_FILE) if schema_artifact else None,
        inferred_schema=load_schema(inferred_artifact) if inferred_artifact else None,
        anomalies=load_anomalies(anomalies_artifact) if anomalies_artifact else {},
        statistics_uri=stats_artifact.uri if stats_artifact else None,
        anomalies_uri=anomalies_artifact.uri if anomalies_artifact else None,
        stats_by_span=stats_by_span,
    )
